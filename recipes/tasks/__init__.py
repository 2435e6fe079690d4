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

from ..engine.checkpoint import load_checkpoint, model_state
from ..engine.task import Metric, Task

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
        report_header: ``report_header(results) -> lines`` opening the comparison report.
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
    report_header: Callable[[Mapping[str, Any]], list[str]] | None = None
    figure: Figure | None = None
    item: str = "item"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"task name must be an identifier, got {self.name!r}")
        if not self.metrics or not all(isinstance(m, Metric) for m in self.metrics):
            raise ValueError(f"task {self.name!r}: metrics must be a non-empty tuple of Metric")

    def config_name(self, args: argparse.Namespace) -> str:
        """The configuration ``--config`` names, or this task's default for ``args``."""
        if getattr(args, "config", None):
            return str(args.config)
        chosen = self.default_config
        return chosen(args) if callable(chosen) else chosen


_REGISTRY: dict[str, TaskEntry] = {}
_BUILTIN = {"denoise": "ndwconv.recipes.tasks.denoise"}


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
    """Rebuild a trained model from a checkpoint (``.safetensors`` or its ``.json``).

    The architecture comes from the sidecar's task and description, through this
    registry, the weights from safetensors; nothing in the files is executed or imported.

    Args:
        path: either file of the checkpoint.
        device: where the model goes.
        task: if given, the checkpoint must be of this task.

    Returns:
        The model, in eval mode, on ``device``.

    Raises:
        FileNotFoundError: a file of the pair is missing.
        ValueError: not an ndwconv checkpoint, of a task that is not registered, or not of
            ``task``.
    """
    tensors, sidecar = load_checkpoint(path)
    found = str(sidecar.get("task"))
    if task is not None and found != task:
        raise ValueError(f"{str(path)!r} is a {found!r} checkpoint, not {task}")
    entry = get_task(found)
    model = entry.model_from_description(sidecar["description"])
    model.load_state_dict(model_state(tensors))
    return model.to(device).eval()
