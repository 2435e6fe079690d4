"""convert / fold / freeze / param_groups on small real architectures."""

import copy

import pytest
import torch
from models import MODELS, grouped_net, resnet_like, vgg_like
from torch import nn

import ndwconv as nw

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def baked_reference(model: nn.Module, density: nw.Density) -> nn.Module:
    """The original model with every non-pointwise conv weight multiplied by Φ by hand."""
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for m in ref.modules():
            if type(m) in CONV_TYPES and any(k > 1 for k in m.kernel_size):
                phi = density.build(m.kernel_size, m.dilation).to(m.weight.dtype)
                m.weight.mul_(phi)
    return ref


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_convert_then_fold_is_equivalent(name, mode):
    build, shape = MODELS[name]
    torch.manual_seed(0)
    model = build().train(mode == "train")
    x = torch.randn(shape)
    density = nw.Gaussian(1.1)

    weighted, report = nw.convert(model, density, return_report=True)
    n_convs = sum(
        type(m) in CONV_TYPES and any(k > 1 for k in m.kernel_size) for m in model.modules()
    )
    assert len(report.replaced) == n_convs > 0
    assert weighted.training == model.training
    assert all(
        type(m) not in CONV_TYPES or all(k == 1 for k in m.kernel_size) for m in weighted.modules()
    )

    folded = nw.fold(weighted)
    assert not any(nw.is_weighted(m) for m in folded.modules())
    ref = baked_reference(model, density)
    y_ref = ref(x)  # in train mode BatchNorm normalises with batch statistics: same for all three
    torch.testing.assert_close(weighted(x), y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(folded(x), y_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_ones_density_reproduces_the_plain_model(name):
    build, shape = MODELS[name]
    torch.manual_seed(1)
    model = build().eval()
    x = torch.randn(shape)
    torch.testing.assert_close(nw.convert(model, nw.Ones())(x), model(x), rtol=1e-6, atol=1e-6)


def test_convert_keeps_parameters_rng_and_mode():
    torch.manual_seed(2)
    model = resnet_like().eval()
    state = torch.get_rng_state()
    same = nw.convert(model, "default", inplace=True)
    assert torch.equal(torch.get_rng_state(), state), "convert must not consume random numbers"
    assert same is model and not model.training
    conv = model[0]
    assert isinstance(conv, nw.WeightedConv2d) and not conv.training
    # the very same parameter objects: an optimizer built before convert still updates them
    copied = nw.convert(resnet_like(), "default")
    assert isinstance(copied[0], nw.WeightedConv2d)


def test_optimizer_built_before_inplace_convert_still_trains():
    torch.manual_seed(3)
    model = vgg_like()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    nw.convert(model, "default", inplace=True)
    w0 = model[0].weight.detach().clone()
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    opt.step()
    assert not torch.equal(model[0].weight, w0)


def test_where_pointwise_and_per_layer_density():
    model = grouped_net()
    out, report = nw.convert(model, "default", where="1", return_report=True)
    assert [type(m).__name__ for m in out] == ["Conv2d", "WeightedConv2d", "Conv2d", "Conv2d"]
    assert [r.name for r in report.replaced] == ["1"]

    out, report = nw.convert(
        model,
        lambda name, m: "ones" if m.groups == 1 else nw.Gaussian(1.0),
        include_pointwise=True,
        return_report=True,
    )
    assert [str(m.density) for m in out] == ["ones", "gaussian:1", "gaussian:1", "ones"]
    assert len(report.skipped) == 0

    out, report = nw.convert(
        model, "default", where=lambda name, m: m.groups > 1, return_report=True
    )
    assert [r.name for r in report.replaced] == ["1", "2"]
    assert "2 replaced" in str(report)

    _, report = nw.convert(model, "default", return_report=True)
    assert [(r.name, r.reason) for r in report.skipped] == [("3", "pointwise kernel")]


def test_subclasses_are_skipped_and_reported():
    class MyConv(nn.Conv2d):
        pass

    model = nn.Sequential(MyConv(1, 1, 3))
    out, report = nw.convert(model, "default", return_report=True)
    assert type(out[0]) is MyConv and report.skipped[0].reason == "subclass of a conv layer"


def test_fold_keeps_four_d_layers_weighted_with_baked_weights():
    model = nn.Sequential(nw.WeightedConvNd(4, 1, 2, 3, padding=1, density=nw.Table([0.5])))
    x = torch.randn(1, 1, 4, 5, 5, 5)
    folded = nw.fold(model)
    assert isinstance(folded[0], nw.WeightedConvNd) and folded[0].density == nw.Ones()
    torch.testing.assert_close(folded(x), model(x))


def test_freeze_learned_densities():
    torch.manual_seed(4)
    model = nw.convert(vgg_like(), nw.Learned(nw.Table.default()))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1 and p.numel() == 1:
                p.add_(0.1)
    x = torch.randn(2, 3, 16, 16)
    model.eval()
    y = model(x)
    n_before = sum(p.numel() for p in model.parameters())
    assert nw.freeze(model, inplace=True) is model
    assert all(isinstance(layer.density, nw.Table) for _, layer in nw.weighted_layers(model))
    assert sum(p.numel() for p in model.parameters()) == n_before - 2 * 3
    torch.testing.assert_close(model(x), y)


def test_param_groups_split():
    model = nw.convert(resnet_like(), nw.Learned([0.7]))
    groups = nw.param_groups(model, density_lr=1e-2, weight_decay=0.0)
    dens = {id(p) for p in groups[1]["params"]}
    assert groups[1]["lr"] == 1e-2 and groups[1]["weight_decay"] == 0.0
    assert len(groups[1]["params"]) == 2 * len(list(nw.weighted_layers(model)))
    assert not dens & {id(p) for p in groups[0]["params"]}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="density_lr"):
        nw.param_groups(model, density_lr=0)


def test_converted_state_dict_loads_into_plain_model_and_back():
    torch.manual_seed(5)
    plain = resnet_like()
    weighted = nw.convert(resnet_like(), "default")
    weighted.load_state_dict(plain.state_dict(), strict=True)
    plain2 = resnet_like()
    plain2.load_state_dict(weighted.state_dict(), strict=True)


def test_errors():
    with pytest.raises(TypeError, match="model"):
        nw.convert("resnet", "default")
    with pytest.raises(TypeError, match="where"):
        nw.convert(vgg_like(), "default", where=[1, 2])
    with pytest.raises(ValueError, match="no profile for kernel size 9"):
        nw.convert(nn.Sequential(nn.Conv2d(1, 1, 9)), "default", strict=True)
    with pytest.raises(TypeError, match=r"returned 0\.7 for layer '0'.*density must be"):
        nw.convert(nn.Sequential(nn.Conv2d(1, 1, 3)), lambda name, conv: 0.7)
    for function in (nw.convert, nw.fold, nw.freeze):
        with pytest.raises(TypeError, match="inplace must be True or False"):
            function(nn.Conv2d(1, 1, 3), inplace="yes")
    with pytest.raises(TypeError, match="strict must be True or False"):
        nw.convert(nn.Conv2d(1, 1, 3), strict=1)


def test_compiled_training_step_has_no_graph_break_and_matches_eager():
    torch.manual_seed(6)
    model = nw.convert(resnet_like(), nw.Learned(nw.Table.default()))
    x = torch.randn(2, 3, 16, 16)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    y_c = compiled(x)
    y_c.sum().backward()
    grads_c = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    y_e = model(x)
    y_e.sum().backward()
    torch.testing.assert_close(y_c, y_e)
    for gc, p in zip(grads_c, model.parameters(), strict=True):
        torch.testing.assert_close(gc, p.grad)


@pytest.mark.slow
def test_inductor_compiled_inference_matches_eager():
    torch.manual_seed(7)
    model = nw.convert(grouped_net(), "default").eval()
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(
            torch.compile(model, fullgraph=True)(x), model(x), rtol=1e-5, atol=1e-5
        )


def test_folded_model_traces_and_exports_to_onnx():
    onnx = pytest.importorskip("onnx")
    torch.manual_seed(8)
    model = nw.convert(vgg_like(), "default").eval()
    folded = nw.fold(model)
    x = torch.randn(1, 3, 16, 16)
    traced = torch.jit.trace(folded, x)
    torch.testing.assert_close(traced(x), model(x), rtol=1e-5, atol=1e-5)
    program = torch.onnx.export(folded, (x,), dynamo=True, verbose=False)
    proto = program.model_proto
    onnx.checker.check_model(proto)
    assert sum(node.op_type == "Conv" for node in proto.graph.node) == 3
    # run the exported graph with ONNX's own reference evaluator
    from onnx.reference import ReferenceEvaluator

    (y_onnx,) = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(y_onnx), model(x), rtol=1e-4, atol=1e-5)


def test_convert_keeps_dtype_and_fold_keeps_requires_grad():
    model = vgg_like().double()
    model[0].weight.requires_grad_(False)
    weighted = nw.convert(model, "default")
    assert weighted[0].phi().dtype == torch.float64 and weighted[0].weight.dtype == torch.float64
    folded = nw.fold(weighted)
    assert folded[0].weight.dtype == torch.float64 and not folded[0].weight.requires_grad
    assert folded[3].weight.requires_grad


# -- layers a density cannot describe: skipped and reported, or strict=True raises ----------

TABLE_3 = torch.tensor([0.7, 1.0, 0.7])  # Table.default()'s 3-tap profile, written out


def stem_and_wide_net() -> nn.Module:
    """An even 4×4 patchify stem and a 9×9 conv, which Table.default() cannot describe."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 4, stride=4),  # 0: even kernel
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),  # 2: converted
        nn.Conv2d(8, 8, 9, padding=4),  # 3: no profile for size 9
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # 4: converted
        nn.Conv2d(8, 4, 1),  # 5: pointwise
    )


def test_convert_skips_and_reports_layers_the_density_cannot_describe():
    torch.manual_seed(9)
    model = stem_and_wide_net()
    weighted, report = nw.convert(model, "default", return_report=True)
    assert [type(m).__name__ for m in weighted] == [
        "Conv2d",
        "ReLU",
        "WeightedConv2d",
        "Conv2d",
        "WeightedConv2d",
        "Conv2d",
    ]
    assert [r.name for r in report] == ["0", "2", "3", "4", "5"]  # model order
    assert [r.name for r in report.replaced] == ["2", "4"]
    skipped = {r.name: r for r in report.skipped}
    assert set(skipped) == {"0", "3", "5"}
    assert skipped["0"].reason.startswith("density default cannot describe this kernel: ")
    assert "need odd kernel sizes" in skipped["0"].reason and "size 4" in skipped["0"].reason
    assert "no profile for kernel size 9" in skipped["3"].reason
    assert skipped["0"].density == skipped["3"].density == "default"
    assert skipped["5"].reason == "pointwise kernel" and skipped["5"].density is None
    assert "no profile for kernel size 9" in str(report) and "2 replaced, 3 skipped" in str(report)

    # the converted layers compute conv(x, W ⊙ Φ); the skipped ones are the plain layers
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for i in (2, 4):
            ref[i].weight.mul_(torch.outer(TABLE_3, TABLE_3))
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(weighted(x), ref(x))


@pytest.mark.parametrize("inplace", [False, True])
def test_convert_strict_names_every_layer_and_changes_nothing(inplace):
    model = stem_and_wide_net()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError) as info:
        nw.convert(model, "default", strict=True, inplace=inplace)
    message = str(info.value)
    assert "2 selected layer(s)" in message
    assert "layer(s) '0' (Conv2d, kernel (4, 4)" in message and "odd kernel sizes" in message
    assert "layer(s) '3' (Conv2d, kernel (9, 9)" in message and "kernel size 9" in message
    assert "'2'" not in message and "'5'" not in message
    assert not any(nw.is_weighted(m) for m in model.modules())
    assert not any(hasattr(m, "phi") for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # strict only concerns fit: the selected layers that fit convert as usual
    out = nw.convert(model, "default", where=["2", "4", "5"], strict=True)
    assert [r for r, m in enumerate(out) if nw.is_weighted(m)] == [2, 4]


def test_density_callable_that_does_not_fit_is_reported_with_its_spec():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, (3, 5)))
    _, report = nw.convert(model, lambda name, conv: nw.Table([0.5]), return_report=True)
    (skipped,) = report.skipped
    assert skipped.name == "1" and skipped.density == "table:0.5"
    assert "needs 2 (outermost first" in skipped.reason
    with pytest.raises(ValueError, match=r"layer\(s\) '1' \(Conv2d, kernel \(3, 5\), "):
        nw.convert(model, lambda name, conv: nw.Table([0.5]), strict=True)


# -- one inplace convention for convert, fold and freeze -------------------------------------


def _learned_model() -> nn.Module:
    torch.manual_seed(10)
    model = nw.convert(vgg_like(), nw.Learned(nw.Table.default()))
    with torch.no_grad():
        for _, layer in nw.weighted_layers(model):
            for p in layer.phi.parameters():
                p.add_(0.1)
    return model.eval()


SURGERY = {
    "convert": (lambda: vgg_like().eval(), lambda m, **kw: nw.convert(m, nw.Ones(), **kw)),
    "fold": (_learned_model, nw.fold),
    "freeze": (_learned_model, nw.freeze),
}


@pytest.mark.parametrize("name", sorted(SURGERY))
def test_surgery_returns_a_copy_by_default(name):
    build, surgery = SURGERY[name]
    model = build()
    modules = [(m, type(m)) for m in model.modules()]
    params = list(model.named_parameters())
    state = copy.deepcopy(model.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        y = model(x)
        out = surgery(model)
        assert out is not model
        # the original: same module objects of the same classes, same parameter objects
        # holding the same values, same outputs
        assert [(m, type(m)) for m in model.modules()] == modules
        assert list(model.named_parameters()) == params
        assert model.state_dict().keys() == state.keys()
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
        torch.testing.assert_close(model(x), y, rtol=0, atol=0)
        # the copy shares no parameter with it, and was changed
        assert not {id(p) for p in out.parameters()} & {id(p) for _, p in params}
        assert [type(m) for m in out.modules()] != [t for _, t in modules] or name == "freeze"
        torch.testing.assert_close(out(x), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SURGERY))
def test_surgery_inplace_returns_the_model_itself(name):
    build, surgery = SURGERY[name]
    model = build()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        y = model(x)
        assert surgery(model, inplace=True) is model
        torch.testing.assert_close(model(x), y, rtol=1e-5, atol=1e-5)
    if name == "convert":
        assert nw.is_weighted(model[0])
    elif name == "fold":
        assert not any(nw.is_weighted(m) for m in model.modules())
    else:
        assert all(isinstance(layer.density, nw.Table) for _, layer in nw.weighted_layers(model))


def test_freeze_by_default_keeps_the_learned_original():
    model = _learned_model()
    frozen = nw.freeze(model)
    assert all(isinstance(layer.density, nw.Learned) for _, layer in nw.weighted_layers(model))
    assert all(isinstance(layer.density, nw.Table) for _, layer in nw.weighted_layers(frozen))


@pytest.mark.parametrize(
    "build",
    [
        lambda: nw.WeightedConv2d(2, 4, 3, padding=1, density="default"),
        lambda: nw.WeightedConv2d(2, 4, 3, padding=1, density=nw.Learned([0.6])),
        lambda: nw.WeightedConvNd(2, 2, 4, 3, padding=1, density="gaussian:1.0"),
        lambda: nw.convert(nn.Conv2d(2, 4, 3, padding=1), "default"),
    ],
    ids=["fixed", "learned", "convnd", "converted"],
)
def test_fold_leaves_nothing_from_ndwconv_on_the_plain_conv(build):
    layer = build()
    x = torch.randn(1, 2, 6, 6)
    layer(x).sum().backward()  # fills the training-time state
    layer.eval()
    with torch.no_grad():
        y = layer(x)  # and the inference cache
    folded = nw.fold(layer)
    plain = nn.Conv2d(2, 4, 3, padding=1)
    assert type(folded) is nn.Conv2d
    assert vars(folded).keys() == vars(plain).keys()
    assert folded._modules.keys() == plain._modules.keys() == set()
    assert folded._parameters.keys() == plain._parameters.keys()
    assert folded._buffers.keys() == plain._buffers.keys()
    with torch.no_grad():
        torch.testing.assert_close(folded(x), y)
