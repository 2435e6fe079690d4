"""Functional weighted convolution for any number of spatial dimensions.

``weighted_conv(input, weight, bias, stride, padding, dilation, groups, phi=phi)``
computes ``conv(input, weight ⊙ phi) + bias`` with the arguments and semantics of
``torch.nn.functional.conv{1,2,3}d`` (cross-correlation, as in PyTorch); ``phi`` and
``padding_mode`` are keyword-only, so ``weighted_conv(x, w, b)`` means what
``F.conv2d(x, w, b)`` means. For N ≤ 3 spatial dimensions it calls the native
convolution; for N ≥ 4 it computes a batched sum of (N-1)-D convolutions, one per tap of
the first spatial axis.
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
    _check_mode_padding(x.shape[x.dim() - n :], pads, mode)
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


def _check_mode_padding(spatial: Sequence[int], pads: Sequence[tuple[int, int]], mode: str) -> None:
    """Raise ValueError where ``reflect``/``circular`` padding exceeds what the input allows."""
    for i, ((lo, hi), size) in enumerate(zip(pads, spatial, strict=True)):
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


def _check_input(
    input: Tensor,
    weight_shape: Sequence[int],
    groups: int,
    pads: Sequence[tuple[int, int]],
    dilation: Sequence[int],
    padding_mode: str = "zeros",
) -> None:
    """Raise a ValueError naming the problem if ``input`` does not fit a convolution.

    Checks the rank (``(B, C_in, *spatial)`` or ``(C_in, *spatial)``), the channel count
    against ``weight_shape`` and ``groups``, that the kernel extent fits the padded input,
    and the limits of ``reflect``/``circular`` padding. ``pads`` holds ``(left, right)``
    per spatial axis.
    """
    n = len(weight_shape) - 2
    if input.dim() not in (n + 1, n + 2):
        raise ValueError(
            f"expected input of shape (B, C, *spatial) or (C, *spatial) with {n} spatial "
            f"dim(s), i.e. {n + 2}-D or {n + 1}-D; got {input.dim()}-D input of shape "
            f"{tuple(input.shape)}"
        )
    channels = input.shape[input.dim() - n - 1]
    c_in = weight_shape[1] * groups
    if channels != c_in:
        raise ValueError(
            f"input has {channels} channels but weight {tuple(weight_shape)} with "
            f"groups={groups} expects {c_in}"
        )
    spatial = input.shape[input.dim() - n :]
    for axis, ((lo, hi), k, d, size) in enumerate(
        zip(pads, weight_shape[2:], dilation, spatial, strict=True)
    ):
        if size + lo + hi < d * (k - 1) + 1:
            raise ValueError(
                f"kernel extent {d * (k - 1) + 1} (size {k}, dilation {d}) is larger than the "
                f"padded input ({size + lo + hi}) along spatial axis {axis}"
            )
    if padding_mode != "zeros":
        _check_mode_padding(spatial, pads, padding_mode)


def _padded_conv(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: Sequence[int],
    pads: Sequence[tuple[int, int]],
    dilation: Sequence[int],
    groups: int,
    padding_mode: str,
) -> Tensor:
    """``conv_nd`` for batched or unbatched input and every padding mode (no checks).

    Shapes as ``weighted_conv``; ``pads`` holds ``(left, right)`` per spatial axis.
    """
    unbatched = input.dim() == weight.dim() - 1
    if unbatched:
        input = input.unsqueeze(0)
    if padding_mode != "zeros":
        input = pad_nd(input, pads, padding_mode)
        pads = ((0, 0),) * len(pads)
    y = conv_nd(input, weight, bias, stride, pads, dilation, groups)
    return y.squeeze(0) if unbatched else y


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
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq | str = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
    *,
    phi: Tensor | None = None,
    padding_mode: str = "zeros",
) -> Tensor:
    """Weighted convolution ``conv(input, weight ⊙ phi) + bias`` for any number of dims.

    The positional arguments are those of ``torch.nn.functional.conv{1,2,3}d``, in the
    same order; the density ``phi`` and ``padding_mode`` are keyword-only.

    Args:
        input: ``(B, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``, N spatial axes.
        weight: ``(C_out, C_in / groups, k1, …, kN)``.
        bias: ``(C_out,)`` or ``None``.
        stride: an int or one per axis, ≥ 1.
        padding: an int or one per axis (symmetric), or ``"same"`` / ``"valid"``.
        dilation: an int or one per axis, ≥ 1.
        groups: number of channel groups.
        phi: density of shape exactly ``weight.shape[2:]`` = ``(k1, …, kN)``, on the
            weight's device and with its dtype; ``None`` means no weighting.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.

    Returns:
        ``(B, C_out, *out_spatial)`` (unbatched in, unbatched out).

    Raises:
        TypeError: ``input``, ``weight``, ``bias`` or ``phi`` is not a tensor, or ``phi``
            has another dtype than ``weight``.
        ValueError: wrong input rank, channels that do not match ``weight`` and ``groups``,
            a ``bias`` that is not ``(C_out,)``, a ``phi`` whose shape is not the kernel's
            or that lies on another device than ``weight``, ``"same"`` with stride > 1, or
            a kernel larger than the padded input.

    Example:
        >>> x = torch.randn(2, 3, 8, 8, 8, 8)                     # 4 spatial dims
        >>> w = torch.randn(5, 3, 3, 3, 3, 3)
        >>> weighted_conv(x, w, padding=1, phi=torch.ones(3, 3, 3, 3)).shape
        torch.Size([2, 5, 8, 8, 8, 8])
        >>> b = torch.randn(3)                       # positional order of F.conv2d
        >>> w2 = torch.randn(3, 2, 3, 3)
        >>> x2 = torch.randn(1, 2, 6, 6)
        >>> torch.allclose(weighted_conv(x2, w2, b), F.conv2d(x2, w2, b))
        True
    """
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        raise TypeError(
            "weighted_conv: input and weight must be tensors, got "
            f"{type(input).__name__} and {type(weight).__name__}"
        )
    n = weight.dim() - 2
    if n < 1:
        raise ValueError(
            "weight must have shape (C_out, C_in/groups, k1, …, kN) with N ≥ 1, "
            f"got {tuple(weight.shape)}"
        )
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if weight.shape[0] % groups:
        raise ValueError(f"out channels {weight.shape[0]} must be divisible by groups={groups}")
    if bias is not None:
        if not isinstance(bias, Tensor):
            raise TypeError(f"bias must be a tensor of shape (C_out,) or None, got {bias!r}")
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(
                f"bias must have shape (C_out,) = ({weight.shape[0]},) for weight "
                f"{tuple(weight.shape)}, got {tuple(bias.shape)}"
            )
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
    _check_input(input, weight.shape, groups, pads, dilation_t, padding_mode)
    if phi is not None:
        if not isinstance(phi, Tensor):
            raise TypeError(
                f"phi must be a tensor of the kernel's spatial shape {kernel} or None, "
                f"got {type(phi).__name__}"
            )
        if tuple(phi.shape) != kernel:
            raise ValueError(
                f"phi must have the kernel's spatial shape weight.shape[2:] = {kernel}, "
                f"got {tuple(phi.shape)}"
            )
        if phi.device != weight.device:
            raise ValueError(
                f"phi is on device {phi.device} but weight is on {weight.device}; "
                "move it with phi.to(weight)"
            )
        if phi.dtype != weight.dtype:
            raise TypeError(
                f"phi has dtype {phi.dtype} but weight has dtype {weight.dtype}; "
                "convert it with phi.to(weight)"
            )
        weight = weight * phi
    return _padded_conv(input, weight, bias, stride_t, pads, dilation_t, groups, padding_mode)
