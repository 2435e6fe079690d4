"""Regression tests of ``ndwconv denoise`` and of the volume recipe's checks.

Each test is named after the failure it guards against. References are independent of
the code under test: the same network run once on the whole volume, a receptive field
measured from gradients, the engine's own checkpoint finder, the loader's own message.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import ndwconv
from ndwconv.cli import main, one_line

nib = pytest.importorskip("nibabel")
pytest.importorskip("safetensors")
pytest.importorskip("skimage")

from ndwconv.adapters.receptive import receptive_radius  # noqa: E402
from ndwconv.recipes.engine.checkpoint import latest_checkpoint, save_checkpoint  # noqa: E402
from ndwconv.recipes.engine.config import builtin_configs  # noqa: E402
from ndwconv.recipes.engine.distributed import resolve_device  # noqa: E402
from ndwconv.recipes.models import DnCNN, NAFNet, odd_kernel_convs  # noqa: E402
from ndwconv.recipes.tasks import denoise as denoise_recipe  # noqa: E402
from ndwconv.recipes.tasks.denoise import command as apply  # noqa: E402
from ndwconv.recipes.tasks.denoise.inference import denoise_image  # noqa: E402
from ndwconv.recipes.tasks.denoise.volumes import VolumeDenoiseTask  # noqa: E402

QUIET = ("--batch", "3", "--device", "cpu", "--quiet")
SHAPE = (20, 18, 16)


def _checkpoint(folder, depth=3, ndim=3):
    torch.manual_seed(0)
    model = ndwconv.convert(
        DnCNN(ndim=ndim, channels=1, depth=depth, width=4), "default", where=odd_kernel_convs
    ).eval()
    meta = {
        "task": "denoise",
        "step": 0,
        "config": {},
        "description": {
            "method": "weighted",
            "model": {"name": "dncnn", "depth": depth, "width": 4, "ndim": ndim},
            "density": "default",
            "data": {"channels": 1},
        },
    }
    path = folder / f"dncnn{ndim}d-{depth}.safetensors"
    save_checkpoint(path, model, meta, rng=False)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt"))


def _volume(path, values):
    nib.save(nib.Nifti1Image(np.asarray(values), np.eye(4)), str(path))
    return path


def _values(seed=0, shape=SHAPE):
    return np.random.default_rng(seed).normal(100.0, 20.0, size=shape).astype(np.float32)


def _run(capsys, *argv):
    code = main(["denoise", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _whole(checkpoint, values, fill=None):
    """The model on the whole normalised volume, mapped back (NaN/inf → ``fill`` first)."""
    finite = values[np.isfinite(values)].astype(np.float64)
    lo, hi = np.percentile(finite, [0.5, 99.5])
    x = values.astype(np.float64)
    if fill is not None:
        x = np.where(np.isfinite(x), x, fill)
    x = torch.from_numpy(((x - lo) / (hi - lo)).astype(np.float32))
    with torch.no_grad():
        y = denoise_recipe.load_denoiser(checkpoint)(x[None, None])[0, 0]
    return y.double().numpy() * (hi - lo) + lo, hi - lo


@pytest.fixture
def forward_calls(monkeypatch):
    """Counts the model's forward passes; ``calls["load"]`` counts checkpoint loads."""
    calls = {"load": 0, "forward": 0}
    load = denoise_recipe.load_denoiser

    def counting(path, device="cpu"):
        calls["load"] += 1
        model = load(path, device)
        forward = model.forward

        def counted(x):
            calls["forward"] += 1
            return forward(x)

        model.forward = counted
        return model

    monkeypatch.setattr(apply, "load_denoiser", counting)
    return calls


# ------------------------------------------------------------------ one set of flags


def test_denoise_takes_out_and_o_as_train_and_compare_do(capsys, tmp_path, checkpoint):
    source = _volume(tmp_path / "scan.nii", _values())
    for flag in ("-o", "--out", "--output-dir"):  # the last: the former name, still taken
        out = tmp_path / flag.strip("-")
        code, _, err = _run(capsys, source, flag, out, "--model", checkpoint, *QUIET)
        assert code == 0, err
        assert sorted(os.listdir(out)) == ["scan.nii"]
    assert main(["denoise", "--help"]) == 0
    text = capsys.readouterr().out
    assert "-o DIR, --out DIR" in text and "--output-dir" not in text
    assert main(["train", "denoise", "--help"]) == 0
    assert "--out DIR" in capsys.readouterr().out


@pytest.mark.parametrize("device", ["cuda:0", "npu", "cuda:x"])
def test_denoise_device_is_resolved_as_train_resolves_it(capsys, tmp_path, checkpoint, device):
    source = _volume(tmp_path / "scan.nii", _values())
    out = tmp_path / "out"
    code, _, err = _run(
        capsys,
        source,
        "-o",
        out,
        "--model",
        checkpoint,
        "--batch",
        "3",
        "--quiet",
        "--device",
        device,
    )
    try:
        resolve_device(device, "--device")
    except ValueError as expected:
        assert code == 1 and err == f"ndwconv: error: {expected}\n"
        assert not out.exists()
    else:
        assert code == 0, err


# ------------------------------------------------------------------ non-finite voxels


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_denoise_nonfinite_input_is_refused_before_the_model_runs(
    capsys, tmp_path, checkpoint, forward_calls, bad, dtype
):
    values = _values().astype(dtype)
    values[3, 4, 5] = values[10, 0, 15] = values[19, 17, 0] = bad
    source = _volume(tmp_path / "scan.nii.gz", values)
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, source, "-o", out, "--model", checkpoint, *QUIET)
    assert code == 1 and stdout == ""
    assert err.count("\n") == 1 and err.startswith(f"ndwconv: error: {source}: 3 non-finite")
    assert "--nonfinite zero" in err and "--nonfinite allow" in err
    assert forward_calls["forward"] == 0
    assert not out.exists()


def test_denoise_nonfinite_zero_reads_them_as_zero(capsys, tmp_path, checkpoint):
    values = _values()
    values[2:4, 5, 6] = np.nan
    values[12, 3, 9] = np.inf
    source = _volume(tmp_path / "scan.nii", values)
    out = tmp_path / "out"
    code, _, err = _run(
        capsys,
        source,
        "-o",
        out,
        "--model",
        checkpoint,
        "--nonfinite",
        "zero",
        "--dtype",
        "float32",
        *QUIET,
    )
    assert code == 0, err
    expected, scale = _whole(checkpoint, values, fill=0.0)
    got = np.asarray(nib.load(str(out / "scan.nii")).dataobj, dtype=np.float64)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * scale)


def test_denoise_nonfinite_allow_spreads_nan_over_the_receptive_field(capsys, tmp_path, checkpoint):
    values = _values()
    values[9, 8, 7] = np.nan
    source = _volume(tmp_path / "scan.nii", values)
    out = tmp_path / "out"
    code, _, err = _run(
        capsys,
        source,
        "-o",
        out,
        "--model",
        checkpoint,
        "--nonfinite",
        "allow",
        "--dtype",
        "float32",
        "--tile",
        10,
        "--overlap",
        0.6,
        *QUIET,
    )
    assert code == 0, err
    got = np.asarray(nib.load(str(out / "scan.nii")).dataobj)
    # NaN · 0 = NaN: three 3×3×3 layers reach every voxel within Chebyshev distance 3
    near = np.zeros(SHAPE, bool)
    near[6:13, 5:12, 4:11] = True
    np.testing.assert_array_equal(np.isnan(got), near)


# ------------------------------------------------------------------ outputs, before the work


def test_denoise_out_pointing_at_a_file_fails_before_the_model_is_loaded(
    capsys, tmp_path, checkpoint, forward_calls
):
    source = _volume(tmp_path / "scan.nii", _values())
    taken = tmp_path / "results"
    taken.write_text("keep me")
    for out in (taken, taken / "sub"):
        code, _, err = _run(capsys, source, "-o", out, "--model", checkpoint, *QUIET)
        assert code == 1 and err.count("\n") == 1, err
        assert err.startswith(f"ndwconv: error: -o/--out {out}: ") and "is a file" in err
    assert forward_calls["load"] == 0
    assert taken.read_text() == "keep me"


def test_denoise_existing_output_is_refused_before_the_model_is_loaded(
    capsys, tmp_path, checkpoint, forward_calls
):
    source = _volume(tmp_path / "scan.nii", _values())
    (tmp_path / "out").mkdir()
    kept = _volume(tmp_path / "out" / "scan.nii", _values(seed=1))
    before = kept.read_bytes()
    code, _, err = _run(capsys, source, "-o", tmp_path / "out", "--model", checkpoint, *QUIET)
    assert code == 1 and "exists; pass --overwrite" in err
    assert forward_calls["load"] == 0
    assert kept.read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_denoise_unwritable_out_is_refused_before_the_model_is_loaded(
    capsys, tmp_path, checkpoint, forward_calls
):
    source = _volume(tmp_path / "scan.nii", _values())
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        for out in (locked, locked / "new"):
            code, _, err = _run(capsys, source, "-o", out, "--model", checkpoint, *QUIET)
            assert code == 1 and "not writable" in err and str(locked) in err
    finally:
        locked.chmod(0o700)
    assert forward_calls["load"] == 0


@pytest.mark.parametrize("missing", [False, True])
def test_denoise_out_without_write_permission_is_refused_before_the_model_is_loaded(
    capsys, tmp_path, checkpoint, forward_calls, monkeypatch, missing
):
    """As the previous test, for users that root is not: the permission the system
    reports for the folder (or the folder that would hold it) is consulted."""
    source = _volume(tmp_path / "scan.nii", _values())
    locked = tmp_path / "locked"
    locked.mkdir()
    access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == locked else access(p, mode)
    )
    out = locked / "new" if missing else locked
    code, _, err = _run(capsys, source, "-o", out, "--model", checkpoint, *QUIET)
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"ndwconv: error: -o/--out {out}: ") and "not writable" in err
    assert forward_calls["load"] == 0 and os.listdir(locked) == []


def test_failed_denoise_leaves_no_output_folder_it_created(
    capsys, tmp_path, checkpoint, monkeypatch
):
    source = _volume(tmp_path / "scan.nii", _values())
    out = tmp_path / "new" / "deeper"
    code, _, err = _run(capsys, tmp_path / "missing.nii", "-o", out, "--model", checkpoint, *QUIET)
    assert code == 1 and "missing.nii" in err
    assert sorted(os.listdir(tmp_path)) == ["scan.nii"]

    load = denoise_recipe.load_denoiser

    def failing(path, device="cpu"):
        model = load(path, device)

        def fail(x):
            raise RuntimeError("predictor failed on purpose")

        model.forward = fail
        return model

    monkeypatch.setattr(apply, "load_denoiser", failing)
    code, _, err = _run(capsys, source, "-o", out, "--model", checkpoint, *QUIET)
    assert code == 1 and "failed on purpose" in err
    assert sorted(os.listdir(tmp_path)) == ["scan.nii"]
    (tmp_path / "mine").mkdir()  # a folder that was there before is left in place
    code, _, _ = _run(capsys, source, "-o", tmp_path / "mine", "--model", checkpoint, *QUIET)
    assert code == 1 and (tmp_path / "mine").is_dir()


def test_debug_shows_the_traceback_of_per_file_errors(capsys, tmp_path, checkpoint):
    source = _volume(tmp_path / "scan.nii", _values())
    missing = tmp_path / "missing.nii"
    argv = (missing, source, "-o", tmp_path / "out", "--model", checkpoint, *QUIET)
    code, stdout, err = _run(capsys, *argv, "--debug")
    assert code == 1 and "Traceback (most recent call last)" in err and str(missing) in err
    assert stdout.startswith(f"{source} -> ")  # the other input is still denoised
    code, _, err = _run(capsys, *argv, "--overwrite")
    assert code == 1 and "Traceback" not in err and err.count("\n") == 1


def test_denoise_help_example_is_where_train_writes_checkpoints(capsys, tmp_path):
    assert main(["denoise", "--help"]) == 0
    text = capsys.readouterr().out
    paths = re.findall(r"--model (\S+\.safetensors)", text)
    assert paths
    example = paths[0]
    run = re.fullmatch(r"runs/denoise-(.+)-(standard|weighted)/checkpoints/[^/]+", example)
    assert run and run[1] in builtin_configs(), example
    folder = tmp_path / os.path.dirname(os.path.dirname(example))
    (folder / "checkpoints").mkdir(parents=True)
    for name in ("step-00000005.safetensors", "step-00000005.json"):  # as fit names them
        (folder / "checkpoints" / name).write_text("")
    (tmp_path / example).write_text("")
    (tmp_path / example).with_suffix(".json").write_text("")
    assert latest_checkpoint(folder) == tmp_path / example


# ------------------------------------------------------------------ --model errors


@pytest.mark.parametrize("kind", ["folder", "missing", "text", "sidecar-only"])
def test_denoise_model_errors_are_the_loaders_message_on_one_line(
    capsys, tmp_path, checkpoint, kind
):
    source = _volume(tmp_path / "scan.nii", _values())
    model = tmp_path / "model.safetensors"
    if kind == "folder":
        model = tmp_path / "run"
        model.mkdir()
    elif kind == "text":
        model.write_text("not a checkpoint")
        model.with_suffix(".json").write_text("{}")
    elif kind == "sidecar-only":
        model.with_suffix(".json").write_bytes(checkpoint.with_suffix(".json").read_bytes())
    with pytest.raises(Exception) as raised:
        denoise_recipe.load_denoiser(model)
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, source, "-o", out, "--model", model, *QUIET)
    assert code == 1 and stdout == ""
    assert err == f"ndwconv: error: {one_line(raised.value)}\n"
    assert not out.exists()


# ------------------------------------------------------------------ tiles and receptive field


def _measured_radius(net: nn.Module, ndim: int, size: int = 24) -> tuple[int, ...]:
    """The farthest input voxel, per axis, that the centre output voxel depends on (the
    network keeps the size, so output and input voxels share their positions)."""
    x = torch.randn(1, 1, *(size,) * ndim, dtype=torch.float64, requires_grad=True)
    y = net.double()(x)
    y[(0, 0, *(size // 2,) * ndim)].backward()
    support = np.argwhere(x.grad[0, 0].numpy() != 0)
    return tuple(int(v) for v in np.abs(support - size // 2).max(0))


def _stack(ndim, *layers):
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[ndim]
    return nn.Sequential(*(conv(1, 1, **kw) for kw in layers))


@pytest.mark.parametrize(
    ("net", "ndim", "exact"),
    [
        *((_stack(2, *[{"kernel_size": 3, "padding": 1}] * k), 2, True) for k in (1, 2, 3, 4)),
        (
            _stack(
                1, {"kernel_size": 5, "padding": 2}, {"kernel_size": 3, "padding": 2, "dilation": 2}
            ),
            1,
            True,
        ),
        (_stack(3, {"kernel_size": (3, 5, 1), "padding": (1, 2, 0)}), 3, True),
        (
            nn.Sequential(
                nn.Conv2d(1, 1, 3, padding=1, stride=2),
                nn.Conv2d(1, 1, 3, padding=1),
                nn.Upsample(scale_factor=2, mode="bilinear"),
            ),
            2,
            False,
        ),
        (
            nn.Sequential(
                nn.Conv2d(1, 1, 3, padding=1),
                nn.MaxPool2d(2),
                nn.Conv2d(1, 1, 3, padding=1),
                nn.Upsample(scale_factor=2),
            ),
            2,
            False,
        ),
    ],
)
def test_receptive_radius_bounds_the_measured_reach(net, ndim, exact):
    torch.manual_seed(0)
    measured = _measured_radius(net, ndim)
    bound = receptive_radius(net)
    assert len(bound) == ndim
    if exact:
        assert bound == measured
    else:
        assert all(b >= m for b, m in zip(bound, measured, strict=True)), (bound, measured)


def test_receptive_radius_of_dncnn_is_its_depth_and_global_pooling_has_none():
    assert receptive_radius(DnCNN(ndim=3, depth=7, width=2)) == (7, 7, 7)
    assert receptive_radius(DnCNN(ndim=4, depth=3, width=2)) == (3, 3, 3, 3)
    assert receptive_radius(DnCNN(ndim=2, depth=4, width=2, kernel_size=5)) == (8, 8)
    net = NAFNet(channels=1, width=8, enc_blocks=(1,), middle_blocks=1, dec_blocks=(1,))
    assert receptive_radius(net) is None


def test_tile_smaller_than_the_receptive_field_warns_naming_the_radius(
    capsys, tmp_path, checkpoint
):
    values = _values()
    source = _volume(tmp_path / "scan.nii", values)
    expected, scale = _whole(checkpoint, values.astype(np.float64))
    args = ("--model", checkpoint, "--dtype", "float32", *QUIET)
    # tile 8 overlapping by 2: one voxel dropped at inner faces, the radius is 3
    code, _, err = _run(
        capsys, source, "-o", tmp_path / "small", "--tile", 8, "--overlap", 0.25, *args
    )
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ndwconv: warning: {source}: ")
    assert "receptive radius is 3" in lines[0] and "tile 8" in lines[0]
    assert "--tile 24" in lines[0]  # the smallest tile that drops 3 at an overlap of 0.25
    small = np.asarray(nib.load(str(tmp_path / "small" / "scan.nii")).dataobj, np.float64)
    assert np.abs(small - expected).max() > 1e-3 * scale  # the warning is warranted
    # tiles of 2r + 1 = 7 or more overlapping by 2r = 6 or more: no warning, and the
    # whole-volume result (tile 7 on a smaller block: a step of one voxel is many tiles)
    block = values[:12, :11, :10].copy()
    part = _volume(tmp_path / "part.nii", block)
    part_expected, part_scale = _whole(checkpoint, block.astype(np.float64))
    code, _, err = _run(capsys, part, "-o", tmp_path / "t7", "--tile", 7, "--overlap", 0.9, *args)
    assert code == 0 and err == ""
    got = np.asarray(nib.load(str(tmp_path / "t7" / "part.nii")).dataobj, np.float64)
    np.testing.assert_allclose(got, part_expected, rtol=0, atol=1e-5 * part_scale)
    for tile, overlap in ((9, 0.67), (24, 0.25)):
        out = tmp_path / f"t{tile}"
        code, _, err = _run(capsys, source, "-o", out, "--tile", tile, "--overlap", overlap, *args)
        assert code == 0 and err == ""
        got = np.asarray(nib.load(str(out / "scan.nii")).dataobj, np.float64)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * scale)


def test_denoise_image_warns_when_tiles_are_smaller_than_the_receptive_field():
    torch.manual_seed(0)
    net = _stack(2, *[{"kernel_size": 3, "padding": 1}] * 3).eval()
    image = torch.rand(1, 40, 37)
    with torch.no_grad():
        whole = net(image[None])[0]
    with pytest.warns(UserWarning, match=r"receptive radius 3 .*overlap 2"):
        tiled = denoise_image(net, image, tile=16, overlap=2)
    assert (tiled - whole).abs().max() > 1e-4
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiled = denoise_image(net, image, tile=16, overlap=6)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ 4-D series too short


def _series_config(train, patch=16, holdout_axis=-1):
    return {
        "name": "t",
        "model": {"name": "dncnn", "ndim": 4, "depth": 2, "width": 2},
        "data": {"train": [str(train)], "patch_size": patch, "holdout_axis": holdout_axis},
        "noise": {"sigma": 10.0, "kind": "gaussian"},
    }


@pytest.mark.parametrize("frames", [30, 42, 43])
def test_short_series_is_refused_naming_the_axis_the_length_and_the_minimum(tmp_path, frames):
    """With 0.25 held out along time, 43 frames is the least that leaves the 11 that SSIM
    needs (round(0.25 · 42) = 10) and 16 for training patches."""
    series = np.random.default_rng(0).random((16, 16, 16, frames)).astype(np.float32)
    path = _volume(tmp_path / "bold.nii.gz", series)
    config = _series_config(path)
    if frames < 43:
        with pytest.raises(ValueError) as raised:
            VolumeDenoiseTask(config, "standard")
        message = str(raised.value)
        assert f"axis 3 has length {frames}" in message and "at least 43" in message
        assert "bold.nii.gz" in message
    else:
        task = VolumeDenoiseTask(config, "standard")
        assert task.validation[0][1].shape == (16, 16, 16, 11)


def test_short_spatial_axis_is_refused_naming_the_axis_the_length_and_the_minimum(tmp_path):
    series = np.random.default_rng(0).random((16, 10, 16, 44)).astype(np.float32)
    path = _volume(tmp_path / "bold.nii.gz", series)
    with pytest.raises(ValueError, match=r"axis 1 has length 10.*at least 16"):
        VolumeDenoiseTask(_series_config(path), "standard")
