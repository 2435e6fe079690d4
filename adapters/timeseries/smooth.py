"""``smooth``: a normalised weighted moving average along one dimension.

The weights are a density profile (``ndwconv.density``: ``gaussian:2h``, ``table:0.2,0.8``,
``ones``, …) sampled at the window's offsets and divided by their sum, so a constant series stays
constant. At the ends of the series the window reads samples outside it
the way ``scipy.ndimage`` does (``reflect``, ``nearest``, ``mirror``, ``wrap``,
``constant``): the result equals ``scipy.ndimage.correlate1d(values, weights, axis,
mode=mode, cval=cval)`` with the same normalised weights.

Window and centre. A window of ``size`` samples covers the offsets ``-(size // 2)`` …
``(size - 1) // 2`` around the output sample (scipy.ndimage's ``origin=0``), and the
profile is sampled at the distances of these offsets from the window's midpoint. For an
odd size the midpoint is the output sample; for an even size it lies half a sample before
it, as in scipy.ndimage.

Units. A density may give its distances in the unit of the dimension's coordinate
(``gaussian:30s``, ``gaussian:2h``, ``gaussian:1.5mm``): a datetime64 or timedelta64
coordinate is in seconds, a numeric one in the unit named by its ``units`` attribute
(``"s"``, ``"hours"``, ``"days since 2000-01-01"``, ``"mm"``, …). Without a unit the
distances count samples. The coordinate must be evenly spaced.

Backends. The values are filtered by one of three computations that give the same
result up to rounding: a direct weighted sum of shifted slices, blocked so that the slices
stay in the CPU cache (short windows); ``scipy.ndimage.correlate1d`` itself (medium
windows); an FFT (``scipy.signal.oaconvolve``, long windows over finite data, whose
rounding errors scale with the largest value in a block rather than the local ones).
``DIRECT_MAX_SIZE`` and ``FFT_MIN_SIZE`` hold the crossovers that
``benchmarks/timeseries_smooth.py`` measured.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import numbers
import re
from collections.abc import Hashable
from typing import Any

import numpy as np

from ndwconv.density import UNITS, Density, as_density
from ndwconv.density.spec import canonical_unit, split_unit

from ._containers import as_dataarray

__all__ = [
    "DIRECT_MAX_SIZE",
    "FFT_MIN_SIZE",
    "MODES",
    "NAN_POLICIES",
    "PROVENANCE_ATTR",
    "smooth",
    "smooth_weights",
]

MODES = ("reflect", "nearest", "mirror", "wrap", "constant")
"""Edge modes, as in ``scipy.ndimage``: ``reflect`` (d c b a | a b c d | d c b a),
``nearest`` (a a a a | a b c d | d d d d), ``mirror`` (d c b | a b c d | c b a), ``wrap``
(a b c d | a b c d | a b c d) and ``constant`` (k k k k | a b c d | k k k k, ``k = cval``)."""

NAN_POLICIES = ("raise", "propagate", "mask")
"""What ``smooth`` does with missing values (NaN)."""

PROVENANCE_ATTR = "ndwconv_smooth"
"""The attribute in which ``smooth`` records its parameters on a DataArray result."""

DIRECT_MAX_SIZE: dict[str, int] = {"float32": 48, "float64": 15}
"""Per computation dtype, the longest window the blocked direct sum takes."""

FFT_MIN_SIZE: dict[str, int] = {"float32": 49, "float64": 97}
"""Per computation dtype, the shortest window over finite data that the FFT takes;
windows between the two limits go to ``scipy.ndimage.correlate1d`` itself. Both tables
hold the crossovers ``benchmarks/timeseries_smooth.py`` measured (see docs/timeseries.md)."""

BACKENDS = ("auto", "direct", "scipy", "fft")

GAUSSIAN_TRUNCATE = 4.0
"""A Gaussian's default window reaches ``int(4 σ + 0.5)`` samples each side (as
``scipy.ndimage.gaussian_filter``'s default ``truncate=4.0``)."""

_BLOCK = 1 << 16  # elements per block of the direct sum: a few hundred KiB, cache-resident

# Names a coordinate's ``units`` attribute may use: name → (base unit, base units per unit).
_COORD_UNITS: dict[str, tuple[str, float]] = {
    **{n: ("s", 1.0) for n in ("s", "sec", "secs", "second", "seconds")},
    **{n: ("s", 1e-3) for n in ("ms", "millisecond", "milliseconds")},
    **{n: ("s", 1e-6) for n in ("us", "microsecond", "microseconds")},
    **{n: ("s", 60.0) for n in ("min", "mins", "minute", "minutes")},
    **{n: ("s", 3600.0) for n in ("h", "hr", "hrs", "hour", "hours")},
    **{n: ("s", 86400.0) for n in ("d", "day", "days")},
    **{n: ("mm", 1.0) for n in ("mm", "millimetre", "millimeter", "millimetres", "millimeters")},
    **{n: ("mm", 1e-3) for n in ("um", "micrometre", "micrometer", "micrometres", "micrometers")},
    **{n: ("mm", 10.0) for n in ("cm", "centimetre", "centimeter", "centimetres", "centimeters")},
    **{n: ("mm", 1000.0) for n in ("m", "metre", "meter", "metres", "meters")},
}


# ---------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------


class _Sampling:
    """The step of the filtered dimension: ``step`` in ``unit`` (``None``: samples only)."""

    def __init__(self, step: float | None, unit: str | None, why: str):
        self.step, self.unit, self.why = step, unit, why


def _coordinate_unit(coord: Any) -> tuple[str, float] | None:
    text = coord.attrs.get("units")
    if not isinstance(text, str) or not text.strip():
        return None
    name = text.strip().split(" since ", 1)[0].strip().lower().replace("µ", "u").replace("μ", "u")
    return _COORD_UNITS.get(name)


def _sampling(da: Any, dim: Hashable) -> _Sampling:
    """The coordinate step along ``dim``; irregular coordinates raise a ValueError."""
    if dim not in da.coords:
        return _Sampling(None, None, f"data has no coordinate along {dim!r}")
    coord = da.coords[dim]
    values = np.asarray(coord.values)
    kind = values.dtype.kind
    if kind not in "Mmiuf":
        return _Sampling(None, None, f"the {dim!r} coordinate holds {values.dtype}, not numbers")
    if values.size < 2:
        return _Sampling(None, None, f"the {dim!r} coordinate has a single value: no step")
    if kind in "Mm":
        if np.isnat(values).any():
            raise ValueError(f"data's {dim!r} coordinate holds NaT (missing times)")
        ticks = values.astype(f"{values.dtype.str[:2]}8[ns]").astype(np.int64)
        diffs = np.diff(ticks)
        regular = bool(np.all(diffs == diffs[0])) and diffs[0] != 0
        step = abs(float(diffs[0])) * 1e-9
        unit: str | None = "s"
        lo, hi = diffs.min() * 1e-9, diffs.max() * 1e-9
        span = f"{_fmt_seconds(lo)} to {_fmt_seconds(hi)}"
    else:
        numbers_ = values.astype(np.float64)
        if not np.isfinite(numbers_).all():
            raise ValueError(f"data's {dim!r} coordinate holds non-finite values")
        diffs = np.diff(numbers_)
        regular = diffs[0] != 0 and bool(np.allclose(diffs, diffs[0], rtol=1e-6, atol=0.0))
        step = abs(float(diffs[0]))
        found = _coordinate_unit(coord)
        unit = None
        if found is not None:
            unit, factor = found
            step *= factor
        lo, hi = diffs.min(), diffs.max()
        span = f"{lo:g} to {hi:g}"
    if not regular:
        raise ValueError(
            f"data's {dim!r} coordinate is not evenly spaced (steps from {span}); smooth "
            "weights samples by their distance, so resample to a constant step first, e.g. "
            f'da.resample({dim}="1h").mean() or da.interp({dim}=new_{dim}) (to filter '
            f"sample by sample whatever the coordinate, drop it: da.drop_vars({dim!r}))"
        )
    if unit is None:
        return _Sampling(step, None, f"the {dim!r} coordinate has no 'units' attribute")
    return _Sampling(step, unit, "")


def _fmt_seconds(seconds: float) -> str:
    for name, length in (("d", 86400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0)):
        if abs(seconds) >= length:
            return f"{seconds / length:g} {name}"
    return f"{seconds:g} s"


def _density(density: Any) -> Density:
    try:
        family = as_density(density)
    except (TypeError, ValueError) as err:
        raise type(err)(f"density: {err}") from err
    if family.learnable:
        raise ValueError(
            f"density {str(family)!r} is trainable ('learned'); smooth is a fixed filter: "
            "give a fixed profile such as 'gaussian:2h' or 'table:0.2,0.8'"
        )
    if not family.separable:
        raise ValueError(
            f"density {str(family)!r} has no 1-D profile (it defines build() only); smooth "
            "needs a separable family"
        )
    return family


def _resolve(family: Density, sampling: _Sampling, original: Any) -> Density:
    if family.unit is None:
        return family
    base = UNITS[family.unit][0]
    if sampling.unit is None:
        raise ValueError(
            f"density {original!r} is in {family.unit}, but {sampling.why}: give the density "
            "in samples (e.g. 'gaussian:3'), or a coordinate with a unit (datetime64, or a "
            "numeric coordinate with a 'units' attribute such as 's' or 'hours')"
        )
    if sampling.unit != base:
        raise ValueError(
            f"density {original!r} is in {family.unit} (a {_quantity(base)}) but the "
            f"coordinate is in {sampling.unit} (a {_quantity(sampling.unit)})"
        )
    assert sampling.step is not None
    return family.resolve(sampling.step)


def _quantity(base: str) -> str:
    return "time" if base == "s" else "length"


def _size_from_duration(size: Any, sampling: _Sampling) -> int:
    if isinstance(size, str):
        text, unit = split_unit(size, "size")
        if unit is None:
            raise ValueError(
                f"size {size!r}: give a number of samples (an int) or a duration with a unit "
                f"such as '6h' or '30s' (units: {', '.join(UNITS)})"
            )
        try:
            amount = float(text)
        except ValueError:
            raise ValueError(f"size {size!r}: {text.strip()!r} is not a number") from None
        base = UNITS[canonical_unit(unit)][0]
        value = amount / float(UNITS[canonical_unit(unit)][1])
    else:
        base = "s"
        value = float(np.timedelta64(size, "ns").astype(np.int64)) * 1e-9
    if sampling.unit is None:
        raise ValueError(f"size {size!r} is a duration or length, but {sampling.why}")
    if sampling.unit != base:
        raise ValueError(
            f"size {size!r} is a {_quantity(base)} but the coordinate is in {sampling.unit}"
        )
    assert sampling.step is not None
    samples = round(value / sampling.step)
    if not math.isfinite(value) or samples < 1:
        raise ValueError(
            f"size {size!r} is shorter than one sample (the step is {sampling.step:g} "
            f"{sampling.unit}); it must cover at least one sample"
        )
    return int(samples)


def _default_size(family: Density, original: Any) -> int:
    from ndwconv.density import Gaussian, Table

    if isinstance(family, Gaussian):
        if len(family.sigma) != 1:
            raise ValueError(f"density {original!r}: smooth takes one σ, got {len(family.sigma)}")
        step = 1.0 if family.spacing is None else family.spacing[0]
        radius = int(GAUSSIAN_TRUNCATE * family.sigma[0] / step + 0.5)
        return 2 * radius + 1
    if isinstance(family, Table):
        if family.values is not None:
            return 2 * len(family.values) + 1
        if family.per_axis is not None and len(family.per_axis) == 1:
            return 2 * len(family.per_axis[0]) + 1
        if family.by_size is not None and len(family.by_size) == 1:
            return next(iter(family.by_size))
        raise ValueError(
            f"density {original!r} defines profiles for several window sizes: choose one with size="
        )
    raise ValueError(
        f"density {original!r} has no natural width: give the window length with size= "
        "(samples, or a duration such as '6h')"
    )


def smooth_weights(density: Any, size: int, spacing: float | None = None) -> np.ndarray:
    """The normalised weights ``smooth`` uses: the profile at ``size`` offsets, summing to 1.

    Args:
        density: a density or spec (``"gaussian:2"``, ``"table:0.7"``, ``"ones"``, …);
            with a unit (``"gaussian:2h"``) ``spacing`` is the sample step in its base
            unit (seconds or millimetres).
        size: the window length in samples (≥ 1).
        spacing: the sample step, for densities with a unit.

    Example:
        >>> smooth_weights("table:0.5", 3).tolist()
        [0.25, 0.5, 0.25]
        >>> smooth_weights("gaussian:1h", 3, spacing=3600.0).round(4).tolist()
        [0.2741, 0.4519, 0.2741]
    """
    family = _density(density)
    if family.unit is not None:
        if spacing is None:
            raise ValueError(f"density {density!r} is in {family.unit}: give spacing=")
        family = family.resolve(spacing)
    return _weights(family, size, density)


def _weights(family: Density, size: int, density: Any) -> np.ndarray:
    """``family``'s (unit-free) profile over ``size`` taps, normalised; ``density`` is
    what the user gave, for messages."""
    _check_size(size)
    try:
        profile = family.profile(int(size), 0, 1).numpy().astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"density {density!r}: {err}") from err
    total = float(profile.sum())
    if profile.shape != (size,) or not np.isfinite(profile).all() or not total > 0:
        raise ValueError(
            f"density {density!r} gives no usable weights for a window of {size} samples "
            f"(profile {profile.tolist()[:8]}…)"
        )
    return profile / total


def _check_size(size: Any) -> None:
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise TypeError(f"size must be an int (samples) or a duration, got {size!r}")
    if size < 1:
        raise ValueError(f"size must be ≥ 1 sample, got {size}")


# ---------------------------------------------------------------------------------------
# the numerical core: (P, n, Q) arrays, filtered along axis 1
# ---------------------------------------------------------------------------------------


def _source_index(positions: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Indices into ``[0, n)`` that the positions outside it read (not for ``constant``)."""
    if mode == "nearest":
        return np.clip(positions, 0, n - 1)
    if mode == "wrap":
        return np.mod(positions, n)
    if mode == "reflect":
        q = np.mod(positions, 2 * n)
        return np.where(q >= n, 2 * n - 1 - q, q)
    # mirror: period 2n - 2 (a single sample mirrors onto itself)
    if n == 1:
        return np.zeros_like(positions)
    q = np.mod(positions, 2 * n - 2)
    return np.where(q >= n, 2 * n - 2 - q, q)


def _extended(x: np.ndarray, start: int, stop: int, mode: str, cval: float) -> np.ndarray:
    """Samples ``start … stop - 1`` of ``x`` (P, n, Q) along axis 1, extended by ``mode``."""
    n = x.shape[1]
    positions = np.arange(start, stop)
    if mode == "constant":
        inside = (positions >= 0) & (positions < n)
        out = np.full((x.shape[0], positions.size, x.shape[2]), cval, dtype=x.dtype)
        out[:, inside] = x[:, positions[inside]]
        return out
    return np.take(x, _source_index(positions, n, mode), axis=1)


def _weighted_sum(src: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    """``out[:, i] = Σ_j weights[j] · src[:, i + j]`` (axis 1), in cache-sized blocks.

    Every weight's product is added in turn, block by block, so the shifted slices of
    one block stay in the CPU cache while all the taps pass over them; symmetric weights
    (every built-in profile) add each mirrored pair of slices before one multiplication.
    """
    p, count, q = out.shape
    k = weights.size
    cols = min(count, max(1, _BLOCK // q))
    rows = min(p, max(1, _BLOCK // (cols * q)))
    w = [out.dtype.type(v) for v in weights]
    pairs = k // 2 if np.array_equal(weights, weights[::-1]) else 0
    scratch = np.empty((rows, cols, q), dtype=out.dtype)
    for r0 in range(0, p, rows):
        r1 = min(p, r0 + rows)
        for a in range(0, count, cols):
            b = min(count, a + cols)
            o = out[r0:r1, a:b]
            tmp = scratch[: r1 - r0, : b - a]
            taps = range(pairs, k - pairs)  # the taps not paired: the centre, or all
            first = True
            for j in range(pairs):
                np.add(
                    src[r0:r1, a + j : b + j], src[r0:r1, a + k - 1 - j : b + k - 1 - j], out=tmp
                )
                if first:
                    np.multiply(tmp, w[j], out=o)
                    first = False
                else:
                    tmp *= w[j]
                    o += tmp
            for j in taps:
                if first:
                    np.multiply(src[r0:r1, a + j : b + j], w[j], out=o)
                    first = False
                else:
                    np.multiply(src[r0:r1, a + j : b + j], w[j], out=tmp)
                    o += tmp


def _direct(x: np.ndarray, weights: np.ndarray, mode: str, cval: float) -> np.ndarray:
    """The correlation along axis 1 by blocked weighted sums of shifted slices."""
    k = weights.size
    r = k // 2
    n = x.shape[1]
    out = np.empty_like(x)
    lo, hi = r, n - (k - 1 - r)  # outputs whose window lies inside the series
    if hi > lo:
        _weighted_sum(x, weights, out[:, lo:hi])
        edges = [(0, lo), (hi, n)]
    else:
        edges = [(0, min(lo, n)), (min(lo, n), n)]
    for a, b in edges:
        if b > a:
            ext = _extended(x, a - r, b + k - 1 - r, mode, cval)
            _weighted_sum(ext, weights, out[:, a:b])
    return out


def _fft(x: np.ndarray, weights: np.ndarray, mode: str, cval: float) -> np.ndarray:
    """The correlation along axis 1 by overlap-add FFT over the extended series."""
    from scipy.signal import oaconvolve

    k = weights.size
    r = k // 2
    n = x.shape[1]
    left = _extended(x, -r, 0, mode, cval)
    right = _extended(x, n, n + k - 1 - r, mode, cval)
    padded = np.concatenate([left, x, right], axis=1)
    kernel = weights[::-1].astype(x.dtype).reshape(1, k, 1)
    out = oaconvolve(padded, kernel, mode="valid", axes=1)
    return np.ascontiguousarray(out, dtype=x.dtype)


def _scipy(x: np.ndarray, weights: np.ndarray, mode: str, cval: float) -> np.ndarray:
    """The correlation along axis 1 by ``scipy.ndimage.correlate1d``."""
    from scipy import ndimage

    return ndimage.correlate1d(x, weights, axis=1, mode=mode, cval=cval)


def _backend(dtype: np.dtype, size: int, finite: bool, requested: str) -> str:
    """The computation for a window of ``size`` samples: direct, scipy or fft."""
    if requested != "auto":
        return requested if finite or requested != "fft" else "direct"
    if size <= DIRECT_MAX_SIZE[dtype.name]:
        return "direct"
    if finite and size >= FFT_MIN_SIZE[dtype.name]:
        return "fft"
    return "scipy"


_COMPUTE = {"direct": _direct, "scipy": _scipy, "fft": _fft}


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind in "iu" or dtype == np.float64 or dtype.itemsize > 8:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _filter(
    values: np.ndarray,
    axis: int,
    weights: np.ndarray,
    mode: str,
    cval: float,
    nan: str,
    backend: str = "auto",
) -> np.ndarray:
    """``values`` filtered along ``axis``; float dtypes kept, integers → float64."""
    values = np.asarray(values)
    out_dtype = np.dtype(np.float64) if values.dtype.kind in "iu" else values.dtype
    work = _compute_dtype(values.dtype)
    shape = values.shape
    n = shape[axis]
    p = math.prod(shape[:axis])
    q = math.prod(shape[axis + 1 :])
    x = np.ascontiguousarray(values, dtype=work).reshape(p, n, q)
    if x.size == 0:
        return np.empty(shape, dtype=out_dtype)
    # one cheap pass: a finite sum means no NaN and no infinity anywhere
    finite = bool(np.isfinite(np.sum(x, dtype=np.float64)))
    missing = None if finite else np.isnan(x)
    if nan == "raise" and missing is not None and missing.any():
        raise ValueError(
            f"data holds {int(missing.sum())} missing value(s) (NaN); choose nan='mask' "
            "(average the valid neighbours) or nan='propagate' (NaN spreads over the window)"
        )
    masked_edges = mode == "constant" and math.isnan(cval)
    if nan == "mask" and ((missing is not None and missing.any()) or masked_edges):
        # normalised convolution: Σ w·x over the valid samples / Σ w over them; the sums
        # are direct (no FFT), so a window without valid samples gives exactly 0 / 0
        compute = _COMPUTE[_backend(work, weights.size, False, backend)]
        valid = np.ones(x.shape, dtype=bool) if missing is None else ~missing
        filled = np.where(valid, x, work.type(0))
        num = compute(filled, weights, mode, 0.0 if masked_edges else cval)
        den = compute(valid.astype(work), weights, mode, 0.0 if masked_edges else 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(den > 0, num / den, work.type(np.nan))
    else:
        out = _COMPUTE[_backend(work, weights.size, finite, backend)](x, weights, mode, cval)
    return out.reshape(shape).astype(out_dtype, copy=False)


# ---------------------------------------------------------------------------------------
# dask
# ---------------------------------------------------------------------------------------


def _merged_chunks(chunks: tuple[int, ...], minimum: int) -> tuple[int, ...]:
    """``chunks`` with neighbours merged until every chunk holds at least ``minimum``."""
    merged: list[int] = []
    current = 0
    for c in chunks:
        current += c
        if current >= minimum:
            merged.append(current)
            current = 0
    if current:
        if merged:
            merged[-1] += current
        else:
            merged.append(current)
    return tuple(merged)


def _filter_dask(arr: Any, axis: int, weights: np.ndarray, mode: str, cval: float, nan: str) -> Any:
    import dask.array as dsa

    out_dtype = np.dtype(np.float64) if arr.dtype.kind in "iu" else arr.dtype
    k = weights.size
    depth = k // 2
    n = arr.shape[axis]

    def block(values: np.ndarray) -> np.ndarray:
        return _filter(values, axis, weights, mode, cval, nan)

    if depth == 0 and k == 1:
        return arr.map_blocks(block, dtype=out_dtype)
    # Each chunk along the axis must hold the halo (a chunk shorter than the depth makes
    # map_overlap fail or read the wrong samples); a series shorter than the window is
    # filtered in one piece (its edge extension needs the whole series).
    if n <= k:
        arr = arr.rechunk({axis: -1})
    elif min(arr.chunks[axis]) < max(depth, k - 1 - depth):
        arr = arr.rechunk({axis: _merged_chunks(arr.chunks[axis], max(depth, k - 1 - depth))})
    if len(arr.chunks[axis]) == 1:
        return arr.map_blocks(block, dtype=out_dtype)
    # boundary "none": the outer blocks see the series' own ends and extend them by
    # ``mode`` exactly as the in-memory filter does; "wrap" needs the other end instead.
    boundary = "periodic" if mode == "wrap" else "none"
    return dsa.map_overlap(
        block,
        arr,
        depth={axis: depth},
        boundary={axis: boundary},
        trim=True,
        dtype=out_dtype,
        meta=np.empty((0,) * arr.ndim, dtype=out_dtype),
    )


# ---------------------------------------------------------------------------------------
# the public function
# ---------------------------------------------------------------------------------------


def smooth(
    data: Any,
    dim: Hashable = "time",
    *,
    density: Any,
    size: int | str | Any | None = None,
    mode: str = "reflect",
    cval: float = 0.0,
    nan: str = "raise",
) -> Any:
    """A normalised weighted moving average of ``data`` along ``dim``.

    The weights are ``density``'s profile at the window's offsets, divided by their sum;
    the result equals ``scipy.ndimage.correlate1d(values, weights, axis, mode=mode,
    cval=cval)`` (see the module docstring for where an even window is centred).

    Args:
        data: an ``xarray.DataArray`` (NumPy- or dask-backed), a NumPy array (``dim`` is
            its last axis) or a pandas Series/DataFrame (the index is ``dim``), holding
            integers or floats; it is never modified.
        dim: the dimension to smooth along.
        density: the weight profile: a spec (``"gaussian:2h"``, ``"gaussian:30s"``,
            ``"gaussian:3"`` in samples, ``"table:0.2,0.8"``, ``"ones"``) or a
            ``Density``. Distances with a unit are read in the coordinate's unit
            (datetime64 coordinates: seconds; numeric ones: their ``units`` attribute).
        size: the window length: samples (an int ≥ 1), or a duration (``"6h"``, a
            ``numpy.timedelta64``, a ``datetime.timedelta``) rounded to a whole number of
            steps. Default: a Gaussian reaches ``int(4σ + 0.5)`` samples each side (σ in
            samples), a table its own length; ``ones`` needs a size.
        mode: the edge mode of ``scipy.ndimage``: ``reflect``, ``nearest``, ``mirror``,
            ``wrap`` or ``constant`` (samples beyond the ends are ``cval``).
        cval: the value beyond the ends with ``mode="constant"``.
        nan: missing values (NaN): ``"raise"`` (a ValueError; on dask-backed data when
            the result is computed), ``"propagate"`` (every output whose window holds a
            NaN is NaN, as scipy gives) or ``"mask"`` (normalised convolution: the
            weights are renormalised over the valid samples in each window; NaN only
            where no valid sample has a weight; the edge modes extend the missing values
            too, and ``cval=nan`` makes the samples beyond the ends missing).

    Returns:
        The same type as ``data``: a DataArray keeps its dims order, coordinates, name
        and attributes, adds ``ndwconv_smooth`` (the parameters, one JSON object per line,
        a line per call) and stays lazy when dask-backed. Floating input keeps its dtype;
        integers give float64.

    Raises:
        ValueError, TypeError: naming the argument at fault: ``dim`` not a dimension,
            non-numeric data, unknown ``mode``/``nan``, ``size`` < 1, a bad density
            spec, a density with a unit on a coordinate without one, an irregular
            coordinate (resample it first: ``da.resample(time="1h").mean()``).

    Example:
        >>> import numpy as np
        >>> smooth(np.array([0.0, 0.0, 4.0, 0.0, 0.0]), density="table:0.5").tolist()
        [0.0, 1.0, 2.0, 1.0, 0.0]
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if nan not in NAN_POLICIES:
        raise ValueError(f"nan must be one of {', '.join(NAN_POLICIES)}; got {nan!r}")
    if isinstance(cval, bool) or not isinstance(cval, numbers.Real):
        raise TypeError(f"cval must be a real number, got {cval!r}")
    cval = float(cval)
    da, restore = as_dataarray(data, dim, argument="data")
    family = _density(density)
    sampling = _sampling(da, dim)
    resolved = _resolve(family, sampling, density)
    if size is None:
        samples = _default_size(resolved, density)
    elif isinstance(size, (str, np.timedelta64, _dt.timedelta)):
        samples = _size_from_duration(size, sampling)
    else:
        _check_size(size)
        samples = int(size)
    weights = _weights(resolved, samples, density)
    axis = da.get_axis_num(dim)
    values = da.data
    if _is_dask(values):
        filtered = _filter_dask(values, axis, weights, mode, cval, nan)
    else:
        filtered = _filter(np.asarray(values), axis, weights, mode, cval, nan)
    result = da.copy(deep=False, data=filtered)
    record = json.dumps(
        {
            "dim": str(dim),
            "density": _spec_text(density, family),
            "resolved": str(resolved),
            "size": samples,
            "mode": mode,
            "cval": cval,
            "nan": nan,
        },
        ensure_ascii=False,
    )
    previous = da.attrs.get(PROVENANCE_ATTR)
    attrs = dict(da.attrs)
    attrs[PROVENANCE_ATTR] = f"{previous}\n{record}" if isinstance(previous, str) else record
    result.attrs = attrs
    return restore(result)


def _spec_text(density: Any, family: Density) -> str:
    return density if isinstance(density, str) else str(family)


def _is_dask(values: Any) -> bool:
    module = type(values).__module__
    return bool(re.match(r"dask(\.|$)", module))
