"""Regression tests, each named after the bug it pins."""

import numpy as np
import pytest
import torch
from torch import nn

import ndwconv as nw
from ndwconv.testing import reference_conv


def test_cache_not_stale_when_parameters_are_swapped():
    """functional_call (and pruning) swap in new weight tensors; a freed tensor's id can be
    reused, so the eval cache must compare the tensors themselves."""
    layer = nw.WeightedConv2d(1, 1, 3, padding=1, bias=False).eval()
    x = torch.randn(1, 1, 6, 6)
    with torch.no_grad():
        torch.func.functional_call(layer, {"weight": torch.ones(1, 1, 3, 3)}, (x,))
        b = torch.func.functional_call(layer, {"weight": torch.zeros(1, 1, 3, 3)}, (x,))
    assert torch.equal(b, torch.zeros_like(b))


def test_cache_not_stale_after_dtype_round_trip():
    layer = nw.WeightedConv2d(2, 2, 3, padding=1).eval()
    x = torch.randn(1, 2, 8, 8)
    with torch.no_grad():
        layer(x)
        layer.to(torch.bfloat16).float()
        y = layer(x)
        want = torch.nn.functional.conv2d(x, layer.weight * layer.phi(), layer.bias, padding=1)
    torch.testing.assert_close(y, want, rtol=0, atol=0)


def test_layer_built_under_inference_mode_runs():
    with torch.inference_mode():
        layer = nw.WeightedConv2d(1, 1, 3).eval()
        assert layer(torch.randn(1, 1, 5, 5)).shape == (1, 1, 3, 3)


def test_numpy_integers_are_accepted_like_nn_conv():
    x = torch.randn(1, 2, 5, 5)
    plain = nn.Conv2d(2, 2, 3, padding=np.int64(1), stride=np.int32(1))
    weighted = nw.convert(plain, "ones")
    torch.testing.assert_close(weighted(x), plain(x))
    assert (
        nw.WeightedConvNd(4, 1, 1, np.int64(3))(torch.randn(1, 1, 4, 4, 4, 4)).shape[2:] == (2,) * 4
    )


def test_convert_and_fold_a_module_used_twice():
    conv = nn.Conv2d(2, 2, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    weighted = nw.convert(model, "default")
    assert weighted[0] is weighted[2] and isinstance(weighted[0], nw.WeightedConv2d)
    folded = nw.fold(weighted)
    assert folded[0] is folded[2] and type(folded[0]) is nn.Conv2d
    x = torch.randn(1, 2, 6, 6)
    torch.testing.assert_close(folded(x), weighted(x))


def test_convert_keeps_every_kind_of_hook():
    conv = nn.Conv2d(1, 1, 3)
    calls = []
    conv.register_forward_hook(
        lambda m, args, kwargs, out: calls.append("fwd-kw"), with_kwargs=True
    )
    conv.register_full_backward_hook(lambda m, gin, gout: calls.append("bwd"))
    handle = conv.register_forward_pre_hook(lambda m, args: calls.append("pre"))
    model = nw.convert(nn.Sequential(conv), "default", inplace=True)
    model(torch.randn(1, 1, 5, 5, requires_grad=True)).sum().backward()
    assert calls == ["pre", "fwd-kw", "bwd"]
    handle.remove()  # handles registered before convert still work
    calls.clear()
    model(torch.randn(1, 1, 5, 5))
    assert calls == ["fwd-kw"]


def test_convert_is_atomic_and_names_the_layer():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 4))
    with pytest.raises(ValueError, match=r"layer\(s\) '1' \(Conv2d, kernel \(4, 4\), .*odd kernel"):
        nw.convert(model, "default", inplace=True, strict=True)
    assert [type(m) for m in model] == [nn.Conv2d, nn.Conv2d]


def test_convert_a_bare_layer():
    assert isinstance(nw.convert(nn.Conv1d(1, 1, 3), "default"), nw.WeightedConv1d)


def test_four_d_output_is_contiguous_and_views():
    y = nw.WeightedConvNd(4, 2, 3, 3, padding=1)(torch.randn(2, 2, 4, 5, 5, 5))
    assert y.is_contiguous() and y.view(2, -1).shape == (2, 3 * 4 * 125)


def test_four_d_all_taps_in_padding_without_bias_has_a_graph():
    layer = nw.WeightedConvNd(
        4, 1, 1, 2, padding=(2, 0, 0, 0), dilation=(4, 1, 1, 1), bias=False, density="ones"
    )
    x = torch.randn(1, 1, 1, 3, 3, 3)
    y = layer(x)
    y.sum().backward()
    assert torch.equal(layer.weight.grad, torch.zeros_like(layer.weight))
    np.testing.assert_array_equal(
        y.detach().numpy(),
        reference_conv(
            x.numpy(), layer.weight.detach().numpy(), padding=(2, 0, 0, 0), dilation=(4, 1, 1, 1)
        ),
    )


def test_learned_density_resets_after_meta_init():
    """The FSDP pattern: build on meta, to_empty(), reset_parameters() on every module."""
    with torch.device("meta"):
        layer = nw.WeightedConv1d(1, 1, 5, density=nw.Learned([0.2, 0.8]))
    layer.to_empty(device="cpu")
    for m in layer.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    torch.testing.assert_close(layer.phi().detach(), torch.tensor([0.2, 0.8, 1.0, 0.8, 0.2]))


def test_empty_table_string_round_trips():
    for d in (nw.Table([]), nw.Learned(nw.Table([]))):
        assert nw.Density.from_spec(str(d)) == d


def test_four_d_compiles_with_dynamic_shapes():
    layer = nw.WeightedConvNd(4, 1, 2, 3, padding=1).eval()
    compiled = torch.compile(layer, fullgraph=True, dynamic=True, backend="eager")
    with torch.no_grad():
        for size in (4, 5):
            x = torch.randn(1, 1, size, 4, 4, 4)
            torch.testing.assert_close(compiled(x), layer(x))


def test_numpy_scalars_in_densities_and_bad_arguments():
    assert nw.Gaussian(np.float32(1.5)) == nw.Gaussian(1.5)
    assert nw.Table({np.int64(3): [0.7]}) == nw.Table({3: [0.7]})
    with pytest.raises(ValueError, match="kernel sizes"):
        nw.Table({3.7: [0.7]})
    with pytest.raises(ValueError, match="density_lr"):
        nw.param_groups(nn.Conv2d(1, 1, 3), density_lr=float("inf"))
    with pytest.raises(TypeError, match="model"):
        nw.freeze("model")


def test_user_bound_module_without_spec_still_reports_its_density():
    class Constant(nn.Module):
        def __init__(self, kernel_size):
            super().__init__()
            self.register_buffer("phi", torch.full(tuple(kernel_size), 0.5), persistent=False)

        def forward(self):
            return self.phi

    @nw.register_density("constant_half_test")
    class ConstantHalf(nw.Density):
        def params(self):
            return {}

        def bind(self, kernel_size, dilation=None, *, dtype=None, device=None):
            return Constant(kernel_size).to(device=device, dtype=dtype)

    layer = nw.WeightedConv1d(1, 1, 3, density=ConstantHalf())
    assert layer.density == ConstantHalf() and "constant_half_test" in repr(layer)
    converted = nw.convert(nn.Conv1d(1, 1, 3), ConstantHalf())
    assert converted.density == ConstantHalf()


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_take_torch_pad_up_to_three_axes(mode):
    """pad_nd uses F.pad for ≤ 3 axes (10× faster than gathers) with the same results."""
    x = torch.randn(2, 3, 5, 6, 4, dtype=torch.float64)
    pads = [(1, 2), (0, 3), (2, 1)]
    got = nw.functional.pad_nd(x, pads, mode)
    want = np.pad(
        x.numpy(),
        [(0, 0), (0, 0), *pads],
        mode={"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode],
    )
    np.testing.assert_array_equal(got.numpy(), want)


def test_layer_pickled_without_the_training_cache_still_trains():
    """A layer pickled before the expanded-Φ cache existed has no ``_expanded_phi``."""
    layer = nw.WeightedConv2d(1, 1, 3, padding=1, density=[0.5])
    state = layer.__getstate__()
    del state["_expanded_phi"]
    old = nw.WeightedConv2d.__new__(nw.WeightedConv2d)
    old.__setstate__(state)
    x = torch.randn(1, 1, 5, 5)
    phi = torch.outer(*[torch.tensor([0.5, 1.0, 0.5])] * 2)
    want = torch.nn.functional.conv2d(x, layer.weight * phi, layer.bias, padding=1)
    torch.testing.assert_close(old(x), want)
