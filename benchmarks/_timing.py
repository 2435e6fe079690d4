"""Timing, machine description and result files shared by every benchmark.

The performance bar is stated as *ratios measured in one process, medians of interleaved
repeats*; these helpers implement exactly that, so every benchmark measures the same way:

* ``interleaved(candidates, ...)`` times several callables in turn: in repeat ``r`` each one
  is timed once, and the order rotates from repeat to repeat so that neither candidate is
  always first (cache state, turbo/thermal drift and other jobs on the machine hit all
  alike). Each *sample* is a block of calls calibrated to last at least ``min_sample_s``, so
  timer resolution and per-call jitter do not dominate small cases.
* ``spread(values)`` gives median and quartiles; ``ratio_stats(num, den)`` the same for the
  per-pair ratios of two aligned sample lists, plus median times and per-pair differences.
* ``ForeignLoad`` measures how many cores *other* processes kept busy during a block, and
  ``wait_for_quiet`` waits (bounded) for them to go quiet: on a shared machine a ratio is
  only as good as the load it was measured under, so benchmarks report it per row.
* ``make_parser`` gives every benchmark the same ``--quick``, ``--out`` and ``--threads``;
  ``Run`` describes the machine (CPU, cores, OS, versions, threads, date), logs progress
  and writes the result as JSON next to the others (``benchmarks/results/``).

Only the standard library, NumPy and torch are used. GPU timing synchronises the device
around each sample (``torch.cuda.synchronize``), so queued kernels are counted where they
run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "RESULTS_DIR",
    "ForeignLoad",
    "RatioStats",
    "Run",
    "Spread",
    "calibrate",
    "fmt_load",
    "format_table",
    "interleaved",
    "machine_info",
    "make_parser",
    "positive_int",
    "ratio_stats",
    "reset_peak",
    "set_threads",
    "spread",
    "status_mib",
    "synchronizer",
    "verdict",
    "wait_for_quiet",
    "write_json",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------------------------------
# devices and machine description
# ---------------------------------------------------------------------------------------


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A no-argument function that waits for all queued work on ``device``."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """Machine, versions, torch's thread count and the date (UTC), for a result header."""
    try:
        import ndwconv

        ndw_version = getattr(ndwconv, "__version__", "unknown")
    except ImportError:  # pragma: no cover - benchmarks run with ndwconv installed
        ndw_version = "not importable"
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "ndwconv": ndw_version,
        "threads": torch.get_num_threads(),
        "load_average": _load_average(),
    }
    if device is not None:
        info["device"] = str(device)
        if device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
            info["cuda"] = str(torch.version.cuda)
            info["cudnn"] = str(torch.backends.cudnn.version())
    return info


def _header_lines(info: Mapping[str, Any], markdown: bool) -> list[str]:
    """``key: value`` lines (a Markdown bullet list when ``markdown``)."""
    if markdown:
        return [f"- **{k}**: {v}" for k, v in info.items()]
    width = max(len(k) for k in info)
    return [f"{k:<{width}} : {v}" for k, v in info.items()]


# ---------------------------------------------------------------------------------------
# other jobs on the machine
# ---------------------------------------------------------------------------------------


def _machine_busy_s() -> float | None:
    """CPU-seconds all processes spent busy since boot (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    ticks = [int(v) for v in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU-seconds of this process and of its children that have been waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class ForeignLoad:
    """Average number of cores that *other* processes kept busy while this one ran.

    Machine-wide busy time from /proc/stat minus this process's own CPU time, divided by
    the wall time. ``None`` where /proc/stat is unavailable. Use as a context manager::

        with ForeignLoad() as load:
            ...
        print(load.cores)
    """

    def __init__(self) -> None:
        self.cores: float | None = None

    def __enter__(self) -> ForeignLoad:
        self._busy0 = _machine_busy_s()
        self._own0 = _own_cpu_s()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy1 = _machine_busy_s()
        wall = time.perf_counter() - self._t0
        if self._busy0 is None or busy1 is None or wall <= 0:
            return
        foreign = (busy1 - self._busy0) - (_own_cpu_s() - self._own0)
        self.cores = max(0.0, foreign / wall)


def wait_for_quiet(
    max_wait_s: float, threshold_cores: float = 0.25, window_s: float = 1.0
) -> tuple[float, float | None]:
    """Wait (at most about ``max_wait_s``) until other processes use < ``threshold_cores``.

    Samples the foreign load over ``window_s`` windows (at least one window is sampled).
    Returns ``(seconds waited, foreign cores in the last window)``; the load is ``None``
    where /proc/stat is unavailable, in which case it returns at once.
    """
    t0 = time.perf_counter()
    while True:
        with ForeignLoad() as load:
            time.sleep(window_s)
        waited = time.perf_counter() - t0
        if load.cores is None or load.cores < threshold_cores or waited >= max_wait_s:
            return waited, load.cores


def fmt_load(cores: float | None) -> str:
    """Foreign cores for a table cell (``n/a`` where unknown)."""
    return "n/a" if cores is None else f"{cores:.2f}"


# ---------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------


def _time_once(fn: Callable[[], object], number: int, sync: Callable[[], None]) -> float:
    """Seconds per call of ``fn`` over ``number`` back-to-back calls (device synchronised)."""
    sync()
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    sync()
    return (time.perf_counter() - t0) / number


def calibrate(
    fn: Callable[[], object],
    sync: Callable[[], None],
    min_sample_s: float = 0.05,
    max_number: int = 10_000,
) -> int:
    """How many calls one sample needs to last at least ``min_sample_s`` (≥ 1)."""
    t = min(_time_once(fn, 1, sync) for _ in range(3))
    if t <= 0:
        return max_number
    return max(1, min(max_number, math.ceil(min_sample_s / t)))


def interleaved(
    candidates: Mapping[str, Callable[[], object]],
    repeats: int,
    *,
    sync: Callable[[], None] = lambda: None,
    warmup: int = 3,
    min_sample_s: float = 0.05,
    number: int | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each candidate, one sample per candidate per repeat.

    Every candidate is warmed up ``warmup`` times first (allocator, oneDNN primitive
    caches, cuDNN autotuning). One common ``number`` of calls per sample is calibrated on
    the slowest candidate (unless given), so all candidates are timed alike. In repeat
    ``r`` the candidates are timed in an order rotated by ``r``: with two candidates,
    ``A B``, ``B A``, ``A B``, … The garbage collector is off while timing.

    Returns:
        ``{name: [seconds per call, one per repeat]}``; entry ``i`` of every list comes
        from the same repeat, so the lists can be paired.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    sync()
    if number is None:
        number = min(calibrate(candidates[name], sync, min_sample_s) for name in names)
    samples: dict[str, list[float]] = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(repeats):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(_time_once(candidates[name], number, sync))
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


@dataclass(frozen=True)
class Spread:
    """Median and quartiles of a list of values."""

    median: float
    q1: float
    q3: float

    def scaled(self, factor: float) -> Spread:
        """The same spread in other units (e.g. ``1e6`` for seconds → µs)."""
        return Spread(self.median * factor, self.q1 * factor, self.q3 * factor)

    def to_json(self) -> dict[str, float]:
        return {"median": self.median, "q1": self.q1, "q3": self.q3}


def spread(values: Sequence[float]) -> Spread:
    """Median and (inclusive) quartiles of ``values``; a single value is its own spread."""
    values = list(values)
    if not values:
        raise ValueError("spread needs at least one value")
    if len(values) < 2:
        return Spread(values[0], values[0], values[0])
    q = statistics.quantiles(values, n=4, method="inclusive")
    return Spread(statistics.median(values), q[0], q[2])


@dataclass(frozen=True)
class RatioStats:
    """Per-pair ratios ``num[i] / den[i]`` of two aligned sample lists, summarised."""

    median: float
    q1: float
    q3: float
    num_median_s: float
    den_median_s: float
    diff_median_s: float  # median of num[i] - den[i]: the absolute difference per call
    min_ratio: float  # min(num) / min(den): the least-disturbed samples of each side

    def to_json(self) -> dict[str, float]:
        return {
            "ratio_median": self.median,
            "ratio_q1": self.q1,
            "ratio_q3": self.q3,
            "num_median_s": self.num_median_s,
            "den_median_s": self.den_median_s,
            "diff_median_s": self.diff_median_s,
            "min_ratio": self.min_ratio,
        }


def ratio_stats(num: Sequence[float], den: Sequence[float]) -> RatioStats:
    """Median and quartiles of the per-pair ratios ``num[i] / den[i]``."""
    if len(num) != len(den) or not num:
        raise ValueError("ratio_stats needs two non-empty sample lists of equal length")
    ratios = spread([a / b for a, b in zip(num, den, strict=True)])
    return RatioStats(
        median=ratios.median,
        q1=ratios.q1,
        q3=ratios.q3,
        num_median_s=statistics.median(num),
        den_median_s=statistics.median(den),
        diff_median_s=statistics.median(a - b for a, b in zip(num, den, strict=True)),
        min_ratio=min(num) / min(den),
    )


def verdict(median: float, q1: float, target: float) -> str:
    """``PASS`` when a median meets ``target`` (≤); ``MISS`` otherwise.

    A miss whose lower quartile still reaches the target is written ``MISS (noise?)``: the
    repeats do not separate it from the target.
    """
    if median <= target:
        return "PASS"
    if q1 <= target:
        return "MISS (noise?)"
    return "MISS"


# ---------------------------------------------------------------------------------------
# command line and output
# ---------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """argparse type: an int ≥ 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def make_parser(
    name: str, doc: str, examples: Sequence[str], threads_default: str = "torch's own"
) -> argparse.ArgumentParser:
    """The parser every benchmark starts from: ``--quick``, ``--out`` and ``--threads``.

    Args:
        name: the module name in ``benchmarks`` (``python -m benchmarks.NAME``).
        doc: the module docstring; its first paragraph is the description.
        examples: command lines shown under ``Examples`` in ``--help``.
        threads_default: what ``--threads`` defaults to, for its help text.
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m benchmarks.{name}",
        description=doc.strip().split("\n\n")[0],
        epilog="Examples:\n" + "\n".join(f"  {e}" for e in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: tiny shapes and few repeats, seconds (not a measurement)",
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        type=Path,
        help=f"JSON result file (default: benchmarks/results/{name}.json; "
        f"{name}-quick.json with --quick)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help=f"torch.set_num_threads (default: {threads_default}; 1 with --quick)",
    )
    return parser


def set_threads(args: argparse.Namespace, default: int | None = None) -> None:
    """Apply ``--threads``; without it, 1 with ``--quick`` (a smoke run on a busy machine
    must not stall at thread barriers), else ``default`` (``None``: torch's own)."""
    threads = args.threads or (1 if args.quick else default)
    if threads is not None:
        torch.set_num_threads(threads)


def _rounded(data: Any, digits: int) -> Any:
    """``data`` with every float rounded to ``digits`` significant digits."""
    if isinstance(data, float):
        return float(f"{data:.{digits}g}")
    if isinstance(data, dict):
        return {k: _rounded(v, digits) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_rounded(v, digits) for v in data]
    return data


def _dumps(data: Any, depth: int = 0) -> str:
    """JSON with one line per container of scalars (a sample list, a median/q1/q3 triple)."""
    items = data.items() if isinstance(data, dict) else data if isinstance(data, list) else ()
    values = [v for _, v in items] if isinstance(data, dict) else list(items)
    if not any(isinstance(v, (dict, list)) for v in values):
        return json.dumps(data, ensure_ascii=False)
    pad = " " * (depth + 1)
    if isinstance(data, dict):
        lines = [f"{pad}{json.dumps(k)}: {_dumps(v, depth + 1)}" for k, v in data.items()]
        return "{\n" + ",\n".join(lines) + "\n" + " " * depth + "}"
    lines = [pad + _dumps(v, depth + 1) for v in data]
    return "[\n" + ",\n".join(lines) + "\n" + " " * depth + "]"


def write_json(path: str | os.PathLike[str], data: Any, digits: int = 5) -> None:
    """Write ``data`` as JSON through a temporary file renamed over ``path`` (atomic).

    Floats keep ``digits`` significant digits: timings are not more precise than that, and
    the files stay small enough to commit.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(_dumps(_rounded(data, digits)) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 → what open() would have made
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Run:
    """One benchmark run: its machine description, progress lines and JSON result.

    Create it after ``torch.set_num_threads`` so that the recorded thread count is the one
    used. ``extra`` adds version strings (e.g. ``monai``) to the machine description.
    """

    def __init__(
        self,
        name: str,
        args: argparse.Namespace,
        argv: Sequence[str] | None,
        device: torch.device | None = None,
        **extra: Any,
    ) -> None:
        self.name = name
        self.quick = bool(args.quick)
        self.argv = list(sys.argv[1:] if argv is None else argv)
        self.out = args.out or RESULTS_DIR / f"{name}{'-quick' if self.quick else ''}.json"
        self.machine = machine_info(device) | extra
        self._t0 = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._t0

    def log(self, message: str) -> None:
        """A progress line on stderr, with the seconds since the run started."""
        print(f"  [{self.elapsed_s:5.0f} s] {message}", file=sys.stderr, flush=True)

    def header(self, settings: Mapping[str, Any], markdown: bool) -> str:
        """The machine description and ``settings`` as ``key: value`` lines."""
        info = dict(self.machine)
        if info.get("load_average") is not None:
            info["load_average"] = " ".join(f"{v:.2f}" for v in info["load_average"])
        lines = _header_lines(info | dict(settings), markdown)
        if self.quick:
            lines.append("(--quick: a smoke test, not a measurement)")
        return "\n".join(lines)

    def footer(self) -> str:
        """Wall time so far and the load average now."""
        load = _load_average()
        now = "n/a" if load is None else " ".join(f"{v:.2f}" for v in load)
        return f"wall time {self.elapsed_s:.0f} s; load average now {now}"

    def write(self, settings: Mapping[str, Any], results: Any) -> Path:
        """Write ``{benchmark, argv, quick, machine, settings, wall_s, results}`` to the
        output file; returns its path."""
        write_json(
            self.out,
            {
                "benchmark": self.name,
                "argv": self.argv,
                "quick": self.quick,
                "machine": self.machine,
                "settings": dict(settings),
                "wall_s": self.elapsed_s,
                "results": results,
            },
        )
        print(f"results written to {self.out}", file=sys.stderr)
        return Path(self.out)


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False
) -> str:
    """Rows of strings as an aligned text table, or as a GitHub-flavoured Markdown table."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(lines)


@dataclass
class StepSettings:
    """How the network throughput benchmarks time their training steps."""

    device: torch.device
    repeats: int
    warmup: int
    min_sample_s: float
    wait_quiet_s: float
    quick: bool


def add_step_options(
    parser: argparse.ArgumentParser, *, repeats: tuple[int, int], warmup_note: str, wait_unit: str
) -> None:
    """``--device``, ``--repeats``, ``--warmup`` and ``--wait-quiet`` of a network benchmark.

    Args:
        repeats: the default number of interleaved repeats, ``(full, quick)``.
        warmup_note: what the first untimed step also does (e.g. creates optimizer state).
        wait_unit: what is waited before (``"network"``, ``"table block"``).
    """
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument(
        "--repeats",
        type=positive_int,
        help=f"interleaved repeats (default {repeats[0]}; {repeats[1]} with --quick)",
    )
    parser.add_argument(
        "--warmup",
        type=positive_int,
        help=f"untimed steps per candidate before timing (default 3; 1 with --quick); "
        f"{warmup_note}",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=None,
        metavar="S",
        help=f"before each {wait_unit} wait up to S s for other processes to use < 0.25 cores "
        "(default 10; 0 with --quick)",
    )


def step_settings(
    args: argparse.Namespace, parser: argparse.ArgumentParser, repeats: tuple[int, int]
) -> StepSettings:
    """The options of :func:`add_step_options` resolved (usage errors through ``parser``)."""
    from ndwconv.recipes.engine.distributed import resolve_device

    try:
        device = resolve_device(args.device, "--device")
    except ValueError as err:
        parser.error(str(err))
    wait = args.wait_quiet if args.wait_quiet is not None else (0.0 if args.quick else 10.0)
    if wait < 0:
        parser.error(f"--wait-quiet must be ≥ 0, got {wait}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return StepSettings(
        device=device,
        repeats=args.repeats or (repeats[1] if args.quick else repeats[0]),
        warmup=args.warmup or (1 if args.quick else 3),
        min_sample_s=0.01 if args.quick else 0.2,
        wait_quiet_s=wait,
        quick=args.quick,
    )


def status_mib(key: str) -> float | None:
    """``VmRSS``/``VmHWM`` of this process from /proc/self/status in MiB, or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (Linux ≥ 4.0); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return True
