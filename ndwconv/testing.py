"""Testing helpers: a float64 reference convolution and hypothesis strategies.

The reference (`reference_conv`) is written with NumPy only — padding by ``np.pad`` and
one multiply-accumulate per kernel tap — so it is independent of PyTorch's convolution
kernels. PyTorch's convolution is a cross-correlation; for a single channel, stride 1 and
an odd kernel with padding ``k // 2`` it equals ``scipy.ndimage.correlate`` with the mode
mapping ``zeros → 'constant'``, ``reflect → 'mirror'``, ``replicate → 'nearest'``,
``circular → 'wrap'`` (``SCIPY_MODES``).

The strategies need ``hypothesis`` (a test dependency); importing this module without it
gives only the reference.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["NUMPY_PAD_MODES", "SCIPY_MODES", "ConvCase", "conv_cases", "reference_conv"]

NUMPY_PAD_MODES = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
}
SCIPY_MODES = {"zeros": "constant", "reflect": "mirror", "replicate": "nearest", "circular": "wrap"}


def _per_axis(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    return (int(value),) * n if np.isscalar(value) else tuple(int(v) for v in value)


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
        phi: optional density of shape ``kernel``, multiplied into ``weight`` first.
        padding: per-axis ints, ``"valid"`` or ``"same"`` (extra voxel on the right).

    Returns:
        ``(B, C_out, *out_spatial)`` in float64.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if phi is not None:
        w = w * np.asarray(phi, dtype=np.float64)
    n = w.ndim - 2
    kernel = w.shape[2:]
    s = _per_axis(stride, n)
    d = _per_axis(dilation, n)
    if padding == "valid":
        pads = [(0, 0)] * n
    elif padding == "same":
        pads = [
            (dd * (k - 1) // 2, dd * (k - 1) - dd * (k - 1) // 2)
            for k, dd in zip(kernel, d, strict=True)
        ]
    else:
        pads = [(p, p) for p in _per_axis(padding, n)]
    xp = np.pad(x, [(0, 0), (0, 0), *pads], mode=NUMPY_PAD_MODES[padding_mode])
    out_shape = [(xp.shape[2 + i] - d[i] * (kernel[i] - 1) - 1) // s[i] + 1 for i in range(n)]
    b, c_out = x.shape[0], w.shape[0]
    cig, cog = w.shape[1], c_out // groups
    y = np.zeros((b, c_out, *out_shape))
    for tap in itertools.product(*(range(k) for k in kernel)):
        window = tuple(
            slice(t * d[i], t * d[i] + s[i] * (out_shape[i] - 1) + 1, s[i])
            for i, t in enumerate(tap)
        )
        xs = xp[(slice(None), slice(None), *window)]
        for g in range(groups):
            wt = w[(slice(g * cog, (g + 1) * cog), slice(None), *tap)]
            y[:, g * cog : (g + 1) * cog] += np.einsum(
                "bc...,oc->bo...", xs[:, g * cig : (g + 1) * cig], wt
            )
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64).reshape(1, -1, *([1] * n))
    return y


@dataclass(frozen=True)
class ConvCase:
    """One valid convolution configuration with its input size.

    ``layer_kwargs`` are the keyword arguments of ``nn.ConvNd`` / ``WeightedConvNd``
    (without ``ndim``); ``functional_kwargs`` those of ``weighted_conv`` and
    ``reference_conv``.
    """

    ndim: int
    batch: int
    in_channels: int
    out_channels: int
    groups: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...] | str
    dilation: tuple[int, ...]
    padding_mode: str
    bias: bool
    spatial: tuple[int, ...]
    density_values: tuple[tuple[float, ...], ...] = field(default=())

    @property
    def layer_kwargs(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "bias": self.bias,
            "padding_mode": self.padding_mode,
        }

    @property
    def functional_kwargs(self) -> dict[str, Any]:
        return {
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "padding_mode": self.padding_mode,
        }

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.in_channels, *self.spatial)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def arrays(self, seed: int = 0) -> dict[str, np.ndarray | None]:
        """Seeded float64 ``x``, ``weight``, ``bias`` (or None) and ``phi`` for this case."""
        rng = np.random.default_rng(seed)
        phi = None
        if self.density_values:
            profiles = [
                np.concatenate([np.asarray(v), [1.0], np.asarray(v)[::-1]])
                for v in self.density_values
            ]
            phi = profiles[0]
            for p in profiles[1:]:
                phi = np.multiply.outer(phi, p)
        return {
            "x": rng.standard_normal(self.input_shape),
            "weight": rng.standard_normal(self.weight_shape),
            "bias": rng.standard_normal(self.out_channels) if self.bias else None,
            "phi": phi,
        }


try:
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    st = None  # type: ignore[assignment]


def conv_cases(
    ndim: int | tuple[int, int] = (1, 3),
    max_kernel: int = 5,
    max_size: int = 9,
    groups: bool = True,
    dilation: bool = True,
    odd_kernels: bool = False,
    max_channels_per_group: int = 3,
) -> Any:
    """Hypothesis strategy of always-valid ``ConvCase`` objects (shrinks to small ones).

    Args:
        ndim: a number of spatial dims or an inclusive range ``(lo, hi)``.
        max_kernel: largest kernel size per axis.
        max_size: largest input size per axis.
        groups: draw groups > 1.
        dilation: draw dilation > 1.
        odd_kernels: only odd kernel sizes (and so a symmetric density per axis).
        max_channels_per_group: channel count bound per group.
    """
    if st is None:
        raise ImportError("ndwconv.testing.conv_cases needs hypothesis (pip install hypothesis)")
    lo, hi = (ndim, ndim) if isinstance(ndim, int) else ndim

    @st.composite
    def build(draw: Any) -> ConvCase:
        n = draw(st.integers(lo, hi))
        g = draw(st.integers(1, 3)) if groups else 1
        cin = g * draw(st.integers(1, max_channels_per_group))
        cout = g * draw(st.integers(1, max_channels_per_group))
        ksizes = (
            st.integers(0, (max_kernel - 1) // 2).map(lambda m: 2 * m + 1)
            if odd_kernels
            else st.integers(1, max_kernel)
        )
        kernel = tuple(draw(ksizes) for _ in range(n))
        dil = tuple(draw(st.integers(1, 2)) if dilation else 1 for _ in range(n))
        mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
        use_same = draw(st.booleans())
        if use_same:
            stride = (1,) * n
        else:
            stride = tuple(draw(st.integers(1, 2)) for _ in range(n))
        spatial = []
        pads = []
        for i in range(n):
            extent = dil[i] * (kernel[i] - 1) + 1
            size = draw(st.integers(max(1, extent - 2 * (extent // 2)), max(max_size, extent)))
            if use_same:
                total = dil[i] * (kernel[i] - 1)
                lo_pad, hi_pad = total // 2, total - total // 2
                pad = None
            else:
                pad = draw(st.integers(max(0, -(-(extent - size) // 2)), extent // 2))
                lo_pad = hi_pad = pad
            if mode == "reflect":
                size = max(size, max(lo_pad, hi_pad) + 1)
            elif mode == "circular":
                size = max(size, lo_pad, hi_pad, 1)
            size = max(size, extent - lo_pad - hi_pad)
            spatial.append(size)
            pads.append(pad)
        padding: tuple[int, ...] | str = "same" if use_same else tuple(int(p) for p in pads)
        density = (
            tuple(tuple(draw(st.floats(0.05, 2.0)) for _ in range(k // 2)) for k in kernel)
            if all(k % 2 for k in kernel)
            else ()
        )
        return ConvCase(
            ndim=n,
            batch=draw(st.integers(1, 2)),
            in_channels=cin,
            out_channels=cout,
            groups=g,
            kernel_size=kernel,
            stride=stride,
            padding=padding,
            dilation=dil,
            padding_mode=mode,
            bias=draw(st.booleans()),
            spatial=tuple(spatial),
            density_values=density,
        )

    return build()
