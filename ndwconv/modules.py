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

from .density import Density, DensityLike, FixedPhi, as_density
from .density.bound import check_phi_in_dtype
from .functional import _check_input, _padded_conv, _tuple

__all__ = [
    "WeightedConv1d",
    "WeightedConv2d",
    "WeightedConv3d",
    "WeightedConvNd",
    "is_weighted",
]

# Largest weight (in elements) for which training keeps Φ expanded to the weight's shape.
# Below it, a same-shape product and its backward take 0.6-0.9× the time of a (k1, …, kN)
# broadcast (whose inner loop is only k1·…·kN long); above it the two are on par within
# ±15 % either way (memory-bound), so the extra weight-sized tensor would not pay.
_EXPAND_PHI_MAX_NUMEL = 1 << 16

# nn.ConvNd's own forward (native conv, F.pad for the other padding modes), by ndim.
_NATIVE_FORWARD = {
    1: nn.Conv1d._conv_forward,
    2: nn.Conv2d._conv_forward,
    3: nn.Conv3d._conv_forward,
}


def _module_tensors(module: nn.Module) -> list[Tensor]:
    """Every parameter and buffer of ``module`` and its children, read from their dicts
    (several times faster than ``parameters()`` and ``buffers()``)."""
    tensors = [t for t in module._parameters.values() if t is not None]
    tensors += [t for t in module._buffers.values() if t is not None]
    for child in module._modules.values():
        if child is not None:
            tensors += _module_tensors(child)
    return tensors


def _times(weight: Tensor, phi: Tensor) -> Tensor:
    """``weight ⊙ phi`` in the weight's dtype (no conversion call when they agree)."""
    return weight * (phi if phi.dtype == weight.dtype else phi.to(weight.dtype))


def _checked_times(weight: Tensor, phi: Tensor, layer: _WeightedMixin) -> Tensor:
    """``weight ⊙ phi`` when Φ is (re)built for a cache: Φ is checked in the weight's dtype.

    Only the caches' rebuilds call this, so the check costs nothing in the steady state.
    """
    converted = phi if phi.dtype == weight.dtype else phi.to(weight.dtype)
    bound = layer.phi
    if converted is not phi or not isinstance(bound, FixedPhi):  # FixedPhi checked its own
        if not bool(torch.isfinite(converted).all()):
            check_range = getattr(bound, "check_range", None)
            if callable(check_range):  # a learned Φ: the message gives its float64 peak
                check_range(bound.log_half)
            family = getattr(bound, "family", layer._density_family)
            check_phi_in_dtype(converted, family, layer.kernel_size, phi.double())
    return weight * converted


def _bind_density(family: Density, conv: _ConvNd) -> nn.Module:
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
    """Density handling shared by every weighted layer (mixed into an ``_ConvNd``).

    Besides the ``phi`` submodule, a layer holds two caches outside the ``state_dict``:
    ``_cached_weight`` (``W ⊙ Φ`` for inference) and ``_expanded_phi`` (for weights of up
    to 65,536 elements, a fixed Φ expanded to the weight's shape, which makes the
    training-time product a plain element-wise one). At most one of them is held at a
    time.
    """

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
    _parameters: dict[str, Any]
    _modules: dict[str, Any]
    _reversed_padding_repeated_twice: list[int]

    # Instance attributes the mixin adds to an nn.ConvNd (besides the ``phi`` submodule).
    _DENSITY_STATE: tuple[str, ...] = ("_density_family", "_cached_weight", "_expanded_phi")

    def set_density(self, density: DensityLike) -> _WeightedMixin:
        """Bind ``density`` to this layer's kernel shape (replacing the current one).

        Fixed families build Φ once, on the weight's device and dtype; ``Learned`` gets
        fresh parameters for this layer. Returns the layer.
        """
        family = as_density(density)
        self._attach(family, _bind_density(family, self))  # type: ignore[arg-type]
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
        self._cached_weight: tuple[tuple[Tensor, ...], tuple[int, ...], Tensor] | None = None
        self._expanded_phi: tuple[Tensor, int, torch.Size, Tensor] | None = None

    def _tensor(self, name: str) -> Tensor | None:
        """``getattr(self, name)`` for a parameter, without ``nn.Module.__getattr__``'s cost.

        Falls back to ``getattr`` when the parameter was moved out of ``_parameters``
        (parametrizations, pruning); ``functional_call`` swaps inside it, so it is seen.
        """
        params = self._parameters
        return params[name] if name in params else getattr(self, name)

    def effective_weight(self) -> Tensor:
        """``W ⊙ Φ`` of shape ``(C_out, C_in / groups, k1, …, kN)``, differentiable in W and
        in learned densities.

        In ``eval()`` mode with gradients disabled the result is cached and reused until
        the weight or the density changes: optimizer steps, ``load_state_dict``, ``.to()``,
        ``.data`` swaps, swapping the parameter and ``set_density`` all invalidate it;
        nothing is cached for inference-mode tensors or while ``torch.compile`` traces.
        """
        weight = self._tensor("weight")
        assert weight is not None
        bound = self._modules["phi"]
        if type(bound) is not FixedPhi:
            return self._generic_effective_weight(weight, bound)
        phi = bound._buffers["phi"]
        if torch.compiler.is_compiling():
            return _times(weight, phi)
        if self.training or torch.is_grad_enabled():
            if weight.numel() <= _EXPAND_PHI_MAX_NUMEL:
                return weight * self._expanded(weight, phi)
            return _times(weight, phi)
        cached = self._cached_weight
        if (
            cached is not None
            and cached[0][0] is weight
            and cached[0][1] is phi
            and cached[1] == (weight._version, weight.data_ptr(), phi._version)
        ):
            return cached[2]
        product = _checked_times(weight, phi, self)
        if not (weight.is_inference() or phi.is_inference()):
            self._cached_weight = (
                (weight, phi),
                (weight._version, weight.data_ptr(), phi._version),
                product,
            )
            self._expanded_phi = None
        return product

    def _expanded(self, weight: Tensor, phi: Tensor) -> Tensor:
        """A fixed Φ expanded to ``weight.shape`` and made contiguous, kept until Φ or the
        weight's shape or dtype change: ``W ⊙ Φ`` and its backward then run as plain
        element-wise products, which a ``(k1, …, kN)`` broadcast is not."""
        entry = self._expanded_phi
        if (
            entry is not None
            and entry[0] is phi
            and entry[1] == phi._version
            and entry[2] == weight.shape
            and entry[3].dtype == weight.dtype
        ):
            return entry[3]
        if phi.dtype != weight.dtype:
            check_phi_in_dtype(
                phi.to(weight.dtype), self._density_family, self.kernel_size, phi.double()
            )
        full = phi.to(weight.dtype).expand(weight.shape).contiguous()
        if not phi.is_inference():
            self._expanded_phi = (phi, phi._version, weight.shape, full)
            self._cached_weight = None
        return full

    def _generic_effective_weight(self, weight: Tensor, bound: nn.Module) -> Tensor:
        """``W ⊙ Φ`` for learned and user densities: Φ comes from calling the module."""
        if self.training or torch.is_grad_enabled() or torch.compiler.is_compiling():
            return _times(weight, bound())
        tensors = (weight, *_module_tensors(bound))
        if any(t.is_inference() for t in tensors):
            return _times(weight, bound())
        state = tuple(v for t in tensors for v in (t._version, t.data_ptr()))
        cached = self._cached_weight
        if (
            cached is not None
            and len(cached[0]) == len(tensors)
            and all(a is b for a, b in zip(cached[0], tensors, strict=True))
            and cached[1] == state
        ):
            return cached[2]
        product = _checked_times(weight, bound(), self)
        self._cached_weight = (tensors, state, product)
        return product

    def _pads(self) -> tuple[tuple[int, int], ...]:
        """``(left, right)`` padding per spatial axis, as ``nn.ConvNd`` resolved it."""
        r = self._reversed_padding_repeated_twice
        n = len(self.kernel_size)
        return tuple((r[2 * (n - 1 - i)], r[2 * (n - 1 - i) + 1]) for i in range(n))

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """The convolution itself: ``nn.ConvNd``'s own code for N ≤ 3, ``conv_nd`` above.

        The layer's arguments were checked when it was built, so N ≤ 3 goes straight to
        the native convolution; only when that fails is the input checked, to replace
        PyTorch's message by one that names the problem.
        """
        native = _NATIVE_FORWARD.get(len(self.kernel_size))
        if native is None:
            pads = self._pads()
            _check_input(input, weight.shape, self.groups, pads, self.dilation, self.padding_mode)
            return _padded_conv(
                input,
                weight,
                bias,
                self.stride,
                pads,
                self.dilation,
                self.groups,
                self.padding_mode,
            )
        try:
            return native(self, input, weight, bias)
        except RuntimeError:
            _check_input(
                input, weight.shape, self.groups, self._pads(), self.dilation, self.padding_mode
            )
            raise

    def forward(self, input: Tensor) -> Tensor:
        """``conv(input, W ⊙ Φ) + b``: ``(B, C_in, *spatial)`` or ``(C_in, *spatial)`` in,
        ``(B, C_out, *out_spatial)`` or ``(C_out, *out_spatial)`` out."""
        return self._conv_forward(input, self.effective_weight(), self._tensor("bias"))

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        # .to(), .half(), .cuda(), … give the weight and Φ new storage: drop both caches.
        out = super()._apply(fn, recurse)  # type: ignore[misc]
        self.invalidate_cache()
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, density={self.density!s}"  # type: ignore[misc]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # type: ignore[misc]
        state["_cached_weight"] = None
        state["_expanded_phi"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        self.invalidate_cache()  # also gives layers pickled by older versions both caches


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
