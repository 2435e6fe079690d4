"""``smooth`` against ``scipy.ndimage.correlate1d``, and where each backend wins.

Checks the performance bar of the time-series adapter: ``ndwconv.adapters.timeseries.smooth``
within a time ratio of 1.0 of ``scipy.ndimage.correlate1d`` (the same normalised Gaussian
weights, ``mode="reflect"``) on

* a 10⁷-sample float32 and float64 series (a NumPy array), over window sizes from 9 to
  129 samples;
* a 1000 × 10⁵ DataArray (station × time, float32 and float64), along time, with a short
  and a long window (scipy and ``smooth`` only: 10⁸ samples take seconds per call).

Each row also times the computations ``smooth`` chooses between, forced: the direct
sum (blocked shifted slices) and the FFT (``scipy.signal.oaconvolve``), beside scipy itself
(the third choice), so the table shows which wins where and whether ``DIRECT_MAX_SIZE``
and ``FFT_MIN_SIZE`` are set right. All ratios are medians of per-pair ratios of
interleaved repeats in one process; every row records the CPU load that *other* processes
put on the machine while it was measured.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy
from scipy import ndimage

from ndwconv.adapters.timeseries import smooth
from ndwconv.adapters.timeseries.smooth import (
    DIRECT_MAX_SIZE,
    FFT_MIN_SIZE,
    _backend,
    _filter,
    smooth_weights,
)

from ._timing import (
    ForeignLoad,
    Run,
    fmt_load,
    format_table,
    interleaved,
    make_parser,
    positive_int,
    ratio_stats,
    set_threads,
    verdict,
    wait_for_quiet,
)

TARGET = 1.0
SERIES_LENGTH = 10**7
SERIES_SIZES = (9, 17, 33, 65, 129)
PANEL_SHAPE = (1000, 10**5)
PANEL_SIZES = (9, 65)


@dataclass(frozen=True)
class Case:
    """One row: ``shape`` (time last), dtype name, window size, container."""

    label: str
    shape: tuple[int, ...]
    dtype: str
    size: int
    container: str  # "numpy" or "DataArray"
    backends: bool  # also time the direct sum and the FFT, forced

    @property
    def shape_str(self) -> str:
        return "×".join(str(s) for s in self.shape)


def cases(quick: bool) -> list[Case]:
    n = 20_000 if quick else SERIES_LENGTH
    panel = (20, 2_000) if quick else PANEL_SHAPE
    series_sizes = (3, 65) if quick else SERIES_SIZES
    out = [
        Case("series", (n,), dtype, size, "numpy", True)
        for dtype in ("float32", "float64")
        for size in series_sizes
    ]
    out += [
        Case("station × time", panel, dtype, size, "DataArray", False)
        for dtype in ("float32", "float64")
        for size in PANEL_SIZES
    ]
    return out


def candidates(case: Case) -> dict[str, Callable[[], object]]:
    """scipy (the baseline), smooth (its own choice) and its two backends forced."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal(case.shape).astype(case.dtype)
    sigma = case.size / 8  # the window reaches 4σ each side
    spec = f"gaussian:{sigma}"
    weights = smooth_weights(spec, case.size)
    axis = values.ndim - 1
    if case.container == "DataArray":
        import xarray as xr

        data: Any = xr.DataArray(values, dims=("station", "time"), name="x")
    else:
        data = values

    def ours() -> object:
        return smooth(data, density=spec, size=case.size)

    fns: dict[str, Callable[[], object]] = {
        "scipy": lambda: ndimage.correlate1d(values, weights, axis=axis),
        "smooth": ours,
    }
    if case.backends:
        fns["direct"] = lambda: _filter(values, axis, weights, "reflect", 0.0, "raise", "direct")
        fns["fft"] = lambda: _filter(values, axis, weights, "reflect", 0.0, "raise", "fft")
    return fns


def check_equal(case: Case, fns: dict[str, Callable[[], object]]) -> float:
    """Largest |smooth − scipy| relative to max |scipy|: the rows compare equal results."""
    ref = np.asarray(fns["scipy"](), dtype=np.float64)
    got = np.asarray(fns["smooth"](), dtype=np.float64)
    return float(np.max(np.abs(got - ref)) / max(1e-300, float(np.max(np.abs(ref)))))


def measure(case: Case, repeats: int, wait: float) -> dict:
    """One row; the equality check's two calls warm scipy and smooth up, one more call
    each the forced backends."""
    fns = candidates(case)
    error = check_equal(case, fns)
    for name in ("direct", "fft"):
        if name in fns:
            fns[name]()  # warm-up (imports, allocator)
    if wait > 0:
        wait_for_quiet(wait)
    with ForeignLoad() as load:
        samples = interleaved(fns, repeats, warmup=0, number=1)
    stats = {name: ratio_stats(samples[name], samples["scipy"]) for name in fns if name != "scipy"}
    chosen = _backend(np.dtype(case.dtype), case.size, True, "auto")
    row = {
        "case": case.label,
        "container": case.container,
        "shape": list(case.shape),
        "dtype": case.dtype,
        "size": case.size,
        "scipy_median_s": stats["smooth"].den_median_s,
        **{name: stats[name].to_json() for name in stats},
        "backend_chosen": chosen,
        "backend_fastest": None,
        "max_rel_error_vs_scipy": error,
        "verdict": verdict(stats["smooth"].median, stats["smooth"].q1, TARGET),
        "foreign_cores": load.cores,
        "samples_s": samples,
    }
    if case.backends:
        ratios = {"scipy": 1.0, "direct": stats["direct"].median, "fft": stats["fft"].median}
        row["backend_fastest"] = min(ratios, key=ratios.__getitem__)
    return row


def _cells(row: dict) -> list[str]:
    s = row["smooth"]
    return [
        row["case"],
        row["shape_str"],
        row["dtype"],
        str(row["size"]),
        f"{row['scipy_median_s'] * 1e3:.0f}",
        f"{s['num_median_s'] * 1e3:.0f}",
        f"{s['ratio_median']:.2f} [{s['ratio_q1']:.2f}, {s['ratio_q3']:.2f}]",
        f"{row['direct']['ratio_median']:.2f}" if "direct" in row else "–",
        f"{row['fft']['ratio_median']:.2f}" if "fft" in row else "–",
        f"{row['backend_chosen']} / {row['backend_fastest'] or '–'}",
        f"{row['max_rel_error_vs_scipy']:.0e}",
        fmt_load(row["foreign_cores"]),
        row["verdict"],
    ]


HEADERS = [
    "case",
    "shape",
    "dtype",
    "k",
    "scipy ms",
    "smooth ms",
    "smooth/scipy [q1, q3]",
    "direct/scipy",
    "fft/scipy",
    "chosen / fastest",
    "max rel. err",
    "foreign cores",
    "verdict",
]


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "timeseries_smooth",
        __doc__ or "",
        [
            "python -m benchmarks.timeseries_smooth --quick",
            "python -m benchmarks.timeseries_smooth",
            "python -m benchmarks.timeseries_smooth --repeats 9 --markdown",
        ],
        threads_default="1: scipy.ndimage is single-threaded",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        help="interleaved repeats per row (default 3; 1 with --quick)",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print a Markdown table (for docs/timeseries.md)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=None,
        metavar="S",
        help="before each row wait up to S seconds for other processes to use < 0.25 cores "
        "(default 2; 0 with --quick)",
    )
    parser.add_argument(
        "--only", choices=("series", "panel"), help="only the 1-D series or the 2-D panel rows"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args, default=1)
    repeats = args.repeats or (1 if args.quick else 3)
    wait = args.wait_quiet if args.wait_quiet is not None else (0.0 if args.quick else 2.0)
    if wait < 0:
        parser.error(f"--wait-quiet must be ≥ 0, got {wait}")
    selected = cases(args.quick)
    if args.only == "series":
        selected = [c for c in selected if c.container == "numpy"]
    elif args.only == "panel":
        selected = [c for c in selected if c.container == "DataArray"]
    run = Run("timeseries_smooth", args, argv, scipy=scipy.__version__)
    settings = {
        "repeats": repeats,
        "warmup": "the equality check's call of scipy and smooth",
        "calls_per_sample": 1,
        "wait_quiet_s": wait,
        "density": "gaussian:k/8 (the window reaches 4σ each side)",
        "mode": "reflect",
        "DIRECT_MAX_SIZE": DIRECT_MAX_SIZE,
        "FFT_MIN_SIZE": FFT_MIN_SIZE,
        "target": f"smooth/scipy ≤ {TARGET}",
    }
    md = args.markdown
    title = "smooth vs scipy.ndimage.correlate1d"
    print(f"## {title}\n" if md else title)
    print(run.header(settings, md))
    print()
    results = []
    for case in selected:
        row = measure(case, repeats, wait)
        row["shape_str"] = case.shape_str
        results.append(row)
        run.log(f"{case.label} {case.shape_str} {case.dtype} k{case.size}")
    print(format_table(HEADERS, [_cells(r) for r in results], markdown=md))
    print()
    n_pass = sum(r["verdict"] == "PASS" for r in results)
    summary = f"{n_pass} of {len(results)} rows PASS; {run.footer()}"
    print(f"_{summary}_" if md else summary)
    for row in results:
        del row["shape_str"]
    run.write(settings, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
