"""The density spec grammar, at the level of text: names, numbers and JSON arguments.

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
- ``learned``, ``learned:0.7``, ``learned:gaussian:1.0``: a trainable profile starting at
  ones, at ``table`` values, or at any other spec.

Numbers are comma-separated and written back in their shortest round-trip form, so
strings are exact.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

__all__ = ["format_numbers", "parse_json_args", "parse_numbers", "split_spec"]


def parse_numbers(text: str, what: str) -> list[float]:
    """Comma-separated numbers: ``"0.2, 0.8"`` → ``[0.2, 0.8]``.

    Raises:
        ValueError: quoting ``text`` when an item is not a number.
    """
    try:
        return [float(v) for v in text.split(",") if v.strip()]
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
