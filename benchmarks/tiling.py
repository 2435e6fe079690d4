"""Sliding-window inference: ndwconv's ``sliding_window`` against MONAI's.

Both tile the same volume with the same 3-D DnCNN (one model object, ``eval()``, no grad),
the same tile/ROI, overlap 0.25, Gaussian blending (MONAI ``mode="gaussian"``,
``sigma_scale=0.125``, as ours) and the same tile batch size:

* **in-memory**: a float32 volume held in memory (a NumPy array for ours, the tensor view
  of the same array for MONAI), output in memory;
* **HDF5**: a larger volume stored in an HDF5 file (an h5py dataset written once to a
  temporary file). Ours reads the dataset one slab of tile rows at a time and writes
  finished slabs straight into an output dataset, so its memory follows the tile and the
  cross-section, not the volume. MONAI needs the
  whole volume as one tensor: its timed run loads the dataset into memory, infers and
  writes the result into an output dataset, so both end with the result on disk; the
  load / infer / write split of MONAI's run is reported too.

Time (``--timing isolated``, the default): every run is a fresh interpreter that builds
the model, warms it up on one tile batch and runs the case once; repeats alternate the
order of the methods; ratio ours/MONAI per repeat, medians and quartiles. Forward hooks
add up the seconds inside the network, so the report splits each method's time into the
network and everything else. The network's own speed varies by a few per cent from one
fresh process to the next, more than the whole difference between the tilers, so two more
measurements separate the two: a recording predictor checks that both tilers hand the
network identical batches in the same order (so the network's work is the same for both),
and the *own-cost* runs time each tiler with an identity predictor instead of the network
(``--own-repeats``, fresh processes, interleaved), from which the report estimates the
ratio with the network time pooled over both methods. In one long process (``--timing
shared``) the network's speed depended on allocation history, so that mode is only the
smoke test's (``--quick``) and an option.

Peak memory comes from the same fresh runs: each reports its kernel RSS high-water mark
(``VmHWM``, reset after setup; NumPy and torch allocations alike, which tracemalloc would
not see; not ``ru_maxrss``, which on Linux also counts the parent's RSS at fork), next to
an idle subprocess that imported the same modules and built the same model. The
peak-memory table adds the smaller volume on HDF5, so that memory can be read against the
volume's size for one storage. Agreement: the maximum absolute difference between the two
in-memory outputs (MONAI floors the product of the Gaussian profiles at 1e-3, ours each
profile, and it pads differently at borders, so this is reported, not asserted).

MONAI is needed for this benchmark only (``pip install monai``); it is not a dependency of
ndwconv.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

import ndwconv
from ndwconv.adapters.tiling import sliding_window, tile_starts
from ndwconv.recipes.models import build_model, odd_kernel_convs

from ._timing import (
    ForeignLoad,
    Run,
    fmt_load,
    format_table,
    interleaved,
    make_parser,
    positive_int,
    ratio_stats,
    reset_peak,
    set_threads,
    status_mib,
)

try:
    import monai
    from monai.inferers import sliding_window_inference
except ImportError:  # pragma: no cover - reported by main()
    monai = None
    sliding_window_inference = None

OVERLAP = 0.25
SEED = 0
METHODS = ("ours", "monai")
SOURCE = "source"  # HDF5 dataset names
OUT = {"ours": "out_ours", "monai": "out_monai"}


@dataclass(frozen=True)
class Case:
    """One volume: ``storage`` is ``"memory"`` or ``"hdf5"``; the volume is ``size``³."""

    name: str
    size: int
    storage: str


@dataclass(frozen=True)
class Settings:
    tile: int
    batch: int
    depth: int
    width: int
    threads: int
    serve: bool = True


def cases(quick: bool) -> list[Case]:
    if quick:
        return [Case("in-memory", 32, "memory"), Case("HDF5", 48, "hdf5")]
    return [Case("in-memory", 192, "memory"), Case("HDF5", 384, "hdf5")]


def memory_cases(quick: bool) -> list[Case]:
    """The timed cases plus the smaller volume on HDF5: memory against volume size, one
    storage."""
    small = cases(quick)[0].size
    return [*cases(quick), Case("HDF5", small, "hdf5")]


def n_tiles(size: int, tile: int) -> int:
    """Tiles per volume (3-D, same grid for both: stride ``tile - floor(0.25·tile)``)."""
    step = tile - math.floor(OVERLAP * tile)
    return len(tile_starts(size, tile, step)) ** 3


def make_model(s: Settings) -> torch.nn.Module:
    """The weighted 3-D DnCNN as training leaves it (weighted layers, BatchNorm with running
    statistics away from 0 and 1), seeded so the subprocesses build the same weights."""
    torch.manual_seed(SEED)
    model = build_model("dncnn", ndim=3, channels=1, depth=s.depth, width=s.width)
    model = ndwconv.convert(model, "default", where=odd_kernel_convs)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def ours_network(model: torch.nn.Module, s: Settings) -> torch.nn.Module:
    """The network ``ndwconv denoise`` runs: ``for_inference`` (folded, fused,
    channels-last) unless ``--ours-network as-given``."""
    return ndwconv.for_inference(model) if s.serve else model


def make_volume(size: int) -> np.ndarray:
    """A ``(1, size, size, size)`` float32 noise volume (seeded)."""
    rng = np.random.default_rng(SEED)
    return rng.standard_normal((1, size, size, size), dtype=np.float32)


def write_source(path: str, size: int) -> None:
    """Write the HDF5 source volume and empty output datasets (contiguous layout)."""
    with h5py.File(path, "w") as f:
        src = f.create_dataset(SOURCE, shape=(1, size, size, size), dtype=np.float32)
        for z in range(0, size, 64):  # slab by slab, so the parent never holds it whole
            rng = np.random.default_rng([SEED, z])
            rows = min(64, size - z)
            src[:, z : z + rows] = rng.standard_normal((1, rows, size, size), dtype=np.float32)
        for name in OUT.values():
            f.create_dataset(name, shape=(1, size, size, size), dtype=np.float32)


# ---------------------------------------------------------------------------------------
# the two runs
# ---------------------------------------------------------------------------------------


def run_ours(model: torch.nn.Module, source: Any, s: Settings, out: Any = None) -> Any:
    return sliding_window(
        model,
        source,
        tile=s.tile,
        overlap=OVERLAP,
        blend="gaussian",
        batch_size=s.batch,
        out=out,
        device="cpu",
        progress=False,
    )


def run_monai(
    model: Callable[[torch.Tensor], torch.Tensor], volume: torch.Tensor, tile: int, batch: int
) -> torch.Tensor:
    """MONAI on a ``(C, *spatial)`` tensor (any number of spatial axes), the ROI ``tile``
    along each; returns ``(C_out, *spatial)``."""
    with torch.no_grad():
        result = sliding_window_inference(
            volume[None],
            roi_size=(tile,) * (volume.dim() - 1),
            sw_batch_size=batch,
            predictor=model,
            overlap=OVERLAP,
            mode="gaussian",
            sigma_scale=0.125,
            padding_mode="constant",
            sw_device="cpu",
            device="cpu",
            progress=False,
        )
    return torch.as_tensor(result)[0]  # MetaTensor → plain tensor view


def monai_hdf5(model: torch.nn.Module, f: h5py.File, s: Settings) -> tuple[float, float, float]:
    """MONAI on the HDF5 volume: load whole, infer, write. Returns the three durations."""
    t0 = time.perf_counter()
    volume = torch.from_numpy(f[SOURCE][...])
    t1 = time.perf_counter()
    result = run_monai(model, volume, s.tile, s.batch)
    t2 = time.perf_counter()
    f[OUT["monai"]][...] = result.numpy()
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


# ---------------------------------------------------------------------------------------
# peak memory: one fresh subprocess per (method, case)
# ---------------------------------------------------------------------------------------


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def warm_up(model: torch.nn.Module, s: Settings) -> None:
    """One forward pass on a batch of zero tiles (oneDNN primitives, thread pool)."""
    with torch.no_grad():
        model(torch.zeros(s.batch, 1, *(s.tile,) * 3))


def time_network(model: torch.nn.Module) -> dict[str, float]:
    """Add up the seconds spent inside ``model``'s forward calls (hooks, no wrapper)."""
    clock = {"s": 0.0, "t0": 0.0}

    def start(*_: Any) -> None:
        clock["t0"] = time.perf_counter()

    def stop(*_: Any) -> None:
        clock["s"] += time.perf_counter() - clock["t0"]

    model.register_forward_pre_hook(start)
    model.register_forward_hook(stop)
    return clock


def identity(batch: torch.Tensor) -> torch.Tensor:
    """The predictor of the own-cost runs: no network, so what is timed is the tiler."""
    return batch


def child(
    method: str,
    storage: str,
    size: int,
    h5_path: str | None,
    s: Settings,
    save: str | None = None,
    predictor: str = "dncnn",
) -> dict:
    """Body of a subprocess: run once, report the run's wall time and peak RSS.

    The model is built and warmed up on one batch of tiles first (as for every method).
    After that the high-water mark is reset (where Linux allows), so ``peak_run_mib`` is
    the peak from there on: making or opening the volume and the run. ``run_s`` times the
    run alone (in memory: after the volume was made; HDF5: opening the file included).
    ``save``: a ``.npy`` path the in-memory output is written to after the run (for the
    agreement check; not timed).
    ``peak_mib`` is the peak over the whole process (``VmHWM``). ``ru_maxrss`` is only the
    fallback: on Linux it also counts the parent's RSS at ``fork`` (the pre-``exec`` memory
    map is folded into the signal struct's maxrss), so a big parent would show through.
    ``predictor="identity"`` runs the tiler with :func:`identity` instead of the network (the
    model is still built and warmed up, so the process is set up alike).
    """
    model = make_model(s)
    if method == "ours":
        model = ours_network(model, s)
    warm_up(model, s)
    network = time_network(model)
    if predictor == "identity":
        model = identity  # type: ignore[assignment]
    peak_setup = status_mib("VmHWM")  # this exec's own mm (ru_maxrss would not be: below)
    reset = reset_peak()
    report: dict[str, Any] = {"rss_setup_mib": status_mib("VmRSS")}
    t0 = time.perf_counter()
    if method == "idle":
        pass
    elif storage == "memory":
        volume = make_volume(size)
        t0 = time.perf_counter()
        if method == "ours":
            output = run_ours(model, volume, s)
        else:
            output = run_monai(model, torch.from_numpy(volume), s.tile, s.batch).numpy()
    else:
        assert h5_path is not None
        with h5py.File(h5_path, "r+") as f:
            if method == "ours":
                run_ours(model, f[SOURCE], s, out=f[OUT["ours"]])
            else:
                report["split_s"] = monai_hdf5(model, f, s)
    report["run_s"] = time.perf_counter() - t0
    report["network_s"] = network["s"]
    peak_run = status_mib("VmHWM")
    report["peak_run_mib"] = peak_run if reset else None
    if peak_setup is None or peak_run is None:
        report["peak_mib"] = _maxrss_mib()
    else:
        report["peak_mib"] = max(peak_setup, peak_run)
    if save and method != "idle" and storage == "memory":
        np.save(save, output)
    return report


def run_child(
    method: str,
    case: Case | None,
    h5_path: str | None,
    s: Settings,
    save: str | None = None,
    predictor: str = "dncnn",
) -> dict[str, Any]:
    """Run ``child`` in a fresh interpreter and return its report, labelled with the case
    and method when there is a case."""
    cmd = [
        sys.executable,
        "-m",
        __spec__.name,
        "--child",
        method,
        "--child-storage",
        case.storage if case else "memory",
        "--child-size",
        str(case.size if case else 0),
        "--tile",
        str(s.tile),
        "--batch",
        str(s.batch),
        "--depth",
        str(s.depth),
        "--width",
        str(s.width),
        "--threads",
        str(s.threads),
    ]
    if not s.serve:
        cmd += ["--ours-network", "as-given"]
    if h5_path:
        cmd += ["--child-h5", h5_path]
    if save:
        cmd += ["--child-save", save]
    if predictor != "dncnn":
        cmd += ["--child-predictor", predictor]
    checkout = Path(__file__).resolve().parents[1]  # where ``-m benchmarks.tiling`` resolves
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=checkout)
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess {method} failed:\n{proc.stderr}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if case is None:
        return report
    return {"case": case.name, "size": case.size, "method": method, **report}


# ---------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------


def time_case(
    case: Case, model: torch.nn.Module, s: Settings, repeats: int, h5_path: str | None
) -> dict[str, Any]:
    """Interleaved timing of one case; also the in-memory agreement and MONAI's split."""
    outputs: dict[str, Any] = {}
    split: list[tuple[float, float, float]] = []
    f = None
    served = ours_network(model, s)
    warm_up(served, s)
    if case.storage == "memory":
        volume = make_volume(case.size)
        tensor = torch.from_numpy(volume)

        def ours() -> None:
            outputs["ours"] = run_ours(served, volume, s)

        def theirs() -> None:
            outputs["monai"] = run_monai(model, tensor, s.tile, s.batch).numpy()

    else:
        assert h5_path is not None
        f = h5py.File(h5_path, "r+")

        def ours() -> None:
            run_ours(served, f[SOURCE], s, out=f[OUT["ours"]])

        def theirs() -> None:
            split.append(monai_hdf5(model, f, s))

    try:
        with ForeignLoad() as load:
            # No warm-up runs (each is long); the model was warmed up on one tile batch.
            samples = interleaved({"ours": ours, "monai": theirs}, repeats, warmup=0, number=1)
        result = time_result(case, s, samples, load.cores, split)
        if case.storage == "memory":
            result["agreement"] = agreement(outputs["ours"], outputs["monai"], case, s)
    finally:
        if f is not None:
            f.close()
    return result


def served_agreement(case: Case, s: Settings) -> dict[str, float]:
    """Ours with the served network against ours with the network as given, on the
    in-memory case's volume: the largest absolute difference of the outputs."""
    model = make_model(s)
    volume = make_volume(case.size)
    given = run_ours(model, volume, s)
    served = run_ours(ours_network(model, s), volume, s)
    return {
        "size": case.size,
        "max_abs": float(np.abs(served - given).max()),
        "max_output": float(np.abs(given).max()),
    }


def time_result(
    case: Case,
    s: Settings,
    samples: dict[str, list[float]],
    foreign_cores: float | None,
    splits: list[tuple[float, float, float]],
) -> dict[str, Any]:
    """The time entry of one case: samples, ratio statistics, load, MONAI's HDF5 split."""
    result: dict[str, Any] = {
        "case": case.name,
        "size": case.size,
        "tiles": n_tiles(case.size, s.tile),
        "samples_s": samples,
        "stats": ratio_stats(samples["ours"], samples["monai"]),
        "foreign_cores": foreign_cores,
    }
    if splits:
        result["monai_split_s"] = {
            key: statistics.median(v[i] for v in splits)
            for i, key in enumerate(("load", "infer", "write"))
        }
    return result


def agreement(ours: np.ndarray, theirs: np.ndarray, case: Case, s: Settings) -> dict:
    """Largest and mean |ours − MONAI|, overall and more than one tile from the border."""
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    t = s.tile
    inner = diff[:, t:-t, t:-t, t:-t] if case.size > 2 * t else diff[:, :0]
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "max_abs_diff_interior": float(inner.max()) if inner.size else None,
        "max_abs_output": float(np.abs(theirs).max()),
    }


def peak_summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One memory row from the runs of one (case, method): the largest peaks, median time."""

    def largest(key: str) -> float | None:
        values = [r[key] for r in reports if r.get(key) is not None]
        return max(values) if values else None

    return {
        "case": reports[0]["case"],
        "size": reports[0]["size"],
        "method": reports[0]["method"],
        "runs": len(reports),
        "peak_mib": largest("peak_mib"),
        "peak_run_mib": largest("peak_run_mib"),
        "run_s": statistics.median(r["run_s"] for r in reports),
    }


def time_case_isolated(
    case: Case, s: Settings, repeats: int, h5_path: str | None, tmp: str, log: Callable
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Time one case with every run in its own fresh process, methods interleaved.

    Repeat ``r`` runs ours then MONAI for even ``r`` and the reverse for odd ``r``; each run
    is a new interpreter (``child``) that builds and warms up the model, so no run inherits
    another's heap, page mapping or cache state. Returns the time result (as
    :func:`time_case`) and the per-run reports (peak memory included).
    """
    samples: dict[str, list[float]] = {m: [] for m in METHODS}
    reports: list[dict[str, Any]] = []
    saved: dict[str, str] = {}
    with ForeignLoad() as load:
        for r in range(repeats):
            for method in METHODS if r % 2 == 0 else METHODS[::-1]:
                save = None
                if r == 0 and case.storage == "memory":
                    save = saved[method] = os.path.join(tmp, f"{method}{case.size}.npy")
                report = run_child(method, case, h5_path, s, save=save)
                samples[method].append(report["run_s"])
                reports.append(report)
                log(f"{case.name} {method} run {r + 1}/{repeats}: {report['run_s']:.2f} s")
    splits = [rep["split_s"] for rep in reports if "split_s" in rep]
    result = time_result(case, s, samples, load.cores, splits)
    # where the time went: inside the network's forward calls, and everything else
    result["network_s"] = {
        m: statistics.median(r["network_s"] for r in reports if r["method"] == m) for m in METHODS
    }
    result["outside_s"] = {
        m: statistics.median(r["run_s"] - r["network_s"] for r in reports if r["method"] == m)
        for m in METHODS
    }
    if saved:
        result["agreement"] = agreement(np.load(saved["ours"]), np.load(saved["monai"]), case, s)
    return result, reports


def time_own_cost(
    case: Case, s: Settings, repeats: int, h5_path: str | None, log: Callable
) -> dict[str, Any]:
    """Each tiler's own cost: the case run with :func:`identity` as the predictor, every run
    in its own fresh process, methods interleaved (as :func:`time_case_isolated`)."""
    samples: dict[str, list[float]] = {m: [] for m in METHODS}
    with ForeignLoad() as load:
        for r in range(repeats):
            for method in METHODS if r % 2 == 0 else METHODS[::-1]:
                report = run_child(method, case, h5_path, s, predictor="identity")
                samples[method].append(report["run_s"])
        log(f"own cost {case.name}: {repeats} repeats")
    return {
        "case": case.name,
        "size": case.size,
        "samples_s": samples,
        "stats": ratio_stats(samples["ours"], samples["monai"]),
        "foreign_cores": load.cores,
    }


def network_inputs(case: Case, s: Settings, h5_path: str | None) -> dict[str, Any]:
    """Whether both tilers hand the network the same batches: a recording identity
    predictor hashes every batch (shape and bytes) each tiler passes, in call order."""
    digests: dict[str, list[str]] = {m: [] for m in METHODS}

    def recorder(method: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def predict(batch: torch.Tensor) -> torch.Tensor:
            data = batch.detach().contiguous().numpy()
            digests[method].append(f"{data.shape}:{hashlib.sha1(data.tobytes()).hexdigest()}")
            return batch

        return predict

    if case.storage == "memory":
        volume = make_volume(case.size)
        run_ours(recorder("ours"), volume, s)
        run_monai(recorder("monai"), torch.from_numpy(volume), s.tile, s.batch)
    else:
        assert h5_path is not None
        with h5py.File(h5_path, "r") as f:
            run_ours(recorder("ours"), f[SOURCE], s)
            run_monai(recorder("monai"), torch.from_numpy(f[SOURCE][...]), s.tile, s.batch)
    return {
        "calls": {m: len(v) for m, v in digests.items()},
        "identical": digests["ours"] == digests["monai"],
    }


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------


def _json_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A time or own-cost entry for the JSON result: its ratio statistics spelled out."""
    st = entry["stats"]
    return {
        **{k: v for k, v in entry.items() if k != "stats"},
        "ratio_median": st.median,
        "ratio_q1": st.q1,
        "ratio_q3": st.q3,
        "ours_median_s": st.num_median_s,
        "monai_median_s": st.den_median_s,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "tiling",
        __doc__,
        [
            "python -m benchmarks.tiling --quick         # tile 16³, volumes 32³ and 48³, seconds",
            "python -m benchmarks.tiling --threads 2 --repeats 5   # ~40 min on 2 idle cores",
            "python -m benchmarks.tiling --timing shared # all timed runs in this process",
            "THP_MEM_ALLOC_ENABLE=1 python -m benchmarks.tiling --threads 2   # huge pages",
        ],
    )
    parser.add_argument(
        "--repeats", type=positive_int, help="interleaved repeats (3; 1 with --quick)"
    )
    parser.add_argument("--tile", type=positive_int, help="tile / ROI edge (64; 16 with --quick)")
    parser.add_argument("--batch", type=positive_int, default=4, help="tiles per forward pass (4)")
    parser.add_argument("--depth", type=int, default=5, help="DnCNN depth, ≥ 2 (5)")
    parser.add_argument("--width", type=positive_int, default=16, help="DnCNN width (16)")
    parser.add_argument(
        "--ours-network",
        choices=("served", "as-given"),
        default="served",
        help="the network ours runs: served (default), as ndwconv denoise runs it "
        "(ndwconv.for_inference: folded, BatchNorm fused, channels-last), or as-given, the "
        "weighted network MONAI runs (a comparison of the tilers alone)",
    )
    parser.add_argument(
        "--timing",
        choices=("isolated", "shared"),
        help="isolated (default): every timed run in its own fresh process, methods "
        "interleaved, peak memory from the same runs; shared (default with --quick): "
        "interleaved repeats in this process, then one fresh process per (method, case) for "
        "peak memory",
    )
    parser.add_argument(
        "--own-repeats",
        type=int,
        help="interleaved repeats of the own-cost runs (identity predictor; 9, 0 with "
        "--quick; 0 skips them)",
    )
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-memory runs (always skipped with --quick)",
    )
    # internal: one peak-memory subprocess
    parser.add_argument("--child", choices=("idle", *METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--child-storage", default="memory", help=argparse.SUPPRESS)
    parser.add_argument("--child-size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child-h5", help=argparse.SUPPRESS)
    parser.add_argument("--child-save", help=argparse.SUPPRESS)
    parser.add_argument("--child-predictor", default="dncnn", help=argparse.SUPPRESS)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parsed arguments, with the defaults that depend on ``--quick`` filled in."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.depth < 2:
        parser.error(f"--depth must be ≥ 2, got {args.depth}")
    if args.own_repeats is not None and args.own_repeats < 0:
        parser.error(f"--own-repeats must be ≥ 0, got {args.own_repeats}")
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.tile = args.tile or (16 if args.quick else 64)
    args.timing = args.timing or ("shared" if args.quick else "isolated")
    if args.own_repeats is None:
        args.own_repeats = 0 if args.quick else 9
    args.no_memory = args.no_memory or args.quick
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args)
    settings = Settings(
        tile=args.tile,
        batch=args.batch,
        depth=args.depth,
        width=args.width,
        threads=torch.get_num_threads(),
        serve=args.ours_network == "served",
    )
    if monai is None:
        print("MONAI is not installed: pip install monai (benchmark only)", file=sys.stderr)
        return 2
    if args.child:
        report = child(
            args.child,
            args.child_storage,
            args.child_size,
            args.child_h5,
            settings,
            save=args.child_save,
            predictor=args.child_predictor,
        )
        print(json.dumps(report))
        return 0

    run = Run(
        "tiling",
        args,
        argv,
        torch.device("cpu"),
        monai=monai.__version__,
        h5py=h5py.__version__,
        THP_MEM_ALLOC_ENABLE=os.environ.get("THP_MEM_ALLOC_ENABLE", "unset"),
    )
    info: dict[str, Any] = {
        "model": f"weighted DnCNN 3-D, depth {settings.depth}, width {settings.width}, batch "
        "norm, residual; eval(), no_grad(), float32; MONAI runs it as given, ours "
        + (
            "as ndwconv denoise serves it (ndwconv.for_inference: folded, BatchNorm fused, "
            "channels-last)"
            if settings.serve
            else "as given too"
        ),
        "tiling": f"tile/ROI {settings.tile}³, overlap {OVERLAP}, Gaussian blend "
        f"(σ = tile/8), {settings.batch} tiles per forward pass, CPU",
        "timing": args.timing,
        "repeats": args.repeats,
        "own_repeats": args.own_repeats,
        "HDF5": "contiguous float32 datasets in a temporary file (page cache warm after writing)",
    }
    if args.timing == "isolated":
        info["runs"] = (
            "every run in its own fresh process (model built and warmed up on one tile batch "
            "there; the order of the methods alternates between repeats)"
        )
    else:
        info["runs"] = (
            "interleaved in one process, no warm-up runs (the model was warmed up on one tile "
            "batch)"
        )
    print("## Sliding-window inference: ndwconv vs MONAI\n")
    print(run.header(info, markdown=True))
    print()
    log = run.log

    results = []
    memory: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ndwconv-tiling-") as tmp:
        h5_paths: dict[int, str] = {}
        for case in memory_cases(args.quick):
            if case.storage == "hdf5":
                h5_paths[case.size] = os.path.join(tmp, f"volume{case.size}.h5")
                write_source(h5_paths[case.size], case.size)
        runs: list[dict[str, Any]] = []
        inputs = {}
        for case in cases(args.quick):
            path = h5_paths.get(case.size) if case.storage == "hdf5" else None
            inputs[case.name] = network_inputs(case, settings, path)
        own: list[dict[str, Any]] = []
        if args.own_repeats:
            for case in cases(args.quick):
                path = h5_paths.get(case.size) if case.storage == "hdf5" else None
                own.append(time_own_cost(case, settings, args.own_repeats, path, log))
        if args.timing == "isolated":
            for case in cases(args.quick):
                path = h5_paths.get(case.size) if case.storage == "hdf5" else None
                result, reports = time_case_isolated(case, settings, args.repeats, path, tmp, log)
                results.append(result)
                runs += reports
        else:
            model = make_model(settings)
            warm_up(model, settings)
            for case in cases(args.quick):
                path = h5_paths.get(case.size) if case.storage == "hdf5" else None
                results.append(time_case(case, model, settings, args.repeats, path))
                log(f"timed {case.name}")
        if not args.no_memory:
            idle = run_child("idle", None, None, settings)
            memory.append({"case": "idle", "method": "imports + model", **idle})
            for case in memory_cases(args.quick):
                path = h5_paths.get(case.size) if case.storage == "hdf5" else None
                for method in METHODS:
                    mine = [
                        r
                        for r in runs
                        if (r["case"], r["size"], r["method"]) == (case.name, case.size, method)
                    ]
                    if not mine:  # not timed in fresh processes: one run for its memory
                        mine = [run_child(method, case, path, settings)]
                        log(f"memory {case.name} {case.size}³ {method}")
                    memory.append(peak_summary(mine))

    print("### Time\n")
    if settings.serve:
        check = served_agreement(cases(args.quick)[0], settings)
        info["served_agreement"] = check
        print(
            f"Ours serves the network folded, fused and channels-last; on the {check['size']}³ "
            f"in-memory volume its output is within max |Δ| = {check['max_abs']:.2e} of ours "
            f"with the network as given (max |output| {check['max_output']:.2f}; target "
            "≤ 1e-5).\n"
        )
    print(
        f"Seconds per whole-volume run ({args.timing} timing: "
        + (
            "every run in its own fresh process"
            if args.timing == "isolated"
            else "all runs in this process"
        )
        + "), medians of interleaved repeats; ratio = median of "
        "per-repeat ours/MONAI (< 1: ours faster), [quartiles]. HDF5: ours reads slabs of "
        "tile rows from the dataset and writes into an output dataset; MONAI loads the "
        "dataset into one tensor, infers, and writes the result into an output dataset.\n"
    )
    rows = []
    for r in results:
        st = r["stats"]
        rows.append(
            [
                r["case"],
                f"{r['size']}³",
                str(r["tiles"]),
                f"{st.num_median_s:.2f}",
                f"{st.den_median_s:.2f}",
                f"{st.median:.3f} [{st.q1:.3f}, {st.q3:.3f}]",
                fmt_load(r["foreign_cores"]),
            ]
        )
    headers = ["case", "volume", "tiles", "ours s", "MONAI s", "ours/MONAI", "foreign cores"]
    print(format_table(headers, rows, markdown=True))
    print()
    split_rows = [
        [
            r["case"],
            f"{r['size']}³",
            *(f"{r[key][m]:.3f}" for key in ("network_s", "outside_s") for m in METHODS),
        ]
        for r in results
        if "network_s" in r
    ]
    if split_rows:
        print(
            "Where the time went (medians over the runs): seconds inside the network's "
            "forward calls (timed by forward hooks), and outside them: reading tiles, "
            "blending, dividing, writing (MONAI on HDF5: also loading the volume and "
            "writing the result).\n"
        )
        headers = ["case", "volume", "network ours", "network MONAI", "outside ours"]
        print(format_table([*headers, "outside MONAI"], split_rows, markdown=True))
        print()
    print(
        "Network inputs: a recording identity predictor hashed every batch each tiler hands "
        "the network. "
        + "; ".join(
            f"{name}: {v['calls']['ours']} and {v['calls']['monai']} calls, "
            + ("identical batches in the same order" if v["identical"] else "batches DIFFER")
            for name, v in inputs.items()
        )
        + (
            ". So both methods hand their network exactly the same inputs; ours runs them "
            "through the served network, MONAI through the network as given.\n"
            if settings.serve
            else ". So both methods make exactly the same network calls, and the network's "
            "time differs between them only by run-to-run noise.\n"
        )
    )
    if own:
        print("### The tilers' own cost\n")
        print(
            f"The same cases with an identity predictor instead of the network "
            f"({args.own_repeats} interleaved repeats, every run in its own fresh process, "
            "as above): what each method spends on tiles, blending, dividing and I/O "
            "(MONAI on HDF5: loading the volume and writing the result too). 'with the "
            "network' = (network s + own s) per method, the network time being "
            + (
                "each method's median over its timed runs (the two networks differ: served "
                "and as given)"
                if settings.serve
                else "the median over all timed runs of both methods (the same network): the "
                "ratio the timed runs estimate, without their network noise"
            )
            + ".\n"
        )
        own_rows = []
        for o in own:
            st = o["stats"]
            # network time of the timed runs (fresh processes only: shared timing has none)
            network = {
                m: [r["network_s"] for r in runs if (r["case"], r["method"]) == (o["case"], m)]
                for m in METHODS
            }
            pooled = "n/a"
            if network["ours"] and network["monai"]:
                if settings.serve:  # two networks: each method's own network median
                    n_ours = statistics.median(network["ours"])
                    n_monai = statistics.median(network["monai"])
                else:  # one network: pooled over both methods
                    n_ours = n_monai = statistics.median(network["ours"] + network["monai"])
                pooled = f"{(n_ours + st.num_median_s) / (n_monai + st.den_median_s):.4f}"
            own_rows.append(
                [
                    o["case"],
                    f"{o['size']}³",
                    f"{st.num_median_s:.3f}",
                    f"{st.den_median_s:.3f}",
                    f"{st.median:.3f} [{st.q1:.3f}, {st.q3:.3f}]",
                    pooled,
                    fmt_load(o["foreign_cores"]),
                ]
            )
        headers = ["case", "volume", "ours s", "MONAI s", "ours/MONAI", "with the network"]
        print(format_table([*headers, "foreign cores"], own_rows, markdown=True))
        print()
    for r in results:
        if "monai_split_s" in r:
            sp = r["monai_split_s"]
            print(
                f"MONAI on {r['case']} ({r['size']}³), medians: load {sp['load']:.2f} s, "
                f"infer {sp['infer']:.2f} s, write {sp['write']:.2f} s.\n"
            )
        if "agreement" in r:
            ag = r["agreement"]
            interior = (
                "n/a"
                if ag["max_abs_diff_interior"] is None
                else f"{ag['max_abs_diff_interior']:.3g}"
            )
            print(
                f"Agreement on {r['case']} ({r['size']}³): max |ours − MONAI| = "
                f"{ag['max_abs_diff']:.3g} (mean {ag['mean_abs_diff']:.3g}; "
                f"{interior} more than one tile from the border; max |output| "
                f"{ag['max_abs_output']:.3g}). Not asserted: the Gaussian maps differ "
                "(ours floors each axis's profile at 1e-3, MONAI the product, so near volume "
                "corners MONAI's weights are all 1e-3) and so does border handling.\n"
            )

    if memory:
        print("### Peak memory\n")
        print(
            "Fresh processes run each case (in-memory: the process makes the input volume "
            "itself; HDF5: it opens the file): with isolated timing, the timed runs (the "
            "largest peaks over the 'runs', the median time); otherwise, and for the smaller "
            "HDF5 volume, one run. 'peak RSS' is the process's RSS high-water "
            "mark (`VmHWM`; not `ru_maxrss`, which on Linux also counts the parent's RSS at "
            "fork); 'peak from setup' is the "
            "kernel's RSS high-water mark reset (`/proc/self/clear_refs`) after the imports "
            "and the model were set up and warmed up, i.e. the peak while making/opening "
            "the volume and "
            "running. The idle row imported the same modules and built the same model; "
            "'over idle' = peak from setup − the idle row's RSS at that point.\n"
        )
        idle_rss = memory[0].get("rss_setup_mib")

        def mib(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.0f}"

        mem_rows = []
        for m in memory:
            timed = m["method"] in METHODS
            peak_run = m.get("peak_run_mib")
            over = peak_run - idle_rss if timed and peak_run and idle_rss else None
            mem_rows.append(
                [
                    m["case"],
                    f"{m['size']}³" if "size" in m else "",
                    m["method"],
                    mib(m["peak_mib"]),
                    mib(peak_run) if timed else f"RSS {mib(m.get('rss_setup_mib'))}",
                    mib(over) if timed else "",
                    f"{m['run_s']:.2f}" if timed else "",
                    str(m.get("runs", 1)) if timed else "",
                ]
            )
        print(
            format_table(
                [
                    "case",
                    "volume",
                    "method",
                    "peak RSS MiB",
                    "peak from setup MiB",
                    "over idle MiB",
                    "run s",
                    "runs",
                ],
                mem_rows,
                markdown=True,
            )
        )
        print()
    print(f"_{run.footer()}_")
    run.write(
        info,
        {
            "time": [_json_entry(r) for r in results],
            "memory": memory,
            "network_inputs": inputs,
            "own_cost": [_json_entry(o) for o in own],
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
