"""What the image and the volume denoising tasks share: the trainer's ``evaluate``."""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import nn


class ScoredTask:
    """``evaluate`` on top of a task's ``evaluate_images``, ``config``, ``keep`` and
    ``final_rows``."""

    config: dict[str, Any]
    keep: tuple[str, ...]
    final_rows: list[dict[str, Any]] | None

    def evaluate_images(self, model: nn.Module, device: Any, limit: int | None = None,
                        with_ssim: bool = True, keep: Any = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def evaluate(
        self, model: nn.Module, device: torch.device, final: bool = True
    ) -> dict[str, float]:
        """Mean validation PSNR; during training (``final`` false) of the first
        ``eval.curve_images`` images (or blocks) only."""
        if final:
            # every item, with SSIM and the estimates named in ``keep``: kept in
            # ``final_rows`` so that ``compare`` need not run the model over them again
            rows = self.evaluate_images(model, device, keep=self.keep)
            self.final_rows = rows
        else:
            limit = self.config["eval"]["curve_images"] or None
            rows = self.evaluate_images(model, device, limit=limit, with_ssim=False)
        return {"psnr": statistics.fmean(r["psnr"] for r in rows)}
