"""One conversion of computed values to a stored dtype, shared by the tiler and ``volumes``.

:func:`to_dtype` turns values (of any real dtype) into the dtype of an output array or
an on-disk volume:

- integer and bool targets: values are rounded to nearest (ties to even) and clipped to
  the dtype's range (``[0, 1]`` for bool), never truncated and never wrapped around;
  integer values are clipped in integer arithmetic, so 64-bit integers stay exact;
- float targets: values are cast (rounded to nearest); a finite value beyond the
  target's range (e.g. 70000 into float16) is an error, not a silent infinity;
- NaN and ±inf: with ``nonfinite="raise"`` they are an error for an integer target;
  with ``"allow"`` NaN becomes 0 and ±inf the range limits (float targets keep them).

Example:
    >>> to_dtype(np.array([-1.5, 0.5, 2.5, 300.0]), np.dtype(np.uint8)).tolist()
    [0, 0, 2, 255]
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["check_target_dtype", "to_dtype"]


def check_target_dtype(dtype: np.dtype, name: str) -> np.dtype:
    """``dtype`` if values can be stored in it (bool, integer or float), else TypeError."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise TypeError(
            f"{name} has dtype {dtype}; only bool, integer and float dtypes can hold the values"
        )
    return dtype


def _int_limits(dtype: np.dtype) -> tuple[int, int]:
    if dtype.kind == "b":
        return 0, 1
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _float_bound(value: int) -> float:
    """``value`` as a float64 that does not lie beyond it (2**63 - 1 gives 2**63 - 1024)."""
    bound = float(value)
    if abs(bound) > abs(value):
        bound = float(np.nextafter(bound, 0.0))
    return bound


def to_dtype(
    values: np.ndarray,
    dtype: np.dtype,
    slope: float | None = None,
    inter: float | None = None,
    nonfinite: Literal["raise", "allow"] = "raise",
    name: str = "values",
) -> np.ndarray:
    """Convert ``values`` to ``dtype``, rounding and clipping for integer targets.

    Args:
        values: array of a bool, integer or float dtype.
        dtype: the target dtype (bool, integer or float).
        slope, inter: for integer targets, the stored value is
            ``clip(rint((x - inter) / slope))`` (NIfTI scaling); None for none.
        nonfinite: ``"raise"`` refuses NaN/±inf into an integer target, ``"allow"``
            stores NaN as 0 and ±inf as the range limits.
        name: what the values are written to, for error messages.

    Returns:
        A new array of ``dtype`` (or ``values`` itself when nothing changes).

    Raises:
        TypeError: ``dtype`` or ``values.dtype`` is not bool, integer or float.
        ValueError: NaN/inf into an integer target with ``nonfinite="raise"``, or finite
            values beyond the range of a float target.
    """
    values = np.asarray(values)
    dtype = check_target_dtype(dtype, name)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"cannot convert values of dtype {values.dtype} to {dtype} for {name}")
    if nonfinite not in ("raise", "allow"):
        raise ValueError(f"nonfinite must be 'raise' or 'allow', got {nonfinite!r}")
    if dtype.kind == "f":
        if values.dtype == dtype:
            return values
        with np.errstate(over="ignore"):  # overflow is counted and reported below
            result = values.astype(dtype)
        if values.dtype.kind == "f" and np.finfo(values.dtype).max <= np.finfo(dtype).max:
            return result  # a wider float: nothing can overflow
        if values.dtype.kind in "iu" and np.iinfo(values.dtype).max <= np.finfo(dtype).max:
            return result
        overflow = int(np.count_nonzero(np.isinf(result) & np.isfinite(values)))
        if overflow:
            raise ValueError(
                f"{name}: {overflow} values lie beyond the range of {dtype} "
                f"(±{np.finfo(dtype).max:g}) and would become infinite"
            )
        return result

    lo, hi = _int_limits(dtype)
    if values.dtype.kind in "biu" and slope is None:
        if values.dtype.kind == "b":
            return values.astype(dtype)
        src_lo, src_hi = _int_limits(values.dtype)
        if lo <= src_lo and src_hi <= hi:
            return values.astype(dtype)
        # clip in the source's own integer type (both bounds lie within its range)
        bounds = np.array([max(lo, src_lo), min(hi, src_hi)], dtype=values.dtype)
        return np.clip(values, bounds[0], bounds[1]).astype(dtype)

    work = values.astype(np.float64)
    if slope is not None:
        work = (work - (inter or 0.0)) / slope
    finite = np.isfinite(work)
    if not finite.all():
        if nonfinite == "raise":
            count = work.size - int(np.count_nonzero(finite))
            raise ValueError(
                f"{name}: {count} NaN/inf values cannot be stored in integer dtype {dtype}"
            )
        work = np.nan_to_num(work, nan=0.0, posinf=hi, neginf=lo)
    np.rint(work, out=work)
    lo_f, hi_f = _float_bound(lo), _float_bound(hi)
    if lo_f == lo and hi_f == hi:  # every integer dtype up to 32 bits
        return np.clip(work, lo_f, hi_f, out=work).astype(dtype)
    # 64-bit limits have no float64: clip to the nearest float inside, then set the limits
    over, under = work > hi_f, work < lo_f
    result = np.clip(work, lo_f, hi_f, out=work).astype(dtype)
    result[over], result[under] = hi, lo
    return result
