"""Functional weighted convolution for any number of spatial dimensions.

``weighted_conv(x, weight, phi)`` computes ``conv(x, weight ⊙ phi) + bias`` with the
semantics of ``torch.nn.functional.conv{1,2,3}d`` (cross-correlation, as in PyTorch).
For N ≤ 3 spatial dimensions it calls the native convolution; for N ≥ 4 it computes a
batched sum of (N-1)-D convolutions, one per tap of the first spatial axis.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["PADDING_MODES", "conv_nd", "pad_nd", "same_padding", "weighted_conv"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

_NATIVE = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

IntOrSeq = int | Sequence[int]


def _tuple(value: IntOrSeq, n: int, name: str, minimum: int) -> tuple[int, ...]:
    def as_int(v: object) -> int:
        if isinstance(v, bool):
            raise TypeError
        return operator.index(v)  # int, NumPy integers, 0-d integer tensors

    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        if isinstance(value, Sequence):
            out = tuple(as_int(v) for v in value)
            if len(out) == 1 and n != 1:
                out = out * n
        else:
            out = (as_int(value),) * n
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {value!r}") from None
    if len(out) != n:
        raise ValueError(f"{name} must be an int or a sequence of {n} ints, got {value!r}")
    if any(v < minimum for v in out):
        raise ValueError(f"{name} must be ≥ {minimum}, got {value!r}")
    return out


def same_padding(
    kernel_size: Sequence[int], dilation: Sequence[int]
) -> tuple[tuple[int, int], ...]:
    """(left, right) padding per axis for ``padding="same"`` with stride 1.

    Matches PyTorch: total ``d·(k-1)``, the extra voxel of an odd total on the right.
    """
    pads = []
    for k, d in zip(kernel_size, dilation, strict=True):
        total = d * (k - 1)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def _flat_pads(pads: Sequence[tuple[int, int]]) -> list[int]:
    """``F.pad``'s order: last axis first, ``(left, right)`` each."""
    return [p for lo_hi in reversed(pads) for p in lo_hi]


def pad_nd(x: Tensor, pads: Sequence[tuple[int, int]], mode: str) -> Tensor:
    """Pad the trailing ``len(pads)`` axes of ``x`` by ``(left, right)`` each.

    ``mode`` is one of ``zeros``, ``reflect`` (mirror without repeating the edge),
    ``replicate`` (repeat the edge) or ``circular`` (wrap around), for any number of axes.
    Differentiable. Up to 3 axes use ``F.pad``; more use index gathers along each axis.
    """
    if mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {mode!r}")
    n = len(pads)
    if not any(lo or hi for lo, hi in pads):
        return x
    for i, (lo, hi) in enumerate(pads):
        size = x.shape[x.dim() - n + i]
        if mode == "reflect" and (lo >= size or hi >= size):
            raise ValueError(
                f"padding_mode='reflect' needs padding < input size; axis {i} has size {size} "
                f"and padding ({lo}, {hi})"
            )
        if mode == "circular" and (lo > size or hi > size):
            raise ValueError(
                f"padding_mode='circular' needs padding ≤ input size; axis {i} has size {size} "
                f"and padding ({lo}, {hi})"
            )
    if mode == "zeros":
        return F.pad(x, _flat_pads(pads))
    if n <= 3 and x.dim() == n + 2:  # torch's own kernels cover up to 3 padded axes
        return F.pad(x, _flat_pads(pads), mode=mode)
    for i, (lo, hi) in enumerate(pads):
        if not (lo or hi):
            continue
        dim = x.dim() - n + i
        size = x.shape[dim]
        idx = torch.arange(-lo, size + hi, device=x.device)
        if mode == "reflect":
            period = 2 * (size - 1)
            idx = idx.remainder(period) if period else torch.zeros_like(idx)
            idx = torch.where(idx >= size, period - idx, idx)
        elif mode == "replicate":
            idx = idx.clamp(0, size - 1)
        else:  # circular
            idx = idx.remainder(size)
        x = x.index_select(dim, idx)
    return x


def _fits(phi_shape: torch.Size, weight_shape: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(phi_shape, weight_shape) == weight_shape
    except RuntimeError:
        return False


def conv_nd(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: Sequence[int],
    pads: Sequence[tuple[int, int]],
    dilation: Sequence[int],
    groups: int,
) -> Tensor:
    """Zero-padded batched convolution for any N ≥ 1 (no checks).

    ``pads`` holds ``(left, right)`` zero padding per axis. N ≤ 3 calls ``F.conv{N}d``.
    Above, the first spatial axis is unrolled over its ``k`` taps: tap ``j`` is an
    (N-1)-D convolution with ``weight[:, :, j]`` over the input planes it meets, folded
    into the batch, added in place into the output planes it contributes to. The first
    axis is never padded (taps simply skip the missing planes) and the input is moved
    planes-first once, so for stride 1 each tap reads a view of it.
    """
    n = weight.dim() - 2
    if n in _NATIVE:
        if all(lo == hi for lo, hi in pads):
            return _NATIVE[n](
                x, weight, bias, tuple(stride), tuple(lo for lo, _ in pads), tuple(dilation), groups
            )
        return _NATIVE[n](
            F.pad(x, _flat_pads(pads)), weight, bias, tuple(stride), 0, tuple(dilation), groups
        )
    b, c, size0 = x.shape[:3]
    k0, s0, d0 = weight.shape[2], stride[0], dilation[0]
    (lo0, hi0), inner = pads[0], list(pads[1:])
    out0 = (size0 + lo0 + hi0 - d0 * (k0 - 1) - 1) // s0 + 1
    planes = x.movedim(2, 0)  # (D0, B, C, *rest)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if any(lo != hi for lo, hi in inner) or (needs_grad and any(lo or hi for lo, hi in inner)):
        # Pad the inner axes once: asymmetric padding has no native form, and oneDNN's
        # backward is faster on a pre-padded input (its forward is faster padding natively).
        planes = F.pad(planes, _flat_pads(inner))
        inner = [(0, 0)] * (n - 1)
    planes = planes.contiguous()
    spans = []
    for j in range(k0):
        offset = j * d0 - lo0  # output plane o reads input plane o·s0 + offset
        first = max(0, -(offset // s0))
        last = min(out0 - 1, (size0 - 1 - offset) // s0)
        if first <= last:
            spans.append((last - first + 1 != out0, j, first, last, offset))
    # A tap that covers every output plane goes first: its output (with the bias) becomes
    # the accumulator, which saves a zero fill and one pass over the output. (A partition,
    # not a sort: torch.compile traces it with dynamic shapes.)
    spans = [s for s in spans if not s[0]] + [s for s in spans if s[0]]
    bias_in_conv = bool(spans) and not spans[0][0]
    out = None
    for i, (partial, j, first, last, offset) in enumerate(spans):
        count = last - first + 1
        start = first * s0 + offset
        taken = planes[start : start + s0 * (count - 1) + 1 : s0]
        y = conv_nd(
            taken.reshape(count * b, c, *planes.shape[3:]),
            weight[:, :, j],
            bias if i == 0 and bias_in_conv else None,
            stride[1:],
            inner,
            dilation[1:],
            groups,
        )
        y = y.reshape(count, b, *y.shape[1:])
        if out is None and not partial:
            out = y
            continue
        if out is None:
            out = y.new_zeros(out0, *y.shape[1:])
        out[first : last + 1] += y
    if out is None:  # every tap falls in the padding: the output is the bias alone
        probe = conv_nd(
            planes[:1].reshape(b, c, *planes.shape[3:]),
            weight[:, :, 0],
            None,
            stride[1:],
            inner,
            dilation[1:],
            groups,
        )
        out = (probe * 0).unsqueeze(0).repeat(out0, *([1] * probe.dim()))  # keeps the graph
    if bias is not None and not bias_in_conv:
        out += bias.reshape(1, 1, -1, *([1] * (n - 1)))
    # (D0', B, C_out, *rest) → (B, C_out, D0', *rest), contiguous like every conv output
    return out.permute(1, 2, 0, *range(3, out.dim())).contiguous()


def weighted_conv(
    x: Tensor,
    weight: Tensor,
    phi: Tensor | None = None,
    bias: Tensor | None = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq | str = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> Tensor:
    """Weighted convolution ``conv(x, weight ⊙ phi) + bias`` for any number of dims.

    Args:
        x: input ``(B, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``, N spatial axes.
        weight: ``(C_out, C_in / groups, k1, …, kN)``.
        phi: density of shape ``(k1, …, kN)`` (or broadcastable to ``weight``); ``None``
            means no weighting.
        bias: ``(C_out,)`` or ``None``.
        stride, dilation: an int or one per axis, ≥ 1.
        padding: an int or one per axis (symmetric), or ``"same"`` / ``"valid"``.
        groups: number of channel groups.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.

    Returns:
        ``(B, C_out, *out_spatial)`` (unbatched in, unbatched out).

    Raises:
        ValueError: wrong input rank, channels that do not match ``weight`` and ``groups``,
            a ``phi`` of the wrong shape, ``"same"`` with stride > 1, or a kernel larger
            than the padded input.

    Example:
        >>> x = torch.randn(2, 3, 8, 8, 8, 8)                     # 4 spatial dims
        >>> w = torch.randn(5, 3, 3, 3, 3, 3)
        >>> weighted_conv(x, w, torch.ones(3, 3, 3, 3), padding=1).shape
        torch.Size([2, 5, 8, 8, 8, 8])
    """
    if not isinstance(x, Tensor) or not isinstance(weight, Tensor):
        raise TypeError("weighted_conv: x and weight must be tensors")
    n = weight.dim() - 2
    if n < 1:
        raise ValueError(
            "weight must have shape (C_out, C_in/groups, k1, …, kN) with N ≥ 1, "
            f"got {tuple(weight.shape)}"
        )
    if x.dim() not in (n + 1, n + 2):
        raise ValueError(
            f"expected input of shape (B, C, *spatial) or (C, *spatial) with {n} spatial "
            f"dim(s), i.e. {n + 2}-D or {n + 1}-D; got {x.dim()}-D input of shape {tuple(x.shape)}"
        )
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    unbatched = x.dim() == n + 1
    if unbatched:
        x = x.unsqueeze(0)
    c_in = weight.shape[1] * groups
    if x.shape[1] != c_in:
        raise ValueError(
            f"input has {x.shape[1]} channels but weight {tuple(weight.shape)} "
            f"with groups={groups} "
            f"expects {c_in}"
        )
    if weight.shape[0] % groups:
        raise ValueError(f"out channels {weight.shape[0]} must be divisible by groups={groups}")
    kernel = tuple(weight.shape[2:])
    stride_t = _tuple(stride, n, "stride", 1)
    dilation_t = _tuple(dilation, n, "dilation", 1)
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0),) * n
        elif padding == "same":
            if any(s != 1 for s in stride_t):
                raise ValueError("padding='same' is only supported with stride 1")
            pads = same_padding(kernel, dilation_t)
        else:
            raise ValueError(
                f"padding must be an int, a sequence of ints, 'same' or 'valid'; got {padding!r}"
            )
    else:
        pads = tuple((p, p) for p in _tuple(padding, n, "padding", 0))
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    for axis, ((lo, hi), k, d) in enumerate(zip(pads, kernel, dilation_t, strict=True)):
        size = x.shape[2 + axis] + lo + hi
        if size < d * (k - 1) + 1:
            raise ValueError(
                f"kernel extent {d * (k - 1) + 1} (size {k}, dilation {d}) is larger than the "
                f"padded input ({size}) along spatial axis {axis}"
            )
    if phi is not None:
        if not _fits(phi.shape, weight.shape):
            raise ValueError(
                f"phi of shape {tuple(phi.shape)} does not fit weight {tuple(weight.shape)}: "
                "expected "
                f"the kernel shape {kernel} or a shape that broadcasts to the weight's"
            )
        weight = weight * phi.to(device=weight.device, dtype=weight.dtype)

    if padding_mode != "zeros":
        x = pad_nd(x, pads, padding_mode)
        pads = ((0, 0),) * n
    y = conv_nd(x, weight, bias, stride_t, pads, dilation_t, groups)
    return y.squeeze(0) if unbatched else y
