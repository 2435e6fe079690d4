"""The noise level of an image or a volume, estimated from its finest wavelet details.

``estimate_sigma`` is the estimator of Donoho and Johnstone (1994, "Ideal spatial
adaptation by wavelet shrinkage", Biometrika 81(3)): take the finest-scale diagonal
detail band of an orthonormal wavelet transform (here the Haar transform, the band that
is high-pass along every axis), where a piecewise-smooth signal leaves few large
coefficients and white noise of standard deviation σ leaves coefficients of standard
deviation σ, and estimate σ robustly as ``median(|d|) / Φ⁻¹(3/4)`` (``Φ⁻¹(3/4) ≈
0.6745``, the median of ``|N(0, 1)|``). scikit-image's
``skimage.restoration.estimate_sigma`` computes the same estimator with a Daubechies-2
wavelet.

What it is good for, and not: additive white Gaussian noise on natural images and
volumes, within about 10 % once σ is a few grey levels; fine texture counts as noise, so
very textured images read high and σ below about 2 (0–255 scale) is not resolved.
Correlated noise (JPEG, demosaicked camera output, smoothed or resampled scans) reads low.
On magnitude MRI (Rician noise) the dark background's noise is Rayleigh-distributed with
a smaller spread, so a volume with much background reads low; give σ yourself there when
it is known.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MAD_TO_SIGMA", "estimate_sigma"]

MAD_TO_SIGMA = 0.6744897501960817
"""``Φ⁻¹(3/4)``: the median of ``|N(0, 1)|``, which turns a median absolute value into σ."""


def estimate_sigma(array: np.ndarray, channel_axis: int | None = None) -> float:
    """The standard deviation of white Gaussian noise in ``array``, on its own scale.

    The Haar finest diagonal band along every axis (each axis cropped to an even length),
    ``median(|d|) / 0.6745``; with ``channel_axis``, the mean of the estimates of the
    channels. Non-finite samples are left out of the median.

    Args:
        array: an image or volume, any number of axes (each of length ≥ 2 but the
            channel axis).
        channel_axis: the axis that holds channels, or ``None``.

    Returns:
        σ̂ (0.0 for a constant array).

    Raises:
        ValueError: an axis shorter than 2, no finite detail coefficient, or a bad
            ``channel_axis``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> smooth = np.add.outer(np.linspace(0, 1, 256), np.linspace(0, 1, 256))
        >>> round(estimate_sigma(smooth + 0.1 * rng.standard_normal((256, 256))), 2)
        0.1
    """
    data = np.asarray(array)
    if data.dtype.kind not in "biuf":
        raise ValueError(f"array must hold real numbers, got dtype {data.dtype}")
    if channel_axis is not None:
        if not -data.ndim <= channel_axis < data.ndim:
            raise ValueError(f"channel_axis {channel_axis} is out of range for {data.ndim} axes")
        channels = np.moveaxis(data, channel_axis, 0)
        return float(np.mean([estimate_sigma(channel) for channel in channels]))
    _check_shape(data.shape)
    detail = data.astype(np.float64, copy=False)
    for axis, length in enumerate(detail.shape):
        even = length - length % 2
        first = np.take(detail, np.arange(0, even, 2), axis=axis)
        second = np.take(detail, np.arange(1, even, 2), axis=axis)
        detail = (first - second) / np.sqrt(2.0)
    magnitudes = np.abs(detail[np.isfinite(detail)])
    if magnitudes.size == 0:
        raise ValueError("array has no finite detail coefficients to estimate σ from")
    return float(np.median(magnitudes) / MAD_TO_SIGMA)


def _check_shape(shape: Sequence[int]) -> None:
    if len(shape) == 0:
        raise ValueError("array must have at least one axis")
    short = [axis for axis, length in enumerate(shape) if length < 2]
    if short:
        raise ValueError(
            f"array axis {short[0]} has length {shape[short[0]]}; every axis needs ≥ 2"
        )
