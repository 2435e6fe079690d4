"""The task registry: every recipe task is registered here by name.

A ``TaskEntry`` tells the engine and the command line everything about a task type: how
to make a task object from a configuration, its declared metrics, how to build its model
without data (to check a density fits before any training, and to rebuild checkpoints),
its own command-line flags, and the task-specific parts of a comparison's report.
``ndwconv train TASK`` and ``ndwconv compare TASK`` are built from this registry, and a
checkpoint's sidecar names its task, so ``load_model`` finds the builder here without
importing anything the file names.

The built-in tasks (``denoise``) are registered on first use; register your own with
``register_task``:

Example:
    >>> "denoise" in task_names()
    True
    >>> get_task("denoise").metrics[0].name
    'psnr'
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

import ndwconv

from ..engine.checkpoint import CheckpointError, find_checkpoint, load_checkpoint, model_state
from ..engine.task import METHODS, Metric, Task

__all__ = [
    "TaskEntry",
    "get_task",
    "load_model",
    "register_task",
    "task_names",
    "unregister_task",
]


Figure = Callable[[Mapping[str, Any], Mapping[str, Any], "str | None", Path], "Path | None"]


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """A task without flags of its own."""


def _no_overrides(args: argparse.Namespace) -> list[str]:
    return []


@dataclasses.dataclass(frozen=True)
class TaskEntry:
    """A task type, as the engine and the command line see it.

    Attributes:
        name: the name configurations (``task = "…"``) and commands use.
        help: one line for ``--help``.
        metrics: the declared scores, primary first.
        make: ``make(config, method, data) -> Task``; ``data`` is what ``--data`` gave
            (a list of paths, or ``None``).
        check_config: raises ``ValueError`` naming the key on a bad configuration.
        build_model: ``build_model(config, method) -> nn.Module`` without reading data
            (``method`` ``"weighted"`` applies ``[weighted] density``); used to check that
            the density fits the model before anything trains.
        model_from_description: rebuilds the model from a checkpoint sidecar's
            ``description`` (what ``Task.describe`` returned).
        default_config: the configuration used when ``--config`` is not given, or a
            function of the parsed arguments choosing one.
        add_arguments: adds the task's own flags to its ``train``/``compare`` parsers.
        overrides: turns those flags into ``section.key=value`` overrides.
        data_help: what ``--data`` means for this task.
        baselines: ``baselines(rows) -> {label: {metric: value}}``: reference rows of the
            comparison table (e.g. the noisy input), from the first run's per-item rows.
        metric_definitions: ``metric_definitions(config) -> {metric: definition}``.
        metrics_for: ``metrics_for(config) -> metrics``: the declared scores of one
            configuration, when they depend on it (denoising series: PSNR and SNR instead
            of PSNR and SSIM); ``None``: ``metrics`` for every configuration.
        report_header: ``report_header(results) -> lines`` opening the comparison report.
        report_sections: ``report_sections(results) -> lines`` placed after the main
            table and its verdict (further scores, confusions, …).
        report_footer: ``report_footer(results) -> lines`` ending the report (e.g. the
            command that applies the best checkpoint to the user's own data).
        figure: ``figure(results, panels, item, png) -> path | None``: the comparison
            figure (default: validation curves only).
        item: what one evaluation item is called (``"image"``): ``per_ITEM.csv``.
    """

    name: str
    help: str
    metrics: tuple[Metric, ...]
    make: Callable[[Mapping[str, Any], str, Sequence[str] | None], Task]
    check_config: Callable[[Mapping[str, Any]], Any]
    build_model: Callable[[Mapping[str, Any], str], nn.Module]
    model_from_description: Callable[[Mapping[str, Any]], nn.Module]
    default_config: str | Callable[[argparse.Namespace], str] = "quick"
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    overrides: Callable[[argparse.Namespace], list[str]] = _no_overrides
    data_help: str = "the data the configuration reads (see the task's documentation)"
    baselines: Callable[[Sequence[Mapping[str, Any]]], dict[str, dict[str, float]]] | None = None
    metric_definitions: Callable[[Mapping[str, Any]], dict[str, str]] | None = None
    metrics_for: Callable[[Mapping[str, Any]], tuple[Metric, ...]] | None = None
    report_header: Callable[[Mapping[str, Any]], list[str]] | None = None
    report_sections: Callable[[Mapping[str, Any]], list[str]] | None = None
    report_footer: Callable[[Mapping[str, Any]], list[str]] | None = None
    figure: Figure | None = None
    item: str = "item"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"task name must be an identifier, got {self.name!r}")
        if not self.metrics or not all(isinstance(m, Metric) for m in self.metrics):
            raise ValueError(f"task {self.name!r}: metrics must be a non-empty tuple of Metric")

    def metrics_of(self, config: Mapping[str, Any]) -> tuple[Metric, ...]:
        """The declared scores of ``config`` (``metrics`` unless ``metrics_for`` is set)."""
        return self.metrics if self.metrics_for is None else tuple(self.metrics_for(config))

    def config_name(self, args: argparse.Namespace) -> str:
        """The configuration ``--config`` names, or this task's default for ``args``."""
        if getattr(args, "config", None):
            return str(args.config)
        chosen = self.default_config
        return chosen(args) if callable(chosen) else chosen


_REGISTRY: dict[str, TaskEntry] = {}
_BUILTIN = {
    "denoise": "ndwconv.recipes.tasks.denoise",
    "classify": "ndwconv.recipes.tasks.classify",
}


def register_task(entry: TaskEntry, *, replace: bool = False) -> TaskEntry:
    """Make ``entry`` known to ``ndwconv train``/``compare`` and to ``load_model``.

    Raises:
        ValueError: a task of that name is registered already (unless ``replace``).
    """
    if not isinstance(entry, TaskEntry):
        raise TypeError(f"register_task takes a TaskEntry, got {type(entry).__name__}")
    if entry.name in _REGISTRY and not replace and _REGISTRY[entry.name] is not entry:
        raise ValueError(f"a task named {entry.name!r} is registered already")
    _REGISTRY[entry.name] = entry
    return entry


def unregister_task(name: str) -> None:
    """Forget a task registered with ``register_task`` (built-in tasks come back on use)."""
    _REGISTRY.pop(name, None)


def _load_builtin() -> None:
    for name, module in _BUILTIN.items():
        if name not in _REGISTRY:
            importlib.import_module(module)


def task_names() -> list[str]:
    """The names of every registered task (built-in ones included)."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_task(name: str) -> TaskEntry:
    """The registered task called ``name``.

    Raises:
        ValueError: no such task (the message lists the known ones).
    """
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def load_model(
    path: str | Path, device: str | torch.device = "cpu", *, task: str | None = None
) -> nn.Module:
    """Rebuild a trained model from a checkpoint.

    The architecture comes from the sidecar's task and description, through this
    registry, the weights from safetensors; nothing in the files is executed or imported.
    The rebuilt model is checked against the sidecar: its weighted layers and their
    densities must be those the sidecar recorded (``densities``), so an edited
    ``description`` cannot silently change the model.

    Args:
        path: either file of the checkpoint, or a run folder (its newest checkpoint).
        device: where the model goes.
        task: if given, the checkpoint must be of this task.

    Returns:
        The model, in eval mode, on ``device``.

    Raises:
        FileNotFoundError: a file of the pair is missing, or a run folder without a
            checkpoint.
        ValueError: not an ndwconv checkpoint, a sidecar that does not fit its schema or
            the model it describes, of a task that is not registered, or not of ``task``
            (``CheckpointError``, naming the file and the field).
    """
    found_path = find_checkpoint(path)
    tensors, sidecar = load_checkpoint(found_path)
    where = f"checkpoint sidecar {str(found_path.with_suffix('.json'))!r}"
    found = sidecar["task"]
    if task is not None and found != task:
        raise CheckpointError(f"{str(path)!r} is a {found!r} checkpoint, not {task}")
    entry = get_task(found)
    description = sidecar["description"]
    if "method" in description and description["method"] not in METHODS:
        raise CheckpointError(
            f"{where}: field 'description.method' must be one of {', '.join(METHODS)}, "
            f"got {description['method']!r}"
        )
    try:
        model = entry.model_from_description(description)
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(
            f"{where}: field 'description' does not describe a model: {err}"
        ) from None
    weights = model_state(tensors)
    _restore_frozen(model, weights, sidecar["densities"])
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        _check_densities(model, sidecar["densities"], where)  # the likelier explanation
        message = " ".join(str(err).split())
        raise CheckpointError(
            f"checkpoint {str(found_path)!r}: the weights do not fit the model its sidecar "
            f"describes ({message[:300]})"
        ) from None
    _check_densities(model, sidecar["densities"], where)  # learned ones as trained
    return model.to(device).eval()


def _restore_frozen(model: nn.Module, weights: Mapping[str, Any], recorded: dict[str, str]) -> None:
    """Learned densities frozen during training (learn-then-freeze): the description
    names the learned density the run started from, the weights hold no learned density
    and the sidecar records the frozen tables; rebuild those."""
    learned = [
        (name, layer)
        for name, layer in ndwconv.weighted_layers(model)
        if any(k.startswith(f"{name}.phi." if name else "phi.") for k in model.state_dict())
    ]
    if not learned or any(
        k.startswith(f"{name}.phi." if name else "phi.") for name, _ in learned for k in weights
    ):
        return
    ndwconv.freeze(model, inplace=True)
    for name, layer in learned:
        spec = recorded.get(name or "<root>")
        if spec is not None:
            layer.set_density(spec)


def _check_densities(model: nn.Module, recorded: dict[str, str], where: str) -> None:
    """The rebuilt model's weighted layers and densities must be those recorded."""
    built = {name or "<root>": str(layer.density) for name, layer in ndwconv.weighted_layers(model)}
    if set(built) != set(recorded):
        missing = sorted(set(recorded) - set(built))
        extra = sorted(set(built) - set(recorded))
        detail = []
        if missing:
            detail.append(f"recorded but not rebuilt: {', '.join(missing[:5])}")
        if extra:
            detail.append(f"rebuilt but not recorded: {', '.join(extra[:5])}")
        raise CheckpointError(
            f"{where}: field 'densities' records other weighted layers than the model its "
            f"'description' builds ({'; '.join(detail)}): was 'description.method' edited?"
        )
    for name, spec in recorded.items():
        if _canonical(spec) != _canonical(built[name]):
            raise CheckpointError(
                f"{where}: field 'densities' records {spec!r} for layer {name!r} but the "
                f"model its 'description' builds has {built[name]!r}: was "
                "'description.density' edited?"
            )


def _canonical(spec: str) -> str:
    """A density spec in its canonical spelling (as the layer would print it)."""
    try:
        return str(ndwconv.as_density(spec))
    except (ValueError, TypeError):
        return spec
