"""What the image and the volume denoising tasks share: metrics, loss, model, scoring."""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...engine.task import METHODS, Metric, loss_by_name
from ...models import build_model, make_weighted
from .classical import YARDSTICK_LABELS, Yardstick, missing_package, yardstick_for
from .inference import denoise_image
from .metrics import psnr

__all__ = [
    "CLASSICAL_LABELS",
    "LOSS_NAMES",
    "METRICS",
    "SERIES_METRICS",
    "DenoisingTask",
    "build_denoiser",
    "check_method",
    "with_train_data",
]

METRICS = (
    Metric("psnr", "PSNR", higher_is_better=True, digits=2, unit="dB"),
    Metric("ssim", "SSIM", higher_is_better=True, digits=4),
)
"""The scores of image and volume denoising: PSNR (primary) and SSIM."""

SERIES_METRICS = (
    Metric("psnr", "PSNR", higher_is_better=True, digits=2, unit="dB"),
    Metric("snr", "SNR", higher_is_better=True, digits=2, unit="dB"),
)
"""The scores of series denoising: PSNR (primary) and SNR."""

CLASSICAL_LABELS = {"butterworth": "Butterworth low-pass", "savgol": "Savitzky–Golay"}
"""The classical yardsticks of series denoising, by the prefix of their per-item scores."""

_YARDSTICK_CACHE: dict[tuple[str, ...], dict[str, Any]] = {}
"""Scores of the image/volume yardsticks by (yardstick, item content): every arm of a
comparison's first seed scores the same items, so each is denoised once."""
_YARDSTICK_FILES_READ: set[Path] = set()


def _read_yardstick_file(path: Path) -> None:
    """Add a yardstick cache file's entries to the in-process cache (once per file); a
    line cut short by an interrupted write is skipped, its item computed again."""
    if path in _YARDSTICK_FILES_READ or not path.is_file():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
            _YARDSTICK_CACHE[tuple(entry["key"])] = dict(entry["scores"])
        except (ValueError, KeyError, TypeError):
            continue
    _YARDSTICK_FILES_READ.add(path)


def _append_yardstick_file(path: Path, key: tuple[str, ...], scores: Mapping[str, Any]) -> None:
    """Append one entry to a yardstick cache file, on a line of its own even after a
    line an interrupted write cut short."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"key": list(key), "scores": dict(scores)}) + "\n"
    with open(path, "a+b") as f:
        size = f.seek(0, 2)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                text = "\n" + text
        f.write(text.encode("utf-8"))


LOSS_NAMES = ("mse", "l1", "psnr")
"""The losses ``train.loss`` may name for denoising (default ``mse``)."""


def check_method(method: str) -> str:
    """``method`` if it is ``standard`` or ``weighted``; a ``ValueError`` otherwise."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return method


def with_train_data(
    config: Mapping[str, Any], data: str | Sequence[str] | None
) -> Mapping[str, Any]:
    """``config`` with ``data.train`` replaced by ``data`` (one path or several; the
    ``--data`` of the volume and series tasks); ``config`` itself when ``data`` is None.
    The given mapping is not modified.

    Example:
        >>> with_train_data({"data": {"train": ["a.nii"], "holdout": 0.3}}, "b.nii")
        {'data': {'train': ['b.nii'], 'holdout': 0.3}}
    """
    if data is None:
        return config
    train = [data] if isinstance(data, str) else [str(p) for p in data]
    return {**config, "data": {**config.get("data", {}), "train": train}}


def build_denoiser(model: Mapping[str, Any], method: str, density: str | None) -> nn.Module:
    """The network of a ``[model]`` table (``name`` plus constructor arguments), made
    weighted with ``density`` when ``method`` is ``"weighted"``.

    Raises:
        ValueError: an unknown model or argument, or a density that does not fit one of
            its layers (the message names the layer).
    """
    arguments = dict(model)
    name = arguments.pop("name")
    net = build_model(name, **arguments)
    if check_method(method) == "weighted":
        make_weighted(net, density)
    return net


class DenoisingTask:
    """The trainer-facing part of a denoising task, on top of a subclass's data.

    A subclass sets ``config``, ``method``, ``dataset`` and ``validation`` (``(name,
    clean, noisy)`` items) and implements ``_scored`` (estimate, clean and noisy on the
    0–255 scale) and ``_ssim``.
    """

    name = "denoise"
    metrics = METRICS
    target_dtype: torch.dtype | None = torch.float32
    config: dict[str, Any]
    method: str
    validation: Sequence[tuple[str, Any, Tensor]]

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._loss = loss_by_name(config.get("train", {}).get("loss", "mse"), LOSS_NAMES)
        self.keep: tuple[str, ...] = ()
        """Validation items whose estimates the final evaluation keeps."""
        self.final_rows: list[dict[str, Any]] | None = None
        """Per-item scores of the last final evaluation (see ``evaluate_items``)."""
        self.yardstick_cache: Path | None = None
        """A JSONL file keeping the classical yardstick's scores across processes (a
        comparison's ``classical-cache.jsonl``), so that ``--resume`` does not run it again."""

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return self._loss(output, target)

    def model_config(self) -> dict[str, Any]:
        """The ``[model]`` table the network is built from."""
        return dict(self.config["model"])

    def density(self) -> str | None:
        """The density spec of the weighted model (``None`` for the standard one)."""
        return self.config["weighted"]["density"] if self.method == "weighted" else None

    def build_model(self) -> nn.Module:
        return build_denoiser(self.model_config(), self.method, self.density())

    def _scored(
        self, model: nn.Module, clean: Any, noisy: Tensor, device: torch.device
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _denoise(self, model: nn.Module, noisy: Tensor, device: torch.device) -> Tensor:
        """The model's estimate of one validation item, tiled as ``[eval]`` says."""
        tile = self.config["eval"]["tile"] or None
        return denoise_image(
            model, noisy, tile=tile, overlap=self.config["eval"]["overlap"], device=device
        )

    def _ssim(self, estimate: np.ndarray, clean: np.ndarray) -> float:
        raise NotImplementedError

    def yardstick(self) -> Yardstick | None:
        """The classical yardstick of this task (BM3D for images, non-local means for
        volumes) at the validation noise, or ``None`` when ``eval.classical`` is off."""
        if not self.config["eval"].get("classical", True):
            return None
        noise = self.config["noise"]
        return yardstick_for(
            self.spatial_dims, noise.get("kind", "gaussian"), float(noise["validation_sigma"])
        )

    def _yardstick_scores(
        self, yardstick: Yardstick, clean255: np.ndarray, noisy: Tensor, with_ssim: bool
    ) -> dict[str, Any]:
        """``KEY_psnr``, ``KEY_ssim``, ``KEY_seconds``, ``KEY_parameters`` of the
        yardstick on one item, scored as the network's estimates are; cached by the
        item's content (and the parameters, which name the package's version), in this
        process and in ``yardstick_cache``."""
        array = noisy.detach().to("cpu", torch.float64).numpy()
        array = np.moveaxis(array, 0, -1)  # channels last, as the clean item
        if array.shape[-1] == 1:
            array = array[..., 0]
        digest = hashlib.sha256()
        for part in (array, np.asarray(clean255, dtype=np.float64)):
            digest.update(repr(part.shape).encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        cache_key = (yardstick.key, yardstick.parameters, digest.hexdigest(), str(with_ssim))
        if cache_key not in _YARDSTICK_CACHE and self.yardstick_cache is not None:
            _read_yardstick_file(self.yardstick_cache)
        if cache_key not in _YARDSTICK_CACHE:
            started = time.perf_counter()
            estimate = yardstick.apply(array) * 255.0
            seconds = time.perf_counter() - started
            scores: dict[str, Any] = {f"{yardstick.key}_psnr": psnr(estimate, clean255)}
            if with_ssim:
                scores[f"{yardstick.key}_ssim"] = self._ssim(estimate, clean255)
            scores[f"{yardstick.key}_seconds"] = seconds
            scores[f"{yardstick.key}_parameters"] = yardstick.parameters
            if len(_YARDSTICK_CACHE) > 4096:
                _YARDSTICK_CACHE.clear()
                _YARDSTICK_FILES_READ.clear()
            _YARDSTICK_CACHE[cache_key] = scores
            if self.yardstick_cache is not None:
                _append_yardstick_file(self.yardstick_cache, cache_key, scores)
        return dict(_YARDSTICK_CACHE[cache_key])

    def evaluate_items(
        self,
        model: nn.Module,
        device: torch.device | str = "cpu",
        limit: int | None = None,
        with_ssim: bool = True,
        keep: Sequence[str] = (),
        classical: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Per-item scores: ``{"image", "psnr", "ssim", "noisy_psnr", "noisy_ssim"}``.

        Items named in ``keep`` also carry their estimate (``"estimate"``, 0–255 float).
        With ``classical`` (default: when ``keep`` names an item, i.e. in the final
        evaluation of a comparison's first seed) and ``eval.classical`` on, every item
        also carries the classical yardstick's scores (``bm3d_*`` / ``nlmeans_*``: psnr,
        ssim, seconds, parameters; each item denoised once per process, see
        ``yardstick``), or ``KEY_skipped`` (the reason) when its package is missing.
        """
        device = torch.device(device)
        was_training = model.training
        model.eval()
        yardstick = self.yardstick() if (bool(keep) if classical is None else classical) else None
        skipped = missing_package(yardstick.key) if yardstick is not None else None
        rows = []
        with torch.no_grad():
            for i, (name, clean, noisy) in enumerate(self.validation):
                if limit is not None and i >= limit:
                    break
                estimate, clean255, noisy255 = self._scored(model, clean, noisy, device)
                row: dict[str, Any] = {"image": name, "psnr": psnr(estimate, clean255)}
                if with_ssim:
                    row["ssim"] = self._ssim(estimate, clean255)
                row["noisy_psnr"] = psnr(noisy255, clean255)
                if with_ssim:
                    row["noisy_ssim"] = self._ssim(noisy255, clean255)
                if yardstick is not None and skipped is not None:
                    row[f"{yardstick.key}_skipped"] = skipped
                elif yardstick is not None:
                    row.update(self._yardstick_scores(yardstick, clean255, noisy, with_ssim))
                if name in keep:
                    row["estimate"] = estimate
                rows.append(row)
        model.train(was_training)
        return rows

    def evaluate(
        self, model: nn.Module, device: torch.device, final: bool = True
    ) -> dict[str, float]:
        """Mean validation PSNR; during training (``final`` false) of the first
        ``eval.curve_images`` images (or blocks) only."""
        if final:
            # every item, with SSIM and the estimates named in ``keep``: kept in
            # ``final_rows`` so that ``compare`` need not run the model over them again
            rows = self.evaluate_items(model, device, keep=self.keep)
            self.final_rows = rows
        else:
            limit = self.config["eval"]["curve_images"] or None
            rows = self.evaluate_items(model, device, limit=limit, with_ssim=False)
        return {"psnr": statistics.fmean(r["psnr"] for r in rows)}


def baselines(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """The comparison table's reference rows: the noisy input itself; for series also the
    classical filters, their parameters chosen on the training part (named in the label
    when every series got the same); for images and volumes also the classical yardstick
    (BM3D, non-local means) where its scores are in ``rows``, its parameters and total
    time in the label and ``seconds`` beside its scores, or a row with no scores that
    says why it was not run (its package is missing)."""
    if rows and "noisy_snr" in rows[0]:
        found = {
            "noisy input": {
                m: statistics.fmean(r[f"noisy_{m}"] for r in rows) for m in ("psnr", "snr")
            }
        }
        for key, label in CLASSICAL_LABELS.items():
            if f"{key}_psnr" not in rows[0]:
                continue
            chosen = {r[f"{key}_parameters"] for r in rows}
            detail = chosen.pop() if len(chosen) == 1 else "parameters per series"
            found[f"{label} ({detail}; chosen on the training part)"] = {
                m: statistics.fmean(r[f"{key}_{m}"] for r in rows) for m in ("psnr", "snr")
            }
        return found
    found = {
        "noisy input": {
            "psnr": statistics.fmean(r["noisy_psnr"] for r in rows),
            "ssim": statistics.fmean(r["noisy_ssim"] for r in rows),
        }
    }
    for key, label in YARDSTICK_LABELS.items():
        if f"{key}_skipped" in rows[0]:
            found[f"{label}: not run, {rows[0][f'{key}_skipped']}"] = {}
        elif f"{key}_psnr" in rows[0]:
            seconds = sum(r[f"{key}_seconds"] for r in rows)
            items = ("image" if key == "bm3d" else "block") + ("s" if len(rows) != 1 else "")
            detail = f"{rows[0][f'{key}_parameters']}; {seconds:.1f} s for {len(rows)} {items}"
            found[f"{label} ({detail})"] = {
                m: statistics.fmean(r[f"{key}_{m}"] for r in rows)
                for m in ("psnr", "ssim")
                if f"{key}_{m}" in rows[0]
            } | {"seconds": seconds}
    return found
