"""The denoising comparison's own report parts: header, metric definitions, figure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ndwconv.adapters.atomic import atomic_write

from ...engine.compare import plot_validation_curves
from ...engine.config import validate
from . import metrics
from .config import is_volume_config

__all__ = ["figure", "metric_definitions", "report_header"]


def metric_definitions(config: Mapping[str, Any]) -> dict[str, str]:
    """How PSNR and SSIM are computed, for images or for volume blocks."""
    volume = is_volume_config(config)
    return {
        "psnr": (
            "dB, 0-255 scale of the normalised intensity, vs the clean volume block; "
            "estimate clipped to [0, 255], not rounded" if volume else
            "dB, 0-255 scale, vs the clean 8-bit image; estimate clipped to [0, 255], "
            "not rounded"
        ),
        "ssim": "skimage.metrics.structural_similarity, data_range 255, Gaussian window "
        "sigma 1.5" + (" along every axis" if volume else "")
        + ", population covariance (Wang et al. 2004)",
    }


def _data_line(cfg: Mapping[str, Any], data: Any) -> str:
    section = cfg.get("data", {})
    if data and is_volume_config(cfg):  # volumes given on the command line
        return (
            f"Data: train {', '.join(f'`{p}`' for p in data)} (--data), validation "
            f"`{section.get('validation', 'holdout')}`."
        )
    return (
        f"Data: train `{section.get('train')}`, validation `{section.get('validation')}`"
        + (f" under `{data[0]}`." if data else ".")
    )


def report_header(results: Mapping[str, Any]) -> list[str]:
    """The report's title, setup (model, density, noise, budget, seeds) and data lines."""
    cfg = results["config"]
    train = validate(cfg)["train"]
    noise = cfg.get("noise", {})
    return [
        f"# Denoising: standard vs weighted convolution ({cfg.get('name', '?')})",
        "",
        f"Model `{json.dumps(cfg.get('model', {}))}`, density "
        f"`{cfg.get('weighted', {}).get('density', 'default')}`; "
        f"{noise.get('kind', 'gaussian')} noise σ = {noise.get('sigma')} (training), "
        f"{noise.get('validation_sigma', noise.get('sigma'))} "
        f"(validation); {train.get('steps')} steps of batch {train.get('batch_size')} per run; "
        f"seeds {', '.join(map(str, results['seeds']))}.",
        _data_line(cfg, results.get("data")),
    ]


def figure(
    results: Mapping[str, Any], crops: Mapping[str, np.ndarray], image: str | None, png: Path
) -> Path | None:
    """Validation curves, and noisy / standard / weighted / clean views of ``image``
    (a centre crop of an image; orthogonal slices through the centre of a volume block)."""
    try:
        from matplotlib.figure import Figure  # no pyplot: the caller's backend is untouched
    except ImportError:
        return None
    clean = crops.get("clean")
    volume = clean is not None and clean.ndim >= 3
    if volume:  # rows: slices across axes 0, 1, 2, shown (Y, Z)ᵀ, (X, Z)ᵀ, (X, Y)ᵀ
        heights = [clean.shape[2], clean.shape[2], clean.shape[1]]
        fig = Figure(figsize=(14, 3.0 + 7.0 * sum(heights) / (sum(heights) + clean.shape[0])))
        grid = fig.add_gridspec(3, 5, width_ratios=[1.6, 1, 1, 1, 1], height_ratios=heights)
    else:
        fig = Figure(figsize=(14, 4.2))
        grid = fig.add_gridspec(1, 5, width_ratios=[1.6, 1, 1, 1, 1])
    plot_validation_curves(fig.add_subplot(grid[:, 0] if volume else grid[0, 0]), results)
    panels = [k for k in ("noisy", "standard", "weighted", "clean") if k in crops]
    if clean is not None and volume:
        frame = tuple(n // 2 for n in clean.shape[3:])  # 4-D: the middle frame
        centre = [n // 2 for n in clean.shape[:3]]
        for i, key in enumerate(panels):
            data = crops[key][(..., *frame)] if frame else crops[key]
            for axis in range(3):
                index = [slice(None)] * 3
                index[axis] = centre[axis]
                a = fig.add_subplot(grid[axis, 1 + i])
                a.imshow(np.clip(data[tuple(index)], 0, 255).T, cmap="gray", vmin=0,
                         vmax=255, origin="lower")
                if axis == 0:
                    title = key
                    if key != "clean":
                        title += f"\n{metrics.psnr(crops[key], clean):.2f} dB (whole block)"
                    a.set_title(title, fontsize=9)
                a.set_xticks([])
                a.set_yticks([])
                if i == 0:
                    a.set_ylabel(f"axis {axis} = {centre[axis]}", fontsize=8)
        fig.suptitle(
            f"{image} (seed {results['seeds'][0]}), orthogonal slices through the centre",
            fontsize=10,
        )
    elif clean is not None:
        h, w = clean.shape[:2]
        size = min(h, w, 128)
        top, left = (h - size) // 2, (w - size) // 2
        for i, key in enumerate(panels):
            a = fig.add_subplot(grid[0, 1 + i])
            crop = np.clip(crops[key][top : top + size, left : left + size], 0, 255)
            a.imshow(crop.astype(np.uint8), cmap="gray", vmin=0, vmax=255)
            title = key
            if key != "clean":
                title += f"\n{metrics.psnr(crops[key], clean):.2f} dB (whole image)"
            a.set_title(title, fontsize=9)
            a.axis("off")
        fig.suptitle(
            f"{image} (seed {results['seeds'][0]}), centre crop {size}×{size}", fontsize=10
        )
    fig.tight_layout()
    atomic_write(png, lambda p: fig.savefig(p, dpi=100, format="png"))
    return png
