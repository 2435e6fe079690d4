"""ndwconv.fuse_batchnorm: a BatchNorm folded into the convolution before it gives the
eval-mode outputs of the pair (float64 reference), for plain and weighted layers in 1-3
dimensions; nothing else is touched; BatchNorms that cannot be folded are refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ndwconv
from ndwconv import WeightedConv1d, WeightedConv2d, WeightedConv3d, fold, fuse_batchnorm

PLAIN = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
WEIGHTED = {1: WeightedConv1d, 2: WeightedConv2d, 3: WeightedConv3d}
NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _randomise(norm: nn.modules.batchnorm._BatchNorm, generator: torch.Generator) -> None:
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(norm.num_features, generator=generator))
        norm.running_var.copy_(torch.rand(norm.num_features, generator=generator) * 2 + 0.1)
        if norm.affine:
            norm.weight.copy_(torch.randn(norm.num_features, generator=generator))
            norm.bias.copy_(torch.randn(norm.num_features, generator=generator))


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_fused_pair_equals_conv_then_batchnorm(ndim, weighted, bias, affine):
    g = torch.Generator().manual_seed(ndim * 8 + weighted * 4 + bias * 2 + affine)
    conv = (WEIGHTED if weighted else PLAIN)[ndim](3, 5, 3, padding=1, bias=bias, groups=1)
    if weighted:
        conv.set_density(ndwconv.Table([0.6]))
    net = nn.Sequential(conv, NORM[ndim](5, affine=affine), nn.ReLU()).double().eval()
    _randomise(net[1], g)
    x = torch.randn(2, 3, *(7,) * ndim, generator=g, dtype=torch.float64)
    with torch.no_grad():
        # the reference, written out: conv, then (y - mean) / sqrt(var + eps) * γ + β
        y = net[0](x)
        shape = (1, -1) + (1,) * ndim
        bn = net[1]
        y = (y - bn.running_mean.reshape(shape)) / torch.sqrt(bn.running_var + bn.eps).reshape(
            shape
        )
        if affine:
            y = y * bn.weight.reshape(shape) + bn.bias.reshape(shape)
        reference = torch.relu(y)
        fused = fuse_batchnorm(net)
        got = fused(x)
    assert isinstance(fused[1], nn.Identity) and isinstance(net[1], NORM[ndim])  # a copy
    torch.testing.assert_close(got, reference, rtol=1e-10, atol=1e-10)
    assert sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules()) == 0


def test_dncnn_folded_and_fused_matches_in_float32():
    from ndwconv.recipes.models import DnCNN, odd_kernel_convs

    torch.manual_seed(0)
    model = ndwconv.convert(
        DnCNN(ndim=3, channels=1, depth=5, width=8, batch_norm=True), "default",
        where=odd_kernel_convs,
    )  # fmt: skip
    model.train()
    with torch.no_grad():  # some steps of running statistics, so they are not 0 and 1
        for _ in range(3):
            model(torch.rand(2, 1, 12, 12, 12))
    model.eval()
    x = torch.rand(1, 1, 16, 16, 16)
    served = fuse_batchnorm(fold(model))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in served.modules())
    assert not any(ndwconv.is_weighted(m) for m in served.modules())
    with torch.no_grad():
        torch.testing.assert_close(served(x), model(x), rtol=1e-5, atol=1e-5)


def test_only_a_convolution_directly_before_a_batchnorm_is_fused():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    fused = fuse_batchnorm(net)
    assert isinstance(fused[2], nn.BatchNorm2d)
    transposed = nn.Sequential(nn.ConvTranspose2d(4, 4, 3), nn.BatchNorm2d(4)).eval()
    assert isinstance(fuse_batchnorm(transposed)[1], nn.BatchNorm2d)


def test_batchnorms_that_cannot_be_fused_are_refused():
    training = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match=r"^1: the BatchNorm is in training mode"):
        fuse_batchnorm(training)
    no_stats = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, track_running_stats=False))
    with pytest.raises(ValueError, match="no running statistics"):
        fuse_batchnorm(no_stats.eval())
    with pytest.raises(TypeError, match=r"nn\.Module"):
        fuse_batchnorm("not a model")
    inplace = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)).eval()
    assert fuse_batchnorm(inplace, inplace=True) is inplace and isinstance(
        inplace[1], nn.Identity
    )


def _trained_dncnn(ndim: int, seed: int) -> nn.Module:
    from ndwconv.recipes.models import DnCNN, odd_kernel_convs

    torch.manual_seed(seed)
    model = ndwconv.convert(
        DnCNN(ndim=ndim, channels=1, depth=5, width=8, batch_norm=True), "default",
        where=odd_kernel_convs,
    )  # fmt: skip
    model.train()
    with torch.no_grad():  # running statistics away from 0 and 1
        for _ in range(3):
            model(torch.rand(2, 1, *(12,) * ndim))
    return model.eval()


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_for_inference_matches_the_network_in_float64(ndim, channels_last):
    model = _trained_dncnn(ndim, ndim).double()
    x = torch.rand(3, 1, *(17,) * ndim, dtype=torch.float64)
    with torch.no_grad():
        reference = model(x)
    fast = ndwconv.for_inference(model, channels_last=channels_last)
    assert isinstance(fast, ndwconv.InferenceModel) and not fast.training
    with torch.no_grad():
        out = fast(x)
    assert out.is_contiguous() and out.shape == reference.shape
    torch.testing.assert_close(out, reference, rtol=1e-10, atol=1e-10)
    # the original network is untouched: still weighted, still normalised
    assert any(ndwconv.is_weighted(m) for m in model.modules())
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for conv in (m for m in fast.modules() if isinstance(m, nn.modules.conv._ConvNd)):
        weight = conv.weight
        if channels_last and weight.dim() in formats:
            assert weight.is_contiguous(memory_format=formats[weight.dim()])
        else:
            assert weight.is_contiguous()


def test_for_inference_float32_within_1e_5_of_the_unfused_network():
    model = _trained_dncnn(3, 7)
    x = torch.rand(2, 1, 24, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(ndwconv.for_inference(model)(x), model(x), rtol=0, atol=1e-5)


def test_for_inference_compiled_matches():
    pytest.importorskip("torch._inductor")
    model = _trained_dncnn(2, 3)
    x = torch.rand(2, 1, 20, 20)
    fast = ndwconv.for_inference(model, compile=True)
    assert fast.compiled
    try:
        with torch.no_grad():
            out = fast(x)
    except Exception as error:  # only a missing C++ toolchain is a reason to skip
        if not any(w in type(error).__name__ for w in ("Inductor", "Backend", "Compile")):
            raise
        pytest.skip(f"torch.compile could not build here: {type(error).__name__}: {error}")
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), rtol=0, atol=1e-5)


def test_for_inference_refuses_bad_arguments():
    with pytest.raises(TypeError, match=r"model must be an nn\.Module"):
        ndwconv.for_inference("net")
    with pytest.raises(TypeError, match="channels_last must be True or False"):
        ndwconv.for_inference(nn.Conv2d(1, 1, 3), channels_last="yes")
    with pytest.raises(TypeError, match="compile must be True or False"):
        ndwconv.for_inference(nn.Conv2d(1, 1, 3), compile=1)
    with pytest.raises(ValueError, match="training mode"):
        ndwconv.for_inference(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))


def test_for_inference_holds_each_parameter_once():
    model = _trained_dncnn(2, 4)
    for compile_ in (False, True):
        fast = ndwconv.for_inference(model, compile=compile_)
        keys = list(fast.state_dict())
        assert keys and all(k.startswith("module.") for k in keys)
        assert len(list(fast.parameters())) == len(list(fast.module.parameters()))
