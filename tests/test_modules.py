"""Weighted layers: drop-in behaviour, references, gradients, caching, state_dicts, errors."""

import copy
import pickle

import pytest
import torch
import torch.nn.utils.prune
from hypothesis import given
from torch import nn

import ndwconv as nw
from ndwconv.testing import conv_cases

WEIGHTED = {1: nw.WeightedConv1d, 2: nw.WeightedConv2d, 3: nw.WeightedConv3d}

# Agreement with the float64 reference, density ≡ 1 vs nn.ConvNd, linearity, adjointness,
# gradcheck, fold, dtypes and state_dicts over random configurations: test_properties.py.


@given(conv_cases(ndim=(1, 3), max_kernel=5, max_size=8))
def test_weighted_convnd_equals_fixed_dimension_classes(case):
    density = nw.Gaussian(0.9)
    nd = nw.WeightedConvNd(case.ndim, **case.conv_kwargs, dtype=torch.float64, density=density)
    fixed = WEIGHTED[case.ndim](**case.conv_kwargs, dtype=torch.float64, density=density)
    fixed.load_state_dict(nd.state_dict())
    x = case.x()
    assert torch.equal(nd(x), fixed(x))


def test_subclasses_and_state_dict_round_trip():
    plain = nn.Conv2d(4, 6, 3, padding=1, groups=2)
    weighted = nw.WeightedConv2d(4, 6, 3, padding=1, groups=2, density=nw.Table.default())
    assert isinstance(weighted, nn.Conv2d)
    assert list(weighted.state_dict()) == list(plain.state_dict()) == ["weight", "bias"]
    weighted.load_state_dict(plain.state_dict(), strict=True)
    back = nn.Conv2d(4, 6, 3, padding=1, groups=2)
    back.load_state_dict(weighted.state_dict(), strict=True)
    assert torch.equal(back.weight, plain.weight)


@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_keys_are_nn_conv2d_keys_plus_learned_phi(bias):
    """Fixed densities: exactly nn.Conv2d's keys. Learned: those plus ``phi.*``, one per
    kernel axis, which freeze and fold remove."""
    plain = set(nn.Conv2d(2, 4, (3, 5), bias=bias).state_dict())
    for density in ("default", "gaussian:1.0", "ones", nw.Table([[0.7], [0.2, 0.8]])):
        layer = nw.WeightedConv2d(2, 4, (3, 5), bias=bias, density=density)
        assert set(layer.state_dict()) == plain, density
    learned = nw.WeightedConv2d(2, 4, (3, 5), bias=bias, density=nw.Learned())
    assert set(learned.state_dict()) == plain | {"phi.log_half.0", "phi.log_half.1"}
    assert set(nw.freeze(learned).state_dict()) == plain
    assert set(nw.fold(learned).state_dict()) == plain
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
    converted = nw.convert(model, "learned:default")
    assert set(converted.state_dict()) == set(model.state_dict()) | {
        "0.phi.log_half.0",
        "0.phi.log_half.1",
        "2.phi.log_half.0",
        "2.phi.log_half.1",
    }


def test_state_dict_keys_do_not_depend_on_mode_or_cache():
    layer = nw.WeightedConv3d(2, 2, 3, padding=1, density=nw.Learned([0.7]))
    keys = list(layer.state_dict())
    layer.eval()
    with torch.no_grad():
        layer(torch.randn(1, 2, 5, 5, 5))
    assert (
        list(layer.state_dict())
        == keys
        == ["weight", "bias", "phi.log_half.0", "phi.log_half.1", "phi.log_half.2"]
    )
    fixed = nw.WeightedConv3d(2, 2, 3, density="gaussian:1.0").eval()
    with torch.no_grad():
        fixed(torch.randn(1, 2, 5, 5, 5))
    assert list(fixed.state_dict()) == ["weight", "bias"]


def test_gradcheck_weight_bias_input_and_learned_density():
    torch.manual_seed(0)
    layer = nw.WeightedConv2d(
        2,
        3,
        (3, 5),
        padding=(1, 2),
        stride=(2, 1),
        padding_mode="reflect",
        dtype=torch.float64,
        density=nw.Learned({3: [0.6], 5: [0.3, 0.8]}),
    )
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in layer.named_parameters()]
    assert names == ["weight", "bias", "phi.log_half.0", "phi.log_half.1"]
    params = {n: p.detach().clone().requires_grad_() for n, p in layer.named_parameters()}

    def f(x, *values):
        return torch.func.functional_call(layer, dict(zip(names, values, strict=True)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params.values()))


def test_gradcheck_four_d():
    layer = nw.WeightedConvNd(
        4,
        2,
        2,
        (3, 1, 2, 3),
        padding=1,
        dilation=(2, 1, 1, 1),
        padding_mode="circular",
        dtype=torch.float64,
        density=nw.Gaussian(1.0),
    )
    x = torch.randn(1, 2, 5, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()

    def f(x, w, b):
        return torch.func.functional_call(layer, {"weight": w, "bias": b}, (x,))

    assert torch.autograd.gradcheck(f, (x, w, b))


def test_learned_density_trains():
    torch.manual_seed(0)
    layer = nw.WeightedConv1d(3, 3, 5, padding=2, density=nw.Learned([0.2, 0.8]))
    before = layer.phi().detach().clone()
    opt = torch.optim.SGD(nw.param_groups(layer, density_lr=0.5), lr=0.1)
    x = torch.randn(4, 3, 20)
    loss = (layer(x) - x.roll(1, -1)).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.phi.parameters())
    opt.step()
    after = layer.phi().detach()
    assert not torch.allclose(before, after)
    assert after[2] == 1.0 and torch.allclose(after, after.flip(0))


class TestInferenceCache:
    def test_cached_in_eval_no_grad_and_invalidated_by_optimizer(self):
        layer = nw.WeightedConv2d(2, 2, 3, padding=1)
        x = torch.randn(1, 2, 8, 8)
        layer.eval()
        with torch.no_grad():
            y0 = layer(x)
            assert layer.effective_weight() is layer.effective_weight()
        opt = torch.optim.SGD(layer.parameters(), lr=1.0)
        layer.train()
        layer(x).sum().backward()
        opt.step()
        layer.eval()
        with torch.no_grad():
            y1 = layer(x)
            expected = torch.nn.functional.conv2d(
                x, layer.weight * layer.phi(), layer.bias, padding=1
            )
        assert not torch.allclose(y0, y1)
        torch.testing.assert_close(y1, expected)

    def test_invalidated_by_load_state_dict_and_dtype_change(self):
        layer = nw.WeightedConv2d(1, 1, 3, padding=1, bias=False).eval()
        x = torch.randn(1, 1, 6, 6)
        with torch.no_grad():
            layer(x)
            layer.load_state_dict({"weight": torch.ones(1, 1, 3, 3)})
            y = layer(x)
        ref = torch.nn.functional.conv2d(
            x, nw.Table.default().build((3, 3)).float()[None, None], padding=1
        )
        torch.testing.assert_close(y, ref)
        layer.double()
        with torch.no_grad():
            y64 = layer(x.double())
        assert y64.dtype == torch.float64

    def test_not_used_when_gradients_are_needed(self):
        layer = nw.WeightedConv1d(1, 1, 3).eval()
        with torch.no_grad():
            layer(torch.randn(1, 1, 5))
        layer(torch.randn(1, 1, 5)).sum().backward()
        assert layer.weight.grad is not None


class TestTrainingProduct:
    """In training a fixed Φ is kept expanded to the weight's shape; it must follow every
    change of Φ and of the weight, and gradients must be those of conv(x, W ⊙ Φ)."""

    def reference(self, layer, x, phi):
        return torch.nn.functional.conv2d(x, layer.weight * phi, layer.bias, padding=1)

    def test_follows_set_density_in_place_edits_and_dtype(self):
        torch.manual_seed(0)
        layer = nw.WeightedConv2d(2, 3, 3, padding=1, density=[0.5])
        x = torch.randn(1, 2, 6, 6)
        table = torch.tensor([0.5, 1.0, 0.5])
        torch.testing.assert_close(layer(x), self.reference(layer, x, torch.outer(table, table)))
        layer.set_density([0.25])
        table = torch.tensor([0.25, 1.0, 0.25])
        torch.testing.assert_close(layer(x), self.reference(layer, x, torch.outer(table, table)))
        with torch.no_grad():
            layer.phi.phi.mul_(2.0)  # an in-place edit of the buffer bumps its version
        torch.testing.assert_close(
            layer(x), self.reference(layer, x, 2 * torch.outer(table, table))
        )
        layer.double()
        y = layer(x.double())
        assert y.dtype == torch.float64

    def test_gradients_are_those_of_the_product(self):
        torch.manual_seed(1)
        layer = nw.WeightedConv2d(2, 3, 3, padding=1, density=[0.5], dtype=torch.float64)
        x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
        for _ in range(2):  # the second step reuses the expanded Φ
            layer.zero_grad()
            layer(x).square().sum().backward()
            w = layer.weight.detach().clone().requires_grad_()
            phi = torch.outer(*[torch.tensor([0.5, 1.0, 0.5], dtype=torch.float64)] * 2)
            torch.nn.functional.conv2d(x, w * phi, layer.bias, padding=1).square().sum().backward()
            torch.testing.assert_close(layer.weight.grad, w.grad)
            with torch.no_grad():
                layer.weight.sub_(0.1 * layer.weight.grad)

    def test_large_weights_broadcast_phi_and_keep_no_expanded_copy(self):
        """Above 65,536 weight elements Φ is not expanded (the documented memory bound)."""
        torch.manual_seed(2)
        layer = nw.WeightedConv2d(96, 96, 3, padding=1, density=[0.5])  # 82,944 elements
        x = torch.randn(1, 96, 4, 4)
        phi = torch.outer(*[torch.tensor([0.5, 1.0, 0.5])] * 2)
        y = layer(x)
        torch.testing.assert_close(y, self.reference(layer, x, phi))
        y.sum().backward()
        w = layer.weight.detach().clone().requires_grad_()
        torch.nn.functional.conv2d(x, w * phi, layer.bias, padding=1).sum().backward()
        torch.testing.assert_close(layer.weight.grad, w.grad)
        assert layer._expanded_phi is None
        small = nw.WeightedConv2d(64, 64, 3, padding=1)  # 36,864 elements
        small(torch.randn(1, 64, 4, 4))
        assert small._expanded_phi is not None and small._expanded_phi[3].shape == (64, 64, 3, 3)


def test_learned_density_cache_sees_swapped_density_parameters():
    """functional_call may swap a density parameter; the eval cache must notice it."""
    layer = nw.WeightedConv1d(1, 1, 3, padding=1, bias=False, density=nw.Learned([0.5])).eval()
    x = torch.randn(1, 1, 8)
    with torch.no_grad():
        layer(x)
        swapped = {"phi.log_half.0": torch.tensor([0.0])}  # Φ ≡ 1
        y = torch.func.functional_call(layer, swapped, (x,))
    torch.testing.assert_close(y, torch.nn.functional.conv1d(x, layer.weight.detach(), padding=1))


def test_parametrized_and_pruned_weights_are_used():
    """Parametrizations and pruning move ``weight`` out of ``_parameters``."""
    torch.manual_seed(2)
    x = torch.randn(1, 2, 6, 6)
    phi = torch.outer(*[torch.tensor([0.7, 1.0, 0.7])] * 2)
    layer = nw.WeightedConv2d(2, 2, 3, padding=1)
    torch.nn.utils.parametrizations.weight_norm(layer)
    want = torch.nn.functional.conv2d(x, layer.weight * phi, layer.bias, padding=1)
    torch.testing.assert_close(layer(x), want)
    layer = nw.WeightedConv2d(2, 2, 3, padding=1)
    torch.nn.utils.prune.l1_unstructured(layer, "weight", amount=0.5)
    for mode in (True, False):
        layer.train(mode)
        with torch.no_grad():
            want = torch.nn.functional.conv2d(x, layer.weight * phi, layer.bias, padding=1)
            torch.testing.assert_close(layer(x), want)


def test_phi_follows_dtype_without_precision_loss():
    layer = nw.WeightedConv1d(1, 1, 3, density=[0.7])
    assert layer.phi().dtype == torch.float32
    layer.double()
    assert layer.phi().dtype == torch.float64 and layer.phi()[0].item() == 0.7
    layer.to(torch.bfloat16)
    assert layer.phi().dtype == torch.bfloat16
    assert layer(torch.randn(1, 1, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16
    assert nw.WeightedConv2d(1, 1, 3, dtype=torch.float64).phi().dtype == torch.float64


def test_set_density_and_copies():
    layer = nw.WeightedConv2d(2, 2, 5, padding=2, density="default")
    layer.set_density(nw.Gaussian(1.0))
    assert layer.density == nw.Gaussian(1.0)
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        x = torch.randn(1, 2, 7, 7)
        torch.testing.assert_close(other(x), layer(x))
    assert "density=gaussian:1" in repr(layer)


class TestErrors:
    def test_wrong_rank(self):
        with pytest.raises(ValueError, match="4-D or 3-D"):
            nw.WeightedConv2d(1, 1, 3)(torch.randn(5, 5))

    @pytest.mark.parametrize("ndim", [1, 2, 3, 4])
    def test_wrong_channels(self, ndim):
        layer = nw.WeightedConvNd(ndim, 4, 2, 3, groups=2)
        with pytest.raises(ValueError, match=r"input has 3 channels .* groups=2 expects 4"):
            layer(torch.randn(1, 3, *[5] * ndim))

    @pytest.mark.parametrize("ndim", [1, 2, 3])
    def test_reflect_padding_larger_than_input(self, ndim):
        layer = nw.WeightedConvNd(ndim, 1, 1, 5, padding=2, padding_mode="reflect")
        with pytest.raises(ValueError, match="padding_mode='reflect' needs padding < input"):
            layer(torch.randn(1, 1, *[2] * ndim))

    def test_other_errors_are_pytorch_s_own(self):
        """A problem that is not the input's shape (here: its dtype) raises as in nn.Conv2d."""
        x = torch.randn(1, 1, 5, 5, dtype=torch.float64)
        with pytest.raises(RuntimeError) as plain:
            nn.Conv2d(1, 1, 3)(x)
        with pytest.raises(RuntimeError) as weighted:
            nw.WeightedConv2d(1, 1, 3)(x)
        assert str(weighted.value) == str(plain.value)

    def test_ndim(self):
        with pytest.raises(ValueError, match="ndim"):
            nw.WeightedConvNd(0, 1, 1, 3)

    def test_kernel_size_length(self):
        with pytest.raises(ValueError, match="kernel_size"):
            nw.WeightedConvNd(4, 1, 1, (3, 3))

    def test_groups(self):
        with pytest.raises(ValueError, match="groups"):
            nw.WeightedConvNd(4, 3, 4, 3, groups=2)

    def test_padding_mode(self):
        with pytest.raises(ValueError, match="padding_mode"):
            nw.WeightedConvNd(4, 1, 1, 3, padding_mode="mirror")

    def test_kernel_larger_than_input(self):
        with pytest.raises(ValueError, match="larger than the padded input"):
            nw.WeightedConvNd(4, 1, 1, 5)(torch.randn(1, 1, 3, 8, 8, 8))

    def test_density_type(self):
        with pytest.raises(TypeError, match="density must be"):
            nw.WeightedConv1d(1, 1, 3, density=0.7)
