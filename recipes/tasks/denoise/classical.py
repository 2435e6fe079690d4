"""Classical yardsticks for 1-D denoising: the filters a signal person would reach for.

Two fixed filters, each with its parameters chosen by a grid search on *training* data
(a noisy and a clean version of the training part at the noise level of the test), then
applied unchanged to the held-out part:

* **Butterworth low-pass**, zero phase: ``scipy.signal.butter(order, cutoff,
  output="sos")`` run forwards and backwards by ``scipy.signal.sosfiltfilt`` (default
  odd-extension padding), so the effective order is twice ``order`` and nothing is
  delayed. Grid: ``BUTTERWORTH_ORDERS`` × ``BUTTERWORTH_CUTOFFS`` (cut-off as a fraction
  of the Nyquist frequency).
* **Savitzky–Golay**: ``scipy.signal.savgol_filter(x, window, polyorder)`` (least-squares
  polynomial fit in a sliding window; ``mode="interp"`` at the ends). Grid:
  ``SAVGOL_WINDOWS`` × ``SAVGOL_POLYORDERS`` (``polyorder < window``).

The score is PSNR (``ndwconv.recipes.tasks.denoise.metrics.series_psnr``, peak 1 on the
normalised scale), i.e. the smallest mean squared error; ties go to the first grid point
(lowest order, lowest cut-off, shortest window). Grid points a series is too short for
(the filter's padding or window longer than the signal) are skipped.

Example:
    >>> import numpy as np
    >>> t = np.arange(2000)
    >>> clean = 0.5 + 0.4 * np.sin(2 * np.pi * t / 200)
    >>> noisy = clean + np.random.default_rng(0).normal(0, 0.1, t.size)
    >>> choice = best_savgol(noisy, clean)
    >>> choice.parameters["polyorder"] >= 2, choice.apply(noisy).shape
    (True, (2000,))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .metrics import series_psnr

__all__ = [
    "BUTTERWORTH_CUTOFFS",
    "BUTTERWORTH_ORDERS",
    "SAVGOL_POLYORDERS",
    "SAVGOL_WINDOWS",
    "FilterChoice",
    "best_butterworth",
    "best_savgol",
    "butterworth",
    "classical_filters",
    "savgol",
]

BUTTERWORTH_ORDERS = (1, 2, 3, 4, 5, 6, 8)
BUTTERWORTH_CUTOFFS = tuple(float(v) for v in np.geomspace(0.01, 0.9, 40))
"""Cut-offs as fractions of the Nyquist frequency: 40 points from 0.01 to 0.9, evenly
spaced on a log scale (at 360 Hz: 1.8 Hz to 162 Hz)."""
SAVGOL_WINDOWS = (*range(5, 62, 2), 71, 81, 101, 121, 151)
SAVGOL_POLYORDERS = (0, 1, 2, 3, 4, 5, 6)


def _scipy_signal() -> Any:
    try:
        import scipy.signal
    except ImportError as err:  # pragma: no cover - scipy is a core dependency
        raise ImportError("the classical filters need scipy: pip install scipy") from err
    return scipy.signal


def butterworth(x: np.ndarray, order: int, cutoff: float) -> np.ndarray:
    """Zero-phase Butterworth low-pass of ``x`` (float64): ``sosfiltfilt(butter(order,
    cutoff, output="sos"), x)``, ``cutoff`` a fraction of the Nyquist frequency."""
    signal = _scipy_signal()
    sos = signal.butter(order, cutoff, btype="lowpass", output="sos")
    return signal.sosfiltfilt(sos, np.asarray(x, dtype=np.float64))


def savgol(x: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    """Savitzky–Golay smoothing of ``x`` (float64), ``mode="interp"``."""
    return _scipy_signal().savgol_filter(np.asarray(x, dtype=np.float64), window, polyorder)


def _butterworth_fits(order: int, length: int) -> bool:
    sections = (order + 1) // 2
    return length > 3 * (2 * sections + 1)  # sosfiltfilt's default padding


@dataclasses.dataclass(frozen=True)
class FilterChoice:
    """A classical filter with the parameters the grid search chose.

    Attributes:
        key: ``"butterworth"`` or ``"savgol"`` (the prefix of its per-item scores).
        label: what the comparison table calls it.
        parameters: the chosen parameters (keyword arguments of ``butterworth`` /
            ``savgol``).
        training_psnr: its PSNR on the training data it was chosen on.
        candidates: how many grid points were tried.
    """

    key: str
    label: str
    parameters: dict[str, Any]
    training_psnr: float
    candidates: int

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The filter, with the chosen parameters, applied to ``x`` (float64 result)."""
        function = butterworth if self.key == "butterworth" else savgol
        return function(x, **self.parameters)

    def describe(self, sampling_rate: float | None = None) -> str:
        """The parameters in words (frequencies and durations when the rate is known)."""
        p = self.parameters
        if self.key == "butterworth":
            cut = f"cut-off {p['cutoff']:.3g} × Nyquist"
            if sampling_rate:
                cut = f"cut-off {p['cutoff'] * sampling_rate / 2:.3g} Hz"
            return f"order {p['order']}, {cut}"
        window = f"window {p['window']} samples"
        if sampling_rate:
            window += f" ({1000 * p['window'] / sampling_rate:.3g} ms)"
        return f"{window}, polynomial order {p['polyorder']}"


def _search(
    key: str,
    label: str,
    noisy: np.ndarray,
    clean: np.ndarray,
    grid: Iterable[dict[str, Any]],
) -> FilterChoice:
    noisy = np.asarray(noisy, dtype=np.float64)
    clean = np.asarray(clean, dtype=np.float64)
    if noisy.ndim != 1 or noisy.shape != clean.shape:
        raise ValueError(
            f"noisy and clean must be 1-D of one length, got {noisy.shape} and {clean.shape}"
        )
    function = butterworth if key == "butterworth" else savgol
    best: tuple[float, dict[str, Any]] | None = None
    tried = 0
    for parameters in grid:
        tried += 1
        score = series_psnr(function(noisy, **parameters), clean)
        if best is None or score > best[0]:
            best = (score, parameters)
    if best is None:
        raise ValueError(f"a series of {noisy.size} samples is too short for any {label} filter")
    return FilterChoice(key, label, dict(best[1]), best[0], tried)


def best_butterworth(
    noisy: np.ndarray,
    clean: np.ndarray,
    orders: Sequence[int] = BUTTERWORTH_ORDERS,
    cutoffs: Sequence[float] = BUTTERWORTH_CUTOFFS,
) -> FilterChoice:
    """The Butterworth low-pass (order, cut-off) of the grid with the highest PSNR of
    ``butterworth(noisy)`` against ``clean``.

    Raises:
        ValueError: shapes that differ or are not 1-D, or a series too short for all
            orders.
    """
    grid = (
        {"order": int(o), "cutoff": float(c)}
        for o in orders
        if _butterworth_fits(int(o), len(noisy))
        for c in cutoffs
    )
    return _search("butterworth", "Butterworth low-pass", noisy, clean, grid)


def best_savgol(
    noisy: np.ndarray,
    clean: np.ndarray,
    windows: Sequence[int] = SAVGOL_WINDOWS,
    polyorders: Sequence[int] = SAVGOL_POLYORDERS,
) -> FilterChoice:
    """The Savitzky–Golay (window, polyorder) of the grid with the highest PSNR of
    ``savgol(noisy)`` against ``clean`` (odd windows no longer than the series,
    ``polyorder < window``).

    Raises:
        ValueError: shapes that differ or are not 1-D, or a series shorter than every
            window.
    """
    grid = (
        {"window": int(w), "polyorder": int(p)}
        for w in windows
        if w % 2 == 1 and w <= len(noisy)
        for p in polyorders
        if p < w
    )
    return _search("savgol", "Savitzky–Golay", noisy, clean, grid)


def classical_filters(noisy: np.ndarray, clean: np.ndarray) -> list[FilterChoice]:
    """Both yardsticks, each chosen on ``noisy``/``clean`` (a series' training part)."""
    return [best_butterworth(noisy, clean), best_savgol(noisy, clean)]
