"""Search methods over a box, and the evaluation log that makes searches resumable.

Both methods minimise ``objective(point) -> float`` over ``lower ≤ point ≤ upper``
within a budget of distinct evaluations, and are deterministic: the same objective values
give the same sequence of points. ``EvaluationLog`` records every evaluation as a JSON
line and answers repeated points from the record, so a search that was interrupted and is
started again replays its finished evaluations at no cost and goes on from there.

* ``direct_l``: DIRECT, locally biased (Gablonsky & Kelley 2001), as
  ``scipy.optimize.direct(..., locally_biased=True)``. It asks for one point at a time.
* ``line_search``: the manual strategy of the reference layer's README made automatic:
  start from the plain convolution (every value 1, clipped to the bounds), try a step
  either side of each value in turn with everything else fixed, move while it improves,
  halve the step when neither side does. The two sides of a value are independent, so
  they are evaluated together (in parallel where the caller's ``evaluate_many`` can).

Example:
    >>> f = lambda x: (x[0] - 0.8) ** 2 + (x[1] - 0.3) ** 2
    >>> best = direct_l(f, [0.5, 0.05], [1.5, 1.0], budget=200)
    >>> [round(v, 2) for v in best.point]
    [0.8, 0.3]
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ndwconv.adapters.atomic import atomic_write

__all__ = ["BudgetSpent", "EvaluationLog", "Found", "direct_l", "line_search", "point_key"]

Objective = Callable[[Sequence[float]], float]


class BudgetSpent(Exception):
    """Raised inside a search when it asks for a new point beyond its budget."""


@dataclasses.dataclass(frozen=True)
class Found:
    """A search's outcome: the best point, its objective, and how many points it cost."""

    point: list[float]
    value: float
    evaluations: int


def point_key(point: Sequence[float]) -> str:
    """The cache key of a point: its values rounded to 12 significant digits."""
    return ",".join(f"{float(v):.12g}" for v in point)


class _Budgeted:
    """Counts the distinct points asked for; refuses one beyond the budget."""

    def __init__(self, objective: Objective, budget: int):
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise ValueError(f"budget must be an integer ≥ 1, got {budget!r}")
        self.objective, self.budget = objective, budget
        self.seen: dict[str, float] = {}
        self.best: tuple[float, list[float]] | None = None

    def __call__(self, point: Sequence[float]) -> float:
        values = [float(v) for v in point]
        key = point_key(values)
        if key not in self.seen:
            if len(self.seen) >= self.budget:
                raise BudgetSpent
            self.record(values, float(self.objective(values)))
        return self.seen[key]

    def record(self, point: list[float], value: float) -> None:
        """Count ``point`` as evaluated, with ``value`` (from a batch evaluation)."""
        self.seen[point_key(point)] = value
        if math.isfinite(value) and (self.best is None or value < self.best[0]):
            self.best = (value, point)

    def found(self) -> Found:
        if self.best is None:
            raise RuntimeError("no evaluation gave a finite objective value")
        return Found(self.best[1], self.best[0], len(self.seen))


def _check_box(lower: Sequence[float], upper: Sequence[float]) -> None:
    if len(lower) != len(upper) or not lower:
        raise ValueError("lower and upper must be non-empty and of one length")
    for i, (low, high) in enumerate(zip(lower, upper, strict=True)):
        if not low < high:
            raise ValueError(f"bound {i}: lower {low} must be below upper {high}")


def direct_l(
    objective: Objective, lower: Sequence[float], upper: Sequence[float], budget: int
) -> Found:
    """Minimise ``objective`` over the box with DIRECT-L (``scipy.optimize.direct``,
    ``locally_biased=True``), stopping at ``budget`` distinct evaluations.

    The first point is the centre of the box. Points DIRECT asks for again are answered
    from memory and do not count.
    """
    from scipy.optimize import direct

    _check_box(lower, upper)
    counted = _Budgeted(objective, budget)
    try:
        direct(
            lambda x: counted(list(x)),
            list(zip(lower, upper, strict=True)),
            maxfun=max(budget, 1) * 2 + 10,  # the budget is enforced by counting
            maxiter=10_000,
            locally_biased=True,
            vol_tol=0.0,
            len_tol=1e-9,
        )
    except BudgetSpent:
        pass
    return counted.found()


def line_search(
    objective: Objective,
    lower: Sequence[float],
    upper: Sequence[float],
    budget: int,
    start: Sequence[float] | None = None,
    step: float = 0.1,
    min_step: float = 0.01,
    evaluate_many: Callable[[list[list[float]]], list[float]] | None = None,
) -> Found:
    """Coordinate line search from ``start`` (default: every value 1, clipped to bounds).

    For each value in turn, both neighbours ``± step·(upper − lower)`` are evaluated (by
    ``evaluate_many`` when given, e.g. in parallel); the search moves to the better one while
    it improves on the current point, going on in that direction. A sweep over all values
    that moves nowhere halves the step, down to ``min_step`` (relative to the range).
    """
    _check_box(lower, upper)
    counted = _Budgeted(objective, budget)
    low, high = np.asarray(lower, float), np.asarray(upper, float)
    x = np.clip(np.ones_like(low) if start is None else np.asarray(start, float), low, high)
    width = high - low

    def values(points: list[list[float]]) -> list[float]:
        new = [p for p in points if point_key(p) not in counted.seen]
        room = counted.budget - len(counted.seen)
        if evaluate_many is not None and len(new) > 1 and room >= len(new):
            for p, v in zip(new, evaluate_many(new), strict=True):
                counted.record(p, float(v))
        return [counted(p) for p in points]

    try:
        current = counted(list(x))
        size = step
        while size >= min_step:
            moved = False
            for i in range(len(x)):
                sides = []
                for sign in (-1.0, 1.0):
                    y = x.copy()
                    y[i] = np.clip(x[i] + sign * size * width[i], low[i], high[i])
                    if y[i] != x[i]:
                        sides.append((sign, y))
                if not sides:
                    continue
                scores = values([list(y) for _, y in sides])
                best = int(np.argmin(scores))
                if scores[best] >= current:
                    continue
                sign, x, current, moved = sides[best][0], sides[best][1], scores[best], True
                while True:  # keep going in the better direction while it improves
                    y = x.copy()
                    y[i] = np.clip(x[i] + sign * size * width[i], low[i], high[i])
                    if y[i] == x[i]:
                        break
                    value = counted(list(y))
                    if value >= current:
                        break
                    x, current = y, value
            if not moved:
                size /= 2
    except BudgetSpent:
        pass
    return counted.found()


class EvaluationLog:
    """Every evaluation of a search, one JSON line each, and a cache of them by point.

    The log's first line is a header with the search's ``fingerprint`` (its settings); a
    log written under other settings is refused, so a resumed search can only replay its
    own evaluations.

    Args:
        path: the ``.jsonl`` file (created with its header if missing).
        fingerprint: JSON-safe settings of the search (method, space, objective, config).
    """

    def __init__(self, path: str | Path, fingerprint: Mapping[str, Any]):
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))
        self.records: list[dict[str, Any]] = []
        if self.path.exists():
            lines = self.path.read_text(encoding="utf-8").splitlines()
            complete = []
            for line in lines:
                try:
                    complete.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut short by a kill: dropped
                    break
            if not complete or complete[0].get("fingerprint") != self.fingerprint:
                old = complete[0].get("fingerprint", {}) if complete else {}
                changed = sorted(
                    k
                    for k in set(old) | set(self.fingerprint)
                    if old.get(k) != self.fingerprint.get(k)
                )
                raise ValueError(
                    f"evaluation log {str(self.path)!r} belongs to a search with other "
                    f"settings (differing: {', '.join(changed) or 'header'}); use another "
                    "folder"
                )
            self.records = complete[1:]
            if len(complete) != len(lines):  # rewrite without the broken tail
                self._rewrite()
        else:
            self._rewrite()
        self.by_key = {r["key"]: r for r in self.records}

    def _rewrite(self) -> None:
        lines = [json.dumps({"fingerprint": self.fingerprint})]
        lines += [json.dumps(r, allow_nan=True) for r in self.records]
        text = "\n".join(lines) + "\n"
        atomic_write(self.path, lambda p: p.write_text(text, encoding="utf-8"))

    def get(self, point: Sequence[float]) -> dict[str, Any] | None:
        """The record of ``point``, if it was evaluated."""
        return self.by_key.get(point_key(point))

    def add(self, point: Sequence[float], value: float, **extra: Any) -> dict[str, Any]:
        """Record an evaluation (appended and flushed at once)."""
        record = {
            "index": len(self.records),
            "key": point_key(point),
            "point": [float(v) for v in point],
            "objective": float(value),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **extra,
        }
        self.records.append(record)
        self.by_key[record["key"]] = record
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(record, allow_nan=True) + "\n")
            stream.flush()
        return record

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)
