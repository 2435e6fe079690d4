"""One-dimensional signals for the denoising recipe: reading, splitting, normalising.

A *series* is one real-valued signal sampled at a fixed rate (an ECG lead, a sensor
trace). The series recipe (``ndwconv.recipes.tasks.denoise.series``) trains a 1-D
denoiser on the first part of each series and scores it on the last part:

* **Sources** (``read_series``): ``"embedded:mitdb"``, the ECG excerpt bundled in the
  ``sktime`` wheel (``mitdb_path``); a ``.npy`` file holding one 1-D array; a
  ``.csv``/``.tsv`` file, one sample per row, the column named after a colon
  (``ecg.csv:lead_ii``; by header name, or by 0-based number when the file has no header;
  a file with one column needs none); or a NetCDF-4 file's 1-D variable
  (``obs.nc:temp``, read by xarray with the h5netcdf engine: the ``timeseries`` extra).
* **Split** (``split``): contiguous, never random: the last ``round(holdout · n)``
  samples are the held-out part, the training part ends ``gap`` samples before it. No
  sample is in both parts, so no training crop overlaps the held-out part.
* **Normalisation** (``normalise``): both parts are mapped by the same affine map,
  ``(x − lo) / (hi − lo)``, where ``lo`` and ``hi`` are percentiles (default the minimum
  and maximum) of the *training part only*; nothing is clipped, so a held-out sample
  outside the training range stays outside [0, 1].

Example:
    >>> import numpy as np
    >>> x = np.arange(10.0)
    >>> train, test = split(x, holdout=0.3, gap=1)
    >>> train.tolist(), test.tolist()
    ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [7.0, 8.0, 9.0])
    >>> (train01, test01), (lo, hi) = normalise(train, [test])
    >>> (lo, hi), [round(float(v), 6) for v in test01]
    ((0.0, 5.0), [1.4, 1.6, 1.8])
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "EMBEDDED_MITDB",
    "MITDB_SAMPLING_RATE",
    "SERIES_EXTENSIONS",
    "is_series_path",
    "mitdb_path",
    "normalise",
    "read_series",
    "split",
    "split_source",
]

EMBEDDED_MITDB = "embedded:mitdb"
"""The source name of the ECG excerpt bundled in the ``sktime`` wheel."""

MITDB_SAMPLING_RATE = 360.0
"""Sampling rate (Hz) of the MIT-BIH Arrhythmia Database (Moody & Mark 2001), which the
bundled excerpt is said to come from; the file itself records no rate."""

SERIES_EXTENSIONS = (".csv", ".tsv", ".npy", ".nc")
"""File suffixes ``read_series`` reads (compared case-insensitively)."""

_MITDB_FILE = ("datasets", "data", "mitdb", "mitdb.csv")
_INSTALL_HINT = 'pip install -e ".[examples]" in the ndwconv repository root'


def mitdb_path() -> Path:
    """The ECG excerpt in the ``sktime`` wheel: ``sktime/datasets/data/mitdb/mitdb.csv``.

    Found through ``importlib.util.find_spec``, which locates the package without
    importing it (importing sktime pulls in pandas and scikit-learn). The file has a
    header ``data,label`` and 7500 rows; ``data`` is the signal (see docs/timeseries.md
    for what is and is not known about its origin).

    Raises:
        ImportError: sktime is not installed (the message gives the install command).
        FileNotFoundError: the installed sktime has no such file.
    """
    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"{EMBEDDED_MITDB} is the ECG excerpt shipped with the sktime package, part of "
            f"the examples extra: {_INSTALL_HINT} (or give your own series with --data)"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_MITDB_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"the installed sktime has no {'/'.join(_MITDB_FILE)} ({path})")
    return path


def is_series_path(spec: str) -> bool:
    """Whether ``spec`` names a series file or source (``.csv``/``.tsv``/``.npy``, with an
    optional ``:column``, or ``embedded:mitdb``)."""
    return spec == EMBEDDED_MITDB or split_source(spec)[0].lower().endswith(SERIES_EXTENSIONS)


def split_source(spec: str) -> tuple[str, str | None]:
    """``"file.csv:column"`` → ``("file.csv", "column")``; ``None`` when no column is named.

    Only a colon after a series suffix separates a column, so Windows drive letters and
    colons inside folder names are left alone.

    Example:
        >>> split_source("C:/data/ecg.csv:II"), split_source("ecg.npy")
        (('C:/data/ecg.csv', 'II'), ('ecg.npy', None))
    """
    head, sep, tail = spec.rpartition(":")
    if sep and head.lower().endswith(SERIES_EXTENSIONS):
        return head, tail
    return spec, None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_table(path: Path, column: str | None, label: str) -> np.ndarray:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            rows = [row for row in csv.reader(stream, delimiter=delimiter) if row]
    except UnicodeDecodeError:
        raise ValueError(f"{label} is not a UTF-8 text file") from None
    if not rows:
        raise ValueError(f"{label} is empty")
    header = None if all(_is_number(v) for v in rows[0]) else [v.strip() for v in rows[0]]
    body = rows[1:] if header is not None else rows
    width = len(rows[0])
    names = header if header is not None else [str(i) for i in range(width)]
    if column is None:
        if width != 1:
            listing = ", ".join(names)
            raise ValueError(
                f"{label} has {width} columns ({listing}); name one after a colon, e.g. "
                f"'{path}:{names[0]}'"
            )
        index = 0
    elif column in names:
        index = names.index(column)
    else:
        raise ValueError(
            f"{label} has no column {column!r}; its columns: {', '.join(names)}"
            + ("" if header is not None else " (it has no header: number them from 0)")
        )
    values = np.empty(len(body), dtype=np.float64)
    first = 2 if header is not None else 1
    for i, row in enumerate(body):
        if len(row) != width:
            raise ValueError(f"{label}, line {first + i}: {len(row)} fields, expected {width}")
        try:
            values[i] = float(row[index])
        except ValueError:
            raise ValueError(
                f"{label}, line {first + i}: {row[index]!r} in column {names[index]!r} is "
                "not a number"
            ) from None
    return values


def _read_netcdf(path: Path, var: str | None, label: str) -> np.ndarray:
    from ndwconv.adapters.timeseries._containers import import_xarray

    xr = import_xarray()
    try:
        dataset = xr.open_dataset(path, engine="h5netcdf")
    except Exception as err:  # xarray and h5py report bad files with many types
        raise ValueError(f"{label} cannot be read as NetCDF-4/HDF5: {err}") from None
    with dataset:
        names = [str(n) for n in dataset.data_vars]
        if var is None:
            if len(names) != 1:
                raise ValueError(
                    f"{label} has {len(names)} variables ({', '.join(names)}); name one after "
                    f"a colon, e.g. '{path}:{names[0] if names else 'var'}'"
                )
            var = names[0]
        if var not in names:
            raise ValueError(f"{label} has no variable {var!r}; its variables: {', '.join(names)}")
        array = dataset[var]
        if array.dtype.kind not in "iuf":
            raise ValueError(f"{label}: variable {var!r} holds {array.dtype}, not real numbers")
        squeezed = array.squeeze()
        if squeezed.ndim != 1:
            raise ValueError(
                f"{label}: variable {var!r} has dims {tuple(array.dims)} of shape "
                f"{tuple(array.shape)}; a series is 1-D (select one station or sensor first)"
            )
        return np.asarray(squeezed.values, dtype=np.float64)


def read_series(spec: str) -> tuple[str, np.ndarray]:
    """Read one series: ``(name, float64 1-D array)``.

    Args:
        spec: ``"embedded:mitdb"`` (its ``data`` column), ``"file.npy"`` (one 1-D array;
            singleton axes are dropped), ``"file.csv"``/``"file.tsv"`` with an optional
            ``":column"``, or ``"file.nc"`` with an optional ``":variable"`` (see the module
            docstring).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown suffix, a column that is not there, a cell that is not a
            number, an array that is not 1-D, or non-finite samples (NaN gaps: fill or cut
            them first); the message names the file and, where it helps, the line.
        ImportError: ``embedded:mitdb`` without sktime, a ``.nc`` file without xarray.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"a series source must be a non-empty string, got {spec!r}")
    if spec == EMBEDDED_MITDB:
        path, column, name = mitdb_path(), "data", "mitdb"
    else:
        file, column = split_source(spec)
        path = Path(file).expanduser()
        if path.suffix.lower() not in SERIES_EXTENSIONS:
            raise ValueError(
                f"series {spec!r}: unknown file type {path.suffix or '(none)'!r}; give "
                f"{', '.join(SERIES_EXTENSIONS)} (a CSV column as file.csv:column) or "
                f"{EMBEDDED_MITDB}"
            )
        if not path.is_file():
            raise FileNotFoundError(f"series file {str(path)!r} does not exist")
        name = path.name if column is None else f"{path.name}:{column}"
    label = f"series file {os.fspath(path)!r}"
    if path.suffix.lower() == ".npy":
        if column is not None:
            raise ValueError(f"{label}: a .npy file holds one array; drop ':{column}'")
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{label} cannot be read as a NumPy array: {err}") from None
        if array.dtype.kind not in "iuf":
            raise ValueError(f"{label} holds {array.dtype}, not real numbers")
        squeezed = np.squeeze(array)
        if squeezed.ndim != 1:
            raise ValueError(
                f"{label} holds an array of shape {array.shape}; a series is 1-D (save one "
                "channel at a time)"
            )
        values = squeezed.astype(np.float64)
    elif path.suffix.lower() == ".nc":
        values = _read_netcdf(path, column, label)
    else:
        values = _read_table(path, column, label)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(
            f"{label} has {int(bad.sum())} missing or non-finite samples (first at sample "
            f"{int(np.argmax(bad))}); fill or cut the gaps first"
        )
    return name, values


def split(series: np.ndarray, holdout: float, gap: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The contiguous training and held-out parts of ``series`` (views, not copies).

    The held-out part is the last ``round(holdout · n)`` samples; the training part is
    everything before it but the last ``gap`` samples.

    Raises:
        ValueError: ``holdout`` outside (0, 1), a negative ``gap``, or a series too short
            to leave samples in both parts.
    """
    if isinstance(holdout, bool) or not 0 < holdout < 1:
        raise ValueError(f"holdout must be in (0, 1), got {holdout!r}")
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise ValueError(f"gap must be an integer ≥ 0, got {gap!r}")
    n = len(series)
    held = round(n * holdout)
    end = n - held - gap
    if held < 1 or end < 1:
        raise ValueError(
            f"a series of {n} samples leaves {held} held-out and {max(end, 0)} training "
            f"samples with holdout {holdout:g} and gap {gap}"
        )
    return series[:end], series[n - held :]


def normalise(
    train: np.ndarray, others: Sequence[np.ndarray] = (), percentiles: Sequence[float] = (0, 100)
) -> tuple[list[np.ndarray], tuple[float, float]]:
    """Map ``train`` and ``others`` by ``(x − lo) / (hi − lo)``, ``lo``/``hi`` the
    ``percentiles`` of ``train`` alone.

    Returns:
        ``([train, *others] as float32 arrays, (lo, hi))``; ``x = lo + y · (hi − lo)``
        maps back.

    Raises:
        ValueError: bad percentiles, or a training part with no range between them.
    """
    low, high = (float(p) for p in percentiles)
    if not 0 <= low < high <= 100:
        raise ValueError(f"percentiles must satisfy 0 ≤ low < high ≤ 100, got {low}, {high}")
    reference = np.asarray(train, dtype=np.float64)
    lo, hi = (float(v) for v in np.percentile(reference, [low, high]))
    if not hi > lo or not math.isfinite(hi - lo):
        raise ValueError(
            f"the training part has no range between percentiles {low:g} and {high:g} "
            f"({lo} to {hi}): a constant signal cannot be normalised"
        )
    scale = hi - lo
    mapped = [
        ((np.asarray(a, dtype=np.float64) - lo) / scale).astype(np.float32)
        for a in (train, *others)
    ]
    return mapped, (lo, hi)
