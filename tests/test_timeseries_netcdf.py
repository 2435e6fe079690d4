"""NetCDF-4/HDF5 time series through ``filter_file`` and ``ndwconv smooth``.

The sources are written with h5netcdf's netCDF4-like API (``h5netcdf.legacyapi``: the
NetCDF-4 format as published, raw packed integers written as they are) or with plain
h5py, and every result is read back with h5py directly, so no check goes through the
xarray reading and writing under test: the reference values are computed from the raw
stored integers and the CF packing rule ``value = raw · scale_factor + add_offset``, in
float64 NumPy. Every test checks that its source's bytes did not change.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pytest.importorskip("dask")
h5py = pytest.importorskip("h5py")
h5netcdf = pytest.importorskip("h5netcdf")
legacy = pytest.importorskip("h5netcdf.legacyapi")

from ndwconv.adapters.timeseries.netcdf import chunk_plan, filter_file  # noqa: E402
from ndwconv.cli import main  # noqa: E402

SCALE, OFFSET, FILL = np.float32(0.01), np.float32(273.15), np.int16(-32767)
N_TIME, STATIONS = 240, 3


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def raw_temperatures(n: int = N_TIME, stations: int = STATIONS, seed: int = 0) -> np.ndarray:
    """Packed int16 temperatures (station, time) with a few fills."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 1500 * np.sin(2 * np.pi * t / 48)[None] + rng.normal(0, 200, (stations, n))
    raw = np.round(values).astype(np.int16)
    if n > 100:
        raw[0, 7] = raw[1, 100] = FILL
    return raw


def write_source(
    path, raw=None, *, calendar="proleptic_gregorian", time_values=None, chunksizes=(1, 60)
):
    """A NetCDF-4 file: packed ``temp(station, time)``, float ``pressure(time)``, string
    ``station`` names, int32 hourly ``time`` (unlimited), global attributes."""
    raw = raw_temperatures() if raw is None else raw
    stations, n = raw.shape
    with legacy.Dataset(path, "w") as f:
        f.setncattr("title", "test observations")
        f.setncattr("history", "written by the test")
        f.createDimension("time", None)
        f.createDimension("station", stations)
        time = f.createVariable("time", "i4", ("time",))
        time[:] = np.arange(n, dtype=np.int32) if time_values is None else time_values
        time.setncattr("units", "hours since 2001-03-01 00:00:00")
        time.setncattr("calendar", calendar)
        names = f.createVariable("station", str, ("station",))
        names[:] = np.array([f"st{i}" for i in range(stations)], dtype=object)
        temp = f.createVariable(
            "temp",
            "i2",
            ("station", "time"),
            zlib=True,
            complevel=5,
            shuffle=True,
            chunksizes=chunksizes,
            fill_value=FILL,
        )
        temp[:] = raw
        temp.setncattr("scale_factor", SCALE)
        temp.setncattr("add_offset", OFFSET)
        temp.setncattr("units", "K")
        temp.setncattr("long_name", "air temperature")
        pressure = f.createVariable("pressure", "f4", ("time",), fill_value=np.float32(np.nan))
        pressure[:] = np.linspace(990, 1010, n, dtype=np.float32)
        pressure.setncattr("units", "hPa")
    return raw


def decoded(raw: np.ndarray) -> np.ndarray:
    """The CF meaning of packed values, float64, NaN at the fill value."""
    values = raw.astype(np.float64) * float(SCALE) + float(OFFSET)
    return np.where(raw == FILL, np.nan, values)


def centred_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean over the valid values of a centred window along the last axis (NaN skipped),
    a plain float64 loop."""
    half = window // 2
    out = np.empty_like(x, dtype=np.float64)
    for j in range(x.shape[-1]):
        part = x[..., max(0, j - half) : j + half + 1]
        out[..., j] = np.nanmean(part, axis=-1)
    return out


def user_attrs(dataset) -> dict:
    """A dataset's attributes without HDF5 dimension-scale bookkeeping."""
    skip = {"DIMENSION_LIST", "REFERENCE_LIST", "_Netcdf4Coordinates", "_Netcdf4Dimid", "CLASS"}
    return {k: v for k, v in dataset.attrs.items() if k not in skip and k != "NAME"}


def rolling(da):
    return da.rolling(time=5, center=True, min_periods=1).mean()


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "obs.nc"
    raw = write_source(path)
    before = sha256(path)
    yield path, raw
    assert sha256(path) == before, "the source was modified"


def leftovers(folder, *keep) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# ---------------------------------------------------------------------------------------
# What is kept
# ---------------------------------------------------------------------------------------


def test_identity_keeps_values_attributes_and_encoding_of_every_variable(source, tmp_path):
    path, raw = source
    target = tmp_path / "out" / "obs.nc"
    target.parent.mkdir()
    assert filter_file(path, target, lambda da: da, var="temp", progress=False) == target
    with h5py.File(path, "r") as src, h5py.File(target, "r") as out:
        assert dict(out.attrs)["title"] == "test observations"
        assert dict(out.attrs)["history"] == "written by the test"
        t = out["temp"]
        assert t.dtype == np.int16
        np.testing.assert_array_equal(t[...], raw)  # identity re-packs to the same integers
        assert t.compression == "gzip" and t.compression_opts == 5 and t.shuffle
        assert t.chunks == (1, 60)
        attrs = user_attrs(t)
        assert attrs["scale_factor"].dtype == np.float32 and attrs["scale_factor"] == SCALE
        assert attrs["add_offset"].dtype == np.float32 and attrs["add_offset"] == OFFSET
        assert attrs["_FillValue"] == FILL and attrs["_FillValue"].dtype == np.int16
        assert attrs["units"] == "K" and attrs["long_name"] == "air temperature"
        for name in ("time", "pressure", "temp"):  # attributes as stored, dtypes included
            assert out[name].dtype == src[name].dtype
            np.testing.assert_array_equal(out[name][...], src[name][...])
            kept, stored = user_attrs(out[name]), user_attrs(src[name])
            assert kept.keys() == stored.keys()
            for key, value in stored.items():
                assert np.asarray(kept[key]).dtype == np.asarray(value).dtype, (name, key)
                np.testing.assert_array_equal(kept[key], value)
        assert out["time"].attrs["units"] == "hours since 2001-03-01 00:00:00"
        assert out["time"].attrs["calendar"] == "proleptic_gregorian"
        assert out["time"].maxshape == (None,)  # the unlimited dimension stays unlimited
        names = [s.decode() if isinstance(s, bytes) else s for s in out["station"][...]]
        assert names == ["st0", "st1", "st2"]
    assert leftovers(target.parent) == ["obs.nc"]


def test_float_variable_keeps_its_dtype_and_fill(source, tmp_path):
    path, _ = source
    target = tmp_path / "twice.nc"
    filter_file(path, target, lambda da: da.astype("f8") * 2, var="pressure", progress=False)
    with h5py.File(path, "r") as src, h5py.File(target, "r") as out:
        assert out["pressure"].dtype == np.float32
        np.testing.assert_array_equal(out["pressure"][...], src["pressure"][...] * 2)
        assert np.isnan(out["pressure"].attrs["_FillValue"])
        np.testing.assert_array_equal(out["temp"][...], src["temp"][...])  # not filtered


def test_packed_result_is_repacked_within_half_a_quantum(source, tmp_path):
    path, raw = source
    target = tmp_path / "smooth.nc"
    filter_file(path, target, rolling, var="temp", progress=False)
    reference = centred_mean(decoded(raw), 5)  # every window has a valid value
    with h5py.File(target, "r") as out:
        packed = out["temp"][...]
    assert packed.dtype == np.int16 and not (packed == FILL).any()
    written = packed * float(SCALE) + float(OFFSET)
    # half a quantum for the rounding, plus the float32 arithmetic of the decoded values
    assert np.max(np.abs(written - reference)) <= float(SCALE) / 2 + 1e-3
    assert np.mean(np.round((reference - float(OFFSET)) / float(SCALE)) == packed) > 0.95


def test_nan_results_are_stored_as_the_fill_value(source, tmp_path):
    path, raw = source
    target = tmp_path / "masked.nc"
    filter_file(
        path, target, lambda da: da.where(da.time != da.time[50]), var="temp", progress=False
    )
    with h5py.File(target, "r") as out:
        packed = out["temp"][...]
    expected = raw.copy()
    expected[:, 50] = FILL
    np.testing.assert_array_equal(packed, expected)


def test_packing_float_drops_the_packing(source, tmp_path):
    path, raw = source
    target = tmp_path / "float.nc"
    filter_file(path, target, rolling, var="temp", progress=False, packing="float")
    with h5py.File(target, "r") as out:
        t = out["temp"]
        assert t.dtype.kind == "f"
        assert "scale_factor" not in t.attrs and "add_offset" not in t.attrs
        assert np.isnan(t.attrs["_FillValue"])
        assert t.compression == "gzip" and t.chunks == (1, 60)
        values = t[...]
    np.testing.assert_allclose(values, centred_mean(decoded(raw), 5), rtol=0, atol=1e-3)


@pytest.mark.parametrize(
    ("func", "fragment"),
    [
        (lambda da: da + 1000.0, "outside what its packing"),
        (lambda da: da.where(da.time != da.time[3], np.inf), "±inf"),
        (lambda da: da * 0 + (-32767 * 0.01 + 273.15), "_FillValue"),
    ],
    ids=["out-of-range", "inf", "fill-value"],
)
def test_values_the_packing_cannot_store_stop_the_write(source, tmp_path, func, fragment):
    path, _ = source
    target = tmp_path / "bad.nc"
    with pytest.raises(ValueError, match=fragment) as info:
        filter_file(path, target, func, var="temp", progress=False)
    assert "'temp'" in str(info.value)
    assert leftovers(tmp_path) == ["obs.nc"]  # neither the target nor a temporary


def test_nan_without_fill_value_is_refused_when_packed(tmp_path):
    path = tmp_path / "nofill.nc"
    with legacy.Dataset(path, "w") as f:
        f.createDimension("time", 4)
        v = f.createVariable("x", "i2", ("time",))
        v[:] = np.array([1, 2, 3, 4], dtype=np.int16)
        v.setncattr("scale_factor", np.float32(0.5))
    with pytest.raises(ValueError, match="no _FillValue"):
        filter_file(path, tmp_path / "o.nc", lambda da: da.where(da > 1), var="x", progress=False)
    assert leftovers(tmp_path) == ["nofill.nc"]


def test_unsigned_packing_round_trips_bit_for_bit(tmp_path):
    """NetCDF's ``_Unsigned = "true"``: int16 on disk standing for uint16 values."""
    path = tmp_path / "unsigned.nc"
    counts = np.array([0, 1, 40_000, 65_000, 65_535, 30_000], dtype=np.uint16)
    with legacy.Dataset(path, "w") as f:
        f.createDimension("time", 6)
        v = f.createVariable("level", "i2", ("time",), fill_value=np.int16(-1))  # 65 535
        v[:] = counts.view(np.int16)
        v.setncattr("_Unsigned", "true")
        v.setncattr("scale_factor", np.float32(0.5))
    filter_file(path, tmp_path / "same.nc", lambda da: da, var="level", progress=False)
    filter_file(path, tmp_path / "plus.nc", lambda da: da + 1.0, var="level", progress=False)
    with h5py.File(tmp_path / "same.nc", "r") as same, h5py.File(tmp_path / "plus.nc", "r") as plus:
        assert same["level"].dtype == np.int16 and same["level"].attrs["_Unsigned"] == "true"
        np.testing.assert_array_equal(same["level"][...].view(np.uint16), counts)
        expected = counts.astype(np.int64) + 2  # +1.0 is two steps of 0.5
        expected[4] = 65_535  # the fill stays the fill
        np.testing.assert_array_equal(plus["level"][...].view(np.uint16), expected)


def test_plain_integer_variable_is_written_as_floats(tmp_path):
    path = tmp_path / "counts.nc"
    with legacy.Dataset(path, "w") as f:
        f.createDimension("time", 6)
        v = f.createVariable("n", "i4", ("time",), fill_value=np.int32(-1))
        v[:] = np.array([0, 1, 2, -1, 4, 5], dtype=np.int32)
    filter_file(path, tmp_path / "o.nc", lambda da: da / 2, var="n", progress=False)
    with h5py.File(tmp_path / "o.nc", "r") as out:
        assert out["n"].dtype.kind == "f"
        assert out["n"].attrs["_FillValue"] == -1.0
        np.testing.assert_array_equal(out["n"][...], [0, 0.5, 1, -1, 2, 2.5])


def test_times_in_a_calendar_numpy_lacks_round_trip_unchanged(tmp_path):
    path = tmp_path / "noleap.nc"
    times = np.array([0, 24, 48, 1416, 1440, 1464], dtype=np.int32)  # days around 28 Feb
    raw = raw_temperatures(n=6)
    write_source(path, raw, calendar="noleap", time_values=times)
    filter_file(path, tmp_path / "o.nc", lambda da: da, var="temp", progress=False)
    with h5py.File(tmp_path / "o.nc", "r") as out:
        np.testing.assert_array_equal(out["time"][...], times)
        assert out["time"].attrs["calendar"] == "noleap"
        assert out["time"].attrs["units"] == "hours since 2001-03-01 00:00:00"
        np.testing.assert_array_equal(out["temp"][...], raw)


def test_attributes_dropped_by_the_function_come_back(source, tmp_path):
    path, _ = source

    def func(da):
        result = da * 1.0
        result.attrs = {"filtered_by": "test"}
        return result

    filter_file(path, tmp_path / "o.nc", func, var="temp", progress=False)
    with h5py.File(tmp_path / "o.nc", "r") as out:
        attrs = user_attrs(out["temp"])
    assert attrs["units"] == "K" and attrs["filtered_by"] == "test"


# ---------------------------------------------------------------------------------------
# Plain HDF5
# ---------------------------------------------------------------------------------------


def test_plain_hdf5_datasets_are_filtered_along_a_phony_dimension(tmp_path):
    path = tmp_path / "plain.h5"
    signal = np.random.default_rng(1).normal(size=(3, 200))
    with h5py.File(path, "w") as f:
        f["signal"] = signal
        f["signal"].attrs["units"] = "mV"
        f["rate"] = np.arange(200.0)  # sorts first: its length is phony_dim_0
        f.attrs["site"] = "lab"
    before = sha256(path)
    target = tmp_path / "out.h5"
    filter_file(path, target, lambda da: da * 3, var="signal", dim="phony_dim_0", progress=False)
    with h5py.File(target, "r") as out:
        np.testing.assert_array_equal(out["signal"][...], signal * 3)
        np.testing.assert_array_equal(out["rate"][...], np.arange(200.0))
        assert out["signal"].attrs["units"] == "mV" and out.attrs["site"] == "lab"
    assert sha256(path) == before
    with pytest.raises(ValueError, match=r"are phony_dim_1 \(3\), phony_dim_0 \(200\)"):
        filter_file(path, tmp_path / "x.h5", lambda da: da, var="signal", dim="time")


# ---------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------


class Recorder:
    """Counts the elements of each read from and write to the HDF5 dataset ``name``."""

    def __init__(self, monkeypatch, name: str):
        self.reads: list[int] = []
        self.writes: list[int] = []
        get, put = h5py.Dataset.__getitem__, h5py.Dataset.__setitem__
        recorder = self

        def getitem(ds, key, *args, **kwargs):
            value = get(ds, key, *args, **kwargs)
            if ds.name == f"/{name}":
                recorder.reads.append(np.size(value))
            return value

        def setitem(ds, key, value):
            if ds.name == f"/{name}":
                recorder.writes.append(np.size(value))
            return put(ds, key, value)

        monkeypatch.setattr(h5py.Dataset, "__getitem__", getitem)
        monkeypatch.setattr(h5py.Dataset, "__setitem__", setitem)


@pytest.mark.parametrize("how", ["chunks", "chunk_bytes"])
def test_a_file_larger_than_a_chunk_is_read_and_written_chunk_by_chunk(tmp_path, monkeypatch, how):
    n, chunk = 100_000, 10_000  # 3 stations × 100 000 samples: 1.2 MB decoded (float32)
    raw = raw_temperatures(n=n)
    path = tmp_path / "big.nc"
    write_source(path, raw, chunksizes=(1, 2500))
    target = tmp_path / "out.nc"
    rec = Recorder(monkeypatch, "temp")
    options = {"chunks": chunk} if how == "chunks" else {"chunk_bytes": chunk * 3 * 4}
    filter_file(path, target, rolling, var="temp", progress=False, **options)
    monkeypatch.undo()
    assert rec.reads and max(rec.reads) <= 3 * chunk  # one dask chunk at most
    assert sum(rec.reads) >= raw.size  # everything was read, in pieces
    assert len(rec.writes) >= 10 and max(rec.writes) <= 3 * chunk
    assert sum(rec.writes) == raw.size
    with h5py.File(target, "r") as out:
        packed = out["temp"][...]
    reference = centred_mean(decoded(raw[:, :2000]), 5)[:, :1998]
    written = packed[:, :1998] * float(SCALE) + float(OFFSET)
    assert np.max(np.abs(written - reference)) <= float(SCALE) / 2 + 1e-3
    # across a chunk border, too
    border = slice(chunk - 10, chunk + 10)
    reference = centred_mean(decoded(raw[:, chunk - 12 : chunk + 12]), 5)[:, 2:-2]
    written = packed[:, border] * float(SCALE) + float(OFFSET)
    assert np.max(np.abs(written - reference)) <= float(SCALE) / 2 + 1e-3


def test_chunk_plan():
    sizes = {"station": 4, "time": 100_000}
    # 1 MiB of float64 rows of 4 stations: 32 768 samples
    assert chunk_plan(sizes, "time", 8, target_bytes=2**20) == {"station": 4, "time": 32_768}
    # 16 KiB: 512 samples, raised to the 4096 minimum; the one station cannot be cut
    assert chunk_plan({"station": 1, "time": 10**5}, "time", 8, target_bytes=2**14) == {
        "station": 1,
        "time": 4096,
    }
    # 64 KiB: 2048 samples, raised to 4096, so the stations are cut to fit
    assert chunk_plan(sizes, "time", 8, target_bytes=2**16) == {"station": 2, "time": 4096}
    # a multiple of the file's own chunks along time
    assert chunk_plan(sizes, "time", 8, target_bytes=2**20, disk_chunks={"time": 1000}) == {
        "station": 4,
        "time": 32_000,
    }
    # too many stations for 4096 samples: the stations are cut too
    plan = chunk_plan({"station": 10_000, "time": 100_000}, "time", 8, target_bytes=2**24)
    assert plan["time"] == 4096 and plan["station"] * 4096 * 8 <= 2**24
    assert chunk_plan(sizes, "time", 8, {"time": 10}) == {"station": 4, "time": 10}
    with pytest.raises(ValueError, match="chunks names 'x'"):
        chunk_plan(sizes, "time", 8, {"x": 10})
    with pytest.raises(ValueError, match="at least 1"):
        chunk_plan(sizes, "time", 8, 0)


# ---------------------------------------------------------------------------------------
# Failures and refusals
# ---------------------------------------------------------------------------------------


def test_a_failure_mid_way_leaves_the_old_target_and_no_temporary(source, tmp_path):
    path, _ = source
    target = tmp_path / "out.nc"
    target.write_bytes(b"previous result")

    def fails_late(da):
        def block(x, block_info=None):
            if block_info[0]["chunk-location"][-1] == 3:
                raise RuntimeError("disk on fire")
            return x

        return da.copy(data=da.data.map_blocks(block, dtype=da.dtype))

    with pytest.raises(RuntimeError, match="disk on fire"):
        filter_file(path, target, fails_late, var="temp", chunks=40, overwrite=True, progress=False)
    assert target.read_bytes() == b"previous result"
    assert leftovers(tmp_path) == ["obs.nc", "out.nc"]


def test_refusals_name_the_problem(source, tmp_path):
    path, _ = source
    out = tmp_path / "o.nc"

    def refuse(exc, fragment, *args, **kwargs):
        kwargs.setdefault("var", "temp")
        with pytest.raises(exc, match=fragment):
            filter_file(*args, progress=False, **kwargs)

    refuse(FileNotFoundError, "no such file", tmp_path / "missing.nc", out, rolling)
    refuse(IsADirectoryError, "is a folder", tmp_path, out, rolling)
    text = tmp_path / "notes.nc"
    text.write_text("not a netcdf file")
    refuse(ValueError, "not a NetCDF-4/HDF5 file", text, out, rolling)
    classic = tmp_path / "classic.nc"
    classic.write_bytes(b"CDF\x01" + bytes(60))
    refuse(ValueError, "NetCDF-3", classic, out, rolling)
    refuse(
        ValueError,
        r"no variable var='tmp'; its variables are: temp, pressure",
        path,
        out,
        rolling,
        var="tmp",
    )
    refuse(
        ValueError,
        r"dim='station' is not a dimension of 'pressure'; .* are time \(240\)$",
        path,
        out,
        rolling,
        var="pressure",
        dim="station",
    )
    refuse(ValueError, "the target is the source", path, path, rolling)
    link = tmp_path / "link.nc"
    os.symlink(path, link)
    refuse(ValueError, "the target is the source", path, link, rolling)
    existing = tmp_path / "exists.nc"
    existing.write_bytes(b"keep me")
    refuse(FileExistsError, "overwrite=True", path, existing, rolling)
    assert existing.read_bytes() == b"keep me"
    refuse(FileNotFoundError, "does not exist", path, tmp_path / "no" / "o.nc", rolling)
    refuse(ValueError, "packing must be one of", path, out, rolling, packing="round")
    refuse(TypeError, "must stay lazy", path, out, lambda da: da.compute())
    refuse(TypeError, "dimensions and sizes", path, out, lambda da: da.isel(time=slice(5)))
    refuse(TypeError, "must return an xarray.DataArray", path, out, lambda da: da.data)
    assert leftovers(tmp_path) == sorted(
        ["obs.nc", "notes.nc", "classic.nc", "link.nc", "exists.nc"]
    )


def test_non_numeric_variables_are_refused(tmp_path):
    path = tmp_path / "names.nc"
    with legacy.Dataset(path, "w") as f:
        f.createDimension("time", 2)
        v = f.createVariable("label", str, ("time",))
        v[:] = np.array(["a", "b"], dtype=object)
    with pytest.raises(TypeError, match=r"'label' holds .* only real numbers"):
        filter_file(path, tmp_path / "o.nc", lambda da: da, var="label", progress=False)


def test_overwrite_replaces_the_target(source, tmp_path):
    path, raw = source
    target = tmp_path / "o.nc"
    target.write_bytes(b"old")
    filter_file(path, target, lambda da: da, var="temp", overwrite=True, progress=False)
    with h5py.File(target, "r") as out:
        np.testing.assert_array_equal(out["temp"][...], raw)


def test_progress_goes_to_stderr(source, tmp_path, capsys):
    path, _ = source
    filter_file(path, tmp_path / "o.nc", rolling, var="temp", chunks=60)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "obs.nc: " in captured.err and "tasks (100%)" in captured.err


# ---------------------------------------------------------------------------------------
# ndwconv smooth
# ---------------------------------------------------------------------------------------


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_smooth_is_a_registered_command_with_an_example(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "smooth" in out
    code, out, _ = run(capsys, "smooth", "--help")
    assert code == 0 and "ndwconv smooth obs.nc -o out/" in out.split("example")[-1]


@pytest.mark.parametrize(
    "argv",
    [
        ("smooth", "x.nc", "-o", "out", "--density", "gaussian:1"),  # no --var
        ("smooth", "x.nc", "-o", "out", "--var", "t", "--density", "g", "--mode", "cubic"),
        ("smooth", "x.nc", "-o", "out", "--var", "t", "--density", "g", "--chunks", "0"),
        ("smooth", "x.nc", "-o", "out", "--var", "t", "--density", "g", "--nan", "skip"),
    ],
)
def test_smooth_usage_errors_exit_2(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2 and "usage: ndwconv smooth" in err


def test_smooth_checks_everything_before_any_work(source, tmp_path, capsys):
    path, _ = source
    out = tmp_path / "out"
    out.mkdir()
    (out / "obs.nc").write_bytes(b"old")
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(path, twin / "obs.nc")
    args = ["--var", "temp", "--density", "gaussian:1", "--quiet"]
    code, stdout, err = run(
        capsys,
        "smooth",
        str(path),
        str(tmp_path / "nope.nc"),
        str(twin / "obs.nc"),
        "-o",
        str(out),
        *args,
    )
    assert code == 1 and stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("ndwconv: error: ") for line in lines)
    assert "exists; pass --overwrite" in lines[0]
    assert "nope.nc: no such file" in lines[1]
    assert "has the same output file as" in lines[2]
    assert (out / "obs.nc").read_bytes() == b"old"

    code, _, err = run(
        capsys,
        "smooth",
        str(path),
        "-o",
        str(tmp_path / "new"),
        "--var",
        "tmp",
        "--density",
        "gaussian:1",
    )
    assert code == 1 and "its variables are: temp, pressure" in err
    assert not (tmp_path / "new").exists()  # nothing created
    code, _, err = run(capsys, "smooth", str(path), "-o", str(tmp_path), *args)
    assert code == 1 and "is the input" in err
    code, _, err = run(capsys, "smooth", str(path), "-o", str(path), *args)
    assert code == 1 and err.count("\n") == 1 and "is a file, not a folder" in err


def test_smooth_command_end_to_end_equals_scipy(tmp_path, capsys):
    ndimage = pytest.importorskip("scipy.ndimage")
    raws = []
    for i, name in enumerate(("a.nc", "b.nc")):
        raw = raw_temperatures(seed=i)
        raw[raw == FILL] = 0  # no gaps: --nan raise
        write_source(tmp_path / name, raw)
        raws.append(raw)
    sums = [sha256(tmp_path / n) for n in ("a.nc", "b.nc")]
    out = tmp_path / "out" / "deeper"
    code, stdout, err = run(
        capsys,
        "smooth",
        str(tmp_path / "a.nc"),
        str(tmp_path / "b.nc"),
        "-o",
        str(out),
        "--var",
        "temp",
        "--density",
        "gaussian:6h",
        "--size",
        "25",
        "--mode",
        "nearest",
        "--chunks",
        "50",
        "--packing",
        "float",
        "--quiet",
    )
    assert code == 0, err
    assert stdout.count(" -> ") == 2
    taps = np.arange(-12, 13)
    weights = np.exp(-(taps**2) / (2 * 6.0**2))  # σ = 6 h = 6 hourly samples
    weights /= weights.sum()
    for name, raw, before in zip(("a.nc", "b.nc"), raws, sums, strict=True):
        assert sha256(tmp_path / name) == before
        expected = ndimage.correlate1d(decoded(raw), weights, axis=-1, mode="nearest")
        with h5py.File(out / name, "r") as f:
            values = f["temp"][...]
            assert f["temp"].attrs["units"] == "K" and f["time"].attrs["calendar"]
        np.testing.assert_allclose(values, expected, rtol=0, atol=1e-3)


def test_smooth_command_masks_gaps_and_keeps_the_packing(tmp_path, capsys):
    raw = write_source(tmp_path / "obs.nc")
    code, _, err = run(
        capsys,
        "smooth",
        str(tmp_path / "obs.nc"),
        "-o",
        str(tmp_path / "o"),
        "--var",
        "temp",
        "--density",
        "gaussian:2h",
        "--size",
        "9",
        "--nan",
        "mask",
        "--quiet",
    )
    assert code == 0, err
    x = decoded(raw)
    taps = np.arange(-4, 5)
    weights = np.exp(-(taps**2) / (2 * 2.0**2))
    valid = np.isfinite(x)
    padded = np.pad(np.where(valid, x, 0.0), ((0, 0), (4, 4)), mode="symmetric")
    mask = np.pad(valid.astype(float), ((0, 0), (4, 4)), mode="symmetric")
    num = np.stack([np.convolve(r, weights[::-1], "valid") for r in padded])
    den = np.stack([np.convolve(r, weights[::-1], "valid") for r in mask])
    expected = num / den  # normalised convolution, scipy's "reflect" = NumPy's "symmetric"
    with h5py.File(tmp_path / "o" / "obs.nc", "r") as f:
        packed = f["temp"][...]
        assert packed.dtype == np.int16 and f["temp"].attrs["scale_factor"] == SCALE
    written = packed * float(SCALE) + float(OFFSET)
    assert np.max(np.abs(written - expected)) <= float(SCALE) / 2 + 1e-3
