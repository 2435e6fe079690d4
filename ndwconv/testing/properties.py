"""Property checks of convolution layers: ``check_*(factory, case)``, one property each.

Each check builds the layer with ``make_layer`` (the case's seeded weight and bias),
states its property in its docstring, and raises ``AssertionError`` with a readable
message naming the worst element and the case when it fails, or ``NotApplicable`` when
the property does not apply to the case.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..convert import fold
from ..density import Ones
from ..modules import is_weighted
from .cases import ConvCase
from .reference import reference_conv, reference_conv_transpose

__all__ = [
    "Factory",
    "NotApplicable",
    "assert_matches_reference",
    "check_adjointness",
    "check_dtype_device",
    "check_flip_symmetry",
    "check_fold_equivalence",
    "check_gradcheck",
    "check_linear_in_input",
    "check_linear_in_weight",
    "check_matches_reference",
    "check_ones_equals_conv",
    "check_state_dict_round_trip",
    "check_translation_equivariance",
    "make_layer",
]


Factory = Callable[..., nn.Module]


def _accepts(factory: Factory, name: str, via_kwargs: bool) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in params or (
        via_kwargs and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    )


def make_layer(
    factory: Factory, case: ConvCase, dtype: torch.dtype = torch.float64, **overrides: Any
) -> nn.Module:
    """``factory(**case.layer_kwargs)`` in ``dtype`` with the case's weight and bias.

    The layer is created in ``dtype`` when the factory takes ``dtype=`` (so learned
    values start at full precision) and converted with ``.to(dtype)`` in any case;
    ``ndim=case.ndim`` is passed to factories with an ``ndim`` parameter.
    """
    kwargs = {**case.layer_kwargs, **overrides}
    if _accepts(factory, "ndim", via_kwargs=False):
        kwargs["ndim"] = case.ndim
    if _accepts(factory, "dtype", via_kwargs=True):
        kwargs.setdefault("dtype", dtype)
    layer = factory(**kwargs).to(dtype)
    a = case.arrays
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(a["weight"]))
        if case.bias:
            layer.bias.copy_(torch.from_numpy(a["bias"]))
    return layer


def _tolerance(dtype: torch.dtype) -> tuple[float, float]:
    return {torch.float64: (1e-9, 1e-9), torch.float32: (1e-4, 1e-4)}.get(dtype, (2e-2, 2e-2))


def _assert_close(
    got: np.ndarray, want: np.ndarray, what: str, case: ConvCase, rtol: float, atol: float
) -> None:
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape}, expected {want.shape}\n  case: {case}")
    err = np.abs(got - want)
    bound = atol + rtol * np.abs(want)
    bad = err > bound
    if bad.any() or not np.isfinite(got).all():
        idx = np.unravel_index(
            int(np.argmax(np.where(np.isfinite(err), err - bound, np.inf))), err.shape
        )
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} values differ (rtol={rtol:g}, atol={atol:g}); "
            f"largest at index {tuple(int(i) for i in idx)}: "
            f"got {float(got[idx])!r}, expected {float(want[idx])!r}\n"
            f"  case: {case}"
        )


def _output(layer: nn.Module, x: torch.Tensor) -> np.ndarray:
    return layer(x).detach().double().cpu().numpy()


def assert_matches_reference(
    layer: nn.Module, case: ConvCase, rtol: float | None = None, atol: float | None = None
) -> None:
    """Assert ``layer(case.x)`` equals the float64 reference with the layer's own weights.

    The reference uses ``layer.weight`` and ``layer.bias`` as they are, Φ of
    ``case.density``, and the case's geometry; the tolerance follows the layer's dtype
    (float64: 1e-9, float32: 1e-4) unless given. The message names the worst element and
    the case.
    """
    w = layer.weight.detach()
    dtype = w.dtype
    default_rtol, default_atol = _tolerance(dtype)
    x = case.x(dtype=dtype, device=w.device)
    bias = None if layer.bias is None else layer.bias.detach().double().cpu().numpy()
    want = reference_conv(
        x.double().cpu().numpy(),
        w.double().cpu().numpy(),
        bias,
        phi=case.phi(),
        **case.functional_kwargs,
    )
    _assert_close(
        _output(layer, x),
        want,
        "output vs float64 reference",
        case,
        default_rtol if rtol is None else rtol,
        default_atol if atol is None else atol,
    )


# ---------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------


class NotApplicable(Exception):
    """Raised by a check when the property does not apply to this layer or case."""


def check_matches_reference(factory: Factory, case: ConvCase) -> None:
    """In float64 the layer equals ``reference_conv`` with ``W ⊙ Φ`` (to 1e-9)."""
    assert_matches_reference(make_layer(factory, case), case)


def check_ones_equals_conv(factory: Factory, case: ConvCase) -> None:
    """With density ≡ 1 the layer equals ``nn.Conv{N}d`` (N ≤ 3) or the reference (N ≥ 4)."""
    if not case.use_density:
        raise NotApplicable("the layer takes no density")
    ones = replace(case, density=Ones())
    layer = make_layer(factory, ones)
    if case.ndim <= 3:
        plain = getattr(nn, f"Conv{case.ndim}d")(**case.conv_kwargs, dtype=torch.float64)
        plain.load_state_dict(
            {
                "weight": layer.weight.detach(),
                **({"bias": layer.bias.detach()} if case.bias else {}),
            }
        )
        x = ones.x()
        _assert_close(
            _output(layer, x),
            _output(plain, x),
            f"density ≡ 1 vs nn.Conv{case.ndim}d",
            ones,
            1e-10,
            1e-10,
        )
    else:
        assert_matches_reference(layer, ones)


def _bias_free(layer: nn.Module, x: torch.Tensor) -> np.ndarray:
    """``layer(x) - layer(0)``: the linear part of an affine layer."""
    return _output(layer, x) - _output(layer, torch.zeros_like(x))


def check_linear_in_input(factory: Factory, case: ConvCase) -> None:
    """``L(a·x1 + b·x2) = a·L(x1) + b·L(x2)`` with ``L(x) = layer(x) - layer(0)``."""
    layer = make_layer(factory, case)
    rng = case.rng(1)
    x1 = case.x()
    x2 = torch.from_numpy(rng.standard_normal(case.input_shape))
    a, b = rng.uniform(-2, 2, size=2)
    _assert_close(
        _bias_free(layer, a * x1 + b * x2),
        a * _bias_free(layer, x1) + b * _bias_free(layer, x2),
        "linearity in the input",
        case,
        1e-9,
        1e-9,
    )


def check_linear_in_weight(factory: Factory, case: ConvCase) -> None:
    """``layer_{a·W1 + b·W2}(x) = a·layer_{W1}(x) + b·layer_{W2}(x)`` without bias."""
    rng = case.rng(2)
    w1 = case.arrays["weight"]
    w2 = rng.standard_normal(case.weight_shape)
    a, b = rng.uniform(-2, 2, size=2)
    x = case.x()
    outs = []
    for w in (w1, w2, a * w1 + b * w2):
        layer = make_layer(factory, case)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
        outs.append(_bias_free(layer, x))
    _assert_close(outs[2], a * outs[0] + b * outs[1], "linearity in the weight", case, 1e-9, 1e-9)


def check_translation_equivariance(factory: Factory, case: ConvCase) -> None:
    """With stride 1, circular padding and same-size output, shifting the input by an
    integer offset shifts the output by the same offset (``roll`` commutes with the layer).
    """
    if (
        case.padding_mode != "circular"
        or any(s != 1 for s in case.stride)
        or case.output_shape != (case.batch, case.out_channels, *case.spatial)
    ):
        raise NotApplicable("needs stride 1, circular padding and output size = input size")
    layer = make_layer(factory, case)
    rng = case.rng(3)
    shifts = tuple(int(rng.integers(-s, s + 1)) for s in case.spatial)
    dims = tuple(range(2, 2 + case.ndim))
    x = case.x()
    _assert_close(
        _output(layer, torch.roll(x, shifts, dims)),
        np.roll(_output(layer, x), shifts, dims),
        f"translation equivariance (shift {shifts})",
        case,
        1e-9,
        1e-9,
    )


def check_adjointness(factory: Factory, case: ConvCase) -> None:
    """``⟨L x, y⟩ = ⟨x, Lᵀ y⟩`` for the linear part ``L``, with ``Lᵀ`` the NumPy reference
    transpose, and the layer's input gradient (its backward pass) equals ``Lᵀ y``.
    """
    layer = make_layer(factory, case)
    x = case.x().requires_grad_(True)
    y = torch.from_numpy(case.rng(4).standard_normal(case.output_shape))
    out = layer(x)
    if tuple(out.shape) != case.output_shape:
        raise AssertionError(
            f"output shape {tuple(out.shape)}, expected {case.output_shape}\n  case: {case}"
        )
    lin = out - layer(torch.zeros_like(x)).detach()
    (grad,) = torch.autograd.grad((lin * y).sum(), x)
    lt_y = reference_conv_transpose(
        y.numpy(), case.arrays["weight"], case.spatial, phi=case.phi(), **case.functional_kwargs
    )
    lhs = float((lin.detach().numpy() * y.numpy()).sum())
    rhs = float((x.detach().numpy() * lt_y).sum())
    if not math.isclose(lhs, rhs, rel_tol=1e-9, abs_tol=1e-9):
        raise AssertionError(f"⟨Lx, y⟩ = {lhs!r} but ⟨x, Lᵀy⟩ = {rhs!r}\n  case: {case}")
    _assert_close(grad.numpy(), lt_y, "input gradient vs reference transpose", case, 1e-9, 1e-9)


def _symmetric_density(case: ConvCase) -> bool:
    phi = case.phi()
    return bool(np.allclose(phi, np.flip(phi), rtol=1e-12, atol=0.0))


def check_flip_symmetry(factory: Factory, case: ConvCase) -> None:
    """With a point-symmetric density, stride 1 and symmetric padding, flipping the input
    and the weight along every spatial axis flips the output.
    """
    if (
        any(s != 1 for s in case.stride)
        or isinstance(case.padding, str)
        or not _symmetric_density(case)
    ):
        raise NotApplicable("needs stride 1, integer padding and a symmetric density")
    dims = tuple(range(2, 2 + case.ndim))
    layer = make_layer(factory, case)
    flipped = make_layer(factory, case)
    with torch.no_grad():
        flipped.weight.copy_(torch.flip(flipped.weight, dims))
    x = case.x()
    _assert_close(
        _output(flipped, torch.flip(x, dims)),
        np.flip(_output(layer, x), dims),
        "flip symmetry",
        case,
        1e-9,
        1e-9,
    )


def check_fold_equivalence(factory: Factory, case: ConvCase) -> None:
    """``ndwconv.fold`` of the layer (W ⊙ Φ baked into a plain conv) gives the same output."""
    layer = make_layer(factory, case)
    if not is_weighted(layer):
        raise NotApplicable("fold applies to ndwconv's weighted layers")
    model = nn.Sequential(layer)
    folded = fold(model)
    x = case.x()
    _assert_close(_output(folded, x), _output(model, x), "fold vs weighted", case, 1e-10, 1e-10)


def check_gradcheck(factory: Factory, case: ConvCase) -> None:
    """``torch.autograd.gradcheck`` in float64 w.r.t. the input and every parameter
    (weight, bias, learned density values). Uses gradcheck's ``fast_mode`` (random
    projections of the Jacobian) so that it stays cheap on every drawn case.
    """
    layer = make_layer(factory, case)
    names = [n for n, _ in layer.named_parameters()]
    values = [p.detach().clone().requires_grad_(True) for _, p in layer.named_parameters()]
    x = case.x().requires_grad_(True)

    def f(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, dict(zip(names, params, strict=True)), (x,))

    try:
        torch.autograd.gradcheck(f, (x, *values), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)
    except torch.autograd.gradcheck.GradcheckError as err:
        raise AssertionError(
            f"gradcheck failed: {str(err).splitlines()[0]}\n  case: {case}"
        ) from None


def _devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def check_dtype_device(factory: Factory, case: ConvCase) -> None:
    """The output keeps the input's dtype (float32, float64) and device (CPU, CUDA when
    present), and float32 results match the float64 reference to float32 tolerance.
    """
    for device in _devices():
        for dtype in (torch.float32, torch.float64):
            layer = make_layer(factory, case, dtype=dtype).to(device)
            y = layer(case.x(dtype=dtype, device=device))
            if y.dtype != dtype or y.device.type != device:
                raise AssertionError(
                    f"input {dtype} on {device} gave output {y.dtype} on {y.device}\n  case: {case}"
                )
            assert_matches_reference(layer, case)


def check_state_dict_round_trip(factory: Factory, case: ConvCase) -> None:
    """A fresh layer (already used for inference) loading the ``state_dict`` computes the
    same output, and the keys do not depend on train/eval mode or on having run inference.
    """
    layer = make_layer(factory, case)
    keys = list(layer.state_dict())
    layer.eval()
    x = case.x()
    with torch.no_grad():
        y = _output(layer, x)
    if list(layer.state_dict()) != keys:
        raise AssertionError(
            f"state_dict keys changed with eval/inference: {keys} → {list(layer.state_dict())}"
        )
    fresh = make_layer(factory, replace(case, seed=case.seed + 1)).eval()
    with torch.no_grad():
        fresh(x)  # fill any inference cache first: loading must invalidate it
    fresh.load_state_dict(copy.deepcopy(layer.state_dict()), strict=True)
    with torch.no_grad():
        _assert_close(_output(fresh, x), y, "after state_dict round trip", case, 1e-12, 1e-12)
