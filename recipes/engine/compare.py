"""Seed-paired comparison of the arms of any task: standard, weighted and more.

For each seed every arm (``ndwconv.recipes.engine.arms``: ``standard``, ``weighted``,
``standard-phi-init``, ``weighted-tuned``; ``[compare] arms``, default standard and
weighted) is trained by ``fit`` from the same initial weights (the model is built under
the seed before it is made weighted) on the same samples for the same budget, into
``out/seed-s/<arm>``, then scored with the task's declared metrics. The report gives mean
± sample standard deviation over seeds, the paired difference of each arm with the
standard one per seed, a verdict on whether that difference exceeds the seed spread, and
the compute each arm used (training steps and time).

With ``[compare] lr_sweep`` each arm first trains once per learning rate (seed = the first
seed, ``tune.split = "validation"``: scored on a part held out of the training data, never
on the test split), into ``out/sweep/<arm>/lr-<rate>``; the rate with the best primary
metric there is the one the arm's final runs use.

Before anything trains, every arm's model is built once without data (``check_fit``),
so a density that does not fit a layer fails in a second, naming the layer, and leaves
no run folder behind.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

import ndwconv
from ndwconv.adapters.atomic import atomic_write, write_json

from .arms import DEFAULT_ARMS, Arm, arm_model, arm_task, compare_settings, make_arms
from .config import tuning_split, validate
from .distributed import resolve_device
from .lock import RunLock, check_output_folder
from .task import Metric
from .trainer import fit

__all__ = [
    "RESULTS_FORMAT",
    "check_fit",
    "compare",
    "comparison_title",
    "format_table",
    "plot_validation_curves",
    "report_markdown",
    "verdict",
]

RESULTS_FORMAT = "ndwconv.compare/3"
"""Version of ``results.json``. 3: ``arms``, per-arm ``summary`` entries and
``summary.differences`` (each arm − standard; ``summary.difference`` is weighted −
standard as before), ``compute`` and ``lr_sweep``."""


def _metrics(results: Mapping[str, Any]) -> list[Metric]:
    return [Metric(**m) for m in results["metrics"]]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else float("nan"))


def _header(metric: Metric) -> str:
    return f"{metric.label} ({metric.unit})" if metric.unit else metric.label


def _unit(metric: Metric) -> str:
    return f" {metric.unit}" if metric.unit else ""


def check_fit(
    entry: Any, config: Mapping[str, Any], arms: Sequence[Arm | str] | None = None
) -> None:
    """Build each arm's model once, without data, so a misfit fails before training.

    Args:
        entry: the task's ``TaskEntry``.
        config: a configuration of that task.
        arms: the arms (``Arm`` objects, or names of arms that need no settings); default
            standard and weighted.

    Raises:
        ValueError/TypeError: the configuration or the density does not fit the model
            (the message names the arm and the layer).
    """
    chosen = [
        arm if isinstance(arm, Arm) else make_arms({"arms": (arm,), "tuned": None})[0]
        for arm in (arms if arms is not None else DEFAULT_ARMS)
    ]
    with torch.random.fork_rng():
        for arm in chosen:
            try:
                arm_model(entry, arm, config)
            except (ValueError, TypeError) as err:
                raise type(err)(f"the {arm.name} model of this configuration: {err}") from None


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
    """Train and score every arm for each seed (after a learning-rate sweep, if asked);
    write a report.

    The ``[compare]`` table of ``config`` chooses the arms (``arms``, default standard and
    weighted; ``tuned``, the ``weighted-tuned`` arm's density) and the learning-rate sweep
    (``lr_sweep``, ``sweep_steps``); see ``ndwconv.recipes.engine.arms``.

    Written to ``out_dir``: ``results.json`` (everything, raw), ``per_ITEM.csv`` (when the
    task scores items one by one), ``report.md`` and, with matplotlib, ``figure.png``; the
    runs go to ``seed-S/ARM/`` and the sweep's to ``sweep/ARM/lr-RATE/``.

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
        ValueError: bad seeds, ``train.seed`` set in the configuration, a bad ``[compare]``
            table, or a configuration or density that does not fit (raised before any
            folder is written).
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
    settings = compare_settings(config)
    arms = make_arms(settings)
    check_fit(entry, config, arms)
    out = check_output_folder(out_dir, "out_dir")
    with RunLock(out):
        return _compare(entry, config, seeds, out, data, resume, progress, settings, arms)


def _has_run(run_dir: Path) -> bool:
    return (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("step-*.json"))


def _better(metric: Metric, score: float, best: float) -> bool:
    """Whether ``score`` beats ``best`` (a NaN score never does; anything beats NaN)."""
    if math.isnan(score):
        return False
    if math.isnan(best):
        return True
    return score > best if metric.higher_is_better else score < best


def _run(
    task: Any, cfg: Mapping[str, Any], run_dir: Path, resume: bool, progress: bool, what: str
) -> Any:
    """``fit`` one run of a comparison, resuming it if asked and it has started."""
    resume = resume and _has_run(run_dir)
    return fit(task, cfg, run_dir, resume=resume, progress=progress, description=what)


def _sweep(
    entry: Any,
    config: Mapping[str, Any],
    arm: Arm,
    settings: Mapping[str, Any],
    seed: int,
    out: Path,
    data: Sequence[str] | None,
    metric: Metric,
    resume: bool,
    progress: bool,
) -> dict[str, Any]:
    """Train ``arm`` once per rate of ``settings["lr_sweep"]`` on the validation split;
    the record of the sweep, with the chosen rate."""
    started = time.perf_counter()
    record: dict[str, Any] = {
        "rates": list(settings["lr_sweep"]),
        "scores": [],
        "split": "validation",
        "seed": seed,
        "metric": metric.name,
        "steps": 0,
        "train_seconds": 0.0,
        "runs": [],
    }
    best_rate, best = None, math.nan
    for rate in settings["lr_sweep"]:
        cfg = arm.configure(config)
        cfg.setdefault("train", {})["seed"] = seed
        cfg.setdefault("optim", {})["lr"] = rate
        cfg.setdefault("tune", {})["split"] = "validation"
        if settings["sweep_steps"] is not None:
            cfg["train"].pop("epochs", None)
            cfg["train"]["steps"] = settings["sweep_steps"]
        run_dir = out / "sweep" / arm.name / f"lr-{rate!r}"
        task = arm_task(entry, arm, cfg, data)
        result = _run(task, cfg, run_dir, resume, progress, f"sweep {arm.name} lr {rate:g}")
        del task
        score = float(result.metrics[metric.name])
        record["scores"].append(score)
        record["steps"] += result.step
        record["train_seconds"] += result.train_seconds
        record["runs"].append(
            {
                "lr": rate,
                metric.name: score,
                "steps": result.step,
                "train_seconds": result.train_seconds,
                "checkpoint": str(result.checkpoint) if result.checkpoint else None,
            }
        )
        if best_rate is None or _better(metric, score, best):
            best_rate, best = rate, score
    if math.isnan(best):
        raise ValueError(
            f"learning-rate sweep of the {arm.name} arm: every rate gave a {metric.name} of "
            f"NaN on the validation split ({', '.join(map(repr, record['rates']))}); try "
            "smaller rates"
        )
    record["chosen"] = best_rate
    record["wall_seconds"] = time.perf_counter() - started
    return record


def _compare(
    entry: Any,
    config: Mapping[str, Any],
    seeds: list[int],
    out: Path,
    data: Sequence[str] | None,
    resume: bool,
    progress: bool,
    settings: Mapping[str, Any],
    arms: Sequence[Arm],
) -> dict[str, Any]:
    started = time.perf_counter()
    metrics = entry.metrics_of(config) if hasattr(entry, "metrics_of") else entry.metrics
    sweeps: dict[str, Any] = {}
    if settings["lr_sweep"] is not None:
        for arm in arms:
            sweeps[arm.name] = _sweep(
                entry, config, arm, settings, seeds[0], out, data, metrics[0], resume, progress
            )
    runs: list[dict[str, Any]] = []
    per_item: list[dict[str, Any]] = []
    panels: dict[str, Any] = {}
    first_item = None
    for seed in seeds:
        for arm in arms:
            method = arm.name
            cfg = arm.configure(config)
            cfg.setdefault("train", {})["seed"] = seed
            if method in sweeps:
                cfg.setdefault("optim", {})["lr"] = sweeps[method]["chosen"]
            task = arm_task(entry, arm, cfg, data)
            example = getattr(task, "example", None)
            if first_item is None and example is not None:
                first_item, references = example()  # the figure's panels besides the runs'
                panels.update(references)
            if hasattr(task, "keep"):
                task.keep = (first_item,) if seed == seeds[0] and first_item else ()
            if hasattr(task, "yardstick_cache"):  # a resumed comparison reads it back
                task.yardstick_cache = out / "classical-cache.jsonl"
            run_dir = out / f"seed-{seed}" / method
            result = _run(task, cfg, run_dir, resume, progress, f"seed {seed} {method}")
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
                    "lr": validate(cfg)["optim"]["lr"],
                    "history": result.history,
                    "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                    "weighted_layers": sum(1 for _ in ndwconv.weighted_layers(result.model)),
                    "parameters": sum(p.numel() for p in result.model.parameters()),
                    **({} if details is None else {"details": details}),
                }
            )
    names = [arm.name for arm in arms]
    summary = _summary(runs, metrics, names)
    if entry.baselines is not None and per_item:
        first = [r for r in per_item if r["seed"] == seeds[0] and r["method"] == "standard"]
        summary["baselines"] = entry.baselines(first)
    definitions = dict(entry.metric_definitions(config)) if entry.metric_definitions else {}
    definitions["std"] = "sample standard deviation over seeds of the per-run mean"
    compute = {}
    for name in names:
        own = [r for r in runs if r["method"] == name]
        sweep = sweeps.get(name)
        compute[name] = {
            "steps": sum(r["steps"] for r in own),
            "train_seconds": sum(r["train_seconds"] for r in own),
            "sweep_steps": sweep["steps"] if sweep else 0,
            "sweep_train_seconds": sweep["train_seconds"] if sweep else 0.0,
        }
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "task": entry.name,
        "item": entry.item,
        "metrics": [dataclasses.asdict(m) for m in metrics],
        "config": dict(config),
        "seeds": seeds,
        "arms": names,
        "arm_descriptions": {arm.name: arm.description for arm in arms},
        "tuned": settings["tuned"],
        "tuned_search": _search_of(settings["tuned"]),
        "data": None if data is None else [str(d) for d in data],
        "metric_definitions": definitions,
        "summary": summary,
        "compute": compute,
        "lr_sweep": None
        if not sweeps
        else {
            "rates": list(settings["lr_sweep"]),
            "steps": settings["sweep_steps"],
            "holdout": tuning_split({"tune": {**config.get("tune", {}), "split": "validation"}}),
            "arms": sweeps,
        },
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
    footer = entry.report_footer(results) if entry.report_footer else ()
    report = report_markdown(results, header, sections, footer)
    atomic_write(out / "report.md", lambda p: p.write_text(report, "utf-8"))
    draw = entry.figure or _curves_figure
    if draw(results, panels, first_item, out / "figure.png") is not None:
        results["figure"] = "figure.png"
    return results


def _arms(results: Mapping[str, Any]) -> list[str]:
    """The arms of ``results`` (a results file before arms: standard and weighted)."""
    return list(results.get("arms", DEFAULT_ARMS))


def _summary(
    runs: Sequence[Mapping[str, Any]], metrics: Sequence[Metric], arms: Sequence[str]
) -> dict[str, Any]:
    """Mean and spread per arm, and each arm's paired differences with the standard one,
    for each metric."""
    summary: dict[str, Any] = {}
    for arm in arms:
        for m in metrics:
            mean, std = _mean_std([r[m.name] for r in runs if r["method"] == arm])
            summary.setdefault(arm, {})[m.name] = mean
            summary[arm][f"{m.name}_std"] = std
    standard = [r for r in runs if r["method"] == "standard"]
    differences: dict[str, Any] = {}
    for arm in arms:
        if arm == "standard":
            continue
        other = [r for r in runs if r["method"] == arm]
        for m in metrics:
            diffs = [o[m.name] - s[m.name] for s, o in zip(standard, other, strict=True)]
            mean, std = _mean_std(diffs)
            entry = differences.setdefault(arm, {})
            entry[m.name] = mean
            entry[f"{m.name}_std"] = std
            entry[f"{m.name}_per_seed"] = diffs
    summary["differences"] = differences
    if "weighted" in differences:
        summary["difference"] = differences["weighted"]
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


def _duration(seconds: float) -> str:
    """``seconds`` in s, min or h, whichever reads best."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _differences(results: Mapping[str, Any]) -> dict[str, Any]:
    s = results["summary"]
    if "differences" in s:
        return s["differences"]
    return {"weighted": s["difference"]}  # a results file before arms


def format_table(results: Mapping[str, Any]) -> str:
    """The summary as a Markdown table (mean ± standard deviation over seeds), with the
    compute each arm used: training steps and training time summed over its seeds, plus
    those of its learning-rate sweep."""
    metrics = _metrics(results)
    s = results["summary"]
    n = len(results["seeds"])
    compute = results.get("compute", {})
    lines = [
        "| method | " + " | ".join(_header(m) for m in metrics) + " | seeds "
        "| training steps | training time |",
        "|---|" + "---|" * len(metrics) + "---|---|---|",
    ]
    for label, values in s.get("baselines", {}).items():
        cells = " | ".join(m.format(values[m.name]) if m.name in values else "-" for m in metrics)
        lines.append(f"| {label} | {cells} | - | - | - |")
    for arm in _arms(results):
        cells = " | ".join(m.format(s[arm][m.name], s[arm][f"{m.name}_std"]) for m in metrics)
        used = compute.get(arm)
        if used is None:
            steps = seconds = "-"
        else:
            steps, seconds = str(used["steps"]), _duration(used["train_seconds"])
            if used.get("sweep_steps"):
                steps += f" + {used['sweep_steps']} sweep"
                seconds += f" + {_duration(used['sweep_train_seconds'])} sweep"
        lines.append(f"| {arm} | {cells} | {n} | {steps} | {seconds} |")
    for arm, d in _differences(results).items():
        cells = " | ".join(m.format(d[m.name], d[f"{m.name}_std"]) for m in metrics)
        lines.append(f"| {arm} − standard | {cells} | {n} | - | - |")
    return "\n".join(lines)


def _verdict(results: Mapping[str, Any], arm: str) -> str:
    """The verdict paragraph of ``arm`` against the standard arm."""
    m = _metrics(results)[0]
    s = results["summary"]
    d = _differences(results)[arm]
    diffs = d[f"{m.name}_per_seed"]
    mean, paired = d[m.name], d[f"{m.name}_std"]
    spreads = (s["standard"][f"{m.name}_std"], s[arm][f"{m.name}_std"])
    wins = sum((x > 0) if m.higher_is_better else (x < 0) for x in diffs)
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
        f"{arm[0].upper()}{arm[1:]} − standard {m.label}: {mean:+.3f}{unit} (per seed: "
        f"{', '.join(f'{x:+.3f}' for x in diffs)}; {arm} better in {wins} of {len(diffs)}). "
        f"Seed spread (sample standard deviation over {len(diffs)} seeds): "
        f"{spreads[0]:.3f}{unit} standard, {spreads[1]:.3f}{unit} {arm}, "
        f"{paired:.3f}{unit} for the paired difference. The mean difference is {conclusion}."
    )


def verdict(results: Mapping[str, Any]) -> str:
    """One paragraph per arm on the primary metric: the mean paired difference with the
    standard arm against the seed-to-seed spread."""
    if len(results["seeds"]) < 2:
        return (
            "One seed only: there is no seed spread to compare the difference with; run "
            "with `--seeds 3` or more before drawing a conclusion."
        )
    return "\n\n".join(_verdict(results, arm) for arm in _differences(results))


def _sweep_lines(results: Mapping[str, Any]) -> list[str]:
    """The report's section on the learning-rate sweep (none without one)."""
    sweep = results.get("lr_sweep")
    if not sweep:
        return []
    m = _metrics(results)[0]
    rates = sweep["rates"]
    arms = sweep["arms"]
    first = next(iter(arms.values()))
    holdout = sweep["holdout"]
    better = "highest" if m.higher_is_better else "lowest"
    lines = [
        "## Learning rate per arm",
        "",
        f"Each arm's learning rate was chosen on the validation split: one run per rate "
        f"(seed {first['seed']}, {first['runs'][0]['steps']} steps), trained with "
        f'`tune.split = "validation"` — a fraction {holdout["holdout"]:g} of the training '
        f"data held out (chosen with seed {holdout['holdout_seed']}) and scored, the test "
        f"split never read — and the {better} {_header(m)} there won. The final runs above "
        "used the chosen rate.",
        "",
        "| arm | " + " | ".join(f"lr {r:g}" for r in rates) + " | chosen |",
        "|---|" + "---|" * len(rates) + "---|",
    ]
    for arm, record in arms.items():
        cells = " | ".join(f"{x:.{m.digits + 1}f}" for x in record["scores"])
        lines.append(f"| {arm} | {cells} | {record['chosen']:g} |")
    return [*lines, ""]


def _search_of(tuned: str | None) -> dict[str, Any] | None:
    """What the search that wrote a tuned density file cost (its ``meta``), if it says."""
    if tuned is None or not ndwconv.density.is_density_file(tuned):
        return None
    meta = ndwconv.load_densities(tuned).meta
    keys = ("method", "split", "evaluations", "train_steps", "train_seconds")
    return {k: meta[k] for k in keys} if all(k in meta for k in keys) else None


def _arm_lines(results: Mapping[str, Any]) -> list[str]:
    """What each arm is, when the comparison has more than standard and weighted."""
    arms = _arms(results)
    if arms == list(DEFAULT_ARMS):
        return []
    described = results.get("arm_descriptions", {})
    lines = ["Arms:", ""]
    for arm in arms:
        text = described.get(arm, "")
        if arm == "weighted-tuned" and results.get("tuned"):
            text += f"; tuned density `{results['tuned']}`"
            search = results.get("tuned_search")
            if search:
                text += (
                    f", found by {search['method']} on the {search['split']} split: "
                    f"{search['evaluations']} evaluation(s), {search['train_steps']} training "
                    f"steps ({search['train_seconds'] / 60:.1f} min), not counted in the table"
                )
        lines.append(f"- `{arm}`: {text}.")
    return [*lines, ""]


def comparison_title(results: Mapping[str, Any]) -> str:
    """What a comparison compares, for a report's title: ``standard vs weighted
    convolution`` for the default arms, else the arms (``standard vs weighted vs
    standard-phi-init``)."""
    arms = _arms(results)
    return "standard vs weighted convolution" if arms == list(DEFAULT_ARMS) else " vs ".join(arms)


def report_markdown(
    results: Mapping[str, Any],
    header: Sequence[str] | None = None,
    sections: Sequence[str] = (),
    footer: Sequence[str] = (),
) -> str:
    """The Markdown report of a comparison; ``header`` opens it (default: a generic one),
    ``sections`` follow the main table, its verdict, the arms and the learning-rate
    sweep, and ``footer`` ends it."""
    metrics = _metrics(results)
    cfg = results["config"]
    train = validate(cfg)["train"]
    runs = results["runs"]
    steps = train["steps"] if train["steps"] is not None else runs[0]["steps"]
    if header is None:
        header = [
            f"# {results['task']}: {comparison_title(results)} ({cfg.get('name', '?')})",
            "",
            f"Density `{cfg.get('weighted', {}).get('density', 'default')}`; "
            f"{steps} steps of batch {train['batch_size']} per run; seeds "
            f"{', '.join(map(str, results['seeds']))}.",
        ]
    definitions = results["metric_definitions"]
    defined = " ".join(
        f"{m.label}: {definitions[m.name]}." for m in metrics if m.name in definitions
    )
    compute = (
        " Training steps and time are summed over an arm's seeds (time: the trainer's wall "
        "time in training steps), plus those of its learning-rate sweep."
        if "compute" in results
        else ""
    )
    lines = [
        *header,
        "",
        format_table(results),
        "",
        verdict(results),
        "",
        f"{defined} ± is the {definitions['std']}.{compute}".strip(),
        "",
        *_arm_lines(results),
        *_sweep_lines(results),
        *([*sections, ""] if sections else []),
        "## Runs",
        "",
        "| seed | method | "
        + " | ".join(_header(m) for m in metrics)
        + " | lr | steps | train time (s) | samples/s |",
        "|---|---|" + "---|" * len(metrics) + "---|---|---|---|",
    ]
    for r in runs:
        cells = " | ".join(f"{r[m.name]:.{m.digits + 1}f}" for m in metrics)
        lr = f"{r['lr']:g}" if "lr" in r else "-"
        lines.append(
            f"| {r['seed']} | {r['method']} | {cells} | {lr} | {r['steps']} "
            f"| {r['train_seconds']:.0f} | {r['samples_per_second']:.1f} |"
        )
    machine = results["machine"]
    files = ["`results.json` (raw)"]
    if results.get("per_item"):
        files.append(f"`per_{results['item']}.csv`")
    files.append("`figure.png`")
    sweep_seconds = sum(
        a["train_seconds"] for a in (results.get("lr_sweep") or {}).get("arms", {}).values()
    )
    sweep_text = (
        f" (and {sweep_seconds / 60:.1f} min in the learning-rate sweep)" if sweep_seconds else ""
    )
    folders = "each run's `seed-S/METHOD/` folder"
    if results.get("lr_sweep"):
        folders += " and each sweep run's `sweep/METHOD/lr-RATE/` folder"
    lines += [
        "",
        f"Machine: {machine['processor']}, {machine['platform']}, {machine['torch_threads']} "
        f"torch threads, device {machine['device']}; ndwconv {results['versions']['ndwconv']}, "
        f"torch {results['versions']['torch']}. Training time, summed over the runs: "
        f"{sum(r['train_seconds'] for r in runs) / 60:.1f} min{sweep_text}; wall time of this "
        "invocation (runs resumed here count only their rescoring): "
        f"{results['wall_seconds'] / 60:.1f} min.",
        "",
        f"Files: {', '.join(files)}, and {folders} (checkpoints, `metrics.jsonl`, `curves.png`).",
        "",
        *([*footer, ""] if footer else []),
    ]
    return "\n".join(lines)


ARM_COLOURS = {
    "standard": "tab:blue",
    "weighted": "tab:orange",
    "standard-phi-init": "tab:green",
    "weighted-tuned": "tab:red",
}
"""The colour of each arm in the comparison figures."""


def plot_validation_curves(ax: Any, results: Mapping[str, Any]) -> None:
    """Draw the primary metric of every run's evaluations against the step on ``ax``."""
    m = _metrics(results)[0]
    spare = iter(["tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"] * 4)
    colours = dict(ARM_COLOURS)
    for run in results["runs"]:
        if run["method"] not in colours:
            colours[run["method"]] = next(spare)
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
    # the split every run is evaluated on: the comparison's test split (data.validation)
    ax.set(xlabel="step", ylabel=f"{_header(m)}, scored split", title="scores during training")
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
