"""``ndwconv denoise`` on image files: tiled equals the whole-image pass of the model, in
the input's format, sample type and mode, alpha kept, input untouched, errors by file."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from ndwconv.cli import main

Image = pytest.importorskip("PIL.Image")
tifffile = pytest.importorskip("tifffile")
pytest.importorskip("safetensors")

from denoise_checkpoints import tiny_dncnn_checkpoint  # noqa: E402

from ndwconv.recipes.tasks import denoise as denoise_recipe  # noqa: E402

# depth 3 of 3 × 3 kernels: receptive radius 3; tiles of 16 overlapping by 8 drop 4 pixels
# at inner faces, so the tiled result is the whole-image one
TILING = ("--tile", "16", "--overlap", "0.5", "--batch", "3", "--device", "cpu", "--quiet")


def _checkpoint(folder, channels=1, ndim=2):
    return tiny_dncnn_checkpoint(
        folder / f"dncnn{ndim}d-c{channels}.safetensors", ndim=ndim, channels=channels, seed=1
    )


@pytest.fixture(scope="module")
def grey_model(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt"))


def _whole(checkpoint, x: np.ndarray) -> np.ndarray:
    """The model on the whole ``(C, H, W)`` image at once (float64 result)."""
    model = denoise_recipe.load_denoiser(checkpoint)
    with torch.no_grad():
        return model(torch.from_numpy(x.astype(np.float32))[None])[0].double().numpy()


def _run(capsys, *argv):
    code = main(["denoise", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _photo(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape).astype(np.uint8)


def test_grey_png_tiled_equals_the_whole_image_pass(capsys, tmp_path, grey_model):
    pixels = _photo((37, 45))
    source = tmp_path / "photo.png"
    Image.fromarray(pixels).save(source)
    before = _sha(source)
    code, out, err = _run(capsys, source, "-o", tmp_path / "out", "--model", grey_model, *TILING)
    assert code == 0, err
    target = tmp_path / "out" / "photo.png"
    assert out.startswith(f"{source} -> {target}: L 37×45 uint8, ")
    with Image.open(target) as im:
        assert im.mode == "L"
        got = np.asarray(im).astype(np.float64)
    whole = _whole(grey_model, pixels[None] / 255.0)[0] * 255
    # written rounded to the nearest uint8 and clipped: within half a step plus float noise
    assert np.abs(got - np.clip(whole, 0, 255)).max() <= 0.5 + 1e-3
    assert _sha(source) == before


def test_colour_image_with_a_grey_model_goes_channel_by_channel_and_keeps_alpha(
    capsys, tmp_path, grey_model
):
    rgba = _photo((30, 26, 4), seed=2)
    source = tmp_path / "logo.png"
    Image.fromarray(rgba).save(source)
    code, out, err = _run(capsys, source, "-o", tmp_path / "out", "--model", grey_model, *TILING)
    assert code == 0, err
    assert "RGBA 30×26 uint8" in out and "3 channels one at a time" in out and "alpha kept" in out
    with Image.open(tmp_path / "out" / "logo.png") as im:
        assert im.mode == "RGBA"
        got = np.asarray(im)
    assert np.array_equal(got[..., 3], rgba[..., 3])
    for c in range(3):
        whole = _whole(grey_model, rgba[None, ..., c] / 255.0)[0] * 255
        assert np.abs(got[..., c] - np.clip(whole, 0, 255)).max() <= 0.5 + 1e-3


def test_colour_model_on_colour_tiff_16_bit_and_float32_output(capsys, tmp_path):
    model = _checkpoint(tmp_path, channels=3)
    rgb = np.random.default_rng(3).integers(0, 65536, size=(33, 40, 3)).astype(np.uint16)
    source = tmp_path / "scan.tif"
    tifffile.imwrite(source, rgb, photometric="rgb")
    whole = _whole(model, np.moveaxis(rgb, -1, 0) / 65535.0)
    for policy in ("input", "float32"):
        out = tmp_path / policy
        code, stdout, err = _run(
            capsys, source, "-o", out, "--model", model, "--dtype", policy, *TILING
        )
        assert code == 0, err
        assert "RGB 33×40 uint16" in stdout and "one at a time" not in stdout
        got = tifffile.imread(out / "scan.tif")
        if policy == "float32":
            assert got.dtype == np.float32
            np.testing.assert_allclose(np.moveaxis(got, -1, 0), whole, rtol=0, atol=1e-5)
        else:
            assert got.dtype == np.uint16
            expected = np.clip(whole * 65535, 0, 65535)
            assert np.abs(np.moveaxis(got, -1, 0) - expected).max() <= 0.5 + 0.1


def test_image_errors_are_reported_per_file_and_the_others_go_on(capsys, tmp_path, grey_model):
    grey = tmp_path / "grey.png"
    Image.fromarray(_photo((20, 20))).save(grey)
    good = tmp_path / "good.npy"
    np.save(good, _photo((20, 21)))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, broken, good, "-o", out, "--model", grey_model, *TILING)
    assert code == 1
    assert f"{good} -> {out / 'good.npy'}: L 20×21 uint8" in stdout
    assert err.startswith(f"ndwconv: error: {broken}") or f"{broken}" in err.splitlines()[0]
    assert sorted(p.name for p in out.iterdir()) == ["good.npy"]

    colour_model = _checkpoint(tmp_path, channels=3)
    code, _, err = _run(capsys, grey, "-o", tmp_path / "o2", "--model", colour_model, *TILING)
    assert code == 1 and "give a grey model" in err

    model_3d = _checkpoint(tmp_path, ndim=3)
    code, _, err = _run(capsys, grey, "-o", tmp_path / "o3", "--model", model_3d, *TILING)
    assert code == 1 and "a 3-D model cannot denoise a 2-D image" in err

    code, _, err = _run(
        capsys, grey, "-o", tmp_path / "o4", "--model", grey_model, "--dtype", "float32", *TILING
    )
    assert code == 1 and "--dtype float32 needs a format that holds float samples" in err

    # an existing output is refused before any work, and left as it was
    (tmp_path / "o5").mkdir()
    (tmp_path / "o5" / "grey.png").write_bytes(b"keep me")
    code, _, err = _run(capsys, grey, "-o", tmp_path / "o5", "--model", grey_model, *TILING)
    assert code == 1 and "exists" in err
    assert (tmp_path / "o5" / "grey.png").read_bytes() == b"keep me"


def test_a_2d_nifti_is_denoised_by_a_2d_model(capsys, tmp_path, grey_model):
    nib = pytest.importorskip("nibabel")
    values = np.random.default_rng(4).normal(100, 20, size=(24, 19)).astype(np.float32)
    source = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(values, np.eye(4)), str(source))
    code, _, err = _run(capsys, source, "-o", tmp_path / "out", "--model", grey_model, *TILING)
    assert code == 0, err
    got = np.asarray(nib.load(str(tmp_path / "out" / "slice.nii.gz")).dataobj, np.float64)
    lo, hi = np.percentile(values, [0.5, 99.5])
    expected = _whole(grey_model, ((values - lo) / (hi - lo))[None])[0] * (hi - lo) + lo
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * (hi - lo))
