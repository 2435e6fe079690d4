"""The search space of a density search: which profile values are searched, within which
bounds, and how a point of the space becomes a density file.

A weighted layer of odd kernel size ``k = 2m + 1`` on an axis takes ``m`` profile values
(outermost first, centre fixed to 1). The space holds them either *shared per kernel
size* (one profile for every axis of size ``k`` in every layer: the convention of the
reference layer, a ``Table`` by size) or *per layer* (each layer its own table by size).
The default bounds are the reference ranges (Cammarasana & Patanè's README): ``k = 3``:
``[0.5, 1.5]``; ``k = 5``: ``[0.05, 1], [0.5, 1.5]``; ``k = 7``: ``[0.05, 0.5], [0.15, 1.0],
[0.25, 1.5]`` — other sizes need bounds given.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 5), nn.Conv2d(4, 1, 3))
    >>> space = SearchSpace.of(net)
    >>> space.labels
    ['k3[0]', 'k5[0]', 'k5[1]']
    >>> space.lower, space.upper
    ([0.5, 0.05, 0.5], [1.5, 1.0, 1.5])
    >>> str(space.densities([0.7, 0.2, 0.8]).shared)
    'table:3=0.7;5=0.2,0.8'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ndwconv import Table
from ndwconv.density import DensityFile

from ..models import odd_kernel_convs

__all__ = ["REFERENCE_BOUNDS", "SHARES", "SearchSpace", "parse_bounds"]

REFERENCE_BOUNDS: dict[int, tuple[tuple[float, float], ...]] = {
    3: ((0.5, 1.5),),
    5: ((0.05, 1.0), (0.5, 1.5)),
    7: ((0.05, 0.5), (0.15, 1.0), (0.25, 1.5)),
}
"""Search ranges per kernel size, outermost value first (the reference layer's README)."""

SHARES = ("kernel-size", "layer")
"""``tune.share``: one profile per kernel size for all layers, or one table per layer."""


def parse_bounds(bounds: Mapping[Any, Any] | None) -> dict[int, tuple[tuple[float, float], ...]]:
    """``{size: [[low, high], …]}`` (TOML: ``tune.bounds = {"3" = [[0.6, 1.2]]}``) checked,
    merged over ``REFERENCE_BOUNDS``.

    Raises:
        ValueError: a size that is not odd and > 1, the wrong number of ranges for the
            size, or a range that is not ``0 < low < high`` (the message names it).
    """
    merged = dict(REFERENCE_BOUNDS)
    for key, ranges in (bounds or {}).items():
        try:
            size = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"tune.bounds: {key!r} is not a kernel size") from None
        if size < 3 or size % 2 == 0:
            raise ValueError(f"tune.bounds: kernel size {size} must be odd and ≥ 3")
        if not isinstance(ranges, Sequence) or len(ranges) != size // 2:
            raise ValueError(
                f"tune.bounds[{size}]: a kernel of size {size} takes {size // 2} range(s) "
                f"[low, high], outermost first; got {ranges!r}"
            )
        checked = []
        for pair in ranges:
            ok = isinstance(pair, Sequence) and len(pair) == 2
            low, high = (float(pair[0]), float(pair[1])) if ok else (math.nan, math.nan)
            if not (0 < low < high and math.isfinite(high)):
                raise ValueError(f"tune.bounds[{size}]: {pair!r} is not a range 0 < low < high")
            checked.append((low, high))
        merged[size] = tuple(checked)
    return merged


@dataclasses.dataclass(frozen=True)
class _Block:
    """The values of one profile: a kernel size, in one layer (or shared: ``layer`` None)."""

    layer: str | None
    size: int
    bounds: tuple[tuple[float, float], ...]


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The profile values a search varies, their bounds, and how a point maps to densities.

    Build it with ``SearchSpace.of(model, share, bounds)`` from the model whose layers are
    tuned (the layers ``odd_kernel_convs`` selects, as the recipes make weighted).
    """

    blocks: tuple[_Block, ...]
    share: str

    @classmethod
    def of(
        cls,
        model: nn.Module,
        share: str = "kernel-size",
        bounds: Mapping[Any, Any] | None = None,
    ) -> SearchSpace:
        """The space of ``model``'s odd, non-pointwise convolutions.

        Raises:
            ValueError: ``share`` unknown, no such layer, or a kernel size without bounds.
        """
        if share not in SHARES:
            raise ValueError(f"tune.share must be one of {', '.join(SHARES)}, got {share!r}")
        ranges = parse_bounds(bounds)
        sizes_by_layer: dict[str, list[int]] = {}
        for name, module in model.named_modules():
            if odd_kernel_convs(name, module):
                kernel = module.kernel_size
                sizes = kernel if isinstance(kernel, (tuple, list)) else (kernel,)
                sizes_by_layer[name] = sorted({int(k) for k in sizes if k > 1})
        if not sizes_by_layer:
            raise ValueError("the model has no odd-sized convolution whose density could be tuned")
        missing = sorted({k for s in sizes_by_layer.values() for k in s} - set(ranges))
        if missing:
            raise ValueError(
                f"no search bounds for kernel size(s) {missing}: give them, e.g. "
                f"--set 'tune.bounds={{\"{missing[0]}\" = [[0.1, 1.5], …]}}' "
                f"({missing[0] // 2} range(s), outermost first)"
            )
        if share == "kernel-size":
            sizes = sorted({k for s in sizes_by_layer.values() for k in s})
            blocks = tuple(_Block(None, k, ranges[k]) for k in sizes)
        else:
            blocks = tuple(
                _Block(name, k, ranges[k]) for name, sizes in sizes_by_layer.items() for k in sizes
            )
        return cls(blocks, share)

    @property
    def dimension(self) -> int:
        """The number of searched values."""
        return sum(len(b.bounds) for b in self.blocks)

    @property
    def lower(self) -> list[float]:
        return [low for b in self.blocks for low, _ in b.bounds]

    @property
    def upper(self) -> list[float]:
        return [high for b in self.blocks for _, high in b.bounds]

    @property
    def labels(self) -> list[str]:
        """One name per value: ``k3[0]`` (shared) or ``body.0:k3[0]`` (per layer)."""
        return [
            (f"{b.layer}:" if b.layer is not None else "") + f"k{b.size}[{i}]"
            for b in self.blocks
            for i in range(len(b.bounds))
        ]

    def neutral(self) -> list[float]:
        """The point closest to the plain convolution (every value 1, clipped to bounds)."""
        return [min(max(1.0, low), high) for low, high in zip(self.lower, self.upper, strict=True)]

    def check(self, point: Sequence[float]) -> list[float]:
        """``point`` as floats, or a ``ValueError`` if it is outside the bounds."""
        values = [float(v) for v in point]
        if len(values) != self.dimension:
            raise ValueError(
                f"a point of this space has {self.dimension} values, got {len(values)}"
            )
        for label, v, low, high in zip(self.labels, values, self.lower, self.upper, strict=True):
            if not low <= v <= high:
                raise ValueError(f"{label} = {v} is outside its bounds [{low}, {high}]")
        return values

    def tables(self, point: Sequence[float]) -> dict[str | None, Table]:
        """``{layer (None: shared): Table by kernel size}`` of ``point``."""
        values = iter(self.check(point))
        by_layer: dict[str | None, dict[int, list[float]]] = {}
        for block in self.blocks:
            by_layer.setdefault(block.layer, {})[block.size] = [next(values) for _ in block.bounds]
        return {layer: Table(sizes) for layer, sizes in by_layer.items()}

    def densities(
        self, point: Sequence[float], meta: Mapping[str, Any] | None = None
    ) -> DensityFile:
        """The density file of ``point``: a shared table, or one table per layer."""
        tables = self.tables(point)
        shared = tables.pop(None, None)
        return DensityFile(shared=shared, layers=tables, meta=dict(meta or {}))
