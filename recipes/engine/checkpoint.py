"""The checkpoint format: tensors in safetensors, everything else in a JSON sidecar.

A checkpoint is a pair of files, ``NAME.safetensors`` (the model's state dict under
``model.``, the optimizer's tensors under ``optimizer.``, RNG states under ``rng.``) and
``NAME.json`` (format version, task name, the task's description of the run, the
configuration, the density of every weighted layer, step, schedule, metrics and
versions). Loading runs no code from either file; ``ndwconv.recipes.tasks.load_model``
rebuilds the network from the sidecar through the task registry, never importing anything
the sidecar names.
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
    "latest_checkpoint",
    "load_checkpoint",
    "model_state",
    "optimizer_state",
    "prune_checkpoints",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "ndwconv.checkpoint/1"


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


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints in ``folder``."""
    found = sorted(folder.glob("step-*.json"))
    for sidecar in found[:-keep]:
        for p in (sidecar, sidecar.with_suffix(".safetensors")):
            with contextlib.suppress(OSError):
                p.unlink()


def model_state(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The model's state dict from a checkpoint's tensors (the ``model.`` entries)."""
    return {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}

