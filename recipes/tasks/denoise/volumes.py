"""The denoising recipe on volumes: 3-D (and 4-D) networks trained on NIfTI/HDF5 volumes.

A configuration whose ``model.ndim`` is 3 or more is a *volume* configuration: the same
``[model]``, ``[noise]``, ``[eval]``, ``[weighted]`` and trainer tables as the image
task (see ``ndwconv.recipes.tasks.denoise.images``), with this ``[data]`` table:

``train``
    A volume path or a list of them (``scan.nii.gz``, ``stack.h5:/group/dataset``), or
    ``"embedded:mni152"``: the MNI152 2009a symmetric T1 template that nilearn ships
    (``nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``,
    197 × 233 × 189 voxels of 1 mm, uint8; ``pip install -e ".[examples]"`` in the repository root).
    With a 3-D model, a 4-D volume (3-D + time) counts as one volume per frame.
``validation``
    ``"holdout"`` (default): the last ``holdout`` fraction (default 0.25) of each training
    volume along spatial axis ``holdout_axis`` (default −1, the last) is set aside for
    validation and never sampled for training. Or a path / list of paths of other volumes.
    SSIM needs 11 samples along every axis of a validation block and training patches
    need ``patch_size``, so the hold-out axis needs ``round(holdout · n) ≥ 11`` and
    ``n − round(holdout · n) ≥ patch_size`` (a 4-D series held out along time with the
    defaults: 43 frames, ``volume_data.min_holdout_length``), and every other axis
    ``max(11, patch_size)``; a shorter volume is refused before training, naming the axis.
``[tune] split = "validation"``
    The validation block is the last ``tune.holdout`` fraction, along ``holdout_axis``, of
    each volume's *training* part (the part before its test block, or the whole training
    volume when ``validation`` lists test volumes, which are then not opened); the test
    block is cut off before normalisation, so its voxels reach neither training nor
    scoring.
``percentiles``
    ``[low, high]``, default ``[0.5, 99.5]``: each volume is mapped to [0, 1] by these
    percentiles of its intensities and clipped
    (``ndwconv.recipes.tasks.denoise.volume_data.normalise``).
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

from ndwconv.adapters.volumes import is_physical, physical_density

from ...engine import streams
from ...models import density_description
from ..holdout import split_record, tuning_split
from . import metrics
from .base import DenoisingTask, check_method, with_train_data
from .config import EMBEDDED_MNI, check_config, volume_paths
from .data import NoiseSpec
from .volume_data import VolumePatches, add_noise, check_block_shape, held_out, normalise

__all__ = ["VolumeDenoiseTask", "mni152_path", "resolve_density"]

_MNI_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


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
            'installed: pip install -e ".[examples]" in the ndwconv repository root'
        ) from err
    path = Path(nilearn.datasets.__file__).parent / "data" / _MNI_FILE
    if not path.is_file():
        raise FileNotFoundError(f"nilearn {nilearn.__version__} has no {_MNI_FILE}")
    return path


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
                f"needs {ndim}-D volumes"
                + (" (or 4-D series, frame by frame)" if ndim == 3 else "")
            )
    return found


def _foreground_box(volume: np.ndarray, level: float) -> tuple[slice, ...]:
    mask = volume > level
    if not mask.any():
        return tuple(slice(None) for _ in volume.shape)
    index = np.argwhere(mask)
    return tuple(
        slice(int(lo), int(hi) + 1) for lo, hi in zip(index.min(0), index.max(0), strict=True)
    )


class VolumeDenoiseTask(DenoisingTask):
    """The denoising task on volumes, for ``ndwconv.recipes.engine.fit``.

    Args:
        config: a volume configuration (see the module docstring).
        method: ``"standard"`` or ``"weighted"``.
        data: training volume paths that replace ``data.train`` (None: the config's).
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        method: str = "standard",
        data: str | Sequence[str] | None = None,
    ):
        config = with_train_data(config, data)
        super().__init__(config)
        self.config = check_config(config)
        self.method = check_method(method)
        self.seed = int(config.get("train", {}).get("seed", 0))
        self.ndim = int(self.config["model"]["ndim"])
        self.spatial_dims = self.ndim
        data_cfg = self.config["data"]
        low, high = data_cfg["percentiles"]
        tuning = tuning_split(config)
        self.split_record = split_record(config)
        validating = tuning["split"] == "validation"
        train_items = _read_volumes(data_cfg["train"], self.ndim, "train")
        if data_cfg["validation"] == "holdout" or validating:
            validation_items = None  # tune.split = "validation": test volumes are not opened
        else:
            validation_items = _read_volumes(
                volume_paths(data_cfg["validation"], "validation"), self.ndim, "validation"
            )
        self.spacing = train_items[0][2]
        self.spacings = [(name, spacing) for name, _, spacing in train_items]
        crop = data_cfg["crop"] == "foreground"
        level = data_cfg["foreground_level"]

        def normalised(name: str, array: np.ndarray, key: str) -> np.ndarray:
            try:
                return normalise(array, low, high)[0]
            except ValueError as err:
                raise ValueError(f"data.{key}: {name}: {err}") from None

        def prepare(items: list[tuple[str, Any, Any]], key: str) -> list[tuple[str, np.ndarray]]:
            prepared = []
            for name, array, _ in items:
                volume = normalised(name, array, key)
                if crop:
                    volume = volume[_foreground_box(volume, level)]
                prepared.append((name, np.ascontiguousarray(volume)))
            return prepared

        patch = data_cfg["patch_size"]
        cropped = " (cropped to its foreground)" if crop else ""
        holdout = data_cfg["validation"] == "holdout"
        if holdout or validating:
            axis = data_cfg["holdout_axis"]
            if not -self.ndim <= axis < self.ndim:
                raise ValueError(
                    f"data.holdout_axis must be in [−{self.ndim}, {self.ndim}), got {axis}"
                )
            axis %= self.ndim
        if validating and holdout:
            # the training part of each volume, before its test block, normalised by its own
            # percentiles: the test block's voxels reach neither training nor scoring (with
            # crop = "foreground" they are read once, to find the crop box as test runs do)
            train = []
            for name, array, _ in train_items:
                if crop:
                    array = array[_foreground_box(normalised(name, array, "train"), level)]
                check_block_shape(
                    f"data.train: {name}{cropped}", array.shape, patch, data_cfg["holdout"], axis
                )
                part, _ = _cut(array, axis, data_cfg["holdout"])
                train.append((name, np.ascontiguousarray(normalised(name, part, "train"))))
        else:
            train = prepare(train_items, "train")
        del train_items
        if validating or holdout:
            # cut each training volume along the axis: the last part is scored (the test
            # block, or under tune.split = "validation" a block of the training part)
            fraction, key, tag = (
                (tuning["holdout"], "tune.holdout", "validation")
                if validating
                else (data_cfg["holdout"], "data.holdout", "holdout")
            )
            part_of = " (its training part)" if validating and holdout else ""
            kept, held = [], []
            for name, volume in train:
                check_block_shape(
                    f"data.train: {name}{cropped}{part_of}",
                    volume.shape,
                    patch,
                    fraction,
                    axis,
                    holdout_key=key,
                )
                part, block = _cut(volume, axis, fraction)
                kept.append((name, part))
                held.append((f"{name}[{tag}]", block))
            train, validation = kept, held
        else:
            assert validation_items is not None
            validation = prepare(validation_items, "validation")
            for name, volume in train:
                check_block_shape(f"data.train: {name}{cropped}", volume.shape, patch)
            for name, volume in validation:
                check_block_shape(
                    f"data.validation: {name}{cropped}", volume.shape, patch, validation=True
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
        self._density = (
            resolve_density(self.config["weighted"]["density"], self.ndim, self.spacings)
            if self.method == "weighted"
            else None
        )
        self._validation: list[tuple[str, np.ndarray, torch.Tensor]] | None = None

    @property
    def validation(self) -> list[tuple[str, np.ndarray, torch.Tensor]]:
        """``(name, clean [0, 1] array, noisy (1, *spatial) tensor)`` per validation block;
        the noise is fixed by ``eval.seed`` and the block's position in the list."""
        if self._validation is None:
            sigma = float(self.config["noise"]["validation_sigma"])
            items = []
            for i, (name, clean) in enumerate(self._validation_volumes):
                generator = streams.generator("volume_validation", self.config["eval"]["seed"], i)
                noisy = add_noise(
                    torch.from_numpy(clean)[None], sigma, self.config["noise"]["kind"], generator
                )
                items.append((name, clean, noisy))
            self._validation = items
        return self._validation

    def example(self) -> tuple[str, dict[str, np.ndarray]]:
        """The first validation block's name and its ``clean`` and ``noisy`` versions, on
        the 0–255 scale (the figure's reference panels)."""
        name, clean, noisy = self.validation[0]
        return name, {
            "clean": clean.astype(np.float64) * 255.0,
            "noisy": noisy[0].double().numpy() * 255.0,
        }

    def density(self) -> str | None:
        """The density spec of the weighted model, millimetres resolved (``None``:
        standard)."""
        return self._density

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "model": self.model_config(),
            "density": density_description(self._density),
            "data": {
                **self.config["data"],
                "channels": 1,
                "volumes": True,
                "train_shapes": self.train_shapes,
            },
            "noise": self.config["noise"],
            "spacing": list(self.spacing),
            **self.split_record,
        }

    def _scored(
        self, model: nn.Module, clean: np.ndarray, noisy: torch.Tensor, device: torch.device
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self._denoise(model, noisy, device)
        estimate = out[0].double().numpy() * 255.0
        return estimate, clean.astype(np.float64) * 255.0, noisy[0].double().numpy() * 255.0

    def _ssim(self, estimate: np.ndarray, clean: np.ndarray) -> float:
        return metrics.ssim_nd(estimate, clean)


def _cut(volume: np.ndarray, axis: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``volume`` cut along ``axis`` into its first part and its last ``held_out(size,
    fraction)`` samples (views)."""
    size = volume.shape[axis]
    cut = size - held_out(size, fraction)
    index = [slice(None)] * volume.ndim
    index[axis] = slice(0, cut)
    first = volume[tuple(index)]
    index[axis] = slice(cut, size)
    return first, volume[tuple(index)]


def resolve_density(spec: str, ndim: int, spacings: Sequence[tuple[str, tuple[float, ...]]]) -> str:
    """The density spec a model of ``ndim`` axes gets: millimetres resolved against the
    voxel spacing shared by the training volumes (``(name, spacing)`` pairs).

    Raises:
        ValueError: a millimetre spec for a model that is not 3-D, or volumes whose
            spacings differ.
    """
    if not is_physical(spec):
        return str(spec)
    if ndim != 3:
        raise ValueError(
            f"weighted.density {spec!r} is in mm, which only 3-D models take; for a "
            f"{ndim}-D model give σ in voxels per axis, e.g. "
            "'gaussian:1,1,1,1;spacing=2,2,2,1'"
        )
    spacing = spacings[0][1]
    if any(not np.allclose(s, spacing, rtol=1e-3) for _, s in spacings):
        listing = ", ".join(f"{n} {s}" for n, s in spacings)
        raise ValueError(
            f"weighted.density {spec!r} is in mm but the training volumes have "
            f"different voxel spacings ({listing})"
        )
    return str(physical_density(spec, spacing))
