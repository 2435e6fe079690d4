"""The denoising task on 2-D images: train, evaluate and compare standard vs weighted.

The experiment of Cammarasana & Patanè (2025) on additive white Gaussian noise: a
denoiser built from plain convolutions (``[model]``: DnCNN or NAFNet from
``ndwconv.recipes.models``) is trained as is (*standard*) and with its convolutions made
weighted by ``ndwconv.convert`` (*weighted*, density ``[weighted] density``; only kernels
whose every size is odd, at least one of them larger than 1, are converted, since a
density is centred). Both start
from the same initial weights — the model is built under the run's seed before it is
converted — and see the same samples in the same order for the same number of steps.

Configuration tables (besides the trainer's ``[train]``, ``[optim]``, ``[schedule]``;
checked by ``ndwconv.recipes.tasks.denoise.config``):

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
    the evaluations *during* training use (0: all), the final evaluation uses all;
    ``classical`` (default true): a comparison also scores the classical yardstick, BM3D
    (volumes: non-local means), on its first seed's items
    (``ndwconv.recipes.tasks.denoise.classical``).
``[tune]``
    ``split = "validation"`` (``ndwconv.recipes.engine.config.tuning_split``): the
    fraction ``tune.holdout`` of the *training* images (whole images, chosen by
    ``tune.holdout_seed``) is held out and scored instead of ``data.validation``, which is
    then not read at all; training patches come from the other images only.
``[weighted]``
    ``density``: the density spec of the weighted model (``ndwconv.as_density``).
``[train]``
    ``loss``: ``mse`` (default), ``l1`` or ``psnr`` (minus the mean per-sample PSNR).

PSNR is in dB on the 0–255 scale against the clean 8-bit image, the estimate clipped to
[0, 255] and not rounded; SSIM is scikit-image's (Gaussian window σ = 1.5, as Wang et
al. 2004).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...models import density_description
from ..holdout import choose_holdout, split_record, tuning_split
from . import data as data_mod
from . import metrics
from .base import DenoisingTask, check_method
from .config import check_config

__all__ = ["DenoiseTask"]


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


class DenoiseTask(DenoisingTask):
    """The denoising task for ``ndwconv.recipes.engine.fit``.

    Args:
        config: a recipe configuration (see the module docstring).
        method: ``"standard"`` or ``"weighted"``.
        data_root: folder that relative ``data.train``/``data.validation`` are in.
    """

    spatial_dims = 2

    def __init__(
        self,
        config: Mapping[str, Any],
        method: str = "standard",
        data_root: str | Path | None = None,
    ):
        super().__init__(config)
        self.config = check_config(config)
        self.method = check_method(method)
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
        tuning = tuning_split(config)
        self.split_record = split_record(config)
        if tuning["split"] == "validation":
            # hold out whole training images; data.validation (the test split) is never read
            self.sources = {"train": _resolve_source(data["train"], data_root, "train")}
            images = data_mod.open_images(self.sources["train"], data["channels"])
            held = set(choose_holdout(len(images), tuning["holdout"], tuning["holdout_seed"]))
            self._train_images: Any = data_mod.ImageSubset(
                images, [i for i in range(len(images)) if i not in held]
            )
            self._validation_images: Any = data_mod.ImageSubset(images, sorted(held))
        else:
            self.sources = {
                key: _resolve_source(data[key], data_root, key) for key in ("train", "validation")
            }
            self._train_images = data_mod.open_images(self.sources["train"], data["channels"])
            self._validation_images = data_mod.open_images(
                self.sources["validation"], data["channels"]
            )
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

    def example(self) -> tuple[str, dict[str, np.ndarray]]:
        """The first validation image's name and its ``clean`` and ``noisy`` versions, on
        the 0–255 scale (the figure's reference panels)."""
        name, clean, noisy = self.validation[0]
        return name, {"clean": clean, "noisy": metrics.to_uint8_scale(noisy)}

    def model_config(self) -> dict[str, Any]:
        return {"channels": self.config["data"]["channels"], **self.config["model"]}

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "model": self.model_config(),
            "density": density_description(self.density()),
            "data": {**self.config["data"], **self.sources, **self._held_out()},
            "noise": self.config["noise"],
            **self.split_record,
        }

    def _held_out(self) -> dict[str, Any]:
        """The names of the training images held out and scored (validation split)."""
        if self.split_record["split"] != "validation":
            return {}
        return {"validation_images": list(self._validation_images.names)}

    def _scored(
        self, model: nn.Module, clean: np.ndarray, noisy: torch.Tensor, device: torch.device
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self._denoise(model, noisy, device)
        return metrics.to_uint8_scale(out), clean, metrics.to_uint8_scale(noisy)

    def _ssim(self, estimate: np.ndarray, clean: np.ndarray) -> float:
        return metrics.ssim(estimate, clean)
