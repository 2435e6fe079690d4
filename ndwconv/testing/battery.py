"""The property battery: ``PROPERTIES``, ``check_layer`` and its ``LayerReport``.

``check_layer`` runs each property under hypothesis on the cases it needs and reports
the shrunk counter-example of every property that failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..functional import PADDING_MODES
from .cases import ConvCase
from .properties import (
    Factory,
    NotApplicable,
    check_adjointness,
    check_dtype_device,
    check_flip_symmetry,
    check_fold_equivalence,
    check_gradcheck,
    check_linear_in_input,
    check_linear_in_weight,
    check_matches_reference,
    check_ones_equals_conv,
    check_state_dict_round_trip,
    check_translation_equivariance,
)
from .strategies import _require_hypothesis, conv_cases

try:
    from hypothesis import HealthCheck, Verbosity, assume, given, settings
except ImportError:  # pragma: no cover - check_layer says hypothesis is needed
    pass

__all__ = ["PROPERTIES", "LayerReport", "Property", "PropertyResult", "check_layer"]


@dataclass(frozen=True)
class Property:
    """A named check with the case options it needs (passed to ``conv_cases``)."""

    name: str
    check: Callable[[Factory, ConvCase], None]
    case_options: dict[str, Any] = field(default_factory=dict)


PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in [
        Property("matches_reference", check_matches_reference),
        Property("ones_equals_conv", check_ones_equals_conv),
        Property("linear_in_input", check_linear_in_input),
        Property("linear_in_weight", check_linear_in_weight),
        Property(
            "translation_equivariance",
            check_translation_equivariance,
            {"padding_modes": ("circular",), "same": "only"},
        ),
        Property("adjointness", check_adjointness),
        Property("flip_symmetry", check_flip_symmetry, {"stride": False, "same": False}),
        Property("fold_equivalence", check_fold_equivalence),
        Property(
            "gradcheck",
            check_gradcheck,
            {"max_size": 5, "max_channels_per_group": 2, "max_batch": 1},
        ),
        Property("dtype_device", check_dtype_device),
        Property("state_dict_round_trip", check_state_dict_round_trip),
    ]
}
"""The battery run by ``check_layer``, by name."""


@dataclass
class PropertyResult:
    """The outcome of one property: held, failed (with the shrunk case) or not applicable."""

    name: str
    status: str  # "held", "failed" or "not applicable"
    examples: int
    counterexample: ConvCase | None = None
    error: str = ""

    @property
    def held(self) -> bool:
        return self.status != "failed"


@dataclass
class LayerReport:
    """What ``check_layer`` found: one ``PropertyResult`` per property."""

    layer: str
    ndim: tuple[int, int]
    results: list[PropertyResult]

    @property
    def ok(self) -> bool:
        """Every property held (or did not apply)."""
        return all(r.held for r in self.results)

    @property
    def failed(self) -> list[PropertyResult]:
        return [r for r in self.results if not r.held]

    def __getitem__(self, name: str) -> PropertyResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def __str__(self) -> str:
        width = max(len(r.name) for r in self.results)
        lines = [f"check_layer({self.layer}, ndim={self.ndim}):"]
        for r in self.results:
            lines.append(f"  {r.name:<{width}}  {r.status:<14} {r.examples} examples")
            if r.status == "failed":
                lines.append(f"      counter-example: {r.counterexample}")
                lines.extend(f"      {line}" for line in r.error.splitlines()[:6])
        held = sum(r.status == "held" for r in self.results)
        lines.append(
            f"{held} held, {len(self.failed)} failed, "
            f"{sum(r.status == 'not applicable' for r in self.results)} not applicable"
        )
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise ``AssertionError`` with the report if any property failed."""
        if not self.ok:
            raise AssertionError(str(self))


_BOUNDS = ("max_size", "max_channels_per_group", "max_batch", "max_kernel")


def _merge_options(user: dict[str, Any], needed: dict[str, Any]) -> dict[str, Any] | None:
    """``conv_cases`` options meeting both the user's restrictions and a property's needs;
    ``None`` when they cannot both hold (the property is then not applicable)."""
    out = dict(user)
    for key, value in needed.items():
        if key == "padding_modes":
            modes = tuple(m for m in out.get(key, PADDING_MODES) if m in value)
            if not modes:
                return None
            out[key] = modes
        elif key in _BOUNDS:
            out[key] = min(out.get(key, value), value)
        elif key == "same":
            mine = out.get("same", True)
            if (value == "only" and mine is False) or (value is False and mine == "only"):
                return None
            out[key] = value
        elif key == "stride":
            out[key] = bool(out.get(key, True)) and bool(value)
        else:
            out[key] = value
    return out


def _run_property(
    prop: Property, factory: Factory, strategy: Any, run_settings: Any
) -> PropertyResult:
    seen: dict[str, Any] = {"n": 0, "applicable": 0, "last": None}

    @run_settings
    @given(strategy)
    def run(case: ConvCase) -> None:
        seen["n"] += 1
        seen["last"] = case
        try:
            prop.check(factory, case)
        except NotApplicable:
            assume(False)
        seen["applicable"] += 1

    try:
        run()
    except Exception as err:  # hypothesis replays the shrunk example last and re-raises its error
        name = type(err).__name__
        if name in ("Unsatisfiable", "FailedHealthCheck") and seen["applicable"] == 0:
            return PropertyResult(prop.name, "not applicable", 0)
        message = str(err) if isinstance(err, AssertionError) else f"{name}: {err}"
        examples = min(seen["n"], run_settings.max_examples)  # not counting shrink replays
        return PropertyResult(prop.name, "failed", examples, seen["last"], message)
    return PropertyResult(prop.name, "held", seen["applicable"])


def check_layer(
    factory: Factory,
    ndim: int | tuple[int, int],
    *,
    properties: Iterable[str] | None = None,
    max_examples: int | None = None,
    density: bool | Iterable[str] = True,
    **case_options: Any,
) -> LayerReport:
    """Run the property battery on a layer and report what held.

    Args:
        factory: builds a layer from ``case.layer_kwargs`` (``ndim=`` too if it takes it).
        ndim: spatial dims, or an inclusive range ``(lo, hi)``.
        properties: names from ``PROPERTIES`` (default: all).
        max_examples: examples per property (default: the active hypothesis profile's).
        density: as in ``conv_cases``; ``False`` for layers without ``density=``.
        case_options: more ``conv_cases`` arguments (``max_kernel``, ``groups``, …).

    Returns:
        A ``LayerReport``; ``report.ok`` tells whether everything held and
        ``report.raise_if_failed()`` turns it into a test assertion.

    Raises:
        ValueError: for an unknown property name.
    """
    _require_hypothesis()
    names = list(PROPERTIES) if properties is None else list(properties)
    unknown = [n for n in names if n not in PROPERTIES]
    if unknown:
        raise ValueError(f"unknown properties {unknown}; known: {list(PROPERTIES)}")
    run_settings = settings(
        max_examples=settings.default.max_examples if max_examples is None else max_examples,
        deadline=None,
        database=None,
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    lo_hi = (ndim, ndim) if isinstance(ndim, int) else tuple(ndim)
    results = []
    for name in names:
        prop = PROPERTIES[name]
        user = {"ndim": lo_hi, "density": density, **case_options}
        options = _merge_options(user, prop.case_options)
        if options is None:
            results.append(PropertyResult(name, "not applicable", 0))
            continue
        results.append(_run_property(prop, factory, conv_cases(**options), run_settings))
    label = getattr(factory, "__qualname__", None) or repr(factory)
    return LayerReport(label, lo_hi, results)
