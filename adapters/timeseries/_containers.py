"""One internal form for the containers a time-series function accepts.

Every public function of :mod:`ndwconv.adapters.timeseries` works on an
``xarray.DataArray``; :func:`as_dataarray` wraps what the user gave (a DataArray, a NumPy
array, a pandas Series or DataFrame) into one without copying the values, and returns
the function that turns a result back into the user's type.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from ndwconv._install import install_hint

__all__ = ["as_dataarray", "import_xarray"]


def import_xarray() -> Any:
    """``xarray``, or an ImportError that says how to install it."""
    try:
        import xarray
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"ndwconv.adapters.timeseries needs xarray: {install_hint('timeseries')}"
        ) from exc
    return xarray


def _check_values(dtype: np.dtype, argument: str) -> None:
    if dtype.kind not in "iuf":
        raise TypeError(
            f"{argument} must hold real numbers (integer or floating point), got dtype {dtype}"
        )


def as_dataarray(
    obj: Any, dim: Hashable = "time", *, argument: str = "da"
) -> tuple[Any, Callable[[Any], Any]]:
    """``obj`` as a DataArray with dimension ``dim``, and the way back to ``obj``'s type.

    - ``xarray.DataArray``: returned as it is; ``dim`` must be one of its dimensions.
    - NumPy array (at least 1-D): ``dim`` is its last axis; the other axes are named
      ``axis_0``, ``axis_1``, …; back: the values as a NumPy array.
    - pandas ``Series``: its index is ``dim`` (a coordinate, so a ``DatetimeIndex`` keeps
      its times); back: a Series with the same index and name.
    - pandas ``DataFrame``: its index is ``dim``, its columns a second dimension
      ``columns``; back: a DataFrame with the same index and columns.

    The values are not copied and never modified. Anything else, and non-numeric values
    (booleans, complex numbers, strings, objects), raise a ``TypeError`` naming
    ``argument``; a missing ``dim`` raises a ``ValueError`` listing the dimensions.

    Returns:
        ``(data_array, restore)``; ``restore(result)`` turns a DataArray of the same
        shape and dimensions into ``obj``'s type.

    Example:
        >>> import numpy as np, pandas as pd
        >>> s = pd.Series([1.0, 2.0, 4.0], index=pd.date_range("2000", periods=3), name="t")
        >>> da, restore = as_dataarray(s)
        >>> da.dims, da["time"].dtype.kind  # M: datetime64
        (('time',), 'M')
        >>> restore(da * 2).tolist()
        [2.0, 4.0, 8.0]
    """
    xr = import_xarray()
    if isinstance(obj, xr.DataArray):
        if dim not in obj.dims:
            raise ValueError(
                f"dim {dim!r} is not a dimension of {argument}; its dimensions are {list(obj.dims)}"
            )
        _check_values(obj.dtype, argument)
        return obj, lambda result: result
    if isinstance(obj, np.ndarray):
        if obj.ndim == 0:
            raise ValueError(f"{argument} must have at least one axis, got a 0-d array")
        _check_values(obj.dtype, argument)
        dims = [f"axis_{i}" for i in range(obj.ndim - 1)] + [dim]
        return xr.DataArray(obj, dims=dims), lambda result: np.asarray(result.data)
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas comes with xarray
        pd = None
    if pd is not None and isinstance(obj, pd.Series):
        _check_values(
            np.dtype(obj.dtype) if isinstance(obj.dtype, np.dtype) else np.dtype("O"), argument
        )
        da = xr.DataArray(obj.to_numpy(), dims=[dim], coords={dim: obj.index.to_numpy()})

        def to_series(result: Any) -> Any:
            return pd.Series(np.asarray(result.data), index=obj.index, name=obj.name)

        return da, to_series
    if pd is not None and isinstance(obj, pd.DataFrame):
        dtypes = {np.dtype(t) if isinstance(t, np.dtype) else np.dtype("O") for t in obj.dtypes}
        if len(dtypes) != 1:
            raise TypeError(
                f"{argument} must have one numeric dtype in all columns, got "
                f"{sorted(map(str, dtypes))}"
            )
        _check_values(dtypes.pop(), argument)
        da = xr.DataArray(
            obj.to_numpy(),
            dims=[dim, "columns"],
            coords={dim: obj.index.to_numpy(), "columns": obj.columns.to_numpy()},
        )

        def to_frame(result: Any) -> Any:
            values = np.asarray(result.transpose(dim, "columns").data)
            return pd.DataFrame(values, index=obj.index, columns=obj.columns)

        return da, to_frame
    raise TypeError(
        f"{argument} must be an xarray.DataArray, a NumPy array or a pandas Series/DataFrame,"
        f" got {type(obj).__name__}"
    )
