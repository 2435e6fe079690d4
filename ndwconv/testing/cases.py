"""``ConvCase``: one valid convolution configuration, its density and seeded data."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..density import Density, Ones
from .reference import _reference_geometry, reference_conv

__all__ = ["ConvCase"]


@dataclass(frozen=True)
class ConvCase:
    """One valid convolution configuration, its density and seeded data.

    Attributes:
        ndim: spatial dimensions N.
        batch, in_channels, out_channels, groups: sizes.
        kernel_size, stride, dilation: one int per axis.
        padding: one int per axis, or ``"same"``.
        padding_mode: ``zeros``, ``reflect``, ``replicate`` or ``circular``.
        bias: whether the layer has a bias.
        spatial: input size per axis.
        density: the density family (``Ones`` for unweighted cases).
        seed: seed of ``x``, ``weight``, ``bias`` and the auxiliary data of the checks.
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
    density: Density = field(default_factory=Ones)
    seed: int = 0
    use_density: bool = True

    # -- arguments --------------------------------------------------------------------
    @property
    def conv_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``nn.Conv{N}d`` (and of ``WeightedConvNd`` after ``ndim``)."""
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
    def layer_kwargs(self) -> dict[str, Any]:
        """``conv_kwargs`` plus ``density`` (unless the case was drawn without densities)."""
        kwargs = self.conv_kwargs
        if self.use_density:
            kwargs["density"] = self.density
        return kwargs

    @property
    def functional_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``weighted_conv`` and ``reference_conv``."""
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

    @property
    def output_shape(self) -> tuple[int, ...]:
        _, _, _, out = _reference_geometry(
            self.spatial, self.kernel_size, self.stride, self.padding, self.dilation
        )
        return (self.batch, self.out_channels, *out)

    # -- data ---------------------------------------------------------------------------
    def rng(self, stream: int = 0) -> np.random.Generator:
        """An independent generator per ``stream``, derived from ``seed``."""
        return np.random.default_rng([self.seed, stream])

    @functools.cached_property
    def arrays(self) -> dict[str, np.ndarray | None]:
        """Float64 ``x``, ``weight``, ``bias`` (``None`` without bias) and ``phi``."""
        rng = self.rng(0)
        return {
            "x": rng.standard_normal(self.input_shape),
            "weight": rng.standard_normal(self.weight_shape),
            "bias": rng.standard_normal(self.out_channels) if self.bias else None,
            "phi": self.phi(),
        }

    def phi(self) -> np.ndarray:
        """Φ of the case's density for its kernel, float64."""
        return self.density.build(self.kernel_size, self.dilation).double().numpy()

    def x(
        self, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
    ) -> torch.Tensor:
        """The seeded input as a tensor."""
        return torch.from_numpy(self.arrays["x"]).to(device=device, dtype=dtype)

    def reference(
        self, x: np.ndarray | None = None, weight: np.ndarray | None = None
    ) -> np.ndarray:
        """``reference_conv`` of the case (its own ``x``/``weight`` unless given)."""
        a = self.arrays
        return reference_conv(
            a["x"] if x is None else x,
            a["weight"] if weight is None else weight,
            a["bias"],
            phi=a["phi"],
            **self.functional_kwargs,
        )

    def __str__(self) -> str:
        pad = self.padding if isinstance(self.padding, str) else tuple(self.padding)
        parts = [
            f"ndim={self.ndim}",
            f"input={self.input_shape}",
            f"out_channels={self.out_channels}",
            f"kernel_size={self.kernel_size}",
            f"stride={self.stride}",
            f"padding={pad!r}",
            f"dilation={self.dilation}",
            f"groups={self.groups}",
            f"padding_mode={self.padding_mode!r}",
            f"bias={self.bias}",
        ]
        if self.use_density:
            parts.append(f"density={self.density!s}")
        return f"ConvCase({', '.join(parts)}, seed={self.seed})"
