"""Shared timing helpers for the ndwconv benchmarks.

The performance bar (DESIGN.md) is stated as *ratios measured in one process, medians of
interleaved repeats*. These helpers implement exactly that, so every benchmark measures the
same way:

* ``interleaved(candidates, ...)`` times several callables in turn: in repeat ``r`` each one
  is timed once, and the order rotates from repeat to repeat so that neither candidate is
  always first (cache state, turbo/thermal drift and other jobs on the machine hit both
  alike). Each *sample* is one call, or a fixed batch of calls calibrated to last at least
  ``min_sample_s`` so timer resolution and per-call jitter do not dominate small cases.
* ``ratio_stats(num, den)`` turns two aligned lists of samples into per-pair ratios and
  reports their median, quartiles and the median absolute times.
* ``ForeignLoad`` measures how many cores *other* processes kept busy during a block, and
  ``wait_for_quiet`` waits (bounded) for them to go quiet: on a shared machine a ratio is
  only as good as the load it was measured under, so benchmarks report it per row.
* ``machine_info()`` / ``header_lines()`` describe the machine and versions for the report.
* ``format_table`` renders rows as aligned text or as a Markdown table.

Only the standard library and torch are used. GPU timing synchronises the device around each
sample (``torch.cuda.synchronize``), so queued kernels are counted where they run.
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "ForeignLoad",
    "RatioStats",
    "calibrate",
    "format_table",
    "header_lines",
    "interleaved",
    "machine_info",
    "ratio_stats",
    "resolve_device",
    "synchronizer",
    "verdict",
    "wait_for_quiet",
    "write_json",
]


# ---------------------------------------------------------------------------------------
# devices and machine description
# ---------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"``/``"cuda:N"`` or ``"auto"`` (cuda when available) → a device.

    Raises:
        ValueError: for CUDA when no CUDA device is available, or an unknown name.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(
            f"--device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got {name!r}"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but torch.cuda.is_available() is False")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got {name!r}")
    return device


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


def _load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except (OSError, AttributeError):
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine_info(device: torch.device | None = None) -> dict[str, str]:
    """Machine, versions and date as strings, for a benchmark header."""
    try:
        import ndwconv

        ndw_version = getattr(ndwconv, "__version__", "unknown")
    except ImportError:  # pragma: no cover - benchmarks run with ndwconv installed
        ndw_version = "not importable"
    info = {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "load average (1/5/15 min)": _load_average(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ndwconv": ndw_version,
    }
    if device is not None:
        info["device"] = str(device)
        if device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
            info["cuda"] = str(torch.version.cuda)
            info["cudnn"] = str(torch.backends.cudnn.version())
    return info


def header_lines(info: Mapping[str, str], markdown: bool = False) -> list[str]:
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
    max_number: int = 1000,
) -> int:
    """How many calls one sample needs to last at least ``min_sample_s`` (≥ 1)."""
    t = _time_once(fn, 1, sync)
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


@dataclass
class RatioStats:
    """Per-pair ratios ``num[i] / den[i]`` of two aligned sample lists, summarised."""

    ratios: list[float] = field(repr=False)
    median: float
    q1: float
    q3: float
    num_median_s: float
    den_median_s: float
    diff_median_s: float  # median of num[i] - den[i]: the absolute overhead per call
    min_ratio: float  # min(num) / min(den): the least-disturbed samples of each side

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def ratio_stats(num: Sequence[float], den: Sequence[float]) -> RatioStats:
    """Median and quartiles of the per-pair ratios ``num[i] / den[i]``."""
    if len(num) != len(den) or not num:
        raise ValueError("ratio_stats needs two non-empty sample lists of equal length")
    ratios = [a / b for a, b in zip(num, den, strict=True)]
    q1, q3 = _quartiles(ratios)
    return RatioStats(
        ratios=ratios,
        median=statistics.median(ratios),
        q1=q1,
        q3=q3,
        num_median_s=statistics.median(num),
        den_median_s=statistics.median(den),
        diff_median_s=statistics.median(a - b for a, b in zip(num, den, strict=True)),
        min_ratio=min(num) / min(den),
    )


def verdict(stats: RatioStats, target: float) -> str:
    """``PASS`` when the median ratio meets ``target``; ``MISS`` otherwise.

    A miss whose interquartile range still reaches the target is written
    ``MISS (noise?)``: the repeats do not separate it from the target.
    """
    if stats.median <= target:
        return "PASS"
    if stats.q1 <= target:
        return "MISS (noise?)"
    return "MISS"


# ---------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------


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


def write_json(path: str, data: Any) -> None:
    """Write ``data`` as JSON through a temporary file renamed over ``path`` (atomic)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
