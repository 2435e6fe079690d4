"""The arms of a comparison: what each trains, and the ``[compare]`` table that picks them.

Every arm is one of the task's two methods (``"standard"``: plain convolutions;
``"weighted"``: the model made weighted) with, optionally, a change to the configuration
and a change to the freshly built model:

* ``standard`` — the task's standard model.
* ``weighted`` — the task's weighted model, with ``[weighted] density``.
* ``standard-phi-init`` — the standard model built under the seed, then
  ``ndwconv.init_from_density`` with the weighted arm's density on the layers
  ``odd_kernel_convs`` selects: plain convolutions initialised at ``W₀ ⊙ Φ``, the same
  initial function as the weighted arm, trained in the plain parameterisation. It
  separates the effect of the initial function from that of the reparameterised training.
* ``weighted-tuned`` — the weighted arm with ``weighted.density`` replaced by a tuned
  density (``compare.tuned``: a density spec, or a density file that ``ndwconv tune``
  wrote).

The model change is applied by wrapping the task's ``build_model``: the trainer builds
the model under the seed as for any run, and a resumed run still loads its saved weights
over it, so tasks need no change.

Example:
    >>> settings = compare_settings({"compare": {"arms": ["standard", "standard-phi-init"]}})
    >>> [(arm.name, arm.method) for arm in make_arms(settings)]
    [('standard', 'standard'), ('standard-phi-init', 'standard')]
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import ndwconv

from ..models import odd_kernel_convs
from .config import check_section

__all__ = [
    "ARMS",
    "ARM_HELP",
    "COMPARE_SCHEMA",
    "DEFAULT_ARMS",
    "Arm",
    "arm_model",
    "arm_task",
    "compare_settings",
    "make_arms",
    "phi_init",
]

ARMS = ("standard", "weighted", "standard-phi-init", "weighted-tuned")
"""Every arm a comparison can run."""
DEFAULT_ARMS = ("standard", "weighted")
"""The arms of a comparison whose configuration names none (``compare.arms``)."""
ARM_HELP = {
    "standard": "plain convolutions",
    "weighted": "the same model made weighted with [weighted] density",
    "standard-phi-init": "plain convolutions initialised at W₀ ⊙ Φ (the weighted arm's "
    "density): the weighted arm's initial function, plain parameterisation",
    "weighted-tuned": "the weighted model with the tuned density (compare.tuned) instead of "
    "[weighted] density",
}
"""One line per arm, for reports and ``--help``."""

COMPARE_SCHEMA: dict[str, Any] = {
    "seeds": int,
    "arms": list,
    "tuned": str,
    "lr_sweep": list,
    "sweep_steps": int,
}
"""Keys of ``[compare]``: ``seeds`` (how many, 0 … N−1), ``arms`` (names from ``ARMS``;
default ``DEFAULT_ARMS``), ``tuned`` (the ``weighted-tuned`` arm's density: a spec or a
density file), ``lr_sweep`` (learning rates to choose each arm's from, on the validation
split) and ``sweep_steps`` (the sweep runs' length; default ``train.steps``)."""


# The model change of an arm: (freshly built model, build a reference model of a method)
InitFn = Callable[[nn.Module, Callable[[str], nn.Module]], nn.Module]


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm of a comparison.

    Attributes:
        name: the arm's name (run folders ``seed-S/NAME``, ``"method"`` in results).
        method: the task's method the arm builds on: ``"standard"`` or ``"weighted"``.
        description: one line for reports.
        settings: the configuration values the arm changes, ``{"section.key": value}``.
        init: a change to the freshly built model, ``init(model, reference)`` where
            ``reference(method)`` builds that method's model of the same configuration
            (for ``standard-phi-init``: the weighted one, whose densities it reads), or
            ``None``.
    """

    name: str
    method: str
    description: str
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    init: InitFn | None = None

    def configure(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A deep copy of ``config`` with the arm's settings applied (``config`` is not
        modified)."""
        result = copy.deepcopy(dict(config))
        for dotted, value in self.settings.items():
            section, key = dotted.split(".")
            table = result.get(section, {})
            result[section] = {**table, key: value}
        return result


def phi_init(model: nn.Module, reference: nn.Module) -> nn.Module:
    """Scale ``model``'s plain convolutions by the densities of ``reference``'s weighted
    layers of the same name (in place): ``model``'s initial function becomes that of a
    weighted model with ``model``'s weights.

    Plain ``nn.Conv1d/2d/3d`` layers go through ``ndwconv.init_from_density`` (on the
    layers ``odd_kernel_convs`` selects); the N-D layers of models of 4 or more
    dimensions, which are ``WeightedConvNd`` with the ``ones`` density in a standard
    model, have their weight scaled by the reference layer's Φ.

    Raises:
        ValueError: a weighted layer of ``reference`` has no counterpart in ``model`` that
            could be scaled (the message names it).
    """
    reference_layers = dict(ndwconv.weighted_layers(reference))
    densities = {name: layer.density for name, layer in reference_layers.items()}
    modules = dict(model.named_modules())
    missing = []
    for name, ref in reference_layers.items():
        layer = modules.get(name)
        if layer is None or getattr(layer, "weight", None) is None:
            missing.append(name or "<root>")
            continue
        plain = type(layer) in (nn.Conv1d, nn.Conv2d, nn.Conv3d) and odd_kernel_convs(name, layer)
        ones = ndwconv.is_weighted(layer) and isinstance(layer.density, ndwconv.Ones)
        if not (plain or ones) or tuple(layer.weight.shape) != tuple(ref.weight.shape):
            missing.append(name or "<root>")
    if missing:
        raise ValueError(
            "standard-phi-init: the weighted model's layer(s) "
            f"{', '.join(map(repr, missing[:5]))} have no plain counterpart of the same shape "
            "in the standard model"
        )
    ndwconv.init_from_density(
        model, lambda name, conv: densities.get(name), where=odd_kernel_convs, inplace=True
    )
    with torch.no_grad():
        for name, ref in reference_layers.items():
            layer = modules[name]
            if ndwconv.is_weighted(layer):  # an N-D layer holding the ones density
                layer.weight.mul_(ref.phi().detach().to(layer.weight.dtype))
    return model


def _phi_init(model: nn.Module, reference: Callable[[str], nn.Module]) -> nn.Module:
    with torch.random.fork_rng():  # the reference model leaves the RNG as it found it
        weighted = reference("weighted")
    return phi_init(model, weighted)


def _rates(value: Any, name: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name} must be a non-empty list of learning rates, got {value!r}")
    rates = []
    for rate in value:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise ValueError(f"{name}: {rate!r} is not a number")
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"{name}: learning rates must be positive and finite, got {rate!r}")
        rates.append(float(rate))
    if len(set(rates)) != len(rates):
        raise ValueError(f"{name}: a learning rate is given twice ({value!r})")
    return rates


def _tuned(value: str, name: str) -> str:
    """A tuned density: an existing file (made absolute), or a density spec."""
    path = Path(value).expanduser()
    if path.is_file():
        return str(path.resolve())
    if path.is_dir():
        raise ValueError(f"{name}: {value!r} is a folder, not a density file")
    if path.suffix.lower() == ".json":
        raise ValueError(f"{name}: the density file {value!r} does not exist")
    try:
        ndwconv.as_density(value)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{name}: {value!r} is neither a density file nor a density spec ({err})"
        ) from None
    return value


def compare_settings(
    config: Mapping[str, Any], flags: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The ``[compare]`` table of ``config``, checked, with defaults (see
    ``COMPARE_SCHEMA``): ``seeds``, ``arms`` (a tuple), ``tuned`` (``None``, a spec or an
    absolute file path), ``lr_sweep`` (a list of rates, or ``None``), ``sweep_steps``
    (``None``: ``train.steps``).

    Args:
        config: a configuration.
        flags: the command-line flag that gave each key (``{"arms": "--arms"}``), named
            in messages instead of ``compare.KEY``.

    Raises:
        ValueError: an unknown key, a value of the wrong type, an unknown or repeated arm,
            an arm list without ``standard`` or with it alone, ``weighted-tuned`` without
            a tuned density or a tuned density without that arm, a bad learning rate
            (the message names the flag or key).
    """
    flags = dict(flags or {})

    def name(key: str) -> str:
        return flags.get(key, f"compare.{key}")

    try:
        table = check_section(config, "compare", COMPARE_SCHEMA)
    except ValueError as err:
        for key, flag in flags.items():  # name the flag that gave a mistyped value
            if f"compare.{key} " in f"{err} ":
                raise ValueError(str(err).replace(f"config key compare.{key}", flag)) from None
        raise
    seeds = table.get("seeds", 1)
    if seeds < 1:
        raise ValueError(f"{name('seeds')} must be an integer ≥ 1, got {seeds!r}")
    arms = table.get("arms", list(DEFAULT_ARMS))
    for arm in arms:
        if arm not in ARMS:
            raise ValueError(f"{name('arms')}: unknown arm {arm!r} (known: {', '.join(ARMS)})")
    if len(set(arms)) != len(arms):
        raise ValueError(f"{name('arms')}: an arm is given twice ({', '.join(arms)})")
    if "standard" not in arms or len(arms) < 2:
        raise ValueError(
            f"{name('arms')} must hold 'standard' (every arm is compared with it) and at "
            f"least one other arm, got {', '.join(arms) or 'none'}"
        )
    tuned = table.get("tuned")
    if "weighted-tuned" in arms and tuned is None:
        raise ValueError(
            f"{name('arms')} holds weighted-tuned but no tuned density is given: give "
            "--tuned PATH_OR_SPEC (compare.tuned), a density file or spec"
        )
    if tuned is not None:
        if "weighted-tuned" not in arms:
            raise ValueError(
                f"{name('tuned')} is given but the arms ({name('arms')}: {', '.join(arms)}) "
                "do not hold weighted-tuned: add it (e.g. --arms standard,weighted,weighted-tuned)"
            )
        tuned = _tuned(tuned, name("tuned"))
    rates = table.get("lr_sweep")
    if rates is not None:
        rates = _rates(rates, name("lr_sweep"))
    sweep_steps = table.get("sweep_steps")
    if sweep_steps is not None:
        if sweep_steps < 1:
            raise ValueError(f"{name('sweep_steps')} must be ≥ 1, got {sweep_steps}")
        if rates is None:
            raise ValueError(
                f"{name('sweep_steps')} is given without a learning-rate sweep ({name('lr_sweep')})"
            )
    return {
        "seeds": seeds,
        "arms": tuple(arms),
        "tuned": tuned,
        "lr_sweep": rates,
        "sweep_steps": sweep_steps,
    }


def make_arms(settings: Mapping[str, Any]) -> list[Arm]:
    """The arms ``compare_settings`` chose, in their order."""
    made = []
    for arm in settings["arms"]:
        if arm == "standard-phi-init":
            made.append(Arm(arm, "standard", ARM_HELP[arm], init=_phi_init))
        elif arm == "weighted-tuned":
            if settings.get("tuned") is None:
                raise ValueError(
                    "the weighted-tuned arm needs a tuned density (--tuned, compare.tuned)"
                )
            settings_ = {"weighted.density": settings["tuned"]}
            made.append(Arm(arm, "weighted", ARM_HELP[arm], settings=settings_))
        else:
            made.append(Arm(arm, arm, ARM_HELP[arm]))
    return made


def arm_task(entry: Any, arm: Arm, config: Mapping[str, Any], data: Any) -> Any:
    """The task of ``arm`` for ``config`` (already ``arm.configure``-d): the entry's task
    of the arm's method, whose ``build_model`` applies the arm's model change.

    For ``standard-phi-init`` the reference is the weighted task of the same configuration
    and data (made when the model is built, under a fork of the RNG), so its densities are
    exactly the weighted arm's, physical units resolved against the data's spacing.
    """
    task = entry.make(config, arm.method, data)
    if arm.init is None:
        return task
    build, describe = task.build_model, task.describe
    init = arm.init
    # recorded in checkpoints, so that a run of another arm never resumes as this one
    changed = {"arm": arm.name, "density": config.get("weighted", {}).get("density")}

    def reference(method: str) -> nn.Module:
        with torch.random.fork_rng():
            other = entry.make(config, method, data)
            return other.build_model()

    def build_model() -> nn.Module:
        return init(build(), reference)

    def described() -> dict[str, Any]:
        return {**describe(), "init": changed}

    task.build_model = build_model
    task.describe = described
    return task


def arm_model(entry: Any, arm: Arm, config: Mapping[str, Any]) -> nn.Module:
    """The model of ``arm`` built without data (``entry.build_model``), for checks."""
    cfg = arm.configure(config)
    model = entry.build_model(cfg, arm.method)
    if arm.init is not None:
        model = arm.init(model, lambda method: entry.build_model(cfg, method))
    return model
