"""``ndwconv.init_from_density``: plain convolutions whose kernels are scaled by Φ.

Checked against an independent float64 reference (the kernel times the outer product of
per-axis profiles ``[d…, 1, …d]`` and Gaussian profiles written out here) and against
``convert``: the scaled plain model and the weighted model compute the same function.
"""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

import ndwconv
from ndwconv import init_from_density


def _profile(values: list[float]) -> np.ndarray:
    """``[d1, …, dm]`` → ``[d1, …, dm, 1, dm, …, d1]`` (outermost first)."""
    return np.array([*values, 1.0, *values[::-1]])


def _outer(profiles: list[np.ndarray]) -> np.ndarray:
    """Φ[i1, …, iN] = ∏ profile_a[i_a], with explicit loops."""
    shape = tuple(len(p) for p in profiles)
    phi = np.empty(shape)
    for index in itertools.product(*(range(n) for n in shape)):
        phi[index] = math.prod(p[i] for p, i in zip(profiles, index, strict=True))
    return phi


def _gaussian(size: int, sigma: float, dilation: int) -> np.ndarray:
    half = size // 2
    return np.array(
        [math.exp(-((j * dilation) ** 2) / (2 * sigma**2)) for j in range(-half, half + 1)]
    )


def _weights(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 5, padding=4, dilation=2),
        nn.ReLU(),
        nn.Conv2d(4, 3, 1),  # pointwise: left alone
        nn.ReLU(),
        nn.Conv2d(3, 2, (1, 3), padding=(0, 1), bias=False),
    ).double()


def test_kernels_are_scaled_by_the_outer_product_of_the_profiles():
    torch.manual_seed(0)
    net = _net()
    before = _weights(net)
    spec = "table:3=0.7;5=0.2,0.6"
    scaled = init_from_density(net, spec)
    assert _weights(net).keys() == before.keys()
    for key, value in _weights(net).items():  # the given model is untouched
        np.testing.assert_array_equal(value, before[key])
    after = _weights(scaled)
    p3, p5 = _profile([0.7]), _profile([0.2, 0.6])
    np.testing.assert_allclose(after["0.weight"], before["0.weight"] * _outer([p3, p3]), rtol=1e-15)
    np.testing.assert_allclose(after["2.weight"], before["2.weight"] * _outer([p5, p5]), rtol=1e-15)
    np.testing.assert_allclose(
        after["6.weight"], before["6.weight"] * _outer([np.ones(1), p3]), rtol=1e-15
    )
    np.testing.assert_array_equal(after["4.weight"], before["4.weight"])  # pointwise
    for key in ("0.bias", "2.bias", "4.bias"):
        np.testing.assert_array_equal(after[key], before[key])
    # nothing else changed: plain classes, same keys, no parameters or buffers added
    assert [type(m) for m in scaled] == [type(m) for m in net]
    assert sorted(scaled.state_dict()) == sorted(net.state_dict())
    assert len(list(scaled.buffers())) == len(list(net.buffers())) == 0
    assert [n for n, _ in scaled.named_parameters()] == [n for n, _ in net.named_parameters()]


@pytest.mark.parametrize("ndim", [1, 3])
def test_gaussian_densities_follow_the_dilation(ndim):
    torch.manual_seed(1)
    conv = {1: nn.Conv1d, 3: nn.Conv3d}[ndim](2, 3, 5, dilation=2).double()
    before = conv.weight.detach().numpy().copy()
    scaled = init_from_density(conv, "gaussian:1.5")
    profile = _gaussian(5, 1.5, 2)
    expected = before * _outer([profile] * ndim)
    np.testing.assert_allclose(scaled.weight.detach().numpy(), expected, rtol=1e-14)


@pytest.mark.parametrize(
    "density", ["default", "table:3=0.7;5=0.2,0.6", "gaussian:1.2", "learned:gaussian:1.0"]
)
def test_same_initial_function_as_convert(density):
    torch.manual_seed(2)
    model = _net()
    if density == "default":  # Table.default() describes 3, 5 and 7 but not 1×3 kernels
        model[6] = nn.Conv2d(3, 2, 3, padding=1, bias=False).double()
    x = torch.randn(2, 2, 12, 12, dtype=torch.float64)
    plain = init_from_density(copy.deepcopy(model), density)
    weighted = ndwconv.convert(copy.deepcopy(model), density, strict=True)
    assert not any(ndwconv.is_weighted(m) for m in plain.modules())
    assert sum(1 for _ in ndwconv.weighted_layers(weighted)) == 3
    torch.testing.assert_close(plain(x), weighted(x), rtol=1e-12, atol=1e-12)
    # and the scaled kernels are the weighted layers' effective ones, bit for bit
    for name, layer in ndwconv.weighted_layers(weighted):
        assert torch.equal(dict(plain.named_modules())[name].weight, layer.effective_weight())


def test_float32_matches_convert_bit_for_bit():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 2, 5, padding=2))
    x = torch.randn(1, 3, 9, 9)
    plain = init_from_density(model, "table:3=0.6;5=0.3,0.8")
    weighted = ndwconv.convert(model, "table:3=0.6;5=0.3,0.8").eval()
    with torch.no_grad():
        assert torch.equal(plain(x), weighted(x))


def test_where_a_callable_density_and_none_skip_layers():
    torch.manual_seed(4)
    net = _net()
    chosen = init_from_density(
        net, lambda name, conv: "table:0.5" if name == "0" else None, where=["0", "2"]
    )
    assert torch.equal(chosen[2].weight, net[2].weight)  # the callable gave None
    assert torch.equal(chosen[6].weight, net[6].weight)  # not selected by where
    p = _profile([0.5])
    np.testing.assert_allclose(
        chosen[0].weight.detach().numpy(), net[0].weight.detach().numpy() * _outer([p, p])
    )


def test_inplace_keeps_the_parameters_and_autograd_works():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv1d(2, 1, 3, padding=1))
    weight = net[0].weight
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    expected = weight.detach().clone() * torch.tensor([0.25, 1.0, 0.25])
    assert init_from_density(net, "table:0.25", inplace=True) is net
    assert net[0].weight is weight and weight.requires_grad and weight.grad_fn is None
    torch.testing.assert_close(weight.detach(), expected, rtol=0, atol=0)
    net(torch.randn(4, 1, 10)).pow(2).mean().backward()  # trains as a plain model
    assert weight.grad is not None
    optimizer.step()
    assert not torch.equal(weight.detach(), expected)


def test_a_shared_weight_is_scaled_once():
    conv = nn.Conv1d(1, 1, 3, bias=False)
    twin = nn.Conv1d(1, 1, 3, bias=False)
    twin.weight = conv.weight
    with torch.no_grad():
        conv.weight.fill_(1.0)
    net = init_from_density(nn.Sequential(conv, twin, conv), "table:0.5")
    assert net[0].weight is net[1].weight
    assert net[0].weight.detach().flatten().tolist() == [0.5, 1.0, 0.5]
    with pytest.raises(ValueError, match=r"layers '0' and '1' share one weight"):
        init_from_density(
            nn.Sequential(conv, twin),
            lambda name, c: "table:0.5" if name == "0" else "table:0.7",
        )


def test_a_density_that_cannot_describe_a_layer_raises_naming_it_and_changes_nothing():
    torch.manual_seed(6)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 4), nn.Conv2d(2, 2, 9))
    before = _weights(net)
    with pytest.raises(ValueError, match=r"layer '1' \(Conv2d, kernel \(4, 4\)\)"):
        init_from_density(net, "table:0.5", inplace=True)
    with pytest.raises(ValueError, match=r"layer '2' \(Conv2d, kernel \(9, 9\)\)"):
        init_from_density(net, "default", where=["0", "2"], inplace=True)
    for key, value in _weights(net).items():  # layer 0 came first, and was not scaled
        np.testing.assert_array_equal(value, before[key])
    # a layer the density cannot describe is left out with where=
    init_from_density(net, "table:0.5", where=lambda name, m: m.kernel_size[0] == 3)


def test_bad_arguments_give_errors_naming_them():
    conv = nn.Conv1d(1, 1, 3)
    with pytest.raises(TypeError, match=r"model must be an nn\.Module"):
        init_from_density("net", "default")
    with pytest.raises(TypeError, match="inplace must be True or False"):
        init_from_density(conv, "default", inplace=1)
    with pytest.raises(TypeError, match="where must be"):
        init_from_density(conv, "default", where=3)
    with pytest.raises(ValueError, match="density"):
        init_from_density(conv, "no-such-family:1")
    with pytest.raises(ValueError, match=r"returned 'bogus:1' for layer '<root>'"):
        init_from_density(conv, lambda name, c: "bogus:1")
    with pytest.raises(ValueError, match=r"layer '<root>' \(Conv1d\)"):  # Φ overflows in float16
        init_from_density(nn.Conv1d(1, 1, 3).half(), "table:1e6")


def test_subclasses_transposed_and_weighted_layers_are_left_alone():
    class MyConv(nn.Conv2d):
        pass

    torch.manual_seed(7)
    net = nn.Sequential(
        MyConv(1, 1, 3), nn.ConvTranspose2d(1, 1, 3), ndwconv.WeightedConv2d(1, 1, 3)
    )
    scaled = init_from_density(net, "table:0.5")
    for a, b in zip(scaled, net, strict=True):
        assert torch.equal(a.weight, b.weight)
