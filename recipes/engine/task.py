"""What a task gives the engine: data, model, loss, metrics — the engine owns the rest.

The trainer (``fit``) and the seed-paired comparison (``compare``) know nothing about
images, labels or noise. A *task* object supplies:

* ``dataset[i] -> (input, target)``, a pure function of the run's seed and ``i``;
* ``build_model()``, called under the run's seed;
* ``loss(output, target)`` and ``target_dtype`` (``torch.long`` for class labels, a
  floating dtype for regression targets, ``None`` to leave targets as they come);
* ``evaluate(model, device, final)`` and ``describe()`` (what the checkpoint records).

A task type is made known to the command line and to checkpoint loading by registering a
``TaskEntry`` with ``ndwconv.recipes.tasks.register_task``; the entry declares the
task's metrics (``Metric``: name, direction, format — the first is the primary one, which
comparisons and verdicts use).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LOSSES", "METHODS", "Metric", "Task", "loss_by_name"]

METHODS = ("standard", "weighted")
"""The two arms of every comparison: plain convolutions, and the same model made weighted."""


@dataclasses.dataclass(frozen=True)
class Metric:
    """A score a task reports.

    Attributes:
        name: the key in ``evaluate``'s result (``"psnr"``, ``"accuracy"``).
        label: column header in reports (``"PSNR (dB)"``).
        higher_is_better: direction, for verdicts ("better in k of n seeds").
        digits: decimals shown in tables.
        unit: unit shown after differences in verdicts (``"dB"``, ``"%"``; may be empty).
    """

    name: str
    label: str
    higher_is_better: bool = True
    digits: int = 2
    unit: str = ""

    def format(self, value: float, spread: float = math.nan) -> str:
        """``value`` (± ``spread`` when it is a number) with this metric's decimals."""
        text = f"{value:.{self.digits}f}"
        return text if math.isnan(spread) else f"{text} ± {spread:.{self.digits}f}"


class Task(Protocol):
    """What ``fit`` and ``compare`` need from a task (see the module docstring).

    Attributes:
        name: the registered task name, recorded in checkpoints.
        dataset: ``dataset[i] -> (input, target)``, a pure function of ``i`` (targets may be
            tensors or numbers, e.g. an ``int`` class label).
        target_dtype: dtype targets are moved to (``None``: unchanged).
        spatial_dims: number of spatial axes of an input, or ``None`` when not spatial;
            channels-last memory is used on CUDA only for 2.
    """

    name: str
    dataset: Any
    target_dtype: torch.dtype | None
    spatial_dims: int | None

    def build_model(self) -> nn.Module:
        """A fresh model; called under the run's seed, so its initial weights are fixed."""

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """The scalar training loss of a batch (``output`` in float32)."""

    def evaluate(
        self, model: nn.Module, device: torch.device, final: bool = True
    ) -> dict[str, float]:
        """The entry's declared metrics of ``model`` (in eval mode, gradients off).

        ``final`` is false for the evaluations during training, which may use a subset.
        """

    def describe(self) -> dict[str, Any]:
        """A JSON-safe description for the checkpoint sidecar; it holds ``method``,
        ``model`` (constructor arguments) and ``density`` (``None`` for standard), from
        which the task's entry rebuilds the model."""


def _psnr_loss(output: Tensor, target: Tensor) -> Tensor:
    mse = (output - target).float().pow(2).flatten(1).mean(1)
    return (10 * torch.log10(mse + 1e-10)).mean()


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "psnr": _psnr_loss,  # minus the mean per-sample PSNR: a scale-free form of MSE
    "cross_entropy": F.cross_entropy,
}
"""Losses by the name ``train.loss`` gives them."""


def loss_by_name(name: str, allowed: tuple[str, ...]) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss called ``name``, which must be one of the task's ``allowed`` names.

    Raises:
        ValueError: ``name`` is not among ``allowed`` (the message lists them).
    """
    if name not in allowed or name not in LOSSES:
        raise ValueError(f"train.loss must be one of {', '.join(allowed)}, got {name!r}")
    return LOSSES[name]
