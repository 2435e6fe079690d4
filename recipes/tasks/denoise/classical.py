"""Classical yardsticks: what a user would pick instead of a network.

**Images and volumes** (scored next to the networks in a comparison, see
``yardstick_for``): the denoisers their authors recommend for a *known* noise level,
applied to the noisy validation items on the [0, 1] scale the networks see, with σ the
task's ``noise.validation_sigma`` / 255:

* **BM3D** for 2-D images (Dabov et al. 2007; the ``bm3d`` package, whose wrapper
  follows Mäkinen et al. 2020): ``bm3d.bm3d(noisy, sigma_psd=σ/255)`` for grey images,
  ``bm3d.bm3d_rgb(noisy, sigma_psd=σ/255)`` (block matching on the luminance of the
  opponent colour transform) for RGB; the package's default profile ``'np'`` and both
  stages (hard thresholding, then Wiener filtering).
* **Non-local means** for volumes (Coupé et al. 2008, blockwise; dipy's ``nlmeans``):
  ``nlmeans(noisy, sigma=σ/255, patch_radius=1, block_radius=2, rician=…,
  method="blockwise", num_threads=1)``: the radii of dipy's defaults and its T1
  example, ``rician=True`` for Rician noise (the bias correction of Wiest-Daesslé et al.
  2008), ``False`` for Gaussian noise, one thread because several make the result change
  from run to run. A 4-D block is filtered frame by frame (dipy's 4-D convention).

Both packages are optional (``pip install -e ".[classical]"``); a missing one is reported
(``missing_package``), never silently left out.

**Series**: two fixed filters, each with its parameters chosen by a grid search on
*training* data (a noisy and a clean version of the training part at the noise level of
the test), then applied unchanged to the held-out part:

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
    >>> yardstick_for(2, "gaussian", 25.0).key
    'bm3d'
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .metrics import series_psnr

__all__ = [
    "BM3D_PROFILE",
    "BUTTERWORTH_CUTOFFS",
    "BUTTERWORTH_ORDERS",
    "NLMEANS_BLOCK_RADIUS",
    "NLMEANS_PATCH_RADIUS",
    "SAVGOL_POLYORDERS",
    "SAVGOL_WINDOWS",
    "YARDSTICK_LABELS",
    "FilterChoice",
    "Yardstick",
    "best_butterworth",
    "best_savgol",
    "bm3d_denoise",
    "butterworth",
    "classical_filters",
    "missing_package",
    "nlmeans_denoise",
    "savgol",
    "yardstick_for",
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


# ---------------------------------------------------------------------------------------
# Images and volumes: BM3D and non-local means at the known noise level
# ---------------------------------------------------------------------------------------

BM3D_PROFILE = "np"
"""The ``bm3d`` package's default profile (its parameters for white Gaussian noise)."""
NLMEANS_PATCH_RADIUS = 1
"""dipy's default and its T1 example's: 3×3×3 patches are compared."""
NLMEANS_BLOCK_RADIUS = 2
"""dipy's default for the blockwise method and its T1 example's: 5×5×5 blocks."""
YARDSTICK_LABELS = {"bm3d": "BM3D", "nlmeans": "non-local means"}
"""The classical yardsticks of image and volume denoising, by the prefix of their
per-item scores."""
_PACKAGES = {"bm3d": "bm3d", "nlmeans": "dipy"}


def _module(name: str) -> Any:
    """``importlib.import_module(name)`` (a seam tests can replace)."""
    return importlib.import_module(name)


def missing_package(key: str) -> str | None:
    """Why the yardstick ``key`` (``"bm3d"``, ``"nlmeans"``) cannot run here, in words,
    or ``None`` when its package imports.

    Example:
        >>> missing_package("nlmeans") is None or "dipy" in missing_package("nlmeans")
        True
    """
    if key not in _PACKAGES:
        raise ValueError(f"key must be one of {', '.join(_PACKAGES)}, got {key!r}")
    package = _PACKAGES[key]
    advice = 'pip install -e ".[classical]" in the ndwconv repository root'
    try:
        module = _module("dipy.denoise.nlmeans" if key == "nlmeans" else package)
    except ImportError as err:
        return f"the {package} package is not installed ({err}); {advice}"
    if key == "nlmeans" and "method" not in inspect.signature(module.nlmeans).parameters:
        return f"dipy {_version('dipy')} has no blockwise nlmeans (dipy ≥ 1.12 has); {advice}"
    return None


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:  # pragma: no cover - imported but without metadata
        return "?"


def _check_noisy(noisy: np.ndarray, sigma: float, dims: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(noisy, dtype=np.float64)
    if array.ndim not in dims:
        raise ValueError(
            f"noisy must have {' or '.join(map(str, dims))} axes, got shape {array.shape}"
        )
    if isinstance(sigma, bool) or not 0 < sigma < float("inf"):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    return array


def bm3d_denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D of a noisy image at the known noise level ``sigma`` (same scale as
    ``noisy``): ``bm3d.bm3d(noisy, sigma_psd=sigma, profile="np")`` for ``(H, W)`` (and
    ``(H, W, C)`` with C ≠ 3), ``bm3d.bm3d_rgb(noisy, sigma_psd=sigma, profile="np")`` for
    ``(H, W, 3)``. Returns float64 of ``noisy``'s shape; ``noisy`` is not modified.

    Raises:
        ValueError: ``noisy`` not 2-D or 3-D, or ``sigma`` not > 0.
        ImportError: the ``bm3d`` package is missing.
    """
    array = _check_noisy(noisy, sigma, (2, 3))
    bm3d = _module("bm3d")
    if array.ndim == 3 and array.shape[2] == 3:
        out = bm3d.bm3d_rgb(array.copy(), sigma_psd=float(sigma), profile=BM3D_PROFILE)
    else:
        out = bm3d.bm3d(array.copy(), sigma_psd=float(sigma), profile=BM3D_PROFILE)
    return np.asarray(out, dtype=np.float64).reshape(array.shape)


def nlmeans_denoise(noisy: np.ndarray, sigma: float, rician: bool) -> np.ndarray:
    """dipy's blockwise non-local means of a noisy volume (3-D, or 4-D frame by frame)
    at the known noise level ``sigma`` (same scale as ``noisy``; for Rician noise the σ
    of the Gaussian noise in each of the two channels): ``nlmeans(noisy, sigma=sigma,
    patch_radius=1, block_radius=2, rician=rician, method="blockwise", num_threads=1)``
    (one thread: with several, dipy's result changes from run to run). Returns
    float64 of ``noisy``'s shape; ``noisy`` is not modified.

    Raises:
        ValueError: ``noisy`` not 3-D or 4-D, or ``sigma`` not > 0.
        ImportError: dipy is missing.
    """
    array = _check_noisy(noisy, sigma, (3, 4))
    nlmeans = _module("dipy.denoise.nlmeans").nlmeans
    out = nlmeans(
        array.copy(),
        sigma=float(sigma),
        patch_radius=NLMEANS_PATCH_RADIUS,
        block_radius=NLMEANS_BLOCK_RADIUS,
        rician=bool(rician),
        method="blockwise",
        num_threads=1,  # several threads make it irreproducible (~0.002 dB between runs)
    )
    return np.asarray(out, dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class Yardstick:
    """A classical denoiser with its parameters fixed for one noise level.

    Attributes:
        key: ``"bm3d"`` or ``"nlmeans"`` (the prefix of its per-item scores).
        label: what the comparison table calls it.
        package: the package it needs (``missing_package(key)`` says whether it is here).
        parameters: the call, in words (for the table and the report).
        function: ``noisy (0–1 scale) → estimate (0–1 scale)``.
    """

    key: str
    label: str
    package: str
    parameters: str
    function: Callable[[np.ndarray], np.ndarray]

    def apply(self, noisy: np.ndarray) -> np.ndarray:
        """The yardstick's estimate of ``noisy`` (float64, same shape and scale)."""
        return self.function(noisy)


def yardstick_for(spatial_dims: int, kind: str, sigma255: float) -> Yardstick:
    """The yardstick of a task with ``spatial_dims`` axes, noise ``kind`` (``gaussian``
    or ``rician``) of σ ``sigma255`` on the 0–255 scale: BM3D for 2-D images (Gaussian
    noise), non-local means for volumes (3-D, 4-D). It takes and returns the [0, 1]
    scale, so σ is ``sigma255 / 255``.

    Raises:
        ValueError: another number of axes, an unknown kind, Rician noise on images, or
            σ not > 0.
    """
    if isinstance(sigma255, bool) or not 0 < sigma255 < float("inf"):
        raise ValueError(f"sigma255 must be a finite number > 0, got {sigma255!r}")
    if kind not in ("gaussian", "rician"):
        raise ValueError(f"kind must be 'gaussian' or 'rician', got {kind!r}")
    sigma = float(sigma255) / 255.0
    shown = f"{sigma255:g}/255 (the known σ)"
    if spatial_dims == 2:
        if kind != "gaussian":
            raise ValueError("BM3D's parameters here are for Gaussian noise, got Rician")
        return Yardstick(
            "bm3d",
            YARDSTICK_LABELS["bm3d"],
            "bm3d",
            f"bm3d {_version('bm3d')}, sigma_psd = {shown}, profile '{BM3D_PROFILE}'",
            lambda noisy: bm3d_denoise(noisy, sigma),
        )
    if spatial_dims in (3, 4):
        rician = kind == "rician"
        return Yardstick(
            "nlmeans",
            YARDSTICK_LABELS["nlmeans"],
            "dipy",
            f"dipy {_version('dipy')} blockwise, sigma = {shown}, patch radius "
            f"{NLMEANS_PATCH_RADIUS}, block radius {NLMEANS_BLOCK_RADIUS}, "
            f"rician={rician}, one thread" + (", frame by frame" if spatial_dims == 4 else ""),
            lambda noisy: nlmeans_denoise(noisy, sigma, rician),
        )
    raise ValueError(f"spatial_dims must be 2, 3 or 4, got {spatial_dims}")
