"""``ndwconv.adapters.timeseries.smooth`` against independent references.

The references: ``scipy.ndimage.correlate1d`` with weights computed here from the
profile's formula (``exp(-d²/2σ²)``, tables, ones) for the filter and its edge modes; a
direct float64 loop over ``numpy.pad``-extended windows for the ``mask`` policy
(normalised convolution); the in-memory result for dask-backed arrays.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import math

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pd = pytest.importorskip("pandas")
ndimage = pytest.importorskip("scipy.ndimage")

from ndwconv.adapters.timeseries import smooth  # noqa: E402
from ndwconv.density import as_density  # noqa: E402

smooth_mod = importlib.import_module("ndwconv.adapters.timeseries.smooth")

MODES = ("reflect", "nearest", "mirror", "wrap", "constant")
NUMPY_PAD = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap"}


def gaussian_weights(sigma: float, size: int) -> np.ndarray:
    """exp(-d²/2σ²) at the offsets from the window's midpoint, normalised to sum 1."""
    d = np.arange(size) - (size - 1) / 2
    w = np.exp(-0.5 * (d / sigma) ** 2)
    return w / w.sum()


def mask_reference(x: np.ndarray, w: np.ndarray, mode: str, cval: float) -> np.ndarray:
    """Normalised convolution of a 1-D float64 series, one output at a time."""
    k = w.size
    r = k // 2
    pads = (r, k - 1 - r)
    if mode == "constant":
        padded = np.pad(x, pads, mode="constant", constant_values=cval)
    else:
        padded = np.pad(x, pads, mode=NUMPY_PAD[mode])
    out = np.empty(x.size)
    for i in range(x.size):
        window = padded[i : i + k]
        valid = ~np.isnan(window)
        weight = float(np.sum(w[valid]))
        out[i] = np.sum(w[valid] * window[valid]) / weight if weight > 0 else np.nan
    return out


def hourly(values: np.ndarray, **attrs) -> xr.DataArray:
    time = pd.date_range("2001-03-01", periods=values.shape[-1], freq="h")
    dims = ("station", "time") if values.ndim == 2 else ("time",)
    coords = {"time": time}
    if values.ndim == 2:
        coords["station"] = [f"s{i}" for i in range(values.shape[0])]
    return xr.DataArray(values, dims=dims, coords=coords, name="temp", attrs=attrs)


# ---------------------------------------------------------------------------------------
# equal to scipy.ndimage.correlate1d
# ---------------------------------------------------------------------------------------


BACKEND_LIMITS = {  # (DIRECT_MAX_SIZE, FFT_MIN_SIZE) that force one computation
    "direct": (10**9, 10**9),
    "scipy": (0, 10**9),
    "fft": (0, 1),
}


def force_backend(monkeypatch, backend: str) -> None:
    direct_max, fft_min = BACKEND_LIMITS[backend]
    for dtype in ("float32", "float64"):
        monkeypatch.setitem(smooth_mod.DIRECT_MAX_SIZE, dtype, direct_max)
        monkeypatch.setitem(smooth_mod.FFT_MIN_SIZE, dtype, fft_min)


@pytest.mark.parametrize("backend", list(BACKEND_LIMITS))
@pytest.mark.parametrize("mode", MODES)
def test_equals_scipy_correlate1d_over_modes_and_sizes(mode, backend, monkeypatch):
    force_backend(monkeypatch, backend)
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 64):
        x = rng.standard_normal((3, n))
        for size in (1, 2, 3, 4, 7, 10, 65, 130):  # even sizes; windows longer than n
            sigma = 0.3 + size / 5
            w = gaussian_weights(sigma, size)
            expected = ndimage.correlate1d(x, w, axis=-1, mode=mode, cval=0.7)
            got = smooth(x, density=f"gaussian:{sigma}", size=size, mode=mode, cval=0.7)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)


def test_default_backends_equal_scipy_across_the_crossovers():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(3000) * 10 + 5
    direct, fft = smooth_mod.DIRECT_MAX_SIZE["float64"], smooth_mod.FFT_MIN_SIZE["float64"]
    for size in (direct, direct + 1, fft - 1, fft, 401):
        w = gaussian_weights(size / 6, size)
        expected = ndimage.correlate1d(x, w, mode="mirror")
        got = smooth(x, density=f"gaussian:{size / 6}", size=size, mode="mirror")
        np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-11)


def test_axis_other_than_last_and_tables_and_ones():
    rng = np.random.default_rng(2)
    values = rng.standard_normal((40, 3))
    da = xr.DataArray(values, dims=("time", "station"))
    got = smooth(da, density="table:0.2,0.8")  # default size 5 from the table
    w = np.array([0.2, 0.8, 1.0, 0.8, 0.2]) / 3.0
    np.testing.assert_allclose(got.values, ndimage.correlate1d(values, w, axis=0), atol=1e-14)
    assert got.dims == ("time", "station")
    box = smooth(da, density="ones", size=4, mode="nearest")  # even: centred as scipy
    expected = ndimage.correlate1d(values, np.full(4, 0.25), axis=0, mode="nearest")
    np.testing.assert_allclose(box.values, expected, atol=1e-14)


# ---------------------------------------------------------------------------------------
# units
# ---------------------------------------------------------------------------------------


def test_densities_in_the_coordinates_units():
    rng = np.random.default_rng(3)
    da = hourly(rng.standard_normal((2, 120)))
    expected = ndimage.correlate1d(da.values, gaussian_weights(2.0, 17), axis=-1)
    for spec in ("gaussian:2h", "gaussian:120min", "gaussian:7200s", "gaussian:2"):
        got = smooth(da, density=spec)  # default size: 2·int(4σ + 0.5) + 1 = 17
        np.testing.assert_allclose(got.values, expected, atol=1e-14, err_msg=spec)
    # a numeric coordinate with CF-style units; 30 s on a 10 s step is σ = 3 samples
    numeric = da.assign_coords(time=("time", np.arange(120) * 10.0, {"units": "seconds"}))
    got = smooth(numeric, density="gaussian:30s", size=9)
    expected = ndimage.correlate1d(da.values, gaussian_weights(3.0, 9), axis=-1)
    np.testing.assert_allclose(got.values, expected, atol=1e-14)
    days = da.assign_coords(time=("time", np.arange(120) / 24, {"units": "days since 2001-03-01"}))
    got = smooth(days, density="gaussian:2h")
    np.testing.assert_allclose(got.values, smooth(da, density="gaussian:2h").values, atol=1e-12)


def test_size_as_a_duration():
    rng = np.random.default_rng(4)
    da = hourly(rng.standard_normal(50))
    expected = ndimage.correlate1d(da.values, np.full(6, 1 / 6))
    for size in ("6h", "360min", np.timedelta64(6, "h"), dt.timedelta(hours=6), pd.Timedelta("6h")):
        got = smooth(da, density="ones", size=size)
        np.testing.assert_allclose(got.values, expected, atol=1e-14, err_msg=str(size))
        assert json.loads(got.attrs["ndwconv_smooth"])["size"] == 6


def test_time_units_in_the_density_grammar():
    assert as_density("gaussian:2h").resolve(3600.0).sigma == (7200.0,)
    assert as_density("gaussian:1.5min").resolve(1.0).sigma == (90.0,)
    assert as_density("gaussian:1d").resolve(1.0).sigma == (86400.0,)
    assert as_density("gaussian:250us").resolve(1.0).sigma == (0.00025,)
    assert str(as_density("gaussian:2H")) == "gaussian:2h"


def test_irregular_sampling_is_rejected_with_how_to_resample():
    time = pd.to_datetime(["2000-01-01 00:00", "2000-01-01 01:00", "2000-01-01 03:00"])
    s = pd.Series([1.0, 2.0, 3.0], index=time)
    with pytest.raises(ValueError, match=r"not evenly spaced.*resample\(time=\"1h\"\)\.mean\(\)"):
        smooth(s, density="gaussian:1h")
    with pytest.raises(ValueError, match="interp"):
        smooth(s, density="gaussian:1", size=3)
    # the escape hatch the message names: without the coordinate, samples are samples
    da = s.to_xarray().rename(index="time").drop_vars("time")
    np.testing.assert_allclose(
        smooth(da, density="ones", size=3).values,
        ndimage.correlate1d(s.to_numpy(), np.full(3, 1 / 3)),
    )


@pytest.mark.parametrize(
    ("data", "density", "match"),
    [
        (np.arange(10.0), "gaussian:2h", r"density 'gaussian:2h' is in h.*no coordinate"),
        (
            xr.DataArray(np.arange(10.0), dims="time", coords={"time": np.arange(10.0)}),
            "gaussian:2s",
            "no 'units' attribute",
        ),
        (hourly(np.arange(10.0)), "gaussian:2mm", r"a length\) but the coordinate is in s"),
    ],
)
def test_unit_bearing_density_without_a_matching_unit(data, density, match):
    with pytest.raises(ValueError, match=match):
        smooth(data, density=density)


# ---------------------------------------------------------------------------------------
# missing values
# ---------------------------------------------------------------------------------------


def series_with_gaps(n: int = 60) -> np.ndarray:
    rng = np.random.default_rng(5)
    x = rng.standard_normal(n)
    x[[0, 7, 8, 30]] = np.nan
    x[40:52] = np.nan  # a gap longer than the window: NaN in its middle
    x[-1] = np.nan
    return x


def test_nan_raise_is_the_default():
    with pytest.raises(ValueError, match=r"3 missing value.*nan='mask'.*nan='propagate'"):
        smooth(series_with_gaps()[:20], density="ones", size=3)


def test_nan_propagate_equals_scipy():
    x = series_with_gaps()
    for mode in MODES:
        expected = ndimage.correlate1d(x, gaussian_weights(1.5, 7), mode=mode)
        got = smooth(x, density="gaussian:1.5", size=7, mode=mode, nan="propagate")
        np.testing.assert_allclose(got, expected, atol=1e-14)
        assert np.isnan(got).sum() > np.isnan(x).sum()


@pytest.mark.parametrize("backend", ["direct", "scipy"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [4, 7])
def test_nan_mask_is_normalised_convolution(mode, size, backend, monkeypatch):
    force_backend(monkeypatch, backend)
    x = series_with_gaps()
    w = gaussian_weights(1.5, size)
    got = smooth(x, density="gaussian:1.5", size=size, mode=mode, cval=2.0, nan="mask")
    expected = mask_reference(x, w, mode, 2.0)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    assert np.isnan(got[44:48]).all() and not np.isnan(got[:40]).any()


def test_nan_mask_with_missing_padding_renormalises_at_the_ends():
    x = series_with_gaps()
    w = gaussian_weights(2.0, 9)
    got = smooth(x, density="gaussian:2", size=9, mode="constant", cval=np.nan, nan="mask")
    np.testing.assert_allclose(got, mask_reference(x, w, "constant", np.nan), atol=1e-14)
    clean = np.arange(10.0)  # a ramp: the renormalised ends are pulled inwards
    ends = smooth(clean, density="ones", size=3, mode="constant", cval=np.nan, nan="mask")
    np.testing.assert_allclose(ends[[0, 5, 9]], [0.5, 5.0, 8.5])


# ---------------------------------------------------------------------------------------
# containers, metadata, dtypes
# ---------------------------------------------------------------------------------------


def test_dataarray_keeps_dims_coords_name_attrs_and_records_provenance():
    rng = np.random.default_rng(6)
    da = hourly(rng.standard_normal((3, 48)), units="K", long_name="air temperature")
    da = da.transpose("time", "station")
    before = da.copy(deep=True)
    out = smooth(da, density="gaussian:3h", nan="mask")
    xr.testing.assert_identical(da, before)  # the input is untouched
    assert out.dims == ("time", "station") and out.name == "temp"
    xr.testing.assert_identical(out.coords.to_dataset(), da.coords.to_dataset())
    assert {k: out.attrs[k] for k in ("units", "long_name")} == da.attrs
    record = json.loads(out.attrs["ndwconv_smooth"])
    assert record == {
        "dim": "time",
        "density": "gaussian:3h",
        "resolved": "gaussian:10800;spacing=3600",
        "size": 25,
        "mode": "reflect",
        "cval": 0.0,
        "nan": "mask",
    }
    twice = smooth(out, density="ones", size=3)
    lines = twice.attrs["ndwconv_smooth"].splitlines()
    assert [json.loads(line)["density"] for line in lines] == ["gaussian:3h", "ones"]


def test_numpy_and_pandas_in_the_same_type_out():
    rng = np.random.default_rng(7)
    values = rng.standard_normal((4, 30))
    w = gaussian_weights(1.0, 9)
    expected = ndimage.correlate1d(values, w, axis=-1)
    copy = values.copy()
    got = smooth(values, density="gaussian:1")
    assert isinstance(got, np.ndarray) and got.shape == values.shape
    np.testing.assert_allclose(got, expected, atol=1e-14)
    np.testing.assert_array_equal(values, copy)
    index = pd.date_range("1990", periods=30, freq="W-SAT")
    s = pd.Series(values[0], index=index, name="co2")
    s.iloc[3] = np.nan
    kept = s.copy()
    out = smooth(s, density="gaussian:1", nan="mask")
    pd.testing.assert_series_equal(s, kept)
    s.iloc[3] = values[0, 3]
    out = smooth(s, density="gaussian:1")
    assert isinstance(out, pd.Series) and out.name == "co2" and out.index.equals(index)
    np.testing.assert_allclose(out.to_numpy(), expected[0], atol=1e-14)
    df = pd.DataFrame(values.T, index=index, columns=list("abcd"))
    frame = smooth(df, density="gaussian:7d", size=9)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list("abcd")
    np.testing.assert_allclose(frame.to_numpy(), expected.T, atol=1e-14)


def test_integers_give_float64_and_float32_stays_float32():
    rng = np.random.default_rng(8)
    ints = rng.integers(-100, 100, size=(2, 50))
    as_float = smooth(ints.astype(np.float64), density="gaussian:2")
    got = smooth(ints, density="gaussian:2")
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, as_float)
    single = smooth(ints.astype(np.float32), density="gaussian:2")
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, as_float, rtol=1e-5, atol=1e-4)
    for size in (5, 61):  # direct and FFT in float32
        long = smooth(ints.astype(np.float32), density="gaussian:10", size=size)
        ref = ndimage.correlate1d(ints.astype(np.float64), gaussian_weights(10.0, size))
        np.testing.assert_allclose(long, ref, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------------------
# dask
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_dask_stays_lazy_and_equals_in_memory(mode):
    dask = pytest.importorskip("dask")
    rng = np.random.default_rng(9)
    values = rng.standard_normal((2, 90))
    values[0, 10] = np.nan
    da = hourly(values)
    expected = smooth(da, density="gaussian:3h", mode=mode, cval=-1.0, nan="mask")  # depth 12
    for chunks in (1, 5, 12, 13, 40, (1, 30, 2, 57), (70, 20)):
        lazy = smooth(
            da.chunk({"time": chunks}), density="gaussian:3h", mode=mode, cval=-1.0, nan="mask"
        )
        assert dask.is_dask_collection(lazy.data), chunks
        computed = lazy.compute()
        np.testing.assert_allclose(computed.values, expected.values, atol=1e-13, err_msg=chunks)
        assert computed.attrs == expected.attrs


def test_dask_series_shorter_than_the_window_and_raise_at_compute():
    pytest.importorskip("dask")
    rng = np.random.default_rng(10)
    da = hourly(rng.standard_normal(6))
    expected = ndimage.correlate1d(da.values, gaussian_weights(4.0, 33), mode="reflect")
    lazy = smooth(da.chunk({"time": 2}), density="gaussian:4h")
    np.testing.assert_allclose(lazy.values, expected, atol=1e-14)
    gaps = da.copy(data=np.where(np.arange(6) == 3, np.nan, da.values)).chunk({"time": 3})
    lazy = smooth(gaps, density="ones", size=3)  # nan="raise": checked when computed
    with pytest.raises(ValueError, match="missing value"):
        lazy.compute()


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dim": "tme"}, ValueError, r"dim 'tme' is not a dimension of data"),
        ({"mode": "reflekt"}, ValueError, "mode must be one of reflect"),
        ({"mode": "grid-wrap"}, ValueError, "mode must be one of"),
        ({"nan": "drop"}, ValueError, "nan must be one of raise, propagate, mask"),
        ({"size": 0}, ValueError, "size must be ≥ 1"),
        ({"size": -3}, ValueError, "size must be ≥ 1"),
        ({"size": 2.5}, TypeError, "size must be an int"),
        ({"size": True}, TypeError, "size must be an int"),
        ({"size": "6"}, ValueError, "size '6'.*duration with a unit"),
        ({"size": "1s"}, ValueError, "shorter than one sample"),
        ({"cval": "zero"}, TypeError, "cval must be a real number"),
        ({"density": "gaussian:abc"}, ValueError, "density: gaussian density sigma"),
        ({"density": "gauss:1"}, ValueError, "density: unknown density 'gauss:1'"),
        ({"density": "gaussian:1,2"}, ValueError, "smooth takes one σ"),
        ({"density": "learned"}, ValueError, "trainable"),
        ({"density": "ones"}, ValueError, "no natural width.*size="),
        ({"density": "default"}, ValueError, "several window sizes"),
        ({"density": "table:0.7", "size": 4}, ValueError, "density 'table:0.7'.*odd"),
        ({"density": 3}, TypeError, "density: density must be a Density"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    da = hourly(np.arange(24.0))
    arguments = {"density": "gaussian:1h"} | kwargs
    with pytest.raises(error, match=match):
        smooth(da, **arguments)


@pytest.mark.parametrize(
    "data",
    [
        np.array(["a", "b", "c"]),
        np.array([True, False, True]),
        np.array([1 + 1j, 2, 3]),
        [1.0, 2.0, 3.0],
    ],
)
def test_non_numeric_data_is_rejected(data):
    with pytest.raises(TypeError, match="data must"):
        smooth(data, density="ones", size=3)


def test_weights_helper():
    assert math.isclose(smooth_mod.smooth_weights("table:0.5", 3).sum(), 1.0)
