"""The denoising recipe on volumes: 4-D DnCNN, densities in mm, VolumeDenoiseTask, CLI.

References are independent of the code under test: SciPy's N-D correlation for the 4-D
network, NumPy moments for batch normalisation, the closed-form Gaussian for densities in
mm, and the geometry of generated volumes for the hold-out split.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ndwconv
from ndwconv.cli import main

nib = pytest.importorskip("nibabel")
h5py = pytest.importorskip("h5py")
pytest.importorskip("safetensors")
pytest.importorskip("skimage")
ndimage = pytest.importorskip("scipy.ndimage")

from ndwconv.adapters.volumes import is_physical, physical_density  # noqa: E402
from ndwconv.recipes.engine.config import load_config  # noqa: E402
from ndwconv.recipes.models import BatchNormNd, DnCNN, make_weighted  # noqa: E402
from ndwconv.recipes.tasks.denoise import (  # noqa: E402
    VolumeDenoiseTask,
    load_denoiser,
    make_task,
)


def _nifti(path, array, zooms=(1.0, 1.0, 1.0)):
    diagonal = [*zooms[:3], 1.0, 1.0, 1.0][:3]
    image = nib.Nifti1Image(np.asarray(array), np.diag([*diagonal, 1.0]))
    image.header.set_zooms(zooms)
    nib.save(image, str(path))
    return str(path)


def _phantom(shape=(24, 22, 48), seed=0):
    """A smooth blob with texture: foreground in the middle, zero background."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grids))
    return ((radius < 0.8) * (100 + 50 * np.sin(4 * grids[0])) + rng.random(shape)).astype(
        np.float32
    )


def _config(**data):
    cfg = load_config("mni", ["train.steps=2", "train.batch_size=2", "train.eval_every=0",
                              "model.depth=3", "model.width=2", "train.checkpoint_every=0"])
    cfg["data"] = {"patch_size": 8, "min_foreground": 0.0, **data}
    return cfg


# --------------------------------------------------------------------------- 4-D DnCNN


def test_dncnn_4d_matches_scipy_correlation():
    torch.manual_seed(0)
    net = DnCNN(ndim=4, channels=1, depth=2, width=1, batch_norm=False, residual=False).double()
    x = torch.randn(1, 1, 5, 6, 4, 7, dtype=torch.float64)
    first, last = net.body[0], net.body[2]
    hidden = ndimage.correlate(x[0, 0].numpy(), first.weight[0, 0].detach().numpy(),
                               mode="constant") + float(first.bias.detach())
    expected = ndimage.correlate(np.maximum(hidden, 0), last.weight[0, 0].detach().numpy(),
                                 mode="constant") + float(last.bias.detach())
    with torch.no_grad():
        got = net(x)[0, 0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_batchnorm_nd_normalises_per_channel_over_every_axis():
    bn = BatchNormNd(4, 3)
    x = torch.randn(2, 3, 3, 4, 5, 2, dtype=torch.float64) * 3 + 1
    bn.double().train()
    y = bn(x).detach().numpy()
    xs = x.numpy()
    mean = xs.mean(axis=(0, 2, 3, 4, 5), keepdims=True)
    var = xs.var(axis=(0, 2, 3, 4, 5), keepdims=True)
    np.testing.assert_allclose(y, (xs - mean) / np.sqrt(var + bn.eps), atol=1e-10)
    with pytest.raises(ValueError, match="6-D"):
        bn(torch.randn(2, 3, 4, 4, 4))


def test_make_weighted_gives_the_4d_layers_the_density():
    torch.manual_seed(0)
    plain = DnCNN(ndim=4, depth=3, width=2)
    weighted = make_weighted(DnCNN(ndim=4, depth=3, width=2), "table:0.5")
    weighted.load_state_dict(plain.state_dict(), strict=False)
    layers = list(ndwconv.weighted_layers(weighted))
    assert len(layers) == 3 and all(str(layer.density) == "table:0.5" for _, layer in layers)
    # the effective kernel is W times the outer product of [0.5, 1, 0.5] on every axis
    profile = np.array([0.5, 1.0, 0.5])
    phi = np.einsum("a,b,c,d->abcd", profile, profile, profile, profile)
    np.testing.assert_allclose(
        layers[0][1].effective_weight().detach().numpy(),
        plain.body[0].weight.detach().numpy() * phi, rtol=1e-6,
    )


# --------------------------------------------------------------------- densities in mm


def test_physical_density_weights_by_distance_in_mm():
    density = physical_density("gaussian:1.5mm", (1.0, 0.5, 3.0))
    phi = density.build((3, 3, 3)).numpy()
    offsets = np.array([-1.0, 0.0, 1.0])
    mm = [offsets * s for s in (1.0, 0.5, 3.0)]
    expected = np.exp(-(mm[0][:, None, None] ** 2 + mm[1][None, :, None] ** 2
                        + mm[2][None, None, :] ** 2) / (2 * 1.5**2))
    np.testing.assert_allclose(phi, expected, rtol=1e-12)
    assert is_physical("gaussian:1,2,3mm") and not is_physical("gaussian:1.0")
    assert str(physical_density("default", (1, 1, 3))) == str(ndwconv.as_density("default"))
    with pytest.raises(ValueError, match="spacing"):
        physical_density("gaussian:1mm", (1.0, 0.0, 1.0))


# ------------------------------------------------------------------- the volume task


def test_holdout_is_never_sampled_for_training(tmp_path):
    # intensity rises along the last axis: the held-out top quarter is brighter than any
    # voxel of the training part, so a training patch that reached it would show it
    z = np.arange(48, dtype=np.float32)
    volume = np.broadcast_to(z, (16, 16, 48)).copy()
    path = _nifti(tmp_path / "ramp.nii.gz", volume)
    cfg = _config(train=[path], holdout=0.25, percentiles=[0.0, 100.0], flips=False)
    task = VolumeDenoiseTask(cfg, "standard")
    (name, clean, _), = task.validation
    assert name == "ramp.nii.gz[holdout]" and clean.shape == (16, 16, 12)
    np.testing.assert_allclose(clean[0, 0], z[36:] / 47, rtol=1e-6)
    top = 35 / 47 + 1e-6
    for i in range(200):
        _, patch = task.dataset[i]
        assert float(patch.max()) <= top
    assert task.describe()["data"]["train_shapes"] == {"ramp.nii.gz": [16, 16, 36]}


def test_validation_noise_is_fixed_by_eval_seed(tmp_path):
    path = _nifti(tmp_path / "a.nii.gz", _phantom())
    cfg = _config(train=[path])
    a = VolumeDenoiseTask(cfg, "standard").validation[0][2]
    b = VolumeDenoiseTask(cfg, "weighted").validation[0][2]
    assert torch.equal(a, b)
    cfg["eval"] = {"seed": 1}
    assert not torch.equal(a, VolumeDenoiseTask(cfg, "standard").validation[0][2])


def test_mm_density_uses_the_training_spacing(tmp_path):
    path = _nifti(tmp_path / "aniso.nii.gz", _phantom(), zooms=(1.0, 1.0, 3.0))
    cfg = _config(train=[path])
    cfg["weighted"] = {"density": "gaussian:1.0mm"}
    task = VolumeDenoiseTask(cfg, "weighted")
    assert task.describe()["density"] == "gaussian:1;spacing=1,1,3"
    conv = task.build_model().body[0]
    # along the thick axis a neighbour is 3 mm away: exp(-9/2); in-plane 1 mm: exp(-1/2)
    phi = conv.phi().numpy()
    assert phi[1, 1, 0] == pytest.approx(np.exp(-4.5)) and phi[0, 1, 1] == pytest.approx(
        np.exp(-0.5))
    other = _nifti(tmp_path / "iso.nii.gz", _phantom(seed=1))
    cfg["data"]["train"] = [path, other]
    with pytest.raises(ValueError, match="different voxel spacings"):
        VolumeDenoiseTask(cfg, "weighted")
    VolumeDenoiseTask(cfg, "standard")  # a spacing-free density does not care


def test_series_train_a_3d_model_frame_by_frame(tmp_path):
    series = np.stack([_phantom(seed=s) for s in range(3)], axis=-1)
    path = _nifti(tmp_path / "bold.nii.gz", series, zooms=(2.0, 2.0, 2.0, 1.5))
    task = VolumeDenoiseTask(_config(train=[path]), "standard")
    assert [n for n, _, _ in task.validation] == [f"bold.nii.gz[t={t}][holdout]"
                                                 for t in range(3)]
    assert task.spacing == (2.0, 2.0, 2.0)


def test_bad_volume_data_is_named(tmp_path):
    flat = _nifti(tmp_path / "flat.nii.gz", np.zeros((16, 16, 16), np.float32))
    with pytest.raises(ValueError, match=r"flat.nii.gz.*empty intensity range"):
        VolumeDenoiseTask(_config(train=[flat]), "standard")
    two_d = _nifti(tmp_path / "slice.nii.gz", np.ones((16, 16), np.float32), zooms=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"data.train.*2 axes"):
        VolumeDenoiseTask(_config(train=[two_d]), "standard")
    ok = _nifti(tmp_path / "ok.nii.gz", _phantom())
    with pytest.raises(ValueError, match="patch_size 30"):
        VolumeDenoiseTask(_config(train=[ok], patch_size=30), "standard")
    with pytest.raises(ValueError, match=r"data.holdout"):
        VolumeDenoiseTask(_config(train=[ok], holdout=1.5), "standard")
    with pytest.raises(ValueError, match="SSIM needs at least 11"):
        VolumeDenoiseTask(_config(train=[ok], holdout=0.1), "standard")
    with pytest.raises(ValueError, match=r"noise.kind"):
        cfg = _config(train=[ok])
        cfg["noise"]["kind"] = "poisson"
        VolumeDenoiseTask(cfg, "standard")


def test_image_configs_refuse_rician_noise_and_several_roots():
    cfg = load_config("quick", ['noise.kind="rician"'])
    with pytest.raises(ValueError, match="Gaussian noise only"):
        make_task(cfg, "standard")
    with pytest.raises(ValueError, match="one data folder"):
        make_task(load_config("quick"), "standard", ["a", "b"])
    with pytest.raises(ValueError, match=r"is a volume.*--ndim 3"):
        make_task(load_config("quick"), "standard", ["scan.nii.gz"])


# ------------------------------------------------------------------ command line, end to end


def test_train_then_denoise_a_volume(tmp_path, capsys):
    train = _nifti(tmp_path / "train.nii.gz", _phantom(), zooms=(1.0, 1.0, 2.0))
    out = tmp_path / "run"
    code = main(["train", "denoise", "--ndim", "3", "--data", train, "--noise", "rician:20",
                 "--density", "gaussian:1.0mm", "--steps", "3", "--out", str(out), "--quiet",
                 "--set", "model.depth=3", "--set", "model.width=2", "--set",
                 "data.patch_size=8", "--set", "train.batch_size=2", "--set", "data.crop=none"])
    assert code == 0
    sidecar = json.loads(sorted((out / "checkpoints").glob("*.json"))[-1].read_text())
    description = sidecar["description"]
    assert description["noise"]["kind"] == "rician" and description["noise"]["sigma"] == 20
    assert description["density"] == "gaussian:1;spacing=1,1,2"
    checkpoint = sorted((out / "checkpoints").glob("*.safetensors"))[-1]
    model = load_denoiser(checkpoint)
    assert str(model.body[0].density) == "gaussian:1;spacing=1,1,2"
    capsys.readouterr()
    target = _nifti(tmp_path / "scan.nii.gz", _phantom((20, 18, 16), seed=3),
                    zooms=(1.0, 1.0, 2.0))
    iso = _nifti(tmp_path / "iso.nii.gz", _phantom((20, 18, 16), seed=4))
    code = main(["denoise", target, iso, "-o", str(tmp_path / "den"), "--model",
                 str(checkpoint), "--tile", "12", "--quiet"])
    assert code == 0
    result = nib.load(str(tmp_path / "den" / "scan.nii.gz"))
    assert result.shape == (20, 18, 16)
    lines = capsys.readouterr().out.splitlines()
    assert "note" not in lines[0]  # trained on the same 1 × 1 × 2 mm voxels
    assert "note: the model's density is in mm for spacing 1×1×2, this volume has 1×1×1" in (
        lines[1])
    assert sorted(p.name for p in (tmp_path / "den").iterdir()) == ["iso.nii.gz", "scan.nii.gz"]


def test_train_and_denoise_4d_series_with_a_4d_model(tmp_path):
    rng = np.random.default_rng(0)
    series = (np.stack([_phantom((32, 14, 12), seed=s) for s in range(12)], axis=-1)
              + rng.random((32, 14, 12, 12)).astype(np.float32))
    with h5py.File(tmp_path / "series.h5", "w") as f:
        f["/bold"] = series
    out = tmp_path / "run4d"
    code = main(["train", "denoise", "--ndim", "4", "--data", f"{tmp_path}/series.h5:/bold",
                 "--steps", "2", "--out", str(out), "--quiet", "--method", "weighted",
                 "--set", "model.depth=3", "--set", "model.width=2", "--set",
                 "data.patch_size=6", "--set", "train.batch_size=2", "--set",
                 "data.holdout_axis=0", "--set", "data.holdout=0.4", "--set", "data.crop=none"])
    assert code == 0
    checkpoint = sorted((out / "checkpoints").glob("*.safetensors"))[-1]
    model = load_denoiser(checkpoint)
    assert type(model.body[0]).__name__ == "WeightedConvNd" and model.body[0].ndim == 4
    code = main(["denoise", f"{tmp_path}/series.h5:/bold", "-o", str(tmp_path / "den"),
                 "--model", str(checkpoint), "--tile", "8", "--quiet"])
    assert code == 0
    with h5py.File(tmp_path / "den" / "series.h5", "r") as f:
        assert f["/bold"].shape == series.shape


def test_mm_density_needs_a_3d_model(tmp_path):
    series = np.stack([_phantom((32, 14, 12), seed=s) for s in range(12)], axis=-1)
    path = _nifti(tmp_path / "s.nii.gz", series, zooms=(1.0, 1.0, 1.0, 2.0))
    cfg = _config(train=[path], patch_size=6, holdout_axis=0, holdout=0.4)
    cfg["model"]["ndim"] = 4
    cfg["weighted"] = {"density": "gaussian:1mm"}
    with pytest.raises(ValueError, match="only 3-D models"):
        VolumeDenoiseTask(cfg, "weighted")


def test_noise_flag_is_checked(capsys):
    assert main(["train", "denoise", "--ndim", "3", "--noise", "rician"]) != 0
    assert "--noise must look like KIND:SIGMA" in capsys.readouterr().err


def test_embedded_mni_template(tmp_path):
    pytest.importorskip("nilearn")
    task = VolumeDenoiseTask(_config(train="embedded:mni152", crop="foreground"), "standard")
    (name, clean, _), = task.validation
    assert name == "mni152[holdout]" and task.spacing == (1.0, 1.0, 1.0)
    # the template's brain, cropped to its bounding box, with the top quarter held out
    train_shape = task.describe()["data"]["train_shapes"]["mni152"]
    assert train_shape[:2] == list(clean.shape[:2])
    assert train_shape[2] + clean.shape[2] == 155 and clean.shape[2] == round(155 * 0.25)
