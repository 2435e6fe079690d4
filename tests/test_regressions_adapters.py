"""Regression tests for silent wrong results and leftovers in the tiler, volumes and atomic writes.

Each test is named after the failure it guards against; expected values come from
independent references (NumPy's own rounding, nibabel and h5py reading the files).
"""

import gzip
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ndwconv.adapters import volumes
from ndwconv.adapters.atomic import atomic_write, scratch_file
from ndwconv.adapters.tiling import sliding_window

nib = pytest.importorskip("nibabel")
h5py = pytest.importorskip("h5py")

INT_DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]


def identity(x):
    return x


def _reference_round_clip(values, dtype):
    """Round half to even and clip to ``dtype``'s range, in exact Python integers."""
    info = np.iinfo(dtype)
    flat = [min(max(int(np.rint(v)), int(info.min)), int(info.max)) for v in values.ravel()]
    return np.array(flat, dtype=dtype).reshape(values.shape)


# ---------------------------------------------------------------------------- tiler


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_sliding_window_int_out_rounds_and_clips(dtype):
    info = np.iinfo(dtype)
    specials = [-2.5, -1.5, -0.6, -0.4, 0.4, 0.5, 0.6, 1.5, 2.5, 3.7, -3.7, 99.5]
    beyond = [float(info.min) * 2 - 7.0, float(info.max) * 2 + 7.0, -1e30, 1e30]
    values = np.array(specials + beyond, dtype=np.float32)
    x = np.resize(values, 2 * 9 * 8).reshape(2, 9, 8).astype(np.float32)
    out = np.zeros(x.shape, dtype=dtype)
    sliding_window(identity, x, 4, overlap=0.5, out=out, progress=False)
    np.testing.assert_array_equal(out, _reference_round_clip(x.astype(np.float64), dtype))


@pytest.mark.parametrize("dtype", ["int16", "uint8", "int64"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_sliding_window_nonfinite_into_int_out_is_an_error(dtype, bad):
    x = np.ones((1, 6, 6), np.float32)
    x[0, 3, 3] = bad
    out = np.zeros(x.shape, dtype=dtype)
    with pytest.raises(ValueError, match="out"):
        sliding_window(identity, x, 4, overlap=0.5, out=out, progress=False)


def test_sliding_window_float16_out_overflow_is_an_error():
    x = np.full((1, 6, 6), 1e5, np.float32)  # beyond float16's 65504
    out = np.zeros(x.shape, dtype=np.float16)
    with pytest.raises(ValueError, match="out"):
        sliding_window(identity, x, 4, overlap=0.5, out=out, progress=False)


def _poison_inner_faces(margin, bad):
    """A predictor that returns channel 0 but writes ``bad`` into every margin band of a
    tile face lying inside the volume; channel 1 of the input marks the volume's border."""

    def predictor(x):
        y = x[:, :1].clone()
        border = x[:, 1]
        spatial = x.ndim - 2
        for i in range(x.shape[0]):
            for axis in range(spatial):
                for face in (0, -1):
                    edge = [slice(None)] * spatial
                    edge[axis] = face
                    if bool((border[i][tuple(edge)] == 1).all()):
                        continue  # a face on the volume's border is kept
                    band = [slice(None)] * spatial
                    band[axis] = slice(0, margin) if face == 0 else slice(-margin, None)
                    y[(i, 0, *band)] = bad
        return y

    return predictor


@pytest.mark.parametrize("shape", [(23,), (13, 11), (10, 9, 11)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_tiler_margin_nonfinite_in_discarded_voxels_does_not_reach_output(shape, bad, blend):
    rng = np.random.default_rng(0)
    data = rng.standard_normal(shape).astype(np.float32)
    border = np.zeros(shape, np.float32)
    for axis in range(len(shape)):
        index = [slice(None)] * len(shape)
        index[axis] = 0
        border[tuple(index)] = 1
        index[axis] = -1
        border[tuple(index)] = 1
    source = np.stack([data, border])
    margin = 1
    got = sliding_window(
        _poison_inner_faces(margin, bad),
        source,
        6,
        overlap=3,
        margin=margin,
        blend=blend,
        progress=False,
    )
    np.testing.assert_array_equal(got[0], data)


def test_sliding_window_predictor_changing_channels_is_an_error():
    calls = []

    def predictor(x):
        calls.append(1)
        return x if len(calls) == 1 else x[:, :1]

    x = np.zeros((2, 12, 12), np.float32)
    with pytest.raises(ValueError, match="channels"):
        sliding_window(predictor, x, 4, overlap=0, batch_size=2, progress=False)


def test_sliding_window_read_only_out_refused_before_predicting():
    calls = []

    def predictor(x):
        calls.append(1)
        return x

    out = np.zeros((1, 8, 8), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        sliding_window(predictor, np.zeros((1, 8, 8), np.float32), 4, out=out, progress=False)
    assert calls == []


def test_sliding_window_out_in_read_only_hdf5_file_refused_before_predicting(tmp_path):
    path = tmp_path / "out.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("y", shape=(1, 8, 8), dtype="f4")
    calls = []
    with h5py.File(path, "r") as handle:
        with pytest.raises(ValueError, match="out is read-only"):
            sliding_window(
                lambda x: calls.append(1) or x,
                np.zeros((1, 8, 8), np.float32),
                4,
                out=handle["y"],
                progress=False,
            )
    assert calls == []


# -------------------------------------------------------------------------- volumes

# dtypes each format stores as themselves
NIFTI_DTYPES = [*INT_DTYPES, "float32", "float64"]
HDF5_DTYPES = [*INT_DTYPES, "float16", "float32", "float64", "bool"]


def _extreme_values(dtype, shape=(4, 5, 6)):
    """Values that float32 cannot hold exactly, plus the dtype's limits."""
    rng = np.random.default_rng(1)
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    if dtype.kind == "b":
        values = rng.integers(0, 2, n).astype(bool)
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
        values[:2] = info.min, info.max
        if dtype.itemsize >= 4:
            values[2] = 2**24 + 1  # not a float32
        if dtype.itemsize == 8:
            values[3] = 2**53 + 1  # not a float64
    else:
        values = (rng.standard_normal(n) * 1000).astype(dtype)
        values[:2] = np.finfo(dtype).min, np.finfo(dtype).max
        values[2] = np.finfo(dtype).tiny
    return values.reshape(shape)


@pytest.mark.parametrize("dtype", NIFTI_DTYPES)
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_save_like_itself_keeps_every_nifti_voxel(tmp_path, dtype, suffix):
    values = _extreme_values(dtype)
    src, dst = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    image = nib.Nifti1Image(values, np.eye(4), dtype=np.dtype(dtype))
    nib.save(image, src)
    with volumes.load(src) as volume:
        volumes.save(volume, dst, like=volume)
    back = nib.load(dst)
    assert back.get_data_dtype() == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(back.dataobj.get_unscaled()), values)


@pytest.mark.parametrize("dtype", HDF5_DTYPES)
def test_save_like_itself_keeps_every_hdf5_voxel(tmp_path, dtype):
    values = _extreme_values(dtype)
    src, dst = tmp_path / "in.h5", tmp_path / "out.h5"
    with h5py.File(src, "w") as handle:
        handle.create_dataset("data", data=values)
    with volumes.load(f"{src}:/data") as volume:
        volumes.save(volume, f"{dst}:/data", like=volume)
    with h5py.File(dst, "r") as handle:
        assert handle["data"].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(handle["data"][()], values)


@pytest.mark.parametrize(
    ("dtype", "slope", "inter"),
    [("int16", 0.37, 5.0), ("uint8", 2.0, -100.0), ("int32", 1e-3, 0.0), ("uint16", 0.5, 1.0)],
)
def test_save_like_itself_keeps_scaled_nifti_voxels(tmp_path, dtype, slope, inter):
    values = _extreme_values(dtype)
    src, dst = tmp_path / "in.nii.gz", tmp_path / "out.nii.gz"
    image = nib.Nifti1Image(values, np.eye(4), dtype=np.dtype(dtype))
    image.header.set_slope_inter(slope, inter)
    nib.save(image, src)
    with volumes.load(src) as volume:
        volumes.save(volume, dst, like=volume)
    back = nib.load(dst)
    assert back.get_data_dtype() == np.dtype(dtype)
    assert back.dataobj.slope == pytest.approx(slope) and back.dataobj.inter == pytest.approx(inter)
    np.testing.assert_array_equal(np.asarray(back.dataobj.get_unscaled()), values)


def test_save_int64_array_like_int64_volume_keeps_large_values(tmp_path):
    values = np.full((2, 2, 2), 2**62 + 1, dtype=np.int64)
    values[0, 0, 0] = -(2**63)
    src, dst = tmp_path / "in.h5", tmp_path / "out.h5"
    with h5py.File(src, "w") as handle:
        handle.create_dataset("data", data=values)
    with volumes.load(src) as volume:
        volumes.save(values.copy(), dst, like=volume)
    with h5py.File(dst, "r") as handle:
        np.testing.assert_array_equal(handle["data"][()], values)


def _gzip_nifti(tmp_path, name="scan.nii.gz"):
    values = np.random.default_rng(2).standard_normal((16, 16, 16)).astype(np.float32)
    path = tmp_path / name
    nib.save(nib.Nifti1Image(values, np.eye(4)), path)
    return path


def test_corrupt_byte_in_nii_gz_stream_is_an_error(tmp_path):
    path = _gzip_nifti(tmp_path)
    blob = bytearray(path.read_bytes())
    # flip bits of a byte in the middle of the deflate stream (random floats: stored as
    # literals, so the stream may still decode, to wrong bytes)
    blob[len(blob) // 2] ^= 0x10
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"scan\.nii\.gz"):
        volumes.load(path)


def test_bad_crc_in_nii_gz_trailer_is_an_error(tmp_path):
    path = _gzip_nifti(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[-8] ^= 0xFF  # first byte of the CRC-32 in the gzip trailer
    path.write_bytes(bytes(blob))
    with gzip.open(path) as stream, pytest.raises(gzip.BadGzipFile):
        stream.read()  # the file is really corrupt
    with pytest.raises(ValueError, match=r"scan\.nii\.gz"):
        volumes.load(path)


def test_rgb_nifti_refused_at_load(tmp_path):
    rgb = np.zeros((4, 4, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = tmp_path / "rgb.nii"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), path)
    with pytest.raises(ValueError, match=r"rgb\.nii.*not real numbers"):
        volumes.load(path)


def test_complex_nifti_refused_at_load(tmp_path):
    path = tmp_path / "complex.nii"
    nib.save(nib.Nifti1Image(np.ones((3, 3, 3), np.complex64), np.eye(4)), path)
    with pytest.raises(ValueError, match=r"complex\.nii.*not real numbers"):
        volumes.load(path)


@pytest.mark.parametrize(
    "data",
    [
        np.array([[b"ab", b"cd"]] * 2),
        np.zeros((2, 2, 2), dtype=[("a", "f4"), ("b", "i4")]),
        np.ones((2, 2, 2), np.complex128),
    ],
    ids=["string", "compound", "complex"],
)
def test_non_numeric_hdf5_dataset_refused_at_load(tmp_path, data):
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", data=data)
    with pytest.raises(ValueError, match=r"odd\.h5:/x.*not real numbers"):
        volumes.load(path)


@pytest.mark.parametrize("target", ["volume.nii.gz", "volume.h5"])
def test_folder_given_as_volume_file_reported_as_folder(tmp_path, target):
    folder = tmp_path / target
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder"):
        volumes.load(folder)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        volumes.save(np.zeros((2, 2, 2), np.float32), folder, overwrite=True)


def test_save_into_missing_folder_names_the_target(tmp_path):
    target = tmp_path / "missing" / "out.nii.gz"
    with pytest.raises(FileNotFoundError, match=r"out\.nii\.gz") as info:
        volumes.save(np.zeros((2, 2, 2), np.float32), target)
    assert ".tmp" not in str(info.value) and "ndwtmp" not in str(info.value)


def test_save_into_unwritable_folder_names_the_target(tmp_path, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".out.nii.gz.xyz.nii.gz"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError, match=r"cannot write .*out\.nii\.gz'") as info:
        volumes.save(np.zeros((2, 2, 2), np.float32), tmp_path / "out.nii.gz")
    assert ".xyz" not in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_save_into_read_only_folder_names_the_target(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match=r"out\.nii\.gz"):
            volumes.save(np.zeros((2, 2, 2), np.float32), folder / "out.nii.gz")
    finally:
        folder.chmod(0o700)


# ------------------------------------------------------------------ orphaned temporaries


def _host():
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _stale_names(name, pid):
    return [
        f".{name}.ndwtmp-{_host()}-{pid}-k2j4x9ab.tmp",
        f".{name}.ndwtmp-{_host()}-{pid}-q_81hz0c.result",
    ]


@pytest.mark.parametrize("writer", ["atomic_write", "scratch_file", "volumes.save"])
def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path, writer):
    name = "out.nii.gz"
    dead = _dead_pid()
    stale = _stale_names(name, dead)
    kept = [
        f".{name}.ndwtmp-{_host()}-{os.getpid()}-live0000.tmp",  # a running process's
        f".{name}.ndwtmp-otherhost-{dead}-abcdefgh.tmp",  # another host's
        f".other.nii.ndwtmp-{_host()}-{dead}-abcdefgh.tmp",  # another target's
        f".{name}.unrelated",
        f".{name}.12345.tmp",
        "notes.txt",
    ]
    for entry in stale + kept:
        (tmp_path / entry).write_bytes(b"x")
    if writer == "atomic_write":
        atomic_write(tmp_path / name, lambda p: p.write_bytes(b"new"))
    elif writer == "scratch_file":
        with scratch_file(tmp_path, name, ".result"):
            pass
    else:
        volumes.save(np.zeros((2, 2, 2), np.float32), tmp_path / name)
    left = {p.name for p in tmp_path.iterdir()}
    assert not left & set(stale)
    assert set(kept) <= left


def test_kill_9_during_atomic_write_leaves_a_temporary_the_next_write_removes(tmp_path):
    """A real writer killed with SIGKILL mid-write; the next write of the target tidies up."""
    module = Path(importlib.util.find_spec("ndwconv.adapters.atomic").origin)
    target = tmp_path / "step-1.safetensors"
    script = (
        "import importlib.util, sys, time\n"
        f"spec = importlib.util.spec_from_file_location('atomic', {str(module)!r})\n"
        "atomic = importlib.util.module_from_spec(spec); spec.loader.exec_module(atomic)\n"
        "def write(p):\n"
        "    p.write_bytes(b'partial'); print('writing', flush=True); time.sleep(60)\n"
        f"atomic.atomic_write({str(target)!r}, write)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert process.stdout.readline().strip() == b"writing"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".step-1.safetensors.")
    time.sleep(0.01)
    atomic_write(target, lambda p: p.write_bytes(b"complete"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-1.safetensors"]
    assert target.read_bytes() == b"complete"


def test_sliding_window_predictor_returning_numpy_is_named():
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        sliding_window(lambda x: x.numpy(), np.zeros((1, 6, 6), np.float32), 4, progress=False)


def test_sliding_window_zero_length_axis_is_an_error():
    with pytest.raises(ValueError, match="length 0"):
        sliding_window(identity, np.zeros((1, 0, 6), np.float32), 4, progress=False)


def test_sliding_window_bool_out_rounds_and_clips():
    x = np.array([[[-1.0, 0.2, 0.5, 0.7, 1.0, 1.5, 3.0, 0.0]]], np.float32)
    out = np.zeros(x.shape, bool)
    sliding_window(identity, x, (1, 4), overlap=0, out=out, progress=False)
    np.testing.assert_array_equal(out[0, 0], [False, False, False, True, True, True, True, False])


def test_sliding_window_torch_out_is_refused():
    with pytest.raises(TypeError, match="out"):
        sliding_window(
            identity, np.zeros((1, 6, 6), np.float32), 4, out=torch.zeros(1, 6, 6), progress=False
        )


def test_sliding_window_float64_prediction_overflowing_float32_out_is_an_error():
    x = np.ones((1, 6, 6), np.float32)
    with pytest.raises(ValueError, match="float32"):
        sliding_window(lambda t: t.double() * 1e300, x, 4, overlap=0.5, progress=False)
    out = np.zeros(x.shape, np.float32)
    with pytest.raises(ValueError, match="out"):
        sliding_window(lambda t: t.double() * 1e300, x, 4, overlap=0.5, out=out, progress=False)


@pytest.mark.parametrize("source", [np.ones((1, 6, 6), np.complex64), torch.ones(1, 6, 6).cfloat()])
def test_sliding_window_complex_source_is_refused(source):
    with pytest.raises(TypeError, match="complex"):
        sliding_window(identity, source, 4, progress=False)


def test_hdf5_scale_attributes_are_not_silently_ignored(tmp_path):
    path = tmp_path / "scaled.h5"
    with h5py.File(path, "w") as handle:
        node = handle.create_dataset("x", data=np.arange(8, dtype=np.int16).reshape(2, 2, 2))
        node.attrs["scale_factor"] = 0.5
        node.attrs["add_offset"] = 3.0
    with pytest.warns(UserWarning, match="scale_factor, add_offset are not applied"):
        volumes.load(path).close()


@pytest.mark.parametrize("kind", ["memmap", "hdf5"])
@pytest.mark.parametrize("dtype", ["uint8", "int16"])
def test_sliding_window_int_out_on_disk_rounds_and_clips(tmp_path, kind, dtype):
    values = np.array([-300.5, -2.5, -0.6, 0.5, 1.5, 2.6, 254.5, 70000.0], np.float32)
    x = np.resize(values, 1 * 8 * 6).reshape(1, 8, 6).astype(np.float32)
    expected = _reference_round_clip(x.astype(np.float64), dtype)
    if kind == "memmap":
        out = np.memmap(tmp_path / "out.raw", dtype=dtype, mode="w+", shape=x.shape)
        sliding_window(identity, x, 4, overlap=0.5, out=out, progress=False)
        np.testing.assert_array_equal(np.asarray(out), expected)
    else:
        with h5py.File(tmp_path / "out.h5", "w") as handle:
            out = handle.create_dataset("y", shape=x.shape, dtype=dtype)
            sliding_window(identity, x, 4, overlap=0.5, out=out, progress=False)
            np.testing.assert_array_equal(out[()], expected)


def test_stale_temporaries_of_every_name_can_be_removed_from_a_run_folder(tmp_path):
    from ndwconv.adapters.atomic import remove_stale_temporaries

    dead = _dead_pid()
    stale = [
        f".step-00000004.safetensors.ndwtmp-{_host()}-{dead}-abcdefgh.tmp",
        f".step-00000004.json.ndwtmp-{_host()}-{dead}-ijklmnop.tmp",
    ]
    kept = [f".step-00000006.json.ndwtmp-{_host()}-{os.getpid()}-abcdefgh.tmp", ".hidden"]
    for entry in stale + kept:
        (tmp_path / entry).write_bytes(b"x")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
