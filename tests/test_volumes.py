"""ndwconv.adapters.volumes: NIfTI/HDF5 round trips, atomic saves and clear errors.

Real volumes are the small NIfTI files nibabel ships in ``nibabel.testing.data_path``.
"""

import gzip
import hashlib
import os

import numpy as np
import pytest

from ndwconv.adapters import volumes
from ndwconv.adapters.volumes import Volume, load, save

nib = pytest.importorskip("nibabel")
from nibabel.testing import data_path  # noqa: E402

BUNDLED = ["anatomical.nii", "functional.nii", "example4d.nii.gz", "example_nifti2.nii.gz",
           "standard.nii.gz"]


def _checksum(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _codes(volume):
    return int(volume.header["qform_code"]), int(volume.header["sform_code"])


def _assert_same_geometry(a, b):
    np.testing.assert_array_equal(a.affine, b.affine)
    assert _codes(a) == _codes(b)
    np.testing.assert_allclose(a.spacing, b.spacing, rtol=1e-6)
    assert a.kind == b.kind and a.shape == b.shape


@pytest.mark.parametrize("name", BUNDLED)
@pytest.mark.parametrize("policy", ["input", "float32"])
def test_bundled_round_trip(tmp_path, name, policy):
    src = load(os.path.join(data_path, name))
    out = tmp_path / name
    save(src, out, like=src, dtype_policy=policy)
    back = load(out)
    _assert_same_geometry(back, src)
    if policy == "input":
        assert back.dtype == src.dtype
        assert (back.scl_slope, back.scl_inter) == (src.scl_slope, src.scl_inter)
        np.testing.assert_array_equal(back.read(), src.read())
    else:
        # float32 in the template header's byte order (anatomical.nii is big-endian)
        assert back.dtype.newbyteorder("=") == np.float32 and back.scl_slope is None
        np.testing.assert_allclose(back.read(), src.read(), rtol=1e-6)


def test_bundled_set_covers_scaled_int16():
    # functional.nii stores int16 with a slope, so the round trip above covers that path.
    src = load(os.path.join(data_path, "functional.nii"))
    assert src.dtype.kind == "i" and src.scl_slope is not None


def _nifti(tmp_path, name, data, affine, image_class=None, slope=None, inter=None, zooms=None):
    img = (image_class or nib.Nifti1Image)(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=4)
    if zooms is not None:
        img.header.set_zooms(zooms)
    img.header.set_slope_inter(slope, inter)
    path = tmp_path / name
    nib.save(img, path)
    return path


@pytest.mark.parametrize("diag", [(1.0, 1.0, 1.0), (-1.0, -1.0, 1.0), (-0.5, 2.0, -3.0)])
def test_flipped_affines_round_trip(tmp_path, diag):
    affine = np.diag([*diag, 1.0])
    affine[:3, 3] = (10.0, -20.0, 5.0)
    path = _nifti(tmp_path, "in.nii", np.arange(60, dtype=np.float32).reshape(3, 4, 5), affine)
    src = load(path, ndim=3)
    np.testing.assert_array_equal(src.affine, affine)
    assert src.spacing == tuple(abs(d) for d in diag)
    save(src, tmp_path / "out.nii.gz", like=src)
    back = load(tmp_path / "out.nii.gz")
    _assert_same_geometry(back, src)
    assert _codes(back) == (1, 4)


def test_int16_with_slope_and_inter_round_trips_exactly(tmp_path):
    raw = np.arange(-300, 300, dtype=np.int16).reshape(6, 10, 10)
    path = _nifti(tmp_path, "in.nii", raw, np.eye(4), slope=0.25, inter=-7.0)
    src = load(path)
    assert (src.dtype, src.scl_slope, src.scl_inter) == (np.int16, 0.25, -7.0)
    np.testing.assert_array_equal(src.read(), raw * 0.25 - 7.0)
    save(src, tmp_path / "out.nii", like=src)
    back = load(tmp_path / "out.nii")
    assert (back.dtype, back.scl_slope, back.scl_inter) == (np.int16, 0.25, -7.0)
    np.testing.assert_array_equal(back.data.get_unscaled(), raw)


def test_input_policy_rounds_to_grid_and_clips(tmp_path):
    zeros = np.zeros((2, 2, 2), np.int16)
    path = _nifti(tmp_path, "in.nii", zeros, np.eye(4), slope=2.0, inter=1.0)
    src = load(path)
    values = np.array([3.9, 1e9, -1e9, 1.0, 5.1, 0.0, 7.0, 9.0]).reshape(2, 2, 2)
    save(values, tmp_path / "out.nii", like=src)
    raw = load(tmp_path / "out.nii").data.get_unscaled().ravel()
    np.testing.assert_array_equal(raw, [1, 32767, -32768, 0, 2, 0, 3, 4])


def test_nifti2_and_time_zoom(tmp_path):
    data = np.random.default_rng(0).standard_normal((4, 5, 6, 3)).astype(np.float32)
    path = _nifti(tmp_path, "in.nii.gz", data, np.diag([2.0, 2.0, 3.0, 1.0]), nib.Nifti2Image,
                  zooms=(2.0, 2.0, 3.0, 1.5))
    src = load(path, ndim=4)
    assert src.kind == "nifti2" and src.spacing == (2.0, 2.0, 3.0, 1.5)
    save(src, tmp_path / "out.nii", like=src, dtype_policy="float32")
    back = load(tmp_path / "out.nii")
    _assert_same_geometry(back, src)
    np.testing.assert_array_equal(back.read(), data)
    np.testing.assert_array_equal(back.read((slice(1, 3), 2, slice(None), -1)), data[1:3, 2, :, -1])


def test_plain_array_without_template(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    save(data, tmp_path / "out.nii")
    back = load(tmp_path / "out.nii")
    assert back.dtype == np.uint8 and back.kind == "nifti1"
    np.testing.assert_array_equal(back.read(), data)


# --- HDF5 -------------------------------------------------------------------------------


@pytest.fixture
def h5py():
    return pytest.importorskip("h5py")


@pytest.fixture
def h5_volume(tmp_path, h5py):
    data = np.random.default_rng(1).integers(0, 1000, (16, 12, 10)).astype(np.uint16)
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    path = tmp_path / "stack.h5"
    with h5py.File(path, "w") as handle:
        node = handle.create_dataset("scans/t1", data=data, chunks=(4, 4, 4))
        node.attrs["spacing"] = (0.5, 0.5, 2.0)
        node.attrs["affine"] = affine
        node.attrs["subject"] = "s01"
        handle.create_dataset("scans/mask", data=data > 500)
    return path, data, affine


def test_hdf5_lazy_tiles(h5_volume, h5py):
    path, data, affine = h5_volume
    with load(f"{path}:/scans/t1", ndim=3) as vol:
        assert isinstance(vol.data, h5py.Dataset)  # not loaded into memory
        assert vol.kind == "hdf5" and vol.dtype == np.uint16 and vol.shape == data.shape
        assert vol.spacing == (0.5, 0.5, 2.0) and vol.header["subject"] == "s01"
        np.testing.assert_array_equal(vol.affine, affine)
        region = (slice(3, 11), slice(2, 7), slice(0, 10, 3))
        tile = vol.read(region)
        assert tile.dtype == np.float32
        np.testing.assert_array_equal(tile, data[region])
    assert not vol.data  # file closed with the context


@pytest.mark.parametrize("policy", ["input", "float32"])
def test_hdf5_round_trip(tmp_path, h5_volume, policy):
    path, data, affine = h5_volume
    with load(f"{path}:/scans/t1") as src:
        save(src, f"{tmp_path / 'out.h5'}:/result/t1", like=src, dtype_policy=policy)
    with load(tmp_path / "out.h5") as back:  # the only dataset, found without a name
        assert back.dtype == (np.uint16 if policy == "input" else np.float32)
        assert back.spacing == (0.5, 0.5, 2.0) and back.header["subject"] == "s01"
        np.testing.assert_array_equal(back.affine, affine)
        np.testing.assert_array_equal(back.read(), data)


def test_hdf5_element_size_um(tmp_path, h5py):
    path = tmp_path / "em.hdf5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("raw", data=np.zeros((2, 3, 4))).attrs["element_size_um"] = (4, 5, 6)
    with load(path) as vol:
        assert vol.spacing == (4.0, 5.0, 6.0) and vol.affine is None


def test_hdf5_to_nifti_uses_spacing_and_affine(tmp_path, h5_volume):
    path, _, affine = h5_volume
    with load(f"{path}:/scans/t1") as src:
        save(src, tmp_path / "out.nii.gz")
    back = load(tmp_path / "out.nii.gz")
    np.testing.assert_array_equal(back.affine, affine)
    assert back.spacing == (0.5, 0.5, 2.0) and back.dtype == np.uint16


# --- atomicity and refusals ----------------------------------------------------------


def test_failed_nifti_write_leaves_nothing(tmp_path, monkeypatch):
    src_path = os.path.join(data_path, "anatomical.nii")
    before = _checksum(src_path)
    src = load(src_path)

    def broken_save(img, filename):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save(src, tmp_path / "out.nii", like=src)
    assert list(tmp_path.iterdir()) == []
    assert _checksum(src_path) == before


def test_failed_read_leaves_nothing(tmp_path):
    class Exploding:
        shape, dtype, ndim = (2, 2, 2), np.dtype(np.float32), 3

        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save(Exploding(), tmp_path / "out.nii")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out.nii"
    save(np.zeros((2, 2, 2), np.float32), out)
    before = _checksum(out)
    with pytest.raises(FileExistsError, match=r"out.nii"):
        save(np.ones((2, 2, 2), np.float32), out)
    assert _checksum(out) == before
    save(np.ones((2, 2, 2), np.float32), out, overwrite=True)
    np.testing.assert_array_equal(load(out).read(), 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii"]


def test_never_overwrites_the_input(tmp_path, h5_volume):
    path = _nifti(tmp_path, "in.nii", np.zeros((2, 2, 2), np.float32), np.eye(4))
    src = load(path)
    before = _checksum(path)
    with pytest.raises(ValueError, match="input file"):
        save(src.read(), tmp_path / "." / "in.nii", like=src, overwrite=True)
    assert _checksum(path) == before
    h5_path = h5_volume[0]
    with load(f"{h5_path}:/scans/t1") as vol, pytest.raises(ValueError, match="input file"):
        save(vol, f"{h5_path}:/other", overwrite=True)


def test_nonfinite_policy(tmp_path):
    data = np.zeros((3, 3, 3), np.float32)
    data[0, 0, 0], data[1, 1, 1] = np.nan, np.inf
    with pytest.raises(ValueError, match="2 non-finite"):
        save(data, tmp_path / "out.nii")
    assert list(tmp_path.iterdir()) == []
    save(data, tmp_path / "out.nii", nonfinite="allow")
    vol = load(tmp_path / "out.nii")  # load leaves the values alone
    assert np.isnan(vol.read()[0, 0, 0])
    with pytest.raises(ValueError, match="2 non-finite"):
        vol.check_finite()
    Volume(np.zeros((2, 2, 2))).check_finite()


# --- load errors ---------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.nii"):
        load(tmp_path / "nope.nii")
    with pytest.raises(FileNotFoundError, match=r"nope.h5"):
        load(f"{tmp_path / 'nope.h5'}:/data")


def test_unknown_extension(tmp_path):
    (tmp_path / "scan.mnc").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"scan.mnc.*unknown extension"):
        load(tmp_path / "scan.mnc")
    with pytest.raises(ValueError, match="unknown extension"):
        save(np.zeros((2, 2, 2)), tmp_path / "out.png")


def test_truncated_nii_gz(tmp_path):
    with gzip.open(os.path.join(data_path, "example4d.nii.gz"), "rb") as handle:
        whole = gzip.compress(handle.read())
    for cut in (len(whole) // 2, 200):
        path = tmp_path / f"cut{cut}.nii.gz"
        path.write_bytes(whole[:cut])
        with pytest.raises(ValueError, match=f"cut{cut}.nii.gz"):
            load(path)


def test_truncated_and_garbage_nii(tmp_path):
    with open(os.path.join(data_path, "anatomical.nii"), "rb") as handle:
        whole = handle.read()
    (tmp_path / "short.nii").write_bytes(whole[: len(whole) - 10])
    with pytest.raises(ValueError, match=r"short.nii.*truncated"):
        load(tmp_path / "short.nii")
    (tmp_path / "junk.nii").write_bytes(np.random.default_rng(2).bytes(1000))
    with pytest.raises(ValueError, match=r"junk.nii"):
        load(tmp_path / "junk.nii")


def test_missing_hdf5_dataset_lists_available(h5_volume):
    path = h5_volume[0]
    with pytest.raises(ValueError, match=r"/missing.*/scans/mask, /scans/t1"):
        load(f"{path}:/missing")
    with pytest.raises(ValueError, match=r"2 datasets.*/scans/mask, /scans/t1"):
        load(path)


def test_ndim_mismatch():
    with pytest.raises(ValueError, match=r"expected 3-D data, got shape \(128, 96, 24, 2\)"):
        load(os.path.join(data_path, "example4d.nii.gz"), ndim=3)


@pytest.mark.parametrize("suffix", ["nii.gz", "h5:/g/v"])
def test_memmap_is_saved_slab_by_slab_like_an_array(tmp_path, monkeypatch, suffix):
    """A memmap takes the streaming path (small slabs forced here); the file equals the one
    written from the same values in memory, and no scratch file is left behind."""
    monkeypatch.setattr(volumes, "_CHUNK_BYTES", 1000)
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((9, 7, 5)) * 300).astype(np.float32)
    template_path = str(tmp_path / "template.nii.gz")
    image = nib.Nifti1Image(np.zeros((9, 7, 5), np.int16), np.eye(4))
    image.header.set_slope_inter(0.5, -3.0)
    nib.save(image, template_path)
    mapped = np.memmap(tmp_path / "values.raw", dtype=np.float32, mode="w+", shape=values.shape)
    mapped[:] = values
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with volumes.load(template_path) as template:
        a = volumes.save(values, f"{out_dir}/a.{suffix}", like=template)
        b = volumes.save(mapped, f"{out_dir}/b.{suffix}", like=template)
    with volumes.load(a) as va, volumes.load(b) as vb:
        assert va.dtype == vb.dtype == np.int16
        np.testing.assert_array_equal(va.read(), vb.read())
        if suffix == "nii.gz":  # quantised on the template's grid: within half a step
            assert np.abs(vb.read() - values).max() <= 0.25 + 1e-6
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        [os.path.basename(volumes.split_path(a)[0]), os.path.basename(volumes.split_path(b)[0])])
