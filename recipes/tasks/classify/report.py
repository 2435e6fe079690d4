"""The classification comparison's own report parts: header, metric definitions, figure.

The engine's comparison (``ndwconv.recipes.engine.compare``) writes the table of the
declared scores (top-1 accuracy, macro F1), the verdict and the runs; this module adds,
from each run's ``details`` (the final evaluation's confusion matrix and further scores):
a table of top-5 accuracy (more than 5 classes), macro precision and recall, the most
frequent confusions of the first seed, and a figure with the validation curves and the
confusion matrices of the arms (and, for more than 20 classes, the top confusions as bars).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ndwconv.adapters.atomic import atomic_write

from ...engine.compare import comparison_title, plot_validation_curves
from ...engine.config import validate
from ...engine.task import METHODS
from ..holdout import scored_split_line
from .metrics import top_confusions

__all__ = ["figure", "metric_definitions", "report_header", "report_sections"]

FURTHER = (
    ("top5", "top-5 accuracy"),
    ("macro_precision", "macro precision"),
    ("macro_recall", "macro recall"),
)


def metric_definitions(config: Mapping[str, Any]) -> dict[str, str]:
    """How the declared scores are computed."""
    return {
        "accuracy": "percent of test samples whose arg-max logit is their class",
        "macro_f1": "unweighted mean over classes of the per-class F1 (a class never "
        "predicted, or absent, scores 0), percent",
    }


def _mean_std(values: Sequence[float]) -> str:
    if len(values) > 1:
        return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"
    return f"{values[0]:.2f}"


def _arms(results: Mapping[str, Any]) -> list[str]:
    """The comparison's arms (standard and weighted in results written before arms)."""
    return list(results.get("arms", METHODS))


def _details(results: Mapping[str, Any], method: str) -> list[dict[str, Any]]:
    return [r["details"] for r in results["runs"] if r["method"] == method and "details" in r]


def further_table(results: Mapping[str, Any]) -> list[str]:
    """Markdown lines: the further final scores per method, mean ± std over seeds."""
    per_method = {m: _details(results, m) for m in _arms(results)}
    if not all(per_method.values()):
        return []
    shown = [(k, label) for k, label in FURTHER if all(k in d for d in per_method["standard"])]
    if not shown:
        return []
    lines = [
        "| method | " + " | ".join(f"{label} (%)" for _, label in shown) + " |",
        "|---|" + "---|" * len(shown),
    ]
    for method, details in per_method.items():
        cells = " | ".join(_mean_std([d[k] for d in details]) for k, _ in shown)
        lines.append(f"| {method} | {cells} |")
    return lines


def confusion_lines(results: Mapping[str, Any], k: int = 5) -> list[str]:
    """Markdown lines: the ``k`` most frequent confusions of each method, first seed."""
    lines = []
    for method in _arms(results):
        details = _details(results, method)
        if not details:
            continue
        classes, cm = details[0]["classes"], np.asarray(details[0]["confusion"])
        pairs = top_confusions(cm, k)
        text = ", ".join(f"{classes[t]} → {classes[p]} ({n})" for t, p, n in pairs)
        lines.append(f"- {method}: {text or 'none'}")
    return lines


def report_header(results: Mapping[str, Any]) -> list[str]:
    """The report's title and setup (model, data, density, budget, seeds)."""
    cfg = results["config"]
    train = validate(cfg)["train"]
    runs = results["runs"]
    steps = runs[0]["steps"] if runs else train.get("steps")
    budget = f"{steps} steps of batch {train['batch_size']} per run"
    if "epochs" in cfg.get("train", {}):
        budget += f" ({cfg['train']['epochs']} epochs)"
    data = cfg.get("data", {})
    lines = [
        f"# Classification: {comparison_title(results)} ({cfg.get('name', '?')})",
        "",
        f"Model `{json.dumps(cfg.get('model', {}))}`, data `{json.dumps(data)}`"
        + (f" from `{results['data'][0]}`" if results.get("data") else "")
        + f", density `{cfg.get('weighted', {}).get('density', 'default')}`; {budget}; "
        f"seeds {', '.join(map(str, results['seeds']))}. {scored_split_line(cfg)}",
    ]
    return lines


def report_sections(results: Mapping[str, Any]) -> list[str]:
    """What follows the main table: the further final scores and the top confusions."""
    lines: list[str] = []
    table = further_table(results)
    if table:
        lines += ["Further final scores (mean ± sample std over seeds):", "", *table, ""]
    confusions = confusion_lines(results)
    if confusions:
        lines += [
            f"Most frequent confusions (true → predicted, count; seed {results['seeds'][0]}):",
            "",
            *confusions,
        ]
    return lines


def figure(
    results: Mapping[str, Any], panels: Mapping[str, Any], item: str | None, png: Path
) -> Path | None:
    """Validation curves and the row-normalised confusion matrices of the first seed's
    model of each arm; with more than 20 classes, also the most frequent
    confusions of the weighted model against the standard one's count of them."""
    try:
        from matplotlib.figure import Figure  # no pyplot: the caller's backend is untouched
    except ImportError:
        return None
    first = {m: _details(results, m) for m in _arms(results)}
    matrices = {m: np.asarray(d[0]["confusion"], dtype=np.float64) for m, d in first.items() if d}
    many = any(cm.shape[0] > 20 for cm in matrices.values())
    pair = "standard" in matrices and "weighted" in matrices
    columns = 1 + len(matrices) + (1 if many and pair else 0)
    fig = Figure(figsize=(4.6 * columns, 4.4))
    plot_validation_curves(fig.add_subplot(1, columns, 1), results)
    classes: list[str] = []
    for i, (method, cm) in enumerate(matrices.items()):
        classes = first[method][0]["classes"]
        rows = cm.sum(axis=1, keepdims=True)
        normalised = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        ax = fig.add_subplot(1, columns, 2 + i)
        image = ax.imshow(normalised, cmap="viridis", vmin=0, vmax=1)
        accuracy = 100 * np.trace(cm) / max(cm.sum(), 1)
        ax.set_title(f"{method}: {accuracy:.2f} % (seed {results['seeds'][0]})", fontsize=9)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        if cm.shape[0] <= 20:
            ticks = range(cm.shape[0])
            ax.set_xticks(ticks, classes, rotation=90, fontsize=6)
            ax.set_yticks(ticks, classes, fontsize=6)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if many and pair:
        weighted, standard = matrices["weighted"], matrices["standard"]
        pairs = top_confusions(weighted.astype(np.int64), 15)
        ax = fig.add_subplot(1, columns, columns)
        labels = [f"{classes[t]} → {classes[p]}" for t, p, _ in pairs][::-1]
        y = np.arange(len(pairs))
        ax.barh(y + 0.2, [n for _, _, n in pairs][::-1], 0.4, label="weighted", color="tab:orange")
        ax.barh(
            y - 0.2,
            [standard[t, p] for t, p, _ in pairs][::-1],
            0.4,
            label="standard",
            color="tab:blue",
        )
        ax.set_yticks(y, labels, fontsize=6)
        ax.set_xlabel("test samples")
        ax.set_title("the weighted model's top confusions", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(png, lambda p: fig.savefig(p, dpi=100, format="png"))
    return png
