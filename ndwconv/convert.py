"""Model surgery: make a network weighted, bake densities in, freeze learned ones.

* ``convert`` swaps ``nn.Conv1d/2d/3d`` for their weighted versions, keeping the very
  same parameter tensors (so optimizers, hooks and tied weights keep working).
* ``fold`` does the reverse: plain ``nn.ConvNd`` layers with ``W ⊙ Φ`` baked into the
  weight — identical outputs, no ndwconv needed at run time, exportable.
* ``freeze`` turns ``Learned`` densities into fixed ``Table`` densities (learn-then-freeze).
* ``param_groups`` separates learned-density parameters for their own learning rate.
* ``init_from_density`` keeps the layers plain and only scales their initial kernels by
  Φ: the same initial function as ``convert``, the plain parameterisation for training.

``convert``, ``fold``, ``freeze`` and ``init_from_density`` share one convention: by
default they return a modified deep copy and leave the model untouched; ``inplace=True``
modifies the model itself and returns it.
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import math
import numbers
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .density import (
    Density,
    DensityFile,
    DensityLike,
    LearnedPhi,
    Ones,
    as_density,
    is_density_file,
    load_densities,
)
from .density.bound import DensityRangeError
from .modules import WEIGHTED_BY_PLAIN, _bind_density, _WeightedMixin, is_weighted

__all__ = [
    "ConversionReport",
    "InferenceModel",
    "Replacement",
    "convert",
    "fold",
    "for_inference",
    "freeze",
    "fuse_batchnorm",
    "init_from_density",
    "param_groups",
    "weighted_layers",
]

Where = None | str | Iterable[str] | Callable[[str, nn.Module], bool]


@dataclass(frozen=True)
class Replacement:
    """One layer considered by ``convert``/``fold``: what it was and what it became.

    A skipped layer has ``after`` set to ``None`` and says why in ``reason``; ``density``
    is the spec of the density that was bound (or, for a layer it does not fit, that was
    tried), ``None`` where no density was chosen.
    """

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
    """The layers ``convert`` or ``fold`` replaced (and skipped, with the reason).

    One entry per layer considered, in model order: the order of ``named_modules()``,
    with a layer used in several places listed once, at its first name.
    """

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
    try:
        patterns = [where] if isinstance(where, str) else list(where)
    except TypeError:  # not iterable: fall through to the message below
        patterns = [where]
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


def _target(model: nn.Module, inplace: bool) -> nn.Module:
    """``model`` itself or a deep copy of it, after checking both arguments."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be True or False, got {inplace!r}")
    return model if inplace else copy.deepcopy(model)


def _family_for(
    choose: Callable[[str, nn.Module], DensityLike] | None,
    fixed: Density | None,
    name: str,
    module: nn.Module,
    caller: str,
) -> Density | None:
    """The density of one selected layer: ``fixed``, or what ``choose`` returns for it
    (``None``: leave the layer alone); a callable's bad answer is an error naming the
    layer and ``caller``."""
    if choose is None:
        assert fixed is not None
        return fixed
    chosen = choose(name, module)
    if chosen is None:
        return None
    try:
        return as_density(chosen)
    except (ValueError, TypeError) as err:
        raise type(err)(
            f"{caller}: the density callable returned {chosen!r} for layer "
            f"{name or '<root>'!r}: {err}"
        ) from None


def convert(
    model: nn.Module,
    density: DensityLike | Callable[[str, nn.Module], DensityLike] = None,
    where: Where = None,
    *,
    inplace: bool = False,
    strict: bool = False,
    include_pointwise: bool = False,
    return_report: bool = False,
) -> nn.Module | tuple[nn.Module, ConversionReport]:
    """Make ``nn.Conv1d/2d/3d`` layers weighted, keeping everything else about them.

    Only layers whose type is exactly ``nn.Conv1d/2d/3d`` are converted. Each layer
    *becomes* its weighted version (its class is switched and a density bound to it), so
    its parameters, hooks, custom attributes, device, dtype and train/eval mode are
    untouched — with ``inplace=True`` optimizers built before keep working — and a layer
    used in several places stays one layer. The global RNG is not touched.

    Selected layers are skipped, and listed in the report with the reason, when they are
    a subclass of a conv layer (it may have its own ``forward``), pointwise (a density
    cannot change a 1×1 kernel; see ``include_pointwise``), given ``None`` by a density
    callable, or of a kernel the density cannot describe (an even 4×4 kernel for a
    ``Table``, a 9×9 kernel for ``Table.default()``): the reason then holds the density's
    own error. With ``strict=True`` that last case raises instead. Every density is bound
    before any layer changes, so an error leaves ``model`` as it was.

    Args:
        model: the network (or a single conv layer).
        density: a density (anything ``as_density`` takes; default ``Table.default()``), a
            callable ``(name, conv) -> density`` choosing one per layer (``None`` skips),
            or a density file (its path, ``*.json``, or a ``DensityFile``: each layer gets
            its own density there, else the shared one; see ``ndwconv.density.file``).
        where: which layers: ``None`` (all), a glob on qualified names (``"features.*"``), a
            list of globs, or a callable ``(name, conv) -> bool``.
        inplace: modify ``model`` itself instead of returning a modified deep copy.
        strict: raise, naming every such layer, when the density cannot describe a
            selected layer's kernel, instead of skipping it.
        include_pointwise: also convert layers whose kernel is 1 in every axis.
        return_report: also return a ``ConversionReport`` of what was replaced and skipped,
            in model order (``named_modules()``).

    Returns:
        The converted model (``model`` itself when ``inplace``), and the report if asked.

    Raises:
        ValueError: with ``strict=True``, a density that cannot describe some layers (the
            message names every one of them, with the density's reason).
        DensityRangeError: (a ``ValueError``) a density's Φ overflows or underflows to
            zero in a selected layer's dtype (the message names the layer).
        TypeError: ``model`` is not a module, ``where`` is malformed, a density callable
            returned something that is not a density, or a family's ``bind`` did not
            return a module (the message names the layer).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 4))
        >>> wnet, report = convert(net, "default", return_report=True)
        >>> [type(m).__name__ for m in wnet]
        ['WeightedConv2d', 'ReLU', 'Conv2d']
        >>> print(report.skipped[0].reason.split(":")[0])
        density default cannot describe this kernel
    """
    if is_density_file(density) and not isinstance(density, DensityFile):
        density = load_densities(density)  # type: ignore[arg-type]
    choose = density if callable(density) and not isinstance(density, type) else None
    fixed = None if choose is not None else as_density(density)
    select = _selector(where)
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False, got {strict!r}")
    target = _target(model, inplace)
    # One entry per selected layer, in model order: a Replacement for a skipped layer, or
    # (name, layer, family, bound density) for one to convert once every layer is bound.
    plan: list[Replacement | tuple[str, nn.Module, Density, nn.Module]] = []
    unfit: list[tuple[str, str]] = []
    for name, module in _unique_modules(target):
        if is_weighted(module) or not isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            continue
        if not select(name, module):
            continue
        ks = tuple(module.kernel_size)
        kind = type(module).__name__
        if type(module) not in WEIGHTED_BY_PLAIN:
            plan.append(Replacement(name, kind, None, ks, None, "subclass of a conv layer"))
            continue
        if not include_pointwise and all(k == 1 for k in ks):
            plan.append(Replacement(name, kind, None, ks, None, "pointwise kernel"))
            continue
        fam = _family_for(choose, fixed, name, module, "convert")
        if fam is None:
            plan.append(Replacement(name, kind, None, ks, None, "density callable returned None"))
            continue
        try:
            bound = _bind_density(fam, module)
        except DensityRangeError as err:  # the kernel fits; the layer's dtype does not
            raise DensityRangeError(
                f"convert: layer {name or '<root>'!r} ({kind}): {err}"
            ) from None
        except ValueError as err:
            reason = f"density {fam!s} cannot describe this kernel: {err}"
            plan.append(Replacement(name, kind, None, ks, str(fam), reason))
            unfit.append((f"{kind}, kernel {ks}, density {fam!s}: {err}", name or "<root>"))
            continue
        except TypeError as err:
            raise TypeError(
                f"convert: layer {name or '<root>'!r} ({kind}, kernel {ks}): {err}"
            ) from None
        plan.append((name, module, fam, bound))
    if strict and unfit:
        by_reason: dict[str, list[str]] = {}
        for why, layer in unfit:  # one line per distinct reason, listing its layers
            by_reason.setdefault(why, []).append(repr(layer))
        raise ValueError(
            f"convert(strict=True): the density cannot describe {len(unfit)} selected "
            "layer(s); skip them with where=… or strict=False:\n  "
            + "\n  ".join(f"layer(s) {', '.join(n)} ({why})" for why, n in by_reason.items())
        )
    report = ConversionReport()
    for entry in plan:
        if isinstance(entry, Replacement):
            report.append(entry)
            continue
        name, module, fam, bound = entry
        kind = type(module).__name__
        module.__class__ = WEIGHTED_BY_PLAIN[type(module)]
        module._attach(fam, bound)  # type: ignore[attr-defined]
        report.append(
            Replacement(
                name,
                kind,
                type(module).__name__,
                tuple(module.kernel_size),
                str(module.density),  # type: ignore[attr-defined]
            )
        )
    return (target, report) if return_report else target


def init_from_density(
    model: nn.Module,
    density: DensityLike | Callable[[str, nn.Module], DensityLike],
    where: Where = None,
    *,
    inplace: bool = False,
) -> nn.Module:
    """Scale the kernels of plain ``nn.Conv1d/2d/3d`` layers by Φ; nothing else changes.

    Each selected layer's weight becomes ``W ⊙ Φ``, with Φ built for the layer's kernel
    size, dilation, dtype and device exactly as ``convert`` would bind it. The layers stay
    plain: same class, no new parameters or buffers, the same ``state_dict`` keys and no
    cost at run time. Applied to a freshly built model it gives the *same initial
    function* as ``convert(model, density, where)`` — outputs equal up to float rounding
    (bit for bit in the weight's dtype) — with the plain parameterisation: training then
    updates ``W ⊙ Φ`` directly instead of ``W`` behind a fixed Φ, which separates the
    effect of the initial function from that of the reparameterised training.

    Layers are chosen as by ``convert``: only those whose type is exactly
    ``nn.Conv1d/2d/3d`` (subclasses, transposed and weighted convolutions are left alone),
    selected by ``where``, and not pointwise (Φ of a 1×1 kernel is 1). A weight shared by
    several selected layers is scaled once. The weight is changed in place under
    ``torch.no_grad()``: with ``inplace=True`` it is the very ``Parameter`` an optimizer
    already holds (its version counter moves, so a graph that saved it refuses to
    backpropagate rather than use stale values). The global RNG is not touched.

    Args:
        model: the network (or a single conv layer).
        density: a density (anything ``as_density`` takes: a spec such as ``"default"``,
            a ``Density``) or a callable ``(name, conv) -> density`` choosing one per layer
            (``None`` leaves that layer as it is). A ``Learned`` density scales by its
            initial values.
        where: which layers: ``None`` (all), a glob on qualified names (``"features.*"``), a
            list of globs, or a callable ``(name, conv) -> bool``.
        inplace: modify ``model`` itself instead of returning a modified deep copy.

    Returns:
        The model with scaled kernels (``model`` itself when ``inplace``).

    Raises:
        ValueError: the density cannot describe a selected layer's kernel (an even kernel
            for a ``Table``, a 9×9 kernel for ``Table.default()``), or a shared weight
            would need two different Φ; the message names the layer. Every Φ is built
            before any weight changes, so an error leaves ``model`` as it was.
        DensityRangeError: (a ``ValueError``) Φ overflows or underflows to zero in a
            selected layer's dtype (the message names the layer).
        TypeError: ``model`` is not a module, ``where`` is malformed, or a density
            callable returned something that is not a density (the message names the
            layer).

    Example:
        >>> torch.manual_seed(0) and None
        >>> net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Conv1d(2, 1, 1))
        >>> scaled = init_from_density(net, "table:0.5")
        >>> type(scaled[0]).__name__, sorted(scaled.state_dict()) == sorted(net.state_dict())
        ('Conv1d', True)
        >>> (scaled[0].weight / net[0].weight)[0, 0]
        tensor([0.5000, 1.0000, 0.5000], grad_fn=<SelectBackward0>)
        >>> x = torch.randn(1, 1, 8)
        >>> torch.allclose(scaled(x), convert(net, "table:0.5")(x))
        True
    """
    choose = density if callable(density) and not isinstance(density, type) else None
    fixed = None if choose is not None else as_density(density)
    select = _selector(where)
    target = _target(model, inplace)
    # (name, layer, Φ in the weight's dtype) per layer to scale, all built before any change
    plan: list[tuple[str, nn.Module, torch.Tensor]] = []
    by_weight: dict[int, tuple[str, torch.Tensor]] = {}
    for name, module in _unique_modules(target):
        if type(module) not in WEIGHTED_BY_PLAIN or not select(name, module):
            continue
        ks = tuple(module.kernel_size)
        if all(k == 1 for k in ks):
            continue
        layer = name or "<root>"
        kind = type(module).__name__
        fam = _family_for(choose, fixed, name, module, "init_from_density")
        if fam is None:
            continue
        try:
            bound = _bind_density(fam, module)
        except DensityRangeError as err:
            raise DensityRangeError(f"init_from_density: layer {layer!r} ({kind}): {err}") from None
        except ValueError as err:
            raise ValueError(
                f"init_from_density: density {fam!s} cannot describe layer {layer!r} ({kind}, "
                f"kernel {ks}): {err}; leave it out with where=…"
            ) from None
        except TypeError as err:
            raise TypeError(
                f"init_from_density: layer {layer!r} ({kind}, kernel {ks}): {err}"
            ) from None
        with torch.no_grad():
            phi = bound().detach().to(module.weight.dtype)
        seen = by_weight.get(id(module.weight))
        if seen is not None:  # a weight shared with an earlier layer: scale it once
            if not torch.equal(seen[1], phi):
                raise ValueError(
                    f"init_from_density: layers {seen[0]!r} and {layer!r} share one weight "
                    "but would be scaled by different densities"
                )
            continue
        by_weight[id(module.weight)] = (layer, phi)
        plan.append((layer, module, phi))
    with torch.no_grad():
        for _, module, phi in plan:
            module.weight.mul_(phi)
    return target


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
    ``nn.Conv{1,2,3}d`` whose weight is ``W ⊙ Φ`` (a new, detached parameter with the
    same ``requires_grad``; the bias is kept) and that holds nothing from ndwconv: no
    ``phi`` submodule, no density or cache attributes. Outputs are identical up to float
    rounding and the result needs no ndwconv to run, trace or export. ``WeightedConvNd``
    with ndim ≥ 4 has no ``nn`` counterpart: it stays a ``WeightedConvNd`` with the baked
    weight and ``Ones`` density. Only densities are folded: BatchNorm and every other
    layer are left untouched (fold does not fuse BatchNorm), and train/eval mode and hooks
    are kept.

    Args:
        model: the network (or a single weighted layer).
        inplace: modify ``model`` itself instead of returning a modified deep copy.
        return_report: also return a ``ConversionReport`` of the folded layers.

    Returns:
        The folded model (``model`` itself when ``inplace``), and the report if asked.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.

    Example:
        >>> from ndwconv import WeightedConv2d
        >>> net = nn.Sequential(WeightedConv2d(1, 2, 3, density=[0.5])).eval()
        >>> x = torch.randn(1, 1, 5, 5)
        >>> torch.allclose(fold(net)(x), net(x))
        True
    """
    target = _target(model, inplace)
    plain_by_ndim = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
    report = ConversionReport()
    for name, layer in list(weighted_layers(target)):
        ks = tuple(layer.kernel_size)
        before, spec = type(layer).__name__, str(layer.density)
        with torch.no_grad():
            baked = (layer.weight * layer.phi().to(layer.weight.dtype)).detach().clone()
        requires_grad = layer.weight.requires_grad
        if len(ks) in plain_by_ndim:
            layer._detach_density()
            layer.__class__ = plain_by_ndim[len(ks)]
        else:
            layer.set_density(Ones())
        layer.weight = nn.Parameter(baked, requires_grad=requires_grad)
        report.append(Replacement(name, before, type(layer).__name__, ks, spec))
    return (target, report) if return_report else target


def fuse_batchnorm(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fold each eval-mode BatchNorm into the convolution just before it, for inference.

    Inside every ``nn.Sequential``, a convolution (``nn.Conv1d/2d/3d``, a weighted layer,
    ``WeightedConvNd``; not transposed) directly followed by a ``BatchNorm{1,2,3}d`` with
    running statistics becomes one convolution: with ``s = γ / √(running_var + eps)``
    per output channel, the weight is ``W · s`` (for a weighted layer ``(W · s) ⊙ Φ =
    (W ⊙ Φ) · s``) and the bias ``(b − running_mean) · s + β``; the BatchNorm is replaced
    by ``nn.Identity``. Outputs in eval mode are unchanged up to float rounding, and each
    fused pair costs one convolution instead of a convolution and a normalisation. Use
    it after :func:`fold` to serve a trained network; do not train the result (the
    normalisation is gone).

    Args:
        model: the network, in eval mode.
        inplace: modify ``model`` itself instead of returning a modified deep copy.

    Returns:
        The fused model (``model`` itself when ``inplace``).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: a BatchNorm that would be fused is in training mode, or has no
            running statistics (its output depends on the batch).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
        >>> _ = net[1].running_mean.uniform_(), net[1].running_var.uniform_(0.5, 2)
        >>> x = torch.randn(2, 1, 8, 8)
        >>> fused = fuse_batchnorm(net)
        >>> type(fused[1]).__name__, torch.allclose(fused(x), net(x), atol=1e-6)
        ('Identity', True)
    """
    target = _target(model, inplace)
    for name, seq in target.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        keys = list(seq._modules)
        for first, second in itertools.pairwise(keys):
            conv, norm = seq._modules[first], seq._modules[second]
            if not _fusable(conv, norm):
                continue
            where = f"{name}.{second}" if name else second
            if norm.training:
                raise ValueError(
                    f"{where}: the BatchNorm is in training mode; call model.eval() before "
                    "fusing (fusion uses the running statistics)"
                )
            if norm.running_mean is None or norm.running_var is None:
                raise ValueError(
                    f"{where}: the BatchNorm has no running statistics "
                    "(track_running_stats=False), so it cannot be folded into a convolution"
                )
            with torch.no_grad():
                scale = norm.running_var.double().add(norm.eps).rsqrt()
                if norm.weight is not None:
                    scale = scale * norm.weight.double()
                shift = -norm.running_mean.double() * scale
                if norm.bias is not None:
                    shift = shift + norm.bias.double()
                if conv.bias is not None:
                    shift = shift + conv.bias.double() * scale
                shape = (-1,) + (1,) * (conv.weight.dim() - 1)
                weight = conv.weight.double() * scale.reshape(shape)
                conv.weight.copy_(weight.to(conv.weight.dtype))
                bias = shift.to(conv.weight.dtype)
            if conv.bias is None:
                conv.bias = nn.Parameter(bias, requires_grad=conv.weight.requires_grad)
            else:
                with torch.no_grad():
                    conv.bias.copy_(bias)
            if is_weighted(conv):
                conv.invalidate_cache()
            seq._modules[second] = nn.Identity()
    return target


def _fusable(conv: nn.Module, norm: nn.Module) -> bool:
    """A (convolution, BatchNorm) pair ``fuse_batchnorm`` folds: a non-transposed
    convolution whose output channels the BatchNorm normalises."""
    if not isinstance(norm, nn.modules.batchnorm._BatchNorm):
        return False
    if not isinstance(conv, nn.modules.conv._ConvNd) and not is_weighted(conv):
        return False
    if getattr(conv, "transposed", False):
        return False
    return conv.weight.shape[0] == norm.num_features


_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


class InferenceModel(nn.Module):
    """A network prepared for inference by :func:`for_inference`.

    Calls the prepared network on the input converted to the channels-last memory format
    (4-D and 5-D inputs, when ``channels_last`` is set) and returns a contiguous
    tensor, so that callers see the same layout they would get from the original
    network. ``module`` is the folded and fused network.
    """

    def __init__(self, module: nn.Module, channels_last: bool, compiled: bool):
        super().__init__()
        self.module = module
        self.channels_last = channels_last
        self.compiled = compiled
        # kept out of the submodules (the compiled wrapper shares ``module``'s parameters,
        # which would otherwise appear twice in ``state_dict`` and the repr)
        self.__dict__["_compiled"] = torch.compile(module) if compiled else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() in _CHANNELS_LAST:
            x = x.contiguous(memory_format=_CHANNELS_LAST[x.dim()])
        compiled = self.__dict__["_compiled"]
        return (self.module if compiled is None else compiled)(x).contiguous()

    def extra_repr(self) -> str:
        return f"channels_last={self.channels_last}, compiled={self.compiled}"


def for_inference(
    model: nn.Module, *, channels_last: bool = True, compile: bool = False
) -> InferenceModel:
    """A copy of a trained network made fast for inference, with the same outputs.

    The steps, each exact up to float rounding:

    1. :func:`fold`: every weighted layer becomes a plain convolution with weight
       ``W ⊙ Φ`` (no density left to apply);
    2. :func:`fuse_batchnorm`: each BatchNorm right after a convolution is folded into
       it (one pass over the feature map instead of two);
    3. ``channels_last`` (default on): the 2-D and 3-D convolution weights and each
       4-D/5-D input use the channels-last memory format, for which oneDNN's CPU
       convolutions are markedly faster (about 2× on the shipped 2-D and 3-D DnCNNs on
       2 CPU cores; see the documentation's benchmarks); the output is returned
       contiguous;
    4. ``compile`` (default off): ``torch.compile`` on the result. Its first call
       compiles (seconds) and needs a C++ compiler; on the shipped 3-D DnCNN on CPU it
       was no faster than step 3, so it is opt-in.

    The original ``model`` is not modified. Do not train the result.

    Args:
        model: the trained network, in eval mode (a BatchNorm in training mode is refused
            by :func:`fuse_batchnorm`).
        channels_last: use the channels-last memory format for 4-D and 5-D tensors.
        compile: wrap the prepared network in ``torch.compile``.

    Returns:
        An :class:`InferenceModel` in eval mode; its ``module`` is the prepared network.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, or a flag is not a bool.
        ValueError: as :func:`fuse_batchnorm`.

    Example:
        >>> from ndwconv import WeightedConv2d
        >>> net = nn.Sequential(WeightedConv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4))
        >>> net = net.eval()
        >>> x = torch.randn(2, 1, 16, 16)
        >>> fast = for_inference(net)
        >>> torch.allclose(fast(x), net(x), atol=1e-6), fast(x).is_contiguous()
        (True, True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for name, flag in (("channels_last", channels_last), ("compile", compile)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    module = fuse_batchnorm(fold(model), inplace=True).eval()
    if channels_last:
        with torch.no_grad():
            for param in module.parameters():
                if param.dim() in _CHANNELS_LAST:
                    param.data = param.data.contiguous(memory_format=_CHANNELS_LAST[param.dim()])
    return InferenceModel(module, channels_last, compile).eval()


def freeze(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Turn every ``Learned`` density into a fixed ``Table`` of its current values.

    Φ is unchanged (outputs are identical); the density parameters disappear from the
    model's parameters and ``state_dict`` (build a new optimizer to keep training). Layers
    with fixed densities are not touched.

    Args:
        model: the network (or a single weighted layer).
        inplace: modify ``model`` itself instead of returning a modified deep copy.

    Returns:
        The frozen model (``model`` itself when ``inplace``).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.

    Example:
        >>> from ndwconv import Learned, WeightedConv1d
        >>> layer = WeightedConv1d(1, 1, 3, density=Learned([0.7]))
        >>> sorted(freeze(layer).state_dict()), sorted(layer.state_dict())
        (['bias', 'weight'], ['bias', 'phi.log_half.0', 'weight'])
    """
    target = _target(model, inplace)
    for _, layer in weighted_layers(target):
        if isinstance(layer.phi, LearnedPhi):
            layer.set_density(layer.phi.frozen())
    return target


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
