"""The density spec grammar, at the level of text: names, numbers, units and JSON.

A spec string is ``name`` or ``name:arguments``. ``name`` is a registered family
(``ones``, ``table``, ``gaussian``, ``learned`` or a user family) or ``default`` (the
reference table: ``table`` without arguments). ``arguments`` is a JSON object of the
family's parameters for every family (``gaussian:{"sigma": [1.2]}``), or the family's
short form, which its ``from_string_args`` reads with the helpers here:

- ``table:0.2,0.8``: one profile (outer values, outermost first);
  ``table:3=0.7;5=0.2,0.8``: a profile per kernel size;
  ``table:axes=0.7|0.2,0.8``: a profile per axis (``axes=`` may be left out);
- ``gaussian:1.2``, ``gaussian:2,1,1``: σ in samples, one value or one per axis;
  ``gaussian:2,1,1;spacing=3,1,1``: σ in the unit of the given sample spacing;
  ``gaussian:1.5mm``, ``gaussian:1,1,2mm``, ``gaussian:20ms``: σ in a physical unit,
  resolved later against the data's spacing (``Density.resolve``);
- ``learned``, ``learned:0.7``, ``learned:gaussian:1.0``: a trainable profile starting at
  ones, at ``table`` values, or at any other spec.

Numbers are comma-separated and written back in their shortest round-trip form, so
strings are exact. A physical unit is one suffix after the last number and applies to
all of them; ``UNITS`` lists the accepted ones (mm and µm for lengths; s, ms, µs, min,
h and d for times). A length is resolved against a spacing in millimetres per sample, a
time against a spacing in seconds per sample.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from fractions import Fraction
from types import MappingProxyType
from typing import Any

__all__ = [
    "UNITS",
    "canonical_unit",
    "format_numbers",
    "parse_json_args",
    "parse_numbers",
    "split_spec",
    "split_unit",
    "to_base_unit",
]


UNITS: Mapping[str, tuple[str, int | Fraction]] = MappingProxyType(
    {
        "mm": ("mm", 1),
        "um": ("mm", 1000),
        "s": ("s", 1),
        "ms": ("s", 1000),
        "us": ("s", 1_000_000),
        "min": ("s", Fraction(1, 60)),
        "h": ("s", Fraction(1, 3600)),
        "d": ("s", Fraction(1, 86400)),
    }
)
"""Physical units a spec may give distances in: ``unit → (base unit, units per base
unit)``. A spacing is always given in the base unit: mm for lengths, s for times (the
minute, hour and day count 60, 3600 and 86400 s: time series along a calendar)."""

_TRAILING_WORD = re.compile(r"([^\W\d_]+)\s*$")
_FLOAT_WORDS = frozenset({"inf", "infinity", "nan"})


def canonical_unit(unit: str) -> str:
    """``unit`` in the spelling of ``UNITS`` (case-insensitive; ``µm`` is ``um``).

    Raises:
        TypeError: if ``unit`` is not a string.
        ValueError: if it is not one of ``UNITS``.
    """
    if not isinstance(unit, str):
        raise TypeError(f"unit must be a string such as 'mm', got {unit!r}")
    name = unit.strip().lower().replace("µ", "u").replace("μ", "u")
    if name not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; accepted units: {', '.join(UNITS)}")
    return name


def split_unit(text: str, what: str) -> tuple[str, str | None]:
    """Split a unit suffix off a number list: ``"1,2mm"`` → ``("1,2", "mm")``.

    Args:
        text: comma-separated numbers, optionally followed by one unit.
        what: what the numbers are, for error messages.

    Returns:
        The numbers' text and the unit in canonical spelling, or ``None`` without one.

    Raises:
        ValueError: on a suffix that is not one of ``UNITS``.

    Example:
        >>> split_unit("1.5 mm", "sigma"), split_unit("2,1", "sigma")
        (('1.5 ', 'mm'), ('2,1', None))
    """
    match = _TRAILING_WORD.search(text)
    if match is None or match.group(1).lower() in _FLOAT_WORDS:
        return text, None
    try:
        unit = canonical_unit(match.group(1))
    except ValueError:
        raise ValueError(
            f"{what}: unknown unit {match.group(1)!r} in {text!r}; accepted units: "
            f"{', '.join(UNITS)}"
        ) from None
    return text[: match.start()], unit


def to_base_unit(values: Iterable[float], unit: str) -> tuple[float, ...]:
    """``values`` given in ``unit``, in its base unit (mm or s): ``20 ms → 0.02 s``.

    The conversion is exact up to one rounding (``2 h → 7200.0 s``).
    """
    per_base = Fraction(UNITS[canonical_unit(unit)][1])
    floats = [float(v) for v in values]
    return tuple(float(Fraction(v) / per_base) if math.isfinite(v) else v for v in floats)


def parse_numbers(text: str, what: str) -> list[float]:
    """Comma-separated numbers: ``"0.2, 0.8"`` → ``[0.2, 0.8]``.

    Raises:
        ValueError: quoting ``text`` when an item is not a number.
    """
    if not text.strip():
        return []
    items = [v.strip() for v in text.split(",")]
    try:
        if not all(items):  # "0.7,,0.2" or a trailing comma: a number left out
            raise ValueError
        return [float(v) for v in items]
    except ValueError:
        raise ValueError(f"{what}: expected comma-separated numbers, got {text!r}") from None


def format_numbers(values: Iterable[float]) -> str:
    """Comma-separated shortest round-trip forms (``0.7``, ``2``, ``0.123456789``)."""
    return ",".join(repr(float(v)).removesuffix(".0") for v in values)


def split_spec(text: str) -> tuple[str, str]:
    """``"Gaussian: 1.2"`` → ``("gaussian", "1.2")``: the lower-case name and arguments."""
    name, _, args = text.strip().partition(":")
    return name.strip().lower(), args.strip()


def parse_json_args(args: str, family: str) -> dict[str, Any]:
    """The JSON object of parameters after ``family:``.

    Raises:
        ValueError: if ``args`` is not a JSON object (the message names ``family``).
    """
    try:
        params = json.loads(args)
    except json.JSONDecodeError as err:
        raise ValueError(f"cannot read {family!r} density arguments {args!r}: {err}") from None
    if not isinstance(params, dict):
        raise ValueError(f"{family!r} density arguments must be a JSON object, got {args!r}")
    return params
