"""Shipped denoisers: every one loads without running code and denoises; ``ndwconv
models`` lists them; ``ndwconv denoise`` without ``--model`` picks the shipped model for
the input's kind and says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ndwconv.cli import main

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("safetensors")

from denoise_checkpoints import tiny_dncnn_checkpoint  # noqa: E402

from ndwconv.recipes import shipped  # noqa: E402
from ndwconv.recipes.tasks.denoise import load_denoiser  # noqa: E402

MODELS = shipped.shipped_models()


def test_the_package_ships_a_grey_image_denoiser():
    assert shipped.default_model(2) is not None
    assert shipped.default_model(2).channels == 1


@pytest.mark.parametrize("entry", MODELS, ids=[m.name for m in MODELS])
def test_every_shipped_model_loads_matches_its_entry_and_removes_noise(entry):
    sidecar = json.loads(entry.path.with_suffix(".json").read_text("utf-8"))
    assert "optimizer" not in sidecar  # weights only
    model = load_denoiser(entry.path)
    assert not model.training
    convs = [m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    assert len(convs[0].kernel_size) == entry.ndim and convs[0].in_channels == entry.channels
    assert entry.path.stat().st_size < 4 * 2**20  # a few MB at most in total
    assert entry.scores and all("psnr" in s for s in entry.scores.values())
    rng = np.random.default_rng(0)
    if entry.ndim == 2:
        from skimage import data

        clean = data.camera()[200:264, 200:264].astype(np.float64) / 255  # a 64 × 64 crop
        sigmas, rician = (15, 50), False
    else:
        clean, sigmas, rician = _phantom(32), (10, 25), True
    for sigma in sigmas:  # a blind model: one network for every level
        first = clean + rng.normal(0, sigma / 255, clean.shape)
        if rician:  # the magnitude of a complex signal with Gaussian noise in both parts
            noisy = np.hypot(first, rng.normal(0, sigma / 255, clean.shape))
        else:
            noisy = first
        x = torch.from_numpy(noisy.astype(np.float32))[None, None]
        x = x.expand(1, entry.channels, *clean.shape)
        with torch.no_grad():
            estimate = model(x)[0, 0].double().clamp(0, 1).numpy()

        def psnr(a):
            return 10 * np.log10(1 / np.mean((a - clean) ** 2))

        assert psnr(estimate) > psnr(noisy) + 4, sigma


def _phantom(size: int) -> np.ndarray:
    """A smooth 3-D head-like phantom on [0, 1]: nested blurred ellipsoids."""
    from scipy.ndimage import gaussian_filter

    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, size)] * 3, indexing="ij"))
    volume = np.zeros((size,) * 3)
    for radii, level in (((0.9, 0.8, 0.85), 0.3), ((0.7, 0.6, 0.65), 0.8), ((0.3, 0.2, 0.25), 0.5)):
        inside = sum((g / r) ** 2 for g, r in zip(grid, radii, strict=True)) <= 1
        volume[inside] = level
    return gaussian_filter(volume, 1.0)


def test_the_package_ships_a_3d_mri_denoiser_and_uses_it_for_volumes(capsys, tmp_path):
    nib = pytest.importorskip("nibabel")
    chosen = shipped.default_model(3)
    assert chosen is not None and chosen.name == "dncnn-mri-blind"
    assert "Rician" in chosen.noise
    volume = (_phantom(24) * 1000).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(tmp_path / "v.nii.gz"))
    assert main(["denoise", str(tmp_path / "v.nii.gz"), "-o", str(tmp_path / "out"),
                 "--quiet", "--device", "cpu"]) == 0  # fmt: skip
    assert "using the shipped model dncnn-mri-blind" in capsys.readouterr().err
    out = nib.load(str(tmp_path / "out" / "v.nii.gz"))
    assert out.shape == volume.shape and out.get_data_dtype() == np.int16


def test_models_command_lists_every_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for m in MODELS:
        assert f"{m.name}: {m.ndim}-D" in out and str(m.path) in out
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in listed] == [m.name for m in MODELS]


@pytest.fixture
def tiny_registry(tmp_path, monkeypatch):
    """A registry holding one tiny 2-D grey model, in place of the package's."""
    folder = tmp_path / "registry"
    folder.mkdir()
    tiny_dncnn_checkpoint(folder / "tiny.safetensors", ndim=2)
    entry = {
        "name": "tiny",
        "file": "tiny.safetensors",
        "ndim": 2,
        "channels": 1,
        "noise": "none in particular",
        "data": "nothing",
        "command": "a test",
        "scores": {"none": {"psnr": 0.0}},
    }
    (folder / "models.json").write_text(json.dumps({"format": 1, "models": [entry]}))
    monkeypatch.setattr(shipped, "SHIPPED_DIR", folder)
    return folder


def test_denoise_without_model_uses_the_shipped_one_and_says_so(capsys, tmp_path, tiny_registry):
    pixels = np.random.default_rng(1).integers(0, 256, (20, 30)).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels).save(tmp_path / "b.png")
    args = ("--device", "cpu", "--quiet")
    assert main(["denoise", str(tmp_path / "a.png"), "-o", str(tmp_path / "auto"), *args]) == 0
    err = capsys.readouterr().err
    assert "using the shipped model tiny" in err
    assert main(["denoise", str(tmp_path / "b.png"), "-o", str(tmp_path / "named"),
                 "--model", "tiny", *args]) == 0  # fmt: skip
    assert "using the shipped model" not in capsys.readouterr().err
    path = str(tiny_registry / "tiny.safetensors")
    assert main(["denoise", str(tmp_path / "a.png"), "-o", str(tmp_path / "file"),
                 "--model", path, *args]) == 0  # fmt: skip
    with Image.open(tmp_path / "file" / "a.png") as reference:
        expected = np.asarray(reference)
    for folder, name in (("auto", "a.png"), ("named", "b.png")):
        with Image.open(tmp_path / folder / name) as got:
            assert np.array_equal(np.asarray(got), expected)


def test_a_volume_without_model_is_an_error_when_no_3d_model_is_shipped(
    capsys, tmp_path, tiny_registry
):
    nib = pytest.importorskip("nibabel")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(tmp_path / "v.nii"))
    code = main(["denoise", str(tmp_path / "v.nii"), "-o", str(tmp_path / "out"), "--quiet"])
    assert code == 1
    assert "no shipped model denoises 3-D inputs" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no shipped model is called 'nope'"):
        shipped.shipped_model("nope")


def test_the_bundled_sample_is_the_described_noisy_crop_and_denoises(
    capsys, tmp_path, tiny_registry, monkeypatch
):
    from skimage import data

    path = shipped.samples()["camera-noisy"]
    with Image.open(path) as im:
        noisy = np.asarray(im).astype(np.float64)
    clean = data.camera()[40:296, 128:384].astype(np.float64)
    rng = np.random.default_rng(0)
    expected = np.clip(np.rint(clean + rng.normal(0, 25, clean.shape)), 0, 255)
    assert np.array_equal(noisy, expected)  # what its description says, exactly
    monkeypatch.chdir(tmp_path)
    code = main(["denoise", "sample:camera-noisy", "-o", "out", "--quiet"])
    assert code == 0
    assert capsys.readouterr().out.startswith("sample:camera-noisy -> out/camera-noisy.png: L ")
    assert (tmp_path / "out" / "camera-noisy.png").is_file()
    assert path.is_file()  # the bundled file is an input: never written to
    with pytest.raises(ValueError, match="no bundled sample is called 'dog'"):
        shipped.resolve_sample("sample:dog")
