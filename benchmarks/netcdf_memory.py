"""Peak memory of ``filter_file`` as the NetCDF file grows: streamed vs loaded whole.

``ndwconv.adapters.timeseries.filter_file`` promises that a file larger than memory
streams through: only a few chunks of the filtered variable are in memory at a time. This
benchmark checks it the way a user would notice: the peak resident memory (``ru_maxrss``)
of a fresh process that filters a file, for files of growing size.

Each file is NetCDF-4 (written slab by slab with h5netcdf, so writing it takes no memory),
holding ``x(station=S, time=N)`` float32 (S = 16) with HDF5 chunks of S × 65 536 and
an int64 ``time`` coordinate in seconds. The filter is a centred moving mean over 25 samples
(a cumulative-sum moving mean per block, lazy on dask through ``map_overlap`` with a
12-sample halo; its own memory is a few times the chunk). xarray's
``rolling(time=25).mean()`` is not used: on dask it materialises a 25-sample window per
value, 25 times the chunk, which would measure xarray's rolling rather than the file
streaming.

Per file size, one fresh process each (run one after the other, never in parallel):

- *baseline*: the same imports and a ``filter_file`` of a 64 KiB file (the code and
  libraries loaded, no data to speak of);
- *index*: only :func:`~ndwconv.adapters.timeseries.netcdf.open_series`, which decodes
  the time coordinate into memory (xarray indexes it; its CF decoding transiently needs
  several times the 8 bytes a sample that it keeps);
- *streamed*: ``filter_file(..., chunk_bytes=CHUNK)`` (8 MiB chunks; 1 MiB with
  ``--quick``);
- *loaded*: what one would write without it, ``xr.load_dataset`` + the same mean +
  ``to_netcdf`` (only up to ``--load-max-mib``, 128 MiB by default).

The table gives each peak and its growth over the baseline, and the streamed peak less
the index peak: what the chunks themselves take. Streaming is bounded when that stays
flat while the file grows (a small multiple of the chunk: dask's threads each hold a
chunk, its neighbours for the window and the result), whereas the loaded growth is
several times the file. ``--stations`` sets how much data there is per time sample.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._timing import Run, format_table, make_parser, set_threads

CHILD = r"""
import json, resource, sys, time
import numpy as np, xarray as xr
from ndwconv.adapters.timeseries.netcdf import filter_file, open_series
mode, src, dst, chunk_bytes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def moving_mean(block):  # a centred mean of 25 samples along the last axis, by cumsum
    padded = np.pad(block.astype(np.float64), [(0, 0)] * (block.ndim - 1) + [(13, 12)], "edge")
    total = np.cumsum(padded, axis=-1)
    return ((total[..., 25:] - total[..., :-25]) / 25).astype(block.dtype)
def mean(da):
    if hasattr(da.data, "map_overlap"):
        data = da.data.map_overlap(moving_mean, depth={da.ndim - 1: 12}, boundary="none")
    else:
        data = moving_mean(da.values)
    return da.copy(data=data)
start = time.perf_counter()
if mode == "index":
    open_series(src, var="x", dim="time").close()
elif mode in ("baseline", "streamed"):
    filter_file(src, dst, mean, var="x", progress=False, chunk_bytes=chunk_bytes)
else:
    ds = xr.load_dataset(src, engine="h5netcdf")
    ds["x"] = mean(ds["x"])
    ds.to_netcdf(dst, engine="h5netcdf")
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
print(json.dumps({"peak_rss_mib": peak, "seconds": seconds}))
"""


def write_file(path: Path, mib: float, stations: int) -> int:
    """A NetCDF-4 file of about ``mib`` MiB of float32 ``x(station, time)``; returns N."""
    import h5netcdf.legacyapi as legacy

    n = max(1024, int(mib * 2**20 / (4 * stations + 8)))
    slab = 1 << 20
    rng = np.random.default_rng(0)
    with legacy.Dataset(path, "w") as f:
        f.createDimension("station", stations)
        f.createDimension("time", n)
        time = f.createVariable("time", "i8", ("time",))
        time.setncattr("units", "seconds since 2020-01-01 00:00:00")
        x = f.createVariable("x", "f4", ("station", "time"), chunksizes=(stations, min(n, 65_536)))
        x.setncattr("units", "mV")
        for begin in range(0, n, slab):
            end = min(n, begin + slab)
            time[begin:end] = np.arange(begin, end, dtype=np.int64)
            x[:, begin:end] = rng.standard_normal((stations, end - begin), dtype=np.float32)
    return n


def child(mode: str, src: Path, dst: Path, chunk_bytes: int) -> dict[str, float]:
    """Run one fresh process; returns its peak RSS and seconds."""
    if dst.exists():
        dst.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(src), str(dst), str(chunk_bytes)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    dst.unlink(missing_ok=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(
        "netcdf_memory",
        __doc__,
        [
            "python -m benchmarks.netcdf_memory",
            "python -m benchmarks.netcdf_memory --sizes 64 256 1024 --chunk-mib 16",
        ],
        threads_default="dask's (one per core)",
    )
    parser.add_argument("--sizes", type=float, nargs="+", metavar="MIB", help="file sizes in MiB")
    parser.add_argument("--stations", type=int, default=16, help="series per file (default: 16)")
    parser.add_argument("--chunk-mib", type=float, help="chunk budget of the streamed runs")
    parser.add_argument(
        "--load-max-mib",
        type=float,
        help="largest file also loaded whole for comparison (default: 128; none with --quick)",
    )
    args = parser.parse_args(argv)
    sizes = args.sizes or ([4] if args.quick else [32, 128, 512])
    if args.load_max_mib is None:
        args.load_max_mib = 0 if args.quick else 128
    chunk_mib = args.chunk_mib or (1 if args.quick else 8)
    chunk_bytes = int(chunk_mib * 2**20)
    import dask
    import h5netcdf
    import xarray

    set_threads(args)  # torch's, for the record; the filter runs on dask's threads
    run = Run(
        "netcdf_memory",
        args,
        argv,
        xarray=xarray.__version__,
        dask=dask.__version__,
        h5netcdf=h5netcdf.__version__,
    )
    settings = {
        "sizes_mib": sizes,
        "chunk_mib": chunk_mib,
        "load_max_mib": args.load_max_mib,
        "stations": args.stations,
        "filter": "centred 25-sample moving mean (cumsum), map_overlap halo 12",
        "dask_threads": os.cpu_count(),
    }
    print("## Peak memory of filter_file: streamed vs loaded whole\n")
    print(run.header(settings, markdown=True))
    print()
    rows = []
    with tempfile.TemporaryDirectory(prefix="netcdf-memory-") as folder:
        folder = Path(folder)
        tiny = folder / "tiny.nc"
        write_file(tiny, 1 / 16, args.stations)
        baseline = child("baseline", tiny, folder / "out.nc", chunk_bytes)
        run.log(f"baseline {baseline['peak_rss_mib']:.0f} MiB")
        for mib in sizes:
            src = folder / "series.nc"
            n = write_file(src, mib, args.stations)
            row = {
                "file_mib": src.stat().st_size / 2**20,
                "samples": n,
                "baseline_mib": baseline["peak_rss_mib"],
                "index": child("index", src, folder / "out.nc", chunk_bytes),
                "streamed": child("streamed", src, folder / "out.nc", chunk_bytes),
            }
            if mib <= args.load_max_mib:
                row["loaded"] = child("loaded", src, folder / "out.nc", chunk_bytes)
            src.unlink()
            rows.append(row)
            run.log(f"{mib:g} MiB done")

    def growth(row: dict, key: str) -> str:
        if key not in row:
            return "—"
        peak = row[key]["peak_rss_mib"]
        return f"{peak:.0f} (+{peak - row['baseline_mib']:.0f})"

    print(
        format_table(
            [
                "file MiB",
                "samples",
                "streamed peak MiB (growth)",
                "streamed s",
                "streamed − index MiB",
                "loaded peak MiB (growth)",
                "loaded s",
            ],
            [
                [
                    f"{r['file_mib']:.0f}",
                    f"{args.stations}×{r['samples']:,}",
                    growth(r, "streamed"),
                    f"{r['streamed']['seconds']:.1f}",
                    f"{r['streamed']['peak_rss_mib'] - r['index']['peak_rss_mib']:.0f}",
                    growth(r, "loaded"),
                    f"{r['loaded']['seconds']:.1f}" if "loaded" in r else "—",
                ]
                for r in rows
            ],
            markdown=True,
        )
    )
    print(f"\nbaseline (imports + a 64 KiB file): {baseline['peak_rss_mib']:.0f} MiB")
    print(f"\n_{run.footer()}_")
    run.write(settings, {"baseline": baseline, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
