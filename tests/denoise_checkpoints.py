"""A tiny weighted DnCNN denoising checkpoint for the command-line tests (no training)."""

from __future__ import annotations

from pathlib import Path

import torch

import ndwconv
from ndwconv.recipes.engine.checkpoint import save_checkpoint
from ndwconv.recipes.models import DnCNN, odd_kernel_convs


def tiny_dncnn_checkpoint(
    path: Path,
    *,
    ndim: int = 3,
    channels: int = 1,
    seed: int = 0,
    ndim_in_sidecar: bool = True,
    sigma: str | float | None = None,
) -> Path:
    """Write a 3-layer, 4-channel weighted DnCNN (receptive radius 3) to ``path`` (a
    ``.safetensors`` file, its sidecar beside it) and return ``path``; ``sigma`` is the
    training noise recorded in its configuration (none when ``None``)."""
    torch.manual_seed(seed)
    model = ndwconv.convert(
        DnCNN(ndim=ndim, channels=channels, depth=3, width=4), "default", where=odd_kernel_convs
    )
    spec = {"name": "dncnn", "depth": 3, "width": 4}
    if ndim_in_sidecar:
        spec["ndim"] = ndim
    meta = {
        "task": "denoise",
        "step": 0,
        "config": {} if sigma is None else {"noise": {"sigma": sigma}},
        "description": {
            "method": "weighted",
            "model": spec,
            "density": "default",
            "data": {"channels": channels},
        },
    }
    save_checkpoint(path, model.eval(), meta, rng=False)
    return path
