"""The denoising recipe on volumes: 3-D (and 4-D) networks trained on NIfTI/HDF5 volumes.

A configuration whose ``model.ndim`` is 3 or more is a *volume* configuration: the same
``[model]``, ``[noise]``, ``[eval]``, ``[weighted]`` and trainer tables as the image
recipe (see ``ndwconv.recipes.denoise``), with this ``[data]`` table:

``train``
    A volume path or a list of them (``scan.nii.gz``, ``stack.h5:/group/dataset``), or
    ``"embedded:mni152"``: the MNI152 2009a symmetric T1 template that nilearn ships
    (``nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``,
    197 × 233 × 189 voxels of 1 mm, uint8; ``pip install "ndwconv[examples]"``).
    With a 3-D model, a 4-D volume (3-D + time) counts as one volume per frame.
``validation``
    ``"holdout"`` (default): the last ``holdout`` fraction (default 0.25) of each training
    volume along spatial axis ``holdout_axis`` (default −1, the last) is set aside for
    validation and never sampled for training. Or a path / list of paths of other volumes.
``percentiles``
    ``[low, high]``, default ``[0.5, 99.5]``: each volume is mapped to [0, 1] by these
    percentiles of its intensities and clipped (``ndwconv.recipes.volume_data.normalise``).
``crop``
    ``"foreground"`` crops each normalised volume to the bounding box of its voxels above
    ``foreground_level`` before the hold-out split (so that the held-out part is not
    empty background); ``"none"`` (default) keeps it whole.
``patch_size``, ``flips``, ``min_foreground``, ``foreground_level``, ``length``
    As ``VolumePatches`` takes them.

``[noise]`` adds ``kind``: ``"gaussian"`` (default) or ``"rician"`` (the magnitude noise
of MRI); σ is on the 0–255 scale of the normalised intensity.

Densities in millimetres: ``weighted.density = "gaussian:1.0mm"`` is resolved against the
training volumes' voxel spacing (``ndwconv.adapters.volumes.physical_density``), which must
be the same for all of them; the checkpoint records the resolved density.

Scores: PSNR in dB and SSIM (N-D, Gaussian window σ = 1.5) on the 0–255 scale of the
normalised intensity, over each whole validation block, the estimate clipped to [0, 255].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import metrics
from ._scoring import ScoredTask
from .config import check_section
from .data import NoiseSpec, _seeded_generator
from .models import build_model, make_weighted
from .volume_data import NOISE_KINDS, VolumePatches, add_noise, normalise

__all__ = [
    "EMBEDDED_MNI",
    "VolumeDenoiseTask",
    "check_volume_config",
    "is_volume_config",
    "mni152_path",
]

EMBEDDED_MNI = "embedded:mni152"
_MNI_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"

DATA_SCHEMA: dict[str, Any] = {
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
DATA_DEFAULTS: dict[str, Any] = {
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
NOISE_SCHEMA: dict[str, Any] = {"sigma": (float, str), "validation_sigma": float, "kind": str}


def is_volume_config(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` is a volume configuration (``model.ndim`` ≥ 3)."""
    ndim = config.get("model", {}).get("ndim", 2)
    return isinstance(ndim, int) and not isinstance(ndim, bool) and ndim >= 3


def mni152_path() -> Path:
    """The MNI152 T1 template file that nilearn ships (no download).

    Raises:
        ImportError: if nilearn is not installed.
    """
    try:
        import nilearn.datasets
    except ImportError as err:
        raise ImportError(
            f"{EMBEDDED_MNI} is the MNI152 template shipped with nilearn, which is not "
            'installed: pip install "ndwconv[examples]"'
        ) from err
    path = Path(nilearn.datasets.__file__).parent / "data" / _MNI_FILE
    if not path.is_file():
        raise FileNotFoundError(f"nilearn {nilearn.__version__} has no {_MNI_FILE}")
    return path


def _paths(value: str | list, key: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    if not items or not all(isinstance(v, str) and v for v in items):
        raise ValueError(f"data.{key} must be a volume path or a non-empty list of them")
    return items


def check_volume_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[data]`` and ``[noise]`` tables of a volume configuration, defaults filled in."""
    data = {**DATA_DEFAULTS, **check_section(config, "data", DATA_SCHEMA)}
    train = _paths(data["train"], "train")
    validation = data["validation"]
    if validation != "holdout":
        _paths(validation, "validation")
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
    noise = {"kind": "gaussian", **check_section(config, "noise", NOISE_SCHEMA)}
    if noise["kind"] not in NOISE_KINDS:
        raise ValueError(f"noise.kind must be one of {', '.join(NOISE_KINDS)}, got "
                         f"{noise['kind']!r}")
    if "sigma" not in noise:
        raise ValueError("config key noise.sigma is missing (σ on the 0–255 scale)")
    spec = NoiseSpec.parse(str(noise["sigma"]))
    if "validation_sigma" not in noise:
        if isinstance(spec.sigma, tuple):
            raise ValueError("noise.validation_sigma is required when noise.sigma is a range")
        noise["validation_sigma"] = spec.sigma
    return {"data": data, "noise": noise}


def _read_volumes(paths: Sequence[str], ndim: int, key: str) -> list[tuple[str, Any, Any]]:
    """``(name, float32 array, spacing)`` per volume; 4-D series split into frames when
    the model is 3-D."""
    from ndwconv.adapters import volumes

    found = []
    for path in paths:
        if path == EMBEDDED_MNI:
            source, name = str(mni152_path()), "mni152"
        else:
            source, name = path, Path(volumes.split_path(path)[0]).name
        with volumes.load(source) as volume:
            array = np.asarray(volume.read(), dtype=np.float32)
            spacing = tuple(float(s) for s in volume.spacing[:ndim])
        if array.ndim == ndim:
            found.append((name, array, spacing))
        elif array.ndim == ndim + 1 and ndim == 3:
            found += [(f"{name}[t={t}]", array[..., t], spacing) for t in range(array.shape[-1])]
        else:
            raise ValueError(
                f"data.{key}: {path!r} has {array.ndim} axes {array.shape}; a {ndim}-D model "
                f"needs {ndim}-D volumes" + (" (or 4-D series, frame by frame)" if ndim == 3
                                             else "")
            )
    return found


def _foreground_box(volume: np.ndarray, level: float) -> tuple[slice, ...]:
    mask = volume > level
    if not mask.any():
        return tuple(slice(None) for _ in volume.shape)
    index = np.argwhere(mask)
    return tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(index.min(0), index.max(0),
                                                               strict=True))


class VolumeDenoiseTask(ScoredTask):
    """The denoising task on volumes, for ``ndwconv.recipes.train.fit``.

    Args:
        config: a volume configuration (see the module docstring).
        method: ``"standard"`` or ``"weighted"``.
        data: training volume paths that replace ``data.train`` (None: the config's).
    """

    name = "denoise"

    def __init__(
        self,
        config: Mapping[str, Any],
        method: str = "standard",
        data: str | Sequence[str] | None = None,
    ):
        from .denoise import METHODS, check_config

        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if data is not None:
            config = {**config, "data": {**config.get("data", {}),
                                          "train": [data] if isinstance(data, str)
                                          else [str(p) for p in data]}}
        self.config = check_config(config)
        self.method = method
        self.seed = int(config.get("train", {}).get("seed", 0))
        self.ndim = int(self.config["model"]["ndim"])
        data_cfg = self.config["data"]
        low, high = data_cfg["percentiles"]
        train_items = _read_volumes(data_cfg["train"], self.ndim, "train")
        if data_cfg["validation"] == "holdout":
            validation_items = None
        else:
            validation_items = _read_volumes(
                _paths(data_cfg["validation"], "validation"), self.ndim, "validation"
            )
        self.spacing = train_items[0][2]
        self.spacings = [(name, spacing) for name, _, spacing in train_items]

        def prepare(items: list[tuple[str, Any, Any]], key: str) -> list[tuple[str, np.ndarray]]:
            prepared = []
            for name, array, _ in items:
                try:
                    normalised, _ = normalise(array, low, high)
                except ValueError as err:
                    raise ValueError(f"data.{key}: {name}: {err}") from None
                if data_cfg["crop"] == "foreground":
                    normalised = normalised[_foreground_box(normalised,
                                                            data_cfg["foreground_level"])]
                prepared.append((name, np.ascontiguousarray(normalised)))
            return prepared

        train = prepare(train_items, "train")
        del train_items
        if validation_items is None:
            axis = data_cfg["holdout_axis"]
            if not -self.ndim <= axis < self.ndim:
                raise ValueError(f"data.holdout_axis must be in [−{self.ndim}, {self.ndim}), "
                                 f"got {axis}")
            axis %= self.ndim
            kept, held = [], []
            for name, volume in train:
                size = volume.shape[axis]
                cut = size - round(size * data_cfg["holdout"])
                index = [slice(None)] * self.ndim
                index[axis] = slice(0, cut)
                kept.append((name, volume[tuple(index)]))
                index[axis] = slice(cut, size)
                held.append((f"{name}[holdout]", volume[tuple(index)]))
            train, validation = kept, held
        else:
            validation = prepare(validation_items, "validation")
        patch = data_cfg["patch_size"]
        for name, volume in train:
            if min(volume.shape) < patch:
                raise ValueError(
                    f"data.patch_size {patch} is larger than the training part of {name}, "
                    f"shape {volume.shape}: lower data.patch_size or data.holdout"
                )
        for name, volume in validation:
            if min(volume.shape) < 11:
                raise ValueError(
                    f"validation block {name} has shape {volume.shape}; SSIM needs at least "
                    "11 voxels per axis: raise data.holdout or give data.validation volumes"
                )
        self.train_shapes = {name: list(v.shape) for name, v in train}
        self._validation_volumes = validation
        self.dataset = VolumePatches(
            [v for _, v in train],
            patch,
            NoiseSpec.parse(str(self.config["noise"]["sigma"])),
            kind=self.config["noise"]["kind"],
            seed=self.seed,
            flips=data_cfg["flips"],
            min_foreground=data_cfg["min_foreground"],
            foreground_level=data_cfg["foreground_level"],
            length=data_cfg.get("length"),
        )
        self.density = self._resolve_density()
        self._validation: list[tuple[str, np.ndarray, torch.Tensor]] | None = None
        self.keep: tuple[str, ...] = ()
        self.final_rows: list[dict[str, Any]] | None = None

    def _resolve_density(self) -> str | None:
        if self.method != "weighted":
            return None
        from ndwconv.adapters.volumes import is_physical, physical_density

        spec = self.config["weighted"]["density"]
        if is_physical(spec):
            if self.ndim != 3:
                raise ValueError(
                    f"weighted.density {spec!r} is in mm, which only 3-D models take; for a "
                    f"{self.ndim}-D model give σ in voxels per axis, e.g. "
                    "'gaussian:1,1,1,1;spacing=2,2,2,1'"
                )
            if any(not np.allclose(s, self.spacing, rtol=1e-3) for _, s in self.spacings):
                listing = ", ".join(f"{n} {s}" for n, s in self.spacings)
                raise ValueError(
                    f"weighted.density {spec!r} is in mm but the training volumes have "
                    f"different voxel spacings ({listing})"
                )
            return str(physical_density(spec, self.spacing))
        return str(spec)

    @property
    def validation(self) -> list[tuple[str, np.ndarray, torch.Tensor]]:
        """``(name, clean [0, 1] array, noisy (1, *spatial) tensor)`` per validation block;
        the noise is fixed by ``eval.seed`` and the block's position in the list."""
        if self._validation is None:
            sigma = float(self.config["noise"]["validation_sigma"])
            items = []
            for i, (name, clean) in enumerate(self._validation_volumes):
                generator = _seeded_generator(self.config["eval"]["seed"], i, 3)
                noisy = add_noise(torch.from_numpy(clean)[None], sigma,
                                  self.config["noise"]["kind"], generator)
                items.append((name, clean, noisy))
            self._validation = items
        return self._validation

    def example(self) -> tuple[str, np.ndarray, np.ndarray]:
        """``(name, clean, noisy)`` of the first validation block, on the 0–255 scale."""
        name, clean, noisy = self.validation[0]
        return name, clean.astype(np.float64) * 255.0, noisy[0].double().numpy() * 255.0

    def build_model(self) -> nn.Module:
        model_cfg = dict(self.config["model"])
        name = model_cfg.pop("name")
        model = build_model(name, **model_cfg)
        if self.method == "weighted":
            make_weighted(model, self.density)
        return model

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "model": self.config["model"],
            "density": self.density,
            "data": {**self.config["data"], "channels": 1, "volumes": True,
                     "train_shapes": self.train_shapes},
            "noise": self.config["noise"],
            "spacing": list(self.spacing),
        }

    def evaluate_images(
        self,
        model: nn.Module,
        device: torch.device | str = "cpu",
        limit: int | None = None,
        with_ssim: bool = True,
        keep: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Per-block scores: ``{"image", "psnr", "ssim", "noisy_psnr", "noisy_ssim"}``;
        blocks named in ``keep`` also carry ``"estimate"`` (0–255 float array)."""
        device = torch.device(device)
        was_training = model.training
        model.eval()
        tile = self.config["eval"]["tile"] or None
        rows = []
        with torch.no_grad():
            for i, (name, clean, noisy) in enumerate(self.validation):
                if limit is not None and i >= limit:
                    break
                out = metrics.denoise_image(model, noisy, tile=tile,
                                            overlap=self.config["eval"]["overlap"], device=device)
                estimate = out[0].double().numpy() * 255.0
                clean255 = clean.astype(np.float64) * 255.0
                noisy255 = noisy[0].double().numpy() * 255.0
                row: dict[str, Any] = {
                    "image": name,
                    "psnr": metrics.psnr(estimate, clean255),
                    "noisy_psnr": metrics.psnr(noisy255, clean255),
                }
                if with_ssim:
                    row["ssim"] = metrics.ssim_nd(estimate, clean255)
                    row["noisy_ssim"] = metrics.ssim_nd(noisy255, clean255)
                if name in keep:
                    row["estimate"] = estimate
                rows.append(row)
        model.train(was_training)
        return rows
