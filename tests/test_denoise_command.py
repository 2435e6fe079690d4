"""``ndwconv denoise``: tiled volume denoising from a checkpoint, end to end.

The reference of every check is the same model run once on the whole volume (or frame),
normalised by NumPy's 0.5th/99.5th percentiles of all voxels (the volumes are far below the
subsample size, so the command uses every voxel too). Tiles overlap by 6 voxels, so the
command drops a margin of 3 at inner tile faces: the receptive radius of a 3-layer DnCNN
with 3×3×3 kernels, hence tiled == whole up to float rounding.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch

from ndwconv.cli import main

nib = pytest.importorskip("nibabel")
h5py = pytest.importorskip("h5py")
pytest.importorskip("safetensors")

from denoise_checkpoints import tiny_dncnn_checkpoint  # noqa: E402

from ndwconv.recipes.tasks import denoise as denoise_recipe  # noqa: E402
from ndwconv.recipes.tasks.denoise import command as apply  # noqa: E402

TILING = ("--overlap", "0.5", "--batch", "3", "--device", "cpu", "--quiet")
AFFINE = np.array(
    [[0.9, 0.0, 0.1, -10.0], [0.0, 1.1, 0.0, 5.0], [0.0, 0.0, 1.5, 2.0], [0.0, 0.0, 0.0, 1.0]]
)


def _checkpoint(folder, ndim=3):
    """A tiny weighted DnCNN checkpoint; ``ndim=2`` leaves it out of the sidecar (default)."""
    return tiny_dncnn_checkpoint(
        folder / f"dncnn{ndim}d.safetensors", ndim=ndim, ndim_in_sidecar=ndim != 2
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt"))


def _nifti(path, shape, seed=0, slope=2.0, inter=10.0):
    """An int16 NIfTI with scaling; returns its scaled values as float64."""
    raw = np.random.default_rng(seed).integers(0, 300, size=shape).astype(np.int16)
    img = nib.Nifti1Image(raw, AFFINE)
    img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))
    return raw * slope + inter


def _reference(checkpoint, values, frames=False):
    """The model on the whole normalised volume (each frame when ``frames``), mapped back."""
    model = denoise_recipe.load_denoiser(checkpoint)
    lo, hi = np.percentile(values, [0.5, 99.5])
    x = torch.from_numpy(((values - lo) / (hi - lo)).astype(np.float32))
    with torch.no_grad():
        if frames:
            y = torch.stack([model(x[None, None, ..., t])[0, 0] for t in range(x.shape[-1])], -1)
        else:
            y = model(x[None, None])[0, 0]
    return y.double().numpy() * (hi - lo) + lo, hi - lo


def _denoise(capsys, *argv):
    code = main(["denoise", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _checksum(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.mark.parametrize(
    ("shape", "tile", "frames"),
    [
        ((20, 18, 16), ("--tile", 12), False),
        ((12, 10, 8, 3), ("--tile", 8, "--overlap", 0.75), True),
    ],
)
def test_nifti_output_equals_the_whole_volume_result(
    capsys, tmp_path, checkpoint, shape, tile, frames
):
    """A volume and a series (frame by frame); both overlap by 6 voxels."""
    source = tmp_path / "scan.nii.gz"
    values = _nifti(source, shape)
    expected, scale = _reference(checkpoint, values, frames)
    for policy in ("float32", "input"):
        out = tmp_path / policy
        args = ("-o", out, "--model", checkpoint, "--dtype", policy, *TILING, *tile)
        code, stdout, err = _denoise(capsys, source, *args)
        assert code == 0, err
        assert stdout.startswith(f"{source} -> {out / 'scan.nii.gz'}: shape ")
        assert "×".join(map(str, shape)) in stdout and "range [" in stdout
        img = nib.load(str(out / "scan.nii.gz"))
        assert img.shape == shape
        np.testing.assert_array_equal(img.affine, nib.load(str(source)).affine)
        got = np.asarray(img.dataobj, dtype=np.float64)
        if policy == "float32":
            assert img.get_data_dtype() == np.float32
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * scale)
        else:  # int16 on the input's scaling grid: within half a step of the reference
            assert img.get_data_dtype() == np.int16
            assert img.dataobj.slope == 2.0 and img.dataobj.inter == 10.0
            assert np.abs(got - expected).max() <= 1.0 + 1e-5 * scale


def test_hdf5_input_gives_hdf5_output(capsys, tmp_path, checkpoint):
    values = np.random.default_rng(1).normal(100.0, 20.0, size=(18, 16, 14)).astype(np.float32)
    source = tmp_path / "stack.h5"
    with h5py.File(source, "w") as handle:
        handle.create_dataset("/mri/t1", data=values).attrs["spacing"] = [0.5, 0.5, 2.0]
    out = tmp_path / "out"
    code, stdout, err = _denoise(
        capsys, f"{source}:/mri/t1", "-o", out, "--model", checkpoint, "--tile", 12, *TILING
    )
    assert code == 0, err
    assert f"-> {out / 'stack.h5'}:/mri/t1: shape 18×16×14" in stdout
    expected, scale = _reference(checkpoint, values.astype(np.float64))
    with h5py.File(out / "stack.h5", "r") as handle:
        node = handle["/mri/t1"]
        assert node.dtype == np.float32
        np.testing.assert_array_equal(node.attrs["spacing"], [0.5, 0.5, 2.0])
        np.testing.assert_allclose(node[()], expected, rtol=0, atol=1e-5 * scale)


def test_a_bad_input_is_reported_and_the_others_are_written(capsys, tmp_path, checkpoint):
    for name in ("a.nii", "c.nii"):
        _nifti(tmp_path / name, (10, 9, 8))
    missing = tmp_path / "b.nii"
    out = tmp_path / "out"
    code, stdout, err = _denoise(
        capsys,
        tmp_path / "a.nii",
        missing,
        tmp_path / "c.nii",
        "-o",
        out,
        "--model",
        checkpoint,
        *TILING,
    )
    assert code == 1
    assert sorted(os.listdir(out)) == ["a.nii", "c.nii"]
    assert len(stdout.splitlines()) == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ndwconv: error: {missing}"), err


def test_a_failing_predictor_leaves_no_output_and_the_input_untouched(
    capsys, tmp_path, checkpoint, monkeypatch
):
    load = denoise_recipe.load_denoiser

    def failing_after_two_batches(path, device="cpu"):
        model = load(path, device)
        forward, calls = model.forward, []

        def flaky(x):
            calls.append(1)
            if len(calls) > 2:
                raise RuntimeError("predictor failed on purpose")
            return forward(x)

        model.forward = flaky
        return model

    monkeypatch.setattr(apply, "load_denoiser", failing_after_two_batches)
    source = tmp_path / "scan.nii"
    _nifti(source, (20, 18, 16))
    before = _checksum(source)
    out = tmp_path / "out"
    code, stdout, err = _denoise(
        capsys, source, "-o", out, "--model", checkpoint, "--tile", 12, *TILING
    )
    assert code == 1 and stdout == ""
    assert err.strip() == f"ndwconv: error: {source}: predictor failed on purpose"
    # neither the output nor a temporary file, nor the output folder the run created
    assert sorted(os.listdir(tmp_path)) == ["scan.nii"]
    assert _checksum(source) == before


def test_a_model_of_another_dimensionality_is_an_error_naming_both(capsys, tmp_path):
    checkpoint_2d = _checkpoint(tmp_path, ndim=2)
    source = tmp_path / "scan.nii"
    _nifti(source, (10, 9, 8))
    code, stdout, err = _denoise(
        capsys, source, "-o", tmp_path / "out", "--model", checkpoint_2d, *TILING
    )
    assert code == 1 and stdout == ""
    line = err.strip()
    assert "\n" not in line and line.startswith(f"ndwconv: error: {source}: ")
    assert "2-D model" in line and "3-D volume" in line


def test_existing_outputs_and_clashing_names_are_refused(capsys, tmp_path, checkpoint):
    (tmp_path / "other").mkdir()
    first, second = tmp_path / "scan.nii", tmp_path / "other" / "scan.nii"
    _nifti(first, (10, 9, 8))
    _nifti(second, (10, 9, 8), seed=1)
    out = tmp_path / "out"
    code, _, err = _denoise(capsys, first, second, "-o", out, "--model", checkpoint, *TILING)
    assert code == 1
    assert err.strip() == (f"ndwconv: error: {second}: has the same output file as {first}")
    code, _, err = _denoise(capsys, first, "-o", out, "--model", checkpoint, *TILING)
    assert code == 1 and "exists; pass --overwrite" in err
    code, _, err = _denoise(capsys, first, "-o", out, "--model", checkpoint, "--overwrite", *TILING)
    assert code == 0, err
    code, _, err = _denoise(capsys, first, "-o", tmp_path, "--model", checkpoint, *TILING)
    assert code == 1 and "is the input" in err


def test_torchrun_ranks_share_the_inputs(capsys, tmp_path, checkpoint, monkeypatch):
    for name in ("a.nii", "b.nii", "c.nii"):
        _nifti(tmp_path / name, (10, 9, 8))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    out = tmp_path / "out"
    code, stdout, err = _denoise(
        capsys,
        *(tmp_path / n for n in ("a.nii", "b.nii", "c.nii")),
        "-o",
        out,
        "--model",
        checkpoint,
        *TILING,
    )
    assert code == 0, err
    assert os.listdir(out) == ["b.nii"]
    assert stdout.startswith(f"{tmp_path / 'b.nii'} -> ") and len(stdout.splitlines()) == 1


def test_normalised_source_never_writes_to_the_volume():
    """Regression: the tiler reads whole slabs, which for an in-memory float32 volume are
    views of its array and for a fully read NIfTI can be read-only; normalising them must
    not write into the volume (nor fail)."""
    from ndwconv.adapters import volumes

    data = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    kept = data.copy()
    source = apply._Normalised(volumes.Volume(data), lo=10.0, scale=4.0)
    np.testing.assert_array_equal(source[:, 0:4, :, :][0], (kept - 10.0) / 4.0)
    np.testing.assert_array_equal(data, kept)

    frozen = data.copy()
    frozen.flags.writeable = False
    frame = apply._Normalised(volumes.Volume(frozen), lo=1.0, scale=2.0, frame=2)
    assert frame.shape == (1, 4, 5)
    np.testing.assert_array_equal(frame[:, 1:3, :][0], (kept[1:3, :, 2] - 1.0) / 2.0)
