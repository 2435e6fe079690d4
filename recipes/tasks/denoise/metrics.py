"""Scoring denoisers: PSNR and SSIM against the clean 8-bit image.

Conventions (those of the DnCNN line of work): an estimate is scored on the 0–255 scale
against the clean ``uint8`` image; the estimate is clipped to [0, 255] but not rounded
to integers, so a score measures the network, not a quantiser. SSIM follows Wang et al.,
"Image quality assessment: from error visibility to structural similarity", IEEE TIP
2004: an 11×11 Gaussian window of σ 1.5 and population (not sample) covariances.

Example:
    >>> import numpy as np, torch
    >>> clean = np.full((16, 16), 100, np.uint8)
    >>> estimate = to_uint8_scale(torch.full((1, 16, 16), 110 / 255))
    >>> round(psnr(estimate, clean), 2)
    28.13
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["psnr", "series_psnr", "snr", "ssim", "ssim_nd", "to_uint8_scale"]


def _as_float64(x: np.ndarray | Tensor, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(x)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array.astype(np.float64)


def _estimate_and_clean(
    estimate: np.ndarray | Tensor, clean: np.ndarray | Tensor, data_range: float
) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 arrays of one shape, the estimate clipped to the range."""
    if isinstance(data_range, bool) or not 0 < data_range < math.inf:
        raise ValueError(f"data_range must be a finite number > 0, got {data_range!r}")
    est, ref = _as_float64(estimate, "estimate"), _as_float64(clean, "clean")
    if est.shape != ref.shape or est.size == 0:
        raise ValueError(
            f"estimate and clean must have one non-empty shape, got estimate {est.shape} "
            f"and clean {ref.shape}"
        )
    return np.clip(est, 0.0, data_range), ref


def psnr(
    estimate: np.ndarray | Tensor, clean: np.ndarray | Tensor, data_range: float = 255.0
) -> float:
    """Peak signal-to-noise ratio in dB, ``10 · log10(data_range² / MSE)``.

    Args:
        estimate: the estimate on the 0–``data_range`` scale (any real dtype, e.g. from
            ``to_uint8_scale``); it is clipped to [0, ``data_range``], not rounded.
        clean: the reference, normally the clean ``uint8`` image, same shape.
        data_range: the peak value.

    Returns:
        PSNR in dB; ``math.inf`` when the (clipped) estimate equals ``clean``.

    Raises:
        ValueError: if the shapes differ (the message gives both) or are empty.

    Example:
        >>> import numpy as np
        >>> clean = np.zeros((4, 4), np.uint8)
        >>> psnr(np.full((4, 4), 25.5), clean), psnr(np.full((4, 4), -3.0), clean)
        (20.0, inf)
    """
    est, ref = _estimate_and_clean(estimate, clean, data_range)
    mse = float(np.mean((est - ref) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def _pair(
    estimate: np.ndarray | Tensor, clean: np.ndarray | Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as float64 arrays of one non-empty shape, finite, nothing clipped."""
    est, ref = _as_float64(estimate, "estimate"), _as_float64(clean, "clean")
    if est.shape != ref.shape or est.size == 0:
        raise ValueError(
            f"estimate and clean must have one non-empty shape, got estimate {est.shape} "
            f"and clean {ref.shape}"
        )
    for name, array in (("estimate", est), ("clean", ref)):
        if not np.isfinite(array).all():
            raise ValueError(f"{name} holds {int((~np.isfinite(array)).sum())} non-finite values")
    return est, ref


def series_psnr(
    estimate: np.ndarray | Tensor, clean: np.ndarray | Tensor, peak: float = 1.0
) -> float:
    """Peak signal-to-noise ratio of a signal in dB, ``10 · log10(peak² / MSE)``, unclipped.

    The series recipe's convention: the signal is normalised so that its training part
    spans [0, 1] (``ndwconv.recipes.tasks.denoise.series_data.normalise``) and ``peak``
    is 1, the training part's full range; the estimate is neither clipped nor rounded (a
    held-out part may leave [0, 1]). The value does not change when both signals are
    mapped back to their physical units with ``peak`` the training range in those units.

    Returns:
        PSNR in dB; ``math.inf`` when the estimate equals ``clean``.

    Raises:
        ValueError: shapes that differ or are empty, non-finite values, or ``peak`` ≤ 0.

    Example:
        >>> import numpy as np
        >>> round(series_psnr(np.full(8, 0.1), np.zeros(8)), 6)   # MSE 0.01, peak 1
        20.0
    """
    if isinstance(peak, bool) or not 0 < peak < math.inf:
        raise ValueError(f"peak must be a finite number > 0, got {peak!r}")
    est, ref = _pair(estimate, clean)
    mse = float(np.mean((est - ref) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def snr(estimate: np.ndarray | Tensor, clean: np.ndarray | Tensor) -> float:
    """Signal-to-noise ratio in dB, ``10 · log10(Σ (c − c̄)² / Σ (x − c)²)``.

    ``c`` is the clean signal, ``c̄`` its mean over the scored samples and ``x`` the
    estimate (not clipped): the power of the clean signal's variation over the power of
    the error. Removing the mean makes the score independent of the signal's offset (an
    ECG's baseline, or the shift of a normalisation), so it is the same in physical and
    in normalised units.

    Returns:
        SNR in dB; ``math.inf`` when the estimate equals ``clean``.

    Raises:
        ValueError: shapes that differ or are empty, non-finite values, or a constant
            clean signal (no signal power).

    Example:
        >>> import numpy as np
        >>> clean = np.array([1.0, -1.0, 1.0, -1.0]) + 5   # variance 1 around 5
        >>> round(snr(clean + 0.1, clean), 6)              # error power 0.01
        20.0
    """
    est, ref = _pair(estimate, clean)
    power = float(np.sum((ref - ref.mean()) ** 2))
    if power == 0:
        raise ValueError("clean is constant: a signal-to-noise ratio needs a varying signal")
    error = float(np.sum((est - ref) ** 2))
    return math.inf if error == 0 else 10.0 * math.log10(power / error)


def ssim(
    estimate: np.ndarray | Tensor, clean: np.ndarray | Tensor, data_range: float = 255.0
) -> float:
    """Structural similarity (Wang et al. 2004) of the clipped estimate and the clean image.

    Computed by ``skimage.metrics.structural_similarity`` with ``gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False`` (the paper's settings, which make scores
    comparable with published ones) and, for ``(H, W, C)`` images, ``channel_axis=-1``
    (the mean over channels). Images must be at least 11×11.

    Args:
        estimate: ``(H, W)`` or ``(H, W, C)`` estimate on the 0–``data_range`` scale;
            clipped to [0, ``data_range``], not rounded.
        clean: the reference, normally the clean ``uint8`` image, same shape.
        data_range: the peak value.

    Returns:
        SSIM, 1.0 for identical images.

    Raises:
        ValueError: if the shapes differ or are not 2-D / 3-D.
        ImportError: if scikit-image is not installed.

    Example:
        >>> import numpy as np
        >>> clean = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
        >>> ssim(clean.astype(float), clean)
        1.0
    """
    est, ref = _estimate_and_clean(estimate, clean, data_range)
    if est.ndim not in (2, 3):
        raise ValueError(f"ssim needs (H, W) or (H, W, C) images, got shape {est.shape}")
    try:
        from skimage.metrics import structural_similarity
    except ImportError as err:
        raise ImportError(
            'ssim needs scikit-image: pip install -e ".[recipes]" in the ndwconv repository root'
        ) from err
    return float(
        structural_similarity(
            est,
            ref,
            data_range=data_range,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=-1 if est.ndim == 3 else None,
        )
    )


def ssim_nd(
    estimate: np.ndarray | Tensor, clean: np.ndarray | Tensor, data_range: float = 255.0
) -> float:
    """SSIM of two single-channel arrays of any dimension (volumes: 3-D, series: 4-D).

    The settings of ``ssim`` (Gaussian window σ = 1.5 along every axis, population
    covariance), with no channel axis; every axis needs at least 11 samples.

    Example:
        >>> import numpy as np
        >>> clean = np.indices((12, 12, 12)).sum(0).astype(float) * 7
        >>> ssim_nd(clean, clean)
        1.0
    """
    est, ref = _estimate_and_clean(estimate, clean, data_range)
    if min(est.shape) < 11:
        raise ValueError(f"ssim_nd needs at least 11 samples per axis, got shape {est.shape}")
    try:
        from skimage.metrics import structural_similarity
    except ImportError as err:
        raise ImportError(
            'ssim_nd needs scikit-image: pip install -e ".[recipes]" in the ndwconv repository root'
        ) from err

    return float(
        structural_similarity(
            est, ref, data_range=data_range, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, channel_axis=None,
        )
    )


def to_uint8_scale(x01: Tensor) -> np.ndarray:
    """A ``(C, H, W)`` image on the [0, 1] scale → float64 on the 0–255 scale, channels last.

    The values are multiplied by 255, neither rounded nor clipped (``psnr`` and ``ssim``
    clip), so scores are those of the estimate itself against the 8-bit image.

    Args:
        x01: ``(C, H, W)`` tensor.

    Returns:
        ``(H, W)`` for one channel, else ``(H, W, C)``; float64.

    Example:
        >>> to_uint8_scale(torch.ones(3, 2, 4)).shape
        (2, 4, 3)
    """
    if not isinstance(x01, Tensor) or x01.ndim != 3:
        raise ValueError(f"x01 must be a (C, H, W) tensor, got {describe_value(x01)}")
    array = x01.detach().to("cpu", torch.float64).numpy() * 255.0
    return array[0] if array.shape[0] == 1 else np.ascontiguousarray(np.moveaxis(array, 0, -1))


def describe_value(x: object) -> str:
    shape = getattr(x, "shape", None)
    return f"shape {tuple(shape)}" if shape is not None else type(x).__name__
