"""CIFAR-100 for the classification recipes: the official files, augmentation, normalisation.

The data are read from the official "python version" distribution (Krizhevsky, "Learning
Multiple Layers of Features from Tiny Images", 2009; https://www.cs.toronto.edu/~kriz/cifar.html),
either the extracted ``cifar-100-python/`` folder or the ``cifar-100-python.tar.gz`` archive
(read member by member, nothing is extracted to disk). Nothing is ever downloaded.

The three files ``train``, ``test`` and ``meta`` are pickles written by Python 2 (protocol 2):

* ``train`` / ``test``: a dict with the byte-string keys ``data`` (a ``uint8`` array of shape
  ``(N, 3072)``, each row one 32×32 image, the 1024 red values first, then green, then blue,
  each channel row-major), ``fine_labels`` and ``coarse_labels`` (lists of ``N`` ints, 0–99 and
  0–19), ``filenames`` (``N`` byte strings) and ``batch_label`` (a byte string);
* ``meta``: a dict with ``fine_label_names`` (100 byte strings) and ``coarse_label_names`` (20).

A pickle can run arbitrary code while it loads, so the files go through an unpickler that
admits only the three globals a pickled numpy array refers to (``_reconstruct`` from numpy's
``multiarray``, ``numpy.ndarray`` and ``numpy.dtype``) and refuses every other global before
anything is called. Whatever loads is then checked against the format above (keys, types,
dtypes, shapes, label ranges, counts, one superclass per class) and anything else is refused
with ``CifarFormatError`` naming the file and the key. The split sizes come from the files
(officially 50 000 and 10 000).

Augmentation is the standard one of the CIFAR literature (He et al., "Deep Residual Learning
for Image Recognition", CVPR 2016, §4.2): a 32×32 crop at a uniformly random offset of the
image zero-padded by 4 pixels on each side, then a horizontal flip with probability 1/2, drawn
per sample from a ``torch.Generator`` so the same seed gives the same batch.

Example:
    >>> import torch
    >>> batch = torch.arange(2 * 3 * 32 * 32).reshape(2, 3, 32, 32).to(torch.uint8)
    >>> out = augment(batch, torch.Generator().manual_seed(0))
    >>> tuple(out.shape), out.dtype
    ((2, 3, 32, 32), torch.uint8)
    >>> x = normalise(out)
    >>> x.dtype, tuple(x.shape)
    (torch.float32, (2, 3, 32, 32))
"""

from __future__ import annotations

import math
import os
import pickle
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ALLOWED_GLOBALS",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "FOLDER",
    "AugmentDraws",
    "CifarFormatError",
    "CifarSplit",
    "apply_augmentation",
    "augment",
    "channel_stats",
    "draw_augmentation",
    "load_cifar100",
    "normalise",
    "restricted_load",
]

FOLDER = "cifar-100-python"
"""The folder of the official distribution, and its prefix inside the ``.tar.gz``."""

SPLITS = ("train", "test")
LABELS = ("fine", "coarse")
N_FINE = 100
N_COARSE = 20
SIDE = 32
ROW = 3 * SIDE * SIDE

SPLIT_KEYS = (b"batch_label", b"coarse_labels", b"data", b"filenames", b"fine_labels")
"""The keys of the official ``train`` and ``test`` dicts, no more and no fewer."""
META_KEYS = (b"coarse_label_names", b"fine_label_names")
"""The keys of the official ``meta`` dict."""

# Per-channel mean and standard deviation of the 50 000 official training images on the
# 0–1 scale: the mean and the population standard deviation (ddof = 0) over every pixel of
# the channel, as published by the widely used pytorch-cifar100 implementations
# (github.com/weiaicunzai/pytorch-cifar100, conf/global_settings.py, computed by
# utils.compute_mean_std with numpy.mean / numpy.std). ``channel_stats`` computes the same
# statistics of any training split.
CIFAR100_MEAN: tuple[float, float, float] = (
    0.5070751592371323,
    0.48654887331495095,
    0.4409178433670343,
)
CIFAR100_STD: tuple[float, float, float] = (
    0.2673342858792401,
    0.2564384629170883,
    0.27615047132568404,
)


class CifarFormatError(ValueError):
    """A file that is not in the official CIFAR-100 "python version" format."""


@dataclass(frozen=True)
class CifarSplit:
    """One split of CIFAR-100.

    Attributes:
        images: ``uint8`` array of shape ``(N, 3, 32, 32)`` (channels R, G, B).
        labels: ``int64`` array of shape ``(N,)``, indices into ``classes``.
        classes: the class names (100 fine classes or 20 superclasses).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


# --------------------------------------------------------------------------- unpickling


def _reconstruct() -> Any:
    # The function numpy's own ndarray pickles call: ``numpy.core.multiarray._reconstruct``
    # in numpy 1, ``numpy._core.multiarray._reconstruct`` in numpy 2. Taken from a live
    # array's ``__reduce__`` so that no deprecated module is imported.
    return np.empty(0, np.uint8).__reduce__()[0]


ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)
"""The ``(module, name)`` globals a CIFAR pickle may refer to: numpy array reconstruction.

The official files, written by Python 2 with numpy 1, refer to
``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``; the
``numpy._core`` spelling is what numpy 2 writes. Everything else is refused."""


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``ALLOWED_GLOBALS`` and refuses every other global."""

    def __init__(self, file: IO[bytes], name: str) -> None:
        super().__init__(file, encoding="bytes")
        self._name = name

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            if name == "_reconstruct":
                return _reconstruct()
            return getattr(np, name)
        raise CifarFormatError(
            f"{self._name}: refused global {module}.{name}: a CIFAR-100 file may refer only "
            "to numpy array reconstruction (numpy.core.multiarray._reconstruct, "
            "numpy.ndarray, numpy.dtype); the file is not loaded"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise CifarFormatError(f"{self._name}: refused persistent id {pid!r}")


def restricted_load(file: IO[bytes], name: str) -> Any:
    """Unpickle ``file`` admitting only the globals in ``ALLOWED_GLOBALS``.

    Args:
        file: a binary stream positioned at the start of a pickle.
        name: the file's name, used in error messages.

    Raises:
        CifarFormatError: a refused global, or bytes that are not a complete pickle.
    """
    try:
        return _RestrictedUnpickler(file, name).load()
    except CifarFormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise CifarFormatError(f"{name}: not a readable CIFAR-100 pickle ({err})") from err


# --------------------------------------------------------------------------- format checks


def _check_keys(obj: Any, expected: Sequence[bytes], name: str) -> dict:
    if not isinstance(obj, dict):
        raise CifarFormatError(f"{name}: expected a dict, found {type(obj).__name__}")
    keys = set(obj)
    missing = [k.decode() for k in expected if k not in keys]
    extra = sorted(repr(k) for k in keys - set(expected))
    if missing or extra:
        raise CifarFormatError(
            f"{name}: keys differ from the official format "
            f"(missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'}; "
            f"expected byte-string keys {', '.join(k.decode() for k in expected)})"
        )
    return obj


def _check_labels(value: Any, n: int, bound: int, name: str, key: str) -> np.ndarray:
    if not isinstance(value, list):
        raise CifarFormatError(
            f"{name}: {key} must be a list of ints, found {type(value).__name__}"
        )
    if len(value) != n:
        raise CifarFormatError(f"{name}: {key} has {len(value)} entries but data has {n} images")
    if not all(type(v) is int for v in value):
        bad = next(v for v in value if type(v) is not int)
        raise CifarFormatError(f"{name}: {key} must hold ints, found {type(bad).__name__} {bad!r}")
    labels = np.asarray(value, dtype=np.int64) if value else np.zeros(0, np.int64)
    out = (labels < 0) | (labels >= bound)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise CifarFormatError(f"{name}: {key}[{i}] = {int(labels[i])} is outside 0–{bound - 1}")
    return labels


def _check_names(value: Any, count: int, name: str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, bytes) for v in value):
        raise CifarFormatError(f"{name}: {key} must be a list of byte strings")
    if len(value) != count:
        raise CifarFormatError(f"{name}: {key} has {len(value)} names, expected {count}")
    try:
        names = [v.decode("ascii") for v in value]
    except UnicodeDecodeError as err:
        raise CifarFormatError(f"{name}: {key} holds a name that is not ASCII") from err
    if len(set(names)) != count:
        raise CifarFormatError(f"{name}: {key} holds repeated names")
    return names


def _check_meta(obj: Any, name: str) -> tuple[list[str], list[str]]:
    meta = _check_keys(obj, META_KEYS, name)
    fine = _check_names(meta[b"fine_label_names"], N_FINE, name, "fine_label_names")
    coarse = _check_names(meta[b"coarse_label_names"], N_COARSE, name, "coarse_label_names")
    return fine, coarse


def _check_split(obj: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    split = _check_keys(obj, SPLIT_KEYS, name)
    data = split[b"data"]
    if type(data) is not np.ndarray:
        raise CifarFormatError(f"{name}: data must be a numpy array, found {type(data).__name__}")
    if data.dtype != np.uint8:
        raise CifarFormatError(f"{name}: data must have dtype uint8, found {data.dtype}")
    if data.ndim != 2 or data.shape[1] != ROW or data.shape[0] == 0:
        raise CifarFormatError(
            f"{name}: data must have shape (N, {ROW}) with N ≥ 1 (one 3×32×32 image a row), "
            f"found {data.shape}"
        )
    n = data.shape[0]
    fine = _check_labels(split[b"fine_labels"], n, N_FINE, name, "fine_labels")
    coarse = _check_labels(split[b"coarse_labels"], n, N_COARSE, name, "coarse_labels")
    filenames = split[b"filenames"]
    if not isinstance(filenames, list) or not all(isinstance(f, bytes) for f in filenames):
        raise CifarFormatError(f"{name}: filenames must be a list of byte strings")
    if len(filenames) != n:
        raise CifarFormatError(
            f"{name}: filenames has {len(filenames)} entries but data has {n} images"
        )
    if not isinstance(split[b"batch_label"], bytes):
        raise CifarFormatError(f"{name}: batch_label must be a byte string")
    # Every fine class lies in exactly one superclass.
    pairs = np.unique(fine * N_COARSE + coarse)
    fine_of_pair = pairs // N_COARSE
    if len(np.unique(fine_of_pair)) != len(pairs):
        c = int(fine_of_pair[np.flatnonzero(np.diff(fine_of_pair) == 0)[0]])
        supers = sorted(int(p % N_COARSE) for p in pairs if p // N_COARSE == c)
        raise CifarFormatError(
            f"{name}: fine_labels and coarse_labels disagree: fine class {c} appears under "
            f"superclasses {supers}"
        )
    images = np.ascontiguousarray(data).reshape(n, 3, SIDE, SIDE)
    if not images.flags.writeable:
        images = images.copy()
    return images, fine, coarse


# --------------------------------------------------------------------------- sources


class _Source:
    """Opens ``train``, ``test`` and ``meta`` from a folder or a tar archive."""

    def __init__(self, source: str | os.PathLike[str]) -> None:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(
                f"source: {path} does not exist (expected the {FOLDER}/ folder or {FOLDER}.tar.gz)"
            )
        self.path = path
        self.folder: Path | None = None
        if path.is_dir():
            if not (path / "meta").exists() and (path / FOLDER).is_dir():
                path = path / FOLDER
            self.folder = path
        elif not (path.is_file() and tarfile.is_tarfile(path)):
            raise CifarFormatError(
                f"source: {path} is neither a folder nor a tar archive (expected the "
                f"{FOLDER}/ folder or {FOLDER}.tar.gz)"
            )

    def load(self, member: str) -> Any:
        if self.folder is not None:
            file = self.folder / member
            if not file.is_file():
                raise FileNotFoundError(
                    f"source: {self.folder} has no file {member!r} (a {FOLDER}/ folder holds "
                    "train, test and meta)"
                )
            with open(file, "rb") as stream:
                return restricted_load(stream, str(file))
        wanted = f"{FOLDER}/{member}"
        label = f"{self.path}:{wanted}"
        try:
            with tarfile.open(self.path, "r:*") as archive:
                for info in archive:
                    if info.name.removeprefix("./") != wanted:
                        continue
                    if not info.isfile():
                        raise CifarFormatError(f"{label}: not a regular file in the archive")
                    stream = archive.extractfile(info)
                    assert stream is not None  # a regular file always has a stream
                    with stream:
                        return restricted_load(stream, label)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
            raise CifarFormatError(f"source: {self.path}: unreadable archive ({err})") from err
        raise CifarFormatError(f"source: {self.path} has no member {wanted!r}")


def load_cifar100(
    source: str | os.PathLike[str], split: str = "train", labels: str = "fine"
) -> CifarSplit:
    """Load one split of CIFAR-100 from the official "python version" distribution.

    Args:
        source: the ``cifar-100-python/`` folder (or a folder that contains it) or the
            ``cifar-100-python.tar.gz`` archive, read without extracting.
        split: ``"train"`` or ``"test"``.
        labels: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).

    Returns:
        The split, its size as the file gives it.

    Raises:
        ValueError: ``split`` or ``labels`` is not one of the names above.
        FileNotFoundError: ``source`` or a file in the folder is missing.
        CifarFormatError: anything not in the official format (a refused pickle global,
            wrong keys, dtypes, shapes, label ranges or counts, a missing archive member).

    Example:
        >>> load_cifar100("no/such/folder")
        Traceback (most recent call last):
        ...
        FileNotFoundError: source: no/such/folder does not exist (expected the cifar-100-python/ folder or cifar-100-python.tar.gz)
    """  # noqa: E501
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {', '.join(LABELS)}, got {labels!r}")
    files = _Source(source)
    meta_name = "meta"
    fine_names, coarse_names = _check_meta(files.load(meta_name), _describe(files, meta_name))
    images, fine, coarse = _check_split(files.load(split), _describe(files, split))
    if labels == "fine":
        return CifarSplit(images, fine, fine_names)
    return CifarSplit(images, coarse, coarse_names)


def _describe(files: _Source, member: str) -> str:
    if files.folder is not None:
        return str(files.folder / member)
    return f"{files.path}:{FOLDER}/{member}"


# --------------------------------------------------------------------------- statistics


def channel_stats(images: np.ndarray | Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population standard deviation of ``uint8`` images, on the 0–1 scale.

    Computed from exact integer sums (so exact to float64 whatever the size): the
    statistics ``CIFAR100_MEAN`` and ``CIFAR100_STD`` give for the official training split.

    Args:
        images: ``uint8`` array or tensor of shape ``(N, C, H, W)``.

    Returns:
        ``(mean, std)``, each a tuple of ``C`` floats.

    Example:
        >>> x = np.zeros((2, 1, 2, 2), np.uint8); x[0] = 255
        >>> channel_stats(x)
        ((0.5,), (0.5,))
    """
    array = images.detach().cpu().numpy() if isinstance(images, Tensor) else images
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 4:
        raise ValueError(
            "images must be a uint8 array or tensor of shape (N, C, H, W), found "
            f"{getattr(array, 'dtype', type(array).__name__)} "
            f"{getattr(array, 'shape', '')}"
        )
    if array.shape[0] * array.shape[2] * array.shape[3] == 0:
        raise ValueError(f"images must not be empty, found shape {array.shape}")
    n, channels = array.shape[0], array.shape[1]
    count = n * array.shape[2] * array.shape[3]
    sums = np.zeros(channels, np.uint64)
    squares = np.zeros(channels, np.uint64)
    for start in range(0, n, 2048):  # bounded memory: 2048 images at a time
        chunk = array[start : start + 2048].reshape(-1, channels, array.shape[2] * array.shape[3])
        sums += chunk.sum(axis=(0, 2), dtype=np.uint64)
        squares += np.square(chunk, dtype=np.uint32).sum(axis=(0, 2), dtype=np.uint64)
    means, stds = [], []
    for s, q in zip(sums.tolist(), squares.tolist(), strict=True):
        # Exact in integers: count² · variance = count · Σx² − (Σx)².
        means.append(s / count / 255.0)
        stds.append(math.sqrt((count * q - s * s) / count**2) / 255.0)
    return tuple(means), tuple(stds)


def normalise(
    batch: Tensor | np.ndarray,
    mean: Sequence[float] = CIFAR100_MEAN,
    std: Sequence[float] = CIFAR100_STD,
) -> Tensor:
    """``(batch / 255 − mean) / std`` per channel, as a float32 tensor on the batch's device.

    Args:
        batch: ``uint8`` tensor or array of shape ``(B, C, H, W)`` (0–255).
        mean: per-channel means on the 0–1 scale (default: CIFAR-100's training set).
        std: per-channel standard deviations on the 0–1 scale.

    Example:
        >>> normalise(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8), (0.5,) * 3, (0.5,) * 3)
        tensor([[[[1.]],
        <BLANKLINE>
                 [[1.]],
        <BLANKLINE>
                 [[1.]]]])
    """
    if isinstance(batch, np.ndarray):
        batch = torch.from_numpy(batch)
    if not isinstance(batch, Tensor) or batch.dtype != torch.uint8 or batch.ndim != 4:
        raise ValueError(
            "batch must be a uint8 tensor of shape (B, C, H, W) on the 0–255 scale, found "
            f"{getattr(batch, 'dtype', type(batch).__name__)} {tuple(getattr(batch, 'shape', ()))}"
        )
    channels = batch.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"mean and std need one value per channel ({channels}), got {len(mean)} and {len(std)}"
        )
    if not all(float(s) > 0 for s in std):
        raise ValueError(f"std must be positive, got {tuple(std)}")
    mean64 = torch.tensor(mean, dtype=torch.float64)
    std64 = torch.tensor(std, dtype=torch.float64)
    scale = (1.0 / (255.0 * std64)).to(torch.float32).to(batch.device)
    shift = (mean64 / std64).to(torch.float32).to(batch.device)
    out = batch.to(torch.float32).mul_(scale.view(1, -1, 1, 1))
    return out.sub_(shift.view(1, -1, 1, 1))


# --------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentDraws:
    """The random choices of one augmented batch.

    Attributes:
        top: ``int64`` tensor ``(B,)``, row of the crop in the padded image, ``0 … 2·padding``.
        left: ``int64`` tensor ``(B,)``, column of the crop in the padded image.
        flip: ``bool`` tensor ``(B,)``, whether the crop is mirrored left–right.
    """

    top: Tensor
    left: Tensor
    flip: Tensor


def draw_augmentation(
    batch_size: int, generator: torch.Generator, padding: int = 4
) -> AugmentDraws:
    """Draw crop offsets and flips for ``batch_size`` samples, in this order: ``top``, ``left``,
    ``flip`` (uniform offsets in ``0 … 2·padding``, flips with probability 1/2)."""
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative int, got {padding!r}")
    device = generator.device
    top = torch.randint(0, 2 * padding + 1, (batch_size,), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (batch_size,), generator=generator, device=device)
    flip = torch.rand(batch_size, generator=generator, device=device) < 0.5
    return AugmentDraws(top, left, flip)


def apply_augmentation(batch: Tensor, draws: AugmentDraws, padding: int = 4) -> Tensor:
    """Crop each zero-padded sample at its drawn offset and mirror it where drawn (one gather)."""
    _check_batch(batch)
    b, c, h, w = batch.shape
    if not all(t.shape == (b,) for t in (draws.top, draws.left, draws.flip)):
        raise ValueError(f"draws must hold one entry per sample ({b})")
    device = batch.device
    padded = torch.nn.functional.pad(batch, (padding, padding, padding, padding))
    rows = draws.top.to(device).view(b, 1) + torch.arange(h, device=device)
    cols = draws.left.to(device).view(b, 1) + torch.arange(w, device=device)
    cols = torch.where(draws.flip.to(device).view(b, 1), cols.flip(1), cols)
    # Flat index of every output pixel in its padded sample, shared by the channels.
    index = rows.view(b, h, 1) * (w + 2 * padding) + cols.view(b, 1, w)
    index = index.view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, index).view(b, c, h, w)


def augment(batch: Tensor, generator: torch.Generator, padding: int = 4) -> Tensor:
    """Standard CIFAR augmentation: a random crop of the zero-padded image, then a random flip.

    Args:
        batch: ``(B, C, H, W)`` tensor, ``uint8`` or floating (before normalisation, so the
            padding is black as in the literature).
        generator: the source of every random choice; the same seed gives the same output.
        padding: zero padding on each side (4 in the literature).

    Returns:
        A new tensor of the batch's shape, dtype and device; ``batch`` is not modified.
    """
    _check_batch(batch)
    return apply_augmentation(batch, draw_augmentation(batch.shape[0], generator, padding), padding)


def _check_batch(batch: Any) -> None:
    if not isinstance(batch, Tensor):
        raise TypeError(f"batch must be a torch.Tensor, got {type(batch).__name__}")
    if batch.ndim != 4 or not (batch.dtype == torch.uint8 or batch.dtype.is_floating_point):
        raise ValueError(
            f"batch must be a (B, C, H, W) uint8 or floating tensor, found {batch.dtype} "
            f"{tuple(batch.shape)}"
        )
