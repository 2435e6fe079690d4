"""Per-axis profiles and their outer product: the arithmetic shared by every family.

A separable density is a 1-D profile per kernel axis; Φ is their outer product,
``Φ[i1, …, iN] = α¹[i1] · … · αᴺ[iN]``. In the reference convention an axis of odd size
``k = 2m + 1`` is given by its ``m`` outer values, outermost first, and the profile is
``[d1, …, dm, 1, dm, …, d1]``. Everything here is float64 and differentiable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "as_tuple",
    "check_values",
    "offsets",
    "outer",
    "shortest_decimal",
    "symmetric_profile",
]


def offsets(size: int) -> Tensor:
    """Tap positions relative to the kernel centre, float64: ``arange(size) - (size-1)/2``."""
    return torch.arange(size, dtype=torch.float64) - (size - 1) / 2


def check_values(values: Iterable[Any], what: str) -> tuple[float, ...]:
    """Validate density values: real, finite and strictly positive.

    Raises:
        TypeError: if ``values`` is not a sequence of numbers (``what`` names it).
        ValueError: on a value that is not finite or not > 0.
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{what} must be a sequence of numbers, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or (not isinstance(v, (int, float)) and not hasattr(v, "__float__")):
            raise TypeError(f"{what} must hold numbers, got {v!r}")
        f = float(v)
        if not math.isfinite(f) or f <= 0:
            raise ValueError(f"{what} must be finite and > 0, got {f!r}")
        out.append(f)
    return tuple(out)


def shortest_decimal(value: float, dtype: torch.dtype) -> float:
    """The shortest decimal that converts back to ``value`` in ``dtype``.

    ``value`` is a number held in ``dtype`` (a float32 parameter read as a Python float,
    say ``0.14999999105930328``); the result is the decimal with the fewest significant
    digits whose conversion float64 → ``dtype`` gives that same number (``0.15``). Specs
    written with it are short and read back to the identical ``dtype`` value.

    Example:
        >>> shortest_decimal(float(torch.tensor(0.15, dtype=torch.float32)), torch.float32)
        0.15
        >>> shortest_decimal(0.15, torch.float64)
        0.15
    """
    value = float(value)
    if not math.isfinite(value) or dtype == torch.float64:
        return value
    target = torch.tensor(value, dtype=torch.float64).to(dtype)
    for digits in range(1, 18):
        candidate = float(f"{value:.{digits}g}")
        if torch.tensor(candidate, dtype=torch.float64).to(dtype) == target:
            return candidate
    return value


def symmetric_profile(half: Tensor) -> Tensor:
    """``[d1, …, dm]`` (outermost first) → ``[d1, …, dm, 1, dm, …, d1]``; differentiable."""
    one = torch.ones(1, dtype=half.dtype, device=half.device)
    return torch.cat([half, one, half.flip(0)])


def outer(profiles: Sequence[Tensor]) -> Tensor:
    """Outer product of 1-D profiles: ``Φ[i1,…,iN] = p1[i1]·…·pN[iN]``; differentiable."""
    ndim = len(profiles)
    phi = None
    for axis, p in enumerate(profiles):
        shape = [1] * ndim
        shape[axis] = p.numel()
        term = p.reshape(shape)
        phi = term if phi is None else phi * term
    assert phi is not None
    return phi


def as_tuple(value: int | Sequence[int] | None, ndim: int, default: int = 1) -> tuple[int, ...]:
    """One int per axis from an int, a sequence or ``None`` (``default`` on every axis)."""
    if value is None:
        return (default,) * ndim
    if isinstance(value, int):
        return (value,) * ndim
    return tuple(int(v) for v in value)
