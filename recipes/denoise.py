"""The denoising recipe: train, evaluate and compare standard vs weighted denoisers.

The experiment of Cammarasana & Patanè (2025) on additive white Gaussian noise: a
denoiser built from plain convolutions (``[model]``: DnCNN or NAFNet from
``ndwconv.recipes.models``) is trained as is (*standard*) and with its convolutions made
weighted by ``ndwconv.convert`` (*weighted*, density ``[weighted] density``; only kernels
whose every size is odd, at least one of them larger than 1, are converted, since a
density is centred). Both start
from the same initial weights — the model is built under the run's seed before it is
converted — and see the same samples in the same order for the same number of steps.

Configuration tables (besides the trainer's ``[train]``, ``[optim]``, ``[schedule]``):

``[model]``
    ``name`` (``dncnn`` or ``nafnet``) and the model's keyword arguments.
``[data]``
    ``train`` and ``validation``: ``"embedded:train"`` / ``"embedded:validation"``
    (scikit-image's bundled photographs) or folders of images, relative to the ``--data``
    root unless absolute; ``channels`` (1 grey, 3 RGB); ``patch_size``; ``augment``
    (random flips and 90° rotations); ``length`` (nominal epoch, samples).
``[noise]``
    ``sigma``: training noise σ on the 0–255 scale, a number or a range ``"lo-hi"``
    (drawn per patch); ``validation_sigma``: the σ of the (fixed) validation noise.
``[eval]``
    ``tile``/``overlap``: evaluate large images in overlapping tiles (0: whole images);
    ``seed``: seed of the validation noise; ``curve_images``: how many validation images
    the evaluations *during* training use (0: all), the final evaluation uses all.
``[weighted]``
    ``density``: the density spec of the weighted model (``ndwconv.as_density``).

PSNR is in dB on the 0–255 scale against the clean 8-bit image, the estimate clipped to
[0, 255] and not rounded; SSIM is scikit-image's (Gaussian window σ = 1.5, as Wang et
al. 2004).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import ndwconv
from ndwconv.adapters.volumes import is_physical, physical_density

from . import data as data_mod
from . import metrics
from ._scoring import ScoredTask
from .config import check_section
from .denoise_volumes import VolumeDenoiseTask, check_volume_config, is_volume_config
from .models import build_model, make_weighted
from .train import atomic_write, fit, load_checkpoint, resolve_device, validate, write_json

__all__ = [
    "METHODS",
    "RESULTS_FORMAT",
    "DenoiseTask",
    "compare",
    "format_table",
    "load_denoiser",
    "make_task",
    "verdict",
]

METHODS = ("standard", "weighted")
RESULTS_FORMAT = "ndwconv.compare.denoise/1"

DATA_SCHEMA: dict[str, Any] = {
    "train": str,
    "validation": str,
    "channels": int,
    "patch_size": int,
    "augment": bool,
    "length": int,
}
DATA_DEFAULTS: dict[str, Any] = {
    "train": "embedded:train",
    "validation": "embedded:validation",
    "channels": 1,
    "patch_size": 40,
    "augment": True,
}
NOISE_SCHEMA: dict[str, Any] = {"sigma": (float, str), "validation_sigma": float, "kind": str}
EVAL_SCHEMA: dict[str, Any] = {"tile": int, "overlap": int, "seed": int, "curve_images": int}
EVAL_DEFAULTS: dict[str, Any] = {"tile": 0, "overlap": 32, "seed": 0, "curve_images": 0}
WEIGHTED_SCHEMA: dict[str, Any] = {"density": str}
KNOWN_SECTIONS = {
    "name",
    "description",
    "source",
    "compare",
    "model",
    "data",
    "noise",
    "eval",
    "weighted",
    "train",
    "optim",
    "schedule",
}


def _resolve_source(spec: str, root: str | Path | None, key: str) -> str:
    if spec.startswith("embedded:"):
        return spec
    path = Path(spec).expanduser()
    if not path.is_absolute():
        if root is None:
            raise ValueError(
                f"data.{key} is the relative folder {spec!r}: pass --data ROOT (the folder "
                f"that contains {spec!r})"
            )
        path = Path(root).expanduser() / path
    if not path.is_dir():
        raise FileNotFoundError(f"data.{key}: folder {str(path)!r} does not exist")
    return str(path)


def check_config(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The denoising tables with defaults filled in; unknown sections or keys are errors."""
    unknown = set(config) - KNOWN_SECTIONS
    if unknown:
        raise ValueError(
            f"unknown config section(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(KNOWN_SECTIONS))})"
        )
    model = dict(config.get("model", {}))
    if "name" not in model:
        raise ValueError("config key model.name is missing (dncnn or nafnet)")
    volume = is_volume_config(config)
    if volume:
        tables = check_volume_config(config)
        data, noise = tables["data"], tables["noise"]
    else:
        data = {**DATA_DEFAULTS, **check_section(config, "data", DATA_SCHEMA)}
        noise = check_section(config, "noise", NOISE_SCHEMA)
        if noise.get("kind", "gaussian") != "gaussian":
            raise ValueError(
                f"noise.kind {noise['kind']!r}: the image recipe adds Gaussian noise only "
                "(Rician noise is for volumes, --ndim 3)"
            )
        if "sigma" not in noise:
            raise ValueError("config key noise.sigma is missing (σ on the 0–255 scale)")
        spec = data_mod.NoiseSpec.parse(str(noise["sigma"]))
        if "validation_sigma" not in noise:
            if isinstance(spec.sigma, tuple):
                raise ValueError("noise.validation_sigma is required when noise.sigma is a range")
            noise["validation_sigma"] = spec.sigma
    evals = {**EVAL_DEFAULTS, **check_section(config, "eval", EVAL_SCHEMA)}
    for key in ("tile", "overlap", "seed", "curve_images"):
        if evals[key] < 0:
            raise ValueError(f"eval.{key} must be ≥ 0, got {evals[key]}")
    if evals["tile"] and evals["tile"] <= evals["overlap"]:
        raise ValueError(f"eval.tile ({evals['tile']}) must exceed eval.overlap")
    weighted = {"density": "default", **check_section(config, "weighted", WEIGHTED_SCHEMA)}
    if volume and is_physical(weighted["density"]):
        physical_density(weighted["density"], (1.0,))  # the spacing comes with the data
    else:
        ndwconv.as_density(weighted["density"])  # fails early on a bad spec
    for key in ("channels", "patch_size"):
        if key in data and data[key] < 1:
            raise ValueError(f"data.{key} must be ≥ 1, got {data[key]}")
    return {"model": model, "data": data, "noise": noise, "eval": evals, "weighted": weighted}


class DenoiseTask(ScoredTask):
    """The denoising task for ``ndwconv.recipes.train.fit``.

    Args:
        config: a recipe configuration (see the module docstring).
        method: ``"standard"`` or ``"weighted"``.
        data_root: folder that relative ``data.train``/``data.validation`` are in.
    """

    name = "denoise"

    def __init__(
        self,
        config: Mapping[str, Any],
        method: str = "standard",
        data_root: str | Path | None = None,
    ):
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.config = check_config(config)
        self.method = method
        self.seed = int(config.get("train", {}).get("seed", 0))
        data = self.config["data"]
        if data_root is not None and all(
            data[key].startswith("embedded:") for key in ("train", "validation")
        ):
            raise ValueError(
                "--data is given but the configuration uses the images bundled with "
                "scikit-image; to train on a folder, also set data.train and data.validation "
                "(e.g. --set data.train=train --set data.validation=val, relative to --data)"
            )
        self.sources = {
            key: _resolve_source(data[key], data_root, key) for key in ("train", "validation")
        }
        self._train_images = data_mod.open_images(self.sources["train"], data["channels"])
        self._validation_images = data_mod.open_images(self.sources["validation"], data["channels"])
        noise = data_mod.NoiseSpec.parse(str(self.config["noise"]["sigma"]))
        self.dataset = data_mod.PatchDataset(
            self._train_images,
            data["patch_size"],
            noise,
            seed=self.seed,
            augment=data["augment"],
            length=data.get("length"),
        )
        self._validation: Any = None
        self.keep: tuple[str, ...] = ()
        """Validation images whose estimates the final evaluation keeps."""
        self.final_rows: list[dict[str, Any]] | None = None
        """Per-image scores of the last final evaluation (see ``evaluate_images``)."""

    @property
    def validation(self) -> Any:
        """The noisy validation images (noise fixed by ``eval.seed`` and image name)."""
        if self._validation is None:
            self._validation = data_mod.NoisyValidation(
                self._validation_images,
                float(self.config["noise"]["validation_sigma"]),
                seed=self.config["eval"]["seed"],
            )
        return self._validation

    def example(self) -> tuple[str, np.ndarray, np.ndarray]:
        """``(name, clean, noisy)`` of the first validation image, on the 0–255 scale."""
        name, clean, noisy = self.validation[0]
        return name, clean, metrics.to_uint8_scale(noisy)

    def build_model(self) -> nn.Module:
        model_cfg = dict(self.config["model"])
        name = model_cfg.pop("name")
        model_cfg.setdefault("channels", self.config["data"]["channels"])
        model = build_model(name, **model_cfg)
        if self.method == "weighted":
            make_weighted(model, self.config["weighted"]["density"])
        return model

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "model": self.config["model"],
            "density": self.config["weighted"]["density"] if self.method == "weighted" else None,
            "data": {**self.config["data"], **self.sources},
            "noise": self.config["noise"],
        }

    def _estimate(self, model: nn.Module, noisy: torch.Tensor, device: torch.device) -> np.ndarray:
        tile = self.config["eval"]["tile"] or None
        out = metrics.denoise_image(
            model, noisy, tile=tile, overlap=self.config["eval"]["overlap"], device=device
        )
        return metrics.to_uint8_scale(out)

    def evaluate_images(
        self,
        model: nn.Module,
        device: torch.device | str = "cpu",
        limit: int | None = None,
        with_ssim: bool = True,
        keep: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Per-image scores: ``{"image", "psnr", "ssim", "noisy_psnr", "noisy_ssim"}``.

        Images named in ``keep`` also carry their estimate (``"estimate"``, 0–255 float).
        """
        device = torch.device(device)
        was_training = model.training
        model.eval()
        rows = []
        with torch.no_grad():
            for i, (name, clean, noisy) in enumerate(self.validation):
                if limit is not None and i >= limit:
                    break
                estimate = self._estimate(model, noisy, device)
                noisy255 = metrics.to_uint8_scale(noisy)
                row: dict[str, Any] = {
                    "image": name,
                    "psnr": metrics.psnr(estimate, clean),
                    "noisy_psnr": metrics.psnr(noisy255, clean),
                }
                if with_ssim:
                    row["ssim"] = metrics.ssim(estimate, clean)
                    row["noisy_ssim"] = metrics.ssim(noisy255, clean)
                if name in keep:
                    row["estimate"] = estimate
                rows.append(row)
        model.train(was_training)
        return rows


def make_task(
    config: Mapping[str, Any],
    method: str = "standard",
    data: str | Path | Sequence[str | Path] | None = None,
) -> DenoiseTask | VolumeDenoiseTask:
    """The denoising task of ``config``: on images, or on volumes when ``model.ndim`` ≥ 3.

    Args:
        config: a denoising configuration.
        method: ``"standard"`` or ``"weighted"``.
        data: images: the folder that relative ``data.train``/``data.validation`` are in;
            volumes: training volume paths replacing ``data.train``.
    """
    if is_volume_config(config):
        if isinstance(data, (str, Path)):
            data = [str(data)]
        return VolumeDenoiseTask(config, method, None if data is None else [str(d) for d in data])
    items = [data] if isinstance(data, (str, Path)) else list(data or [])
    volume_like = [str(p) for p in items if str(p).lower().endswith(
        (".nii", ".nii.gz", ".h5", ".hdf5")) or ".h5:" in str(p).lower()]
    if volume_like:
        raise ValueError(
            f"{volume_like[0]!r} is a volume, but the configuration "
            f"{config.get('name', '')!r} is an image one (model.ndim "
            f"{config.get('model', {}).get('ndim', 2)}); train on volumes with --ndim 3 "
            "(or 4), e.g. `ndwconv train denoise --ndim 3 --data scan.nii.gz`"
        )
    if data is not None and not isinstance(data, (str, Path)):
        items = list(data)
        if len(items) != 1:
            raise ValueError(
                f"an image configuration takes one data folder (ROOT), got {len(items)} paths; "
                "volumes need a 3-D model (--ndim 3)"
            )
        data = items[0]
    return DenoiseTask(config, method, data)


def load_denoiser(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a trained denoiser from a checkpoint (``.safetensors`` or its ``.json``).

    No code from the files is run: the architecture comes from the sidecar's configuration
    and the weights from safetensors.
    """
    tensors, sidecar = load_checkpoint(path)
    if sidecar.get("task") != DenoiseTask.name:
        raise ValueError(f"{str(path)!r} is a {sidecar.get('task')!r} checkpoint, not denoise")
    description = sidecar["description"]
    model_cfg = dict(description["model"])
    name = model_cfg.pop("name")
    model_cfg.setdefault("channels", description["data"].get("channels", 1))
    model = build_model(name, **model_cfg)
    if description["method"] == "weighted":
        make_weighted(model, description["density"])
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else float("nan"))


def compare(
    config: Mapping[str, Any],
    seeds: Sequence[int] = (0,),
    out_dir: str | Path = "runs/compare-denoise",
    data_root: str | Path | Sequence[str | Path] | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and score the standard and the weighted model for each seed; write a report.

    For each seed ``s``, both methods are trained by ``fit`` from the same initial weights
    on the same samples (``train.seed = s``), into ``out_dir/seed-s/<method>``, then scored
    on every validation image. Written to ``out_dir``: ``results.json`` (everything, raw),
    ``per_image.csv``, ``report.md`` (mean ± sample standard deviation over seeds) and,
    with matplotlib, ``figure.png`` (validation curves; noisy / standard / weighted / clean
    crops).

    Args:
        config: a denoising configuration.
        seeds: the seeds (distinct non-negative integers).
        out_dir: output folder.
        data_root: images: folder holding the configuration's relative data folders;
            volumes: training volume paths (see ``make_task``).
        resume: continue or reuse the runs already in ``out_dir`` (finished runs are only
            re-scored); without it, an ``out_dir`` holding runs is an error.
        progress: progress bars.

    Returns:
        The results (what ``results.json`` holds).
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be distinct non-negative integers, got {seeds}")
    check_config(config)
    if "seed" in config.get("train", {}):
        raise ValueError(
            "compare sets train.seed itself, to each of seeds; remove train.seed from the "
            "configuration"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    per_image: list[dict[str, Any]] = []
    crops: dict[str, np.ndarray] = {}
    first_image = None
    for seed in seeds:
        cfg = copy.deepcopy(dict(config))
        cfg.setdefault("train", {})["seed"] = seed
        for method in METHODS:
            task = make_task(cfg, method, data_root)
            if first_image is None:
                first_image, crops["clean"], crops["noisy"] = task.example()
            task.keep = (first_image,) if seed == seeds[0] else ()
            run_dir = out / f"seed-{seed}" / method
            has_run = (run_dir / "checkpoints").is_dir() and any(
                (run_dir / "checkpoints").glob("step-*.json")
            )
            result = fit(
                task,
                cfg,
                run_dir,
                resume=resume and has_run,
                progress=progress,
                description=f"seed {seed} {method}",
            )
            rows = task.final_rows  # None when a finished run was only resumed
            if rows is None:
                device = next(result.model.parameters()).device
                rows = task.evaluate_images(result.model, device, keep=task.keep)
            for row in rows:
                if "estimate" in row:
                    crops[method] = row.pop("estimate")
                per_image.append({"seed": seed, "method": method, **row})
            del task  # its decoded training images, before the next run decodes its own
            runs.append(
                {
                    "seed": seed,
                    "method": method,
                    "psnr": statistics.fmean(r["psnr"] for r in rows),
                    "ssim": statistics.fmean(r["ssim"] for r in rows),
                    "steps": result.step,
                    "train_seconds": result.train_seconds,
                    "samples_per_second": result.samples_per_second,
                    "history": result.history,
                    "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                    "weighted_layers": sum(1 for _ in ndwconv.weighted_layers(result.model)),
                    "parameters": sum(p.numel() for p in result.model.parameters()),
                }
            )
    volume = is_volume_config(config)
    noisy_rows = [r for r in per_image if r["seed"] == seeds[0] and r["method"] == METHODS[0]]
    summary: dict[str, Any] = {
        "noisy": {
            "psnr": statistics.fmean(r["noisy_psnr"] for r in noisy_rows),
            "ssim": statistics.fmean(r["noisy_ssim"] for r in noisy_rows),
        }
    }
    for method in METHODS:
        for key in ("psnr", "ssim"):
            values = [r[key] for r in runs if r["method"] == method]
            mean, std = _mean_std(values)
            summary.setdefault(method, {})[key] = mean
            summary[method][f"{key}_std"] = std
    for key in ("psnr", "ssim"):
        diffs = [w[key] - s[key] for s, w in zip(runs[0::2], runs[1::2], strict=True)]
        mean, std = _mean_std(diffs)
        summary.setdefault("difference", {})[key] = mean
        summary["difference"][f"{key}_std"] = std
        summary["difference"][f"{key}_per_seed"] = diffs
    results = {
        "format": RESULTS_FORMAT,
        "config": {k: v for k, v in config.items()},
        "seeds": seeds,
        "data_root": (
            None if data_root is None
            else str(data_root) if isinstance(data_root, (str, Path))
            else [str(d) for d in data_root]
        ),
        "metric_definitions": {
            "psnr": (
                "dB, 0-255 scale of the normalised intensity, vs the clean volume block; "
                "estimate clipped to [0, 255], not rounded" if volume else
                "dB, 0-255 scale, vs the clean 8-bit image; estimate clipped to [0, 255], "
                "not rounded"
            ),
            "ssim": "skimage.metrics.structural_similarity, data_range 255, Gaussian window "
            "sigma 1.5" + (" along every axis" if volume else "")
            + ", population covariance (Wang et al. 2004)",
            "std": "sample standard deviation over seeds of the per-run mean",
        },
        "summary": summary,
        "runs": runs,
        "per_image": per_image,
        "wall_seconds": time.perf_counter() - started,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "device": str(resolve_device(config.get("train", {}).get("device", "auto"))),
        },
        "versions": {"ndwconv": ndwconv.__version__, "torch": torch.__version__},
    }
    write_json(out / "results.json", results)
    _write_csv(out / "per_image.csv", per_image)
    atomic_write(out / "report.md", lambda p: p.write_text(report_markdown(results), "utf-8"))
    if _figure(results, crops, first_image, out / "figure.png") is not None:
        results["figure"] = "figure.png"
    return results


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    buffer = io.StringIO()
    fields = ["seed", "method", "image", "psnr", "ssim", "noisy_psnr", "noisy_ssim"]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write(path, lambda p: p.write_text(buffer.getvalue(), "utf-8"))


def _pm(mean: float, std: float, digits: int) -> str:
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_table(results: Mapping[str, Any]) -> str:
    """The summary as a Markdown table (mean ± standard deviation over seeds)."""
    s = results["summary"]
    n = len(results["seeds"])
    lines = [
        "| method | PSNR (dB) | SSIM | seeds |",
        "|---|---|---|---|",
        f"| noisy input | {s['noisy']['psnr']:.2f} | {s['noisy']['ssim']:.4f} | - |",
    ]
    for method in METHODS:
        m = s[method]
        lines.append(
            f"| {method} | {_pm(m['psnr'], m['psnr_std'], 2)} | "
            f"{_pm(m['ssim'], m['ssim_std'], 4)} | {n} |"
        )
    d = s["difference"]
    lines.append(
        f"| weighted − standard | {_pm(d['psnr'], d['psnr_std'], 2)} | "
        f"{_pm(d['ssim'], d['ssim_std'], 4)} | {n} |"
    )
    return "\n".join(lines)


def verdict(results: Mapping[str, Any]) -> str:
    """One paragraph: the mean paired difference against the seed-to-seed spread."""
    s = results["summary"]
    diffs = s["difference"]["psnr_per_seed"]
    if len(diffs) < 2:
        return (
            "One seed only: there is no seed spread to compare the difference with; run "
            "with `--seeds 3` or more before drawing a conclusion."
        )
    mean, paired = s["difference"]["psnr"], s["difference"]["psnr_std"]
    spreads = (s["standard"]["psnr_std"], s["weighted"]["psnr_std"])
    wins = sum(d > 0 for d in diffs)
    above_methods = abs(mean) > max(spreads)
    above_paired = abs(mean) > paired
    if above_methods and above_paired:
        conclusion = "larger than the seed spread, by either measure"
    elif above_paired:
        conclusion = (
            "larger than the spread of the paired differences but not than the seed spread "
            "of each method"
        )
    elif above_methods:
        conclusion = (
            "larger than each method's seed spread but not than the spread of the paired "
            "differences"
        )
    else:
        conclusion = "not larger than the seed spread"
    return (
        f"Weighted − standard PSNR: {mean:+.3f} dB (per seed: "
        f"{', '.join(f'{d:+.3f}' for d in diffs)}; weighted better in {wins} of {len(diffs)}). "
        f"Seed spread (sample standard deviation over {len(diffs)} seeds): "
        f"{spreads[0]:.3f} dB standard, {spreads[1]:.3f} dB weighted, {paired:.3f} dB for the "
        f"paired difference. The mean difference is {conclusion}."
    )


def _data_line(cfg: Mapping[str, Any], data_root: Any) -> str:
    data = cfg.get("data", {})
    if isinstance(data_root, list):  # volumes given on the command line
        return (
            f"Data: train {', '.join(f'`{p}`' for p in data_root)} (--data), validation "
            f"`{data.get('validation', 'holdout')}`."
        )
    return (
        f"Data: train `{data.get('train')}`, validation `{data.get('validation')}`"
        + (f" under `{data_root}`." if data_root else ".")
    )


def report_markdown(results: Mapping[str, Any]) -> str:
    """The Markdown report of a comparison."""
    cfg = results["config"]
    train = validate(cfg)["train"]
    runs = results["runs"]
    lines = [
        f"# Denoising: standard vs weighted convolution ({cfg.get('name', '?')})",
        "",
        f"Model `{json.dumps(cfg.get('model', {}))}`, density "
        f"`{cfg.get('weighted', {}).get('density', 'default')}`; "
        f"{cfg.get('noise', {}).get('kind', 'gaussian')} noise σ = "
        f"{cfg.get('noise', {}).get('sigma')} (training), "
        f"{cfg.get('noise', {}).get('validation_sigma', cfg.get('noise', {}).get('sigma'))} "
        f"(validation); {train.get('steps')} steps of batch {train.get('batch_size')} per run; "
        f"seeds {', '.join(map(str, results['seeds']))}.",
        _data_line(cfg, results.get("data_root")),
        "",
        format_table(results),
        "",
        verdict(results),
        "",
        "PSNR: "
        + results["metric_definitions"]["psnr"]
        + ". SSIM: "
        + results["metric_definitions"]["ssim"]
        + ". ± is the "
        + results["metric_definitions"]["std"]
        + ".",
        "",
        "## Runs",
        "",
        "| seed | method | PSNR (dB) | SSIM | steps | train time (s) | samples/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['seed']} | {r['method']} | {r['psnr']:.3f} | {r['ssim']:.4f} | {r['steps']} "
            f"| {r['train_seconds']:.0f} | {r['samples_per_second']:.1f} |"
        )
    machine = results["machine"]
    lines += [
        "",
        f"Machine: {machine['processor']}, {machine['platform']}, {machine['torch_threads']} "
        f"torch threads, device {machine['device']}; ndwconv {results['versions']['ndwconv']}, "
        f"torch {results['versions']['torch']}. Training time, summed over the runs: "
        f"{sum(r['train_seconds'] for r in runs) / 60:.1f} min; wall time of this invocation "
        f"(runs resumed here count only their rescoring): {results['wall_seconds'] / 60:.1f} min.",
        "",
        "Files: `results.json` (raw), `per_image.csv`, `figure.png`, and each run's "
        "`seed-S/METHOD/` folder (checkpoints, `metrics.jsonl`, `curves.png`).",
        "",
    ]
    return "\n".join(lines)


def _figure(
    results: Mapping[str, Any], crops: Mapping[str, np.ndarray], image: str | None, png: Path
) -> Path | None:
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
    ax = fig.add_subplot(grid[:, 0] if volume else grid[0, 0])
    colours = {"standard": "tab:blue", "weighted": "tab:orange"}
    for run in results["runs"]:
        pts = [(h["step"], h["psnr"]) for h in run["history"] if "psnr" in h]
        if pts:
            ax.plot(
                *zip(*pts, strict=True),
                color=colours[run["method"]],
                alpha=0.8,
                marker="o",
                ms=3,
                label=f"{run['method']} (seed {run['seed']})",
            )
    ax.set(xlabel="step", ylabel="validation PSNR (dB)", title="validation during training")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
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
