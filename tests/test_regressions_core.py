"""Regression tests of the core (densities, layers, conversion), each named after its bug.

References are independent of the code under test: NumPy for float ranges and the
shortest round-trip printing of float32/float16 values, float64 arithmetic for Φ.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import ndwconv as nw
from ndwconv import Density

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LAYERS = {1: nw.WeightedConv1d, 2: nw.WeightedConv2d, 3: nw.WeightedConv3d}


def _overflowing_value(dtype: torch.dtype, ndim: int) -> float:
    """A table value v with v**ndim finite in float64 but above ``dtype``'s largest value."""
    largest = float(torch.finfo(dtype).max)
    value = (4.0 * largest) ** (1.0 / ndim)
    assert math.isfinite(value**ndim) and value**ndim > largest  # float64 reference
    return value


# -- a density finite in float64 but not in the layer's dtype ---------------------------


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_density_overflowing_in_layer_dtype_is_refused_at_construction(dtype, ndim):
    value = _overflowing_value(dtype, ndim)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(ValueError, match=rf"table:.*overflows in {name}"):
        LAYERS[ndim](1, 1, 3, density=[value], dtype=dtype)
    with pytest.raises(ValueError, match=rf"overflows in {name}"):
        nw.WeightedConvNd(ndim, 1, 1, 3, density=[value], dtype=dtype)


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_density_overflowing_in_layer_dtype_is_refused_on_cast(dtype, ndim):
    value = _overflowing_value(dtype, ndim)
    layer = LAYERS[ndim](1, 1, 3, density=[value], dtype=torch.float64)
    before = layer.phi().clone()
    with pytest.raises(ValueError, match=str(dtype).removeprefix("torch.")):
        layer.to(dtype)
    # the density keeps its float64 Φ: nothing is left half converted to inf
    assert torch.equal(layer.phi(), before) and torch.isfinite(layer.phi()).all()


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_density_in_range_of_layer_dtype_still_builds(dtype, ndim):
    largest = float(torch.finfo(dtype).max)
    value = (largest / 4.0) ** (1.0 / ndim)  # Φ's peak a quarter of the largest value
    layer = LAYERS[ndim](1, 1, 3, density=[value], dtype=dtype)
    assert torch.isfinite(layer.phi()).all()
    assert torch.isfinite(LAYERS[ndim](1, 1, 3, density=[value]).to(dtype).phi()).all()


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_learned_density_overflowing_in_layer_dtype_is_refused(dtype, ndim):
    value = _overflowing_value(dtype, ndim)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(ValueError, match=rf"learned.*overflows in {name}"):
        LAYERS[ndim](1, 1, 3, density=nw.Learned([value]), dtype=dtype)
    layer = LAYERS[ndim](1, 1, 3, density=nw.Learned([value]), dtype=torch.float64)
    with pytest.raises(ValueError, match=name):
        layer.to(dtype)


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_learned_density_state_dict_overflowing_in_dtype_is_refused_before_loading(dtype, ndim):
    layer = LAYERS[ndim](1, 1, 3, density=nw.Learned([0.5]), dtype=dtype)
    state = layer.state_dict()
    kept = {k: v.clone() for k, v in state.items()}
    bad = dict(state)
    log_value = math.log(_overflowing_value(dtype, ndim))
    for axis in range(ndim):
        bad[f"phi.log_half.{axis}"] = torch.full((1,), log_value, dtype=dtype)
    with pytest.raises(ValueError, match=str(dtype).removeprefix("torch.")):
        layer.load_state_dict(bad)
    for key, value in layer.state_dict().items():  # nothing was copied
        assert torch.equal(value, kept[key]), key


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_learned_density_overflow_is_caught_when_inference_kernel_is_rebuilt(dtype):
    layer = nw.WeightedConv2d(1, 1, 3, padding=1, density=nw.Learned([0.5]), dtype=dtype).eval()
    x = torch.randn(1, 1, 6, 6, dtype=dtype)
    with torch.no_grad():
        assert torch.isfinite(layer(x)).all()
        for p in layer.phi.log_half:  # an edit that makes Φ overflow in this dtype
            p.fill_(math.log(_overflowing_value(dtype, 2)))
        with pytest.raises(ValueError, match="overflows in"):
            layer(x)


def test_convert_names_the_layer_whose_dtype_the_density_overflows():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3)).half()
    with pytest.raises(ValueError, match=r"layer '0' \(Conv2d\).*overflows in float16"):
        nw.convert(model, [300.0], strict=False)
    assert type(model[0]) is nn.Conv2d  # the model is left as it was


# -- frozen densities print float32 noise -------------------------------------------------

NUMPY_FLOATS = {torch.float32: np.float32, torch.float16: np.float16}


def _learned_layer(dtype: torch.dtype, ndim: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layer = LAYERS[ndim](1, 1, 5, density=nw.Learned([0.2, 0.8]), dtype=dtype)
    with torch.no_grad():  # values a training run could have reached
        for p in layer.phi.log_half:
            p.add_(0.3 * torch.randn_like(p))
    return layer


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_frozen_density_spec_round_trips_exactly_in_layer_dtype(dtype, ndim):
    layer = _learned_layer(dtype, ndim, seed=ndim)
    frozen = nw.freeze(layer)
    text = str(frozen.density)
    rebuilt = LAYERS[ndim](1, 1, 5, density=Density.from_spec(text), dtype=dtype)
    assert torch.equal(rebuilt.phi(), frozen.phi()), text
    via_json = Density.from_spec(json.loads(json.dumps(frozen.density.to_spec())))
    assert via_json == frozen.density
    # each profile value is the one the learned layer computed with, in its dtype
    for axis, p in enumerate(layer.phi.log_half):
        values = via_json.per_axis[axis]
        assert torch.equal(torch.tensor(values, dtype=torch.float64).to(dtype), p.detach().exp())


@pytest.mark.parametrize("dtype", list(NUMPY_FLOATS), ids=str)
def test_frozen_density_prints_shortest_float32_form_not_float64_noise(dtype):
    layer = _learned_layer(dtype, 2, seed=7)
    frozen = str(nw.freeze(layer).density)
    # reference: NumPy's repr of a float32/float16 is its shortest round-trip form
    expected = "|".join(
        ",".join(
            str(NUMPY_FLOATS[dtype](v)).removesuffix(".0")
            for v in p.detach().exp().double().tolist()
        )
        for p in layer.phi.log_half
    )
    assert frozen == "table:axes=" + expected


@pytest.mark.parametrize(
    ("spec", "printed"),
    [
        ("learned:0.7", "table:axes=0.7"),
        ("learned:0.25,0.55", "table:axes=0.25,0.55"),
        ("learned:0.25,0.5,0.8", "table:axes=0.25,0.5,0.8"),
    ],
)
def test_frozen_untrained_learned_density_prints_its_init(spec, printed):
    # values whose float32 form exp(θ) reaches exactly; a value between two reachable
    # ones (0.2 → 0.19999999) prints as the value the layer really holds
    size = 2 * len(spec.split(":")[1].split(",")) + 1
    assert str(nw.freeze(nw.WeightedConv1d(1, 1, size, density=spec)).density) == printed


# -- the Gaussian profile at extreme σ ------------------------------------------------------


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_gaussian_with_tiny_sigma_keeps_the_centre_tap_instead_of_nan(ndim):
    phi = nw.Gaussian(1e-200).build((3,) * ndim)
    expected = torch.zeros((3,) * ndim, dtype=torch.float64)
    expected[(1,) * ndim] = 1.0  # the limit σ → 0: only the centre tap
    assert torch.equal(phi, expected)


@pytest.mark.parametrize("sigma", [1e160, 1e200, 1e300])
def test_gaussian_with_huge_sigma_is_flat_instead_of_overflow_error(sigma):
    assert torch.equal(nw.Gaussian(sigma).build((3, 5)), torch.ones(3, 5, dtype=torch.float64))


# -- the string grammar silently dropping or overwriting arguments ---------------------------


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("table:3=0.7;3=0.8", "kernel size 3 is given twice"),
        ("gaussian:1;spacing=1;spacing=2", "'spacing' is given twice"),
        ("table:0.7,,0.2", "expected comma-separated numbers"),
        ("table:0.2,0.8,", "expected comma-separated numbers"),
        ("table:x=0.7", "'x' is not a kernel size"),
    ],
)
def test_density_string_spec_never_drops_or_overwrites_an_argument(spec, fragment):
    with pytest.raises(ValueError, match=fragment):
        Density.from_spec(spec)


# -- the conversion report's order -----------------------------------------------------------


def test_conversion_report_lists_layers_in_named_modules_order():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Conv2d(4, 2, 1)  # registered first, skipped (pointwise)
            self.body = nn.Sequential(nn.Conv2d(4, 4, 9, padding=4), nn.Conv2d(4, 4, 3))
            self.stem = nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            return self.head(self.body(self.stem(x)))

    net = Net()
    expected = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    _, report = nw.convert(net, "default", return_report=True)
    assert [r.name for r in report] == expected == ["head", "body.0", "body.1", "stem"]
    weighted = nw.convert(net, "gaussian:1.0")
    _, folded = nw.fold(weighted, return_report=True)
    assert [r.name for r in folded] == ["body.0", "body.1", "stem"]


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_freeze_leaves_phi_bit_identical_in_layer_dtype(dtype, ndim):
    layer = _learned_layer(dtype, ndim, seed=10 + ndim)
    frozen = nw.freeze(layer)
    assert torch.equal(frozen.phi(), layer.phi().detach())
    x = torch.randn(1, 1, *(7,) * ndim, dtype=dtype)
    with torch.no_grad():
        assert torch.equal(frozen(x), layer(x))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_density_underflowing_to_all_zeros_in_layer_dtype_is_refused(dtype):
    # an even 4×4 kernel has no centre tap; its largest Φ value is exp(-(0.5/σ)²/2)²
    sigma = 0.08 if dtype == torch.float16 else 0.02
    peak = math.exp(-0.5 * (0.5 / sigma) ** 2) ** 2  # float64 reference
    smallest = float(np.finfo(np.float16).smallest_subnormal) if dtype == torch.float16 else 1e-45
    assert 0.0 < peak < smallest / 2  # positive in float64, rounds to 0 in the dtype
    with pytest.raises(ValueError, match="underflows to all zeros"):
        nw.WeightedConv2d(1, 1, 4, density=nw.Gaussian(sigma), dtype=dtype)
    assert (nw.Gaussian(sigma).build((4, 4)) > 0).any()  # not all zero in float64


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_learned_density_spec_rebuilds_the_identical_phi(dtype, ndim):
    layer = _learned_layer(dtype, ndim, seed=20 + ndim)
    text = str(layer.density)  # learned:axes=…, the current values
    rebuilt = LAYERS[ndim](1, 1, 5, density=text, dtype=dtype)
    assert torch.equal(rebuilt.phi(), layer.phi()), text
