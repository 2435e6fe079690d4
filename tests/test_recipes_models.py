"""The recipe models: shapes, published parameter counts, conversion to weighted layers."""

import pytest
import torch
from torch import nn

import ndwconv
from ndwconv.recipes.models import (
    MODELS,
    DnCNN,
    NAFNet,
    build_model,
    count_parameters,
    odd_kernel_convs,
)

SMALL_NAFNET = {"width": 8, "enc_blocks": (1, 1), "middle_blocks": 1, "dec_blocks": (1, 1)}


def _spatial(ndim: int) -> tuple[int, ...]:
    return (11, 9, 7)[:ndim]


def _randomise_block_scales(model: nn.Module) -> None:
    """β = γ = 0 at init makes every NAFBlock the identity; make the blocks count."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                p.normal_()


# --- DnCNN ------------------------------------------------------------------------------


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("residual", [True, False])
def test_dncnn_keeps_shape(ndim, channels, residual):
    net = DnCNN(ndim=ndim, channels=channels, depth=3, width=4, residual=residual)
    x = torch.randn(2, channels, *_spatial(ndim))
    assert net(x).shape == x.shape


def test_dncnn_residual_subtracts_body():
    net = DnCNN(depth=3, width=4).eval()
    x = torch.randn(1, 1, 8, 8)
    torch.testing.assert_close(net(x), x - net.body(x))
    plain = DnCNN(depth=3, width=4, residual=False).eval()
    plain.load_state_dict(net.state_dict())
    torch.testing.assert_close(plain(x), net.body(x))


def test_dncnn_layers_are_plain_torch():
    net = DnCNN(ndim=3, depth=4, width=4)
    kinds = {type(m) for m in net.body}
    assert kinds == {nn.Conv3d, nn.BatchNorm3d, nn.ReLU}
    assert net.config == {
        "ndim": 3,
        "channels": 1,
        "depth": 4,
        "width": 4,
        "kernel_size": 3,
        "batch_norm": True,
        "residual": True,
    }
    assert not any(isinstance(m, nn.BatchNorm2d) for m in DnCNN(batch_norm=False, depth=3).body)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"ndim": True}, "ndim"),
        ({"ndim": 0}, "ndim"),
        ({"depth": 1}, "depth"),
        ({"width": 0}, "width"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"channels": 0}, "channels"),
        ({"depth": 2.5}, "depth"),
        ({"kernel_size": (3, 3, 1)}, "kernel_size"),  # three sizes for 2 axes
        ({"kernel_size": (3, 2)}, "kernel_size"),
        ({"kernel_size": (3, True)}, "kernel_size"),
    ],
)
def test_dncnn_rejects_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        DnCNN(**kwargs)


def test_dncnn_in_plane_kernel_filters_each_slice_as_a_2d_network():
    """A 3-D DnCNN with (3, 3, 1) kernels is a 2-D DnCNN applied to every slice along the
    last axis: the 2-D twin gets the same weights (the unit last axis dropped)."""
    torch.manual_seed(0)
    net3 = DnCNN(ndim=3, depth=4, width=5, kernel_size=(3, 3, 1)).eval()
    net2 = DnCNN(ndim=2, depth=4, width=5, kernel_size=3).eval()
    with torch.no_grad():
        for mod in net3.body:  # non-trivial batch-norm statistics
            if isinstance(mod, nn.BatchNorm3d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
        state = {k: v.squeeze(-1) if v.dim() == 5 else v for k, v in net3.state_dict().items()}
    net2.load_state_dict(state)
    x = torch.randn(2, 1, 9, 8, 5, dtype=torch.float64)
    net3, net2 = net3.double(), net2.double()
    with torch.no_grad():
        whole = net3(x)
        slices = torch.stack([net2(x[..., k]) for k in range(x.shape[-1])], dim=-1)
    torch.testing.assert_close(whole, slices, rtol=1e-12, atol=1e-12)
    assert net3.config["kernel_size"] == [3, 3, 1]
    assert DnCNN(ndim=2, depth=2, width=2, kernel_size=[3, 3]).config["kernel_size"] == 3


def test_dncnn_rejects_wrong_input_shape():
    with pytest.raises(ValueError, match="expects input"):
        DnCNN(ndim=2, channels=1, depth=2, width=2)(torch.randn(1, 3, 8, 8))


def test_dncnn_s_parameter_count():
    # Layer list of DnCNN-S from Zhang et al. 2017 ("Beyond a Gaussian Denoiser"), Section
    # III-A: depth 17; layer 1 has 64 filters 3×3×c + ReLU; layers 2..16 have 64 filters
    # 3×3×64 + BatchNorm + ReLU; layer 17 has c filters 3×3×64; c = 1 for greyscale.
    # Our middle convolutions have no bias (BatchNorm's β already shifts each channel); the
    # last convolution keeps its bias, as in the reference PyTorch implementation (KAIR)
    # — one parameter that lets the noise estimate have a non-zero mean.
    first = 1 * 64 * 3 * 3 + 64
    middle = 15 * (64 * 64 * 3 * 3 + 2 * 64)  # weights + BatchNorm γ, β
    last = 64 * 1 * 3 * 3 + 1
    expected = first + middle + last
    assert expected == 556_097
    net = DnCNN(ndim=2, channels=1, depth=17, width=64)
    assert count_parameters(net) == expected
    # ≈ 0.56 M, the size usually quoted for DnCNN-S (the count follows from the paper's
    # layer list; we did not find the number printed in the paper itself).
    assert round(count_parameters(net) / 1e6, 2) == 0.56


# --- NAFNet -----------------------------------------------------------------------------


def test_nafnet_default_parameter_count():
    # Published figure: "There are 29.16M parameters in NAFNet-width32 for the denoising
    # task" — the NAFNet authors (mayorx) in github.com/megvii-research/NAFNet issue #60,
    # counted as sum(p.numel() for p in net.parameters()). Block counts from the official
    # options/train/SIDD/NAFNet-width32.yml: width 32, enc [2, 2, 4, 8], middle 12,
    # dec [2, 2, 2, 2]. The paper itself reports MACs only, not parameters.
    net = NAFNet()
    assert net.config["width"] == 32
    assert net.config["enc_blocks"] == (2, 2, 4, 8)
    assert net.config["middle_blocks"] == 12
    assert net.config["dec_blocks"] == (2, 2, 2, 2)

    # Independent count by hand. One NAFBlock with c channels: LayerNorms 2·2c; 1×1 c→2c
    # 2c²+2c; depthwise 3×3 on 2c: 18c+2c; SCA 1×1 c→c: c²+c; 1×1 c→c: c²+c; 1×1 c→2c:
    # 2c²+2c; 1×1 c→c: c²+c; β, γ: 2c.  Total 7c² + 33c.
    def block(c):
        return 7 * c * c + 33 * c

    expected = (3 * 32 * 9 + 32) + (32 * 3 * 9 + 3)  # intro, ending
    c = 32
    for n in (2, 2, 4, 8):
        expected += n * block(c) + (2 * c * c * 4 + 2 * c)  # blocks, 2×2 down conv c→2c
        c *= 2
    expected += 12 * block(c)
    for n in (2, 2, 2, 2):
        expected += c * 2 * c  # 1×1 up conv c→2c without bias, then PixelShuffle
        c //= 2
        expected += n * block(c)
    assert count_parameters(net) == expected == 29_159_715
    assert round(count_parameters(net) / 1e6, 2) == 29.16


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(37, 45), (16, 16), (1, 3)])
def test_nafnet_keeps_shape(channels, size):
    net = NAFNet(channels=channels, **SMALL_NAFNET)
    _randomise_block_scales(net)
    x = torch.randn(2, channels, *size)
    assert net(x).shape == x.shape


def test_nafnet_padding_only_crops():
    # An input of a valid size gives the same result as the top-left crop of the padded run.
    net = NAFNet(channels=1, **SMALL_NAFNET).eval()
    _randomise_block_scales(net)
    x = torch.randn(1, 1, 13, 10)
    padded = torch.nn.functional.pad(x, (0, 2, 0, 3))
    torch.testing.assert_close(net(x), net(padded)[..., :13, :10])


def test_nafnet_fresh_blocks_are_identity():
    net = NAFNet(channels=1, **SMALL_NAFNET).eval()
    x = torch.randn(1, 1, 8, 8)
    block = net.encoders[0][0]
    features = torch.randn(1, 8, 8, 8)
    torch.testing.assert_close(block(features), features)
    assert net(x).shape == x.shape


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"channels": 0}, "channels"),
        ({"width": 0}, "width"),
        ({"enc_blocks": (1, 1), "dec_blocks": (1,)}, "same length"),
        ({"enc_blocks": (1, -1), "dec_blocks": (1, 1)}, r"enc_blocks\[1\]"),
        ({"middle_blocks": -1}, "middle_blocks"),
        ({"dropout": 1.0}, "dropout"),
        ({"width": 3, "dw_expand": 1}, "dw_expand"),
    ],
)
def test_nafnet_rejects_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        NAFNet(**kwargs)


# --- conversion to weighted layers ------------------------------------------------------


def test_odd_kernel_convs():
    assert odd_kernel_convs("a", nn.Conv2d(2, 2, 3))
    assert odd_kernel_convs("a", nn.Conv3d(2, 2, 5))
    assert odd_kernel_convs("a", nn.Conv2d(2, 2, (1, 3)))
    assert not odd_kernel_convs("a", nn.Conv2d(2, 2, 1))
    assert not odd_kernel_convs("a", nn.Conv2d(2, 2, 2))
    assert not odd_kernel_convs("a", nn.Conv2d(2, 2, (3, 2)))
    assert not odd_kernel_convs("a", nn.ReLU())


def test_nafnet_2x2_downsampling_is_skipped_by_convert_and_refused_when_strict():
    net = NAFNet(channels=1, **SMALL_NAFNET)
    _, report = ndwconv.convert(net, "default", return_report=True)
    downs = [r for r in report.skipped if r.name.startswith("downs")]
    assert [r.kernel_size for r in downs] == [(2, 2)] * len(net.downs) and downs
    assert all("cannot describe" in r.reason for r in downs)
    with pytest.raises(ValueError, match="downs"):
        ndwconv.convert(net, "default", strict=True)


def test_nafnet_converts_intro_ending_and_depthwise():
    net = NAFNet(channels=3, **SMALL_NAFNET)
    _randomise_block_scales(net)
    wnet, report = ndwconv.convert(net, "default", where=odd_kernel_convs, return_report=True)
    n_blocks = 1 + 1 + 1 + 1 + 1  # two encoders, middle, two decoders
    depthwise = [r.name for r in report.replaced if r.name.endswith("conv2")]
    assert len(depthwise) == n_blocks
    assert sorted(r.name for r in report.replaced) == sorted(["intro", "ending", *depthwise])
    assert not report.skipped
    for name, module in wnet.named_modules():
        if isinstance(module, nn.Conv2d) and name.endswith("conv2"):
            assert ndwconv.is_weighted(module) and module.groups == module.in_channels
        elif isinstance(module, nn.Conv2d) and name not in ("intro", "ending"):
            # 1×1 and the 2×2 down-sampling convolutions stay plain
            assert type(module) is nn.Conv2d and max(module.kernel_size) <= 2, name

    x = torch.randn(2, 3, 19, 21)
    out = wnet(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    for name, layer in ndwconv.weighted_layers(wnet):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0, name


def test_nafnet_with_ones_density_matches_plain():
    net = NAFNet(channels=3, **SMALL_NAFNET).eval()
    _randomise_block_scales(net)
    wnet = ndwconv.convert(net, ndwconv.Ones(), where=odd_kernel_convs)
    assert len(list(ndwconv.weighted_layers(wnet))) == 7
    x = torch.randn(1, 3, 17, 23)
    torch.testing.assert_close(wnet(x), net(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_dncnn_with_ones_density_matches_plain(ndim):
    net = DnCNN(ndim=ndim, channels=2, depth=4, width=4).eval()
    wnet, report = ndwconv.convert(net, ndwconv.Ones(), where=odd_kernel_convs, return_report=True)
    assert len(report.replaced) == 4 and not report.skipped
    x = torch.randn(2, 2, *_spatial(ndim))
    torch.testing.assert_close(wnet(x), net(x), atol=1e-5, rtol=1e-5)
    wnet.train()
    wnet(x).square().mean().backward()


# --- registry ---------------------------------------------------------------------------


def test_build_model():
    assert {"dncnn", "nafnet"} <= set(MODELS)  # other tasks register theirs too
    net = build_model("dncnn", ndim=3, width=8, depth=3)
    assert isinstance(net, DnCNN) and net.config["ndim"] == 3
    x = torch.randn(1, 1, 6, 6, 6)
    assert net(x).shape == x.shape
    assert isinstance(build_model("NAFNet", **SMALL_NAFNET), NAFNet)


def test_build_model_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match=r"'unet'.*dncnn, .*nafnet"):
        build_model("unet")


def test_build_model_unknown_keyword_is_named():
    with pytest.raises(TypeError, match="wdth"):
        build_model("dncnn", wdth=8)


def test_build_model_bad_value_is_named():
    with pytest.raises(ValueError, match="depth"):
        build_model("dncnn", depth=1)


def test_count_parameters_skips_frozen():
    net = DnCNN(depth=2, width=2)
    total = count_parameters(net)
    net.body[0].weight.requires_grad_(False)
    assert count_parameters(net) == total - net.body[0].weight.numel()


@pytest.mark.parametrize(
    "name, kwargs", [("dncnn", {"depth": 4, "width": 8}), ("nafnet", SMALL_NAFNET)]
)
def test_init_is_deterministic(name, kwargs):
    torch.manual_seed(0)
    first = build_model(name, **kwargs).state_dict()
    torch.manual_seed(0)
    second = build_model(name, **kwargs).state_dict()
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)


def test_denoiser_description_with_per_axis_kernel_rebuilds_and_size_bound_counts_taps():
    from ndwconv.recipes.tasks.denoise import MAX_PARAMETERS, model_from_description

    model = {"name": "dncnn", "ndim": 3, "depth": 3, "width": 4, "kernel_size": [3, 3, 1]}
    net = model_from_description({"model": model, "method": "standard", "density": None})
    assert [m.kernel_size for m in net.modules() if isinstance(m, nn.Conv3d)] == [(3, 3, 1)] * 3
    # width² · depth · taps: 512² · 24 · 15³ ≈ 2e10 is over the bound; 3³ taps would not be
    big = {"name": "dncnn", "ndim": 3, "depth": 24, "width": 512}
    assert 512**2 * 24 * 15**3 > MAX_PARAMETERS > 512**2 * 24 * 3**3
    with pytest.raises(ValueError, match="parameters"):
        model_from_description(
            {"model": {**big, "kernel_size": [15, 15, 15]}, "method": "standard"}
        )
