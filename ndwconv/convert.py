"""Model surgery: make a network weighted, bake densities in, freeze learned ones.

* ``convert`` swaps ``nn.Conv1d/2d/3d`` for their weighted versions, keeping the very
  same parameter tensors (so optimizers, hooks and tied weights keep working).
* ``fold`` does the reverse: plain ``nn.ConvNd`` layers with ``W ⊙ Φ`` baked into the
  weight — identical outputs, no ndwconv needed at run time, exportable.
* ``freeze`` turns ``Learned`` densities into fixed ``Table`` densities (learn-then-freeze).
* ``param_groups`` separates learned-density parameters for their own learning rate.
"""

from __future__ import annotations

import copy
import fnmatch
import math
import numbers
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .density import DensityLike, LearnedPhi, Ones, as_density
from .modules import WEIGHTED_BY_PLAIN, _WeightedMixin, is_weighted

__all__ = [
    "ConversionReport",
    "Replacement",
    "convert",
    "fold",
    "freeze",
    "param_groups",
    "weighted_layers",
]

Where = None | str | Iterable[str] | Callable[[str, nn.Module], bool]


@dataclass(frozen=True)
class Replacement:
    """One layer considered by ``convert``/``fold``: what it was and what it became."""

    name: str
    before: str
    after: str | None
    kernel_size: tuple[int, ...]
    density: str | None
    reason: str = ""

    @property
    def replaced(self) -> bool:
        return self.after is not None


class ConversionReport(list[Replacement]):
    """The layers ``convert`` or ``fold`` replaced (and skipped, with the reason)."""

    @property
    def replaced(self) -> list[Replacement]:
        return [r for r in self if r.replaced]

    @property
    def skipped(self) -> list[Replacement]:
        return [r for r in self if not r.replaced]

    def __str__(self) -> str:
        rows = [("layer", "before", "after", "kernel", "density / reason")]
        for r in self:
            note = r.density if r.replaced else f"skipped: {r.reason}"
            rows.append(
                (
                    r.name or "<root>",
                    r.before,
                    r.after or "-",
                    "×".join(map(str, r.kernel_size)),
                    note or "",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
            for row in rows
        ]
        lines.append(f"{len(self.replaced)} replaced, {len(self.skipped)} skipped")
        return "\n".join(lines)


def _selector(where: Where) -> Callable[[str, nn.Module], bool]:
    if where is None:
        return lambda name, module: True
    if callable(where):
        return where
    patterns = [where] if isinstance(where, str) else list(where)
    if not all(isinstance(p, str) for p in patterns):
        raise TypeError(
            "where must be None, a glob on layer names (str), a list of globs, or a callable "
            f"(name, module) -> bool; got {where!r}"
        )
    return lambda name, module: any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _unique_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, module)`` once per module object, also when it is used in several places."""
    seen: set[int] = set()
    for name, module in model.named_modules(remove_duplicate=False):
        if id(module) not in seen:
            seen.add(id(module))
            yield name, module


def convert(
    model: nn.Module,
    density: DensityLike | Callable[[str, nn.Module], DensityLike] = None,
    where: Where = None,
    *,
    inplace: bool = False,
    include_pointwise: bool = False,
    return_report: bool = False,
) -> nn.Module | tuple[nn.Module, ConversionReport]:
    """Make ``nn.Conv1d/2d/3d`` layers weighted, keeping everything else about them.

    Only layers whose type is exactly ``nn.Conv1d/2d/3d`` are converted (subclasses with
    their own ``forward`` are reported as skipped); by default 1×1 (pointwise) kernels are
    skipped too, since a density cannot change them. Each layer *becomes* its weighted
    version (its class is switched and a density bound to it), so its parameters, hooks,
    custom attributes, device, dtype and train/eval mode are untouched — with
    ``inplace=True`` optimizers built before keep working — and a layer used in several
    places stays one layer. The global RNG is not touched. Every density is bound before
    any layer changes, so a density that does not fit some layer raises (naming it) and
    leaves the model as it was.

    Args:
        model: the network (or a single conv layer).
        density: a density (anything ``as_density`` takes; default ``Table.default()``) or a
            callable ``(name, conv) -> density`` choosing one per layer (``None`` skips).
        where: which layers: ``None`` (all), a glob on qualified names (``"features.*"``), a
            list of globs, or a callable ``(name, conv) -> bool``.
        inplace: modify ``model`` itself instead of a deep copy.
        include_pointwise: also convert layers whose kernel is 1 in every axis.
        return_report: also return a ``ConversionReport`` of what was replaced.

    Returns:
        The converted model (``model`` itself when ``inplace``), and the report if asked.

    Raises:
        ValueError/TypeError: a density that does not fit a layer (the message names it).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1))
        >>> wnet, report = convert(net, "default", return_report=True)
        >>> [type(m).__name__ for m in wnet]
        ['WeightedConv2d', 'ReLU', 'Conv2d']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    choose = density if callable(density) and not isinstance(density, type) else None
    fixed = None if choose is not None else as_density(density)
    select = _selector(where)
    target = model if inplace else copy.deepcopy(model)
    report = ConversionReport()
    plan = []
    for name, module in _unique_modules(target):
        if is_weighted(module) or not isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            continue
        if not select(name, module):
            continue
        ks = tuple(module.kernel_size)
        kind = type(module).__name__
        if type(module) not in WEIGHTED_BY_PLAIN:
            report.append(Replacement(name, kind, None, ks, None, "subclass of a conv layer"))
            continue
        if not include_pointwise and all(k == 1 for k in ks):
            report.append(Replacement(name, kind, None, ks, None, "pointwise kernel"))
            continue
        if choose is not None:
            chosen = choose(name, module)
            if chosen is None:
                report.append(
                    Replacement(name, kind, None, ks, None, "density callable returned None")
                )
                continue
            fam = as_density(chosen)
        else:
            fam = fixed
        try:
            phi = fam.bind(
                ks, module.dilation, dtype=module.weight.dtype, device=module.weight.device
            )
        except (ValueError, TypeError) as err:
            raise type(err)(
                f"convert: layer {name or '<root>'!r} ({kind}, kernel {ks}): {err}"
            ) from None
        plan.append((name, module, phi, fam))
    for name, module, phi, fam in plan:
        kind = type(module).__name__
        module.__class__ = WEIGHTED_BY_PLAIN[type(module)]
        module.phi = phi
        module._density_family = fam
        module.invalidate_cache()
        report.append(
            Replacement(
                name, kind, type(module).__name__, tuple(module.kernel_size), str(module.density)
            )
        )
    return (target, report) if return_report else target


def weighted_layers(model: nn.Module) -> Iterator[tuple[str, _WeightedMixin]]:
    """``(name, layer)`` for every weighted convolution in ``model`` (each layer once)."""
    for name, module in _unique_modules(model):
        if is_weighted(module):
            yield name, module  # type: ignore[misc]


def fold(
    model: nn.Module, *, inplace: bool = False, return_report: bool = False
) -> nn.Module | tuple[nn.Module, ConversionReport]:
    """Bake every density into its kernel: weighted layers → plain ``nn.ConvNd``.

    Each ``WeightedConv{1,2,3}d`` (and ``WeightedConvNd`` with ndim ≤ 3) becomes an
    ``nn.Conv{1,2,3}d`` whose weight is ``W ⊙ Φ`` (a new, detached parameter; the bias is
    kept); outputs are identical up to float rounding and the result needs no ndwconv to
    run, trace or export. ``WeightedConvNd`` with ndim ≥ 4 has no ``nn`` counterpart: it
    stays a ``WeightedConvNd`` with the baked weight and ``Ones`` density. Only densities
    are folded: BatchNorm and every other layer are left untouched (fold does not fuse
    BatchNorm), and train/eval mode and hooks are kept.

    Example:
        >>> from ndwconv import WeightedConv2d
        >>> net = nn.Sequential(WeightedConv2d(1, 2, 3, density=[0.5])).eval()
        >>> x = torch.randn(1, 1, 5, 5)
        >>> torch.allclose(fold(net)(x), net(x))
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    plain_by_ndim = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
    target = model if inplace else copy.deepcopy(model)
    report = ConversionReport()
    for name, layer in list(weighted_layers(target)):
        ks = tuple(layer.kernel_size)
        before, spec = type(layer).__name__, str(layer.density)
        with torch.no_grad():
            baked = (layer.weight * layer.phi().to(layer.weight.dtype)).detach().clone()
        requires_grad = layer.weight.requires_grad
        if len(ks) in plain_by_ndim:
            del layer.phi
            layer.__dict__.pop("_cached_weight", None)
            layer.__dict__.pop("ndim", None)
            layer.__class__ = plain_by_ndim[len(ks)]
        else:
            layer.set_density(Ones())
        layer.weight = nn.Parameter(baked, requires_grad=requires_grad)
        report.append(Replacement(name, before, type(layer).__name__, ks, spec))
    return (target, report) if return_report else target


def freeze(model: nn.Module) -> nn.Module:
    """Turn every ``Learned`` density into a fixed ``Table`` of its current values, in place.

    Φ is unchanged (outputs are identical); the density parameters disappear from the
    model's parameters and ``state_dict``. Returns ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for _, layer in weighted_layers(model):
        if isinstance(layer.phi, LearnedPhi):
            layer.set_density(layer.phi.frozen())
    return model


def param_groups(
    model: nn.Module, density_lr: float, **density_options: Any
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: everything else, then learned-density parameters.

    The paper trains densities with their own optimizer settings; pass the result to one
    optimizer (``torch.optim.Adam(param_groups(model, density_lr=1e-3))``), or build two
    optimizers from the two groups. Extra keyword arguments (e.g. ``weight_decay=0``) go
    into the density group.

    Raises:
        ValueError: if ``density_lr`` is not a positive number.
    """
    if (
        not isinstance(density_lr, numbers.Real)
        or isinstance(density_lr, bool)
        or not math.isfinite(density_lr)
        or density_lr <= 0
    ):
        raise ValueError(f"density_lr must be a positive finite number, got {density_lr!r}")
    density_ids = set()
    density_params = []
    for _, layer in weighted_layers(model):
        for p in layer.phi.parameters():  # fixed densities have none
            if id(p) not in density_ids:
                density_ids.add(id(p))
                density_params.append(p)
    others = [p for p in model.parameters() if id(p) not in density_ids]
    return [
        {"params": others},
        {"params": density_params, "lr": float(density_lr), **density_options},
    ]
