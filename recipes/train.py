"""The recipes' shared trainer: one loop for every task, single process or distributed.

A *task* supplies the model, the training samples and the evaluation; the trainer owns
everything else, configured by the ``[train]``, ``[optim]`` and ``[schedule]`` tables of a
recipe configuration (see ``ndwconv.recipes.config``):

* the optimizer (Adam, AdamW, SGD) and the schedule (constant, cosine, multistep);
* the loss on ``(model(inputs), targets)``: ``mse``, ``l1`` or ``psnr`` (minus the mean
  per-sample PSNR on the model's scale, a scale-free form of MSE);
* checkpoints every ``checkpoint_every`` steps and when training stops (finished,
  interrupted by Ctrl-C or SIGTERM, or failed): ``step-NNNNNNNN.safetensors`` (model,
  optimizer and RNG tensors; loading them runs no code) with a JSON sidecar
  (configuration, task description, densities, step, schedule and metrics).
  ``resume=True`` continues from the newest complete checkpoint and, on CPU, produces
  bit-identical weights to a run that was never interrupted;
* a progress bar (loss, samples/s), ``metrics.jsonl`` (one JSON object per logged step and
  per evaluation) and ``curves.png`` (with matplotlib);
* distribution: under ``torchrun --nproc_per_node N`` it trains with
  ``DistributedDataParallel`` (gloo on CPU, nccl on CUDA). Rank ``r`` of ``N`` takes the
  ``r``-th slice of each global batch, so the samples, and with ``batch_norm`` off the
  result up to floating-point reassociation, are those of a single process with the same
  global batch. Rank 0 alone logs, evaluates and checkpoints. On CUDA,
  ``train.sync_bn = true`` makes batch norm use global batch statistics; on CPU PyTorch has
  no synchronised batch norm, so each rank normalises its own slice;
* on CUDA, bfloat16 autocast (``train.amp``) and channels-last memory (``train.channels_last``).
  Nothing requires CUDA.

Samples are addressed by their global index: step ``s`` trains on samples
``s·B … s·B + B − 1`` (``B`` = ``train.batch_size``), and a task's dataset must make sample
``i`` a pure function of its seed and ``i``. That is what makes resuming and distributed
training reproducible without any sampler state.

Example:
    >>> import torch
    >>> from torch import nn
    >>> class Samples:  # sample i, a pure function of i: (x, 2x)
    ...     def __getitem__(self, i):
    ...         x = torch.full((1,), (i % 64) / 64)
    ...         return x, 2 * x
    >>> class Line:  # a task: learn y = 2x
    ...     name = "line"
    ...     dataset = Samples()
    ...     def build_model(self):
    ...         return nn.Linear(1, 1)
    ...     def evaluate(self, model, device, final=True):
    ...         return {"slope": float(model.weight)}
    ...     def describe(self):
    ...         return {}
    >>> import tempfile
    >>> cfg = {"train": {"steps": 300, "batch_size": 8, "log_every": 100},
    ...        "optim": {"lr": 0.05}}
    >>> with tempfile.TemporaryDirectory() as out:
    ...     result = fit(Line(), cfg, out, progress=False)
    >>> round(result.metrics["slope"], 1)
    2.0
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import re
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

import ndwconv

from .config import check_section

__all__ = [
    "CHECKPOINT_FORMAT",
    "Task",
    "TrainResult",
    "atomic_write",
    "fit",
    "latest_checkpoint",
    "load_checkpoint",
    "plot_curves",
    "resolve_device",
    "save_checkpoint",
    "step_indices",
    "validate",
    "write_json",
]

CHECKPOINT_FORMAT = "ndwconv.checkpoint/1"

TRAIN_SCHEMA: dict[str, Any] = {
    "steps": int,
    "batch_size": int,
    "seed": int,
    "loss": str,
    "grad_clip": float,
    "log_every": int,
    "eval_every": int,
    "checkpoint_every": int,
    "keep_checkpoints": int,
    "device": str,
    "threads": int,
    "workers": int,
    "amp": bool,
    "channels_last": bool,
    "sync_bn": bool,
}
TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": 1000,
    "batch_size": 16,
    "seed": 0,
    "loss": "mse",
    "grad_clip": 0.0,
    "log_every": 10,
    "eval_every": 0,
    "checkpoint_every": 0,
    "keep_checkpoints": 2,
    "device": "auto",
    "threads": 0,
    "workers": 0,
    "amp": True,
    "channels_last": True,
    "sync_bn": True,
}
OPTIM_SCHEMA: dict[str, Any] = {
    "name": str,
    "lr": float,
    "weight_decay": float,
    "betas": list,
    "eps": float,
    "momentum": float,
    "nesterov": bool,
    "density_lr": float,
}
OPTIM_DEFAULTS: dict[str, Any] = {"name": "adam", "lr": 1e-3, "weight_decay": 0.0}
SCHEDULE_SCHEMA: dict[str, Any] = {
    "name": str,
    "milestones": list,
    "gamma": float,
    "min_lr": float,
}
SCHEDULE_DEFAULTS: dict[str, Any] = {"name": "constant", "gamma": 0.1, "min_lr": 0.0}

LOSSES = ("mse", "l1", "psnr")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "multistep")

# Keys that may differ between a run and its resumption: they do not change the result.
_RESUMABLE = {
    ("train", k)
    for k in (
        "log_every",
        "eval_every",
        "checkpoint_every",
        "keep_checkpoints",
        "device",
        "threads",
        "workers",
    )
}


class Task(Protocol):
    """What a recipe gives the trainer.

    Attributes:
        name: short task name, recorded in checkpoints.
        dataset: ``dataset[i] -> (input, target)`` tensors, a pure function of ``i``.
    """

    name: str
    dataset: Any

    def build_model(self) -> nn.Module:
        """A fresh model; called under the run's seed, so its initial weights are fixed."""

    def evaluate(
        self, model: nn.Module, device: torch.device, final: bool = True
    ) -> dict[str, float]:
        """Scalar validation metrics of ``model`` (in eval mode, gradients off).

        ``final`` is false for the evaluations during training, which may use a subset.
        """

    def describe(self) -> dict[str, Any]:
        """A JSON-safe description (model arguments, data, …) for the checkpoint sidecar."""


@dataclasses.dataclass
class TrainResult:
    """What ``fit`` returns.

    Attributes:
        model: the trained model (not wrapped in DDP), in eval mode.
        out_dir: where the checkpoints, ``metrics.jsonl`` and ``curves.png`` are.
        step: steps completed.
        metrics: the last evaluation's metrics (empty on ranks other than 0).
        history: every evaluation, ``[{"step": s, **metrics}, …]``.
        train_seconds: wall time spent in training steps, over every invocation of the
            run (a resumed run adds to the time recorded in its checkpoint).
        samples_per_second: global training throughput over the same time.
        checkpoint: path of the final checkpoint (``None`` on ranks other than 0).
    """

    model: nn.Module
    out_dir: Path
    step: int
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    train_seconds: float
    samples_per_second: float
    checkpoint: Path | None


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


def validate(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``train``, ``optim`` and ``schedule`` tables with defaults filled in, checked.

    Raises:
        ValueError: an unknown key, a value of the wrong type or out of range (named).
    """
    train = {**TRAIN_DEFAULTS, **check_section(config, "train", TRAIN_SCHEMA)}
    optim = {**OPTIM_DEFAULTS, **check_section(config, "optim", OPTIM_SCHEMA)}
    schedule = {**SCHEDULE_DEFAULTS, **check_section(config, "schedule", SCHEDULE_SCHEMA)}
    for key in ("steps", "batch_size"):
        if train[key] < 1:
            raise ValueError(f"train.{key} must be ≥ 1, got {train[key]}")
    for key in ("log_every", "eval_every", "checkpoint_every", "threads", "workers", "seed"):
        if train[key] < 0:
            raise ValueError(f"train.{key} must be ≥ 0, got {train[key]}")
    if train["keep_checkpoints"] < 1:
        raise ValueError(f"train.keep_checkpoints must be ≥ 1, got {train['keep_checkpoints']}")
    if train["loss"] not in LOSSES:
        raise ValueError(f"train.loss must be one of {', '.join(LOSSES)}, got {train['loss']!r}")
    if not (train["grad_clip"] >= 0 and math.isfinite(train["grad_clip"])):
        raise ValueError(f"train.grad_clip must be ≥ 0 (0: off), got {train['grad_clip']}")
    optim["name"] = optim["name"].lower()
    if optim["name"] not in OPTIMIZERS:
        raise ValueError(
            f"optim.name must be one of {', '.join(OPTIMIZERS)}, got {optim['name']!r}"
        )
    if not (optim["lr"] > 0 and math.isfinite(optim["lr"])):
        raise ValueError(f"optim.lr must be a positive number, got {optim['lr']}")
    if optim["weight_decay"] < 0:
        raise ValueError(f"optim.weight_decay must be ≥ 0, got {optim['weight_decay']}")
    if "betas" in optim and (
        len(optim["betas"]) != 2
        or not all(
            isinstance(b, int | float) and not isinstance(b, bool) and 0 <= b < 1
            for b in optim["betas"]
        )
    ):
        raise ValueError(f"optim.betas must be two numbers in [0, 1), got {optim['betas']}")
    if optim["name"] != "sgd" and ("momentum" in optim or "nesterov" in optim):
        raise ValueError("optim.momentum and optim.nesterov apply to optim.name = 'sgd' only")
    if optim["name"] == "sgd" and "betas" in optim:
        raise ValueError("optim.betas applies to adam and adamw, not sgd")
    for key, low in (("eps", 0.0), ("momentum", 0.0), ("density_lr", 0.0)):
        if key in optim and not (optim[key] >= low and math.isfinite(optim[key])):
            raise ValueError(f"optim.{key} must be a finite number ≥ {low:g}, got {optim[key]}")
    if not (schedule["min_lr"] >= 0 and math.isfinite(schedule["min_lr"])):
        raise ValueError(f"schedule.min_lr must be ≥ 0, got {schedule['min_lr']}")
    if not (schedule["gamma"] > 0 and math.isfinite(schedule["gamma"])):
        raise ValueError(f"schedule.gamma must be a positive number, got {schedule['gamma']}")
    schedule["name"] = schedule["name"].lower()
    if schedule["name"] not in SCHEDULES:
        raise ValueError(
            f"schedule.name must be one of {', '.join(SCHEDULES)}, got {schedule['name']!r}"
        )
    if schedule["name"] == "multistep":
        milestones = schedule.get("milestones")
        if not milestones or not all(isinstance(m, int) and m > 0 for m in milestones):
            raise ValueError(
                "schedule.milestones must be a non-empty list of positive step numbers "
                f"for schedule.name = 'multistep', got {milestones!r}"
            )
    return {"train": train, "optim": optim, "schedule": schedule}


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(
            f"train.device {name!r} is not a device name (auto, cpu, cuda:N)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device is {name!r} but CUDA is not available here")
    return device


def step_indices(step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> range:
    """Global sample indices of one rank's share of training step ``step``.

    Example:
        >>> list(step_indices(2, 4)), list(step_indices(2, 4, rank=1, world_size=2))
        ([8, 9, 10, 11], [10, 11])
    """
    if batch_size % world_size:
        raise ValueError(
            f"train.batch_size ({batch_size}) must be divisible by the number of "
            f"processes ({world_size})"
        )
    local = batch_size // world_size
    start = step * batch_size + rank * local
    return range(start, start + local)


class _StepBatches(torch.utils.data.Sampler):
    """Batch sampler over global indices: one rank's share of steps ``start … stop − 1``."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int, world: int):
        self.start, self.stop, self.batch_size = start, stop, batch_size
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield list(step_indices(step, self.batch_size, self.rank, self.world))

    def __len__(self) -> int:
        return self.stop - self.start


# ---------------------------------------------------------------------------------------
# Optimisation pieces
# ---------------------------------------------------------------------------------------


def _optimizer(model: nn.Module, optim: Mapping[str, Any]) -> torch.optim.Optimizer:
    options: dict[str, Any] = {"lr": optim["lr"], "weight_decay": optim["weight_decay"]}
    if "density_lr" in optim:
        params: Any = ndwconv.param_groups(model, density_lr=optim["density_lr"])
    else:
        params = model.parameters()
    if optim["name"] == "sgd":
        options["momentum"] = optim.get("momentum", 0.0)
        options["nesterov"] = optim.get("nesterov", False)
        return torch.optim.SGD(params, **options)
    if "betas" in optim:
        options["betas"] = tuple(float(b) for b in optim["betas"])
    if "eps" in optim:
        options["eps"] = optim["eps"]
    cls = torch.optim.AdamW if optim["name"] == "adamw" else torch.optim.Adam
    return cls(params, **options)


def _scheduler(
    optimizer: torch.optim.Optimizer, schedule: Mapping[str, Any], steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if schedule["name"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=steps, eta_min=schedule["min_lr"]
        )
    if schedule["name"] == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(schedule["milestones"]), gamma=schedule["gamma"]
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _loss(name: str, output: Tensor, target: Tensor) -> Tensor:
    if name == "l1":
        return F.l1_loss(output, target)
    if name == "psnr":
        mse = (output - target).float().pow(2).flatten(1).mean(1)
        return (10 * torch.log10(mse + 1e-10)).mean()
    return F.mse_loss(output, target)


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``.

    The file gets the permissions of a plainly created one (``0o666`` less the umask), not
    the owner-only mode of the temporary file.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path``, atomically."""
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=1) + "\n", "utf-8"))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """Split an optimizer's state dict into tensors (for safetensors) and the rest (JSON)."""
    state = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    other: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                other.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "state": other}


def _optimizer_state(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in meta["state"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def _densities(model: nn.Module) -> dict[str, str]:
    return {name or "<root>": str(layer.density) for name, layer in ndwconv.weighted_layers(model)}


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    meta: Mapping[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    rng: bool = True,
) -> Path:
    """Write ``path`` (``.safetensors``) and its JSON sidecar (``.json``), atomically.

    The safetensors file holds the model's state dict under ``model.``, the optimizer's
    tensors under ``optimizer.`` and the RNG states under ``rng.``; the sidecar holds
    ``meta`` plus the format, the densities of the weighted layers, the optimizer's
    non-tensor state and versions. The sidecar is written last, so a checkpoint whose
    sidecar exists is complete.

    Returns:
        The sidecar's path.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    sidecar: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        **meta,
        "densities": _densities(model),
        "versions": {
            "ndwconv": ndwconv.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    if optimizer is not None:
        opt_tensors, sidecar["optimizer"] = _optimizer_tensors(optimizer)
        tensors.update(opt_tensors)
    if rng:
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = state
    # safetensors refuses tensors that share memory (tied weights): store copies
    seen: set[int] = set()
    for key, value in tensors.items():
        ptr = value.untyped_storage().data_ptr() if value.numel() else -1
        if ptr in seen:
            tensors[key] = value.clone()
        seen.add(ptr)
    atomic_write(
        path, lambda p: save_file(tensors, str(p), metadata={"format": CHECKPOINT_FORMAT})
    )
    sidecar_path = path.with_suffix(".json")
    write_json(sidecar_path, sidecar)
    return sidecar_path


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, sidecar)`` of a checkpoint, given either of its two files.

    Loading runs no code from the files (safetensors and JSON only).

    Raises:
        FileNotFoundError: a file of the pair is missing (e.g. an interrupted write).
        ValueError: the sidecar is not an ndwconv checkpoint.
    """
    from safetensors.torch import load_file

    path = Path(path)
    stem = path.with_suffix("")
    tensors_path, sidecar_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for p in (tensors_path, sidecar_path):
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint file {str(p)!r} does not exist")
    try:
        sidecar = json.loads(sidecar_path.read_text("utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"checkpoint sidecar {str(sidecar_path)!r} is not JSON: {err}") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{str(sidecar_path)!r} is not an ndwconv checkpoint (format {CHECKPOINT_FORMAT})"
        )
    return load_file(str(tensors_path)), sidecar


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete ``step-*.safetensors`` checkpoint in ``out_dir/checkpoints``."""
    folder = Path(out_dir) / "checkpoints"
    best: tuple[int, Path] | None = None
    for sidecar in folder.glob("step-*.json"):
        match = re.fullmatch(r"step-(\d+)\.json", sidecar.name)
        tensors = sidecar.with_suffix(".safetensors")
        if match and tensors.is_file() and (best is None or int(match[1]) > best[0]):
            best = (int(match[1]), tensors)
    return None if best is None else best[1]


def _prune(folder: Path, keep: int) -> None:
    found = sorted(folder.glob("step-*.json"))
    for sidecar in found[:-keep]:
        for p in (sidecar, sidecar.with_suffix(".safetensors")):
            with contextlib.suppress(OSError):
                p.unlink()


def _config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Trainer settings that differ and change the result (defaults filled in on both)."""
    diffs = []
    for section in ("train", "optim", "schedule"):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key) and (section, key) not in _RESUMABLE:
                diffs.append(f"{section}.{key}: {a.get(key)!r} → {b.get(key)!r}")
    return diffs


def _description_differences(
    sidecar: Mapping[str, Any], task: str, description: Mapping[str, Any]
) -> list[str]:
    """What differs in the task's own description (method, model, data, noise, …)."""
    if sidecar.get("task") != task:
        return [f"task: {sidecar.get('task')!r} → {task!r}"]
    old = sidecar.get("description", {})
    return [
        f"{key}: {old.get(key)!r} → {description.get(key)!r}"
        for key in sorted(set(old) | set(description))
        if old.get(key) != description.get(key)
    ]


# ---------------------------------------------------------------------------------------
# Distribution
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # whether fit() initialised the process group

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` is set on any rank (so that every rank stops at one step)."""
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag)], device=device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def mean(self, value: float, device: torch.device) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t) / self.world


def _distribution(device_name: str) -> tuple[_Dist, str]:
    """Join the process group that torchrun describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(), device_name
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (
        device_name == "auto" or device_name.startswith("cuda")
    )
    if use_cuda:
        device_name = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    owned = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        owned = True
    return _Dist(rank, dist.get_world_size(), local_rank, owned), device_name


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------


def _collate(items: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    inputs, targets = zip(*items, strict=True)
    return torch.stack(inputs), torch.stack(targets)


def _step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of the global RNG for one rank's training step (dropout and the like)."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0] >> 1)


def fit(
    task: Task,
    config: Mapping[str, Any],
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    description: str = "training",
) -> TrainResult:
    """Train ``task``'s model as ``config`` says, writing everything under ``out_dir``.

    The result depends only on the configuration (and, through floating-point
    reassociation, on the number of processes and threads): the model is built under
    ``train.seed``, and every training step reseeds the global RNG from the seed, the rank
    and the step, inside a fork of the caller's RNG state, which is left untouched.

    Ctrl-C and SIGTERM stop training at the end of the current step, write a checkpoint
    and then raise ``KeyboardInterrupt`` or ``SystemExit(128 + signal)``.

    Args:
        task: the model, data and evaluation (see ``Task``).
        config: a recipe configuration; its ``train``/``optim``/``schedule`` tables are
            read here (see ``validate`` for keys and defaults).
        out_dir: output folder (created): ``checkpoints/``, ``metrics.jsonl``, ``curves.png``.
        resume: continue from the newest checkpoint in ``out_dir`` (an error if there is
            none, or if its task, data, model or training settings differ).
        progress: show a progress bar (rank 0 only).
        description: the progress bar's label.

    Returns:
        A ``TrainResult``.
    """
    cfg = validate(config)
    train = cfg["train"]
    out = Path(out_dir)
    ctx, device_name = _distribution(train["device"])
    device = resolve_device(device_name)
    if train["threads"]:
        torch.set_num_threads(train["threads"])
    step_indices(0, train["batch_size"], 0, ctx.world)  # checks divisibility before any work
    cuda = device.type == "cuda"
    devices = []
    if cuda:
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(train["seed"])
        model = task.build_model()
        return _fit(task, cfg, config, model, out, ctx, device, resume, progress, description)


def _fit(
    task: Task,
    cfg: dict[str, dict[str, Any]],
    config: Mapping[str, Any],
    model: nn.Module,
    out: Path,
    ctx: _Dist,
    device: torch.device,
    resume: bool,
    progress: bool,
    description: str,
) -> TrainResult:
    train = cfg["train"]
    steps, batch, seed = train["steps"], train["batch_size"], train["seed"]
    ckpt_dir = out / "checkpoints"
    cuda = device.type == "cuda"
    model.to(device)
    # channels-last only for image batches (N, C, H, W): 3-D convolutions refuse it
    channels_last = cuda and train["channels_last"] and task.dataset[0][0].ndim == 3
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if cuda and ctx.world > 1 and train["sync_bn"]:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = _optimizer(model, cfg["optim"])
    scheduler = _scheduler(optimizer, cfg["schedule"], steps)
    run_config = {k: v for k, v in config.items() if k != "source"}
    run_config.update(cfg)
    describe = json.loads(json.dumps(task.describe()))

    start, history, totals = 0, [], {"train_seconds": 0.0, "samples": 0}
    if resume:
        found = latest_checkpoint(out)
        if found is None:
            raise FileNotFoundError(f"resume: no checkpoint in {str(ckpt_dir)!r}")
        tensors, sidecar = load_checkpoint(found)
        diffs = _config_differences(sidecar["config"], run_config)
        diffs += _description_differences(sidecar, task.name, describe)
        if diffs:
            raise ValueError(
                f"resume: the run differs from the checkpoint's ({found.name}) in: "
                + "; ".join(diffs)
            )
        model.load_state_dict(
            {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        )
        optimizer.load_state_dict(_optimizer_state(tensors, sidecar["optimizer"]))
        scheduler.load_state_dict(sidecar["scheduler"])
        start, history = int(sidecar["step"]), list(sidecar.get("history", []))
        totals = {k: sidecar.get("totals", {}).get(k, v) for k, v in totals.items()}
    elif latest_checkpoint(out) is not None:  # every rank sees it: none waits for rank 0
        raise FileExistsError(
            f"{str(out)!r} already holds a run: resume it (--resume, or resume=True) or "
            "choose another output folder"
        )

    if ctx.main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        _truncate_log(out / "metrics.jsonl", start)
    ctx.barrier()
    net: nn.Module = model
    if ctx.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None
        )
    loader = torch.utils.data.DataLoader(
        task.dataset,
        batch_sampler=_StepBatches(start, steps, batch, ctx.rank, ctx.world),
        num_workers=train["workers"],
        collate_fn=_collate,
        pin_memory=cuda,
        generator=torch.Generator().manual_seed(seed),  # not drawn from the global RNG
    )
    amp = cuda and train["amp"] and torch.cuda.is_bf16_supported()

    def checkpoint(step: int) -> Path | None:
        if not ctx.main:
            return None
        meta = {
            "task": task.name,
            "step": step,
            "config": run_config,
            "description": describe,
            "scheduler": _scheduler_state(scheduler),
            "history": history,
            "totals": totals,
        }
        path = ckpt_dir / f"step-{step:08d}.safetensors"
        save_checkpoint(path, model, meta, optimizer)
        _prune(ckpt_dir, train["keep_checkpoints"])
        return path

    def evaluate(step: int, final: bool) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if ctx.main:
            model.eval()
            with torch.no_grad():
                scores = task.evaluate(model, device, final=final)
            metrics = {k: float(v) for k, v in scores.items()}
            model.train()
            history.append({"step": step, **metrics})
            _append_log(out / "metrics.jsonl", {"step": step, "eval": metrics})
        ctx.barrier()
        return metrics

    model.train()
    stop = _StopRequest()
    step, last_saved, consistent = start, (start if resume else -1), True
    bar = tqdm(
        total=steps,
        initial=start,
        desc=description,
        unit="step",
        disable=not (progress and ctx.main),
        dynamic_ncols=True,
    )
    try:
        tic = time.perf_counter()
        window_loss, window_n, window_time, window_seen = 0.0, 0, 0.0, 0
        for inputs, targets in loader:
            torch.manual_seed(_step_seed(seed, ctx.rank, step))
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            if channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                output = net(inputs)
            loss = _loss(train["loss"], output.float(), targets.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if train["grad_clip"] > 0:
                nn.utils.clip_grad_norm_(model.parameters(), train["grad_clip"])
            lr = optimizer.param_groups[0]["lr"]  # the rate this step used
            consistent = False  # the model is one step ahead of the counters until …
            optimizer.step()
            scheduler.step()
            step += 1
            consistent = True  # … here
            window_loss += float(loss.detach())
            window_n += 1
            window_seen += batch
            now = time.perf_counter()
            window_time += now - tic
            totals["train_seconds"] += now - tic
            totals["samples"] += batch
            if train["log_every"] and (step % train["log_every"] == 0 or step == steps):
                rate = window_seen / max(window_time, 1e-9)
                mean_loss = ctx.mean(window_loss / window_n, device)
                record = {"step": step, "loss": mean_loss, "lr": lr, "samples_per_s": rate}
                if ctx.main:
                    _append_log(out / "metrics.jsonl", record)
                bar.set_postfix(loss=f"{mean_loss:.4g}", samples_s=f"{rate:.0f}")
                window_loss, window_n, window_time, window_seen = 0.0, 0, 0.0, 0
            bar.update(1)
            if train["eval_every"] and step % train["eval_every"] == 0 and step < steps:
                evaluate(step, final=False)
            if train["checkpoint_every"] and step % train["checkpoint_every"] == 0:
                checkpoint(step)
                last_saved = step
            if ctx.any(stop.signum is not None, device):
                break
            tic = time.perf_counter()
    finally:
        stop.restore()
        bar.close()
        if step != last_saved and step > start and consistent:
            checkpoint(step)  # on exit: finished, interrupted or failed between steps
            last_saved = step
    if stop.signum is not None:
        if ctx.owned:
            dist.destroy_process_group()
        if stop.signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + stop.signum)
    resumed_finished = bool(history) and history[-1]["step"] == step and step == start
    metrics = dict(history[-1]) if resumed_finished else evaluate(step, final=True)
    metrics.pop("step", None)
    final = None
    if ctx.main:
        final = latest_checkpoint(out)
        # the sidecar of the final checkpoint records the final evaluation too
        final_sidecar = final.with_suffix(".json")
        sidecar = json.loads(final_sidecar.read_text("utf-8"))
        if sidecar.get("history") != history:
            sidecar["history"] = history
            write_json(final_sidecar, sidecar)
        plot_curves(out / "metrics.jsonl", out / "curves.png")
    model.eval()
    if ctx.owned:
        dist.destroy_process_group()
    seconds = totals["train_seconds"]
    return TrainResult(
        model=model,
        out_dir=out,
        step=step,
        metrics=metrics,
        history=history,
        train_seconds=seconds,
        samples_per_second=totals["samples"] / seconds if seconds > 0 else 0.0,
        checkpoint=final,
    )


def _scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    """The JSON-safe part of a scheduler's state.

    The milestones (a ``Counter`` with integer keys, which JSON would turn into strings)
    are rebuilt from the configuration instead.
    """
    return {k: v for k, v in scheduler.state_dict().items() if k != "milestones"}


class _StopRequest:
    """Turn Ctrl-C and SIGTERM into a request to stop after the current training step.

    A second signal of either kind stops at once (``KeyboardInterrupt``); the checkpoint
    on exit is then skipped if the step was half done. Outside the main thread, where
    handlers cannot be installed, signals keep their usual effect.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def _append_log(path: Path, record: Mapping[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Keep only the log records up to ``step`` (a resumed run rewrites what follows)."""
    if not path.exists():
        return
    keep = [json.dumps(r) for r in _log_records(path) if r.get("step", 0) <= step]
    _write_json_lines(path, keep)


def _log_records(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log, skipping a line torn by a killed process."""
    records = []
    for line in path.read_text("utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
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
