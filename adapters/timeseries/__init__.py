"""Time series: filters and networks along one dimension of labelled arrays.

Input may be an ``xarray.DataArray`` (numpy- or dask-backed), a NumPy array (the filtered
dimension is its last axis) or a pandas ``Series``/``DataFrame`` (the index is the
filtered dimension); the result is of the same type, with the same dimensions, coordinates,
name and attributes. Needs the ``timeseries`` extra (``pip install -e ".[timeseries]"``).
"""

from __future__ import annotations

from ._containers import as_dataarray
from .apply import apply
from .netcdf import filter_file
from .smooth import smooth

__all__ = ["apply", "as_dataarray", "filter_file", "smooth"]
