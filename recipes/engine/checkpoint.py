"""The checkpoint format: tensors in safetensors, everything else in a JSON sidecar.

A checkpoint is a pair of files, ``NAME.safetensors`` (the model's state dict under
``model.``, the optimizer's tensors under ``optimizer.``, RNG states under ``rng.``) and
``NAME.json`` (format version, task name, the task's description of the run, the
configuration, the density of every weighted layer, step, schedule, metrics and
versions). Loading runs no code from either file; ``ndwconv.recipes.tasks.load_model``
rebuilds the network from the sidecar through the task registry, never importing anything
the sidecar names.

The sidecar is checked against the schema of its format version (``format``,
``"ndwconv.checkpoint/1"``; ``check_sidecar``) before anything is built from it: a missing
field, a value of the wrong type or out of range, or an unknown field is an error that names
the field and the file. A damaged or truncated ``.safetensors`` file is an error naming the
file.
"""

from __future__ import annotations

import contextlib
import json
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import ndwconv
from ndwconv.adapters.atomic import atomic_write, write_json

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "check_sidecar",
    "find_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "model_state",
    "optimizer_state",
    "prune_checkpoints",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "ndwconv.checkpoint/1"
_FORMAT_PREFIX = "ndwconv.checkpoint/"


class CheckpointError(ValueError):
    """A checkpoint file or sidecar that cannot be used as it is (the message names it)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# Version 1 of the sidecar: {field: (required, check, what the check wants)}.
_SIDECAR_V1: dict[str, tuple[bool, Any, str]] = {
    "format": (True, lambda v: isinstance(v, str), "a string"),
    "task": (True, lambda v: isinstance(v, str) and v.isidentifier(), "a task name"),
    "step": (True, lambda v: _is_int(v) and v >= 0, "an integer ≥ 0"),
    "description": (True, lambda v: isinstance(v, dict), "an object"),
    "densities": (
        True,
        lambda v: (
            isinstance(v, dict)
            and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())
        ),
        "an object of layer name → density spec strings",
    ),
    "config": (False, lambda v: isinstance(v, dict), "an object"),
    "scheduler": (False, lambda v: isinstance(v, dict), "an object"),
    "optimizer": (
        False,
        lambda v: (
            isinstance(v, dict)
            and isinstance(v.get("param_groups"), list)
            and isinstance(v.get("state"), dict)
        ),
        "an object with param_groups (a list) and state (an object)",
    ),
    "history": (
        False,
        lambda v: (
            isinstance(v, list) and all(isinstance(r, dict) and _is_int(r.get("step")) for r in v)
        ),
        "a list of objects with an integer step",
    ),
    "totals": (
        False,
        lambda v: isinstance(v, dict) and all(_is_number(x) and x >= 0 for x in v.values()),
        "an object of numbers ≥ 0",
    ),
    "versions": (False, lambda v: isinstance(v, dict), "an object"),
}
SIDECAR_SCHEMAS = {1: _SIDECAR_V1}
"""The sidecar's fields for each format version."""


def check_sidecar(sidecar: Any, where: str = "checkpoint sidecar") -> dict[str, Any]:
    """Check a sidecar against the schema of its format version; return it unchanged.

    Args:
        sidecar: the parsed JSON.
        where: how the sidecar is named in messages (its path).

    Raises:
        CheckpointError: not an ndwconv checkpoint, a version this ndwconv does not know,
            or a missing, unknown or ill-typed field (named).

    Example:
        >>> sidecar = {"format": CHECKPOINT_FORMAT, "task": "toy", "step": -1,
        ...            "description": {}, "densities": {}}
        >>> try:
        ...     check_sidecar(sidecar)
        ... except CheckpointError as err:
        ...     print(err)
        checkpoint sidecar: field 'step' must be an integer ≥ 0, got -1
    """
    fmt = sidecar.get("format") if isinstance(sidecar, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith(_FORMAT_PREFIX):
        raise CheckpointError(f"{where} is not an ndwconv checkpoint (format {CHECKPOINT_FORMAT})")
    version = fmt[len(_FORMAT_PREFIX) :]
    schema = SIDECAR_SCHEMAS.get(int(version)) if version.isdigit() else None
    if schema is None:
        raise CheckpointError(
            f"{where}: format {fmt!r} is not one this ndwconv {ndwconv.__version__} reads "
            f"(it reads {', '.join(f'{_FORMAT_PREFIX}{v}' for v in SIDECAR_SCHEMAS)}); "
            "a newer ndwconv wrote it"
        )
    unknown = sorted(set(sidecar) - set(schema))
    if unknown:
        raise CheckpointError(
            f"{where}: unknown field(s) {', '.join(map(repr, unknown))} for format {fmt!r}"
        )
    for field, (required, ok, wants) in schema.items():
        if field not in sidecar:
            if required:
                raise CheckpointError(f"{where}: field {field!r} is missing")
            continue
        if not ok(sidecar[field]):
            raise CheckpointError(
                f"{where}: field {field!r} must be {wants}, got {_short(sidecar[field])}"
            )
    return sidecar


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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


def optimizer_state(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> dict:
    """An optimizer state dict rebuilt from a checkpoint's tensors and sidecar entry."""
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
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata={"format": CHECKPOINT_FORMAT}))
    sidecar_path = path.with_suffix(".json")
    write_json(sidecar_path, sidecar)
    return sidecar_path


def find_checkpoint(path: str | Path) -> Path:
    """The ``.safetensors`` file of the checkpoint ``path`` names.

    ``path`` is either file of a checkpoint, a run folder (its newest complete checkpoint
    in ``checkpoints/``) or a ``checkpoints/`` folder itself.

    Raises:
        FileNotFoundError: nothing at ``path``, or a folder without a complete checkpoint.
        CheckpointError: ``path`` is a file that is not a checkpoint, or a folder that is
            not a run folder (the message says what was found).
    """
    path = Path(path)
    if path.is_dir():
        if (path / "checkpoints").is_dir():
            found = latest_checkpoint(path)
            where = path / "checkpoints"
        elif any(path.glob("step-*.json")):
            found = latest_checkpoint(path, folder=path)
            where = path
        else:
            raise CheckpointError(
                f"{str(path)!r} is a directory; expected a .safetensors checkpoint or a run "
                "folder containing checkpoints/"
            )
        if found is None:
            raise FileNotFoundError(
                f"{str(where)!r} holds no complete checkpoint (step-N.safetensors with its "
                "step-N.json)"
            )
        return found
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix not in (".safetensors", ".json"):
        raise CheckpointError(
            f"{str(path)!r} is not a checkpoint: expected NAME.safetensors (with its sidecar "
            "NAME.json) or a run folder containing checkpoints/"
        )
    return path.with_suffix(".safetensors")


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, sidecar)`` of a checkpoint, given either of its two files or a run folder.

    Loading runs no code from the files (safetensors and JSON only). The sidecar is
    checked against its schema (``check_sidecar``) and, for a ``step-N`` checkpoint,
    its ``step`` against ``N``.

    Raises:
        FileNotFoundError: a file of the pair is missing (e.g. an interrupted write).
        CheckpointError: the sidecar is not an ndwconv checkpoint or does not fit its
            schema, or the tensor file is damaged (each named).
    """
    from safetensors.torch import load_file

    tensors_path = find_checkpoint(path)
    sidecar_path = tensors_path.with_suffix(".json")
    for p in (tensors_path, sidecar_path):
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint file {str(p)!r} does not exist")
    try:
        sidecar = json.loads(sidecar_path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"checkpoint sidecar {str(sidecar_path)!r} is not JSON: {err}"
        ) from None
    check_sidecar(sidecar, f"checkpoint sidecar {str(sidecar_path)!r}")
    match = re.fullmatch(r"step-(\d+)", tensors_path.stem)
    if match and int(match[1]) != sidecar["step"]:
        raise CheckpointError(
            f"checkpoint sidecar {str(sidecar_path)!r}: field 'step' is {sidecar['step']} "
            f"but the file is that of step {int(match[1])}"
        )
    steps = sidecar.get("config", {}).get("train", {}).get("steps")
    if _is_int(steps) and sidecar["step"] > steps:
        raise CheckpointError(
            f"checkpoint sidecar {str(sidecar_path)!r}: field 'step' ({sidecar['step']}) is "
            f"beyond the run's length (config train.steps = {steps})"
        )
    try:
        tensors = load_file(str(tensors_path))
    except Exception as err:  # safetensors reports damage with its own error types
        raise CheckpointError(
            f"checkpoint file {str(tensors_path)!r} is damaged or truncated "
            f"({type(err).__name__}: {err})"
        ) from None
    return tensors, sidecar


def latest_checkpoint(out_dir: str | Path, *, folder: str | Path | None = None) -> Path | None:
    """The newest complete ``step-*.safetensors`` checkpoint in ``out_dir/checkpoints``
    (or in ``folder``)."""
    folder = Path(out_dir) / "checkpoints" if folder is None else Path(folder)
    best: tuple[int, Path] | None = None
    for sidecar in folder.glob("step-*.json"):
        match = re.fullmatch(r"step-(\d+)\.json", sidecar.name)
        tensors = sidecar.with_suffix(".safetensors")
        if match and tensors.is_file() and (best is None or int(match[1]) > best[0]):
            best = (int(match[1]), tensors)
    return None if best is None else best[1]


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints in ``folder`` (newest by step)."""
    found = sorted(
        (p for p in folder.glob("step-*.json") if re.fullmatch(r"step-\d+\.json", p.name)),
        key=lambda p: int(p.stem[len("step-") :]),
    )
    for sidecar in found[:-keep]:
        for p in (sidecar, sidecar.with_suffix(".safetensors")):
            with contextlib.suppress(OSError):
                p.unlink()


def model_state(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The model's state dict from a checkpoint's tensors (the ``model.`` entries)."""
    return {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
