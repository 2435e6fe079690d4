"""``ndwconv.adapters.timeseries.apply`` and the strict receptive-field bound.

References are independent of the code under test: the fixed-weight convolution stacks
are recomputed with ``scipy.ndimage.correlate1d`` in float64 (torch's ``reflect`` padding
is scipy's ``mirror`` mode, ``replicate`` is ``nearest``, zero padding is ``constant``),
the receptive radius is measured from gradients, and the chunked (dask) and distributed
results are compared with the whole-series pass, which is itself checked against scipy.
"""

from __future__ import annotations

import copy
import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

xr = pytest.importorskip("xarray")
dask = pytest.importorskip("dask")
dsa = pytest.importorskip("dask.array")
ndimage = pytest.importorskip("scipy.ndimage")

from ndwconv import WeightedConv1d  # noqa: E402
from ndwconv.adapters.receptive import receptive_radius  # noqa: E402
from ndwconv.adapters.timeseries.apply import apply  # noqa: E402

# ----------------------------------------------------------------------------- networks


def _conv(cin, cout, k, *, dilation=1, mode="zeros", seed=0, stride=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    layer = nn.Conv1d(
        cin,
        cout,
        k,
        padding=dilation * (k - 1) // 2,
        dilation=dilation,
        padding_mode=mode,
        stride=stride,
    )
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / k)
        layer.bias.copy_(torch.randn(cout, generator=g) * 0.1)
    return layer.to(dtype)


def stack(dtype=torch.float64) -> nn.Sequential:
    """Three fixed-weight single-channel convolutions; receptive radius 2 + 2 + 1 = 5."""
    return nn.Sequential(
        _conv(1, 1, 5, mode="reflect", seed=1, dtype=dtype),
        nn.ReLU(),
        _conv(1, 1, 3, dilation=2, mode="replicate", seed=2, dtype=dtype),
        nn.Tanh(),
        _conv(1, 1, 3, seed=3, dtype=dtype),
    )


def _dilated(w: np.ndarray, d: int) -> np.ndarray:
    out = np.zeros(d * (len(w) - 1) + 1)
    out[::d] = w
    return out


def reference(net: nn.Sequential, x: np.ndarray) -> np.ndarray:
    """``stack()`` along the last axis, in float64 with scipy."""
    scipy_mode = {"reflect": "mirror", "replicate": "nearest", "zeros": "constant"}
    y = np.asarray(x, dtype=np.float64)
    for layer in net:
        if isinstance(layer, nn.Conv1d):
            w = _dilated(layer.weight.detach().double().numpy()[0, 0], layer.dilation[0])
            y = ndimage.correlate1d(y, w, axis=-1, mode=scipy_mode[layer.padding_mode])
            y = y + float(layer.bias.detach()[0])
        elif isinstance(layer, nn.ReLU):
            y = np.maximum(y, 0)
        else:
            y = np.tanh(y)
    return y


def series(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def labelled(values: np.ndarray) -> xr.DataArray:
    """(time, station): time is *not* the last dimension, so apply must transpose."""
    n_time, n_station = values.shape
    return xr.DataArray(
        values,
        dims=("time", "station"),
        coords={
            "time": np.arange(n_time) * 0.5,
            "station": [f"s{i}" for i in range(n_station)],
            "height": ("station", np.arange(n_station) * 10.0),
        },
        name="temperature",
        attrs={"units": "K", "source": "test"},
    )


# ----------------------------------------------------------------------- receptive field


def test_receptive_radius_moved_and_reexported():
    from ndwconv.recipes.models import receptive_radius as old
    from ndwconv.recipes.models.receptive import receptive_radius as older

    assert old is receptive_radius and older is receptive_radius


def _measured(net: nn.Module, size: int = 64) -> int:
    """Farthest input the centre output depends on, over several random inputs (an
    inactive ReLU hides a dependence for one input, not for all), of the network in eval
    mode (a training-mode dropout mask can hide the farthest tap for every input)."""
    x = torch.randn(16, 1, size, dtype=torch.float64, requires_grad=True)
    net.double().eval()(x)[:, 0, size // 2].sum().backward()
    support = np.flatnonzero(np.abs(x.grad[:, 0].numpy()).sum(0))
    return int(np.abs(support - size // 2).max())


@pytest.mark.parametrize(
    ("net", "exact"),
    [
        (stack(), True),
        (
            nn.Sequential(
                WeightedConv1d(1, 4, 5, padding=2, density="gaussian:1.0"),
                nn.ReLU(),
                WeightedConv1d(4, 1, 3, padding=1, density="table:0.7"),
            ),
            True,
        ),
        (nn.Sequential(_conv(1, 2, 3), nn.BatchNorm1d(2).eval(), nn.GELU(), _conv(2, 1, 7)), True),
        (nn.Sequential(nn.ReflectionPad1d(2), nn.Conv1d(1, 2, 5), nn.Softmax(dim=1)), False),
        (
            nn.Sequential(nn.Conv1d(1, 2, 3, padding="same"), nn.Dropout(), nn.MaxPool1d(3, 1, 1)),
            True,
        ),
        (
            nn.Sequential(_conv(1, 2, 3, stride=2), _conv(2, 1, 3), nn.Upsample(scale_factor=2)),
            False,
        ),
    ],
)
def test_strict_radius_bounds_the_measured_reach(net, exact):
    torch.manual_seed(0)
    strict = receptive_radius(net, ndim=1, strict=True)
    if not any(isinstance(m, nn.ReflectionPad1d) for m in net.modules()):
        assert strict == receptive_radius(net, ndim=1)  # the default mode's bound (no pads)
    measured = _measured(net)
    assert strict[0] == measured if exact else strict[0] >= measured


class Mine(nn.Module):
    def forward(self, x):
        return x - x.mean(-1, keepdim=True)


@pytest.mark.parametrize(
    ("net", "name", "kind", "why"),
    [
        (nn.Sequential(_conv(1, 4, 3), nn.GRU(4, 4)), "1", "GRU", "recurrent"),
        (
            nn.Sequential(nn.Sequential(nn.Conv1d(1, 4, 3), nn.LSTM(4, 4))),
            "0.1",
            "LSTM",
            "recurrent",
        ),
        (
            nn.Sequential(nn.Conv1d(1, 4, 3), nn.MultiheadAttention(4, 1)),
            "1",
            "MultiheadAttention",
            "attention",
        ),
        (
            nn.Sequential(nn.Conv1d(1, 4, 3), nn.Linear(16, 16)),
            "1",
            "Linear",
            "mixes all positions",
        ),
        (
            nn.Sequential(nn.Conv1d(1, 4, 3), nn.AdaptiveAvgPool1d(1)),
            "1",
            "AdaptiveAvgPool1d",
            "whole input",
        ),
        (
            nn.Sequential(nn.Conv1d(1, 4, 3), nn.InstanceNorm1d(4)),
            "1",
            "InstanceNorm1d",
            "all positions",
        ),
        (nn.Sequential(nn.Conv1d(1, 4, 3), nn.GroupNorm(2, 4)), "1", "GroupNorm", "all positions"),
        (
            nn.Sequential(nn.Conv1d(1, 4, 3, padding=1, padding_mode="circular")),
            "0",
            "Conv1d",
            "circular",
        ),
        (nn.Sequential(nn.Conv1d(1, 4, 3), nn.Conv2d(4, 4, 3)), "1", "Conv2d", "2-D layer"),
        (nn.Sequential(nn.Conv1d(1, 4, 3), Mine()), "1", "Mine", "unknown layer type"),
        (nn.Sequential(nn.Conv1d(1, 4, 3), nn.Softmax(dim=-1)), "1", "Softmax", "dim=-1"),
        (
            nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4, track_running_stats=False)),
            "1",
            "BatchNorm1d",
            "running statistics",
        ),
        (nn.Sequential(nn.Conv1d(1, 4, 3), nn.Upsample(size=10)), "1", "Upsample", "size"),
    ],
)
def test_strict_radius_names_the_layer_that_prevents_a_bound(net, name, kind, why):
    with pytest.raises(ValueError, match=rf"layer '{name}' \({kind}\) prevents a bound: .*{why}"):
        receptive_radius(net, ndim=1, strict=True)


def test_default_mode_unchanged_for_global_pooling():
    net = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.AdaptiveAvgPool1d(1))
    assert receptive_radius(net) is None
    with pytest.raises(ValueError, match="AdaptiveAvgPool1d"):
        receptive_radius(net, strict=True)


# ------------------------------------------------------------------------- in memory


def test_in_memory_equals_scipy_and_keeps_labels_and_inputs():
    values = series((40, 3))
    da = labelled(values)
    before = da.copy(deep=True)
    net = stack()
    net.train()
    state = copy.deepcopy(net.state_dict())

    out = apply(net, da)

    np.testing.assert_allclose(out.values, reference(net, values.T).T, rtol=0, atol=1e-12)
    assert out.dims == da.dims and out.name == da.name
    assert out.dtype == np.float64  # the network's own dtype
    for k in da.coords:
        xr.testing.assert_identical(out[k], da[k])
    assert {k: v for k, v in out.attrs.items() if k != "ndwconv_apply"} == da.attrs
    assert out.attrs["ndwconv_apply"].startswith("Sequential (")
    assert "receptive radius 5 samples along 'time'" in out.attrs["ndwconv_apply"]
    xr.testing.assert_identical(da, before)  # the input is untouched, attrs included
    as32 = apply(net, da, dtype="float32", device="cpu")  # runs on a float32 copy
    assert as32.dtype == np.float32 and next(net.parameters()).dtype == torch.float64
    np.testing.assert_allclose(as32.values, out.values, rtol=1e-5, atol=1e-6)
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_numpy_and_pandas_come_back_as_such():
    pd = pytest.importorskip("pandas")
    net = stack()
    values = series((2, 30))
    before = values.copy()
    out = apply(net, values)  # NumPy: the last axis is the series
    np.testing.assert_array_equal(values, before)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, reference(net, values), atol=1e-12)

    index = pd.date_range("2000-01-01", periods=30, freq="h")
    s = pd.Series(values[0], index=index, name="flow")
    got = apply(net, s)
    assert isinstance(got, pd.Series) and got.name == "flow" and got.index.equals(index)
    np.testing.assert_allclose(got.to_numpy(), reference(net, values[0]), atol=1e-12)

    frame = pd.DataFrame(values.T, index=index, columns=["a", "b"])
    got = apply(net, frame)
    assert isinstance(got, pd.DataFrame) and list(got.columns) == ["a", "b"]
    np.testing.assert_allclose(got.to_numpy(), reference(net, values).T, atol=1e-12)


def test_batches_of_series_and_progress(capsys):
    net = stack()
    values = series((5, 30), seed=5)
    out = apply(net, values, batch_size=2, progress=True)
    np.testing.assert_allclose(out, reference(net, values), atol=1e-12)
    assert "apply: 3/3 calls (100%)" in capsys.readouterr().err


def _channel_reference(layer: nn.Conv1d, x: np.ndarray) -> np.ndarray:
    """A zero-padded multi-channel Conv1d, x (..., C, L), as sums of correlate1d."""
    w = layer.weight.detach().double().numpy()
    b = layer.bias.detach().double().numpy()
    out = [
        sum(
            ndimage.correlate1d(x[..., c, :], w[o, c], axis=-1, mode="constant")
            for c in range(w.shape[1])
        )
        + b[o]
        for o in range(w.shape[0])
    ]
    return np.stack(out, axis=-2)


def test_channel_dim_keeps_its_coords_when_the_count_is_kept():
    values = series((2, 3, 50))  # (sensor, axis, time)
    da = xr.DataArray(
        values, dims=("sensor", "axis", "time"), coords={"axis": ["x", "y", "z"]}, name="acc"
    )
    same = _conv(3, 3, 5, seed=4)
    out = apply(same, da, channel_dim="axis")
    assert out.dims == da.dims and list(out["axis"].values) == ["x", "y", "z"]
    np.testing.assert_allclose(out.values, _channel_reference(same, values), atol=1e-12)
    lazy = apply(same, da.chunk({"time": 4, "axis": 1}), channel_dim="axis")
    np.testing.assert_allclose(lazy.values, out.values, atol=1e-12)

    fewer = _conv(3, 2, 3, seed=5)
    out = apply(fewer, da, channel_dim="axis")
    assert out.sizes == {"sensor": 2, "axis": 2, "time": 50} and "axis" not in out.coords
    np.testing.assert_allclose(out.values, _channel_reference(fewer, values), atol=1e-12)


# ---------------------------------------------------------------------------- dask


@pytest.mark.parametrize(
    "chunks",
    [
        {"time": 2, "station": 1},  # every chunk shorter than the halo (5)
        {"time": 5, "station": 3},  # exactly the halo
        {"time": (3, 1, 9, 4, 20, 2, 1, 20), "station": (2, 1)},  # uneven, some shorter
        {"time": 13, "station": 2},  # longer than the halo
        {"time": 60},  # one chunk
    ],
)
def test_dask_equals_in_memory_and_scipy(chunks):
    values = series((60, 3), seed=1)
    da = labelled(values)
    net = stack()
    lazy = apply(net, da.chunk(chunks))
    assert isinstance(lazy.data, dsa.Array)  # still lazy
    assert lazy.dims == da.dims and lazy.attrs == apply(net, da).attrs
    got = lazy.compute()
    np.testing.assert_allclose(got.values, reference(net, values.T).T, rtol=0, atol=1e-12)
    xr.testing.assert_identical(got, apply(net, da))


def test_dask_float32_model_matches_in_memory_within_float32_rounding():
    values = series((500, 2), seed=2)
    da = labelled(values)
    net = stack(torch.float32)
    got = apply(net, da.chunk({"time": 37})).compute()
    assert got.dtype == np.float32
    whole = apply(net, da)
    np.testing.assert_allclose(got.values, whole.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.values, reference(net, values.T).T, rtol=1e-4, atol=1e-5)


def test_strided_network_chunks_start_on_its_grid():
    # stride 2 then ×2 up-sampling: not shift-equivariant by odd shifts, so chunk starts
    # must be even; the chunks asked for here are odd
    net = nn.Sequential(
        _conv(1, 3, 3, stride=2, seed=6),
        nn.ReLU(),
        _conv(3, 3, 3, seed=7),
        nn.Upsample(scale_factor=2),
        _conv(3, 1, 3, seed=8),
    )
    da = xr.DataArray(series((2, 64), seed=3), dims=("run", "time"))
    whole = apply(net, da)
    for chunks in (3, 7, 11):
        lazy = apply(net, da.chunk({"time": chunks}))
        assert all(c % 2 == 0 for c in lazy.data.chunks[-1][:-1])
        np.testing.assert_allclose(lazy.values, whole.values, rtol=0, atol=1e-12)


def test_the_network_is_one_object_in_the_graph():
    net = nn.Sequential(_conv(1, 64, 9), nn.ReLU(), _conv(64, 1, 9))  # ~4 k weights
    lazy = apply(
        net, xr.DataArray(series((4, 200)), dims=("run", "time")).chunk({"run": 1, "time": 20})
    )
    graph = dict(lazy.data.__dask_graph__())
    holders = [k for k in graph if str(k).startswith("ndwconv-apply-model-")]
    assert len(holders) == 1
    model_bytes = len(pickle.dumps(graph[holders[0]]))
    tasks = [
        v
        for k, v in graph.items()
        if isinstance(k, tuple) and str(k[0]).startswith("ndwconv-apply-")
    ]
    assert len(tasks) == 4 * 10
    assert max(len(pickle.dumps(t)) for t in tasks) < model_bytes / 4  # refer, do not embed


def test_distributed_cluster_equals_local():
    """Two worker processes: the graph (network included) is pickled to the scheduler and
    the workers. They are forked rather than spawned only to start in well under a second
    instead of re-importing torch in each (~15 s on a busy 2-core machine)."""
    distributed = pytest.importorskip("distributed")
    values = series((90, 2), seed=4)
    da = labelled(values).chunk({"time": 4, "station": 1})
    net = stack(torch.float32)
    lazy = apply(net, da)
    local = lazy.compute(scheduler="threads")
    with (
        dask.config.set({"distributed.worker.multiprocessing-method": "fork"}),
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = client.compute(lazy.data).result()
        workers = client.run(os.getpid)
    assert len(set(workers.values()) - {os.getpid()}) == 2  # two other processes
    np.testing.assert_array_equal(remote, local.values)
    np.testing.assert_allclose(local.values, reference(net, values.T).T, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: apply(stack(), labelled(series((9, 2))), dim="t"),
            ValueError,
            "dim 't' is not a dimension of data",
        ),
        (
            lambda: apply(stack(), xr.DataArray(np.array(["a", "b"]), dims="time")),
            TypeError,
            "data must hold real numbers",
        ),
        (
            lambda: apply(stack(), xr.DataArray(np.ones(3, bool), dims="time")),
            TypeError,
            "data must hold real numbers",
        ),
        (lambda: apply(stack(), [1.0, 2.0]), TypeError, "data must be an xarray.DataArray"),
        (lambda: apply("net", series(9)), TypeError, "model must be a torch.nn.Module"),
        (
            lambda: apply(stack(), labelled(series((9, 2))), channel_dim="time"),
            ValueError,
            "channel_dim 'time'",
        ),
        (
            lambda: apply(stack(), labelled(series((9, 2))), channel_dim="x"),
            ValueError,
            "channel_dim 'x'",
        ),
        (lambda: apply(stack(), series(9), batch_size=0), ValueError, "batch_size"),
        (lambda: apply(stack(), series(9), dtype=torch.int32), TypeError, "dtype"),
        (lambda: apply(stack(), series((2, 0))), ValueError, "no samples"),
        (
            lambda: apply(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1)), series(9)),
            ValueError,
            r"'0' \(Conv2d\).*2-D layer",
        ),
        (
            lambda: apply(nn.Sequential(nn.Conv1d(1, 4, 3), nn.GRU(4, 4)), series(9)),
            ValueError,
            r"cannot be determined.*'1' \(GRU\)",
        ),
        (
            lambda: apply(nn.Sequential(nn.Conv1d(1, 1, 3)), series(9)),
            ValueError,
            r"changes the length of a series \(9 samples in, 7 out\)",
        ),
        (
            lambda: apply(nn.Conv1d(1, 2, 3, padding=1), series(9)),
            ValueError,
            "returns 2 channels from one; give channel_dim",
        ),
        (
            lambda: apply(nn.Conv1d(2, 1, 3, padding=1), series(9)),
            ValueError,
            r"fails on a series of shape \(1, 1, 9\)",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(make, error, match):
    with pytest.raises(error, match=match):
        make()


class Swish(nn.Module):  # a leaf of the user's own: acts on each sample alone
    def forward(self, x):
        return x * torch.sigmoid(x)


def test_radius_given_by_the_user_replaces_the_strict_check():
    net = nn.Sequential(_conv(1, 2, 5, seed=9), Swish(), _conv(2, 1, 3, seed=10))
    values = series((2, 50))
    with pytest.raises(ValueError, match=r"'1' \(Swish\).*pass radius="):
        apply(net, values)
    lazy = apply(net, xr.DataArray(values, dims=("r", "time")).chunk({"time": 7}), radius=3)
    assert "receptive radius 3 samples along 'time' (given)" in lazy.attrs["ndwconv_apply"]
    np.testing.assert_allclose(lazy.values, apply(net, values, radius=3), atol=1e-12)
    expected = values
    for layer in (net[0], None, net[2]):
        expected = (
            expected / (1 + np.exp(-expected)) if layer is None else _channel_ref(layer, expected)
        )
    np.testing.assert_allclose(lazy.values, expected, atol=1e-12)


def _channel_ref(layer: nn.Conv1d, x: np.ndarray) -> np.ndarray:
    """``_channel_reference`` for inputs without a channel axis when there is one channel."""
    x = x[..., None, :] if x.ndim == 2 else x
    y = _channel_reference(layer, x)
    return y[..., 0, :] if y.shape[-2] == 1 else y


def test_a_mixing_forward_or_a_too_small_radius_is_caught_by_probing():
    whole_mean = nn.Sequential(_conv(1, 1, 3), Mine())  # subtracts the mean over time
    with pytest.raises(ValueError, match=r"moved outputs .* beyond the radius given \(1\)"):
        apply(whole_mean, series((1, 40)), radius=1)
    with pytest.raises(ValueError, match=r"beyond the radius given \(2\)"):
        apply(stack(), series((1, 40)), radius=2)  # its radius is 5


class Hidden(nn.Module):  # children, but the forward mixes all positions besides
    def __init__(self):
        super().__init__()
        self.conv = _conv(1, 1, 3)

    def forward(self, x):
        return self.conv(x) - x.mean(-1, keepdim=True)


def test_a_forward_that_mixes_positions_outside_modules_is_refused():
    with pytest.raises(ValueError, match=r"beyond the radius bound from its layers \(1\)"):
        apply(Hidden(), series((1, 40)))
