"""The validation split of ``tune.split = "validation"``: which training items are held out.

Every task reads ``ndwconv.recipes.engine.config.tuning_split``. With ``"validation"``
it trains on part of its *training* data and scores the rest, never its test split; the
items held out are chosen here, by ``tune.holdout_seed`` alone (never ``train.seed``),
so every arm and every seed of a comparison, and every evaluation of a density search,
scores the same held-out items.

* ``holdout_count``: how many of ``n`` items the fraction ``tune.holdout`` holds out,
  ``round(fraction · n)`` kept within ``[1, n − 1]``;
* ``choose_holdout``: which of ``n`` items (a seeded random subset: images);
* ``stratified_holdout``: which samples of a labelled set, per class (classification).

Contiguous data (volumes, series) are split by position instead (the last part of the
training part), so that no training crop overlaps the held-out part.

Example:
    >>> choose_holdout(10, 0.2, seed=0).tolist() == choose_holdout(10, 0.2, seed=0).tolist()
    True
    >>> len(choose_holdout(10, 0.2, seed=0)), holdout_count(3, 0.01), holdout_count(3, 0.99)
    (2, 1, 2)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..engine.config import tuning_split
from ..engine.streams import generator

__all__ = [
    "choose_holdout",
    "holdout_count",
    "is_validation",
    "scored_split_line",
    "split_record",
    "stratified_holdout",
    "tuning_split",
]


def holdout_count(n: int, fraction: float) -> int:
    """``round(fraction · n)`` kept within ``[1, n − 1]`` (both parts non-empty).

    Raises:
        ValueError: fewer than 2 items (nothing could be left to train on).
    """
    if n < 2:
        raise ValueError(
            f"tune.split = 'validation' holds out part of the training data, which needs at "
            f"least 2 items, got {n}"
        )
    return min(max(round(fraction * n), 1), n - 1)


def choose_holdout(n: int, fraction: float, seed: int) -> np.ndarray:
    """The sorted indices of the ``holdout_count(n, fraction)`` items of ``n`` held out,
    a seeded random subset that depends on ``(seed, n)`` only.

    Raises:
        ValueError: fewer than 2 items.
    """
    k = holdout_count(n, fraction)
    order = torch.randperm(n, generator=generator("tune_holdout", int(seed), int(n)))
    return np.sort(order[:k].numpy()).astype(np.int64)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The sorted indices of the samples held out, class by class: of a class with ``m``
    samples, ``round(fraction · m)`` are held out, at most ``m − 1`` (each class keeps a
    training sample) and, when ``m ≥ 2``, at least 1 (each such class is scored). Each
    class's choice depends on ``(seed, class, m)`` only.

    Raises:
        ValueError: ``labels`` not 1-D, or no sample could be held out (every class has a
            single sample).

    Example:
        >>> labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2])
        >>> held = stratified_holdout(labels, 0.4, seed=3)
        >>> np.bincount(labels[held], minlength=3).tolist()
        [2, 2, 0]
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {labels.shape}")
    held = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        m = len(members)
        if m < 2:
            continue
        k = min(max(round(fraction * m), 1), m - 1)
        g = generator("tune_holdout", int(seed), int(m), int(label))
        held.append(members[torch.randperm(m, generator=g)[:k].numpy()])
    if not held:
        raise ValueError(
            "tune.split = 'validation': every class has a single training sample, so none "
            "can be held out for validation"
        )
    return np.sort(np.concatenate(held)).astype(np.int64)


def is_validation(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` asks to be scored on the validation split (``tune.split``);
    checks ``[tune]``, so a bad value is an error naming its key."""
    return tuning_split(config)["split"] == "validation"


def split_record(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a task's ``describe()`` records of the split it scores: ``{"split": "test"}``,
    or ``{"split": "validation", "tune_holdout": …, "tune_holdout_seed": …}``, so that a
    score on the validation split is never taken for a test score.

    Example:
        >>> split_record({"tune": {"split": "validation", "holdout": 0.25}})
        {'split': 'validation', 'tune_holdout': 0.25, 'tune_holdout_seed': 0}
        >>> split_record({})
        {'split': 'test'}
    """
    found = tuning_split(config)
    if found["split"] != "validation":
        return {"split": "test"}
    return {
        "split": "validation",
        "tune_holdout": found["holdout"],
        "tune_holdout_seed": found["holdout_seed"],
    }


def scored_split_line(config: Mapping[str, Any]) -> str:
    """One sentence for a report's header saying which split its scores are on.

    Example:
        >>> scored_split_line({})
        'Scores on the test split.'
        >>> scored_split_line({"tune": {"split": "validation"}})  # doctest: +NORMALIZE_WHITESPACE
        'Scores on the validation split (tune.split): 20 % of the training data held out
        (tune.holdout_seed 0), not the test split, which was not read.'
    """
    found = tuning_split(config)
    if found["split"] != "validation":
        return "Scores on the test split."
    return (
        f"Scores on the validation split (tune.split): {100 * found['holdout']:g} % of the "
        f"training data held out (tune.holdout_seed {found['holdout_seed']}), not the test "
        "split, which was not read."
    )
