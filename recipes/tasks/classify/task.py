"""The classification task: configuration, model, training samples, evaluation.

A classification configuration (``task = "classify"``) has, besides the engine's
``[train]``, ``[optim]``, ``[schedule]`` and ``[weighted]`` tables:

* ``[model]``: ``name``, a model of ``ndwconv.recipes.models.build_model`` (``vgg16_bn``,
  ``resnet18``, ``mnist1d_cnn``, ``fcn``, ``resnet_ts``, …), and its constructor
  arguments; ``in_channels`` and ``num_classes`` are filled in from the data unless given;
* ``[data]``: ``dataset`` (``cifar100``, ``mnist1d``, ``ucr`` or a registered kind, see
  ``data``), and ``source``, ``name``, ``labels``, ``augment``, ``seed``, ``znormalise``;
* ``[eval]``: ``batch_size`` (default 256) and ``curve_samples``, the number of test
  samples scored by the evaluations during training (0: all; the final one scores all).

The loss is cross-entropy (``train.loss``; ``train.label_smoothing`` optional). The
weighted model is the standard one made weighted by ``make_weighted`` (every odd-kernel,
non-pointwise convolution), after it is built under the run's seed, so both arms start
from the same weights. Evaluation is on the data's test split, as the CIFAR and UCR
literature reports it. With ``tune.split = "validation"`` (what every tuning uses) a
stratified hold-out of the *training* samples (``tune.holdout`` of each class, chosen by
``tune.holdout_seed``) is scored instead, the model trains on the rest, and the test
split is not read (``data.Split.held_out``); CIFAR-100's fixed normalisation constants
are the published ones of its whole training split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...engine.config import check_section, check_sections
from ...engine.task import METHODS, Metric, loss_by_name
from ...models import build_model as build_registered
from ...models import density_description, make_weighted, read_density
from ..holdout import split_record, tuning_split
from .data import DATASET_SHAPES, DATASETS, Split, TrainSamples, load_split
from .metrics import classification_scores

__all__ = [
    "METRICS",
    "ClassifyTask",
    "build_model",
    "check_config",
    "make_task",
    "model_from_description",
]

METRICS = (
    Metric("accuracy", "top-1 accuracy", higher_is_better=True, digits=2, unit="%"),
    Metric("macro_f1", "macro F1", higher_is_better=True, digits=2, unit="%"),
)
"""The declared scores: top-1 accuracy (primary) and macro F1, both in percent. The final
evaluation also reports top-5 accuracy (more than 5 classes), macro precision and recall,
per-class accuracy and the confusion matrix (``ClassifyTask.final_details``)."""

LOSS_NAMES = ("cross_entropy",)

MODEL_SCHEMA: dict[str, Any] = {"name": str}
DATA_SCHEMA: dict[str, Any] = {
    "dataset": str,
    "source": str,
    "name": str,
    "labels": str,
    "augment": bool,
    "seed": int,
    "znormalise": bool,
}
EVAL_SCHEMA: dict[str, Any] = {"batch_size": int, "curve_samples": int}
EVAL_DEFAULTS: dict[str, Any] = {"batch_size": 256, "curve_samples": 0}
WEIGHTED_SCHEMA: dict[str, Any] = {"density": str}
TASK_SECTIONS = ("model", "data", "eval", "weighted")
UNKNOWN_CLASSES = 2
"""``num_classes`` of the model built without data when neither ``model.num_classes`` nor
the dataset kind says it (e.g. a UCR set): no convolution depends on it, so the check that
a density fits the model is the same."""
MAX_CLASSES = 100_000
MAX_CHANNELS = 4096


def check_config(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The classification tables with defaults filled in; a bad key or value is an error
    naming it.

    Example:
        >>> tables = check_config({"model": {"name": "fcn"}, "data": {"dataset": "ucr"}})
        >>> tables["data"]["name"], tables["eval"]["batch_size"]
        ('ArrowHead', 256)
    """
    check_sections(config, TASK_SECTIONS)
    model = config.get("model", {})
    if not isinstance(model, Mapping) or not isinstance(model.get("name"), str):
        raise ValueError(
            "config key model.name is missing or not a string (e.g. vgg16_bn, resnet18, "
            "mnist1d_cnn, fcn)"
        )
    data = check_section(config, "data", DATA_SCHEMA)
    if "dataset" not in data:
        raise ValueError(
            f"config key data.dataset is missing (one of {', '.join(sorted(DATASETS))})"
        )
    if data["dataset"] not in DATASETS:
        raise ValueError(
            f"data.dataset must be one of {', '.join(sorted(DATASETS))}, got {data['dataset']!r}"
        )
    if data["dataset"] == "ucr":
        data.setdefault("name", "ArrowHead")
    if "labels" in data and data["labels"] not in ("fine", "coarse"):
        raise ValueError(f"data.labels must be 'fine' or 'coarse', got {data['labels']!r}")
    evals = {**EVAL_DEFAULTS, **check_section(config, "eval", EVAL_SCHEMA)}
    if evals["batch_size"] < 1:
        raise ValueError(f"eval.batch_size must be ≥ 1, got {evals['batch_size']}")
    if evals["curve_samples"] < 0:
        raise ValueError(f"eval.curve_samples must be ≥ 0, got {evals['curve_samples']}")
    loss_by_name(config.get("train", {}).get("loss", "cross_entropy"), LOSS_NAMES)
    weighted = {"density": "default", **check_section(config, "weighted", WEIGHTED_SCHEMA)}
    family = read_density(weighted["density"])  # fails early on a bad spec or file
    if getattr(family, "unit", None) is not None:
        raise ValueError(
            f"weighted.density {weighted['density']!r} is given in {family.unit}; the "
            "classification recipes take distances in samples/pixels (e.g. 'gaussian:1.2')"
        )
    for key in ("in_channels", "num_classes"):
        value = model.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"model.{key} must be an integer ≥ 1, got {value!r}")
    return {"model": dict(model), "data": data, "eval": evals, "weighted": weighted}


def _build(model: Mapping[str, Any], method: str, density: str | None) -> nn.Module:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    arguments = dict(model)
    net = build_registered(arguments.pop("name"), **arguments)
    if method == "weighted":
        make_weighted(net, density)
    return net


def _model_table(tables: Mapping[str, Any], shape: tuple[int, int | None]) -> dict[str, Any]:
    in_channels, num_classes = shape
    model = dict(tables["model"])
    model.setdefault("in_channels", in_channels)
    model.setdefault("num_classes", num_classes if num_classes is not None else UNKNOWN_CLASSES)
    return model


def build_model(config: Mapping[str, Any], method: str) -> nn.Module:
    """The network of ``config`` for ``method``, without reading any data.

    ``in_channels`` and ``num_classes`` come from ``[model]`` or from what the dataset
    kind says without its files (a UCR set's class count is only known from its files:
    ``UNKNOWN_CLASSES`` stands in, which no convolution depends on).

    Raises:
        ValueError: a bad configuration, or a density that does not fit a layer (named).
    """
    tables = check_config(config)
    kind = tables["data"]["dataset"]
    shape = DATASET_SHAPES.get(kind, lambda d: (1, None))(tables["data"])
    density = tables["weighted"]["density"] if method == "weighted" else None
    return _build(_model_table(tables, shape), method, density)


def model_from_description(description: Mapping[str, Any]) -> nn.Module:
    """The untrained network a checkpoint sidecar's ``description`` records.

    Raises:
        ValueError: a field is missing, of the wrong type, or out of bounds.
    """
    try:
        model = dict(description["model"])
        method, density = description["method"], description.get("density")
    except (KeyError, TypeError) as err:
        raise ValueError(f"not a classification checkpoint description (missing {err})") from None
    if not isinstance(model.get("name"), str):
        raise ValueError(f"model.name must be a model name, got {model.get('name')!r}")
    if density is not None and not isinstance(density, str):
        if not (isinstance(density, dict) and "format" in density):
            raise ValueError(
                f"density must be a density spec string or a density file's document, "
                f"got {density!r}"
            )
    for key, bound in (("num_classes", MAX_CLASSES), ("in_channels", MAX_CHANNELS)):
        value = model.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= bound:
            raise ValueError(f"model.{key} must be an integer in [1, {bound}], got {value!r}")
    return _build(model, method, density)


class ClassifyTask:
    """The trainer-facing classification task (see the module docstring).

    Attributes:
        split: the data (``data.Split``).
        train_size: training samples (the engine converts epochs to steps with it).
        final_details: after a final evaluation, the scores ``compare`` records besides
            the declared ones (confusion matrix, per-class accuracy, …); ``None`` before.
    """

    name = "classify"
    metrics = METRICS
    target_dtype = torch.long

    def __init__(
        self,
        config: Mapping[str, Any],
        method: str = "standard",
        data: str | Path | Sequence[str | Path] | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        tables = check_config(config)
        self.config, self.method, self.tables = dict(config), method, tables
        train = config.get("train", {})
        self.smoothing = float(train.get("label_smoothing", 0.0))
        tuning = tuning_split(config)
        self.split_record = split_record(config)
        self.split: Split
        if tuning["split"] == "validation":
            # a stratified hold-out of the training samples is scored; the test split is
            # not read (built-in kinds) or dropped unused (other loaders)
            whole = load_split(tables["data"], _folder(data), test=False)
            self.split = whole.held_out(tuning["holdout"], tuning["holdout_seed"])
        else:
            self.split = load_split(tables["data"], _folder(data))
        self.train_size = len(self.split.train_y)
        self.spatial_dims = self.split.spatial_dims
        self.num_classes = self.split.num_classes
        self.model_table = _model_table(tables, (self.split.in_channels, self.split.num_classes))
        if self.model_table["num_classes"] != self.num_classes:
            raise ValueError(
                f"model.num_classes ({self.model_table['num_classes']}) differs from the "
                f"{self.num_classes} classes of data.dataset {tables['data']['dataset']!r}"
            )
        self.dataset = TrainSamples(
            self.split, seed=int(train.get("seed", 0)), augment=tables["data"].get("augment", True)
        )
        self.final_details: dict[str, Any] | None = None

    def build_model(self) -> nn.Module:
        density = self.tables["weighted"]["density"] if self.method == "weighted" else None
        return _build(self.model_table, self.method, density)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output, target, label_smoothing=self.smoothing)

    def logits(
        self, model: nn.Module, device: torch.device | str, limit: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The model's float32 logits on the scored split (the test split, or the
        validation hold-out under ``tune.split = "validation"``; its first ``limit``
        samples), and their labels; the model is left in the mode it was in."""
        x, y = self.split.test_x, self.split.test_y
        if limit:
            x, y = x[:limit], y[:limit]
        batch = self.tables["eval"]["batch_size"]
        was_training = model.training
        model.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(x), batch):
                inputs = self.split.inputs(x[start : start + batch]).to(device)
                out.append(model(inputs).float().cpu())
        model.train(was_training)
        return torch.cat(out).numpy(), y

    def evaluate(
        self, model: nn.Module, device: torch.device, final: bool = True
    ) -> dict[str, float]:
        """Top-1 accuracy and macro F1 (percent) on the test split, plus top-5 (more than
        5 classes), macro precision and recall; during training (``final`` false) on the
        first ``eval.curve_samples`` test samples (0: all)."""
        limit = None if final else (self.tables["eval"]["curve_samples"] or None)
        scores, labels = self.logits(model, device, limit)
        result = classification_scores(scores, labels, self.num_classes)
        if final:
            self.final_details = {
                "classes": list(self.split.classes),
                "confusion": result["confusion"],
                "per_class_accuracy": result["per_class_accuracy"],
                **{
                    k: result[k] for k in ("top5", "macro_precision", "macro_recall") if k in result
                },
            }
        keys = ("accuracy", "macro_f1", "top5", "macro_precision", "macro_recall")
        return {k: float(result[k]) for k in keys if k in result}

    def describe(self) -> dict[str, Any]:
        density = self.tables["weighted"]["density"] if self.method == "weighted" else None
        data = {k: v for k, v in self.tables["data"].items() if k != "source"}
        return {
            "method": self.method,
            "model": dict(self.model_table),
            "density": density_description(density),
            "data": data,
            "classes": list(self.split.classes),
            **self.split_record,
        }


def _folder(data: str | Path | Sequence[str | Path] | None) -> Path | None:
    if data is None:
        return None
    items = [data] if isinstance(data, (str, Path)) else list(data)
    if len(items) != 1:
        raise ValueError(f"--data takes one folder or file for classify, got {len(items)} paths")
    path = Path(items[0])
    if not path.exists():
        raise FileNotFoundError(f"--data {str(path)!r} does not exist")
    return path


def make_task(
    config: Mapping[str, Any],
    method: str = "standard",
    data: str | Path | Sequence[str | Path] | None = None,
) -> ClassifyTask:
    """The classification task of ``config`` for ``method``; ``data`` is what ``--data``
    gave (one folder or file: CIFAR-100's ``cifar-100-python/`` or ``.tar.gz``, a UCR
    archive or set folder)."""
    return ClassifyTask(config, method, data)
