"""Weighted convolution layers: ``nn.ConvNd`` whose kernel is scaled by a density Φ.

``WeightedConv1d/2d/3d`` subclass ``nn.Conv1d/2d/3d`` (same arguments plus ``density=``,
so ``isinstance`` checks, model surgery and pretrained weights keep working);
``WeightedConvNd(ndim, …)`` covers any number of spatial dimensions. The effective
kernel ``W ⊙ Φ`` is derived in ``forward`` with differentiable ops (Cammarasana & Patanè,
arXiv 2505.24558).

``state_dict`` keys: with a fixed density (``Table``, ``Gaussian``, ``Ones``, a user
family) exactly those of ``nn.ConvNd`` (``weight``, ``bias``), since Φ lives in a
non-persistent buffer; a ``Learned`` density adds its parameters under ``phi.*``, which
``freeze`` and ``fold`` remove. No key depends on train/eval mode or on the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from .density import Density, DensityLike, as_density
from .functional import _tuple, weighted_conv

__all__ = [
    "WeightedConv1d",
    "WeightedConv2d",
    "WeightedConv3d",
    "WeightedConvNd",
    "is_weighted",
]


def bind_density(family: Density, conv: _ConvNd) -> nn.Module:
    """``family`` bound to ``conv``'s kernel shape, dilation, device and dtype.

    Raises:
        ValueError: the family cannot describe this kernel (its own message).
        TypeError: ``family.bind`` did not return an ``nn.Module``.
    """
    module = family.bind(
        conv.kernel_size, conv.dilation, dtype=conv.weight.dtype, device=conv.weight.device
    )
    if not isinstance(module, nn.Module):
        raise TypeError(f"{type(family).__name__}.bind() must return an nn.Module, got {module!r}")
    return module


class _WeightedMixin:
    """Density handling shared by every weighted layer (mixed into an ``_ConvNd``)."""

    weight: Tensor
    bias: Tensor | None
    kernel_size: tuple[int, ...]
    dilation: tuple[int, ...]
    stride: tuple[int, ...]
    padding: Any
    groups: int
    padding_mode: str
    training: bool
    phi: nn.Module

    # Instance attributes the mixin adds to an nn.ConvNd (besides the ``phi`` submodule).
    _DENSITY_STATE: tuple[str, ...] = ("_density_family", "_cached_weight")

    def set_density(self, density: DensityLike) -> _WeightedMixin:
        """Bind ``density`` to this layer's kernel shape (replacing the current one).

        Fixed families build Φ once, on the weight's device and dtype; ``Learned`` gets
        fresh parameters for this layer. Returns the layer.
        """
        family = as_density(density)
        self._attach(family, bind_density(family, self))  # type: ignore[arg-type]
        return self

    def _attach(self, family: Density, module: nn.Module) -> None:
        """Make ``module`` (``family`` bound to this layer) the layer's density."""
        self.phi = module
        self._density_family = family
        self.invalidate_cache()

    def _detach_density(self) -> None:
        """Remove the density and every attribute the mixin added (before a class switch)."""
        del self.phi
        for name in self._DENSITY_STATE:
            self.__dict__.pop(name, None)

    @property
    def density(self) -> Density:
        """The density family of this layer (for ``Learned``: initialised at its current values)."""
        spec = getattr(self.phi, "spec", None)
        return spec() if callable(spec) else self._density_family

    def invalidate_cache(self) -> None:
        """Drop the cached inference kernel (only needed after in-place edits through
        ``.data``, which bypass the version counter)."""
        self._cached_weight: tuple[tuple, Tensor] | None = None

    def _cache_key(self) -> tuple | None:
        """The tensors W⊙Φ is made of, with their storage and version; None: do not cache.

        Holding the tensors themselves (compared with ``is``) rules out a new tensor that
        reuses a freed one's ``id``; ``data_ptr`` catches ``.data`` swaps (``.to()``,
        pruning), ``_version`` in-place updates (optimizer steps, ``load_state_dict``).
        """
        tensors = (self.weight, *self.phi.parameters(), *self.phi.buffers())
        if any(t.is_inference() for t in tensors):
            return None  # inference tensors have no version counter
        return tuple((t, t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)

    @staticmethod
    def _same_key(a: tuple, b: tuple) -> bool:
        return len(a) == len(b) and all(
            x[0] is y[0] and x[1:] == y[1:] for x, y in zip(a, b, strict=True)
        )

    def effective_weight(self) -> Tensor:
        """``W ⊙ Φ``, differentiable in W and in learned densities.

        In ``eval()`` mode under ``torch.no_grad()`` the result is cached and reused until the
        weight (or a density parameter) changes: optimizer steps, ``load_state_dict`` and
        ``.to()``, ``.data`` swaps and swapping the parameter all invalidate it; nothing is
        cached for inference-mode tensors.
        """
        if self.training or torch.is_grad_enabled() or torch.compiler.is_compiling():
            return self.weight * self.phi().to(self.weight.dtype)
        key = self._cache_key()
        cached = getattr(self, "_cached_weight", None)
        if key is not None and cached is not None and self._same_key(cached[0], key):
            return cached[1]
        w = self.weight * self.phi().to(self.weight.dtype)
        self._cached_weight = None if key is None else (key, w)
        return w

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return weighted_conv(
            input,
            weight,
            bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            padding_mode=self.padding_mode,
        )

    def forward(self, input: Tensor) -> Tensor:
        return self._conv_forward(input, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, density={self.density!s}"  # type: ignore[misc]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]
        state = dict(state)
        state["_cached_weight"] = None
        return state


class WeightedConv1d(_WeightedMixin, nn.Conv1d):
    """``nn.Conv1d`` with its kernel scaled by a density: ``conv1d(x, W ⊙ Φ) + b``.

    Same arguments as ``nn.Conv1d`` plus keyword ``density`` (a ``Density``, a spec string,
    a list of values; default ``Table.default()``). Shapes: ``(B, C_in, L)`` or ``(C_in, L)``.

    Example:
        >>> from ndwconv import Learned
        >>> conv = WeightedConv1d(8, 8, 7, padding=3, density=Learned([0.25, 0.15, 0.55]))
        >>> conv(torch.randn(2, 8, 100)).shape
        torch.Size([2, 8, 100])
    """

    def __init__(self, *args: Any, density: DensityLike = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.set_density(density)


class WeightedConv2d(_WeightedMixin, nn.Conv2d):
    """``nn.Conv2d`` with its kernel scaled by a density: ``conv2d(x, W ⊙ Φ) + b``.

    Same arguments as ``nn.Conv2d`` plus keyword ``density``. Shapes ``(B, C_in, H, W)`` or
    ``(C_in, H, W)``. Anisotropic kernels take one profile per axis.

    Example:
        >>> from ndwconv import Table
        >>> table = Table({3: [0.7], 5: [0.2, 0.8]})
        >>> conv = WeightedConv2d(3, 16, (3, 5), padding="same", density=table)
        >>> conv(torch.randn(1, 3, 32, 32)).shape
        torch.Size([1, 16, 32, 32])
    """

    def __init__(self, *args: Any, density: DensityLike = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.set_density(density)


class WeightedConv3d(_WeightedMixin, nn.Conv3d):
    """``nn.Conv3d`` with its kernel scaled by a density: ``conv3d(x, W ⊙ Φ) + b``.

    Same arguments as ``nn.Conv3d`` plus keyword ``density``. Shapes ``(B, C_in, D, H, W)``
    or ``(C_in, D, H, W)``.

    Example:
        >>> from ndwconv import Gaussian
        >>> mm = Gaussian(1.2, spacing=(3.0, 1.0, 1.0))   # σ = 1.2 mm on 3×1×1 mm voxels
        >>> conv = WeightedConv3d(1, 4, (3, 5, 5), padding="same", density=mm)
        >>> conv(torch.randn(1, 1, 8, 16, 16)).shape
        torch.Size([1, 4, 8, 16, 16])
    """

    def __init__(self, *args: Any, density: DensityLike = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.set_density(density)


class WeightedConvNd(_WeightedMixin, _ConvNd):
    """Weighted convolution over any number ``ndim ≥ 1`` of spatial dimensions.

    Arguments as ``nn.Conv3d`` with ``ndim`` first; ``state_dict`` keys ``weight`` and
    ``bias`` as every ``nn.ConvNd`` (plus ``phi.*`` with a ``Learned`` density). Shapes
    ``(B, C_in, *spatial)`` or ``(C_in, *spatial)`` with ``ndim`` spatial axes. For
    ``ndim ≤ 3`` it computes exactly what the matching ``WeightedConv{1,2,3}d`` computes;
    for ``ndim ≥ 4`` it sums (N-1)-D convolutions over the taps of the first axis. Every
    padding mode works in every ``ndim``.

    Example:
        >>> conv = WeightedConvNd(4, 2, 4, 3, padding=1, density=[0.8])   # 3-D + time
        >>> conv(torch.randn(1, 2, 6, 8, 8, 8)).shape
        torch.Size([1, 4, 6, 8, 8, 8])
    """

    def __init__(
        self,
        ndim: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: str | int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        density: DensityLike = None,
    ):
        if isinstance(ndim, bool) or not isinstance(ndim, int) or ndim < 1:
            raise ValueError(f"ndim must be an int ≥ 1, got {ndim!r}")
        self.ndim = ndim
        padding_t = padding if isinstance(padding, str) else _tuple(padding, ndim, "padding", 0)
        super().__init__(
            in_channels,
            out_channels,
            _tuple(kernel_size, ndim, "kernel_size", 1),
            _tuple(stride, ndim, "stride", 1),
            padding_t,
            _tuple(dilation, ndim, "dilation", 1),
            False,
            (0,) * ndim,
            groups,
            bias,
            padding_mode,
            device=device,
            dtype=dtype,
        )
        self.set_density(density)

    _DENSITY_STATE = (*_WeightedMixin._DENSITY_STATE, "ndim")

    def extra_repr(self) -> str:
        return f"ndim={self.ndim}, {super().extra_repr()}"


WEIGHTED_BY_PLAIN: dict[type[nn.Module], type[_WeightedMixin]] = {
    nn.Conv1d: WeightedConv1d,
    nn.Conv2d: WeightedConv2d,
    nn.Conv3d: WeightedConv3d,
}


def is_weighted(module: nn.Module) -> bool:
    """Whether ``module`` is one of ndwconv's weighted convolution layers."""
    return isinstance(module, _WeightedMixin)
