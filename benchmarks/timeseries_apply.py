"""A 1-D network over dask-backed series: ``ndwconv.adapters.timeseries.apply``.

Two measurements, one small 1-D DnCNN (``DnCNN(ndim=1, depth=5, width=8)``, float32,
receptive radius 5, eval, one torch thread per worker):

* **throughput vs chunk size and workers**: a float32 NetCDF-4 file (written with xarray
  and h5netcdf) holding ``series × length`` samples is opened lazily with
  ``xarray.open_dataarray(..., engine="h5netcdf", chunks=...)``; the lazy ``apply`` result
  is reduced (``.sum()``) so that only the network's work and the reading are timed, not
  the transfer of the output. Schedulers: dask's threaded scheduler with one thread, and a
  ``distributed.LocalCluster`` of 1 and 2 worker processes (one thread each; the workers
  read the file themselves). Within a scheduler the chunk sizes are interleaved, repeat
  by repeat, in rotating order; medians and quartiles of samples per second. The
  in-memory pass (NumPy in, NumPy out, the same network) is the reference row. The
  machine's load average is recorded per row (on a shared machine a row is only as good
  as the load it was measured under).
* **peak memory as the series grows** (10⁶ → 10⁸ samples by default): one series of each
  length is written to a NetCDF-4 file (chunked in the file as it is read), then a fresh
  Python process opens it lazily, applies the network and writes the result to a second
  NetCDF-4 file through dask (threaded scheduler, one thread). That process reports its
  kernel RSS high-water mark (``VmHWM`` from /proc/self/status) after setup (imports,
  model, a warm-up) and at the end, after resetting the mark between the two
  (``/proc/self/clear_refs``): the peak of the streaming run itself. Flat means memory
  follows the chunk, not the series.

Needs the ``timeseries`` extra (xarray, dask, distributed, h5netcdf).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._timing import (
    Run,
    format_table,
    make_parser,
    positive_int,
    reset_peak,
    set_threads,
    spread,
    status_mib,
)

SEED = 0
DEPTH, WIDTH = 5, 8


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "timeseries_apply",
        __doc__,
        [
            "python -m benchmarks.timeseries_apply --quick",
            "python -m benchmarks.timeseries_apply --chunks 1e4 1e5 5e5 --workers 1 2",
        ],
        threads_default="1 per worker",
    )
    parser.add_argument(
        "--series",
        type=positive_int,
        help="series in the throughput file (default 2; 1 with --quick)",
    )
    parser.add_argument(
        "--length",
        type=float,
        help="samples per series in the throughput file (default 5e5; 2e4 with --quick)",
    )
    parser.add_argument(
        "--chunks",
        type=float,
        nargs="+",
        help="chunk lengths along time for the throughput rows (default 1e4 1e5 5e5; "
        "5e3 2e4 with --quick)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        nargs="+",
        help="LocalCluster sizes (default 1 2; 2 with --quick)",
    )
    parser.add_argument(
        "--repeats", type=positive_int, help="interleaved repeats (default 3; 1 with --quick)"
    )
    parser.add_argument(
        "--lengths",
        type=float,
        nargs="+",
        help="series lengths of the memory rows (default 1e6 1e7 1e8; 1e4 with --quick)",
    )
    parser.add_argument(
        "--memory-chunk",
        type=float,
        help="chunk length of the memory rows (default 1e6; 1e4 with --quick)",
    )
    parser.add_argument("--child", metavar="NC", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", metavar="NC", help=argparse.SUPPRESS)
    return parser


def make_model() -> torch.nn.Module:
    from ndwconv.recipes.models import DnCNN

    torch.manual_seed(SEED)
    return DnCNN(ndim=1, depth=DEPTH, width=WIDTH).eval()


def write_file(path: str, series: int, length: int, chunk: int) -> None:
    """A float32 NetCDF-4 file with ``x(series, time)``: a sine plus noise, written chunk
    by chunk from a lazy dask array (memory stays small also for 10⁸ samples)."""
    import dask.array as dsa
    import xarray as xr

    chunk = min(chunk, length)
    t = dsa.arange(length, chunks=chunk, dtype=np.float32)
    noise = dsa.random.default_rng(SEED).standard_normal(
        (series, length), chunks=(1, chunk), dtype=np.float32
    )
    values = (dsa.sin(t / 50.0)[None, :] + 0.3 * noise).astype(np.float32)
    da = xr.DataArray(values, dims=("series", "time"), name="x", attrs={"units": "mV"})
    da.to_netcdf(
        path,
        engine="h5netcdf",
        encoding={"x": {"chunksizes": (1, chunk)}},
        compute=True,
    )


def open_lazily(path: str, chunk: int) -> Any:
    import xarray as xr

    return xr.open_dataarray(path, engine="h5netcdf", chunks={"series": 1, "time": chunk})


# ---------------------------------------------------------------------------------------
# peak memory: one fresh process per length
# ---------------------------------------------------------------------------------------


def child(source: str, target: str, chunk: int) -> dict[str, Any]:
    """Body of a memory run: stream ``source`` through the network into ``target``."""
    import dask

    from ndwconv.adapters.timeseries import apply

    model = make_model()
    apply(model, np.zeros((1, 4 * chunk), np.float32))  # warm-up: threads, allocator
    report: dict[str, Any] = {"rss_setup_mib": status_mib("VmRSS")}
    report["peak_reset"] = reset_peak()
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=1):
        result = apply(model, open_lazily(source, chunk))
        result.to_netcdf(target, engine="h5netcdf")
    report["seconds"] = time.perf_counter() - t0
    report["peak_mib"] = status_mib("VmHWM")
    return report


def memory_rows(lengths: list[int], chunk: int, folder: str, log: Any) -> list[dict[str, Any]]:
    rows = []
    for length in lengths:
        source = os.path.join(folder, f"series-{length}.nc")
        target = os.path.join(folder, f"out-{length}.nc")
        t0 = time.perf_counter()
        write_file(source, 1, length, chunk)
        log(f"memory: wrote {length:.0e} samples in {time.perf_counter() - t0:.1f} s")
        cmd = [sys.executable, "-m", "benchmarks.timeseries_apply", "--child", source]
        cmd += ["--child-out", target, "--memory-chunk", str(chunk), "--threads", "1"]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]
        )
        if proc.returncode != 0:
            raise RuntimeError(f"memory run failed:\n{proc.stderr[-3000:]}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        row = {
            "length": length,
            "chunk": chunk,
            "file_mib": os.path.getsize(source) / 2**20,
            "output_mib": os.path.getsize(target) / 2**20,
            **report,
            "samples_per_s": length / report["seconds"],
            "load_average": [round(v, 2) for v in os.getloadavg()],
        }
        if report["peak_mib"] is not None and report["rss_setup_mib"] is not None:
            row["peak_over_setup_mib"] = report["peak_mib"] - report["rss_setup_mib"]
        rows.append(row)
        log(f"memory: {length:.0e} samples, peak {report['peak_mib']} MiB")
        os.unlink(source)
        os.unlink(target)
    return rows


# ---------------------------------------------------------------------------------------
# throughput
# ---------------------------------------------------------------------------------------


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def throughput_rows(
    path: str, samples: int, chunks: list[int], workers: list[int], repeats: int, log: Any
) -> list[dict[str, Any]]:
    import dask
    import distributed

    from ndwconv.adapters.timeseries import apply

    model = make_model()
    lazies = {c: apply(model, open_lazily(path, c)).data.sum() for c in chunks}
    rows: list[dict[str, Any]] = []

    def run_block(label: str, n_workers: int, compute: Any) -> None:
        compute(lazies[max(chunks)])  # warm-up (ships the network, warms the workers)
        times: dict[int, list[float]] = {c: [] for c in chunks}
        load0 = os.getloadavg()
        for r in range(repeats):
            shift = r % len(chunks)
            for c in chunks[shift:] + chunks[:shift]:
                times[c].append(_timed(lambda c=c: compute(lazies[c])))
        load1 = os.getloadavg()
        for c in chunks:
            s = spread(times[c])
            rows.append(
                {
                    "scheduler": label,
                    "workers": n_workers,
                    "chunk": c,
                    "samples": samples,
                    "seconds": s.to_json(),
                    "samples_per_s": samples / s.median,
                    "samples_s": times[c],
                    "load_average_1min": [round(load0[0], 2), round(load1[0], 2)],
                }
            )
        log(f"throughput: {label} done")

    torch.set_num_threads(1)
    with dask.config.set(scheduler="threads", num_workers=1):
        run_block("threads", 1, lambda x: x.compute())
    for n in workers:
        with (
            dask.config.set({"distributed.worker.multiprocessing-method": "fork"}),
            distributed.LocalCluster(
                n_workers=n, processes=True, threads_per_worker=1, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            client.run(torch.set_num_threads, 1)
            run_block("LocalCluster", n, lambda x, client=client: client.compute(x).result())
    return rows


def in_memory_row(path: str, samples: int, repeats: int) -> dict[str, Any]:
    import xarray as xr

    from ndwconv.adapters.timeseries import apply

    model = make_model()
    values = xr.open_dataarray(path, engine="h5netcdf").values
    apply(model, values[:, :1000])
    times = [_timed(lambda: apply(model, values)) for _ in range(repeats)]
    s = spread(times)
    return {
        "scheduler": "in memory (NumPy)",
        "workers": 1,
        "chunk": None,
        "samples": samples,
        "seconds": s.to_json(),
        "samples_per_s": samples / s.median,
        "samples_s": times,
        "load_average_1min": [round(os.getloadavg()[0], 2)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.child:
        torch.set_num_threads(args.threads or 1)
        report = child(args.child, args.child_out, int(args.memory_chunk))
        print(json.dumps(report))
        return 0
    set_threads(args, default=1)
    quick = args.quick
    series = args.series or (1 if quick else 2)
    length = int(args.length or (2e4 if quick else 5e5))
    chunks = [int(c) for c in (args.chunks or ((5e3, 2e4) if quick else (1e4, 1e5, 5e5)))]
    workers = args.workers or ([2] if quick else [1, 2])
    repeats = args.repeats or (1 if quick else 3)
    lengths = [int(v) for v in (args.lengths or ((1e4,) if quick else (1e6, 1e7, 1e8)))]
    memory_chunk = int(args.memory_chunk or (1e4 if quick else 1e6))

    import dask
    import distributed
    import h5netcdf
    import xarray

    from ndwconv.adapters.receptive import receptive_radius

    run = Run(
        "timeseries_apply",
        args,
        argv,
        torch.device("cpu"),
        dask=dask.__version__,
        distributed=distributed.__version__,
        xarray=xarray.__version__,
        h5netcdf=h5netcdf.__version__,
    )
    settings = {
        "model": f"DnCNN(ndim=1, depth={DEPTH}, width={WIDTH}), float32, eval, receptive "
        f"radius {receptive_radius(make_model(), 1, strict=True)[0]}",
        "throughput data": f"{series} × {length} float32 samples, NetCDF-4 (h5netcdf), "
        "opened lazily; result reduced with .sum()",
        "chunks": chunks,
        "workers": workers,
        "repeats": repeats,
        "torch threads": "1 per worker (and in the threaded scheduler)",
        "cluster": "distributed.LocalCluster(processes=True, threads_per_worker=1), workers forked",
        "memory lengths": lengths,
        "memory chunk": memory_chunk,
        "memory": "VmHWM of a fresh process, reset after setup; NetCDF-4 in and out, "
        "threaded scheduler, 1 thread",
    }
    print("## apply on dask-backed series\n")
    print(run.header(settings, markdown=True))
    with tempfile.TemporaryDirectory(prefix="ndwconv-bench-") as folder:
        path = os.path.join(folder, "throughput.nc")
        write_file(path, series, length, min(chunks))
        samples = series * length
        rows = [in_memory_row(path, samples, repeats)]
        rows += throughput_rows(path, samples, chunks, workers, repeats, run.log)
        memory = memory_rows(lengths, memory_chunk, folder, run.log)

    print("\n### Throughput (samples per second, median of repeats)\n")
    table = [
        [
            r["scheduler"],
            str(r["workers"]),
            "—" if r["chunk"] is None else f"{r['chunk']:.0e}",
            f"{r['samples_per_s'] / 1e6:.2f} M/s",
            f"{r['seconds']['q1']:.2f}–{r['seconds']['q3']:.2f} s",
            " → ".join(f"{v:.1f}" for v in r["load_average_1min"]),
        ]
        for r in rows
    ]
    print(
        format_table(
            ["scheduler", "workers", "chunk", "throughput", "time q1–q3", "load"],
            table,
            markdown=True,
        )
    )
    print("\n### Peak memory while streaming NetCDF → apply → NetCDF\n")
    print(
        format_table(
            ["samples", "file", "peak RSS", "peak − setup", "time", "throughput"],
            [
                [
                    f"{r['length']:.0e}",
                    f"{r['file_mib']:.0f} MiB",
                    f"{r['peak_mib']:.0f} MiB",
                    f"{r.get('peak_over_setup_mib', math.nan):.0f} MiB",
                    f"{r['seconds']:.1f} s",
                    f"{r['samples_per_s'] / 1e6:.2f} M/s",
                ]
                for r in memory
            ],
            markdown=True,
        )
    )
    print()
    print(run.footer())
    run.write(settings, {"throughput": rows, "memory": memory})
    return 0


if __name__ == "__main__":
    sys.exit(main())
