"""Hypothesis strategies of always-valid convolution cases, densities and signals.

They shrink towards small cases: one dimension, one channel, kernel 1, no groups.
``register_density_strategy`` adds a user density family to the draw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .._install import install_hint
from ..density import Density, Gaussian, Learned, Ones, Table
from ..functional import PADDING_MODES
from .cases import ConvCase

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    st = None  # type: ignore[assignment]

__all__ = ["conv_cases", "densities", "register_density_strategy", "signals"]


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
        raise ImportError(
            f"ndwconv.testing strategies need hypothesis, which is not installed: "
            f"{install_hint('test')} (or pip install hypothesis)"
        )


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
