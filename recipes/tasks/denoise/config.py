"""Denoising configurations: the tables, their defaults, and the one check of them.

A configuration whose ``model.ndim`` is 3 or more is a *volume* configuration
(``ndwconv.recipes.tasks.denoise.volumes``), one whose ``model.ndim`` is 1 a *series*
configuration (``ndwconv.recipes.tasks.denoise.series``), any other an *image* one
(``ndwconv.recipes.tasks.denoise.images``); all share ``[model]``, ``[noise]``, ``[eval]``
and ``[weighted]`` and differ in ``[data]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ndwconv.adapters.volumes import physical_density

from ...engine.config import check_section, check_sections
from ...engine.task import loss_by_name
from ...models import read_density
from .base import LOSS_NAMES
from .data import NoiseSpec
from .series_data import EMBEDDED_MITDB
from .volume_data import NOISE_KINDS

__all__ = [
    "EMBEDDED_MNI",
    "check_config",
    "check_series_config",
    "check_volume_config",
    "is_series_config",
    "is_volume_config",
]

EMBEDDED_MNI = "embedded:mni152"

IMAGE_DATA_SCHEMA: dict[str, Any] = {
    "train": str,
    "validation": str,
    "channels": int,
    "patch_size": int,
    "augment": bool,
    "length": int,
}
IMAGE_DATA_DEFAULTS: dict[str, Any] = {
    "train": "embedded:train",
    "validation": "embedded:validation",
    "channels": 1,
    "patch_size": 40,
    "augment": True,
}
NOISE_SCHEMA: dict[str, Any] = {"sigma": (float, str), "validation_sigma": float, "kind": str}
EVAL_SCHEMA: dict[str, Any] = {
    "tile": int,
    "overlap": int,
    "seed": int,
    "curve_images": int,
    "classical": bool,
}
EVAL_DEFAULTS: dict[str, Any] = {
    "tile": 0,
    "overlap": 32,
    "seed": 0,
    "curve_images": 0,
    "classical": True,
}
"""``classical``: score the classical yardstick (BM3D on images, non-local means on
volumes; ``ndwconv.recipes.tasks.denoise.classical``) in a comparison's report."""
WEIGHTED_SCHEMA: dict[str, Any] = {"density": str}
TASK_SECTIONS = ("model", "data", "noise", "eval", "weighted")


VOLUME_DATA_SCHEMA: dict[str, Any] = {
    "train": (str, list),
    "validation": (str, list),
    "holdout": float,
    "holdout_axis": int,
    "percentiles": list,
    "crop": str,
    "patch_size": int,
    "flips": bool,
    "min_foreground": float,
    "foreground_level": float,
    "length": int,
}
VOLUME_DATA_DEFAULTS: dict[str, Any] = {
    "train": EMBEDDED_MNI,
    "validation": "holdout",
    "holdout": 0.25,
    "holdout_axis": -1,
    "percentiles": [0.5, 99.5],
    "crop": "none",
    "patch_size": 32,
    "flips": True,
    "min_foreground": 0.0,
    "foreground_level": 0.1,
}


SERIES_DATA_SCHEMA: dict[str, Any] = {
    "train": (str, list),
    "holdout": float,
    "gap": int,
    "percentiles": list,
    "patch_size": int,
    "sampling_rate": float,
    "length": int,
}
SERIES_DATA_DEFAULTS: dict[str, Any] = {
    "train": EMBEDDED_MITDB,
    "holdout": 0.3,
    "gap": 0,
    "percentiles": [0.0, 100.0],
    "patch_size": 256,
}


def is_series_config(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` is a series configuration (``model.ndim`` = 1)."""
    ndim = config.get("model", {}).get("ndim", 2)
    return isinstance(ndim, int) and not isinstance(ndim, bool) and ndim == 1


def check_series_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[data]`` and ``[noise]`` tables of a series configuration, defaults filled in."""
    data = {**SERIES_DATA_DEFAULTS, **check_section(config, "data", SERIES_DATA_SCHEMA)}
    items = [data["train"]] if isinstance(data["train"], str) else list(data["train"])
    if not items or not all(isinstance(v, str) and v for v in items):
        raise ValueError("data.train must be a series source or a non-empty list of them")
    data["train"] = items
    if not 0 < data["holdout"] < 1:
        raise ValueError(f"data.holdout must be in (0, 1), got {data['holdout']}")
    if data["gap"] < 0:
        raise ValueError(f"data.gap must be ≥ 0, got {data['gap']}")
    percentiles = data["percentiles"]
    if (
        len(percentiles) != 2
        or not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in percentiles)
        or not 0 <= percentiles[0] < percentiles[1] <= 100
    ):
        raise ValueError(
            f"data.percentiles must be [low, high] with 0 ≤ low < high ≤ 100, got {percentiles!r}"
        )
    if data["patch_size"] < 1:
        raise ValueError(f"data.patch_size must be ≥ 1, got {data['patch_size']}")
    rate = data.get("sampling_rate")
    if rate is not None and not 0 < rate < float("inf"):
        raise ValueError(f"data.sampling_rate must be a number of Hz > 0, got {rate}")
    noise = _check_noise(config)
    if noise["kind"] != "gaussian":
        raise ValueError(
            f"noise.kind {noise['kind']!r}: the series recipe adds Gaussian noise only"
        )
    return {"data": data, "noise": noise}


def is_volume_config(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` is a volume configuration (``model.ndim`` ≥ 3)."""
    ndim = config.get("model", {}).get("ndim", 2)
    return isinstance(ndim, int) and not isinstance(ndim, bool) and ndim >= 3


def volume_paths(value: str | list, key: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    if not items or not all(isinstance(v, str) and v for v in items):
        raise ValueError(f"data.{key} must be a volume path or a non-empty list of them")
    return items


def check_volume_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[data]`` and ``[noise]`` tables of a volume configuration, defaults filled in."""
    data = {**VOLUME_DATA_DEFAULTS, **check_section(config, "data", VOLUME_DATA_SCHEMA)}
    train = volume_paths(data["train"], "train")
    validation = data["validation"]
    if validation != "holdout":
        volume_paths(validation, "validation")
    if not 0 < data["holdout"] < 1:
        raise ValueError(f"data.holdout must be in (0, 1), got {data['holdout']}")
    percentiles = data["percentiles"]
    if len(percentiles) != 2 or not all(
        isinstance(p, (int, float)) and not isinstance(p, bool) for p in percentiles
    ):
        raise ValueError(f"data.percentiles must be [low, high], got {percentiles!r}")
    if data["crop"] not in ("none", "foreground"):
        raise ValueError(f"data.crop must be 'none' or 'foreground', got {data['crop']!r}")
    if data["patch_size"] < 1:
        raise ValueError(f"data.patch_size must be ≥ 1, got {data['patch_size']}")
    for key in ("min_foreground", "foreground_level"):
        if not 0 <= data[key] <= 1:
            raise ValueError(f"data.{key} must be in [0, 1], got {data[key]}")
    data["train"] = train
    noise = _check_noise(config)
    if noise["kind"] not in NOISE_KINDS:
        raise ValueError(
            f"noise.kind must be one of {', '.join(NOISE_KINDS)}, got {noise['kind']!r}"
        )
    return {"data": data, "noise": noise}


def _check_noise(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[noise]`` table, ``kind`` defaulting to Gaussian and ``validation_sigma`` to
    ``sigma`` (a fixed one)."""
    noise = {"kind": "gaussian", **check_section(config, "noise", NOISE_SCHEMA)}
    if "sigma" not in noise:
        raise ValueError("config key noise.sigma is missing (σ on the 0–255 scale)")
    spec = NoiseSpec.parse(str(noise["sigma"]))
    if "validation_sigma" not in noise:
        if isinstance(spec.sigma, tuple):
            raise ValueError("noise.validation_sigma is required when noise.sigma is a range")
        noise["validation_sigma"] = spec.sigma
    return noise


def check_config(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The denoising tables with defaults filled in; unknown sections or keys are errors."""
    check_sections(config, TASK_SECTIONS)
    model = dict(config.get("model", {}))
    if "name" not in model:
        raise ValueError("config key model.name is missing (dncnn or nafnet)")
    volume = is_volume_config(config)
    series = is_series_config(config)
    if volume or series:
        tables = check_volume_config(config) if volume else check_series_config(config)
        data, noise = tables["data"], tables["noise"]
    else:
        data = {**IMAGE_DATA_DEFAULTS, **check_section(config, "data", IMAGE_DATA_SCHEMA)}
        explicit_kind = "kind" in config.get("noise", {})
        noise = _check_noise(config)
        if noise["kind"] != "gaussian":
            raise ValueError(
                f"noise.kind {noise['kind']!r}: the image recipe adds Gaussian noise only "
                "(Rician noise is for volumes, --ndim 3)"
            )
        if not explicit_kind:
            del noise["kind"]  # image configurations record only what they were given
    evals = {**EVAL_DEFAULTS, **check_section(config, "eval", EVAL_SCHEMA)}
    for key in ("tile", "overlap", "seed", "curve_images"):
        if evals[key] < 0:
            raise ValueError(f"eval.{key} must be ≥ 0, got {evals[key]}")
    if evals["tile"] and evals["tile"] <= evals["overlap"]:
        raise ValueError(f"eval.tile ({evals['tile']}) must exceed eval.overlap")
    loss_by_name(config.get("train", {}).get("loss", "mse"), LOSS_NAMES)
    weighted = {"density": "default", **check_section(config, "weighted", WEIGHTED_SCHEMA)}
    family = read_density(weighted["density"])  # fails early on a bad spec or file
    if getattr(family, "unit", None) is not None:
        if not volume:
            raise ValueError(
                f"weighted.density {weighted['density']!r} is given in {family.unit}; "
                + (
                    "a series configuration takes distances in samples (e.g. 'gaussian:1.2')"
                    if series
                    else "an image configuration takes distances in pixels (e.g. 'gaussian:1.2')"
                )
            )
        physical_density(family, (1.0,))  # a time unit is refused; the spacing comes later
    for key in ("channels", "patch_size"):
        if key in data and data[key] < 1:
            raise ValueError(f"data.{key} must be ≥ 1, got {data[key]}")
    return {"model": model, "data": data, "noise": noise, "eval": evals, "weighted": weighted}
