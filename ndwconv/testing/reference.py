"""A float64 NumPy reference of N-D convolution, independent of PyTorch's kernels.

``reference_conv`` is the forward cross-correlation with PyTorch's stride / padding /
dilation / groups semantics and every padding mode; ``reference_conv_transpose`` is its
exact adjoint. Padding uses ``np.pad`` and the sums run tap by tap. PyTorch's convolution
is a cross-correlation: for one channel, stride 1 and an odd kernel padded by ``k // 2``
it equals ``scipy.ndimage.correlate(x, w, mode=...)`` with the modes of ``SCIPY_MODES``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

__all__ = ["NUMPY_PAD_MODES", "SCIPY_MODES", "reference_conv", "reference_conv_transpose"]


NUMPY_PAD_MODES = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
}
SCIPY_MODES = {"zeros": "constant", "reflect": "mirror", "replicate": "nearest", "circular": "wrap"}


def _per_axis(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    return (int(value),) * n if np.isscalar(value) else tuple(int(v) for v in value)


def _reference_geometry(
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: int | Sequence[int],
    padding: int | Sequence[int] | str,
    dilation: int | Sequence[int],
) -> tuple[tuple[int, ...], tuple[int, ...], list[tuple[int, int]], list[int]]:
    n = len(kernel)
    s, d = _per_axis(stride, n), _per_axis(dilation, n)
    if padding == "valid":
        pads = [(0, 0)] * n
    elif padding == "same":
        totals = [dd * (k - 1) for k, dd in zip(kernel, d, strict=True)]
        pads = [(t // 2, t - t // 2) for t in totals]
    else:
        pads = [(p, p) for p in _per_axis(padding, n)]
    out = [(spatial[i] + sum(pads[i]) - d[i] * (kernel[i] - 1) - 1) // s[i] + 1 for i in range(n)]
    return s, d, pads, out


def _windows(kernel, s, d, out):
    """``(tap, slices)``: the input positions each kernel tap meets, for every output."""
    for tap in itertools.product(*(range(k) for k in kernel)):
        yield (
            tap,
            tuple(
                slice(t * d[i], t * d[i] + s[i] * (out[i] - 1) + 1, s[i]) for i, t in enumerate(tap)
            ),
        )


def _weighted(weight: np.ndarray, phi: np.ndarray | None) -> np.ndarray:
    """``weight ⊙ phi`` in float64 (``weight`` alone without ``phi``)."""
    w = np.asarray(weight, dtype=np.float64)
    return w if phi is None else w * np.asarray(phi, dtype=np.float64)


def reference_conv(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    phi: np.ndarray | None = None,
) -> np.ndarray:
    """Float64 N-D cross-correlation with PyTorch's argument semantics, in NumPy.

    Args:
        x: ``(B, C_in, *spatial)``.
        weight: ``(C_out, C_in / groups, *kernel)``.
        bias: ``(C_out,)`` or ``None``.
        stride, dilation: an int or one per axis.
        padding: an int, one int per axis, ``"valid"`` or ``"same"`` (an odd total puts the
            extra voxel on the right, as PyTorch does).
        groups: channel groups.
        padding_mode: ``zeros``, ``reflect``, ``replicate`` or ``circular`` (``np.pad``'s
            ``constant``, ``reflect``, ``edge``, ``wrap``).
        phi: optional density of shape ``kernel``, multiplied into ``weight`` first.

    Returns:
        ``(B, C_out, *out_spatial)`` in float64.

    Example:
        >>> x = np.arange(5.0)[None, None]
        >>> reference_conv(x, np.array([[[1.0, 0.0, -1.0]]]), padding=1)
        array([[[-1., -2., -2., -2.,  3.]]])
    """
    x = np.asarray(x, dtype=np.float64)
    w = _weighted(weight, phi)
    kernel = w.shape[2:]
    s, d, pads, out = _reference_geometry(x.shape[2:], kernel, stride, padding, dilation)
    xp = np.pad(x, [(0, 0), (0, 0), *pads], mode=NUMPY_PAD_MODES[padding_mode])
    b, c_out = x.shape[0], w.shape[0]
    cig, cog = w.shape[1], c_out // groups
    y = np.zeros((b, c_out, *out))
    for tap, window in _windows(kernel, s, d, out):
        xs = xp[(slice(None), slice(None), *window)]
        for g in range(groups):
            wt = w[(slice(g * cog, (g + 1) * cog), slice(None), *tap)]
            y[:, g * cog : (g + 1) * cog] += np.einsum(
                "bc...,oc->bo...", xs[:, g * cig : (g + 1) * cig], wt
            )
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64).reshape(1, -1, *([1] * len(kernel)))
    return y


def reference_conv_transpose(
    y: np.ndarray,
    weight: np.ndarray,
    input_spatial: Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    phi: np.ndarray | None = None,
) -> np.ndarray:
    """The exact adjoint of ``reference_conv`` without bias, in float64 NumPy.

    ``⟨reference_conv(x, w), y⟩ = ⟨x, reference_conv_transpose(y, w, x.shape[2:])⟩`` for
    every padding mode: the taps scatter ``y`` back onto the padded input, and each padded
    position is added to the input voxel that ``np.pad`` copied it from (dropped for
    zeros). With zero padding this is PyTorch's ``conv_transpose`` with the matching
    ``output_padding``.

    Args:
        y: ``(B, C_out, *out_spatial)``.
        weight: ``(C_out, C_in / groups, *kernel)``.
        input_spatial: the spatial shape of the forward input.

    Returns:
        ``(B, C_in, *input_spatial)`` in float64.
    """
    y = np.asarray(y, dtype=np.float64)
    w = _weighted(weight, phi)
    kernel = w.shape[2:]
    n = len(kernel)
    s, d, pads, out = _reference_geometry(tuple(input_spatial), kernel, stride, padding, dilation)
    if list(y.shape[2:]) != out:
        raise ValueError(f"y has spatial shape {y.shape[2:]}, the forward output is {tuple(out)}")
    b, c_out = y.shape[:2]
    cig, cog = w.shape[1], c_out // groups
    padded = [input_spatial[i] + sum(pads[i]) for i in range(n)]
    gp = np.zeros((b, cig * groups, *padded))
    for tap, window in _windows(kernel, s, d, out):
        for g in range(groups):
            wt = w[(slice(g * cog, (g + 1) * cog), slice(None), *tap)]
            gp[(slice(None), slice(g * cig, (g + 1) * cig), *window)] += np.einsum(
                "bo...,oc->bc...", y[:, g * cog : (g + 1) * cog], wt
            )
    # adjoint of the padding: send every padded position back to its source voxel
    for axis in range(n):
        size = input_spatial[axis]
        if padding_mode == "zeros":
            source = np.pad(np.arange(size), pads[axis], mode="constant", constant_values=-1)
        else:
            source = np.pad(np.arange(size), pads[axis], mode=NUMPY_PAD_MODES[padding_mode])
        moved = np.moveaxis(gp, 2 + axis, 0)
        acc = np.zeros((size, *moved.shape[1:]))
        for j, src in enumerate(source):
            if src >= 0:
                acc[src] += moved[j]
        gp = np.moveaxis(acc, 0, 2 + axis)
    return gp
