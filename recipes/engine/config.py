"""Recipe configurations: TOML files with command-line overrides.

A configuration is a TOML document with one table per concern. Its top-level
``task = "…"`` names the registered task it is for (``ndwconv.recipes.tasks``). Every
recipe shares the ``[optim]``, ``[schedule]`` and ``[train]`` tables read by the trainer
(``ndwconv.recipes.engine.trainer``) and the ``[weighted]`` table (``density``); a task
adds its own (denoising: ``[model]``, ``[data]``, ``[noise]``, ``[eval]``). The built-in
configurations ship with the package (``ndwconv/recipes/configs/*.toml``) and are named
without the suffix (``quick``, ``bsd``, ``div2k-paper``); any other argument is read as
a path to a TOML file.

Overrides use the dotted ``section.key=value`` form, with ``value`` in TOML syntax (a
bare word that is not valid TOML is taken as a string)::

    --set train.steps=2000 --set optim.lr=5e-4 --set noise.sigma='"0-55"'

Every configuration is checked against its task's schema before anything runs: an
unknown section or key, or a value of the wrong type, is an error that names it.

Example:
    >>> cfg = load_config("quick", ["train.steps=5", "model.width=8"])
    >>> cfg["train"]["steps"], cfg["model"]["width"]
    (5, 8)
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "BUILTIN",
    "ENGINE_SECTIONS",
    "apply_overrides",
    "builtin_configs",
    "check_section",
    "check_sections",
    "load_config",
    "parse_override",
    "steps_per_epoch",
    "tuning_split",
    "uses_epochs",
    "validate",
]

BUILTIN = "ndwconv.recipes.configs"
"""Package holding the built-in ``*.toml`` configurations."""


def _configs_folder() -> Any:
    return resources.files(BUILTIN)


def builtin_configs(task: str | None = None) -> dict[str, str]:
    """The built-in configurations: ``{name: first line of its description}``.

    Args:
        task: only the configurations of this task (their ``task`` key); all by default.
    """
    found = {}
    for entry in _configs_folder().iterdir():
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text(encoding="utf-8"))
            if task is not None and data.get("task") != task:
                continue
            found[entry.name[: -len(".toml")]] = str(data.get("description", "")).split("\n")[0]
    return dict(sorted(found.items()))


def _read(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    text_name = str(name_or_path)
    path = Path(text_name)
    builtin = _configs_folder() / f"{path.name}.toml"
    is_builtin = path.name == text_name and builtin.is_file()
    if path.is_dir() and (path.suffix == ".toml" or not is_builtin):
        raise IsADirectoryError(f"config {text_name!r} is a directory, not a TOML file")
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"config file {text_name!r} does not exist")
        source = str(path.resolve())
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(
                f"config file {text_name!r} is not a text file (TOML is UTF-8 text)"
            ) from None
    else:
        entry = builtin
        if not entry.is_file():
            known = ", ".join(builtin_configs())
            raise ValueError(
                f"config {text_name!r} is neither a built-in configuration ({known}) "
                "nor an existing .toml file"
            )
        source = f"builtin:{text_name}"
        text = entry.read_text(encoding="utf-8")
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config {text_name!r} is not valid TOML: {err}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"section.key=value"`` into its key path and its value (TOML syntax).

    Example:
        >>> parse_override("optim.betas=[0.9, 0.99]")
        (['optim', 'betas'], [0.9, 0.99])
        >>> parse_override("weighted.density=table:0.7")
        (['weighted', 'density'], 'table:0.7')
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(f"override {text!r} must look like section.key=value")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a string
    return key.split("."), value


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``config`` with each ``section.key=value`` override applied."""
    result = copy.deepcopy(dict(config))
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"override {text!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return result


def load_config(name_or_path: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a configuration (built-in name or TOML path) and apply overrides.

    The result records where it came from under the ``"source"`` key. It is not validated
    here: the trainer validates its tables (``validate`` below),
    each task its own.
    """
    data, source = _read(name_or_path)
    data = apply_overrides(data, overrides)
    data["source"] = source
    data.setdefault("name", Path(str(name_or_path)).stem)
    return data


ENGINE_SECTIONS = frozenset(
    {"task", "name", "description", "source", "compare", "train", "optim", "schedule", "tune"}
)
"""The top-level keys of a configuration the engine reads (a task adds its own)."""


def check_sections(config: Mapping[str, Any], task_sections: Iterable[str]) -> None:
    """Refuse top-level keys that are neither the engine's nor in ``task_sections``."""
    known = ENGINE_SECTIONS | set(task_sections)
    unknown = set(config) - known
    if unknown:
        raise ValueError(
            f"unknown config section(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(known))})"
        )


def check_section(
    config: Mapping[str, Any], section: str, schema: Mapping[str, tuple[type, ...] | type]
) -> dict[str, Any]:
    """Check one section against ``{key: allowed types}``; unknown keys are errors.

    Integers are accepted where floats are; booleans are never taken for numbers.
    """
    values = config.get(section, {})
    if not isinstance(values, Mapping):
        raise ValueError(f"config section [{section}] must be a table, got {values!r}")
    for key, value in values.items():
        if key not in schema:
            known = ", ".join(sorted(schema))
            raise ValueError(f"unknown config key {section}.{key} (known: {known})")
        allowed = schema[key] if isinstance(schema[key], tuple) else (schema[key],)
        if float in allowed and int not in allowed:
            allowed = (*allowed, int)
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if not ok:
            names = " or ".join(t.__name__ for t in allowed)
            raise ValueError(f"config key {section}.{key} must be {names}, got {value!r}")
    return dict(values)


# The [tune] table: which split a run is scored on, and the density search's settings

TUNE_SCHEMA: dict[str, Any] = {
    "split": str,
    "holdout": float,
    "holdout_seed": int,
    "method": str,
    "budget": int,
    "steps": int,
    "seed": int,
    "repeats": int,
    "share": str,
    "bounds": dict,
    "freeze_at": int,
    "density_lr": float,
    "density_decay": float,
}
"""Keys of ``[tune]``. ``split``, ``holdout`` and ``holdout_seed`` are read by every task
(``tuning_split``); the others by the density search (``ndwconv.recipes.tune``)."""
SPLITS = ("test", "validation")
"""``tune.split``: what a run is scored on. ``"test"`` (the default): the task trains on
its training data and scores its test split, as reports do. ``"validation"``: the task
holds out the fraction ``tune.holdout`` of its *training* data (chosen with
``tune.holdout_seed``, the same for every arm and seed), trains on the rest and scores
the held-out part; the test split is not read at all. Everything tuned (densities,
learning rates) is tuned on ``"validation"``."""
TUNE_SPLIT_DEFAULTS: dict[str, Any] = {"split": "test", "holdout": 0.2, "holdout_seed": 0}


def tuning_split(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{"split", "holdout", "holdout_seed"}`` of ``config``'s ``[tune]`` table, checked,
    with defaults (see ``SPLITS``).

    Example:
        >>> tuning_split({"tune": {"split": "validation"}})
        {'split': 'validation', 'holdout': 0.2, 'holdout_seed': 0}

    Raises:
        ValueError: an unknown key or a value of the wrong type or out of range (named).
    """
    tune = check_section(config, "tune", TUNE_SCHEMA)
    found = {key: tune.get(key, default) for key, default in TUNE_SPLIT_DEFAULTS.items()}
    if found["split"] not in SPLITS:
        raise ValueError(f"tune.split must be one of {', '.join(SPLITS)}, got {found['split']!r}")
    if not 0 < found["holdout"] < 1:
        raise ValueError(f"tune.holdout must be in (0, 1), got {found['holdout']}")
    if found["holdout_seed"] < 0:
        raise ValueError(f"tune.holdout_seed must be ≥ 0, got {found['holdout_seed']}")
    found["holdout"] = float(found["holdout"])
    return found


# The trainer's tables: [train], [optim], [schedule]

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
    "epochs": int,
    "eval_every_epochs": int,
    "checkpoint_every_epochs": int,
    "label_smoothing": float,
}
TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": 1000,
    "batch_size": 16,
    "seed": 0,
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
    "density_weight_decay": float,
}
OPTIM_DEFAULTS: dict[str, Any] = {"name": "adam", "lr": 1e-3, "weight_decay": 0.0}
SCHEDULE_SCHEMA: dict[str, Any] = {
    "name": str,
    "milestones": list,
    "gamma": float,
    "min_lr": float,
    "milestone_epochs": list,
    "warmup_steps": int,
    "warmup_epochs": float,
    "warmup_factor": float,
}
SCHEDULE_DEFAULTS: dict[str, Any] = {"name": "constant", "gamma": 0.1, "min_lr": 0.0}
# Keys added after checkpoints were first written have defaults that are *not* filled in,
# so that a run recorded before them resumes: ``train.label_smoothing`` 0,
# ``schedule.warmup_steps`` 0, ``schedule.warmup_factor`` 0.1.
WARMUP_FACTOR = 0.1
"""The default ``schedule.warmup_factor``: the rate starts at a tenth of ``optim.lr``."""

EPOCH_KEYS = (
    ("train", "epochs", "steps"),
    ("train", "eval_every_epochs", "eval_every"),
    ("train", "checkpoint_every_epochs", "checkpoint_every"),
    ("schedule", "milestone_epochs", "milestones"),
    ("schedule", "warmup_epochs", "warmup_steps"),
)
"""``(section, key in epochs, key in steps)``: the pairs ``validate`` converts."""

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "multistep")


def steps_per_epoch(train_size: int, batch_size: int) -> int:
    """Steps in one epoch: ``ceil(train_size / batch_size)``, the number of batches a
    PyTorch ``DataLoader`` makes of the training set (its last one partial).

    Example:
        >>> steps_per_epoch(50_000, 128), steps_per_epoch(4000, 100)
        (391, 40)
    """
    if train_size < 1:
        raise ValueError(f"the training set must hold at least one sample, got {train_size}")
    return -(-train_size // batch_size)


def _epochs_to_steps(
    given: dict[str, dict[str, Any]], train_size: int | None
) -> dict[str, dict[str, Any]]:
    """Check the epoch keys (``EPOCH_KEYS``) and, with ``train_size``, convert them."""
    train, schedule = given["train"], given["schedule"]
    for section, key, step_key in EPOCH_KEYS:
        table = given[section]
        if key in table and step_key in table:
            raise ValueError(
                f"give {section}.{step_key} or {section}.{key}, not both (epochs are converted "
                f"to steps); e.g. --set {section}.{key}=N instead of --steps"
                if step_key == "steps"
                else f"give {section}.{step_key} or {section}.{key}, not both"
            )
    if "epochs" in train and train["epochs"] < 1:
        raise ValueError(f"train.epochs must be ≥ 1, got {train['epochs']}")
    for key in ("eval_every_epochs", "checkpoint_every_epochs"):
        if key in train and train[key] < 0:
            raise ValueError(f"train.{key} must be ≥ 0 (0: never), got {train[key]}")
    if "milestone_epochs" in schedule:
        epochs = schedule["milestone_epochs"]
        if not epochs or not all(
            isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in epochs
        ):
            raise ValueError(
                "schedule.milestone_epochs must be a non-empty list of positive whole epoch "
                f"numbers, got {epochs!r}"
            )
    if "warmup_epochs" in schedule and not (
        schedule["warmup_epochs"] >= 0 and math.isfinite(schedule["warmup_epochs"])
    ):
        raise ValueError(f"schedule.warmup_epochs must be ≥ 0, got {schedule['warmup_epochs']}")
    if train_size is None:
        return given
    per_epoch = steps_per_epoch(train_size, train["batch_size"])
    train["steps_per_epoch"] = per_epoch
    if "epochs" in train:
        train["steps"] = train["epochs"] * per_epoch
    for key, step_key in (
        ("eval_every_epochs", "eval_every"),
        ("checkpoint_every_epochs", "checkpoint_every"),
    ):
        if key in train:
            train[step_key] = train[key] * per_epoch
    if "milestone_epochs" in schedule:
        schedule["milestones"] = [m * per_epoch for m in schedule["milestone_epochs"]]
    if "warmup_epochs" in schedule:
        schedule["warmup_steps"] = round(schedule["warmup_epochs"] * per_epoch)
    return given


def uses_epochs(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` gives any length in epochs (see ``EPOCH_KEYS``)."""
    return any(
        isinstance(config.get(section), Mapping) and key in config[section]
        for section, key, _ in EPOCH_KEYS
    )


def validate(config: Mapping[str, Any], train_size: int | None = None) -> dict[str, dict[str, Any]]:
    """The ``train``, ``optim`` and ``schedule`` tables with defaults filled in, checked.

    Lengths may be given in epochs instead of steps (``train.epochs``,
    ``schedule.milestone_epochs``, ``schedule.warmup_epochs``). With ``train_size`` (the
    number of training samples, which the task reports) they are converted, one epoch
    being ``steps_per_epoch(train_size, train.batch_size)`` steps, and the results are
    filled in under the step keys (``train.steps``, ``schedule.milestones``,
    ``schedule.warmup_steps``), besides ``train.steps_per_epoch``. Without it they are
    only checked, and ``train.steps`` is ``None`` when ``train.epochs`` is given.

    Example:
        >>> cfg = {"train": {"epochs": 200, "batch_size": 128},
        ...        "schedule": {"name": "multistep", "milestone_epochs": [60, 120, 160],
        ...                     "warmup_epochs": 1}}
        >>> tables = validate(cfg, train_size=50_000)
        >>> tables["train"]["steps"], tables["schedule"]["milestones"]
        (78200, [23460, 46920, 62560])
        >>> tables["schedule"]["warmup_steps"]
        391

    Raises:
        ValueError: an unknown key, a value of the wrong type or out of range (named).
    """
    tuning_split(config)  # every run reads [tune] split: check it with the rest
    train = {**TRAIN_DEFAULTS, **check_section(config, "train", TRAIN_SCHEMA)}
    optim = {**OPTIM_DEFAULTS, **check_section(config, "optim", OPTIM_SCHEMA)}
    schedule = {**SCHEDULE_DEFAULTS, **check_section(config, "schedule", SCHEDULE_SCHEMA)}
    given_train = config.get("train", {})
    for section, key, step_key in EPOCH_KEYS:  # a length in epochs replaces the default
        if section == "train" and key in given_train and step_key not in given_train:
            del train[step_key]
    if train["batch_size"] < 1:
        raise ValueError(f"train.batch_size must be ≥ 1, got {train['batch_size']}")
    _epochs_to_steps({"train": train, "schedule": schedule}, train_size)
    for key in ("steps", "eval_every", "checkpoint_every"):
        train.setdefault(key, None)  # given in epochs, not converted without train_size
    for key in ("steps", "batch_size"):
        if key == "steps" and train["steps"] is None:
            continue
        if train[key] < 1:
            raise ValueError(f"train.{key} must be ≥ 1, got {train[key]}")
    for key in ("log_every", "eval_every", "checkpoint_every", "threads", "workers", "seed"):
        if train[key] is not None and train[key] < 0:
            raise ValueError(f"train.{key} must be ≥ 0, got {train[key]}")
    if train["keep_checkpoints"] < 1:
        raise ValueError(f"train.keep_checkpoints must be ≥ 1, got {train['keep_checkpoints']}")
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
    if "density_weight_decay" in optim and "density_lr" not in optim:
        raise ValueError("optim.density_weight_decay needs optim.density_lr (its group)")
    for key, low in (
        ("eps", 0.0),
        ("momentum", 0.0),
        ("density_lr", 0.0),
        ("density_weight_decay", 0.0),
    ):
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
    smoothing = train.get("label_smoothing", 0.0)
    if not (0 <= smoothing < 1):
        raise ValueError(f"train.label_smoothing must be in [0, 1), got {smoothing}")
    if smoothing and train.get("loss") != "cross_entropy":
        raise ValueError(
            "train.label_smoothing applies to train.loss = 'cross_entropy' only; set "
            f"train.loss = 'cross_entropy' explicitly (got {train.get('loss')!r})"
        )
    if optim.get("nesterov") and not optim.get("momentum", 0.0) > 0:
        raise ValueError("optim.nesterov = true needs optim.momentum > 0")
    if schedule.get("warmup_steps", 0) < 0:
        raise ValueError(f"schedule.warmup_steps must be ≥ 0, got {schedule['warmup_steps']}")
    if not 0 <= schedule.get("warmup_factor", WARMUP_FACTOR) <= 1:
        raise ValueError(
            f"schedule.warmup_factor must be in [0, 1], got {schedule['warmup_factor']}"
        )
    in_epochs = train_size is None and "milestone_epochs" in schedule  # checked above
    if schedule["name"] == "multistep" and not in_epochs:
        milestones = schedule.get("milestones")
        if not milestones or not all(isinstance(m, int) and m > 0 for m in milestones):
            raise ValueError(
                "schedule.milestones must be a non-empty list of positive step numbers "
                f"for schedule.name = 'multistep', got {milestones!r}"
            )
    return {"train": train, "optim": optim, "schedule": schedule}
