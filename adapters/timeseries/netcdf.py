"""NetCDF-4 / HDF5 time series in, filtered NetCDF-4 out, streamed chunk by chunk.

:func:`filter_file` reads one variable of a file lazily (xarray with the ``h5netcdf``
engine over h5py, so no netCDF C library is needed), applies a lazy function to it (a
:func:`~ndwconv.adapters.timeseries.smooth`, a network through
:func:`~ndwconv.adapters.timeseries.apply`, any xarray expression on dask arrays) and
writes a new file in which that variable is replaced and everything else is as it was:

- the other variables, the coordinates and the global attributes are copied as stored
  (the values, dtypes and attributes as they are in the file: times keep their numbers
  and their ``units``/``calendar`` as spelled there);
- every variable keeps its attributes and its on-disk encoding: dtype, ``_FillValue``,
  ``scale_factor``/``add_offset`` packing, compression and shuffle, HDF5 chunk sizes (where
  they still fit the variable); unlimited dimensions stay unlimited; the filtered
  variable also gets the attributes the function adds or changes (its provenance, say);
- only one chunk of the variable (plus what the function needs around it) is in memory at
  a time, read from the source and written to the target as it is computed, so a file
  larger than memory streams through (dask's threaded scheduler and ``to_netcdf(...,
  compute=False)``);
- the target is written to a temporary file in its own folder and renamed into place
  (:func:`ndwconv.adapters.atomic.atomic_write`): a failure leaves neither a partial file
  nor a temporary one, and the source is only ever opened for reading.

Files read:

- **NetCDF-4** (the HDF5-based format; ``.nc``, ``.nc4``, ``.h5``), variables of the root
  group. NetCDF-3 ("classic", 64-bit offset) files are HDF5-less and refused with a hint
  (``nccopy -k nc4 in.nc out.nc`` converts them).
- **Plain HDF5** (datasets written with h5py or another HDF5 writer, without NetCDF's
  dimension scales): the datasets of the root group are read as variables; their axes,
  which have no names, are called ``phony_dim_0``, ``phony_dim_1``, … (h5netcdf's
  ``phony_dims="sort"``: numbered in the order of the datasets' paths, then axes, with
  one name per distinct length in a dataset), so the axis to filter along is given as,
  e.g., ``dim="phony_dim_1"``; an error for an unknown ``dim`` lists the names. The
  target is then a NetCDF-4 file: the same datasets at the same paths with the same
  attributes and encoding, readable by h5py as before, plus the dimension scales that
  name the axes. Datasets in sub-groups are not read.

Packed variables (an integer dtype with ``scale_factor``/``add_offset``, as climate and
sensor archives store 16-bit counts): a filter's result has more precision than the
packing. ``packing="keep"`` (the default) writes the result packed again with the same
dtype, ``scale_factor``, ``add_offset`` and ``_FillValue``, rounded to the nearest
quantum (half to even), so the error of packing is at most half a ``scale_factor``, the
input's own precision; NaN becomes the ``_FillValue``. A value the packing cannot hold
(outside the integer range or ``valid_range``/``valid_min``/``valid_max``, equal to the
``_FillValue`` after rounding, ±inf, or NaN without a ``_FillValue``) stops the write
with an error naming the variable; nothing is left behind. ``packing="float"`` drops the
packing (``scale_factor``, ``add_offset``, and ``valid_*``, which are in packed units) and
writes the result's floating-point dtype, with ``_FillValue`` NaN. A plain
integer variable (no ``scale_factor``/``add_offset``) has no quantum to round to: its
result is written in the result's floating-point dtype, with its ``_FillValue`` (if any)
as the same number. A floating-point variable keeps its dtype (a float32 variable is
written as float32 even when the function computes in float64) and its ``_FillValue``.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> folder = Path(tempfile.mkdtemp())
    >>> time = pd.date_range("2024-01-01", periods=6, freq="h")
    >>> xr.Dataset(
    ...     {"temp": ("time", np.arange(6.0), {"units": "degC"})}, coords={"time": time}
    ... ).to_netcdf(folder / "obs.nc", engine="h5netcdf")
    >>> _ = filter_file(folder / "obs.nc", folder / "twice.nc", lambda da: da * 2,
    ...                 var="temp", progress=False)
    >>> with xr.open_dataset(folder / "twice.nc", engine="h5netcdf") as out:
    ...     print(out["temp"].values.tolist(), out["temp"].attrs["units"])
    [0.0, 2.0, 4.0, 6.0, 8.0, 10.0] degC
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ndwconv._install import install_hint

from ._containers import import_xarray

__all__ = ["DEFAULT_CHUNK_BYTES", "PACKING_POLICIES", "chunk_plan", "filter_file", "open_series"]

DEFAULT_CHUNK_BYTES = 64 * 2**20
"""Bytes of the filtered variable per dask chunk when ``chunks`` is not given (64 MiB)."""

PACKING_POLICIES = ("keep", "float")
"""What :func:`filter_file` does with a packed (``scale_factor``/``add_offset``) variable."""

_MIN_SAMPLES = 4096  # samples along ``dim`` per chunk below which the other dims are split
_NETCDF3 = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
# encoding keys that describe the source file rather than how to write the variable
_SOURCE_KEYS = ("source", "original_shape", "preferred_chunks")


def _imports() -> tuple[Any, Any]:
    """``(xarray, dask.array)``, or an ImportError naming the extra."""
    xr = import_xarray()
    try:
        import dask.array as dask_array
        import h5netcdf  # noqa: F401  (the engine must be importable)
        import h5py  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"NetCDF/HDF5 time series need dask and h5netcdf: {install_hint('timeseries')}"
        ) from exc
    return xr, dask_array


def _check_source(source: Path) -> None:
    """Refuse a missing file, a folder, a NetCDF-3 file and anything that is not HDF5."""
    import h5py

    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file")
    if source.is_dir():
        raise IsADirectoryError(f"{source}: is a folder, not a NetCDF/HDF5 file")
    with open(source, "rb") as handle:
        head = handle.read(4)
    if head in _NETCDF3:
        raise ValueError(
            f"{source}: is a NetCDF-3 (classic) file; only NetCDF-4/HDF5 files are read "
            "(convert it with `nccopy -k nc4 IN OUT`)"
        )
    if not h5py.is_hdf5(source):
        raise ValueError(f"{source}: is not a NetCDF-4/HDF5 file (no HDF5 signature)")


def open_series(source: str | os.PathLike, *, var: str, dim: Hashable = "time") -> Any:
    """Open ``source`` lazily and check that ``var`` can be filtered along ``dim``.

    Nothing is read but the metadata and the dimension coordinates; the variables are
    lazy (not yet dask-backed: :func:`filter_file` chunks them with :func:`chunk_plan`).
    Times are decoded to datetimes; times in a calendar that needs ``cftime`` (``noleap``,
    ``360_day``, …) when it is not installed are left as the numbers stored, with their
    ``units`` and ``calendar`` attributes (and so written back unchanged).

    Returns:
        The ``xarray.Dataset`` (close it, or use it in a ``with`` statement).

    Raises:
        FileNotFoundError, IsADirectoryError: ``source`` is missing or a folder.
        ValueError: ``source`` is not NetCDF-4/HDF5; ``var`` is not one of its variables
            (the message lists them); ``dim`` is not a dimension of ``var`` (the message
            lists them with their lengths).
        TypeError: ``var`` does not hold real numbers (e.g. strings, booleans, times).
    """
    xr, _ = _imports()
    source = Path(source)
    _check_source(source)
    try:
        try:
            ds = xr.open_dataset(source, engine="h5netcdf", phony_dims="sort", chunks=None)
        except ValueError as exc:  # times in a calendar NumPy lacks, without cftime
            if "decode_times=False" not in str(exc):
                raise
            ds = xr.open_dataset(
                source, engine="h5netcdf", phony_dims="sort", chunks=None, decode_times=False
            )
    except (OSError, ValueError) as exc:
        message = " ".join(str(exc).split())
        raise ValueError(f"{source}: cannot be read as NetCDF-4/HDF5: {message}") from exc
    try:
        if var not in ds.data_vars:
            names = ", ".join(map(str, ds.data_vars)) or "none"
            raise ValueError(f"{source}: no variable var={var!r}; its variables are: {names}")
        dims = ds[var].dims
        if dim not in dims:
            sizes = ", ".join(f"{name} ({n})" for name, n in ds[var].sizes.items())
            raise ValueError(
                f"{source}: dim={dim!r} is not a dimension of {var!r}; its dimensions "
                f"(length) are {sizes}"
            )
        dtype = ds[var].dtype
        if dtype.kind not in "iuf":
            raise TypeError(
                f"{source}: variable {var!r} holds {dtype} values; only real numbers "
                "(integer or floating point) can be filtered"
            )
    except BaseException:
        ds.close()
        raise
    return ds


def chunk_plan(
    sizes: Mapping[Hashable, int],
    dim: Hashable,
    itemsize: int,
    chunks: int | Mapping[Hashable, int] | None = None,
    *,
    target_bytes: int = DEFAULT_CHUNK_BYTES,
    disk_chunks: Mapping[Hashable, int] | None = None,
) -> dict[Hashable, int]:
    """Dask chunk sizes, per dimension, for a variable of ``sizes`` filtered along ``dim``.

    - ``chunks`` an int: that many samples along ``dim``; the other dimensions whole.
    - ``chunks`` a mapping: used as given (dimensions left out are whole).
    - ``chunks`` None: about ``target_bytes`` per chunk. The other dimensions stay whole
      and ``dim`` is cut into as many samples as fit (at least ``min(4096, length)``, and
      a multiple of the file's own chunk along ``dim`` when there is one and it fits, so
      that no HDF5 chunk is read twice); only when even 4096 samples of all the others
      exceed ``target_bytes`` are the other dimensions cut too, largest first.

    Example:
        >>> chunk_plan({"station": 10, "time": 10**6}, "time", 8, target_bytes=2**20)
        {'station': 10, 'time': 13107}
        >>> chunk_plan({"station": 10, "time": 10**6}, "time", 8, 5000)
        {'station': 10, 'time': 5000}
    """
    plan = {name: int(n) for name, n in sizes.items()}
    length = plan[dim]
    if isinstance(chunks, Mapping):
        for name, n in chunks.items():
            if name not in plan:
                raise ValueError(
                    f"chunks names {name!r}, not a dimension of the variable ({list(plan)})"
                )
            if int(n) < 1:
                raise ValueError(f"chunks[{name!r}] must be at least 1, got {n}")
            plan[name] = min(int(n), plan[name])
        return plan
    if chunks is not None:
        if int(chunks) < 1:
            raise ValueError(f"chunks must be at least 1 sample, got {chunks}")
        plan[dim] = min(int(chunks), length)
        return plan
    if target_bytes < 1:
        raise ValueError(f"target_bytes must be at least 1, got {target_bytes}")
    others = [name for name in plan if name != dim]
    row = itemsize * math.prod(plan[name] for name in others)  # bytes per sample of dim
    along = max(min(_MIN_SAMPLES, length), target_bytes // max(row, 1))
    disk = (disk_chunks or {}).get(dim)
    if disk and disk < along:
        along -= along % disk
    plan[dim] = max(1, min(along, length))
    # cut the other dimensions, largest first, until a chunk fits (or each is one)
    for name in sorted(others, key=lambda n: -plan[n]):
        bytes_ = itemsize * math.prod(plan.values())
        if bytes_ <= target_bytes:
            break
        plan[name] = max(1, plan[name] * target_bytes // bytes_)
    return plan


def _disk_chunks(encoding: Mapping[str, Any], dims: tuple[Hashable, ...]) -> dict[Hashable, int]:
    sizes = encoding.get("chunksizes")
    if not sizes or len(sizes) != len(dims):
        return {}
    return dict(zip(dims, (int(n) for n in sizes), strict=True))


def _packed_limits(dtype: np.dtype, fill: int | None, attrs: Mapping[str, Any]) -> tuple[int, int]:
    """The smallest and largest packed integers a valid value may take: the dtype's range
    (unsigned with ``_Unsigned = "true"``) without a ``_FillValue`` at either end, within
    ``valid_range``/``valid_min``/``valid_max`` (CF: in packed units)."""
    if str(attrs.get("_Unsigned", "")).lower() == "true" and dtype.kind == "i":
        dtype = np.dtype(f"u{dtype.itemsize}")
    info = np.iinfo(dtype)
    lo, hi = int(info.min), int(info.max)
    if fill is not None:
        if fill == lo:
            lo += 1
        elif fill == hi:
            hi -= 1
    valid = attrs.get("valid_range")
    if valid is not None and np.size(valid) == 2:
        first, last = np.asarray(valid, dtype=np.float64).ravel()
        lo, hi = max(lo, math.ceil(first)), min(hi, math.floor(last))
    if attrs.get("valid_min") is not None:
        lo = max(lo, math.ceil(float(np.asarray(attrs["valid_min"]).ravel()[0])))
    if attrs.get("valid_max") is not None:
        hi = min(hi, math.floor(float(np.asarray(attrs["valid_max"]).ravel()[0])))
    return lo, hi


def _pack_block(
    block: np.ndarray,
    *,
    var: str,
    store: np.dtype,
    scale: float,
    offset: float,
    fill: int | None,
    lo: int,
    hi: int,
    unsigned: bool = False,
) -> np.ndarray:
    """``round((block - offset) / scale)`` as ``store``, NaN as ``fill``; raises where the
    packing cannot hold a value. ``unsigned``: ``store`` is signed but the packed values
    are its unsigned counterpart's (NetCDF's ``_Unsigned = "true"``), stored bit for bit."""
    x = np.asarray(block, dtype=np.float64)
    nan = np.isnan(x)
    if np.isinf(x).any():
        raise ValueError(f"variable {var!r}: the result holds ±inf, which packing cannot store")
    if nan.any() and fill is None:
        raise ValueError(
            f"variable {var!r}: the result holds NaN but the packed variable has no "
            "_FillValue to store it as (use packing='float' / --packing float)"
        )
    packed = np.round((np.where(nan, offset, x) - offset) / scale)
    valid = packed[~nan]
    if valid.size:
        low, high = valid.min(), valid.max()
        if low < lo or high > hi:
            worst = x[~nan][np.argmax(np.maximum(lo - valid, valid - hi))]
            raise ValueError(
                f"variable {var!r}: the result {worst:g} is outside what its packing "
                f"(scale_factor {scale:g}, add_offset {offset:g}) can store: "
                f"{lo * scale + offset:g} to {hi * scale + offset:g} (use packing='float' / "
                "--packing float to write floats)"
            )
        if fill is not None and (valid == fill).any():
            raise ValueError(
                f"variable {var!r}: a result rounds to the _FillValue {fill} of its packing "
                "and would read back as missing (use packing='float' / --packing float)"
            )
    if fill is not None:
        packed[nan] = fill
    if unsigned:
        return packed.astype(np.dtype(f"u{store.itemsize}")).view(store)
    return packed.astype(store)


def _changed_attrs(result: Any, source: Any) -> dict[str, Any]:
    """The attributes ``func`` added or changed (e.g. provenance), not the ones it kept."""
    changed = {}
    for key, value in result.attrs.items():
        old = source.attrs.get(key, _MISSING)
        try:
            same = old is not _MISSING and bool(np.all(np.asarray(old) == np.asarray(value)))
        except (TypeError, ValueError):
            same = False
        if not same:
            changed[key] = value
    return changed


_MISSING = object()


def _result_variable(
    result: Any,
    decoded: Any,
    stored: Any,
    *,
    var: str,
    packing: str,
    dask_array: Any,
) -> Any:
    """The result as the variable to write (an ``xarray.Variable``): the source's
    attributes as stored and its encoding, packed again or written as floats (see the
    module docstring). ``decoded`` and ``stored`` are the source variable as decoded and
    as stored."""
    attrs = dict(stored.attrs)
    attrs.update(_changed_attrs(result, decoded))
    encoding = {k: v for k, v in stored.encoding.items() if k not in _SOURCE_KEYS}
    chunksizes = encoding.get("chunksizes")
    if chunksizes is not None and (
        len(chunksizes) != result.ndim
        or any(c > n for c, n in zip(chunksizes, result.shape, strict=True))
    ):
        del encoding["chunksizes"]  # the source's HDF5 chunks do not fit the result
    disk = np.dtype(stored.dtype)
    packed = disk.kind in "iu" and ("scale_factor" in attrs or "add_offset" in attrs)
    data = result.data
    if packed and packing == "keep":
        scale = float(np.asarray(attrs.get("scale_factor", 1.0)).ravel()[0])
        offset = float(np.asarray(attrs.get("add_offset", 0.0)).ravel()[0])
        fill = attrs.get("_FillValue", attrs.get("missing_value"))
        fill_int = None if fill is None else int(np.asarray(fill).ravel()[0])
        unsigned = str(attrs.get("_Unsigned", "")).lower() == "true" and disk.kind == "i"
        if unsigned and fill_int is not None:  # the fill as the unsigned value it stands for
            fill_int %= 2 ** (8 * disk.itemsize)
        lo, hi = _packed_limits(disk, fill_int, attrs)
        data = data.map_blocks(
            _pack_block,
            dtype=disk,
            var=var,
            store=disk,
            scale=scale,
            offset=offset,
            fill=fill_int,
            lo=lo,
            hi=hi,
            unsigned=unsigned,
        )
        encoding["dtype"] = disk
    else:
        if disk.kind == "f":  # a float variable keeps its dtype, whatever func computed in
            float_dtype = disk
        else:
            float_dtype = result.dtype if result.dtype.kind == "f" else np.dtype(np.float64)
        for key in ("scale_factor", "add_offset", "_Unsigned"):
            attrs.pop(key, None)
        for key in ("_FillValue", "missing_value"):
            if key in attrs:
                value = np.asarray(attrs[key]).ravel()[0]
                attrs[key] = float_dtype.type(np.nan if packed else value)
        if "_FillValue" not in attrs:
            attrs["_FillValue"] = float_dtype.type(np.nan)
        for key in ("valid_range", "valid_min", "valid_max"):  # in packed units
            if packed:
                attrs.pop(key, None)
        if data.dtype != float_dtype:
            data = data.astype(float_dtype)
        fill = attrs["_FillValue"]
        if not np.isnan(fill):  # stored as the number, as in the source
            data = dask_array.where(dask_array.isnan(data), fill, data)
        encoding["dtype"] = float_dtype
    return import_xarray().Variable(result.dims, data, attrs, encoding)


def _open_stored(source: Path) -> Any:
    """``source`` with nothing decoded: the variables as stored, attributes as written."""
    xr = import_xarray()
    options: dict[str, Any] = {}
    if "create_default_indexes" in inspect.signature(xr.open_dataset).parameters:
        options["create_default_indexes"] = False  # coordinates stream too (xarray ≥ 2025.7)
    return xr.open_dataset(
        source, engine="h5netcdf", phony_dims="sort", chunks=None, decode_cf=False, **options
    )


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_target(source: Path, target: Path, overwrite: bool) -> None:
    """Refuse, before anything is read, to write over the source or an existing file."""
    if _same_file(source, target):
        raise ValueError(f"{target}: the target is the source file {source}; choose another")
    if target.is_dir():
        raise IsADirectoryError(f"{target}: the target is a folder")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"{target}: the target's folder {target.parent} does not exist")
    if os.path.lexists(target) and not overwrite:
        raise FileExistsError(f"{target}: the target exists; pass overwrite=True to replace it")


def _task_progress(label: str) -> Any:
    """A dask local-scheduler callback that shows a progress bar of the tasks computed
    (:func:`ndwconv.progress.progress_bar`), opened once the number of tasks is known."""
    from dask.callbacks import Callback

    from ndwconv.progress import progress_bar

    class TaskProgress(Callback):
        bar: Any = None

        def _start_state(self, dsk: Any, state: Any) -> None:
            total = sum(len(state.get(key, ())) for key in ("ready", "waiting", "running"))
            total += len(state.get("finished", ()))
            self.bar = progress_bar(total=total, desc=label, unit="task", leave=False)

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, wid: Any) -> None:
            self.bar.update(1)

        def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
            self.bar.close()

    return TaskProgress()


def filter_file(
    source: str | os.PathLike,
    target: str | os.PathLike,
    func: Callable[[Any], Any],
    *,
    var: str,
    dim: Hashable = "time",
    chunks: int | Mapping[Hashable, int] | None = None,
    progress: bool = True,
    overwrite: bool = False,
    packing: str = "keep",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Path:
    """Write ``source`` to ``target`` with variable ``var`` replaced by ``func(var)``.

    ``func`` gets ``var`` as a dask-backed ``xarray.DataArray`` (decoded: packing
    applied, ``_FillValue`` as NaN, times as datetimes) and must return a lazy DataArray
    of the same dimensions and sizes (any order); it is computed one chunk at a time
    while the target is written. See the module docstring for what is kept, the files
    read and ``packing``.

    Args:
        source: a NetCDF-4 or HDF5 file; only read.
        target: the file to write (NetCDF-4); its folder must exist.
        func: the lazy filter, ``DataArray -> DataArray``.
        var: the variable to filter.
        dim: the dimension ``func`` works along (checked to be one of ``var``'s).
        chunks: samples along ``dim`` per dask chunk, or a mapping of dimension to chunk
            size; default: about ``chunk_bytes`` per chunk (:func:`chunk_plan`). Every
            variable with these dimensions is read with the same chunks.
        progress: show a progress bar (tasks computed) on standard error.
        overwrite: replace an existing ``target``.
        packing: ``"keep"`` or ``"float"``, for a packed integer ``var``.
        chunk_bytes: the chunk budget when ``chunks`` is None.

    Returns:
        ``target`` as a Path.

    Raises:
        FileNotFoundError, IsADirectoryError, ValueError, TypeError: bad ``source``,
            ``var``, ``dim`` (see :func:`open_series`), ``chunks`` or ``packing``; the
            message names the argument.
        ValueError: ``target`` is ``source``; a result that ``packing="keep"`` cannot
            store (then nothing is written).
        FileExistsError: ``target`` exists and ``overwrite`` is False.
        TypeError: ``func`` does not return a lazy DataArray of ``var``'s dimensions.
    """
    xr, dask_array = _imports()
    from ..atomic import atomic_write

    if packing not in PACKING_POLICIES:
        raise ValueError(f"packing must be one of {PACKING_POLICIES}, got {packing!r}")
    source, target = Path(source), Path(target)
    _check_source(source)
    _check_target(source, target, overwrite)
    with open_series(source, var=var, dim=dim) as ds, _open_stored(source) as stored:
        variable = ds[var]
        plan = chunk_plan(
            dict(variable.sizes),
            dim,
            variable.dtype.itemsize,
            chunks,
            target_bytes=chunk_bytes,
            disk_chunks=_disk_chunks(variable.encoding, variable.dims),
        )
        result = func(variable.chunk(plan))
        if not isinstance(result, xr.DataArray):
            raise TypeError(f"func must return an xarray.DataArray, got {type(result).__name__}")
        if set(result.dims) != set(variable.dims) or dict(result.sizes) != dict(variable.sizes):
            raise TypeError(
                f"func must return a DataArray with the dimensions and sizes of {var!r} "
                f"({dict(variable.sizes)}), got {dict(result.sizes)}"
            )
        if not isinstance(result.data, dask_array.Array):
            raise TypeError(
                "func returned values computed in memory; it must stay lazy (dask-backed) "
                "so that the file streams through chunk by chunk"
            )
        if result.dtype.kind not in "iuf":
            raise TypeError(f"func returned {result.dtype} values; expected real numbers")
        result = result.transpose(*variable.dims)
        # everything but ``var`` is written as stored: values, dtypes, attributes (time
        # units as spelled in the source) and encoding, read chunk by chunk
        out = stored.chunk({d: n for d, n in plan.items() if d in stored.dims})
        for name, item in out.variables.items():
            item.encoding = {
                k: v for k, v in stored.variables[name].encoding.items() if k not in _SOURCE_KEYS
            }
        out[var] = _result_variable(
            result, variable, stored[var], var=var, packing=packing, dask_array=dask_array
        )
        unlimited = sorted(stored.encoding.get("unlimited_dims", ()) or (), key=str)

        def write(tmp: Path) -> None:
            delayed = out.to_netcdf(
                tmp, engine="h5netcdf", unlimited_dims=unlimited or None, compute=False
            )
            with _task_progress(source.name) if progress else contextlib.nullcontext():
                delayed.compute(scheduler="threads")

        atomic_write(target, write, suffix=target.suffix or ".nc")
    return target
