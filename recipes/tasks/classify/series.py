"""Time series for the classification recipes: MNIST-1D and the UCR/UEA archives, offline.

Every reader returns a ``SeriesData``: ``x`` float32 of shape ``(N, C, L)`` (series,
channels, time), ``y`` int64 class indices ``0 … K-1`` and ``classes``, the ``K`` original
label strings, ``classes[y[i]]`` being the label of series ``i``.

* ``mnist1d(seed, split)``: the MNIST-1D benchmark (Greydanus, "Scaling down deep learning",
  arXiv 2011.14439, 2020) made by the ``mnist1d`` package's generator in memory: 4000
  training and 1000 test series of length 40, 10 classes. The package's convenience
  loader (``get_dataset``) downloads a pickle and writes it into the working directory;
  it is never used here.
* ``load_ucr(source, split)``: the UCR 2018 archive's folder format
  (``<Name>/<Name>_TRAIN.tsv``, label in the first column, tab-separated) and the
  sktime/UEA ``.ts`` format (``@`` header lines, then one series per line, channels
  separated by ``:``, the label last).
* ``bundled_ucr(name)``: the UCR sets that ship inside the ``sktime`` wheel (ArrowHead,
  OSULeaf, GunPoint, ItalyPowerDemand, BasicMotions, …), for examples and tests; they need
  the ``examples`` extra (``pip install -e ".[examples]"``).
* ``znormalise(x)``: per-series, per-channel z-normalisation, as the UCR literature does.

Class order: ``classes`` is sorted numerically when every label reads as a number
(``"-1" < "2" < "10"``), as text otherwise; so the same labels give the same indices in
the training and the test split. A ``.ts`` file's ``@classLabel`` header lists every class,
so a split that lacks one keeps the index of the others; for ``.tsv`` (which has no header)
``load_ucr`` on a dataset folder reads the labels of both splits for the same reason.

Lengths: the networks take one length per batch, so series of unequal length are refused
(the UCR 2018 archive pads its eleven variable-length sets with trailing ``NaN``; the
``.ts`` format marks them ``@equalLength false``), and so are missing values (``NaN`` inside
a ``.tsv`` series, ``?`` in a ``.ts`` file). The message names the file and the line; resample
or pad such a set to one length first (the UCR archive also distributes resampled versions).

Example:
    >>> import numpy as np
    >>> data = SeriesData(np.zeros((2, 1, 5), np.float32), np.array([0, 1]), ["a", "b"])
    >>> data.num_classes, data.length, data.channels
    (2, 5, 1)
    >>> z = znormalise(np.array([[[1.0, 2.0, 3.0]], [[4.0, 4.0, 4.0]]], np.float32))
    >>> z.astype(np.float64).round(4).tolist()
    [[[-1.2247, 0.0, 1.2247]], [[0.0, 0.0, 0.0]]]
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BUNDLED_PACKAGE",
    "MNIST1D_LENGTH",
    "MNIST1D_TEST",
    "MNIST1D_TRAIN",
    "SeriesData",
    "bundled_ucr",
    "load_ucr",
    "mnist1d",
    "sort_labels",
    "znormalise",
]

MNIST1D_TRAIN = 4000
MNIST1D_TEST = 1000
MNIST1D_LENGTH = 40
"""The published MNIST-1D split: 5000 series, the first 80 % for training, length 40."""

BUNDLED_PACKAGE = "sktime"
"""The package whose wheel ships the bundled UCR sets (``sktime/datasets/data/<Name>/``)."""

_SPLITS = {"train": "TRAIN", "test": "TEST"}


@dataclass
class SeriesData:
    """A labelled set of equal-length series.

    Attributes:
        x: float32 array ``(N, C, L)``: ``N`` series of ``C`` channels and ``L`` samples.
        y: int64 array ``(N,)`` of class indices in ``0 … len(classes) - 1``.
        classes: the original label of each class index (see the module docstring for the
            order).
    """

    x: np.ndarray
    y: np.ndarray
    classes: list[str]

    def __post_init__(self) -> None:
        if not isinstance(self.x, np.ndarray) or self.x.dtype != np.float32 or self.x.ndim != 3:
            raise ValueError(
                f"SeriesData.x must be a float32 array (N, C, L), got "
                f"{getattr(self.x, 'dtype', type(self.x).__name__)} "
                f"of shape {getattr(self.x, 'shape', None)}"
            )
        if not isinstance(self.y, np.ndarray) or self.y.dtype != np.int64 or self.y.ndim != 1:
            raise ValueError(
                f"SeriesData.y must be an int64 array (N,), got "
                f"{getattr(self.y, 'dtype', type(self.y).__name__)} "
                f"of shape {getattr(self.y, 'shape', None)}"
            )
        if len(self.y) != len(self.x):
            raise ValueError(f"SeriesData has {len(self.x)} series but {len(self.y)} labels")
        if not isinstance(self.classes, list) or not all(isinstance(c, str) for c in self.classes):
            raise ValueError("SeriesData.classes must be a list of str")
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= len(self.classes)):
            raise ValueError(
                f"SeriesData.y must lie in 0 … {len(self.classes) - 1}, "
                f"got {self.y.min()} … {self.y.max()}"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(classes)``."""
        return len(self.classes)

    @property
    def channels(self) -> int:
        """Channels per series, ``C``."""
        return int(self.x.shape[1])

    @property
    def length(self) -> int:
        """Samples per series, ``L``."""
        return int(self.x.shape[2])

    def __len__(self) -> int:
        return len(self.y)


# --------------------------------------------------------------------------- MNIST-1D


def mnist1d(seed: int = 42, split: str = "train") -> SeriesData:
    """One split of the MNIST-1D benchmark, generated in memory by the ``mnist1d`` package.

    ``mnist1d.data.make_dataset`` with the package's default arguments
    (``get_dataset_args()``: 5000 series, ``train_split=0.8``, ``final_seq_length=40``),
    only ``seed`` replaced: the first 4000 series are the training split, the last 1000 the
    test split. The default ``seed=42`` is the package's own, the one the published data set
    (and its 94 % CNN baseline) was made with; another seed draws a fresh data set of the
    same distribution. Nothing is downloaded and no file is written; the two splits of one
    seed are generated once per process (about a second) and copied out.

    The generator draws from NumPy's and Python's global random states (it seeds them);
    both are saved before and restored after, so the caller's random streams are left as
    they were.

    Args:
        seed: the generator's seed, an int ≥ 0.
        split: ``"train"`` (4000 series) or ``"test"`` (1000 series).

    Returns:
        ``SeriesData`` with ``x`` of shape ``(N, 1, 40)`` and classes ``"0"``–``"9"``.

    Raises:
        ImportError: the ``mnist1d`` package is missing (the message names the extra).
        ValueError: ``seed`` is not an int ≥ 0 or ``split`` is unknown.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int ≥ 0, got {seed!r}")
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    x, y = _mnist1d_arrays(int(seed))[split]
    return SeriesData(x.copy(), y.copy(), [str(k) for k in range(10)])


@functools.lru_cache(maxsize=4)
def _mnist1d_arrays(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as error:
        raise ImportError(
            "MNIST-1D needs the mnist1d package, part of the examples extra: "
            'pip install -e ".[examples]"'
        ) from error
    args = get_dataset_args()
    args.seed = seed
    # the generator seeds and draws from the legacy global state: save it, restore it after
    numpy_state, python_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)  # noqa: NPY002
        random.setstate(python_state)

    def arrays(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32)[:, None, :])
        y = np.asarray(y, dtype=np.int64)
        x.flags.writeable = False
        y.flags.writeable = False
        return x, y

    return {"train": arrays(data["x"], data["y"]), "test": arrays(data["x_test"], data["y_test"])}


# --------------------------------------------------------------------------- labels


def _as_number(label: str) -> float | None:
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def sort_labels(labels: Any) -> list[str]:
    """The distinct labels in class order: numerically if all are numbers, else as text.

    Raises:
        ValueError: two labels are the same number written differently (``"1"``, ``"1.0"``).

    Example:
        >>> sort_labels(["10", "2", "-1", "2"])
        ['-1', '2', '10']
        >>> sort_labels(["b", "a", "10"])
        ['10', 'a', 'b']
    """
    distinct = sorted(set(labels))
    numbers = [_as_number(label) for label in distinct]
    if all(n is not None for n in numbers):
        pairs = sorted(zip(numbers, distinct, strict=True))
        for (a, first), (b, second) in itertools.pairwise(pairs):
            if a == b:
                raise ValueError(
                    f"class labels {first!r} and {second!r} are the same number written "
                    f"differently; write each class's label one way in every split"
                )
        return [label for _, label in pairs]
    return distinct


# --------------------------------------------------------------------------- UCR readers


@dataclass
class _Parsed:
    x: np.ndarray  # float32 (N, C, L)
    labels: list[str]
    declared: list[str] | None  # the .ts @classLabel list, None for .tsv


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 text file ({error})") from None


def _floats(path: Path, number: int, fields: list[str], what: str) -> np.ndarray:
    try:
        return np.array(fields, dtype=np.float64)
    except ValueError:
        for column, field in enumerate(fields, 1):
            try:
                float(field)
            except ValueError:
                raise ValueError(
                    f"{path}, line {number}: {what} value {column} is {field!r}, not a number"
                ) from None
        raise


def _parse_tsv(path: Path) -> _Parsed:
    rows: list[np.ndarray] = []
    labels: list[str] = []
    length = None
    for number, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        fields = line.rstrip().split("\t")
        if len(fields) < 2:
            raise ValueError(
                f"{path}, line {number}: expected a label and values separated by tabs "
                f"(the UCR 2018 .tsv format), got {line[:60]!r}"
            )
        label = fields[0].strip()
        if not label or label.lower() == "nan":
            raise ValueError(f"{path}, line {number}: missing class label in the first column")
        values = _floats(path, number, [f.strip() for f in fields[1:]], "series")
        missing = np.isnan(values)
        if missing.any():
            first = int(np.argmax(missing))
            kind = (
                "variable-length series (NaN padding)"
                if missing[first:].all()
                else "a missing value (NaN inside the series)"
            )
            raise ValueError(
                f"{path}, line {number}: {kind} at value {first + 1}; series of unequal "
                f"length and missing values are not supported (resample or pad the set first)"
            )
        if np.isinf(values).any():
            raise ValueError(f"{path}, line {number}: infinite value in the series")
        if length is None:
            length = len(values)
        elif len(values) != length:
            raise ValueError(
                f"{path}, line {number}: {len(values)} values, earlier lines have {length}; "
                f"series of unequal length are not supported"
            )
        rows.append(values)
        labels.append(label)
    if not rows:
        raise ValueError(f"{path}: no series found")
    x = np.stack(rows).astype(np.float32)[:, None, :]
    return _Parsed(x, labels, None)


def _header_bool(path: Path, number: int, tag: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"{path}, line {number}: {tag} must be true or false, got {value!r}")
    return lowered == "true"


def _header_int(path: Path, number: int, tag: str, value: str) -> int:
    try:
        result = int(value.strip())
    except ValueError:
        result = 0
    if result < 1:
        raise ValueError(f"{path}, line {number}: {tag} must be a positive integer, got {value!r}")
    return result


def _parse_ts(path: Path) -> _Parsed:
    lines = _read_lines(path)
    declared: list[str] | None = None
    has_labels = None
    dimensions = series_length = None
    data_line = None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("@"):
            raise ValueError(
                f"{path}, line {number}: expected a header line (@…) or @data before the "
                f"series, got {line[:60]!r}"
            )
        tag, _, value = line.partition(" ")
        tag = tag.lower()
        if tag == "@data":
            data_line = number
            break
        if tag == "@timestamps" and _header_bool(path, number, tag, value):
            raise ValueError(
                f"{path}, line {number}: @timeStamps true (time-stamped series) is not supported"
            )
        if tag == "@classlabel":
            parts = value.split()
            if not parts:
                raise ValueError(f"{path}, line {number}: @classLabel needs true or false")
            has_labels = _header_bool(path, number, tag, parts[0])
            if has_labels:
                if len(parts) < 2:
                    raise ValueError(
                        f"{path}, line {number}: @classLabel true must list the class labels"
                    )
                declared = parts[1:]
        elif tag == "@dimensions":
            dimensions = _header_int(path, number, tag, value)
        elif tag == "@serieslength":
            series_length = _header_int(path, number, tag, value)
        elif tag == "@targetlabel" and value.strip().lower() == "true":
            raise ValueError(
                f"{path}, line {number}: @targetLabel true marks a regression set; "
                f"classification needs @classLabel true"
            )
    if data_line is None:
        raise ValueError(f"{path}: no @data line (not a .ts file)")
    if not has_labels:
        raise ValueError(
            f"{path}: the header has no '@classLabel true …' line; classification needs "
            f"the class labels"
        )
    known = set(declared or ())
    rows: list[np.ndarray] = []
    labels: list[str] = []
    shape = None
    for number in range(data_line + 1, len(lines) + 1):
        line = lines[number - 1].strip()
        if not line or line.startswith("#"):
            continue
        *channels, label = line.split(":")
        label = label.strip()
        if not channels:
            raise ValueError(
                f"{path}, line {number}: expected values, ':' and the class label, "
                f"got {line[:60]!r}"
            )
        if label not in known:
            raise ValueError(
                f"{path}, line {number}: class label {label!r} is not among those the "
                f"@classLabel header lists ({' '.join(declared or ())})"
            )
        values = []
        for dim, text in enumerate(channels, 1):
            fields = [f.strip() for f in text.split(",")]
            if "?" in fields or any(f.lower() == "nan" for f in fields):
                raise ValueError(
                    f"{path}, line {number}: missing value in dimension {dim}; missing values "
                    f"are not supported"
                )
            if any(f.startswith("(") for f in fields):
                raise ValueError(f"{path}, line {number}: time-stamped values are not supported")
            values.append(_floats(path, number, fields, f"dimension {dim}"))
        lengths = {len(v) for v in values}
        if len(lengths) != 1:
            raise ValueError(
                f"{path}, line {number}: dimensions of unequal length {sorted(lengths)}; "
                f"series of unequal length are not supported"
            )
        row = np.stack(values)
        if np.isinf(row).any():
            raise ValueError(f"{path}, line {number}: infinite value in the series")
        if dimensions is not None and row.shape[0] != dimensions:
            raise ValueError(
                f"{path}, line {number}: {row.shape[0]} dimensions, the header says "
                f"@dimensions {dimensions}"
            )
        if series_length is not None and row.shape[1] != series_length:
            raise ValueError(
                f"{path}, line {number}: {row.shape[1]} values, the header says "
                f"@seriesLength {series_length}"
            )
        if shape is None:
            shape = row.shape
        elif row.shape != shape:
            raise ValueError(
                f"{path}, line {number}: shape (channels, length) {row.shape}, earlier lines "
                f"have {shape}; series of unequal length are not supported"
            )
        rows.append(row)
        labels.append(label)
    if not rows:
        raise ValueError(f"{path}: no series after @data")
    return _Parsed(np.stack(rows).astype(np.float32), labels, list(declared or ()))


def _parse(path: Path) -> _Parsed:
    if path.suffix.lower() == ".ts":
        return _parse_ts(path)
    if path.suffix.lower() == ".tsv":
        return _parse_tsv(path)
    raise ValueError(f"{path}: unknown series format (expected a .tsv or .ts file)")


def _split_file(folder: Path, split: str) -> Path:
    """``<folder>/<Name>_<SPLIT>.ts`` or ``.tsv`` (``.ts`` first: its header lists classes)."""
    tag = _SPLITS[split]
    tried = []
    for suffix in (".ts", ".tsv"):
        candidate = folder / f"{folder.name}_{tag}{suffix}"
        tried.append(candidate.name)
        if candidate.is_file():
            return candidate
    for suffix in (".ts", ".tsv"):
        matches = sorted(folder.glob(f"*_{tag}{suffix}"))
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ValueError(
                f"{folder}: several {split} files ({', '.join(m.name for m in matches)}); "
                f"pass the file itself"
            )
    raise FileNotFoundError(
        f"{folder}: no {split} split found (looked for {' or '.join(tried)}, the UCR 2018 "
        f"archive's <Name>/<Name>_{tag}.tsv layout or the .ts format)"
    )


def _resolve(source: Any, split: str) -> tuple[Path, Path | None]:
    """The file to read and, for a folder, its other split (to share the class list)."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path or a bundled set name, got {source!r}")
    path = Path(source)
    if not path.exists():
        name = str(source)
        if os.sep in name or "/" in name or path.suffix:
            raise FileNotFoundError(f"source {name!r} does not exist")
        path = bundled_ucr(name)
    if path.is_dir():
        other = "test" if split == "train" else "train"
        try:
            partner = _split_file(path, other)
        except FileNotFoundError:
            partner = None
        return _split_file(path, split), partner
    stem = path.stem.upper()
    for name, tag in _SPLITS.items():
        if stem.endswith(f"_{tag}") and name != split:
            raise ValueError(
                f"source {str(path)!r} is a {name} file but split={split!r} was asked for"
            )
    return path, None


def load_ucr(source: str | os.PathLike[str], split: str = "train") -> SeriesData:
    """Read one split of a UCR/UEA data set (``.tsv`` of the UCR 2018 archive or ``.ts``).

    Values are returned as stored (the UCR 2018 sets are mostly z-normalised already; apply
    ``znormalise`` for the usual per-series normalisation). Nothing in ``source`` is
    modified and nothing is downloaded.

    Args:
        source: a data set folder (``ArrowHead/`` holding ``ArrowHead_TRAIN.tsv`` and
            ``ArrowHead_TEST.tsv``, or the ``.ts`` pair; ``.ts`` is read when both exist), one
            ``.tsv``/``.ts`` file, or the name of a set bundled with sktime (``"ArrowHead"``,
            see ``bundled_ucr``); an existing path takes precedence over a bundled name.
        split: ``"train"`` or ``"test"``; for a file it must agree with a ``_TRAIN``/``_TEST``
            suffix in the file's name.

    Returns:
        ``SeriesData`` with ``x`` of shape ``(N, C, L)`` (``C = 1`` for univariate sets).
        The classes are those of both splits for a folder (the ``.ts`` ``@classLabel``
        header, or the labels found in both ``.tsv`` files), of the file alone otherwise,
        sorted as ``sort_labels`` does.

    Raises:
        ValueError: a malformed file, unequal lengths, missing values, or a split that does
            not match (the message names the file and the line).
        FileNotFoundError: ``source`` does not exist or a folder lacks the split.
        ImportError: a bundled name without the ``examples`` extra installed.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp()) / "Toy"
        >>> folder.mkdir()
        >>> _ = (folder / "Toy_TRAIN.tsv").write_text("2\\t0.5\\t1\\t2\\n-1\\t3\\t4\\t5\\n")
        >>> _ = (folder / "Toy_TEST.tsv").write_text("10\\t1\\t1\\t1\\n")
        >>> data = load_ucr(folder, "train")
        >>> data.x.shape, data.y.tolist(), data.classes
        ((2, 1, 3), [1, 0], ['-1', '2', '10'])
        >>> import shutil
        >>> shutil.rmtree(folder.parent)
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path, partner = _resolve(source, split)
    parsed = _parse(path)
    labels = set(parsed.labels) | set(parsed.declared or ())
    if partner is not None:
        if partner.suffix.lower() == ".ts":
            labels |= _parse_ts_header_labels(partner)
        else:
            labels |= _tsv_labels(partner)
    classes = sort_labels(labels)
    index = {label: k for k, label in enumerate(classes)}
    y = np.array([index[label] for label in parsed.labels], dtype=np.int64)
    return SeriesData(np.ascontiguousarray(parsed.x), y, classes)


def _tsv_labels(path: Path) -> set[str]:
    """The first-column labels of a ``.tsv`` file (the values are not parsed)."""
    return {line.split("\t", 1)[0].strip() for line in _read_lines(path) if line.strip()} - {""}


def _parse_ts_header_labels(path: Path) -> set[str]:
    """The ``@classLabel`` list of a ``.ts`` file (the series are not read)."""
    for number, raw in enumerate(_read_lines(path), 1):
        line = raw.strip()
        tag, _, value = line.partition(" ")
        if tag.lower() == "@classlabel":
            parts = value.split()
            if parts and _header_bool(path, number, tag, parts[0]) and len(parts) > 1:
                return set(parts[1:])
            break
        if tag.lower() == "@data":
            break
    return set(_parse_ts(path).labels)


def bundled_ucr(name: str) -> Path:
    """The folder of a UCR set bundled in the ``sktime`` wheel, e.g. ``"ArrowHead"``.

    Located in the installed package's ``sktime/datasets/data/<name>/`` through
    ``importlib.util.find_spec``, which finds the package without importing it
    (``importlib.resources.files`` would import sktime, and with it pandas and
    scikit-learn: about 3 s); the folder holds ``<name>_TRAIN.ts`` and ``<name>_TEST.ts``,
    which ``load_ucr`` reads.

    Raises:
        ImportError: sktime is not installed (the message gives the install command).
        FileNotFoundError: no such bundled set (the message lists the available ones).
    """
    if not isinstance(name, str) or not name or "/" in name or os.sep in name:
        raise ValueError(f"name must be the name of a bundled set, e.g. 'ArrowHead', got {name!r}")
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the bundled UCR set {name!r} ships with the {BUNDLED_PACKAGE} package, part of "
            f'the examples extra: pip install -e ".[examples]" (or point at your own copy '
            f"of the data set's folder)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    data = root / "datasets" / "data"
    folder = data / name
    if not (folder / f"{name}_TRAIN.ts").is_file():
        available = (
            sorted(p.name for p in data.iterdir() if (p / f"{p.name}_TRAIN.ts").is_file())
            if data.is_dir()
            else []
        )
        raise FileNotFoundError(
            f"no bundled UCR set {name!r} in {data}; available: {', '.join(available) or 'none'}"
        )
    return folder


# --------------------------------------------------------------------------- normalisation


def znormalise(x: np.ndarray) -> np.ndarray:
    """Per-series, per-channel z-normalisation along the last axis (time).

    ``(x - mean) / std`` over each series' samples, with the population standard deviation
    (``ddof=0``), as the UCR archive's z-normalised sets and the deep-learning baselines
    (Wang et al. 2017; Ismail Fawaz et al. 2019) do. A constant series (every sample
    equal) becomes zeros instead of dividing by zero. Statistics are computed in float64;
    the result has ``x``'s floating dtype (float32 for integers). ``x`` is not modified.

    Args:
        x: array ``(..., L)``, e.g. ``(N, C, L)``; finite values.

    Raises:
        ValueError: ``x`` has no time axis, no samples, or non-finite values.
    """
    array = np.asarray(x)
    if array.ndim < 1 or array.shape[-1] == 0:
        raise ValueError(f"x must have a time axis with samples, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"x must be numeric, got dtype {array.dtype}")
    out_dtype = array.dtype if np.issubdtype(array.dtype, np.floating) else np.float32
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("x has NaN or infinite values; z-normalisation needs finite series")
    mean = values.mean(axis=-1, keepdims=True)
    std = values.std(axis=-1, keepdims=True)
    constant = np.ptp(values, axis=-1, keepdims=True) == 0
    result = np.where(constant, 0.0, (values - mean) / np.where(constant, 1.0, std))
    return result.astype(out_dtype)
