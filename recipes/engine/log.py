"""The training log: ``metrics.jsonl`` (one JSON object per logged step and evaluation)
and ``curves.png`` drawn from it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ndwconv.adapters.atomic import atomic_write

__all__ = ["append_log", "plot_curves", "read_log", "truncate_log"]


def append_log(path: Path, record: Mapping[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def truncate_log(path: Path, step: int) -> None:
    """Keep only the log records up to ``step`` (a resumed run rewrites what follows)."""
    if not path.exists():
        return
    keep = [json.dumps(r) for r in _log_records(path) if r.get("step", 0) <= step]
    _write_json_lines(path, keep)


def _log_records(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log, skipping a line torn by a killed process (or any
    line that is not a record with an integer ``step``)."""
    records = []
    for line in path.read_text("utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, int) and not isinstance(step, bool):
            records.append(record)
    return records


def _write_json_lines(path: Path, lines: Sequence[str]) -> None:
    atomic_write(path, lambda p: p.write_text("".join(f"{x}\n" for x in lines), "utf-8"))


def read_log(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(training records, evaluation records)`` of a ``metrics.jsonl`` file."""
    train, evals = [], []
    for record in _log_records(Path(path)):
        if "eval" in record:
            evals.append({"step": record["step"], **record["eval"]})
        else:
            train.append(record)
    return train, evals


def plot_curves(log: str | Path, png: str | Path) -> Path | None:
    """Plot the loss and each evaluation metric of ``metrics.jsonl`` against the step.

    Returns:
        The figure's path, or ``None`` when matplotlib is not installed (``[plot]`` extra)
        or there is nothing to plot.
    """
    try:
        from matplotlib.figure import Figure  # no pyplot: the caller's backend is untouched
    except ImportError:
        return None
    train, evals = read_log(log)
    if not train and not evals:
        return None
    keys = sorted({k for e in evals for k in e if k != "step"})
    fig = Figure(figsize=(4 * (1 + len(keys)), 3))
    axes = fig.subplots(1, 1 + len(keys), squeeze=False)
    ax = axes[0, 0]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train])
    ax.set(xlabel="step", ylabel="training loss", title="loss")
    for ax, key in zip(axes[0, 1:], keys, strict=True):
        pts = [(e["step"], e[key]) for e in evals if key in e]
        ax.plot(*zip(*pts, strict=True), marker="o")
        ax.set(xlabel="step", ylabel=key, title=key)
    fig.tight_layout()
    png = Path(png)
    atomic_write(png, lambda p: fig.savefig(p, dpi=100, format="png"))
    return png
