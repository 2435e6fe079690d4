"""Property-based testing of convolution kernels, for ndwconv and for its users.

Three pieces, usable separately:

* **A float64 reference** in NumPy for any number of dimensions: ``reference_conv`` (the
  forward cross-correlation with PyTorch's stride/padding/dilation/groups semantics and
  every padding mode) and ``reference_conv_transpose`` (its exact adjoint). Padding uses
  ``np.pad`` and the sums run tap by tap, so nothing depends on PyTorch's convolution
  kernels. PyTorch's convolution is a cross-correlation: for one channel, stride 1 and an
  odd kernel padded by ``k // 2`` it equals ``scipy.ndimage.correlate(x, w, mode=...)``
  with the modes of ``SCIPY_MODES`` (``zeros → 'constant'``, ``reflect → 'mirror'``,
  ``replicate → 'nearest'``, ``circular → 'wrap'``).
* **Hypothesis strategies** of always-valid configurations: ``conv_cases`` (ndim,
  channels, groups, anisotropic kernels, stride, padding incl. ``"same"`` and every mode,
  dilation, bias, density, and seeded input/weights), ``densities`` (every built-in family
  plus those added with ``register_density_strategy``) and ``signals`` (finite arrays).
  They shrink towards small cases: one dimension, one channel, kernel 1, no groups.
* **Property checks**: functions ``check_*(factory, case)`` that each state one property
  in their docstring and raise ``AssertionError`` with a readable message when it fails,
  ``assert_matches_reference(layer, case)``, and ``check_layer(factory, ndim)`` that runs
  the whole battery under hypothesis and returns a ``LayerReport`` naming the shrunk
  counter-example of every property that failed.

A *factory* builds a layer from ``case.layer_kwargs`` — the arguments of ``nn.ConvNd``
plus ``density=`` (leave ``density`` out with ``densities=False``); a factory that takes an
``ndim`` argument (like ``WeightedConvNd``) gets ``ndim=case.ndim`` too. The checks set
the layer's ``weight`` and ``bias`` to the case's seeded values.

Hypothesis settings: the checks use the active hypothesis profile's ``max_examples``
(100 by default) with the deadline off (a kernel's first call in torch is slow) and no
example database, unless ``check_layer(..., max_examples=...)`` says otherwise. For a long
run, register and load a larger profile (see docs/testing.md).

Example:
    >>> import ndwconv as nw
    >>> report = check_layer(nw.WeightedConvNd, ndim=2, max_examples=5,
    ...                      properties=["matches_reference", "linear_in_input"])
    >>> report.ok
    True
"""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from .convert import fold
from .density import Density, Gaussian, Learned, Ones, Table
from .functional import PADDING_MODES
from .modules import is_weighted

try:
    from hypothesis import HealthCheck, Verbosity, assume, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    st = None  # type: ignore[assignment]

__all__ = [
    "NUMPY_PAD_MODES",
    "PROPERTIES",
    "SCIPY_MODES",
    "ConvCase",
    "LayerReport",
    "PropertyResult",
    "assert_matches_reference",
    "check_adjointness",
    "check_dtype_device",
    "check_flip_symmetry",
    "check_fold_equivalence",
    "check_gradcheck",
    "check_layer",
    "check_linear_in_input",
    "check_linear_in_weight",
    "check_matches_reference",
    "check_ones_equals_conv",
    "check_state_dict_round_trip",
    "check_translation_equivariance",
    "conv_cases",
    "densities",
    "make_layer",
    "reference_conv",
    "reference_conv_transpose",
    "register_density_strategy",
    "signals",
]

NUMPY_PAD_MODES = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
}
SCIPY_MODES = {"zeros": "constant", "reflect": "mirror", "replicate": "nearest", "circular": "wrap"}


# ---------------------------------------------------------------------------------------
# Float64 reference
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------


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


_DENSITY_STRATEGIES: dict[str, Callable[[tuple[int, ...]], Any]] = {}


def register_density_strategy(name: str, strategy: Callable[[tuple[int, ...]], Any]) -> None:
    """Add a strategy for a user family to ``densities()`` (and so to ``conv_cases``).

    Args:
        name: a name for the family (shown in reports via the density's spec).
        strategy: ``kernel_size -> SearchStrategy[Density]`` giving densities valid for that
            kernel, or ``None`` where the family cannot describe it.
    """
    if not callable(strategy):
        raise TypeError(
            f"strategy must be callable kernel_size -> SearchStrategy, got {strategy!r}"
        )
    _DENSITY_STRATEGIES[name] = strategy


def _require_hypothesis() -> None:
    if st is None:
        raise ImportError("ndwconv.testing strategies need hypothesis: pip install hypothesis")


_BUILTIN_FAMILIES = ("ones", "gaussian", "table", "learned")


def _builtin_density_strategy(name: str, kernel: tuple[int, ...]) -> Any:
    """Strategy of one built-in family for ``kernel``, or ``None`` where it does not apply."""
    n = len(kernel)
    if name == "ones":
        return st.just(Ones())
    if name == "gaussian":
        sigma = st.floats(0.3, 3.0)
        return st.builds(
            Gaussian,
            st.one_of(
                st.lists(sigma, min_size=1, max_size=1), st.lists(sigma, min_size=n, max_size=n)
            ),
            st.one_of(st.none(), st.lists(st.floats(0.5, 3.0), min_size=n, max_size=n)),
        )
    if any(k % 2 == 0 for k in kernel):  # tables and learned profiles need a centre tap
        return None
    values = st.floats(0.05, 2.0, allow_nan=False, allow_infinity=False)
    tables = st.tuples(*(st.lists(values, min_size=k // 2, max_size=k // 2) for k in kernel)).map(
        lambda v: Table([list(a) for a in v])
    )
    return tables if name == "table" else tables.map(Learned)


def densities(kernel_size: Sequence[int], families: Iterable[str] | None = None) -> Any:
    """Strategy of densities valid for ``kernel_size``.

    Args:
        kernel_size: the kernel's spatial shape.
        families: restrict to these names (``ones``, ``gaussian``, ``table``, ``learned`` and
            those registered with ``register_density_strategy``); default all. Where none of
            them can describe the kernel, the draw is rejected (hypothesis tries another).

    Raises:
        ValueError: for a family name that is neither built in nor registered.
    """
    _require_hypothesis()
    kernel = tuple(int(k) for k in kernel_size)
    known = [*_BUILTIN_FAMILIES, *_DENSITY_STRATEGIES]
    wanted = known if families is None else list(families)
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ValueError(f"densities(families=...): unknown {unknown}; known {known}")
    options = []
    for name in wanted:
        if name in _DENSITY_STRATEGIES:
            strategy = _DENSITY_STRATEGIES[name](kernel)
        else:
            strategy = _builtin_density_strategy(name, kernel)
        if strategy is not None:
            options.append(strategy)
    return st.one_of(*options) if options else st.nothing()


def signals(shape: Sequence[int], dtype: Any = np.float64, bound: float = 4.0) -> Any:
    """Strategy of finite arrays of ``shape`` with every element drawn in ``[-bound, bound]``."""
    _require_hypothesis()
    width = 32 if np.dtype(dtype) == np.float32 else 64
    elements = st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=width)
    return hnp.arrays(dtype, tuple(shape), elements=elements, fill=st.nothing())


def conv_cases(
    ndim: int | tuple[int, int] = (1, 3),
    max_kernel: int = 5,
    max_size: int = 9,
    groups: bool = True,
    dilation: bool = True,
    stride: bool = True,
    padding_modes: Sequence[str] = PADDING_MODES,
    same: bool | str = True,
    bias: bool | None = None,
    odd_kernels: bool = False,
    density: bool | Iterable[str] = True,
    max_channels_per_group: int = 3,
    max_batch: int = 2,
) -> Any:
    """Strategy of always-valid ``ConvCase`` objects; shrinks towards small cases.

    Args:
        ndim: a number of spatial dims or an inclusive range ``(lo, hi)``.
        max_kernel: largest kernel size per axis.
        max_size: largest input size per axis (raised where a kernel needs more).
        groups, dilation, stride: whether to draw values > 1 for them.
        padding_modes: padding modes to draw from.
        same: draw ``padding="same"`` too (``"only"``: always, which makes output and input
            sizes equal).
        bias: ``None`` draws it, ``True``/``False`` fixes it.
        odd_kernels: only odd kernel sizes.
        density: ``False`` for unweighted cases (no ``density`` in ``layer_kwargs``), or the
            families to draw from (see ``densities``).
        max_channels_per_group: channel count bound per group, for inputs and outputs.
        max_batch: largest batch.
    """
    _require_hypothesis()
    lo, hi = (ndim, ndim) if isinstance(ndim, int) else ndim
    if not 1 <= lo <= hi:
        raise ValueError(f"ndim must be ≥ 1 or a range (lo, hi) with 1 ≤ lo ≤ hi, got {ndim!r}")
    bad = set(padding_modes) - set(PADDING_MODES)
    if bad or not padding_modes:
        raise ValueError(
            f"padding_modes must be a non-empty subset of {PADDING_MODES}, got {padding_modes!r}"
        )

    @st.composite
    def build(draw: Any) -> ConvCase:
        n = draw(st.integers(lo, hi))
        g = draw(st.integers(1, 3)) if groups else 1
        cin = g * draw(st.integers(1, max_channels_per_group))
        cout = g * draw(st.integers(1, max_channels_per_group))
        if odd_kernels:
            ksize = st.integers(0, (max_kernel - 1) // 2).map(lambda m: 2 * m + 1)
        else:
            ksize = st.integers(1, max_kernel)
        kernel = tuple(draw(ksize) for _ in range(n))
        dil = tuple(draw(st.integers(1, 2)) if dilation else 1 for _ in range(n))
        mode = draw(st.sampled_from(list(padding_modes)))
        use_same = same == "only" or (bool(same) and draw(st.booleans()))
        strides = (
            (1,) * n if use_same or not stride else tuple(draw(st.integers(1, 2)) for _ in range(n))
        )
        spatial, pads = [], []
        for i in range(n):
            extent = dil[i] * (kernel[i] - 1) + 1
            if use_same:
                total = extent - 1
                lo_pad, hi_pad = total // 2, total - total // 2
            else:
                lo_pad = hi_pad = draw(st.integers(0, extent // 2))
            least = max(1, extent - lo_pad - hi_pad)
            if mode == "reflect":
                least = max(least, max(lo_pad, hi_pad) + 1)
            elif mode == "circular":
                least = max(least, lo_pad, hi_pad)
            spatial.append(draw(st.integers(least, max(least, max_size))))
            pads.append(lo_pad)
        padding: tuple[int, ...] | str = "same" if use_same else tuple(pads)
        if density is False:
            dens: Density = Ones()
        else:
            families = None if density is True else density
            dens = draw(densities(kernel, families))
        return ConvCase(
            ndim=n,
            batch=draw(st.integers(1, max_batch)),
            in_channels=cin,
            out_channels=cout,
            groups=g,
            kernel_size=kernel,
            stride=strides,
            padding=padding,
            dilation=dil,
            padding_mode=mode,
            bias=draw(st.booleans()) if bias is None else bias,
            spatial=tuple(spatial),
            density=dens,
            seed=draw(st.integers(0, 2**32 - 1)),
            use_density=density is not False,
        )

    return build()


# ---------------------------------------------------------------------------------------
# Building layers and comparing
# ---------------------------------------------------------------------------------------

Factory = Callable[..., nn.Module]


def _accepts(factory: Factory, name: str, via_kwargs: bool) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in params or (
        via_kwargs and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    )


def make_layer(
    factory: Factory, case: ConvCase, dtype: torch.dtype = torch.float64, **overrides: Any
) -> nn.Module:
    """``factory(**case.layer_kwargs)`` in ``dtype`` with the case's weight and bias.

    The layer is created in ``dtype`` when the factory takes ``dtype=`` (so learned
    values start at full precision) and converted with ``.to(dtype)`` in any case;
    ``ndim=case.ndim`` is passed to factories with an ``ndim`` parameter.
    """
    kwargs = {**case.layer_kwargs, **overrides}
    if _accepts(factory, "ndim", via_kwargs=False):
        kwargs["ndim"] = case.ndim
    if _accepts(factory, "dtype", via_kwargs=True):
        kwargs.setdefault("dtype", dtype)
    layer = factory(**kwargs).to(dtype)
    a = case.arrays
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(a["weight"]))
        if case.bias:
            layer.bias.copy_(torch.from_numpy(a["bias"]))
    return layer


def _tolerance(dtype: torch.dtype) -> tuple[float, float]:
    return {torch.float64: (1e-9, 1e-9), torch.float32: (1e-4, 1e-4)}.get(dtype, (2e-2, 2e-2))


def _assert_close(
    got: np.ndarray, want: np.ndarray, what: str, case: ConvCase, rtol: float, atol: float
) -> None:
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape}, expected {want.shape}\n  case: {case}")
    err = np.abs(got - want)
    bound = atol + rtol * np.abs(want)
    bad = err > bound
    if bad.any() or not np.isfinite(got).all():
        idx = np.unravel_index(
            int(np.argmax(np.where(np.isfinite(err), err - bound, np.inf))), err.shape
        )
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} values differ (rtol={rtol:g}, atol={atol:g}); "
            f"largest at index {tuple(int(i) for i in idx)}: "
            f"got {float(got[idx])!r}, expected {float(want[idx])!r}\n"
            f"  case: {case}"
        )


def _output(layer: nn.Module, x: torch.Tensor) -> np.ndarray:
    return layer(x).detach().double().cpu().numpy()


def assert_matches_reference(
    layer: nn.Module, case: ConvCase, rtol: float | None = None, atol: float | None = None
) -> None:
    """Assert ``layer(case.x)`` equals the float64 reference with the layer's own weights.

    The reference uses ``layer.weight`` and ``layer.bias`` as they are, Φ of
    ``case.density``, and the case's geometry; the tolerance follows the layer's dtype
    (float64: 1e-9, float32: 1e-4) unless given. The message names the worst element and
    the case.
    """
    w = layer.weight.detach()
    dtype = w.dtype
    default_rtol, default_atol = _tolerance(dtype)
    x = case.x(dtype=dtype, device=w.device)
    bias = None if layer.bias is None else layer.bias.detach().double().cpu().numpy()
    want = reference_conv(
        x.double().cpu().numpy(),
        w.double().cpu().numpy(),
        bias,
        phi=case.phi(),
        **case.functional_kwargs,
    )
    _assert_close(
        _output(layer, x),
        want,
        "output vs float64 reference",
        case,
        default_rtol if rtol is None else rtol,
        default_atol if atol is None else atol,
    )


# ---------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------


class NotApplicable(Exception):
    """Raised by a check when the property does not apply to this layer or case."""


def check_matches_reference(factory: Factory, case: ConvCase) -> None:
    """In float64 the layer equals ``reference_conv`` with ``W ⊙ Φ`` (to 1e-9)."""
    assert_matches_reference(make_layer(factory, case), case)


def check_ones_equals_conv(factory: Factory, case: ConvCase) -> None:
    """With density ≡ 1 the layer equals ``nn.Conv{N}d`` (N ≤ 3) or the reference (N ≥ 4)."""
    if not case.use_density:
        raise NotApplicable("the layer takes no density")
    ones = replace(case, density=Ones())
    layer = make_layer(factory, ones)
    if case.ndim <= 3:
        plain = getattr(nn, f"Conv{case.ndim}d")(**case.conv_kwargs, dtype=torch.float64)
        plain.load_state_dict(
            {
                "weight": layer.weight.detach(),
                **({"bias": layer.bias.detach()} if case.bias else {}),
            }
        )
        x = ones.x()
        _assert_close(
            _output(layer, x),
            _output(plain, x),
            f"density ≡ 1 vs nn.Conv{case.ndim}d",
            ones,
            1e-10,
            1e-10,
        )
    else:
        assert_matches_reference(layer, ones)


def _bias_free(layer: nn.Module, x: torch.Tensor) -> np.ndarray:
    """``layer(x) - layer(0)``: the linear part of an affine layer."""
    return _output(layer, x) - _output(layer, torch.zeros_like(x))


def check_linear_in_input(factory: Factory, case: ConvCase) -> None:
    """``L(a·x1 + b·x2) = a·L(x1) + b·L(x2)`` with ``L(x) = layer(x) - layer(0)``."""
    layer = make_layer(factory, case)
    rng = case.rng(1)
    x1 = case.x()
    x2 = torch.from_numpy(rng.standard_normal(case.input_shape))
    a, b = rng.uniform(-2, 2, size=2)
    _assert_close(
        _bias_free(layer, a * x1 + b * x2),
        a * _bias_free(layer, x1) + b * _bias_free(layer, x2),
        "linearity in the input",
        case,
        1e-9,
        1e-9,
    )


def check_linear_in_weight(factory: Factory, case: ConvCase) -> None:
    """``layer_{a·W1 + b·W2}(x) = a·layer_{W1}(x) + b·layer_{W2}(x)`` without bias."""
    rng = case.rng(2)
    w1 = case.arrays["weight"]
    w2 = rng.standard_normal(case.weight_shape)
    a, b = rng.uniform(-2, 2, size=2)
    x = case.x()
    outs = []
    for w in (w1, w2, a * w1 + b * w2):
        layer = make_layer(factory, case)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
        outs.append(_bias_free(layer, x))
    _assert_close(outs[2], a * outs[0] + b * outs[1], "linearity in the weight", case, 1e-9, 1e-9)


def check_translation_equivariance(factory: Factory, case: ConvCase) -> None:
    """With stride 1, circular padding and same-size output, shifting the input by an
    integer offset shifts the output by the same offset (``roll`` commutes with the layer).
    """
    if (
        case.padding_mode != "circular"
        or any(s != 1 for s in case.stride)
        or case.output_shape != (case.batch, case.out_channels, *case.spatial)
    ):
        raise NotApplicable("needs stride 1, circular padding and output size = input size")
    layer = make_layer(factory, case)
    rng = case.rng(3)
    shifts = tuple(int(rng.integers(-s, s + 1)) for s in case.spatial)
    dims = tuple(range(2, 2 + case.ndim))
    x = case.x()
    _assert_close(
        _output(layer, torch.roll(x, shifts, dims)),
        np.roll(_output(layer, x), shifts, dims),
        f"translation equivariance (shift {shifts})",
        case,
        1e-9,
        1e-9,
    )


def check_adjointness(factory: Factory, case: ConvCase) -> None:
    """``⟨L x, y⟩ = ⟨x, Lᵀ y⟩`` for the linear part ``L``, with ``Lᵀ`` the NumPy reference
    transpose, and the layer's input gradient (its backward pass) equals ``Lᵀ y``.
    """
    layer = make_layer(factory, case)
    x = case.x().requires_grad_(True)
    y = torch.from_numpy(case.rng(4).standard_normal(case.output_shape))
    out = layer(x)
    if tuple(out.shape) != case.output_shape:
        raise AssertionError(
            f"output shape {tuple(out.shape)}, expected {case.output_shape}\n  case: {case}"
        )
    lin = out - layer(torch.zeros_like(x)).detach()
    (grad,) = torch.autograd.grad((lin * y).sum(), x)
    lt_y = reference_conv_transpose(
        y.numpy(), case.arrays["weight"], case.spatial, phi=case.phi(), **case.functional_kwargs
    )
    lhs = float((lin.detach().numpy() * y.numpy()).sum())
    rhs = float((x.detach().numpy() * lt_y).sum())
    if not math.isclose(lhs, rhs, rel_tol=1e-9, abs_tol=1e-9):
        raise AssertionError(f"⟨Lx, y⟩ = {lhs!r} but ⟨x, Lᵀy⟩ = {rhs!r}\n  case: {case}")
    _assert_close(grad.numpy(), lt_y, "input gradient vs reference transpose", case, 1e-9, 1e-9)


def _symmetric_density(case: ConvCase) -> bool:
    phi = case.phi()
    return bool(np.allclose(phi, np.flip(phi), rtol=1e-12, atol=0.0))


def check_flip_symmetry(factory: Factory, case: ConvCase) -> None:
    """With a point-symmetric density, stride 1 and symmetric padding, flipping the input
    and the weight along every spatial axis flips the output.
    """
    if (
        any(s != 1 for s in case.stride)
        or isinstance(case.padding, str)
        or not _symmetric_density(case)
    ):
        raise NotApplicable("needs stride 1, integer padding and a symmetric density")
    dims = tuple(range(2, 2 + case.ndim))
    layer = make_layer(factory, case)
    flipped = make_layer(factory, case)
    with torch.no_grad():
        flipped.weight.copy_(torch.flip(flipped.weight, dims))
    x = case.x()
    _assert_close(
        _output(flipped, torch.flip(x, dims)),
        np.flip(_output(layer, x), dims),
        "flip symmetry",
        case,
        1e-9,
        1e-9,
    )


def check_fold_equivalence(factory: Factory, case: ConvCase) -> None:
    """``ndwconv.fold`` of the layer (W ⊙ Φ baked into a plain conv) gives the same output."""
    layer = make_layer(factory, case)
    if not is_weighted(layer):
        raise NotApplicable("fold applies to ndwconv's weighted layers")
    model = nn.Sequential(layer)
    folded = fold(model)
    x = case.x()
    _assert_close(_output(folded, x), _output(model, x), "fold vs weighted", case, 1e-10, 1e-10)


def check_gradcheck(factory: Factory, case: ConvCase) -> None:
    """``torch.autograd.gradcheck`` in float64 w.r.t. the input and every parameter
    (weight, bias, learned density values). Uses gradcheck's ``fast_mode`` (random
    projections of the Jacobian) so that it stays cheap on every drawn case.
    """
    layer = make_layer(factory, case)
    names = [n for n, _ in layer.named_parameters()]
    values = [p.detach().clone().requires_grad_(True) for _, p in layer.named_parameters()]
    x = case.x().requires_grad_(True)

    def f(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, dict(zip(names, params, strict=True)), (x,))

    try:
        torch.autograd.gradcheck(f, (x, *values), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)
    except torch.autograd.gradcheck.GradcheckError as err:
        raise AssertionError(
            f"gradcheck failed: {str(err).splitlines()[0]}\n  case: {case}"
        ) from None


def _devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def check_dtype_device(factory: Factory, case: ConvCase) -> None:
    """The output keeps the input's dtype (float32, float64) and device (CPU, CUDA when
    present), and float32 results match the float64 reference to float32 tolerance.
    """
    for device in _devices():
        for dtype in (torch.float32, torch.float64):
            layer = make_layer(factory, case, dtype=dtype).to(device)
            y = layer(case.x(dtype=dtype, device=device))
            if y.dtype != dtype or y.device.type != device:
                raise AssertionError(
                    f"input {dtype} on {device} gave output {y.dtype} on {y.device}\n  case: {case}"
                )
            assert_matches_reference(layer, case)


def check_state_dict_round_trip(factory: Factory, case: ConvCase) -> None:
    """A fresh layer (already used for inference) loading the ``state_dict`` computes the
    same output, and the keys do not depend on train/eval mode or on having run inference.
    """
    layer = make_layer(factory, case)
    keys = list(layer.state_dict())
    layer.eval()
    x = case.x()
    with torch.no_grad():
        y = _output(layer, x)
    if list(layer.state_dict()) != keys:
        raise AssertionError(
            f"state_dict keys changed with eval/inference: {keys} → {list(layer.state_dict())}"
        )
    fresh = make_layer(factory, replace(case, seed=case.seed + 1)).eval()
    with torch.no_grad():
        fresh(x)  # fill any inference cache first: loading must invalidate it
    fresh.load_state_dict(copy.deepcopy(layer.state_dict()), strict=True)
    with torch.no_grad():
        _assert_close(_output(fresh, x), y, "after state_dict round trip", case, 1e-12, 1e-12)


@dataclass(frozen=True)
class Property:
    """A named check with the case options it needs (passed to ``conv_cases``)."""

    name: str
    check: Callable[[Factory, ConvCase], None]
    case_options: dict[str, Any] = field(default_factory=dict)


PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in [
        Property("matches_reference", check_matches_reference),
        Property("ones_equals_conv", check_ones_equals_conv),
        Property("linear_in_input", check_linear_in_input),
        Property("linear_in_weight", check_linear_in_weight),
        Property(
            "translation_equivariance",
            check_translation_equivariance,
            {"padding_modes": ("circular",), "same": "only"},
        ),
        Property("adjointness", check_adjointness),
        Property("flip_symmetry", check_flip_symmetry, {"stride": False, "same": False}),
        Property("fold_equivalence", check_fold_equivalence),
        Property(
            "gradcheck",
            check_gradcheck,
            {"max_size": 5, "max_channels_per_group": 2, "max_batch": 1},
        ),
        Property("dtype_device", check_dtype_device),
        Property("state_dict_round_trip", check_state_dict_round_trip),
    ]
}
"""The battery run by ``check_layer``, by name."""


@dataclass
class PropertyResult:
    """The outcome of one property: held, failed (with the shrunk case) or not applicable."""

    name: str
    status: str  # "held", "failed" or "not applicable"
    examples: int
    counterexample: ConvCase | None = None
    error: str = ""

    @property
    def held(self) -> bool:
        return self.status != "failed"


@dataclass
class LayerReport:
    """What ``check_layer`` found: one ``PropertyResult`` per property."""

    layer: str
    ndim: tuple[int, int]
    results: list[PropertyResult]

    @property
    def ok(self) -> bool:
        """Every property held (or did not apply)."""
        return all(r.held for r in self.results)

    @property
    def failed(self) -> list[PropertyResult]:
        return [r for r in self.results if not r.held]

    def __getitem__(self, name: str) -> PropertyResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def __str__(self) -> str:
        width = max(len(r.name) for r in self.results)
        lines = [f"check_layer({self.layer}, ndim={self.ndim}):"]
        for r in self.results:
            lines.append(f"  {r.name:<{width}}  {r.status:<14} {r.examples} examples")
            if r.status == "failed":
                lines.append(f"      counter-example: {r.counterexample}")
                lines.extend(f"      {line}" for line in r.error.splitlines()[:6])
        held = sum(r.status == "held" for r in self.results)
        lines.append(
            f"{held} held, {len(self.failed)} failed, "
            f"{sum(r.status == 'not applicable' for r in self.results)} not applicable"
        )
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise ``AssertionError`` with the report if any property failed."""
        if not self.ok:
            raise AssertionError(str(self))


_BOUNDS = ("max_size", "max_channels_per_group", "max_batch", "max_kernel")


def _merge_options(user: dict[str, Any], needed: dict[str, Any]) -> dict[str, Any] | None:
    """``conv_cases`` options meeting both the user's restrictions and a property's needs;
    ``None`` when they cannot both hold (the property is then not applicable)."""
    out = dict(user)
    for key, value in needed.items():
        if key == "padding_modes":
            modes = tuple(m for m in out.get(key, PADDING_MODES) if m in value)
            if not modes:
                return None
            out[key] = modes
        elif key in _BOUNDS:
            out[key] = min(out.get(key, value), value)
        elif key == "same":
            mine = out.get("same", True)
            if (value == "only" and mine is False) or (value is False and mine == "only"):
                return None
            out[key] = value
        elif key == "stride":
            out[key] = bool(out.get(key, True)) and bool(value)
        else:
            out[key] = value
    return out


def _run_property(
    prop: Property, factory: Factory, strategy: Any, run_settings: Any
) -> PropertyResult:
    seen: dict[str, Any] = {"n": 0, "applicable": 0, "last": None}

    @run_settings
    @given(strategy)
    def run(case: ConvCase) -> None:
        seen["n"] += 1
        seen["last"] = case
        try:
            prop.check(factory, case)
        except NotApplicable:
            assume(False)
        seen["applicable"] += 1

    try:
        run()
    except Exception as err:  # hypothesis replays the shrunk example last and re-raises its error
        name = type(err).__name__
        if name in ("Unsatisfiable", "FailedHealthCheck") and seen["applicable"] == 0:
            return PropertyResult(prop.name, "not applicable", 0)
        message = str(err) if isinstance(err, AssertionError) else f"{name}: {err}"
        examples = min(seen["n"], run_settings.max_examples)  # not counting shrink replays
        return PropertyResult(prop.name, "failed", examples, seen["last"], message)
    return PropertyResult(prop.name, "held", seen["applicable"])


def check_layer(
    factory: Factory,
    ndim: int | tuple[int, int],
    *,
    properties: Iterable[str] | None = None,
    max_examples: int | None = None,
    density: bool | Iterable[str] = True,
    **case_options: Any,
) -> LayerReport:
    """Run the property battery on a layer and report what held.

    Args:
        factory: builds a layer from ``case.layer_kwargs`` (``ndim=`` too if it takes it).
        ndim: spatial dims, or an inclusive range ``(lo, hi)``.
        properties: names from ``PROPERTIES`` (default: all).
        max_examples: examples per property (default: the active hypothesis profile's).
        density: as in ``conv_cases``; ``False`` for layers without ``density=``.
        case_options: more ``conv_cases`` arguments (``max_kernel``, ``groups``, …).

    Returns:
        A ``LayerReport``; ``report.ok`` tells whether everything held and
        ``report.raise_if_failed()`` turns it into a test assertion.

    Raises:
        ValueError: for an unknown property name.
    """
    _require_hypothesis()
    names = list(PROPERTIES) if properties is None else list(properties)
    unknown = [n for n in names if n not in PROPERTIES]
    if unknown:
        raise ValueError(f"unknown properties {unknown}; known: {list(PROPERTIES)}")
    run_settings = settings(
        max_examples=settings.default.max_examples if max_examples is None else max_examples,
        deadline=None,
        database=None,
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    lo_hi = (ndim, ndim) if isinstance(ndim, int) else tuple(ndim)
    results = []
    for name in names:
        prop = PROPERTIES[name]
        user = {"ndim": lo_hi, "density": density, **case_options}
        options = _merge_options(user, prop.case_options)
        if options is None:
            results.append(PropertyResult(name, "not applicable", 0))
            continue
        results.append(_run_property(prop, factory, conv_cases(**options), run_settings))
    label = getattr(factory, "__qualname__", None) or repr(factory)
    return LayerReport(label, lo_hi, results)
