"""The denoising task: series (1-D), images (2-D) and volumes (3-D, 4-D) on one base.

``ndwconv train denoise`` / ``ndwconv compare denoise`` train DnCNN or NAFNet on images
(``images``), N-D DnCNN on NIfTI/HDF5 volumes when ``model.ndim`` ≥ 3 (``volumes``), or
a 1-D DnCNN on a series (ECG, sensor traces) when ``model.ndim`` is 1 (``series``);
``ndwconv denoise`` applies a trained checkpoint to volumes tile by tile, and a 1-D one to
NetCDF-4/HDF5 time series chunk by chunk (``command``, ``series_files``).
The task is registered under the name ``denoise`` (``ndwconv.recipes.tasks``).

Example:
    >>> import ndwconv
    >>> from ndwconv.recipes.engine import load_config
    >>> net = build_model(load_config("quick", ["weighted.density='table:0.7'"]), "weighted")
    >>> sorted({str(layer.density) for _, layer in ndwconv.weighted_layers(net)})
    ['table:0.7']
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ndwconv.adapters.volumes import is_physical

from ...engine.task import Metric
from .. import TaskEntry, load_model, register_task
from .base import METRICS, SERIES_METRICS, baselines, build_denoiser
from .config import check_config, is_series_config, is_volume_config
from .images import DenoiseTask
from .report import figure, metric_definitions, report_footer, report_header, report_sections
from .series import SeriesDenoiseTask
from .series_data import is_series_path
from .volumes import VolumeDenoiseTask, resolve_density

__all__ = [
    "DenoiseTask",
    "SeriesDenoiseTask",
    "VolumeDenoiseTask",
    "build_model",
    "load_denoiser",
    "make_task",
]


def make_task(
    config: Mapping[str, Any],
    method: str = "standard",
    data: str | Path | Sequence[str | Path] | None = None,
) -> DenoiseTask | VolumeDenoiseTask | SeriesDenoiseTask:
    """The denoising task of ``config``: on images, on volumes when ``model.ndim`` ≥ 3, on
    series when ``model.ndim`` is 1.

    Args:
        config: a denoising configuration.
        method: ``"standard"`` or ``"weighted"``.
        data: images: the folder that relative ``data.train``/``data.validation`` are in;
            volumes: training volume paths replacing ``data.train``; series: series
            sources (``file.csv:column``, ``file.npy``) replacing ``data.train``.
    """
    if is_volume_config(config) or is_series_config(config):
        if isinstance(data, (str, Path)):
            data = [str(data)]
        kind = VolumeDenoiseTask if is_volume_config(config) else SeriesDenoiseTask
        return kind(config, method, None if data is None else [str(d) for d in data])
    items = [data] if isinstance(data, (str, Path)) else list(data or [])
    series_like = [str(p) for p in items if is_series_path(str(p))]
    if series_like:
        raise ValueError(
            f"{series_like[0]!r} is a series, but the configuration "
            f"{config.get('name', '')!r} is an image one (model.ndim "
            f"{config.get('model', {}).get('ndim', 2)}); train on series with a 1-D model, "
            "e.g. `ndwconv train denoise --ndim 1 --data ecg.csv:lead`"
        )
    volume_like = [
        str(p)
        for p in items
        if str(p).lower().endswith((".nii", ".nii.gz", ".h5", ".hdf5")) or ".h5:" in str(p).lower()
    ]
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


def build_model(config: Mapping[str, Any], method: str) -> nn.Module:
    """The network of ``config`` for ``method``, without reading any data.

    A density in millimetres is resolved against a 1 mm spacing here: which layers a
    density fits does not depend on the spacing.

    Raises:
        ValueError: a bad configuration, or a density that does not fit a layer (named).
    """
    tables = check_config(config)
    model = dict(tables["model"])
    density = tables["weighted"]["density"] if method == "weighted" else None
    if is_volume_config(config):
        if density is not None and is_physical(density):
            ndim = int(model["ndim"])
            density = resolve_density(density, ndim, [("", (1.0,) * ndim)])
    elif not is_series_config(config):
        model = {"channels": tables["data"]["channels"], **model}
    return build_denoiser(model, method, density)


# What a checkpoint's description may ask to build, checked before anything is allocated.
MAX_MODEL_SIZE = {"ndim": 4, "kernel_size": 15, "depth": 512, "width": 2048, "channels": 64}
MAX_SIZE = 2048
"""Bound on any other integer of a described ``[model]`` table (e.g. NAFNet's widths)."""
MAX_PARAMETERS = 1_000_000_000
"""Bound on a described DnCNN's parameter count (≈ width² · depth · kernel_size^ndim)."""


def _check_model_size(model: Mapping[str, Any]) -> None:
    """Refuse a described model too large to be a real checkpoint's, before building it."""

    def check(key: str, value: Any) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, int):
            bound = MAX_MODEL_SIZE.get(key, MAX_SIZE)
            if not 0 <= value <= bound:
                raise ValueError(f"model.{key} = {value} is outside [0, {bound}]")
        elif isinstance(value, (list, tuple)):
            for item in value:
                check(key, item)

    for key, value in model.items():
        check(key, value)

    def number(key: str, default: int) -> int:
        value = model.get(key, default)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    width, depth = number("width", 64), number("depth", 17)
    ndim, kernel = number("ndim", 2), model.get("kernel_size", 3)
    sizes = kernel if isinstance(kernel, (list, tuple)) else [kernel] * ndim
    taps = math.prod(k if isinstance(k, int) and not isinstance(k, bool) else 3 for k in sizes)
    estimate = width * width * depth * taps
    if estimate > MAX_PARAMETERS:
        raise ValueError(
            f"model.width {width}, model.depth {depth}, model.kernel_size {kernel} and "
            f"model.ndim {ndim} would make about {estimate:.2g} parameters (more than "
            f"{MAX_PARAMETERS:.0e})"
        )


def model_from_description(description: Mapping[str, Any]) -> nn.Module:
    """The untrained network a checkpoint sidecar's ``description`` records.

    The sizes it asks for are bounded (``MAX_MODEL_SIZE``, ``MAX_PARAMETERS``) before
    anything is allocated.

    Raises:
        ValueError: a field is missing or of the wrong type, or the model is too large.
    """
    try:
        model = dict(description["model"])
        method, density = description["method"], description.get("density")
    except (KeyError, TypeError) as err:
        raise ValueError(f"not a denoising checkpoint description (missing {err})") from None
    if not isinstance(model.get("name"), str):
        raise ValueError(f"model.name must be a model name, got {model.get('name')!r}")
    if density is not None and not isinstance(density, str):
        if not (isinstance(density, dict) and "format" in density):
            raise ValueError(
                f"density must be a density spec string or a density file's document, "
                f"got {density!r}"
            )
    if "channels" not in model and not model.get("ndim", 2) >= 3:
        data = description.get("data", {})
        model["channels"] = data.get("channels", 1) if isinstance(data, dict) else 1
    _check_model_size(model)
    return build_denoiser(model, method, density)


def load_denoiser(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a trained denoiser from a checkpoint (``.safetensors`` or its ``.json``).

    No code from the files is run: the architecture comes from the sidecar's description
    and the weights from safetensors.

    Raises:
        ValueError: the checkpoint is not a denoising one.
    """
    return load_model(path, device, task="denoise")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ndim",
        type=int,
        metavar="N",
        help="shorthand for --set model.ndim=N; 1 trains on series, 3 or more on volumes",
    )
    parser.add_argument(
        "--noise",
        metavar="KIND:SIGMA",
        help="shorthand for noise.kind and noise.sigma (volumes), e.g. rician:15 or "
        "gaussian:25; σ on the 0–255 scale",
    )


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = []
    if args.ndim is not None:
        overrides.append(f"model.ndim={args.ndim}")
    if args.noise is not None:
        kind, sep, sigma = args.noise.partition(":")
        if not sep or not sigma:
            raise ValueError(
                f"--noise must look like KIND:SIGMA (e.g. rician:15), got {args.noise!r}"
            )
        overrides += [f"noise.kind={json.dumps(kind)}", f"noise.sigma={sigma}"]
    return overrides


def _default_config(args: argparse.Namespace) -> str:
    ndim = getattr(args, "ndim", None)
    if ndim == 1:
        return "ecg"
    return "mni" if ndim is not None and ndim >= 3 else "quick"


def metrics_for(config: Mapping[str, Any]) -> tuple[Metric, ...]:
    """PSNR and SNR for series, PSNR and SSIM for images and volumes."""
    return SERIES_METRICS if is_series_config(config) else METRICS


ENTRY = register_task(
    TaskEntry(
        name="denoise",
        help="denoising: DnCNN/NAFNet on images, N-D DnCNN on volumes, 1-D DnCNN on series",
        metrics=METRICS,
        make=make_task,
        check_config=check_config,
        build_model=build_model,
        model_from_description=model_from_description,
        default_config=_default_config,
        add_arguments=_arguments,
        overrides=_overrides,
        data_help="images: the folder (ROOT) holding the configuration's relative data "
        "folders (e.g. Train400/ and BSD68/), required by every built-in image configuration "
        "but quick; volumes (--ndim ≥ 3): the training volumes, NIfTI files or "
        "file.h5:/dataset (default: the configuration's data.train); series (--ndim 1): "
        "file.csv:column or file.npy, split into a training and a held-out part",
        baselines=baselines,
        metric_definitions=metric_definitions,
        metrics_for=metrics_for,
        report_header=report_header,
        report_sections=report_sections,
        report_footer=report_footer,
        figure=figure,
        item="image",
    )
)
