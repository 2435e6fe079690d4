"""``tune``: find a density for any task's model and data, on a validation split.

Every method scores densities by training the task's weighted model on the task's
*validation* split (``tune.split = "validation"``: a part held out of the training data;
the test split is never read) from the same initial weights, data order and noise
(``tune.seed``) for ``tune.steps`` steps, and reading the task's primary metric:

* ``direct-l`` and ``line`` search the profile values (``SearchSpace``) within their
  bounds, one short training per evaluated point, ``budget`` points at most;
* ``learn-freeze`` trains once with ``Learned`` densities (their own parameter group:
  rate ``tune.density_lr``, default 1e-2, decay ``tune.density_decay``, default 0 — a
  decay pulls the log-parametrised densities toward 1, the plain convolution), freezes
  them after ``tune.freeze_at`` steps (default: half of the steps) and goes on training
  the weights; the frozen per-layer tables are the result.

With ``tune.repeats = R`` each point is trained ``R`` times (seeds ``tune.seed`` …
``tune.seed + R − 1``: other initial weights, data order and noise) and scored by the
mean, which makes the objective less a property of one seed's luck. Each evaluation is a
folder ``runs/evals/NNNN`` (its density file, and ``seed-S/metrics.jsonl`` per repeat;
checkpoints are removed once it is scored) and a line of
``runs/evaluations.jsonl``; a search started again with ``resume`` replays the logged
evaluations without training (the methods are deterministic) and goes on, also to a larger
budget. The result is a density file (``ndwconv.density.file``) that ``ndwconv.convert``,
``Table.load`` and every recipe's ``--density`` take, and ``runs/search.png``.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import math
import multiprocessing
import os
import platform
import shutil
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

import ndwconv
from ndwconv.adapters.atomic import write_json
from ndwconv.density import DensityFile, Table, save_densities

from ..engine.config import check_section, validate
from ..engine.distributed import distribution, shard
from ..engine.lock import RunLock, check_output_folder
from ..engine.trainer import FreezeDensities, TrainResult, fit
from .search import EvaluationLog, direct_l, line_search
from .space import SHARES, SearchSpace

__all__ = ["METHODS", "TuneResult", "evaluation_config", "settings", "tune"]

METHODS = ("direct-l", "line", "learn-freeze")
"""The search methods of ``ndwconv tune``."""

DEFAULTS: dict[str, Any] = {
    "method": "direct-l",
    "budget": 20,
    "seed": 0,
    "repeats": 1,
    "share": "kernel-size",
    "density_lr": 1e-2,
    "density_decay": 0.0,
}
"""Defaults of the search's ``[tune]`` keys (``steps`` defaults to ``train.steps``,
``freeze_at`` to half of the steps, ``bounds`` to ``space.REFERENCE_BOUNDS``)."""


def settings(config: Mapping[str, Any], **given: Any) -> dict[str, Any]:
    """The search's settings: ``[tune]`` of ``config``, then ``given`` (command-line
    flags; ``None`` values are ignored), with defaults, checked.

    Raises:
        ValueError: an unknown method or share, or a number out of range (named).
    """
    from ..engine.config import TUNE_SCHEMA

    table = check_section(config, "tune", TUNE_SCHEMA)
    found = {**DEFAULTS, **table, **{k: v for k, v in given.items() if v is not None}}
    if found["method"] not in METHODS:
        raise ValueError(
            f"tune.method must be one of {', '.join(METHODS)}, got {found['method']!r}"
        )
    if found["share"] not in SHARES:
        raise ValueError(f"tune.share must be one of {', '.join(SHARES)}, got {found['share']!r}")
    for key in ("budget", "steps", "freeze_at", "seed", "repeats"):
        value = found.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"tune.{key} must be an integer, got {value!r}")
    if found["budget"] < 1:
        raise ValueError(f"tune.budget must be ≥ 1, got {found['budget']}")
    if found["repeats"] < 1:
        raise ValueError(f"tune.repeats must be ≥ 1, got {found['repeats']}")
    if found["repeats"] > 1 and found["method"] == "learn-freeze":
        raise ValueError("tune.repeats applies to direct-l and line; learn-freeze trains once")
    if found.get("steps") is not None and found["steps"] < 1:
        raise ValueError(f"tune.steps must be ≥ 1, got {found['steps']}")
    if found["seed"] < 0:
        raise ValueError(f"tune.seed must be ≥ 0, got {found['seed']}")
    if not (found["density_lr"] > 0 and math.isfinite(found["density_lr"])):
        raise ValueError(f"tune.density_lr must be > 0, got {found['density_lr']}")
    if not (found["density_decay"] >= 0 and math.isfinite(found["density_decay"])):
        raise ValueError(f"tune.density_decay must be ≥ 0, got {found['density_decay']}")
    return found


def evaluation_config(
    config: Mapping[str, Any], density: str, seed: int, steps: int | None
) -> dict[str, Any]:
    """The configuration of one evaluation: ``config`` scored on the validation split,
    trained with ``train.seed = seed`` (``steps`` steps, when given) and
    ``weighted.density = density``; no evaluation during training.

    Example:
        >>> cfg = evaluation_config({"train": {"epochs": 3}}, "table:0.8", 0, 100)
        >>> cfg["train"], cfg["tune"]
        ({'seed': 0, 'eval_every': 0, 'steps': 100}, {'split': 'validation'})
        >>> cfg["weighted"]
        {'density': 'table:0.8'}
    """
    cfg = copy.deepcopy(dict(config))
    train = cfg.setdefault("train", {})
    for key in ("eval_every_epochs", "checkpoint_every_epochs", "checkpoint_every"):
        train.pop(key, None)
    train["seed"] = seed
    train["eval_every"] = 0
    if steps is not None:
        train.pop("epochs", None)
        train["steps"] = steps
    tune = {k: v for k, v in cfg.get("tune", {}).items() if k in ("holdout", "holdout_seed")}
    cfg["tune"] = {"split": "validation", **tune}
    cfg["weighted"] = {**cfg.get("weighted", {}), "density": density}
    cfg.pop("compare", None)
    return cfg


@dataclasses.dataclass
class TuneResult:
    """What ``tune`` returns.

    Attributes:
        densities: the density file written (with its ``meta``).
        metric: the primary metric's name, and ``value`` its best validation score.
        evaluations: the log's records (one per evaluated point).
        train_steps: training steps spent over all evaluations.
        train_seconds: their wall time.
        figure: the search's plot (``None`` without matplotlib).
        at_bounds: the searched values (``direct-l``, ``line``) whose best lies on the
            edge of its range (``at_bound``): ``{"label", "value", "bound": "lower" |
            "upper"}`` each; the optimum may lie outside the range (widen ``tune.bounds``).
    """

    densities: DensityFile
    metric: str
    value: float
    evaluations: list[dict[str, Any]]
    train_steps: int
    train_seconds: float
    figure: Path | None

    @property
    def at_bounds(self) -> list[dict[str, Any]]:
        """``meta["at_bounds"]`` of the density file written."""
        return list(self.densities.meta.get("at_bounds", []))


EDGE = 0.025
"""A best value within this fraction of its range from a bound is reported as on it."""


def at_bound(
    point: Sequence[float],
    lower: Sequence[float],
    upper: Sequence[float],
    labels: Sequence[str],
    edge: float = EDGE,
) -> list[dict[str, Any]]:
    """The coordinates of ``point`` within ``edge`` × (upper − lower) of a bound.

    >>> at_bound([0.51, 1.0], [0.5, 0.5], [1.5, 1.5], ["k3[0]", "k5[1]"])
    [{'label': 'k3[0]', 'value': 0.51, 'bound': 'lower'}]
    """
    found = []
    for label, x, lo, hi in zip(labels, point, lower, upper, strict=True):
        margin = edge * (hi - lo)
        if x <= lo + margin:
            found.append({"label": label, "value": float(x), "bound": "lower"})
        elif x >= hi - margin:
            found.append({"label": label, "value": float(x), "bound": "upper"})
    return found


def _primary(entry: Any, config: Mapping[str, Any]) -> Any:
    metrics = entry.metrics_of(config) if hasattr(entry, "metrics_of") else entry.metrics
    return metrics[0]


def _score(metrics: Mapping[str, float], metric: Any) -> float:
    value = float(metrics[metric.name])
    return -value if metric.higher_is_better else value


def _fit_evaluation(
    entry: Any,
    cfg: dict[str, Any],
    data: Sequence[str] | None,
    run_dir: Path,
    progress: bool,
    description: str,
    freeze_at: int | None,
) -> TrainResult:
    task = entry.make(cfg, "weighted", data)
    hooks = [FreezeDensities(freeze_at)] if freeze_at is not None else []
    return fit(task, cfg, run_dir, progress=progress, description=description, hooks=hooks)


def _outcome(result: TrainResult) -> dict[str, Any]:
    """What the log needs of one evaluation's training."""
    return {"metrics": dict(result.metrics), "steps": result.step, "seconds": result.train_seconds}


def _train_one(
    entry: Any,
    cfg: dict[str, Any],
    data: Sequence[str] | None,
    run_dir: str,
    threads: int,
) -> dict[str, Any]:
    """One evaluation in a worker process: train and score (a module-level function so
    that a spawned process can run it; ``entry`` is pickled, which a ``TaskEntry`` made of
    module-level functions, as the built-in ones are, allows)."""
    torch.set_num_threads(threads)
    return _outcome(_fit_evaluation(entry, cfg, data, Path(run_dir), False, "evaluation", None))


class _Group:
    """The processes of a search: one, or the ranks of a ``torchrun`` group. Rank 0
    searches, logs and writes; every other rank follows it, training each evaluation
    together with it (one data-parallel ``fit`` per evaluation, in a process group joined
    once for the whole search)."""

    def __init__(self, device_name: str):
        self.ctx, _ = distribution(device_name)

    def _broadcast(self, message: Any) -> Any:
        box = [message]
        device = None
        if dist.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        dist.broadcast_object_list(box, src=0, device=device)
        return box[0]

    def fit(
        self,
        entry: Any,
        cfg: dict[str, Any],
        data: Sequence[str] | None,
        run_dir: Path,
        progress: bool = False,
        description: str = "evaluation",
        freeze_at: int | None = None,
    ) -> TrainResult:
        """Train one evaluation (on rank 0, which tells the other ranks to join in)."""
        if self.ctx.world > 1:
            self._broadcast(("fit", cfg, str(run_dir), description))  # learn-freeze: 1 rank
        return _fit_evaluation(entry, cfg, data, run_dir, progress, description, freeze_at)

    def follow(self, entry: Any, data: Sequence[str] | None) -> TuneResult:
        """A rank other than 0: train what rank 0 asks, until it sends the result."""
        while True:
            message = self._broadcast(None)
            if message[0] == "done":
                self.close()
                return message[1]
            _, cfg, run_dir, description = message
            _fit_evaluation(entry, cfg, data, Path(run_dir), False, description, None)

    def finish(self, result: TuneResult) -> TuneResult:
        """Rank 0: send the result to the other ranks, which then stop following."""
        if self.ctx.world > 1:
            self._broadcast(("done", result))
        self.close()
        return result

    def close(self) -> None:
        if self.ctx.owned:
            self.ctx.barrier()
            dist.destroy_process_group()


class _Evaluator:
    """Scores points of a space by training, with the log as cache."""

    def __init__(
        self,
        entry: Any,
        config: Mapping[str, Any],
        data: Sequence[str] | None,
        runs: Path,
        space: SearchSpace,
        found: Mapping[str, Any],
        log: EvaluationLog,
        workers: int,
        progress: Any,
        group: _Group,
    ):
        self.entry, self.config, self.data, self.runs = entry, config, data, runs
        self.space, self.found, self.log, self.workers = space, found, log, workers
        self.group = group
        self.metric = _primary(entry, config)
        self.progress = progress
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None

    def close(self) -> None:
        """Stop the worker processes, if any were started."""
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None

    def _prepare(
        self, point: Sequence[float], ahead: int = 0
    ) -> tuple[Path, list[tuple[dict[str, Any], Path]]]:
        """The fresh folder of the evaluation ``ahead`` places after the next one the log
        will record, and one ``(configuration, run folder)`` per repeat (seeds
        ``tune.seed``, ``tune.seed + 1``, …)."""
        index = len(self.log) + ahead
        run_dir = self.runs / "evals" / f"{index:04d}"
        if run_dir.exists():  # an evaluation a kill cut short: start it again
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        path = run_dir / "densities.json"
        densities = self.space.densities(point)
        save_densities(path, densities.shared, densities.layers)
        seeds = range(self.found["seed"], self.found["seed"] + self.found["repeats"])
        steps = self.found.get("steps")
        jobs = [
            (evaluation_config(self.config, str(path), seed, steps), run_dir / f"seed-{seed}")
            for seed in seeds
        ]
        return run_dir, jobs

    def _record(
        self, point: Sequence[float], outcomes: Sequence[Mapping[str, Any]], run_dir: Path
    ) -> float:
        """Log one evaluation: the mean over its repeats of each metric and of the
        objective, the repeats' own metrics, and their steps and time summed."""
        for seed_dir in run_dir.iterdir():
            shutil.rmtree(seed_dir / "checkpoints", ignore_errors=True)
        value = statistics.fmean(_score(o["metrics"], self.metric) for o in outcomes)
        names = outcomes[0]["metrics"]
        self.log.add(
            point,
            value,
            metrics={k: statistics.fmean(float(o["metrics"][k]) for o in outcomes) for k in names},
            per_seed=[o["metrics"] for o in outcomes] if len(outcomes) > 1 else None,
            steps=sum(int(o["steps"]) for o in outcomes),
            seconds=sum(float(o["seconds"]) for o in outcomes),
            run=str(run_dir.relative_to(self.runs)),
        )
        if self.progress is not None:
            self.progress.update(1)
        return value

    def __call__(self, point: Sequence[float]) -> float:
        known = self.log.get(point)
        if known is not None:
            return float(known["objective"])
        run_dir, jobs = self._prepare(point)
        outcomes = [_outcome(self.group.fit(self.entry, cfg, self.data, d)) for cfg, d in jobs]
        return self._record(point, outcomes, run_dir)

    def many(self, points: list[list[float]]) -> list[float]:
        """Score several points, their repeats in ``workers`` processes at once."""
        if self.workers <= 1:
            return [self(p) for p in points]
        todo = [p for p in points if self.log.get(p) is None]
        prepared = [(p, *self._prepare(p, ahead)) for ahead, p in enumerate(todo)]
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        if self.pool is None:  # one pool for the whole search: processes start once
            context = multiprocessing.get_context("spawn")
            self.pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context)
        futures = [
            [
                self.pool.submit(_train_one, self.entry, cfg, self.data, str(seed_dir), threads)
                for cfg, seed_dir in jobs
            ]
            for _, _, jobs in prepared
        ]
        for (p, run_dir, _), pending in zip(prepared, futures, strict=True):
            self._record(p, [f.result() for f in pending], run_dir)
        return [float(self.log.get(p)["objective"]) for p in points]  # type: ignore[index]


def _learn_freeze(
    entry: Any,
    config: Mapping[str, Any],
    data: Sequence[str] | None,
    runs: Path,
    found: Mapping[str, Any],
    log: EvaluationLog,
    progress: bool,
    group: _Group,
) -> tuple[DensityFile, float]:
    """Train once with learned densities, freeze them, go on: the frozen tables (the
    training shows its own progress bar)."""
    start = config.get("weighted", {}).get("density", "default")
    if ndwconv.density.is_density_file(start) or str(start).startswith("learned"):
        raise ValueError(
            f"learn-freeze starts from the configuration's density spec; got {start!r} "
            "(give a fixed density such as default or table:0.7)"
        )
    steps = found.get("steps")
    cfg = evaluation_config(config, f"learned:{start}", found["seed"], steps)
    total = validate(cfg)["train"]["steps"]
    at = found.get("freeze_at", (total or 2) // 2)
    if total is not None and not 0 <= at <= total:
        raise ValueError(f"tune.freeze_at must be in [0, {total}], got {at}")
    cfg["optim"] = {
        **cfg.get("optim", {}),
        "density_lr": found["density_lr"],
        "density_weight_decay": found["density_decay"],
    }
    metric = _primary(entry, config)
    record = next(iter(log), None)
    if record is None:
        run_dir = runs / "evals" / "0000"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        result = group.fit(entry, cfg, data, run_dir, progress, "learn-freeze", freeze_at=at)
        layers = {}
        for name, layer in ndwconv.weighted_layers(result.model):
            if not isinstance(layer.density, Table):
                raise RuntimeError(f"layer {name!r} was not frozen (density {layer.density})")
            layers[name] = layer.density.to_spec()
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        flat = [v for spec in layers.values() for v in _table_values(spec)]
        record = log.add(
            flat,
            _score(result.metrics, metric),
            metrics=dict(result.metrics),
            steps=result.step,
            seconds=result.train_seconds,
            run=str(run_dir.relative_to(runs)),
            layers=layers,
            initial=str(start),
            freeze_at=at,
        )
    densities = DensityFile(layers={n: ndwconv.as_density(s) for n, s in record["layers"].items()})
    return densities, float(record["objective"])


def _table_values(spec: Mapping[str, Any]) -> list[float]:
    params = {k: v for k, v in spec.items() if k != "family"}
    ((_, value),) = params.items()
    if isinstance(value, Mapping):
        return [float(v) for vals in value.values() for v in vals]
    if value and isinstance(value[0], list):
        return [float(v) for vals in value for v in vals]
    return [float(v) for v in value]


def tune(
    entry: Any,
    config: Mapping[str, Any],
    output: str | Path,
    runs: str | Path | None = None,
    data: Sequence[str] | None = None,
    *,
    method: str | None = None,
    budget: int | None = None,
    steps: int | None = None,
    share: str | None = None,
    repeats: int | None = None,
    workers: int = 1,
    resume: bool = False,
    progress: bool = True,
) -> TuneResult:
    """Search a density for ``entry``'s model on ``config``'s validation split.

    Args:
        entry: the task's ``TaskEntry``.
        config: a configuration of that task (its ``[tune]`` table holds the defaults of
            the arguments below, ``tune.seed``, ``tune.bounds``, ``tune.freeze_at``,
            ``tune.density_lr`` and ``tune.density_decay``).
        output: the density file to write (``.json``).
        runs: the search's folder (default: ``output`` without suffix + ``.search``):
            ``evaluations.jsonl``, ``evals/``, ``search.png``, ``search.json``.
        data: what ``--data`` gives the task.
        method, budget, steps, share, repeats: override ``tune.method`` (``direct-l``,
            ``line``, ``learn-freeze``), ``tune.budget`` (evaluations), ``tune.steps``
            (training steps per evaluation), ``tune.share`` (``kernel-size`` or
            ``layer``), ``tune.repeats`` (trainings per evaluation, scored by the mean).
        workers: evaluations run at once in separate processes (``line`` evaluates both
            neighbours of a value together; ``direct-l`` asks for one point at a time).
            The task's entry is pickled to them: its functions must be module-level.
        resume: continue the search logged in ``runs`` (without it, a ``runs`` holding a
            log is an error).
        progress: a progress bar over evaluations.

    Returns:
        A ``TuneResult``.

    Raises:
        ValueError: bad settings, or a configuration whose task cannot hold out a
            validation split.
        FileExistsError: ``runs`` holds a search and ``resume`` is false.
    """
    output = Path(output)
    if output.suffix.lower() != ".json":
        raise ValueError(f"the density file must end in .json, got {str(output)!r}")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"folder {str(output.parent)!r} of the density file does not exist")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be an integer ≥ 1, got {workers!r}")
    found = settings(
        config, method=method, budget=budget, steps=steps, share=share, repeats=repeats
    )
    entry.check_config(evaluation_config(config, "default", found["seed"], found.get("steps")))
    world = shard()[1]
    if world > 1 and workers > 1:
        raise ValueError(
            f"workers={workers} with torchrun: under torchrun the ranks train each evaluation "
            "together; give workers=1 (--workers 1)"
        )
    if world > 1 and found["method"] == "learn-freeze":
        raise ValueError(
            "method learn-freeze cannot run under torchrun: freezing removes the densities' "
            "parameters mid-training, which a data-parallel model cannot; run it in one process"
        )
    group = _Group(validate(config)["train"]["device"])
    if not group.ctx.main:
        return group.follow(entry, data)
    runs = Path(runs) if runs is not None else output.with_suffix(".search")
    runs = check_output_folder(runs, "runs")
    log_path = runs / "evaluations.jsonl"
    if log_path.exists() and not resume:
        raise FileExistsError(
            f"{str(runs)!r} holds a search already: pass resume=True (--resume) to continue it, "
            "or choose another folder"
        )
    with torch.random.fork_rng():
        model = entry.build_model(config, "weighted")
    space = SearchSpace.of(model, found["share"], found.get("bounds"))
    fingerprint = {
        "method": found["method"],
        "task": entry.name,
        "labels": space.labels,
        "lower": space.lower,
        "upper": space.upper,
        "seed": found["seed"],
        "repeats": found["repeats"],
        "steps": found.get("steps"),
        "freeze_at": found.get("freeze_at"),
        "density_lr": found["density_lr"] if found["method"] == "learn-freeze" else None,
        "density_decay": found["density_decay"] if found["method"] == "learn-freeze" else None,
        "config": {
            k: v
            for k, v in config.items()
            if k not in ("source", "name", "description", "compare", "tune")
        },
        "holdout": {k: v for k, v in config.get("tune", {}).items() if k.startswith("holdout")},
        "data": None if data is None else [str(d) for d in data],
    }
    started = time.perf_counter()
    metric = _primary(entry, config)
    with RunLock(runs):
        log = EvaluationLog(log_path, fingerprint)
        bar = _bar(found, progress and found["method"] != "learn-freeze", len(log))
        edges: list[dict[str, Any]] = []
        try:
            if found["method"] == "learn-freeze":
                densities, value = _learn_freeze(
                    entry, config, data, runs, found, log, progress, group
                )
            else:
                evaluator = _Evaluator(
                    entry, config, data, runs, space, found, log, workers, bar, group
                )
                try:
                    if found["method"] == "direct-l":
                        best = direct_l(evaluator, space.lower, space.upper, found["budget"])
                    else:
                        best = line_search(
                            evaluator,
                            space.lower,
                            space.upper,
                            found["budget"],
                            start=space.neutral(),
                            evaluate_many=evaluator.many,
                        )
                finally:
                    evaluator.close()
                densities, value = space.densities(best.point), best.value
                edges = at_bound(best.point, space.lower, space.upper, space.labels)
        finally:
            if bar is not None:
                bar.close()
        records = list(log)
        score = -value if metric.higher_is_better else value
        meta = {
            "method": found["method"],
            "task": entry.name,
            "config": config.get("name"),
            "metric": metric.name,
            "split": "validation",
            "validation_score": score,
            "share": found["share"],
            "labels": space.labels if found["method"] != "learn-freeze" else None,
            "bounds": [list(b) for b in zip(space.lower, space.upper, strict=True)],
            "budget": found["budget"] if found["method"] != "learn-freeze" else 1,
            "evaluations": len(records),
            "steps_per_evaluation": records[0]["steps"] if records else None,
            "train_steps": sum(int(r["steps"]) for r in records),
            "train_seconds": sum(float(r["seconds"]) for r in records),
            "seed": found["seed"],
            "repeats": found["repeats"],
            "holdout": fingerprint["holdout"],
            "at_bounds": edges,
            "wall_seconds_this_invocation": time.perf_counter() - started,
            "date": time.strftime("%Y-%m-%d"),
            "machine": platform.platform(),
            "versions": {"ndwconv": ndwconv.__version__, "torch": torch.__version__},
        }
        if found["method"] == "learn-freeze":
            meta.update(
                freeze_at=records[0]["freeze_at"],
                initial=records[0]["initial"],
                density_lr=found["density_lr"],
                density_decay=found["density_decay"],
            )
        written = save_densities(output, densities.shared, densities.layers, meta)
        write_json(runs / "search.json", written.to_dict())
        figure = plot_search(records, written, metric, runs / "search.png")
    result = TuneResult(
        densities=written,
        metric=metric.name,
        value=score,
        evaluations=records,
        train_steps=meta["train_steps"],
        train_seconds=meta["train_seconds"],
        figure=figure,
    )
    return group.finish(result)


def _bar(found: Mapping[str, Any], progress: bool, done: int) -> Any:
    if not progress:
        return None
    from ndwconv.progress import progress_bar

    total = 1 if found["method"] == "learn-freeze" else found["budget"]
    return progress_bar(total=total, initial=min(done, total), desc=f"tune {found['method']}")


def _half_profiles(table: Any) -> list[tuple[str, list[float]]]:
    """``(label, outer values)`` of each profile a table holds (by size, per axis, or one
    for every axis)."""
    if getattr(table, "by_size", None):
        return [(f"k={k}", list(v)) for k, v in table.by_size.items()]
    if getattr(table, "per_axis", None):
        return [(f"axis {i}", list(v)) for i, v in enumerate(table.per_axis) if v]
    values = getattr(table, "values", None)
    return [(f"k={2 * len(values) + 1}", list(values))] if values else []


def plot_search(
    records: Sequence[Mapping[str, Any]], densities: DensityFile, metric: Any, png: Path
) -> Path | None:
    """The search's figure: the metric per evaluation with the best so far, and the
    profiles found (the shared one per kernel size, or each layer's)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    from ndwconv.adapters.atomic import atomic_write

    sign = -1.0 if metric.higher_is_better else 1.0
    fig = Figure(figsize=(10, 4))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    scores = [sign * float(r["objective"]) for r in records]
    best, running = [], None
    for s in scores:
        better = running is None or (s > running if metric.higher_is_better else s < running)
        running = s if better else running
        best.append(running)
    xs = range(1, len(scores) + 1)
    left.plot(xs, scores, "o", ms=4, alpha=0.7, label="evaluation")
    left.step(xs, best, where="post", color="tab:red", label="best so far")
    left.set(xlabel="evaluation", ylabel=f"validation {metric.label}", title="search")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    tables = dict(densities.layers)
    if densities.shared is not None:
        tables = {"shared": densities.shared, **tables}
    for name, table in tables.items():
        for what, half in _half_profiles(table):
            profile = [*half, 1.0, *reversed(half)]
            offsets = [i - len(half) for i in range(len(profile))]
            label = f"{name}, {what}" if len(tables) <= 8 else None
            right.plot(offsets, profile, marker="o", ms=3, alpha=0.8, label=label)
    right.axhline(1.0, color="grey", lw=0.8, ls="--")
    right.set(xlabel="tap offset from the centre", ylabel="density", title="profiles found")
    right.grid(alpha=0.3)
    if len(tables) <= 8:
        right.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(png, lambda p: fig.savefig(p, dpi=100, format="png"))
    return png
