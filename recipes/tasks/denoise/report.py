"""The denoising comparison's own report parts: header, metric definitions, figure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ndwconv.adapters.atomic import atomic_write

from ...engine.compare import comparison_title, plot_validation_curves
from ...engine.config import validate
from ..holdout import is_validation, scored_split_line
from . import metrics
from .base import CLASSICAL_LABELS
from .classical import YARDSTICK_LABELS
from .config import is_series_config, is_volume_config

__all__ = ["figure", "metric_definitions", "report_footer", "report_header", "report_sections"]


def metric_definitions(config: Mapping[str, Any]) -> dict[str, str]:
    """How PSNR and SSIM (series: SNR) are computed, for images, volume blocks or series."""
    if is_series_config(config):
        return {
            "psnr": "dB, 10 log10(peak^2 / MSE) over the whole held-out part, peak 1 = the "
            "range of the series' training part (the normalised scale), estimate not clipped",
            "snr": "dB, 10 log10(sum (c - mean c)^2 / sum (x - c)^2) over the whole held-out "
            "part: clean signal c about its mean, estimate x, not clipped",
        }
    volume = is_volume_config(config)
    return {
        "psnr": (
            "dB, 0-255 scale of the normalised intensity, vs the clean volume block; "
            "estimate clipped to [0, 255], not rounded"
            if volume
            else "dB, 0-255 scale, vs the clean 8-bit image; estimate clipped to [0, 255], "
            "not rounded"
        ),
        "ssim": "skimage.metrics.structural_similarity, data_range 255, Gaussian window "
        "sigma 1.5"
        + (" along every axis" if volume else "")
        + ", population covariance (Wang et al. 2004)",
    }


def _data_line(cfg: Mapping[str, Any], data: Any) -> str:
    section = cfg.get("data", {})
    if is_series_config(cfg):
        sources = data or section.get("train", "embedded:mitdb")
        sources = [sources] if isinstance(sources, str) else list(sources)
        holdout = section.get("holdout", 0.3)
        return (
            f"Data: {', '.join(f'`{s}`' for s in sources)}"
            + (" (--data)" if data else "")
            + f"; the first {100 * (1 - holdout):.0f} % of each series trains (crops of "
            f"{section.get('patch_size', 256)} samples), the last {100 * holdout:.0f} % is "
            f"held out and scored whole (gap {section.get('gap', 0)} samples); normalised by "
            "the training part's range."
        )
    if data and is_volume_config(cfg):  # volumes given on the command line
        return (
            f"Data: train {', '.join(f'`{p}`' for p in data)} (--data), scored on "
            f"`{section.get('validation', 'holdout')}` (data.validation)."
        )
    return (
        f"Data: train `{section.get('train')}`, scored on `{section.get('validation')}` "
        "(data.validation)" + (f" under `{data[0]}`." if data else ".")
    )


def report_header(results: Mapping[str, Any]) -> list[str]:
    """The report's title, setup (model, density, noise, budget, seeds) and data lines."""
    cfg = results["config"]
    train = validate(cfg)["train"]
    noise = cfg.get("noise", {})
    return [
        f"# Denoising: {comparison_title(results)} ({cfg.get('name', '?')})",
        "",
        f"Model `{json.dumps(cfg.get('model', {}))}`, density "
        f"`{cfg.get('weighted', {}).get('density', 'default')}`; "
        f"{noise.get('kind', 'gaussian')} noise σ = {noise.get('sigma')} (training), "
        f"{noise.get('validation_sigma', noise.get('sigma'))} "
        f"(validation); {train.get('steps')} steps of batch {train.get('batch_size')} per run; "
        f"seeds {', '.join(map(str, results['seeds']))}.",
        _data_line(cfg, results.get("data"))
        if not is_validation(cfg)
        else f"Data: train `{cfg.get('data', {}).get('train')}`. {scored_split_line(cfg)}",
    ]


_YARDSTICK_WHY = {
    "bm3d": "BM3D (Dabov et al. 2007), the `bm3d` package's call for additive white "
    "Gaussian noise of known σ: `bm3d.bm3d(noisy, sigma_psd=σ/255)` on the [0, 1] scale "
    "(`bm3d_rgb` for colour), default profile 'np', both stages",
    "nlmeans": "blockwise non-local means (Coupé et al. 2008), dipy's `nlmeans(noisy, "
    "sigma=σ/255, patch_radius=1, block_radius=2, rician=..., num_threads=1)`: the radii "
    "of dipy's defaults and T1 example, one thread (several make it irreproducible), "
    "`rician=True` for Rician noise (bias correction of "
    "Wiest-Daesslé et al. 2008), the known σ rather than `estimate_sigma` since the "
    "networks are trained at that σ too",
}


def _yardstick_section(results: Mapping[str, Any]) -> list[str]:
    """Images and volumes: which classical yardstick was scored, how, and its time; or
    why it was not."""
    cfg = results["config"]
    key = "nlmeans" if is_volume_config(cfg) else "bm3d"
    label = YARDSTICK_LABELS[key]
    lines = ["## Classical yardstick", ""]
    if not cfg.get("eval", {}).get("classical", True):
        return [
            *lines,
            f"{label} was not run: `eval.classical = false` in this configuration "
            "(`--set eval.classical=true` adds it).",
        ]
    seeds = results["seeds"]
    rows = [r for r in results.get("per_item", []) if r["seed"] == seeds[0]]
    if not rows:
        return []
    first = rows[0]
    if f"{key}_skipped" in first:
        return [*lines, f"{label} was not run: {first[f'{key}_skipped']}."]
    if f"{key}_psnr" not in first:
        return [*lines, f"{label} was not scored in these results."]
    method = first["method"]
    scored = [r for r in rows if r["method"] == method]
    seconds = sum(r[f"{key}_seconds"] for r in scored)
    return [
        *lines,
        f"{_YARDSTICK_WHY[key]}. Applied once to each of the {len(scored)} noisy "
        "validation items every run is scored on (with the first seed's runs), scored "
        f"like the networks; {seconds:.1f} s in all ({seconds / len(scored):.2f} s per "
        "item) on this machine. Call: " + str(first[f"{key}_parameters"]) + ".",
    ]


def report_sections(results: Mapping[str, Any]) -> list[str]:
    """Series: the classical filters' chosen parameters per series and their grids;
    images and volumes: the classical yardstick's parameters and time."""
    if not is_series_config(results["config"]):
        return _yardstick_section(results)
    seeds = results["seeds"]
    rows = [
        r
        for r in results.get("per_item", [])
        if r["seed"] == seeds[0] and r["method"] == "standard"
    ]
    lines = [
        "## Classical filters",
        "",
        "Parameters chosen by PSNR on each series' training part with Gaussian noise of the "
        "validation σ (drawn once, `eval.seed`), then applied unchanged to the noisy "
        "held-out part. Butterworth: `scipy.signal.butter(order, cutoff, output='sos')` + "
        "`sosfiltfilt` (zero phase), orders 1-6 and 8, 40 cut-offs from 0.01 to 0.9 × "
        "Nyquist (log-spaced). Savitzky–Golay: `scipy.signal.savgol_filter`, odd windows "
        "5-61, 71, 81, 101, 121, 151, polynomial orders 0-6.",
        "",
        "| series | " + " | ".join(CLASSICAL_LABELS.values()) + " |",
        "|---|" + "---|" * len(CLASSICAL_LABELS),
    ]
    for r in rows:
        cells = " | ".join(str(r.get(f"{key}_parameters", "-")) for key in CLASSICAL_LABELS)
        lines.append(f"| {r['image']} | {cells} |")
    return lines


def report_footer(results: Mapping[str, Any]) -> list[str]:
    """The command that applies the comparison's best checkpoint (highest mean PSNR over
    the held-out items, any arm and seed) to the user's own files."""
    runs = [r for r in results["runs"] if r.get("checkpoint")]
    if not runs:
        return []
    best = max(runs, key=lambda r: r["psnr"])
    cfg = results["config"]
    if is_series_config(cfg):
        inputs, extra = "recording.nc", " --var NAME --dim time"
        what = "a NetCDF-4/HDF5 time series (the variable --var along --dim)"
    elif is_volume_config(cfg):
        inputs, extra, what = "scan.nii.gz", "", "NIfTI or HDF5 volumes"
    else:
        inputs, extra, what = "photo.png", "", "images (PNG, TIFF, JPEG, .npy)"
    return [
        "## Apply the best network to your own data",
        "",
        f"The best run is seed {best['seed']}, {best['method']} ({best['psnr']:.2f} dB PSNR); "
        f"its checkpoint denoises {what}:",
        "",
        "```bash",
        f"ndwconv denoise {inputs} -o denoised --model {best['checkpoint']}{extra}",
        "```",
    ]


def _series_figure(
    results: Mapping[str, Any], panels: Mapping[str, np.ndarray], item: str | None, png: Path
) -> Path | None:
    """Validation curves, and two seconds (or 720 samples) of the held-out part: noisy,
    the two networks and the two classical filters against the clean signal."""
    from matplotlib.figure import Figure

    clean = panels["clean"]
    length = min(len(clean), 720)
    start = (len(clean) - length) // 2
    window = slice(start, start + length)
    t = np.arange(start, start + length)
    fig = Figure(figsize=(12, 7.5))
    grid = fig.add_gridspec(3, 2, width_ratios=[1, 2.4])
    plot_validation_curves(fig.add_subplot(grid[:, 0]), results)
    groups = [
        ("noisy input", [("noisy", "tab:gray")]),
        ("networks (first seed)", [("standard", "tab:blue"), ("weighted", "tab:orange")]),
        ("classical filters", [("butterworth", "tab:green"), ("savgol", "tab:purple")]),
    ]
    for row, (title, members) in enumerate(groups):
        ax = fig.add_subplot(grid[row, 1])
        ax.plot(t, clean[window], color="black", lw=1.2, label="clean")
        for key, colour in members:
            if key in panels:
                score = metrics.series_psnr(panels[key], clean)
                ax.plot(
                    t,
                    panels[key][window],
                    color=colour,
                    lw=0.9,
                    alpha=0.85,
                    label=f"{key}: {score:.2f} dB (whole part)",
                )
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
        ax.grid(alpha=0.3)
        ax.set_ylabel("normalised")
    ax.set_xlabel("sample of the held-out part")
    fig.suptitle(
        f"{item} (seed {results['seeds'][0]}), samples {start}-{start + length - 1}", fontsize=10
    )
    fig.tight_layout()
    atomic_write(png, lambda p: fig.savefig(p, dpi=80, format="png"))
    return png


def figure(
    results: Mapping[str, Any], crops: Mapping[str, np.ndarray], image: str | None, png: Path
) -> Path | None:
    """Validation curves, and noisy / standard / weighted / clean views of ``image``
    (a centre crop of an image; orthogonal slices through the centre of a volume block;
    a stretch of a series' held-out part, with the classical filters)."""
    try:
        from matplotlib.figure import Figure  # no pyplot: the caller's backend is untouched
    except ImportError:
        return None
    clean = crops.get("clean")
    if clean is not None and clean.ndim == 1:
        return _series_figure(results, crops, image, png)
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
                a.imshow(
                    np.clip(data[tuple(index)], 0, 255).T,
                    cmap="gray",
                    vmin=0,
                    vmax=255,
                    origin="lower",
                )
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
