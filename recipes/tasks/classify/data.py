"""The classification task's data: dataset kinds by name, and the seeded training stream.

``data.dataset`` names a *dataset kind*; its loader turns the ``[data]`` table (and the
folder ``--data`` gave) into a ``Split`` of training and test arrays:

* ``cifar100``: the official CIFAR-100 "python version" (``cifar-100-python/`` or its
  ``.tar.gz``; ``data.source`` or ``--data``), fine (100) or coarse (20) labels
  (``data.labels``), 4-pixel padded random crops and horizontal flips in training
  (``data.augment``), per-channel normalisation with the training set's mean and std;
* ``mnist1d``: MNIST-1D made offline by the ``mnist1d`` package's generator (4000 training
  and 1000 test series of length 40, 10 classes), ``data.seed`` its generator's seed;
* ``ucr``: a UCR archive set (``data.name``, default ArrowHead), from ``--data`` (the
  archive folder, holding ``<Name>/``, or the set's own folder) or, without it, from the
  copies sktime bundles; each series z-normalised (``data.znormalise``, default true), as
  the UCR literature does.

The modules that read those files (``cifar``, ``series``) are imported only when their
kind is used. ``register_dataset`` adds a kind (e.g. a fixture for tests, or a user's own
data in memory).

Training sample ``i`` (``TrainSamples``) is a pure function of the run's seed and ``i``:
the samples are consecutive passes over the training set, each pass in the order of a
permutation drawn from the stream ``classify_order`` (seed, pass), and a sample's
augmentation is drawn from ``classify_augment`` (seed, ``i``). Labels are ``int64``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...engine.streams import generator
from ..holdout import stratified_holdout

__all__ = [
    "DATASETS",
    "Split",
    "TrainSamples",
    "load_split",
    "register_dataset",
    "unregister_dataset",
]

_PACKAGE = __name__.rsplit(".", 1)[0]
"""Training series of the published MNIST-1D benchmark (of 5000; the rest are its test)."""


@dataclasses.dataclass
class Split:
    """A dataset kind's training and test data.

    Attributes:
        train_x, test_x: ``(N, C, *spatial)`` arrays (any numeric dtype; ``prepare`` turns
            a batch of them into float32 model inputs).
        train_y, test_y: ``(N,)`` int64 labels in ``0 … len(classes) − 1``.
            ``test_x`` and ``test_y`` are both ``None`` when the loader was asked for the
            training split only (``load_split(…, test=False)``).
        classes: class names.
        prepare: ``prepare(batch tensor) -> float32 tensor`` (default: a float32 cast).
        augment: ``augment(batch tensor, generator) -> tensor``, applied to training samples
            before ``prepare`` (``None``: no augmentation).
        description: one line for reports (what the data is, where it came from).
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray | None
    test_y: np.ndarray | None
    classes: list[str]
    prepare: Callable[[Tensor], Tensor] | None = None
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        parts = ("train", "test")
        if self.test_x is None and self.test_y is None:
            parts = ("train",)  # the training split only
        for part in parts:
            x, y = getattr(self, f"{part}_x"), getattr(self, f"{part}_y")
            if not isinstance(x, np.ndarray) or x.ndim < 3:
                raise ValueError(f"{part}_x must be an (N, C, ...) array, got {np.shape(x)}")
            y = np.asarray(y)
            if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"{part}_y must be a 1-D integer array, got {y.dtype}")
            if len(y) != len(x) or len(y) == 0:
                raise ValueError(
                    f"{part}_x and {part}_y must hold the same, non-zero number of samples, "
                    f"got {len(x)} and {len(y)}"
                )
            if y.min() < 0 or y.max() >= len(self.classes):
                raise ValueError(
                    f"{part}_y holds labels outside 0 … {len(self.classes) - 1} "
                    f"({len(self.classes)} classes)"
                )
            setattr(self, f"{part}_y", y.astype(np.int64))
        if self.test_x is not None and self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(
                f"training and test samples differ in shape: {self.train_x.shape[1:]} and "
                f"{self.test_x.shape[1:]}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def spatial_dims(self) -> int:
        return self.train_x.ndim - 2

    def held_out(self, fraction: float, seed: int) -> Split:
        """A split that trains on part of this one's training samples and scores the rest:
        a stratified hold-out (``ndwconv.recipes.tasks.holdout.stratified_holdout``) of
        ``fraction`` of each class, chosen by ``seed``, replaces the test split, which is
        dropped (``tune.split = "validation"``). Arrays are copies; ``self`` is unchanged.

        Example:
            >>> x = np.arange(10, dtype=np.float32).reshape(10, 1, 1)
            >>> y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
            >>> part = Split(x, y, None, None, ["a", "b"]).held_out(0.2, seed=0)
            >>> len(part.train_y), part.test_y.tolist()
            (8, [0, 1])
        """
        held = stratified_holdout(self.train_y, fraction, seed)
        kept = np.setdiff1d(np.arange(len(self.train_y)), held)
        return dataclasses.replace(
            self,
            train_x=self.train_x[kept],
            train_y=self.train_y[kept],
            test_x=self.train_x[held],
            test_y=self.train_y[held],
            description=f"{self.description}; scored on {len(held)} training samples held "
            f"out for validation (tune.holdout {fraction:g}, seed {seed}), not its test split",
        )

    def inputs(self, batch: np.ndarray | Tensor) -> Tensor:
        """Model inputs (float32) of a batch of raw samples."""
        tensor = torch.as_tensor(batch)
        return self.prepare(tensor) if self.prepare is not None else tensor.float()


Loader = Callable[..., Split]
DATASETS: dict[str, Loader] = {}
"""Dataset kinds by name: ``loader(data_table, folder_or_None) -> Split``. A loader that
takes a keyword ``test`` is called with ``test=False`` when only the training split is
needed (``tune.split = "validation"``) and then returns a split without test arrays."""

DATASET_SHAPES: dict[str, Callable[[Mapping[str, Any]], tuple[int, int | None]]] = {}
"""``(in_channels, num_classes or None)`` of a kind, known without reading its data."""


def register_dataset(
    name: str,
    loader: Loader,
    shape: Callable[[Mapping[str, Any]], tuple[int, int | None]] | None = None,
) -> None:
    """Make ``data.dataset = name`` load with ``loader``; ``shape(data_table)`` gives
    ``(in_channels, num_classes)`` without reading data (``num_classes`` may be ``None``),
    which is all the model check before training needs."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a dataset name must be a non-empty string, got {name!r}")
    DATASETS[name] = loader
    if shape is not None:
        DATASET_SHAPES[name] = shape


def unregister_dataset(name: str) -> None:
    """Forget a kind added with ``register_dataset``."""
    DATASETS.pop(name, None)
    DATASET_SHAPES.pop(name, None)


def load_split(data: Mapping[str, Any], folder: Path | None, test: bool = True) -> Split:
    """The ``Split`` of a checked ``[data]`` table (``folder``: what ``--data`` gave).

    With ``test`` false the loader is asked not to read the test split, where it can (it
    takes a ``test`` keyword: the built-in kinds do); a loader that cannot still returns
    one, which the caller then must not use."""
    kind = data["dataset"]
    if kind not in DATASETS:
        raise ValueError(f"data.dataset must be one of {', '.join(sorted(DATASETS))}, got {kind!r}")
    loader = DATASETS[kind]
    if not test and "test" in inspect.signature(loader).parameters:
        split = loader(data, folder, test=False)
    else:
        split = loader(data, folder)
    if not isinstance(split, Split):
        raise TypeError(f"the loader of data.dataset {kind!r} returned {type(split).__name__}")
    return split


def _module(name: str) -> Any:
    """A sibling data module (``cifar``, ``series``), imported on first use."""
    return importlib.import_module(f"{_PACKAGE}.{name}")


# ---------------------------------------------------------------------------------------
# The built-in kinds
# ---------------------------------------------------------------------------------------


def _source(data: Mapping[str, Any], folder: Path | None, kind: str, example: str) -> Path:
    if folder is not None:
        return folder
    if data.get("source"):
        return Path(data["source"])
    raise ValueError(
        f"data.dataset {kind!r} needs its files: give --data PATH (or data.source), e.g. "
        f"--data {example}"
    )


def _cifar100(data: Mapping[str, Any], folder: Path | None, test: bool = True) -> Split:
    cifar = _module("cifar")
    source = _source(data, folder, "cifar100", "~/data/cifar-100-python")
    labels = data.get("labels", "fine")
    train = cifar.load_cifar100(source, split="train", labels=labels)
    tested = cifar.load_cifar100(source, split="test", labels=labels) if test else None
    augment = cifar.augment if data.get("augment", True) else None  # picklable: workers
    return Split(
        train.images,
        train.labels,
        None if tested is None else tested.images,
        None if tested is None else tested.labels,
        list(train.classes),
        prepare=cifar.normalise,
        augment=augment,
        description=f"CIFAR-100 ({labels} labels) from {str(source)!r}",
    )


def _mnist1d(data: Mapping[str, Any], folder: Path | None, test: bool = True) -> Split:
    if folder is not None:
        raise ValueError(
            "data.dataset 'mnist1d' is generated, not read: drop --data (data.seed chooses "
            "the generator's seed)"
        )
    series = _module("series")
    options = {"seed": data["seed"]} if "seed" in data else {}
    train = series.mnist1d(split="train", **options)
    tested = series.mnist1d(split="test", **options) if test else None
    return Split(
        train.x,
        train.y,
        None if tested is None else tested.x,
        None if tested is None else tested.y,
        list(train.classes),
        description="MNIST-1D (the mnist1d package's generator, offline)",
    )


def _ucr(data: Mapping[str, Any], folder: Path | None, test: bool = True) -> Split:
    series = _module("series")
    name = data.get("name", "ArrowHead")
    if folder is None:
        where = series.bundled_ucr(name)
    else:
        where = folder / name if (folder / name).is_dir() else folder
    train = series.load_ucr(where, "train")
    tested = series.load_ucr(where, "test") if test else None
    train_x, test_x = train.x, None if tested is None else tested.x
    if data.get("znormalise", True):  # per series: no statistic is shared across samples
        train_x = series.znormalise(train_x)
        test_x = None if test_x is None else series.znormalise(test_x)
    return Split(
        np.asarray(train_x, dtype=np.float32),
        train.y,
        None if test_x is None else np.asarray(test_x, dtype=np.float32),
        None if tested is None else tested.y,
        list(train.classes),
        description=f"UCR {name} from {str(where)!r}"
        + (", each series z-normalised" if data.get("znormalise", True) else ""),
    )


register_dataset("cifar100", _cifar100, lambda d: (3, 20 if d.get("labels") == "coarse" else 100))
register_dataset("mnist1d", _mnist1d, lambda d: (1, 10))
register_dataset("ucr", _ucr, lambda d: (1, None))


# ---------------------------------------------------------------------------------------
# The training stream
# ---------------------------------------------------------------------------------------


class TrainSamples:
    """Training sample ``i`` → ``(input float32 tensor, int label)``, a pure function of
    ``seed`` and ``i`` (see the module docstring).

    Example:
        >>> x = np.arange(10, dtype=np.float32).reshape(10, 1, 1)
        >>> split = Split(x, np.arange(10) % 2, x, np.arange(10) % 2, ["even", "odd"])
        >>> samples = TrainSamples(split, seed=3)
        >>> sorted(int(samples[i][0]) for i in range(10))  # one pass: each sample once
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        >>> samples[4][0].dtype, type(samples[4][1])
        (torch.float32, <class 'int'>)
    """

    def __init__(self, split: Split, seed: int, augment: bool = True):
        self.split, self.seed = split, int(seed)
        self.augment = split.augment if augment else None
        self._orders: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.split.train_y)

    def order(self, epoch: int) -> Tensor:
        """The permutation of pass ``epoch`` over the training set."""
        if epoch not in self._orders:
            if len(self._orders) > 2:
                self._orders.pop(min(self._orders))
            g = generator("classify_order", self.seed, epoch)
            self._orders[epoch] = torch.randperm(len(self), generator=g)
        return self._orders[epoch]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        epoch, position = divmod(int(i), len(self))
        j = int(self.order(epoch)[position])
        raw = torch.as_tensor(self.split.train_x[j : j + 1])
        if self.augment is not None:
            raw = self.augment(raw, generator("classify_augment", self.seed, int(i)))
        return self.split.inputs(raw)[0], int(self.split.train_y[j])
