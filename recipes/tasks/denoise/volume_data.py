"""Training data from volumes: N-D patches with Gaussian or Rician noise.

The volume counterpart of ``ndwconv.recipes.tasks.denoise.data.PatchDataset`` for 3-D
(or 4-D) networks: cubic patches cut at random from intensity-normalised volumes, with a noise model
suited to magnitude images.

* **Normalisation** (``normalise``): each volume is mapped to [0, 1] by a robust range,
  its ``low``-th and ``high``-th percentiles (default 0.5 and 99.5), and clipped. The range
  is recorded so that a denoised volume can be mapped back.
* **Noise**: σ is on the 0–255 scale of the normalised intensity, as for images, so
  ``σ = 25`` is about 10 % of the range. ``"gaussian"`` adds white Gaussian noise (not
  clipped); ``"rician"`` returns the magnitude of a complex signal with independent
  Gaussian noise in both channels, ``sqrt((x + σ n₁)² + (σ n₂)²)``, the noise of MRI
  magnitude images.
* **Reproducibility**: item ``i`` is a pure function of ``(seed, i)`` — the trainer's
  contract — so resuming and distributed training need no sampler state.
* **Foreground**: with ``min_foreground > 0`` a patch is redrawn (up to 10 times, all
  draws from the item's own generator) until that fraction of its clean voxels exceeds
  ``foreground_level``, so that training does not spend its budget on empty background.

Example:
    >>> import numpy as np
    >>> volume = np.random.default_rng(0).random((20, 18, 16)).astype(np.float32)
    >>> data = VolumePatches([normalise(volume)[0]], patch_size=8, kind="rician", sigma=25)
    >>> noisy, clean = data[0]
    >>> noisy.shape, clean.shape
    (torch.Size([1, 8, 8, 8]), torch.Size([1, 8, 8, 8]))
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from numbers import Real

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ...engine import streams
from .data import NoiseSpec

__all__ = [
    "NOISE_KINDS",
    "SSIM_MIN_LENGTH",
    "VolumePatches",
    "add_noise",
    "check_block_shape",
    "held_out",
    "min_holdout_length",
    "normalise",
]

NOISE_KINDS = ("gaussian", "rician")
SSIM_MIN_LENGTH = 11
"""Samples per axis that SSIM's 11-tap Gaussian window needs in a validation block."""
_MAX_DRAWS = 10


def held_out(size: int, holdout: float) -> int:
    """How many of ``size`` samples the hold-out split keeps for validation (the last
    ``round(size · holdout)``)."""
    return round(size * holdout)


def min_holdout_length(holdout: float, patch: int, least: int = SSIM_MIN_LENGTH) -> int:
    """The shortest hold-out axis that leaves ``least`` samples for validation and
    ``patch`` for training.

    Example:
        >>> min_holdout_length(0.25, 16)   # a series held out along time: round(0.25 · 42) = 10
        43
    """
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    size = max(least, patch)
    while held_out(size, holdout) < least or size - held_out(size, holdout) < patch:
        size += 1
    return size


def check_block_shape(
    name: str,
    shape: tuple[int, ...],
    patch: int,
    holdout: float | None = None,
    axis: int | None = None,
    validation: bool = False,
    holdout_key: str = "data.holdout",
) -> None:
    """Refuse a volume too short, along some axis, for training patches or for SSIM.

    Args:
        name: the volume, as messages name it.
        shape: its spatial shape (after any cropping).
        patch: ``data.patch_size``.
        holdout, axis: the fraction held out for validation and the axis it is cut along,
            for a training volume that is split; None for a volume used whole.
        validation: the volume is a validation volume (SSIM's minimum, no patch).
        holdout_key: the key ``holdout`` comes from, as messages name it
            (``tune.holdout`` for the validation block of ``tune.split``).

    Raises:
        ValueError: naming the axis, its length and the least length it needs.
    """
    for a, size in enumerate(shape):
        if holdout is not None and a == axis:
            need = min_holdout_length(holdout, patch)
            why = (
                f"{holdout_key} {holdout:g} of it is kept for validation, where SSIM needs "
                f"at least {SSIM_MIN_LENGTH}, and the rest must hold data.patch_size {patch}; "
                "give a longer volume, another data.holdout_axis"
                + (", or data.validation volumes" if holdout_key == "data.holdout" else "")
            )
        elif validation:
            need = SSIM_MIN_LENGTH
            why = f"SSIM needs at least {SSIM_MIN_LENGTH} samples per axis of a validation volume"
        elif holdout is not None:
            need = max(SSIM_MIN_LENGTH, patch)
            why = (
                f"SSIM needs at least {SSIM_MIN_LENGTH} per axis of its validation block and "
                f"training patches are data.patch_size {patch} long"
            )
        else:
            need = patch
            why = f"training patches are data.patch_size {patch} long"
        if size < need:
            raise ValueError(
                f"{name}: axis {a} has length {size} (shape {tuple(shape)}) but needs at "
                f"least {need}: {why}"
            )


def normalise(
    volume: np.ndarray, low: float = 0.5, high: float = 99.5
) -> tuple[np.ndarray, tuple[float, float]]:
    """``volume`` mapped to [0, 1] by its percentiles ``low`` and ``high``, clipped.

    Returns:
        The float32 array and the ``(value at low, value at high)`` range it was mapped
        from (``x = lo + y · (hi − lo)`` maps back).

    Raises:
        ValueError: if the percentiles are not ``0 ≤ low < high ≤ 100``, the volume holds
            non-finite values, or its range is empty (a constant volume).
    """
    if not (0 <= low < high <= 100):
        raise ValueError(f"percentiles must satisfy 0 ≤ low < high ≤ 100, got {low}, {high}")
    array = np.asarray(volume, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"volume has {int((~np.isfinite(array)).sum())} non-finite voxels")
    lo, hi = (float(v) for v in np.percentile(array, [low, high]))
    if not hi > lo:
        raise ValueError(
            f"volume has an empty intensity range ({lo} to {hi}) between "
            f"percentiles {low} and {high}"
        )
    return np.clip((array - lo) / (hi - lo), 0.0, 1.0).astype(np.float32), (lo, hi)


def add_noise(clean01: Tensor, sigma255: float, kind: str, generator: torch.Generator) -> Tensor:
    """Gaussian (``clean + σ n``) or Rician (``|clean + σ n₁ + iσ n₂|``) noise, σ on 0–255.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.zeros(100_000)
        >>> round(float(add_noise(x, 25.5, "rician", g).mean()), 3)  # σ·√(π/2) on zeros
        0.125
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind must be one of {', '.join(NOISE_KINDS)}, got {kind!r}")
    sigma = float(sigma255) / 255.0
    first = torch.randn(clean01.shape, generator=generator, dtype=clean01.dtype)
    if kind == "gaussian":
        return clean01 + sigma * first
    second = torch.randn(clean01.shape, generator=generator, dtype=clean01.dtype)
    return torch.hypot(clean01 + sigma * first, sigma * second)


class VolumePatches(Dataset):
    """Noisy/clean cubic patches of normalised volumes; item ``i`` depends on ``(seed, i)``.

    Args:
        volumes: arrays on the [0, 1] scale (see ``normalise``), each with the same number
            of spatial axes (2 or more); a volume may also carry a leading channel axis
            when ``channels_first`` is set.
        patch_size: side of the cubic patch (per axis: a sequence).
        sigma: noise σ on the 0–255 scale, a number, a ``(low, high)`` range drawn per
            patch, or a ``NoiseSpec``.
        kind: ``"gaussian"`` or ``"rician"``.
        seed: non-negative seed.
        flips: flip each spatial axis at random (axes are never swapped: voxels may be
            anisotropic).
        min_foreground: fraction of a patch's clean voxels that must exceed
            ``foreground_level`` (0 disables the test).
        foreground_level: the intensity that counts as foreground.
        length: nominal epoch for ``len``; items are an endless stream.

    Shapes:
        item: ``(noisy, clean)``, float32 ``(C, *patch)``.
    """

    def __init__(
        self,
        volumes: Sequence[np.ndarray],
        patch_size: int | Sequence[int],
        sigma: float | tuple[float, float] | NoiseSpec = 25.0,
        kind: str = "gaussian",
        seed: int = 0,
        flips: bool = True,
        min_foreground: float = 0.0,
        foreground_level: float = 0.1,
        length: int | None = None,
        channels_first: bool = False,
    ):
        if len(volumes) == 0:
            raise ValueError("volumes must hold at least one volume")
        arrays = [np.asarray(v, dtype=np.float32) for v in volumes]
        if not channels_first:
            arrays = [a[None] for a in arrays]
        ndim = arrays[0].ndim - 1
        if ndim < 1 or any(a.ndim != ndim + 1 for a in arrays):
            raise ValueError("volumes must all have the same number of axes")
        if any(a.shape[0] != arrays[0].shape[0] for a in arrays):
            raise ValueError("volumes must all have the same number of channels")
        if isinstance(patch_size, Sequence):
            patch = tuple(int(p) for p in patch_size)
        else:
            patch = (int(patch_size),) * ndim
        if len(patch) != ndim or min(patch) < 1:
            raise ValueError(f"patch_size must be ≥ 1 for each of {ndim} axes, got {patch_size}")
        for i, a in enumerate(arrays):
            if any(p > s for p, s in zip(patch, a.shape[1:], strict=True)):
                raise ValueError(
                    f"patch_size {patch} is larger than volume #{i} of shape {a.shape[1:]}"
                )
        self.noise = sigma if isinstance(sigma, NoiseSpec) else NoiseSpec(sigma)
        if kind not in NOISE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(NOISE_KINDS)}, got {kind!r}")
        if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        for name, value in (
            ("min_foreground", min_foreground),
            ("foreground_level", foreground_level),
        ):
            if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        self.volumes, self.patch, self.kind, self.seed = arrays, patch, kind, seed
        self.flips, self.min_foreground = bool(flips), float(min_foreground)
        self.foreground_level = float(foreground_level)
        self.length = length if length is not None else 128 * len(arrays)

    def __len__(self) -> int:
        return self.length

    def _crop(self, generator: torch.Generator) -> np.ndarray:
        which = int(torch.randint(len(self.volumes), (1,), generator=generator))
        volume = self.volumes[which]
        corner = [
            int(torch.randint(size - p + 1, (1,), generator=generator))
            for size, p in zip(volume.shape[1:], self.patch, strict=True)
        ]
        return volume[
            (slice(None), *(slice(c, c + p) for c, p in zip(corner, self.patch, strict=True)))
        ]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        i = operator.index(index)
        if i < 0:
            raise IndexError(f"VolumePatches items are numbered from 0, got {index}")
        generator = streams.generator("volume_patches", self.seed, i)
        for _ in range(_MAX_DRAWS):
            patch = self._crop(generator)
            if self.min_foreground <= 0:
                break
            if (patch > self.foreground_level).mean() >= self.min_foreground:
                break
        if self.flips:
            flips = torch.rand(len(self.patch), generator=generator) < 0.5
            axes = [1 + a for a, f in enumerate(flips.tolist()) if f]
            if axes:
                patch = np.flip(patch, axes)
        low, high = self.noise.bounds
        sigma = low + (high - low) * float(torch.rand(1, dtype=torch.float64, generator=generator))
        clean = torch.from_numpy(np.ascontiguousarray(patch))
        return add_noise(clean, sigma, self.kind, generator), clean

    def __repr__(self) -> str:
        return (
            f"VolumePatches({len(self.volumes)} volumes, patch={self.patch}, "
            f"noise={self.kind}:{self.noise}, seed={self.seed})"
        )
