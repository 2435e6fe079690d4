"""``ndwconv denoise --var``: a 1-D checkpoint over NetCDF-4/HDF5 time series, end to end.

The files are written with h5netcdf's own API and read back with h5py, so neither side goes
through the code under test. The reference of every check is the same model run once on
each whole series in plain torch, on values normalised by NumPy's 0.5th/99.5th percentiles
of all finite values (the series are far below the subsample size, so the command uses
every value too), mapped back in float64.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch

import ndwconv
from ndwconv.cli import main

h5py = pytest.importorskip("h5py")
h5netcdf = pytest.importorskip("h5netcdf")
xr = pytest.importorskip("xarray")
pytest.importorskip("dask")
pytest.importorskip("safetensors")

from ndwconv.recipes.engine.checkpoint import save_checkpoint  # noqa: E402
from ndwconv.recipes.models import DnCNN, odd_kernel_convs  # noqa: E402
from ndwconv.recipes.tasks import denoise as denoise_recipe  # noqa: E402
from ndwconv.recipes.tasks.denoise import command as denoise_command  # noqa: E402
from ndwconv.recipes.tasks.denoise.series_files import series_range  # noqa: E402

QUIET = ("--device", "cpu", "--quiet", "--batch", "2")
LEADS, LENGTH = 3, 240


def _checkpoint(folder, ndim):
    """A tiny weighted DnCNN checkpoint (3 layers, kernel 3: receptive radius 3)."""
    torch.manual_seed(ndim)
    model = ndwconv.convert(
        DnCNN(ndim=ndim, channels=1, depth=3, width=4), "default", where=odd_kernel_convs
    )
    with torch.no_grad():  # running statistics away from (0, 1), so that BatchNorm matters
        for layer in model.modules():
            if isinstance(layer, torch.nn.BatchNorm1d):
                layer.running_mean.uniform_(-0.2, 0.2)
                layer.running_var.uniform_(0.5, 2.0)
    model.eval()
    spec = {"name": "dncnn", "depth": 3, "width": 4, "ndim": ndim}
    meta = {
        "task": "denoise",
        "step": 0,
        "config": {},
        "description": {
            "method": "weighted",
            "model": spec,
            "density": "default",
            "data": {"channels": 1},
        },
    }
    path = folder / f"dncnn{ndim}d.safetensors"
    save_checkpoint(path, model, meta, rng=False)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt1d"), 1)


def _signal(seed=0):
    """``(LEADS, LENGTH)`` noisy sines in millivolts, float64."""
    rng = np.random.default_rng(seed)
    t = np.arange(LENGTH) / 50.0
    clean = np.stack([np.sin(2 * np.pi * (1.0 + k) * t) * (1 + k) for k in range(LEADS)])
    return 3.0 + clean + rng.normal(0.0, 0.3, clean.shape)


def _write(path, values, *, packed=False, fill=None):
    """A NetCDF-4 file: ``ecg(lead, time)`` (float32, gzip, chunked, or int16 packed with
    ``scale_factor``/``add_offset``), a time coordinate with units, a second variable and a
    global attribute, written with h5netcdf's own API."""
    with h5netcdf.File(path, "w") as handle:
        handle.dimensions = {"lead": LEADS, "time": LENGTH}
        handle.attrs["title"] = "test recording"
        time = handle.create_variable("time", ("time",), "f8")
        time[:] = np.arange(LENGTH) / 50.0
        time.attrs["units"] = "seconds since 2024-01-01 00:00:00"
        other = handle.create_variable("quality", ("lead",), "i4")
        other[:] = [1, 2, 3]
        if packed:
            kwargs = {} if fill is None else {"fillvalue": np.int16(fill)}
            ecg = handle.create_variable(
                "ecg", ("lead", "time"), "i2", compression="gzip", chunks=(1, 100), **kwargs
            )
            ecg.attrs["scale_factor"] = np.float32(0.01)
            ecg.attrs["add_offset"] = np.float32(3.0)
            ecg[:] = values
        else:
            ecg = handle.create_variable(
                "ecg", ("lead", "time"), "f4", compression="gzip", chunks=(1, 100)
            )
            ecg[:] = values.astype(np.float32)
        ecg.attrs["units"] = "mV"
        ecg.attrs["long_name"] = "electrocardiogram"


def _reference(checkpoint, values):
    """The model on each whole normalised series (NaN as given), mapped back; and the
    range's width."""
    model = denoise_recipe.load_denoiser(checkpoint)
    finite = values[np.isfinite(values)]
    lo, hi = np.percentile(finite, [0.5, 99.5])
    x = torch.from_numpy(((values - lo) / (hi - lo)).astype(np.float32))
    with torch.no_grad():
        y = model(x[:, None, :])[:, 0]
    return y.double().numpy() * (hi - lo) + lo, hi - lo


def _denoise(capsys, *argv):
    code = main(["denoise", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _checksum(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.mark.parametrize("chunks", [None, 2, 37])
def test_float_series_equals_the_model_on_each_whole_series(capsys, tmp_path, checkpoint, chunks):
    """Chunks shorter than the receptive radius (2 < 3), uneven (37) and one chunk."""
    source = tmp_path / "ecg.nc"
    _write(source, _signal())
    with h5py.File(source, "r") as handle:
        stored = handle["ecg"][...].astype(np.float64)
    before = _checksum(source)
    expected, scale = _reference(checkpoint, stored)
    out = tmp_path / "out"
    extra = () if chunks is None else ("--chunks", chunks)
    code, stdout, err = _denoise(
        capsys, source, "-o", out, "--model", checkpoint, "--var", "ecg", *QUIET, *extra
    )
    assert code == 0, err
    assert stdout.startswith(f"{source} -> {out / 'ecg.nc'}: ecg (lead 3 × time 240) along time")
    assert "range [" in stdout
    assert _checksum(source) == before
    with h5py.File(out / "ecg.nc", "r") as handle:
        ecg = handle["ecg"]
        assert ecg.dtype == np.float32
        assert ecg.compression == "gzip" and ecg.chunks == (1, 100)
        assert ecg.attrs["units"] in ("mV", b"mV")
        assert ecg.attrs["long_name"] in ("electrocardiogram", b"electrocardiogram")
        assert "ndwconv_denoise" in ecg.attrs and "ndwconv_apply" in ecg.attrs
        got = ecg[...].astype(np.float64)
        np.testing.assert_array_equal(handle["quality"][...], [1, 2, 3])
        np.testing.assert_array_equal(handle["time"][...], np.arange(LENGTH) / 50.0)
        assert handle.attrs["title"] in ("test recording", b"test recording")
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * scale)
    assert not np.allclose(got, stored, atol=1e-3)  # the model did change the series


def test_plain_hdf5_dataset_along_a_phony_dimension(capsys, tmp_path, checkpoint):
    """A dataset written by h5py (no dimension scales): its axes are phony_dim_0, _1."""
    values = _signal(3).astype(np.float32)
    source = tmp_path / "plain.h5"
    with h5py.File(source, "w") as handle:
        handle.create_dataset("ecg", data=values, chunks=(1, 80)).attrs["units"] = "mV"
    before = _checksum(source)
    expected, scale = _reference(checkpoint, values.astype(np.float64))
    out = tmp_path / "out"
    args = ("-o", out, "--model", checkpoint, "--var", "ecg", *QUIET, "--chunks", 50)
    code, _, err = _denoise(capsys, source, *args, "--dim", "phony_dim_1")
    assert code == 0, err
    assert _checksum(source) == before
    with h5py.File(out / "plain.h5", "r") as handle:
        ecg = handle["ecg"]
        assert ecg.dtype == np.float32 and ecg.chunks == (1, 80)
        assert ecg.attrs["units"] in ("mV", b"mV")
        got = ecg[...].astype(np.float64)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * scale)


def test_packed_series_is_repacked_on_its_grid_or_written_as_floats(capsys, tmp_path, checkpoint):
    raw = np.round((_signal(1) - 3.0) / 0.01).astype(np.int16)
    source = tmp_path / "packed.nc"
    _write(source, raw, packed=True)
    values = raw * np.float64(np.float32(0.01)) + np.float64(np.float32(3.0))
    expected, scale = _reference(checkpoint, values)
    for dtype in ("input", "float32"):
        out = tmp_path / dtype
        args = ("-o", out, "--model", checkpoint, "--var", "ecg", "--dtype", dtype, *QUIET)
        code, _, err = _denoise(capsys, source, *args, "--chunks", 64)
        assert code == 0, err
        with h5py.File(out / "packed.nc", "r") as handle:
            ecg = handle["ecg"]
            if dtype == "input":
                assert ecg.dtype == np.int16
                step = float(np.ravel(ecg.attrs["scale_factor"])[0])
                offset = float(np.ravel(ecg.attrs["add_offset"])[0])
                assert step == float(np.float32(0.01)) and offset == 3.0
                got = ecg[...] * step + offset
                assert np.abs(got - expected).max() <= step / 2 + 1e-5 * scale
            else:
                assert ecg.dtype.kind == "f" and "scale_factor" not in ecg.attrs
                got = ecg[...].astype(np.float64)
                np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * scale)


def test_missing_values_are_refused_or_read_as_zero(capsys, tmp_path, checkpoint):
    raw = np.round((_signal(2) - 3.0) / 0.01).astype(np.int16)
    raw[1, [5, 200, 201]] = -32768
    source = tmp_path / "gaps.nc"
    _write(source, raw, packed=True, fill=-32768)
    base = ("--model", checkpoint, "--var", "ecg", "--dtype", "float32", *QUIET)
    code, stdout, err = _denoise(capsys, source, "-o", tmp_path / "refused", *base)
    assert code == 1 and stdout == ""
    assert "3 missing or non-finite values" in err and "--nonfinite zero" in err
    assert not (tmp_path / "refused").exists()

    code, stdout, err = _denoise(capsys, source, "-o", tmp_path / "z", *base, "--nonfinite", "zero")
    assert code == 0, err
    assert "3 missing/non-finite input values read as 0" in stdout
    values = raw * np.float64(np.float32(0.01)) + np.float64(np.float32(3.0))
    missing = raw == -32768
    lo, hi = np.percentile(values[~missing], [0.5, 99.5])  # the range of the valid values
    model = denoise_recipe.load_denoiser(checkpoint)
    x = np.where(missing, 0.0, values)
    with torch.no_grad():
        y = model(torch.from_numpy(((x - lo) / (hi - lo)).astype(np.float32))[:, None])[:, 0]
    expected = y.double().numpy() * (hi - lo) + lo
    with h5py.File(tmp_path / "z" / "gaps.nc", "r") as handle:
        got = handle["ecg"][...].astype(np.float64)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * (hi - lo))

    # allow: the gaps spread over the receptive radius (3 samples each side), as in torch
    code, stdout, err = _denoise(
        capsys, source, "-o", tmp_path / "a", *base, "--nonfinite", "allow"
    )
    assert code == 0, err
    assert "3 missing/non-finite input values kept" in stdout
    with torch.no_grad():
        gaps = np.where(missing, np.nan, values)
        x = torch.from_numpy(((gaps - lo) / (hi - lo)).astype(np.float32))
        expected = model(x[:, None])[:, 0].double().numpy() * (hi - lo) + lo
    with h5py.File(tmp_path / "a" / "gaps.nc", "r") as handle:
        got = handle["ecg"][...].astype(np.float64)
    assert np.isnan(got[1]).sum() == 7 + 8 and not np.isnan(got[[0, 2]]).any()
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * (hi - lo))


def test_a_model_of_another_kind_is_refused(capsys, tmp_path, checkpoint):
    source = tmp_path / "ecg.nc"
    _write(source, _signal())
    model2d = _checkpoint(tmp_path, 2)
    args = ("-o", tmp_path / "out", *QUIET)
    code, stdout, err = _denoise(capsys, source, *args, "--model", model2d, "--var", "ecg")
    assert code == 1 and stdout == ""
    assert "a 2-D model cannot denoise time series (--var ecg)" in err
    code, stdout, err = _denoise(capsys, source, *args, "--model", checkpoint)
    assert code == 1 and stdout == ""
    assert "a 1-D model denoises time series: give --var" in err
    code, _, err = _denoise(capsys, source, *args, "--model", model2d, "--dim", "t")
    assert code == 1 and "--dim and --chunks are for time series: give --var" in err
    assert not (tmp_path / "out").exists()


def test_unknown_variable_or_dimension_is_refused_before_the_model_loads(
    capsys, tmp_path, checkpoint, monkeypatch
):
    source = tmp_path / "ecg.nc"
    _write(source, _signal())
    before = _checksum(source)

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(denoise_command, "load_denoiser", no_model)
    args = ("-o", tmp_path / "out", "--model", checkpoint, *QUIET)
    code, _, err = _denoise(capsys, source, *args, "--var", "ekg")
    assert code == 1
    assert "no variable var='ekg'" in err and "ecg" in err and "quality" in err
    code, _, err = _denoise(capsys, source, *args, "--var", "ecg", "--dim", "sample")
    assert code == 1
    assert "dim='sample' is not a dimension of 'ecg'" in err and "time (240)" in err
    code, _, err = _denoise(capsys, tmp_path / "none.nc", *args, "--var", "ecg")
    assert code == 1 and "no such file" in err
    assert _checksum(source) == before and not (tmp_path / "out").exists()


def test_tiling_options_draw_a_note_and_change_nothing(capsys, tmp_path, checkpoint):
    source = tmp_path / "ecg.nc"
    _write(source, _signal())
    base = (source, "--model", checkpoint, "--var", "ecg", *QUIET, "--chunks", 50)
    code, _, err = _denoise(capsys, *base, "-o", tmp_path / "a")
    assert code == 0 and "note" not in err
    code, _, err = _denoise(capsys, *base, "-o", tmp_path / "b", "--tile", 8, "--blend", "constant")
    assert code == 0
    assert "--tile/--blend do not apply to time series" in err
    with h5py.File(tmp_path / "a" / "ecg.nc") as a, h5py.File(tmp_path / "b" / "ecg.nc") as b:
        np.testing.assert_array_equal(a["ecg"][...], b["ecg"][...])


def test_an_existing_output_is_kept_without_overwrite(capsys, tmp_path, checkpoint):
    source = tmp_path / "ecg.nc"
    _write(source, _signal())
    out = tmp_path / "out"
    out.mkdir()
    (out / "ecg.nc").write_bytes(b"keep me")
    args = ("-o", out, "--model", checkpoint, "--var", "ecg", *QUIET)
    code, _, err = _denoise(capsys, source, *args)
    assert code == 1 and "exists; pass --overwrite" in err
    assert (out / "ecg.nc").read_bytes() == b"keep me"
    code, _, err = _denoise(capsys, source, *args, "--overwrite")
    assert code == 0, err
    assert h5py.is_hdf5(out / "ecg.nc")


def test_series_range_of_a_long_periodic_series_matches_the_whole_one():
    """Runs of consecutive samples: a stride of 24 would see one phase of this cycle."""
    t = np.arange(24 * 20_000)
    values = np.sin(2 * np.pi * t / 24) + 1e-6 * t
    da = xr.DataArray(np.stack([values, 2 * values]), dims=("lead", "time"))
    truth = np.percentile(da.values, [0.5, 99.5])
    lo, hi = series_range(da, "time", max_values=8192)
    assert lo == pytest.approx(truth[0], abs=0.05) and hi == pytest.approx(truth[1], abs=0.05)
    strided = np.percentile(da.values[:, ::24], [0.5, 99.5])  # what a stride would give
    assert abs(strided[1] - truth[1]) > 0.5
    # many short series: the other dimension is read with a stride, and runs stay disjoint
    many = np.random.default_rng(0).normal(size=(5000, 300))
    lo, hi = series_range(xr.DataArray(many, dims=("station", "time")), "time", max_values=8192)
    truth = np.percentile(many, [0.5, 99.5])
    assert lo == pytest.approx(truth[0], abs=0.1) and hi == pytest.approx(truth[1], abs=0.1)
    # a constant series only shifts; a series without a finite value is refused
    assert series_range(xr.DataArray(np.full(10, 4.0), dims="time"), "time") == (4.0, 5.0)
    with pytest.raises(ValueError, match="no finite values"):
        series_range(xr.DataArray(np.full(10, np.nan), dims="time"), "time")


@pytest.mark.parametrize("failure", ["raise", "nan"])
def test_a_model_failing_mid_file_leaves_no_output(
    capsys, tmp_path, checkpoint, monkeypatch, failure
):
    """After apply's probes (4 calls), the model raises, or returns NaN, on later chunks."""
    load = denoise_recipe.load_denoiser

    def failing_later(path, device="cpu"):
        model = load(path, device)
        forward, calls = model.forward, []

        def flaky(x):
            calls.append(1)
            if len(calls) > 8:
                if failure == "raise":
                    raise RuntimeError("predictor failed on purpose")
                return torch.full_like(x, float("nan"))
            return forward(x)

        model.forward = flaky
        return model

    monkeypatch.setattr(denoise_command, "load_denoiser", failing_later)
    source = tmp_path / "ecg.nc"
    _write(source, _signal())
    before = _checksum(source)
    args = ("-o", tmp_path / "out", "--model", checkpoint, "--var", "ecg", *QUIET)
    code, stdout, err = _denoise(capsys, source, *args, "--chunks", 50)
    assert code == 1 and stdout == ""
    if failure == "raise":
        assert "predictor failed on purpose" in err
    else:
        assert "the model produced" in err and "non-finite" in err and "nothing was written" in err
    # neither the output nor a temporary file, nor the output folder the run created
    assert sorted(os.listdir(tmp_path)) == ["ecg.nc"]
    assert _checksum(source) == before


def test_torchrun_ranks_share_the_series(capsys, tmp_path, checkpoint, monkeypatch):
    names = ("a.nc", "b.nc", "c.nc")
    for seed, name in enumerate(names):
        _write(tmp_path / name, _signal(seed))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    out = tmp_path / "out"
    inputs = [tmp_path / n for n in names]
    args = ("-o", out, "--model", checkpoint, "--var", "ecg", *QUIET)
    code, stdout, err = _denoise(capsys, *inputs, *args)
    assert code == 0, err
    assert os.listdir(out) == ["b.nc"]
    assert stdout.startswith(f"{tmp_path / 'b.nc'} -> ") and len(stdout.splitlines()) == 1
