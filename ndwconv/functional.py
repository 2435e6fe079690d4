"""Functional weighted convolution for any number of spatial dimensions.

``weighted_conv(x, weight, phi)`` computes ``conv(x, weight ⊙ phi) + bias`` with the
semantics of ``torch.nn.functional.conv{1,2,3}d`` (cross-correlation, as in PyTorch).
For N ≤ 3 spatial dimensions it calls the native convolution; for N ≥ 4 it computes a
batched sum of (N-1)-D convolutions, one per tap of the first spatial axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["PADDING_MODES", "conv_nd", "pad_nd", "same_padding", "weighted_conv"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

_NATIVE = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

IntOrSeq = int | Sequence[int]


def _tuple(value: IntOrSeq, n: int, name: str, minimum: int) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {value!r}")
    if isinstance(value, int):
        out = (value,) * n
    elif isinstance(value, Sequence) and not isinstance(value, str):
        out = tuple(value)
        if len(out) == 1 and n != 1:
            out = out * n
        if len(out) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in out):
            raise ValueError(f"{name} must be an int or a sequence of {n} ints, got {value!r}")
    else:
        raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {value!r}")
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


def pad_nd(x: Tensor, pads: Sequence[tuple[int, int]], mode: str) -> Tensor:
    """Pad the trailing ``len(pads)`` axes of ``x`` by ``(left, right)`` each.

    ``mode`` is one of ``zeros``, ``reflect`` (mirror without repeating the edge),
    ``replicate`` (repeat the edge) or ``circular`` (wrap around), for any number of axes.
    Differentiable; built from index gathers so it is not limited to 3 axes.
    """
    if mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {mode!r}")
    n = len(pads)
    if not any(lo or hi for lo, hi in pads):
        return x
    if mode == "zeros":
        flat = [p for lo_hi in reversed(pads) for p in lo_hi]
        return F.pad(x, flat)
    for i, (lo, hi) in enumerate(pads):
        if not (lo or hi):
            continue
        dim = x.dim() - n + i
        size = x.shape[dim]
        idx = torch.arange(-lo, size + hi, device=x.device)
        if mode == "reflect":
            if lo >= size or hi >= size:
                raise ValueError(
                    f"padding_mode='reflect' needs padding < input size; axis {i} has size {size} "
                    f"and padding ({lo}, {hi})"
                )
            period = 2 * (size - 1)
            if period == 0:
                idx = torch.zeros_like(idx)
            else:
                idx = idx.remainder(period)
                idx = torch.where(idx >= size, period - idx, idx)
        elif mode == "replicate":
            idx = idx.clamp(0, size - 1)
        else:  # circular
            if lo > size or hi > size:
                raise ValueError(
                    f"padding_mode='circular' needs padding ≤ input size; axis {i} has size {size} "
                    f"and padding ({lo}, {hi})"
                )
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
    stride: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> Tensor:
    """Unpadded batched convolution for any N ≥ 1 (no bias, no checks).

    N ≤ 3 uses ``F.conv{N}d``. Above, the first spatial axis is unrolled over its ``k``
    taps: tap ``j`` sees the input planes ``j·d, j·d + s, …`` folded into the batch and is
    an (N-1)-D convolution with ``weight[:, :, j]``; the outputs are summed.
    """
    n = weight.dim() - 2
    if n in _NATIVE:
        return _NATIVE[n](x, weight, None, tuple(stride), 0, tuple(dilation), groups)
    b, c = x.shape[:2]
    k0, s0, d0 = weight.shape[2], stride[0], dilation[0]
    out0 = (x.shape[2] - d0 * (k0 - 1) - 1) // s0 + 1
    # (B, C, D0, *rest) -> (B, D0, C, *rest): planes of the first axis next to the batch.
    xt = x.movedim(2, 1)
    acc = None
    for j in range(k0):
        start = j * d0
        planes = xt[:, start : start + s0 * (out0 - 1) + 1 : s0]
        planes = planes.reshape(b * out0, c, *x.shape[3:])
        y = conv_nd(planes, weight[:, :, j], stride[1:], dilation[1:], groups)
        acc = y if acc is None else acc + y
    assert acc is not None
    acc = acc.reshape(b, out0, *acc.shape[1:])
    return acc.movedim(1, 2).contiguous()


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

    if n in _NATIVE and padding_mode == "zeros":
        pad_arg: str | tuple[int, ...]
        if all(lo == hi for lo, hi in pads):
            pad_arg = tuple(lo for lo, _ in pads)
        else:
            pad_arg = "same"  # only asymmetric case: 'same' with an even total
        y = _NATIVE[n](x, weight, bias, stride_t, pad_arg, dilation_t, groups)
    else:
        y = conv_nd(pad_nd(x, pads, padding_mode), weight, stride_t, dilation_t, groups)
        if bias is not None:
            y = y + bias.reshape(1, -1, *([1] * n))
    return y.squeeze(0) if unbatched else y
