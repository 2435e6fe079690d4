"""The CIFAR classification models: parameter counts, shapes, weighting, initialisation.

Parameter counts are derived here by arithmetic from the architectures' definitions
(k²·C_in·C_out (+ C_out bias) per convolution, 2·C per BatchNorm, (C_in + 1)·C_out per
linear layer), independently of the model code, and compared with published figures:

* weiaicunzai/pytorch-cifar100, README "Results" table (CIFAR-100, 100 classes): vgg11_bn
  28.5M, vgg13_bn 28.7M, vgg16_bn 34.0M, vgg19_bn 39.0M, resnet18 11.2M, resnet34
  21.3M, resnet50 23.7M. Its vgg19_bn entry does not match the arithmetic of the
  architecture its own code defines (39.33M; the other six all round to the table), so
  the VGG-19 feature extractor is checked against a second source:
* da2so/DA2Lite, model_zoo/README.md ("Original model" tables; the same feature
  extractors, a single ``Linear(512, classes)`` head): CIFAR-100 VGG19_bn 20.09M,
  ResNet18 11.22M, ResNet34 21.33M; CIFAR-10 VGG16_bn 14.73M, ResNet50 23.52M.

Most structural checks run on the meta device (no memory, no initialisation cost); the
forward/backward checks use batch 2 and, for the size-agnostic ResNets, small inputs.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import ndwconv
from ndwconv.recipes.models import (
    MODELS,
    VGG,
    ResNet,
    build_model,
    count_parameters,
    make_weighted,
)

CIFAR_MODELS = ("vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "resnet18", "resnet34", "resnet50")

# --- independent arithmetic ---------------------------------------------------------------

# Simonyan & Zisserman 2015, Table 1: 3×3 convolution widths of configurations A, B, D, E.
VGG_CONVS = {
    "vgg11_bn": [64, 128, 256, 256, 512, 512, 512, 512],
    "vgg13_bn": [64, 64, 128, 128, 256, 256, 512, 512, 512, 512],
    "vgg16_bn": [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512],
    "vgg19_bn": [64, 64, 128, 128] + [256] * 4 + [512] * 8,
}
# He et al. 2016, Table 1: blocks per stage.
RESNET_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}


def conv(k: int, c_in: int, c_out: int, bias: bool = False) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def linear(c_in: int, c_out: int) -> int:
    return (c_in + 1) * c_out


def vgg_features(name: str, in_channels: int = 3) -> int:
    """3×3 convolutions with bias, each followed by BatchNorm."""
    total, c_in = 0, in_channels
    for c in VGG_CONVS[name]:
        total += conv(3, c_in, c, bias=True) + bn(c)
        c_in = c
    return total


def vgg_params(name: str, classes: int) -> int:
    head = linear(512, 4096) + linear(4096, 4096) + linear(4096, classes)
    return vgg_features(name) + head


def resnet_params(name: str, classes: int) -> int:
    bottleneck = name == "resnet50"
    expansion = 4 if bottleneck else 1
    total = conv(3, 3, 64) + bn(64)  # CIFAR stem
    c_in = 64
    for stage, (width, count) in enumerate(
        zip((64, 128, 256, 512), RESNET_BLOCKS[name], strict=True)
    ):
        for block in range(count):
            stride = 2 if stage > 0 and block == 0 else 1
            c_out = width * expansion
            if bottleneck:
                total += conv(1, c_in, width) + bn(width)
                total += conv(3, width, width) + bn(width)
                total += conv(1, width, c_out) + bn(c_out)
            else:
                total += conv(3, c_in, width) + bn(width) + conv(3, width, width) + bn(width)
            if stride != 1 or c_in != c_out:  # projection shortcut
                total += conv(1, c_in, c_out) + bn(c_out)
            c_in = c_out
    return total + linear(c_in, classes)


def expected_params(name: str, classes: int = 100) -> int:
    return vgg_params(name, classes) if name.startswith("vgg") else resnet_params(name, classes)


# pytorch-cifar100 README, CIFAR-100 (millions, one decimal).
PYTORCH_CIFAR100_M = {
    "vgg11_bn": 28.5,
    "vgg13_bn": 28.7,
    "vgg16_bn": 34.0,
    "resnet18": 11.2,
    "resnet34": 21.3,
    "resnet50": 23.7,
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Batch-2 steps gain nothing from threads, and on a busy machine lose to barriers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return build_model(name, **kwargs)


# --- parameter counts ---------------------------------------------------------------------


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_parameter_count_matches_arithmetic(name):
    assert count_parameters(meta_model(name)) == expected_params(name)


def test_arithmetic_matches_published_counts():
    for name, millions in PYTORCH_CIFAR100_M.items():
        assert round(expected_params(name) / 1e6, 1) == millions, name
    # pytorch-cifar100 lists vgg19_bn at 39.0M, its own architecture gives 39.33M:
    assert round(expected_params("vgg19_bn") / 1e6, 2) == 39.33
    # DA2Lite: the same feature extractors with one Linear(512, classes) head.
    assert round((vgg_features("vgg19_bn") + linear(512, 100)) / 1e6, 2) == 20.09
    assert round((vgg_features("vgg16_bn") + linear(512, 10)) / 1e6, 2) == 14.73
    assert round(expected_params("resnet18") / 1e6, 2) == 11.22
    assert round(expected_params("resnet34") / 1e6, 2) == 21.33
    assert round(expected_params("resnet50", classes=10) / 1e6, 2) == 23.52


def test_vgg19_features_match_the_second_source():
    net = meta_model("vgg19_bn")
    assert count_parameters(net.features) == vgg_features("vgg19_bn")


@pytest.mark.parametrize("name", ["vgg16_bn", "resnet50"])
def test_classes_and_channels_change_only_the_ends(name):
    net = meta_model(name, in_channels=1, num_classes=10)
    first_conv = 64 * (3 * 3) * (3 - 1)  # one input channel fewer: 9·64 weights each
    assert count_parameters(net) == expected_params(name, classes=10) - first_conv


# --- weighting ----------------------------------------------------------------------------


def _convs(model: nn.Module, k: int) -> int:
    return sum(1 for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (k, k))


# Expected 3×3 (weighted) and 1×1 (plain) convolutions, counted from the architectures:
# VGG: every convolution is 3×3. ResNet: the stem, two 3×3 per basic block / one per
# bottleneck; 1×1: two per bottleneck, one per projection shortcut (3 in ResNet-18/34:
# stages 2-4; 4 in ResNet-50, whose first stage widens 64 → 256).
WEIGHTED_LAYERS = {
    "vgg11_bn": (8, 0),
    "vgg13_bn": (10, 0),
    "vgg16_bn": (13, 0),
    "vgg19_bn": (16, 0),
    "resnet18": (1 + 2 * 8, 3),
    "resnet34": (1 + 2 * 16, 3),
    "resnet50": (1 + 16, 2 * 16 + 4),
}


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_make_weighted_weights_the_3x3_convolutions_only(name):
    net = meta_model(name)
    n3, n1 = WEIGHTED_LAYERS[name]
    assert (_convs(net, 3), _convs(net, 1)) == (n3, n1)
    make_weighted(net, "default")
    layers = list(ndwconv.weighted_layers(net))
    assert len(layers) == n3
    assert all(layer.kernel_size == (3, 3) for _, layer in layers)
    plain = [m for m in net.modules() if type(m) is nn.Conv2d]
    assert len(plain) == n1 and all(m.kernel_size == (1, 1) for m in plain)
    assert count_parameters(net) == expected_params(name)


def test_make_weighted_keeps_the_initial_weights():
    torch.manual_seed(0)
    net = build_model("resnet18")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    make_weighted(net, "default")
    after = net.state_dict()
    for key, value in before.items():
        assert torch.equal(after[key], value), key


# --- shapes, forward and backward ---------------------------------------------------------


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_cifar_input_gives_100_logits(name):
    torch.manual_seed(0)
    net = build_model(name, in_channels=3, num_classes=100).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 100) and torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "side"), [("vgg11_bn", 32), ("resnet18", 8), ("resnet50", 8)])
def test_training_step_reaches_every_parameter_in_both_methods(name, side):
    torch.manual_seed(0)
    standard = build_model(name, num_classes=7)
    weighted = make_weighted(copy.deepcopy(standard), "default")
    x, y = torch.randn(2, 3, side, side), torch.tensor([1, 5])
    for net in (standard, weighted):
        nn.functional.cross_entropy(net(x), y).backward()
        for pname, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert all(p.grad.abs().sum() > 0 for p in net.parameters() if p.dim() > 1)


@pytest.mark.parametrize(("name", "side"), [("vgg11_bn", 32), ("resnet50", 8)])
def test_ones_density_computes_the_plain_network(name, side):
    torch.manual_seed(0)
    net = build_model(name).eval()
    wnet = make_weighted(copy.deepcopy(net), "ones")
    assert len(list(ndwconv.weighted_layers(wnet))) == WEIGHTED_LAYERS[name][0]
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        torch.testing.assert_close(wnet(x), net(x), atol=1e-5, rtol=1e-4)


def test_vgg_larger_inputs_average_the_last_map():
    torch.manual_seed(0)
    net = build_model("vgg11_bn", num_classes=5).eval()
    x = torch.randn(2, 3, 64, 32)  # the features end at 2×1
    with torch.no_grad():
        assert net.features(x).shape[2:] == (2, 1)
        pooled = net.features(x).mean(dim=(2, 3))
        torch.testing.assert_close(net(x), net.classifier(pooled))
        assert net(x[:, :, :40, :50]).shape == (2, 5)  # 40×50 → 1×1 too


@pytest.mark.parametrize("ndim", [1, 3])
def test_other_dimensions(ndim):
    torch.manual_seed(0)
    resnet = build_model("resnet18", in_channels=2, num_classes=4, ndim=ndim).eval()
    with torch.no_grad():
        assert resnet(torch.randn(2, 2, *(6,) * ndim)).shape == (2, 4)
    vgg = meta_model("vgg11_bn", in_channels=2, num_classes=4, ndim=ndim)
    convs = {1: nn.Conv1d, 3: nn.Conv3d}[ndim]
    assert sum(isinstance(m, convs) for m in vgg.modules()) == 8
    if ndim == 1:  # a 32³ VGG forward would be too slow for this suite
        torch.manual_seed(0)
        vgg = build_model("vgg11_bn", in_channels=2, num_classes=4, ndim=1).eval()
        with torch.no_grad():
            assert vgg(torch.randn(2, 2, 40)).shape == (2, 4)
    make_weighted(resnet, "default")
    assert len(list(ndwconv.weighted_layers(resnet))) == 17


def test_resnet_4d_uses_weighted_nd_layers():
    net = ResNet("basic", (1, 1, 1, 1), in_channels=1, num_classes=3, ndim=4)
    make_weighted(net, "default")
    # every convolution is a WeightedConvNd (PyTorch has no 4-D one): the 3×3×3×3 ones get
    # the density, the three 1×1×1×1 shortcuts keep the ones density (= plain convolution)
    densities = sorted(
        (layer.kernel_size, str(layer.density)) for _, layer in ndwconv.weighted_layers(net)
    )
    assert densities == [((1,) * 4, "ones")] * 3 + [((3,) * 4, "default")] * (1 + 2 * 4)
    assert net.eval()(torch.randn(1, 1, 3, 3, 3, 3)).shape == (1, 3)


# --- initialisation -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vgg11_bn", "resnet18"])
def test_initialisation_is_deterministic_under_a_seed(name):
    states = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        states.append(build_model(name).state_dict())
    weights = [k for k, v in states[0].items() if v.dtype.is_floating_point and v.dim() > 1]
    assert weights
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not any(torch.equal(states[0][k], states[2][k]) for k in weights)


# --- registry and bad input ---------------------------------------------------------------


def test_registry_names():
    assert set(CIFAR_MODELS) <= set(MODELS)
    assert isinstance(meta_model("VGG16_BN"), VGG)
    assert isinstance(meta_model("resnet34"), ResNet)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: VGG(depth=12), "depth"),
        (lambda: VGG(ndim=4), "ndim"),
        (lambda: VGG(dropout=1.0), "dropout"),
        (lambda: build_model("vgg16_bn", num_classes=0), "num_classes"),
        (lambda: build_model("resnet18", in_channels=True), "in_channels"),
        (lambda: ResNet("wide"), "block"),
        (lambda: ResNet(blocks=(2, 2, 2)), "blocks"),
        (lambda: ResNet(ndim=0), "ndim"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_unknown_keyword_is_named():
    with pytest.raises(TypeError, match="width"):
        build_model("resnet18", width=32)


def test_bad_input_shapes_are_explained():
    vgg = meta_model("vgg11_bn")
    with pytest.raises(ValueError, match=r"≥ 32.*\(2, 3, 16, 16\)"):
        vgg(torch.empty(2, 3, 16, 16, device="meta"))
    resnet = meta_model("resnet18")
    with pytest.raises(ValueError, match=r"\(B, 3, \*, \*\).*\(2, 1, 32, 32\)"):
        resnet(torch.empty(2, 1, 32, 32, device="meta"))
