"""The engine's trainer: one loop for every task, single process or distributed.

A *task* (``ndwconv.recipes.engine.task.Task``) supplies the model, the training samples,
the loss and the evaluation; the trainer owns everything else, configured by the
``[train]``, ``[optim]`` and ``[schedule]`` tables of a recipe configuration (see
``ndwconv.recipes.engine.config``):

* the optimizer (Adam, AdamW, SGD with optional Nesterov momentum; ``optim.density_lr``
  puts learned densities in a parameter group of their own) and the schedule (constant,
  cosine, multistep), optionally after a linear warm-up (``schedule.warmup_steps``: the
  rate of step ``s < W`` is the schedule's times ``f + (1 − f)·s/W``, ``f`` =
  ``schedule.warmup_factor``, default 0.1);
* lengths in epochs (``train.epochs``, ``schedule.milestone_epochs``,
  ``schedule.warmup_epochs``), converted to steps from the training-set size the task
  reports (``task.train_size``): one epoch is ``ceil(train_size / batch_size)`` steps;
* the loss: ``task.loss(model(inputs), targets)``, targets moved to ``task.target_dtype``;
* hooks at step boundaries (``Hook``): e.g. ``FreezeDensities(k)`` freezes learned
  densities after step ``k`` and rebuilds the optimizer (learn-then-freeze);
* checkpoints every ``checkpoint_every`` steps and when training stops (finished,
  interrupted by Ctrl-C or SIGTERM, or failed), in the format of
  ``ndwconv.recipes.engine.checkpoint``. ``resume=True`` continues from the newest complete
  checkpoint and, on CPU, produces bit-identical weights to a run that was never
  interrupted;
* extending a run: resuming with a larger ``train.steps`` than the checkpoint's run
  continues training up to the new length. The learning-rate schedule is laid out anew
  for the new total, from the resumed step on: the rate at step ``s`` is the one a run
  planned for the new total would have at ``s`` (cosine: ``min_lr + (lr − min_lr)·(1 +
  cos(π·s/steps))/2``; constant and multistep schedules do not depend on the total, so
  they simply continue). A ``train.steps`` below the checkpoint's step is an error;
* one writer per run folder: the folder is locked for the run's lifetime
  (``ndwconv.recipes.engine.lock``), so a second run given the same folder is refused;
* a progress bar (loss, samples/s), ``metrics.jsonl`` (one JSON object per logged step and
  per evaluation) and ``curves.png`` (with matplotlib);
* distribution: under ``torchrun --nproc_per_node N`` it trains with
  ``DistributedDataParallel`` (gloo on CPU, nccl on CUDA). Rank ``r`` of ``N`` takes the
  ``r``-th slice of each global batch, so the samples, and with ``batch_norm`` off the
  result up to floating-point reassociation, are those of a single process with the same
  global batch. Rank 0 alone logs, evaluates and checkpoints. On CUDA,
  ``train.sync_bn = true`` makes batch norm use global batch statistics; on CPU PyTorch has
  no synchronised batch norm, so each rank normalises its own slice;
* on CUDA, bfloat16 autocast (``train.amp``) and channels-last memory
  (``train.channels_last``, for 2-D inputs). Nothing requires CUDA.

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
    ...     name, metrics, target_dtype, spatial_dims = "line", (), torch.float32, None
    ...     dataset = Samples()
    ...     def build_model(self):
    ...         return nn.Linear(1, 1)
    ...     def loss(self, output, target):
    ...         return nn.functional.mse_loss(output, target)
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

import bisect
import contextlib
import dataclasses
import json
import math
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

import ndwconv
from ndwconv.adapters.atomic import remove_stale_temporaries, write_json
from ndwconv.progress import progress_bar

from .checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    model_state,
    optimizer_state,
    prune_checkpoints,
    save_checkpoint,
)
from .config import WARMUP_FACTOR, uses_epochs, validate
from .distributed import Distribution, distribution, resolve_device
from .lock import FolderInUseError, RunLock, check_output_folder
from .log import append_log, plot_curves, truncate_log
from .signals import StopRequest
from .streams import step_seed
from .task import Task

__all__ = [
    "FreezeDensities",
    "Hook",
    "Run",
    "TrainResult",
    "WarmupSchedule",
    "fit",
    "step_indices",
]

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
} | {("train", "steps"), ("train", "epochs")}  # a resumed run may be extended (or shortened)


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
        # learned densities are log-parametrised: decay pulls them toward 1 (neutral)
        params: Any = ndwconv.param_groups(
            model,
            density_lr=optim["density_lr"],
            weight_decay=optim.get("density_weight_decay", 0.0),
        )
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


class WarmupSchedule(torch.optim.lr_scheduler.LambdaLR):
    """A schedule after a linear warm-up, in closed form: the rate of step ``s`` is
    ``lr · warm(s) · main(s)``, ``warm(s) = f + (1 − f)·s/W`` for ``s < W`` and 1 after,
    ``main`` the constant, multistep (milestones counted from step 0, the warm-up
    included) or cosine (over all ``steps``, towards ``min_lr``) schedule."""


def _rate_factor(
    schedule: Mapping[str, Any], steps: int, base: float
) -> Any:
    """``s ↦ rate(s) / base`` of one parameter group (see ``WarmupSchedule``)."""
    warmup = int(schedule.get("warmup_steps", 0))
    start = float(schedule.get("warmup_factor", WARMUP_FACTOR))
    name, gamma, min_lr = schedule["name"], schedule["gamma"], schedule["min_lr"]
    milestones = sorted(schedule.get("milestones") or [])

    def factor(step: int) -> float:
        warm = start + (1 - start) * step / warmup if step < warmup else 1.0
        if name == "cosine" and base > 0:
            done = min(step, steps) / steps
            main = (min_lr + (base - min_lr) * (1 + math.cos(math.pi * done)) / 2) / base
        elif name == "multistep":
            main = gamma ** bisect.bisect_right(milestones, step)
        else:
            main = 1.0
        return warm * main

    return factor


def _scheduler(
    optimizer: torch.optim.Optimizer, schedule: Mapping[str, Any], steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if schedule.get("warmup_steps", 0) > 0:
        bases = [group["lr"] for group in optimizer.param_groups]
        return WarmupSchedule(optimizer, [_rate_factor(schedule, steps, b) for b in bases])
    if schedule["name"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=steps, eta_min=schedule["min_lr"]
        )
    if schedule["name"] == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(schedule["milestones"]), gamma=schedule["gamma"]
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Trainer settings that differ and change the result (defaults filled in on both)."""
    diffs = []
    for section in ("train", "optim", "schedule"):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key) and (section, key) not in _RESUMABLE:
                diffs.append(f"{section}.{key}: {a.get(key)!r} → {b.get(key)!r}")
    return diffs


DESCRIPTION_DEFAULTS: dict[str, Any] = {"split": "test", "init": None}
"""Description keys added after checkpoints were first written, with the value a
description without them means (``split``: the split scored, see ``tuning_split``;
``init``: a change to the initial model, such as a comparison's φ-init, none before)."""


def _description_differences(
    sidecar: Mapping[str, Any], task: str, description: Mapping[str, Any]
) -> list[str]:
    """What differs in the task's own description (method, model, data, noise, …)."""
    if sidecar.get("task") != task:
        return [f"task: {sidecar.get('task')!r} → {task!r}"]
    # a description written before a key existed resumes as that key's default
    old = {**DESCRIPTION_DEFAULTS, **sidecar.get("description", {})}
    description = {**DESCRIPTION_DEFAULTS, **description}
    return [
        f"{key}: {old.get(key)!r} → {description.get(key)!r}"
        for key in sorted(set(old) | set(description))
        if old.get(key) != description.get(key)
    ]


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------


def _collate(items: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    inputs, targets = zip(*items, strict=True)
    return torch.stack(inputs), torch.stack([torch.as_tensor(t) for t in targets])


class Hook:
    """Called by ``fit`` at step boundaries; subclass and override what you need.

    Hooks run on every process. A hook that changes the model's parameters (as
    ``FreezeDensities`` does) must call ``run.rebuild_optimizer()`` and runs in a single
    process only.
    """

    def on_start(self, run: Run) -> None:
        """After the model is built (and moved to its device), before the optimizer is
        built and a checkpoint is loaded; ``run.step`` is the step training starts from
        (non-zero when resuming), so a hook can put the model in the state it had then."""

    def on_step_end(self, run: Run) -> None:
        """After the optimizer and scheduler steps of step ``run.step`` (counted from 1),
        before logging, evaluation and checkpointing."""


@dataclasses.dataclass
class Run:
    """The state a hook sees and may change.

    Attributes:
        task: the task being trained.
        model: the model (not wrapped in DDP).
        step: steps completed.
        steps: the run's length (``train.steps``).
        optimizer, scheduler: the current ones (``None`` in ``on_start``).
        world: the number of processes.
        densities: when resuming, the density of every weighted layer as the checkpoint
            recorded it (``{layer name: spec}``); ``None`` otherwise.
    """

    task: Task
    model: nn.Module
    step: int
    steps: int
    config: dict[str, dict[str, Any]]
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    world: int = 1
    densities: dict[str, str] | None = None

    def rebuild_optimizer(self) -> None:
        """Build the optimizer and scheduler anew for the model's current parameters.

        Parameters that stay keep their optimizer state (e.g. Adam's moments); each
        parameter group keeps its current learning rate, and the schedule continues where
        it was.

        Raises:
            RuntimeError: in a distributed run (DDP cannot change its parameters).
        """
        if self.world > 1:
            raise RuntimeError("a hook cannot rebuild the optimizer in a distributed run")
        if self.optimizer is None or self.scheduler is None:
            return  # on_start: fit builds them afterwards from the model as it is then
        old, old_schedule = self.optimizer, self.scheduler
        optimizer = _optimizer(self.model, self.config["optim"])
        if len(optimizer.param_groups) != len(old.param_groups):
            raise RuntimeError("rebuild_optimizer: the number of parameter groups changed")
        scheduler = _scheduler(optimizer, self.config["schedule"], self.steps)
        scheduler.load_state_dict(_scheduler_state(old_schedule))
        for new_group, old_group in zip(optimizer.param_groups, old.param_groups, strict=True):
            new_group["lr"] = old_group["lr"]
            for p in new_group["params"]:
                if p in old.state:
                    optimizer.state[p] = old.state[p]
        self.optimizer, self.scheduler = optimizer, scheduler


class FreezeDensities(Hook):
    """Learn-then-freeze: after step ``at``, turn learned densities into fixed tables.

    The densities' parameters leave the model and the optimizer (``ndwconv.freeze``, then
    ``Run.rebuild_optimizer``); outputs are unchanged at the moment of freezing. On resume
    from a later step the model is frozen before its checkpoint is loaded.

    Args:
        at: the step after which densities are frozen (≥ 0; 0 freezes before training).
    """

    def __init__(self, at: int):
        if isinstance(at, bool) or not isinstance(at, int) or at < 0:
            raise ValueError(f"FreezeDensities: at must be an int ≥ 0, got {at!r}")
        self.at = at

    def on_start(self, run: Run) -> None:
        if run.step < self.at:
            return
        ndwconv.freeze(run.model, inplace=True)
        # a fixed density is not in the state dict: take the frozen values the
        # checkpoint recorded, not the freshly built model's initial ones
        for name, layer in ndwconv.weighted_layers(run.model):
            recorded = (run.densities or {}).get(name or "<root>")
            if recorded is not None:
                layer.set_density(recorded)

    def on_step_end(self, run: Run) -> None:
        if run.step == self.at:
            ndwconv.freeze(run.model, inplace=True)
            run.rebuild_optimizer()


def fit(
    task: Task,
    config: Mapping[str, Any],
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    description: str = "training",
    hooks: Sequence[Hook] = (),
) -> TrainResult:
    """Train ``task``'s model as ``config`` says, writing everything under ``out_dir``.

    The result depends only on the configuration (and, through floating-point
    reassociation, on the number of processes and threads): the model is built under
    ``train.seed``, and every training step reseeds the global RNG from the seed, the rank
    and the step, inside a fork of the caller's RNG state, which is left untouched.

    Ctrl-C and SIGTERM stop training at the end of the current step, write a checkpoint
    and then raise ``KeyboardInterrupt`` or ``SystemExit(128 + signal)``.

    Args:
        task: the model, data, loss and evaluation (see ``Task``).
        config: a recipe configuration; its ``train``/``optim``/``schedule`` tables are
            read here (see ``ndwconv.recipes.engine.config.validate`` for keys and defaults).
        out_dir: output folder (created): ``checkpoints/``, ``metrics.jsonl``, ``curves.png``.
        resume: continue from the newest checkpoint in ``out_dir`` (an error if there is
            none, or if its task, data, model or training settings differ). A
            ``train.steps`` larger than the checkpoint's run extends it (the schedule is
            laid out for the new total from the resumed step on); one below the
            checkpoint's step is an error.
        progress: show a progress bar (rank 0 only).
        description: the progress bar's label.
        hooks: ``Hook`` objects called at step boundaries, in order.

    Returns:
        A ``TrainResult``.

    Raises:
        FolderInUseError: another live run holds ``out_dir``'s lock.
    """
    train_size = getattr(task, "train_size", None)
    if uses_epochs(config) and train_size is None:
        raise ValueError(
            "the configuration gives lengths in epochs (train.epochs, "
            "schedule.milestone_epochs or schedule.warmup_epochs), but the task "
            f"{getattr(task, 'name', '?')!r} does not report its training-set size "
            "(task.train_size): give them in steps"
        )
    cfg = validate(config, train_size=train_size)
    train = cfg["train"]
    out = check_output_folder(out_dir, "out_dir")
    ctx, device_name = distribution(train["device"])
    device = resolve_device(device_name, "train.device")
    if train["threads"]:
        torch.set_num_threads(train["threads"])
    step_indices(0, train["batch_size"], 0, ctx.world)  # checks divisibility before any work
    cuda = device.type == "cuda"
    devices = []
    if cuda:
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    lock, refused = RunLock(out), None
    if ctx.main:  # rank 0 alone writes, so it alone locks; every rank learns the outcome
        try:
            lock.acquire()
        except FolderInUseError as err:
            refused = err
    if ctx.any(refused is not None, device):
        if refused is not None:
            raise refused
        raise FolderInUseError(f"run folder {str(out)!r} is in use by another run (see rank 0)")
    with contextlib.ExitStack() as stack, torch.random.fork_rng(devices=devices):
        stack.callback(lock.release)
        if ctx.main:  # the folder is ours now: clear what a killed run's writes left behind
            for folder in (out, out / "checkpoints"):
                remove_stale_temporaries(folder)
        torch.manual_seed(train["seed"])
        model = task.build_model()
        return _fit(
            task, cfg, config, model, out, ctx, device, resume, progress, description, hooks
        )


def _fit(
    task: Task,
    cfg: dict[str, dict[str, Any]],
    config: Mapping[str, Any],
    model: nn.Module,
    out: Path,
    ctx: Distribution,
    device: torch.device,
    resume: bool,
    progress: bool,
    description: str,
    hooks: Sequence[Hook],
) -> TrainResult:
    train = cfg["train"]
    steps, batch, seed = train["steps"], train["batch_size"], train["seed"]
    ckpt_dir = out / "checkpoints"
    cuda = device.type == "cuda"
    model.to(device)
    # channels-last only for image batches (N, C, H, W): 3-D convolutions refuse it
    channels_last = cuda and train["channels_last"] and getattr(task, "spatial_dims", None) == 2
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if cuda and ctx.world > 1 and train["sync_bn"]:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    run_config = {k: v for k, v in config.items() if k != "source"}
    run_config.update(cfg)
    describe = json.loads(json.dumps(task.describe()))

    start, history, totals = 0, [], {"train_seconds": 0.0, "samples": 0}
    found = latest_checkpoint(out)  # every rank sees it: none waits for rank 0
    if resume:
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
        start = sidecar["step"]
        if start > steps:
            raise ValueError(
                f"resume: train.steps ({steps}) is below the step of the checkpoint "
                f"{found.name} ({start}); give --steps {start} or more"
            )
        for field in ("config", "scheduler", "optimizer"):
            if field not in sidecar:
                raise ValueError(
                    f"resume: checkpoint sidecar {str(found.with_suffix('.json'))!r} has no "
                    f"field {field!r}: it was not written by the trainer"
                )
    elif found is not None:
        raise FileExistsError(
            f"{str(out)!r} already holds a run: resume it (--resume, or resume=True) or "
            "choose another output folder"
        )
    run = Run(task, model, start, steps, cfg, world=ctx.world)
    if resume:
        run.densities = dict(sidecar.get("densities", {}))
    for hook in hooks:
        hook.on_start(run)
    run.optimizer = _optimizer(model, cfg["optim"])
    run.scheduler = _scheduler(run.optimizer, cfg["schedule"], steps)
    if resume:
        model.load_state_dict(model_state(tensors))
        try:
            run.optimizer.load_state_dict(optimizer_state(tensors, sidecar["optimizer"]))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"resume: checkpoint sidecar {str(found.with_suffix('.json'))!r}: field "
                f"'optimizer' does not fit this run's optimizer ({err})"
            ) from None
        _load_scheduler(run.scheduler, sidecar["scheduler"], start, steps, found)
        history = list(sidecar.get("history", []))
        totals = {k: sidecar.get("totals", {}).get(k, v) for k, v in totals.items()}

    if ctx.main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        truncate_log(out / "metrics.jsonl", start)
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
    target_dtype = getattr(task, "target_dtype", None)

    def checkpoint(step: int) -> Path | None:
        if not ctx.main:
            return None
        assert run.scheduler is not None
        meta = {
            "task": task.name,
            "step": step,
            "config": run_config,
            "description": describe,
            "scheduler": _scheduler_state(run.scheduler),
            "history": history,
            "totals": totals,
        }
        path = ckpt_dir / f"step-{step:08d}.safetensors"
        save_checkpoint(path, model, meta, run.optimizer)
        prune_checkpoints(ckpt_dir, train["keep_checkpoints"])
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
            append_log(out / "metrics.jsonl", {"step": step, "eval": metrics})
        ctx.barrier()
        return metrics

    model.train()
    stop = StopRequest()
    step, last_saved, consistent = start, (start if resume else -1), True
    bar = progress_bar(
        total=steps, initial=start, desc=description, unit="step", enabled=progress and ctx.main
    )
    try:
        tic = time.perf_counter()
        window_loss, window_n, window_time, window_seen = 0.0, 0, 0.0, 0
        for inputs, targets in loader:
            torch.manual_seed(step_seed(seed, ctx.rank, step))
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, dtype=target_dtype, non_blocking=True)
            if channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                output = net(inputs)
            loss = task.loss(output.float(), targets)
            optimizer = run.optimizer
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if train["grad_clip"] > 0:
                nn.utils.clip_grad_norm_(model.parameters(), train["grad_clip"])
            lr = optimizer.param_groups[0]["lr"]  # the rate this step used
            consistent = False  # the model is one step ahead of the counters until …
            optimizer.step()
            run.scheduler.step()
            step += 1
            run.step = step
            for hook in hooks:
                hook.on_step_end(run)
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
                    append_log(out / "metrics.jsonl", record)
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
        # every rank leaves together: a rank that tears the group down while the main one
        # still writes its files can abort in gloo's teardown (SIGABRT, seen rarely on CPU)
        ctx.barrier()
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


def _load_scheduler(
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    saved: Mapping[str, Any],
    step: int,
    steps: int,
    found: Path,
) -> None:
    """Load a checkpoint's scheduler state, checked, laid out for ``steps`` in total.

    Raises:
        ValueError: a key this scheduler does not have, or a state that contradicts the
            checkpoint's step (each named).
    """
    where = f"resume: checkpoint sidecar {str(found.with_suffix('.json'))!r}"
    expected = _scheduler_state(scheduler)
    unknown = sorted(set(saved) - set(expected))
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(f'scheduler.{k}' for k in unknown)} for a "
            f"{type(scheduler).__name__} (known: {', '.join(sorted(expected))})"
        )
    missing = sorted({"last_epoch", "base_lrs", "_last_lr"} - set(saved))
    if missing:
        raise ValueError(f"{where}: field scheduler.{missing[0]} is missing")
    if saved["last_epoch"] != step:
        raise ValueError(
            f"{where}: field scheduler.last_epoch ({saved['last_epoch']!r}) is not the "
            f"checkpoint's step ({step})"
        )
    groups = len(scheduler.optimizer.param_groups)
    for key in ("base_lrs", "_last_lr"):
        values = saved[key]
        if not (
            isinstance(values, list)
            and len(values) == groups
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        ):
            raise ValueError(f"{where}: field scheduler.{key} must be {groups} number(s)")
    state = dict(saved)
    if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        state["T_max"] = steps  # laid out for the run's (possibly new) length
    scheduler.load_state_dict(state)
    if isinstance(scheduler, WarmupSchedule):  # closed form: the rate of this step
        rates = [
            base * factor(step)
            for base, factor in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)
        ]
        for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate
        scheduler._last_lr = rates  # type: ignore[attr-defined]
    if (
        isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
        and saved.get("T_max") != steps
    ):
        eta_min = scheduler.eta_min
        rates = [
            eta_min + (base - eta_min) * (1 + math.cos(math.pi * step / steps)) / 2
            for base in scheduler.base_lrs
        ]
        for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate
        scheduler._last_lr = rates  # type: ignore[attr-defined]


def _scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    """The JSON-safe part of a scheduler's state.

    The milestones (a ``Counter`` with integer keys, which JSON would turn into strings)
    are rebuilt from the configuration instead.
    """
    return {k: v for k, v in scheduler.state_dict().items() if k != "milestones"}
