"""Named, seeded random streams: every random draw of a recipe comes from one of these.

A stream is a ``torch.Generator`` whose seed mixes the run's seed, the item's index and
the stream's number through ``numpy.random.SeedSequence``, so the same item gets the
same draws in any process, on any platform, in any order. The numbers live here, in one
table, so that two streams can never share one by accident.

Example:
    >>> a = generator("image_validation", 0, 7)
    >>> b = generator("image_validation", 0, 7)
    >>> torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
    True
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["STREAMS", "generator", "step_seed"]

STREAMS: dict[str, int | None] = {
    "image_patches": None,  # (seed, index): the training patch of an image recipe
    "image_validation": 1,  # (seed, crc32 of the image name, 1): its fixed validation noise
    "volume_patches": 2,  # (seed, index, 2): the training patch of a volume recipe
    "volume_validation": 3,  # (eval seed, block index, 3): a validation block's noise
    "classify_order": 4,  # (seed, pass, 4): the order of one pass over a training set
    "classify_augment": 5,  # (seed, index, 5): a classification sample's augmentation
    "series_validation": 6,  # (eval seed, series index, 6): a held-out part's noise
    "series_filters": 7,  # (eval seed, series index, 7): the noisy training part filters fit on
    "tune_holdout": 8,  # (tune.holdout_seed, n[, class], 8): the items held out for tuning
}
"""Stream name → the word appended to the seed words (``None``: nothing appended)."""


def generator(stream: str, *words: int) -> torch.Generator:
    """A CPU generator for ``stream``, seeded from ``words`` (stable across platforms).

    Raises:
        ValueError: an unknown stream name.
    """
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; known: {', '.join(STREAMS)}")
    tag = STREAMS[stream]
    seed_words = [*words] if tag is None else [*words, tag]
    state = np.random.SeedSequence(seed_words).generate_state(1, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0]))


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of the global RNG for one rank's training step (dropout and the like)."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0] >> 1)
