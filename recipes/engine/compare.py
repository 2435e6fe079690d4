"""Seed-paired comparison of the standard and the weighted model of any task.

For each seed ``s`` both methods are trained by ``fit`` from the same initial weights
(the model is built under the seed before it is made weighted) on the same samples for
the same budget, into ``out/seed-s/<method>``, then scored with the task's declared
metrics. The report gives mean ± sample standard deviation over seeds, the paired
difference per seed, and a verdict on whether that difference exceeds the seed spread.

Before anything trains, the weighted model is built once without data (``check_fit``),
so a density that does not fit a layer fails in a second, naming the layer, and leaves
no run folder behind.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

import ndwconv
from ndwconv.adapters.atomic import atomic_write, write_json

from .config import validate
from .distributed import resolve_device
from .lock import RunLock, check_output_folder
from .task import METHODS, Metric
from .trainer import fit

__all__ = [
    "RESULTS_FORMAT",
    "check_fit",
    "compare",
    "format_table",
    "plot_validation_curves",
    "report_markdown",
    "verdict",
]

RESULTS_FORMAT = "ndwconv.compare/2"


def _metrics(results: Mapping[str, Any]) -> list[Metric]:
    return [Metric(**m) for m in results["metrics"]]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else float("nan"))


def _header(metric: Metric) -> str:
    return f"{metric.label} ({metric.unit})" if metric.unit else metric.label


def _unit(metric: Metric) -> str:
    return f" {metric.unit}" if metric.unit else ""


def check_fit(entry: Any, config: Mapping[str, Any]) -> None:
    """Build each method's model once, without data, so a misfit fails before training.

    Raises:
        ValueError/TypeError: the configuration or the density does not fit the model
            (the message names the layer).
    """
    with torch.random.fork_rng():
        for method in METHODS:
            try:
                entry.build_model(config, method)
            except (ValueError, TypeError) as err:
                raise type(err)(f"the {method} model of this configuration: {err}") from None


def compare(
    entry: Any,
    config: Mapping[str, Any],
    seeds: Sequence[int] = (0,),
    out_dir: str | Path = "runs/compare",
    data: Sequence[str] | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and score the standard and the weighted model for each seed; write a report.

    Written to ``out_dir``: ``results.json`` (everything, raw), ``per_ITEM.csv`` (when the
    task scores items one by one), ``report.md`` and, with matplotlib, ``figure.png``.

    A task with a ``final_details`` attribute (e.g. a classifier's confusion matrix, set
    by its final evaluation; ``None`` before) has it recorded, JSON-safe, in its run's
    ``details`` in ``results.json``, where the task's report and figure find it.

    Args:
        entry: the task's ``TaskEntry`` (``ndwconv.recipes.tasks.get_task(name)``).
        config: a configuration of that task.
        seeds: the seeds (distinct non-negative integers).
        out_dir: output folder.
        data: what ``--data`` gave (see the task).
        resume: continue or reuse the runs already in ``out_dir`` (finished runs are only
            re-scored); without it, an ``out_dir`` holding runs is an error.
        progress: progress bars.

    Returns:
        The results (what ``results.json`` holds).

    The folder ``out_dir`` is locked for the comparison's lifetime (see
    ``ndwconv.recipes.engine.lock``): a second comparison or training run given it is
    refused.

    Raises:
        ValueError: bad seeds, ``train.seed`` set in the configuration, or a configuration
            or density that does not fit (raised before any folder is written).
        FolderInUseError: another live run holds ``out_dir``'s lock.
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be distinct non-negative integers, got {seeds}")
    entry.check_config(config)
    if "seed" in config.get("train", {}):
        raise ValueError(
            "compare sets train.seed itself, to each of seeds; remove train.seed from the "
            "configuration"
        )
    check_fit(entry, config)
    out = check_output_folder(out_dir, "out_dir")
    with RunLock(out):
        return _compare(entry, config, seeds, out, data, resume, progress)


def _compare(
    entry: Any,
    config: Mapping[str, Any],
    seeds: list[int],
    out: Path,
    data: Sequence[str] | None,
    resume: bool,
    progress: bool,
) -> dict[str, Any]:
    started = time.perf_counter()
    metrics = entry.metrics_of(config) if hasattr(entry, "metrics_of") else entry.metrics
    runs: list[dict[str, Any]] = []
    per_item: list[dict[str, Any]] = []
    panels: dict[str, Any] = {}
    first_item = None
    for seed in seeds:
        cfg = copy.deepcopy(dict(config))
        cfg.setdefault("train", {})["seed"] = seed
        for method in METHODS:
            task = entry.make(cfg, method, data)
            example = getattr(task, "example", None)
            if first_item is None and example is not None:
                first_item, references = example()  # the figure's panels besides the runs'
                panels.update(references)
            if hasattr(task, "keep"):
                task.keep = (first_item,) if seed == seeds[0] and first_item else ()
            run_dir = out / f"seed-{seed}" / method
            has_run = (run_dir / "checkpoints").is_dir() and any(
                (run_dir / "checkpoints").glob("step-*.json")
            )
            result = fit(
                task,
                cfg,
                run_dir,
                resume=resume and has_run,
                progress=progress,
                description=f"seed {seed} {method}",
            )
            scores = dict(result.metrics)
            details = None
            if hasattr(task, "final_details"):  # what a final evaluation leaves besides scores
                if task.final_details is None:  # a finished run that was only resumed
                    device = next(result.model.parameters()).device
                    with torch.no_grad():
                        task.evaluate(result.model.eval(), device, final=True)
                details = task.final_details
            if hasattr(task, "final_rows"):
                rows = task.final_rows  # None when a finished run was only resumed
                if rows is None:
                    device = next(result.model.parameters()).device
                    rows = task.evaluate_items(result.model, device, keep=task.keep)
                for row in rows:
                    if "estimate" in row:
                        panels[method] = row.pop("estimate")
                    per_item.append({"seed": seed, "method": method, **row})
                scores = {m.name: statistics.fmean(r[m.name] for r in rows) for m in metrics}
            del task  # its data, before the next run loads its own
            runs.append(
                {
                    "seed": seed,
                    "method": method,
                    **{m.name: scores[m.name] for m in metrics},
                    "steps": result.step,
                    "train_seconds": result.train_seconds,
                    "samples_per_second": result.samples_per_second,
                    "history": result.history,
                    "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                    "weighted_layers": sum(1 for _ in ndwconv.weighted_layers(result.model)),
                    "parameters": sum(p.numel() for p in result.model.parameters()),
                    **({} if details is None else {"details": details}),
                }
            )
    summary = _summary(runs, metrics)
    if entry.baselines is not None and per_item:
        first = [r for r in per_item if r["seed"] == seeds[0] and r["method"] == METHODS[0]]
        summary["baselines"] = entry.baselines(first)
    definitions = dict(entry.metric_definitions(config)) if entry.metric_definitions else {}
    definitions["std"] = "sample standard deviation over seeds of the per-run mean"
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "task": entry.name,
        "item": entry.item,
        "metrics": [dataclasses.asdict(m) for m in metrics],
        "config": dict(config),
        "seeds": seeds,
        "data": None if data is None else [str(d) for d in data],
        "metric_definitions": definitions,
        "summary": summary,
        "runs": runs,
        "per_item": per_item,
        "wall_seconds": time.perf_counter() - started,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "device": str(
                resolve_device(config.get("train", {}).get("device", "auto"), "train.device")
            ),
        },
        "versions": {"ndwconv": ndwconv.__version__, "torch": torch.__version__},
    }
    write_json(out / "results.json", results)
    if per_item:
        _write_csv(out / f"per_{entry.item}.csv", per_item)
    header = entry.report_header(results) if entry.report_header else None
    sections = entry.report_sections(results) if entry.report_sections else ()
    report = report_markdown(results, header, sections)
    atomic_write(out / "report.md", lambda p: p.write_text(report, "utf-8"))
    draw = entry.figure or _curves_figure
    if draw(results, panels, first_item, out / "figure.png") is not None:
        results["figure"] = "figure.png"
    return results


def _summary(runs: Sequence[Mapping[str, Any]], metrics: Sequence[Metric]) -> dict[str, Any]:
    """Mean and spread per method, and the paired differences, for each metric."""
    summary: dict[str, Any] = {}
    for method in METHODS:
        for m in metrics:
            mean, std = _mean_std([r[m.name] for r in runs if r["method"] == method])
            summary.setdefault(method, {})[m.name] = mean
            summary[method][f"{m.name}_std"] = std
    standard = [r for r in runs if r["method"] == METHODS[0]]
    weighted = [r for r in runs if r["method"] == METHODS[1]]
    for m in metrics:
        diffs = [w[m.name] - s[m.name] for s, w in zip(standard, weighted, strict=True)]
        mean, std = _mean_std(diffs)
        summary.setdefault("difference", {})[m.name] = mean
        summary["difference"][f"{m.name}_std"] = std
        summary["difference"][f"{m.name}_per_seed"] = diffs
    return summary


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k, v in row.items() if k not in fields and not hasattr(v, "shape")]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write(path, lambda p: p.write_text(buffer.getvalue(), "utf-8"))


def format_table(results: Mapping[str, Any]) -> str:
    """The summary as a Markdown table (mean ± standard deviation over seeds)."""
    metrics = _metrics(results)
    s = results["summary"]
    n = len(results["seeds"])
    lines = [
        "| method | " + " | ".join(_header(m) for m in metrics) + " | seeds |",
        "|---|" + "---|" * len(metrics) + "---|",
    ]
    for label, values in s.get("baselines", {}).items():
        cells = " | ".join(m.format(values[m.name]) if m.name in values else "-" for m in metrics)
        lines.append(f"| {label} | {cells} | - |")
    for method in METHODS:
        cells = " | ".join(m.format(s[method][m.name], s[method][f"{m.name}_std"]) for m in metrics)
        lines.append(f"| {method} | {cells} | {n} |")
    d = s["difference"]
    cells = " | ".join(m.format(d[m.name], d[f"{m.name}_std"]) for m in metrics)
    lines.append(f"| weighted − standard | {cells} | {n} |")
    return "\n".join(lines)


def verdict(results: Mapping[str, Any]) -> str:
    """One paragraph on the primary metric: the mean paired difference against the
    seed-to-seed spread."""
    m = _metrics(results)[0]
    s = results["summary"]
    diffs = s["difference"][f"{m.name}_per_seed"]
    if len(diffs) < 2:
        return (
            "One seed only: there is no seed spread to compare the difference with; run "
            "with `--seeds 3` or more before drawing a conclusion."
        )
    mean, paired = s["difference"][m.name], s["difference"][f"{m.name}_std"]
    spreads = (s["standard"][f"{m.name}_std"], s["weighted"][f"{m.name}_std"])
    wins = sum((d > 0) if m.higher_is_better else (d < 0) for d in diffs)
    above_methods = abs(mean) > max(spreads)
    above_paired = abs(mean) > paired
    if above_methods and above_paired:
        conclusion = "larger than the seed spread, by either measure"
    elif above_paired:
        conclusion = (
            "larger than the spread of the paired differences but not than the seed spread "
            "of each method"
        )
    elif above_methods:
        conclusion = (
            "larger than each method's seed spread but not than the spread of the paired "
            "differences"
        )
    else:
        conclusion = "not larger than the seed spread"
    unit = _unit(m)
    return (
        f"Weighted − standard {m.label}: {mean:+.3f}{unit} (per seed: "
        f"{', '.join(f'{d:+.3f}' for d in diffs)}; weighted better in {wins} of {len(diffs)}). "
        f"Seed spread (sample standard deviation over {len(diffs)} seeds): "
        f"{spreads[0]:.3f}{unit} standard, {spreads[1]:.3f}{unit} weighted, "
        f"{paired:.3f}{unit} for the paired difference. The mean difference is {conclusion}."
    )


def report_markdown(
    results: Mapping[str, Any],
    header: Sequence[str] | None = None,
    sections: Sequence[str] = (),
) -> str:
    """The Markdown report of a comparison; ``header`` opens it (default: a generic one),
    ``sections`` follow the main table and its verdict."""
    metrics = _metrics(results)
    cfg = results["config"]
    train = validate(cfg)["train"]
    runs = results["runs"]
    steps = train["steps"] if train["steps"] is not None else runs[0]["steps"]
    if header is None:
        header = [
            f"# {results['task']}: standard vs weighted convolution ({cfg.get('name', '?')})",
            "",
            f"Density `{cfg.get('weighted', {}).get('density', 'default')}`; "
            f"{steps} steps of batch {train['batch_size']} per run; seeds "
            f"{', '.join(map(str, results['seeds']))}.",
        ]
    definitions = results["metric_definitions"]
    defined = " ".join(
        f"{m.label}: {definitions[m.name]}." for m in metrics if m.name in definitions
    )
    lines = [
        *header,
        "",
        format_table(results),
        "",
        verdict(results),
        "",
        f"{defined} ± is the {definitions['std']}.".strip(),
        "",
        *([*sections, ""] if sections else []),
        "## Runs",
        "",
        "| seed | method | "
        + " | ".join(_header(m) for m in metrics)
        + " | steps | train time (s) | samples/s |",
        "|---|---|" + "---|" * len(metrics) + "---|---|---|",
    ]
    for r in runs:
        cells = " | ".join(f"{r[m.name]:.{m.digits + 1}f}" for m in metrics)
        lines.append(
            f"| {r['seed']} | {r['method']} | {cells} | {r['steps']} "
            f"| {r['train_seconds']:.0f} | {r['samples_per_second']:.1f} |"
        )
    machine = results["machine"]
    files = ["`results.json` (raw)"]
    if results.get("per_item"):
        files.append(f"`per_{results['item']}.csv`")
    files.append("`figure.png`")
    lines += [
        "",
        f"Machine: {machine['processor']}, {machine['platform']}, {machine['torch_threads']} "
        f"torch threads, device {machine['device']}; ndwconv {results['versions']['ndwconv']}, "
        f"torch {results['versions']['torch']}. Training time, summed over the runs: "
        f"{sum(r['train_seconds'] for r in runs) / 60:.1f} min; wall time of this invocation "
        f"(runs resumed here count only their rescoring): {results['wall_seconds'] / 60:.1f} min.",
        "",
        f"Files: {', '.join(files)}, and each run's `seed-S/METHOD/` folder (checkpoints, "
        "`metrics.jsonl`, `curves.png`).",
        "",
    ]
    return "\n".join(lines)


def plot_validation_curves(ax: Any, results: Mapping[str, Any]) -> None:
    """Draw the primary metric of every run's evaluations against the step on ``ax``."""
    m = _metrics(results)[0]
    colours = {"standard": "tab:blue", "weighted": "tab:orange"}
    for run in results["runs"]:
        pts = [(h["step"], h[m.name]) for h in run["history"] if m.name in h]
        if pts:
            ax.plot(
                *zip(*pts, strict=True),
                color=colours[run["method"]],
                alpha=0.8,
                marker="o",
                ms=3,
                label=f"{run['method']} (seed {run['seed']})",
            )
    ax.set(xlabel="step", ylabel=f"validation {_header(m)}", title="validation during training")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _curves_figure(
    results: Mapping[str, Any], panels: Mapping[str, Any], item: str | None, png: Path
) -> Path | None:
    try:
        from matplotlib.figure import Figure  # no pyplot: the caller's backend is untouched
    except ImportError:
        return None
    fig = Figure(figsize=(6, 4.2))
    plot_validation_curves(fig.add_subplot(1, 1, 1), results)
    fig.tight_layout()
    atomic_write(png, lambda p: fig.savefig(p, dpi=100, format="png"))
    return png
