"""The denoising recipe on 1-D signals: a 1-D DnCNN trained on the first part of a series,
scored on its held-out last part against classical filters.

A configuration whose ``model.ndim`` is 1 is a *series* configuration: the same
``[model]``, ``[noise]``, ``[eval]``, ``[weighted]`` and trainer tables as the image task
(see ``ndwconv.recipes.tasks.denoise.images``), with this ``[data]`` table:

``train``
    A series source or a list of them (``ndwconv.recipes.tasks.denoise.series_data``):
    ``"embedded:mitdb"`` (default; the ECG excerpt bundled in the ``sktime`` wheel,
    ``pip install -e ".[examples]"``), ``"file.npy"``, ``"file.csv:column"``. ``--data``
    replaces it.
``holdout``, ``gap``
    The last ``round(holdout · n)`` samples of each series (default 0.3) are held out for
    scoring; training crops come only from the samples before them, less ``gap``
    (default 0) samples next to the held-out part. The split is contiguous, never random.
``[tune] split = "validation"``
    The scored part is the last ``round(tune.holdout · m)`` samples of each series'
    *training* part (``m`` samples), with ``gap`` samples between it and the samples
    trained on; the test part is not used, and the normalisation and the classical
    filters' parameters come from the samples trained on.
``percentiles``
    ``[low, high]`` (default ``[0, 100]``: minimum and maximum): each series is mapped by
    ``(x − lo) / (hi − lo)``, ``lo``/``hi`` these percentiles of its *training part*; the
    held-out part is mapped by the same ``lo``/``hi`` and not clipped.
``patch_size``
    Length of the random training crops (default 256 samples).
``sampling_rate``
    Samples per second, used only to state the classical filters' parameters in Hz and
    ms (default: 360 for ``embedded:mitdb``, otherwise unknown).
``length``
    Nominal epoch (samples).

``[noise]``: Gaussian only; σ on the 0–255 scale of the normalised signal (σ = 25.5 is
a tenth of the training part's range), as for images and volumes. Crops are sampled by
``VolumePatches`` with flips off (time is not reversed: an ECG beat reversed is not a
beat), so crop ``i`` is a pure function of ``(seed, i)``. The held-out part's noise is
fixed by ``eval.seed`` and the series' position in ``data.train``.

Scores, over each whole held-out part (one item per series; the model sees it whole,
zero-padded at its two ends): PSNR (``metrics.series_psnr``: peak 1 = the training
part's range, not clipped) and SNR (``metrics.snr``: power of the clean signal about its
mean over the error power), both in dB, of the model, of the noisy input and of the two
classical yardsticks (``ndwconv.recipes.tasks.denoise.classical``: a Butterworth low-pass
and a Savitzky–Golay filter, their parameters chosen by PSNR on the training part with
noise of ``noise.validation_sigma`` drawn once per series).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ...engine import streams
from ...models import density_description
from ..holdout import split_record, tuning_split
from .base import DenoisingTask, check_method, with_train_data
from .classical import FilterChoice, classical_filters
from .config import check_config
from .data import NoiseSpec
from .metrics import series_psnr, snr
from .series_data import EMBEDDED_MITDB, MITDB_SAMPLING_RATE, normalise, read_series, split
from .volume_data import VolumePatches, add_noise

__all__ = ["MIN_HELDOUT", "SeriesDenoiseTask"]

MIN_HELDOUT = 32
"""The fewest samples a held-out part (and a training part) may have."""

_FILTER_CACHE: dict[tuple[str, float, int, int], list[FilterChoice]] = {}


def _fitted_filters(clean: np.ndarray, sigma: float, seed: int, index: int) -> list[FilterChoice]:
    """The classical filters chosen on ``clean`` (a normalised training part) with its
    noise from the ``series_filters`` stream; cached, since every run of a comparison
    asks for the same."""
    digest = hashlib.sha256(np.ascontiguousarray(clean, dtype=np.float32).tobytes()).hexdigest()
    key = (digest, float(sigma), int(seed), int(index))
    if key not in _FILTER_CACHE:
        generator = streams.generator("series_filters", seed, index)
        reference = torch.from_numpy(np.asarray(clean, dtype=np.float64))
        noisy = add_noise(reference, sigma, "gaussian", generator).numpy()
        if len(_FILTER_CACHE) > 64:
            _FILTER_CACHE.clear()
        _FILTER_CACHE[key] = classical_filters(noisy, reference.numpy())
    return _FILTER_CACHE[key]


def _split(
    name: str, values: np.ndarray, holdout: float, gap: int, patch: int, key: str = "data.holdout"
) -> tuple[np.ndarray, np.ndarray]:
    """``series_data.split`` of one series, refusing parts too short to train or score on
    (the message names the series and ``key``, the fraction's key)."""
    try:
        train, test = split(values, holdout, gap)
    except ValueError as err:
        raise ValueError(f"data.train: {name}: {err} ({key})") from None
    need = max(patch, MIN_HELDOUT)
    if len(train) < need or len(test) < MIN_HELDOUT:
        raise ValueError(
            f"data.train: {name} has {len(values)} samples"
            + (" in its training part" if key != "data.holdout" else "")
            + f": {len(train)} for training (needs ≥ {need}: data.patch_size {patch}, and "
            f"{MIN_HELDOUT}) and {len(test)} held out (needs ≥ {MIN_HELDOUT}); give a longer "
            f"series, a smaller data.patch_size, or another {key} / data.gap"
        )
    if not np.ptp(test) > 0:
        raise ValueError(
            f"data.train: {name}: the held-out part (the last {len(test)} samples) is "
            "constant, so it has no signal to score SNR against"
        )
    return train, test


class SeriesDenoiseTask(DenoisingTask):
    """The denoising task on 1-D series, for ``ndwconv.recipes.engine.fit``.

    Args:
        config: a series configuration (see the module docstring).
        method: ``"standard"`` or ``"weighted"``.
        data: series sources replacing ``data.train`` (None: the configuration's).
    """

    spatial_dims = 1

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
        data_cfg = self.config["data"]
        tuning = tuning_split(config)
        self.split_record = split_record(config)
        validating = tuning["split"] == "validation"
        patch = data_cfg["patch_size"]
        self.sampling_rate: float | None = data_cfg.get("sampling_rate")
        if self.sampling_rate is None and all(s == EMBEDDED_MITDB for s in data_cfg["train"]):
            self.sampling_rate = MITDB_SAMPLING_RATE
        self.parts: list[tuple[str, np.ndarray, np.ndarray]] = []
        """``(name, training part, held-out part)`` per series, normalised (float32)."""
        self.ranges: dict[str, list[float]] = {}
        """``name → [lo, hi]``: what 0 and 1 of the normalised scale are in the file's units."""
        for source in data_cfg["train"]:
            name, values = read_series(source)
            if name in self.ranges:
                name = f"{name}#{len(self.parts)}"
            train, test = _split(name, values, data_cfg["holdout"], data_cfg["gap"], patch)
            if validating:
                # the tuning part comes from the training part, with the same gap; the test
                # part is set aside unread
                train, test = _split(
                    name, train, tuning["holdout"], data_cfg["gap"], patch, key="tune.holdout"
                )
            (train01, test01), (lo, hi) = normalise(train, [test], data_cfg["percentiles"])
            self.parts.append((name, train01, test01))
            self.ranges[name] = [lo, hi]
        self.dataset = VolumePatches(
            [train for _, train, _ in self.parts],
            patch,
            NoiseSpec.parse(str(self.config["noise"]["sigma"])),
            kind="gaussian",
            seed=self.seed,
            flips=False,
            length=data_cfg.get("length"),
        )
        self._part = "validation" if validating else "holdout"
        self._validation: list[tuple[str, np.ndarray, torch.Tensor]] | None = None
        self._classical: list[list[tuple[FilterChoice, np.ndarray]]] | None = None

    @property
    def validation(self) -> list[tuple[str, np.ndarray, torch.Tensor]]:
        """``(name, clean held-out part, noisy (1, L) tensor)`` per series; the noise is
        fixed by ``eval.seed`` and the series' index."""
        if self._validation is None:
            sigma = float(self.config["noise"]["validation_sigma"])
            items = []
            for i, (name, _, clean) in enumerate(self.parts):
                generator = streams.generator("series_validation", self.config["eval"]["seed"], i)
                noisy = add_noise(torch.from_numpy(clean)[None], sigma, "gaussian", generator)
                items.append((f"{name}[{self._part}]", clean, noisy))
            self._validation = items
        return self._validation

    @property
    def classical(self) -> list[list[tuple[FilterChoice, np.ndarray]]]:
        """Per series: each classical filter, chosen on the training part, and its output
        on the noisy held-out part."""
        if self._classical is None:
            sigma = float(self.config["noise"]["validation_sigma"])
            seed = self.config["eval"]["seed"]
            found = []
            for i, ((_, train, _), (_, _, noisy)) in enumerate(
                zip(self.parts, self.validation, strict=True)
            ):
                choices = _fitted_filters(train, sigma, seed, i)
                signal = noisy[0].double().numpy()
                found.append([(c, c.apply(signal)) for c in choices])
            self._classical = found
        return self._classical

    def example(self) -> tuple[str, dict[str, np.ndarray]]:
        """The first held-out part's name and its ``clean``, ``noisy`` and classically
        filtered versions, on the normalised scale (the figure's reference panels)."""
        name, clean, noisy = self.validation[0]
        panels = {"clean": clean.astype(np.float64), "noisy": noisy[0].double().numpy()}
        for choice, filtered in self.classical[0]:
            panels[choice.key] = filtered
        return name, panels

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "model": self.model_config(),
            "density": density_description(self.density()),
            "data": {
                **self.config["data"],
                "channels": 1,
                "series": True,
                "ranges": self.ranges,
                "train_lengths": {name: len(train) for name, train, _ in self.parts},
                "sampling_rate": self.sampling_rate,
            },
            "noise": self.config["noise"],
            **self.split_record,
        }

    def evaluate_items(
        self,
        model: nn.Module,
        device: torch.device | str = "cpu",
        limit: int | None = None,
        with_ssim: bool = True,
        keep: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Per held-out part: ``psnr``, ``snr`` of the model, ``noisy_psnr``,
        ``noisy_snr`` of the input, and ``KEY_psnr``, ``KEY_snr``, ``KEY_parameters`` of
        each classical filter (``butterworth``, ``savgol``). Items named in ``keep`` also
        carry the model's estimate (``"estimate"``, normalised scale). ``with_ssim`` is
        accepted for the interface's sake: a series has no SSIM."""
        device = torch.device(device)
        was_training = model.training
        model.eval()
        rows = []
        with torch.no_grad():
            for i, (name, clean, noisy) in enumerate(self.validation):
                if limit is not None and i >= limit:
                    break
                estimate = self._denoise(model, noisy, device)[0].double().numpy()
                reference = clean.astype(np.float64)
                signal = noisy[0].double().numpy()
                row: dict[str, Any] = {
                    "image": name,
                    "psnr": series_psnr(estimate, reference),
                    "snr": snr(estimate, reference),
                    "noisy_psnr": series_psnr(signal, reference),
                    "noisy_snr": snr(signal, reference),
                }
                for choice, filtered in self.classical[i]:
                    row[f"{choice.key}_psnr"] = series_psnr(filtered, reference)
                    row[f"{choice.key}_snr"] = snr(filtered, reference)
                    row[f"{choice.key}_parameters"] = choice.describe(self.sampling_rate)
                if name in keep:
                    row["estimate"] = estimate
                rows.append(row)
        model.train(was_training)
        return rows
