"""``ndwconv denoise --var``: a 1-D checkpoint over a NetCDF-4/HDF5 time series, streamed.

The variable ``--var`` of each input is denoised along ``--dim`` by
:func:`ndwconv.adapters.timeseries.apply` (every other dimension is a batch of series) and
written by :func:`ndwconv.adapters.timeseries.netcdf.filter_file` to ``OUTPUT_DIR/<input
file name>``: chunk by chunk, so a file larger than memory streams through; the chunks
overlap by the model's receptive radius (computed from its layers), so the result equals
the whole-series pass; every other variable, coordinate and attribute is copied, the
variable keeps its attributes and encoding, the write is atomic and the input is only
read.

Intensities are mapped as the volume path maps them: ``(x - lo) / (hi - lo)`` with
``[lo, hi]`` the 0.5th and 99.5th percentiles of the variable's finite values
(:func:`series_range`), denoised, and mapped back with ``y · (hi - lo) + lo`` (in float64).
The percentiles are taken on a subsample of about 2²⁰ values made of up to 64 evenly
spaced runs of consecutive samples along ``dim`` (the whole variable when it is smaller):
a strided subsample would alias with a periodic signal (a daily cycle sampled hourly, read
with a stride of 24, is one phase of it).

Chunks: ``--chunks N`` samples along ``dim``, or by default :func:`default_chunks` (about
64 MiB of the variable, shortened for a wide model).

Missing values (NaN, or the variable's ``_FillValue``) are non-finite values for
``--nonfinite``: counted before the model runs (one lazy pass over the variable) and
refused, read as 0, or denoised as they are.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .inference import PERCENTILES

__all__ = ["count_missing", "default_chunks", "denoise_series", "series_output", "series_range"]

_SAMPLE_VALUES = 1 << 20
_RUNS = 64
ACTIVATION_BYTES = 256 * 2**20
"""Budget of one forward pass's activations that bounds the default chunk length."""
_LIVE_ACTIVATIONS = 4  # float32 feature maps of the widest layer alive at once, at most


def series_output(path: str, out: str) -> Path:
    """``OUTPUT_DIR/<input file name>`` (the path is a file, never ``file.h5:/dataset``)."""
    return Path(out) / os.path.basename(path)


def series_range(
    da: Any,
    dim: Hashable,
    percentiles: tuple[float, float] = PERCENTILES,
    max_values: int = _SAMPLE_VALUES,
    runs: int = _RUNS,
) -> tuple[float, float]:
    """``(lo, hi)``: percentiles of the finite values of a subsample of ``da``.

    ``da`` may be lazy (a variable of an open file): only the subsample is read. It is the
    whole of ``da`` when that has at most ``max_values`` values; otherwise up to ``runs``
    runs of consecutive samples along ``dim``, evenly spaced from the first sample to the
    last, of every series (the other dimensions are read with a common stride when even
    one sample of all of them exceeds ``max_values / runs``). A constant series gives
    ``hi = lo + 1``, so that the mapping ``(x - lo) / (hi - lo)`` only shifts it.

    Raises:
        ValueError: the subsample holds no finite value.

    Example:
        >>> import xarray as xr
        >>> series_range(xr.DataArray(np.arange(1001.0), dims="time"), "time", (0, 50))
        (0.0, 500.0)
    """
    length = int(da.sizes[dim])
    if da.size <= max_values:
        sample = np.asarray(da.values)
    else:
        others = [d for d in da.dims if d != dim]
        row = math.prod(int(da.sizes[d]) for d in others)  # values per sample of dim
        per_run_budget = max(1, max_values // max(1, min(runs, length)))
        stride = 1
        if others and row > per_run_budget:
            stride = math.ceil((row / per_run_budget) ** (1 / len(others)))
        index = {d: slice(None, None, stride) for d in others}
        row_read = math.prod(len(range(0, int(da.sizes[d]), stride)) for d in others)
        along = max(1, max_values // max(row_read, 1))  # samples of dim to read in all
        count = max(1, min(runs, length, along))
        width = max(1, min(along, length) // count)  # disjoint runs
        starts = sorted({round(k * (length - width) / max(count - 1, 1)) for k in range(count)})
        sample = np.concatenate(
            [
                np.asarray(da.isel({**index, dim: slice(s, s + width)}).values).ravel()
                for s in starts
            ]
        )
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        raise ValueError("no finite values to compute the intensity range from")
    lo, hi = (float(v) for v in np.percentile(finite.astype(np.float64), percentiles))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def default_chunks(
    model: torch.nn.Module,
    sizes: dict[Hashable, int],
    dim: Hashable,
    itemsize: int,
    batch: int,
    disk_chunks: tuple[int, ...] | None = None,
) -> dict[Hashable, int]:
    """Dask chunks of a variable of ``sizes`` when ``--chunks`` is not given.

    :func:`~ndwconv.adapters.timeseries.netcdf.chunk_plan`'s default (about 64 MiB of
    the variable per chunk), with ``dim`` shortened so that one forward pass of ``batch``
    series (fewer when the chunk holds fewer) keeps the activations of the model's widest
    convolution within :data:`ACTIVATION_BYTES`: a 64 MiB chunk of one float32 series
    is 16.7 million samples, which a 64-channel network would turn into 4 GiB per feature
    map. The length stays at least 4096 samples (or the series) and, where it is cut, a
    multiple of the file's own chunk along ``dim`` when that fits.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 64, 3), torch.nn.Conv1d(64, 1, 3))
        >>> default_chunks(net, {"time": 10**8}, "time", 4, batch=4)  # one series at a time
        {'time': 262144}
        >>> default_chunks(net, {"lead": 12, "time": 10**8}, "time", 4, batch=4)
        {'lead': 12, 'time': 65536}
    """
    from ndwconv.adapters.timeseries.netcdf import chunk_plan

    disk = dict(zip(sizes, disk_chunks, strict=True)) if disk_chunks else None
    plan = chunk_plan(sizes, dim, itemsize, None, disk_chunks=disk)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    width = max((int(m.out_channels) for m in convs), default=1)
    series = max(1, min(batch, math.prod(n for d, n in plan.items() if d != dim)))
    cap = max(4096, ACTIVATION_BYTES // (4 * _LIVE_ACTIVATIONS * width * series))
    if plan[dim] > cap:
        step = (disk or {}).get(dim)
        plan[dim] = cap - cap % step if step and step <= cap else cap
    return plan


def count_missing(da: Any) -> int:
    """The number of NaN/±inf values of a dask-backed DataArray (computed chunk by chunk).

    Example:
        >>> import xarray as xr
        >>> count_missing(xr.DataArray([1.0, np.nan, np.inf, 2.0]).chunk(2))
        2
    """
    if np.dtype(da.dtype).kind != "f":  # integers decoded without a fill hold no NaN
        return 0
    import dask.array as dask_array

    return int((~dask_array.isfinite(da.data)).sum().compute(scheduler="threads"))


def _finite_or_raise(block: np.ndarray, *, label: str) -> np.ndarray:
    """A block of the result, or an error when the model produced non-finite values."""
    bad = block.size - int(np.count_nonzero(np.isfinite(block)))
    if bad:
        raise ValueError(
            f"{label}: the model produced {bad} non-finite (NaN/inf) values in a chunk; "
            "nothing was written (--nonfinite allow writes them)"
        )
    return block


def denoise_series(
    model: torch.nn.Module,
    path: str,
    out: str,
    args: argparse.Namespace,
    device: torch.device,
) -> str:
    """Denoise variable ``args.var`` of the file ``path`` into ``out``; returns its
    summary line. ``args`` holds the ``ndwconv denoise`` options (``var``, ``dim``,
    ``chunks``, ``batch``, ``dtype``, ``nonfinite``, ``overwrite``, ``quiet``, ``model``)."""
    from ndwconv.adapters.timeseries import apply
    from ndwconv.adapters.timeseries.netcdf import chunk_plan, filter_file, open_series

    start = time.perf_counter()
    var, dim = args.var, args.dim
    with open_series(path, var=var, dim=dim) as ds:
        variable = ds[var]
        sizes = dict(variable.sizes)
        itemsize = variable.dtype.itemsize
        if args.chunks is None:
            disk = variable.encoding.get("chunksizes")
            plan = default_chunks(model, sizes, dim, itemsize, args.batch, disk)
        else:
            plan = chunk_plan(sizes, dim, itemsize, args.chunks)
        bad = count_missing(variable.chunk(plan))
        if bad and args.nonfinite == "raise":
            raise ValueError(
                f"{path}: {bad} missing or non-finite values (NaN, inf, _FillValue) in "
                f"{var!r}; pass --nonfinite zero to read them as 0, or --nonfinite allow to "
                "denoise them as they are"
            )
        lo, hi = series_range(variable, dim)
    scale = hi - lo
    zero = bool(bad) and args.nonfinite == "zero"
    check = args.nonfinite != "allow"
    label = f"{path}: {var!r}"
    provenance = (
        f"denoised along {dim} by {os.path.basename(args.model)}; values mapped by range "
        f"[{lo:.9g}, {hi:.9g}] (percentiles {PERCENTILES[0]:g}-{PERCENTILES[1]:g}) to [0, 1] "
        "and back"
    )

    def func(da: Any) -> Any:
        data = da.data.astype(np.float64)
        if zero:
            import dask.array as dask_array

            data = dask_array.where(dask_array.isfinite(data), data, 0.0)
        normalised = da.copy(data=(data - lo) / scale)
        y = apply(model, normalised, dim=dim, batch_size=args.batch, device=device)
        result = y.data.astype(np.float64) * scale + lo
        if check:
            result = result.map_blocks(_finite_or_raise, dtype=np.float64, label=label)
        denoised = y.copy(data=result)
        denoised.attrs["ndwconv_denoise"] = provenance
        return denoised

    try:
        target = filter_file(
            path,
            series_output(path, out),
            func,
            var=var,
            dim=dim,
            chunks=plan,
            progress=not args.quiet,
            overwrite=args.overwrite,
            packing="keep" if args.dtype == "input" else "float",
        )
    except ValueError as err:  # filter_file names its own option; this command has --dtype
        message = str(err).replace("packing='float' / --packing float", "--dtype float32")
        if message == str(err):
            raise
        raise ValueError(message) from err
    seconds = time.perf_counter() - start
    shape = " × ".join(f"{d} {n}" for d, n in sizes.items())
    note = ""
    if bad:
        note = f"; {bad} missing/non-finite input values " + ("read as 0" if zero else "kept")
    return (
        f"{path} -> {target}: {var} ({shape}) along {dim}, {seconds:.2f} s, "
        f"range [{lo:.6g}, {hi:.6g}] (percentiles {PERCENTILES[0]:g}-{PERCENTILES[1]:g}) "
        "-> [0, 1]" + note
    )
