"""``ndwconv denoise`` reports the noise level of each file (estimated, or ``--sigma``)
and warns when it is outside the σ range the model was trained on."""

from __future__ import annotations

import numpy as np
import pytest

from ndwconv.cli import main

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("safetensors")

from denoise_checkpoints import tiny_dncnn_checkpoint  # noqa: E402


def _noisy_png(path, sigma255: float, seed: int = 0) -> None:
    """A smooth 8-bit gradient with Gaussian noise of σ on the 0–255 scale (no clipping)."""
    yy, xx = np.mgrid[0:128, 0:160]
    clean = 60 + 0.5 * yy + 0.4 * xx
    noisy = clean + np.random.default_rng(seed).normal(0, sigma255, clean.shape)
    assert 0 <= noisy.min() and noisy.max() <= 255
    Image.fromarray(np.rint(noisy).astype(np.uint8)).save(path)


def _sigma_in(line: str) -> float:
    return float(line.split("noise σ")[1][1:].split(" ")[0])


@pytest.fixture
def model(tmp_path):
    return str(tiny_dncnn_checkpoint(tmp_path / "m.safetensors", ndim=2, sigma="0:30"))


def test_the_summary_line_carries_the_estimated_noise_level(tmp_path, capsys, model):
    _noisy_png(tmp_path / "a.png", 12.0)
    args = ["--model", model, "--quiet", "--device", "cpu"]
    assert main(["denoise", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), *args]) == 0
    captured = capsys.readouterr()
    assert "(estimated, 0–255 scale)" in captured.out
    assert _sigma_in(captured.out) == pytest.approx(12.0, rel=0.1)  # 8-bit rounding adds ~0.3
    assert "warning" not in captured.err


def test_sigma_outside_the_trained_range_is_warned_about(tmp_path, capsys, model):
    _noisy_png(tmp_path / "a.png", 45.0 / 2, seed=1)  # keeps within 0–255 at σ 22.5
    base = ["--model", model, "--quiet", "--device", "cpu"]
    assert main(["denoise", str(tmp_path / "a.png"), "-o", str(tmp_path / "o1"),
                 "--sigma", "50", *base]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert "noise σ=50 (given, 0–255 scale)" in captured.out
    assert "noise σ=50 (given) is outside the σ the model was trained on (0–30)" in captured.err
    assert main(["denoise", str(tmp_path / "a.png"), "-o", str(tmp_path / "o2"),
                 "--sigma", "31", *base]) == 0  # fmt: skip
    assert "warning" not in capsys.readouterr().err  # within the estimator's margin


def test_a_fixed_sigma_model_warns_on_other_levels(tmp_path, capsys):
    fixed = str(tiny_dncnn_checkpoint(tmp_path / "f.safetensors", ndim=2, sigma=25))
    _noisy_png(tmp_path / "a.png", 5.0)
    assert main(["denoise", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"),
                 "--model", fixed, "--quiet", "--device", "cpu"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "is outside the σ the model was trained on (25)" in err
    assert "--sigma gives σ when it is known" in err


def test_a_model_without_recorded_noise_is_not_checked(tmp_path, capsys):
    bare = str(tiny_dncnn_checkpoint(tmp_path / "b.safetensors", ndim=2))
    _noisy_png(tmp_path / "a.png", 20.0)
    assert main(["denoise", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"),
                 "--model", bare, "--sigma", "200", "--quiet", "--device", "cpu"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert "noise σ=200 (given" in captured.out and "warning" not in captured.err


def test_volumes_report_the_noise_on_the_normalised_scale(tmp_path, capsys):
    nib = pytest.importorskip("nibabel")
    model = str(tiny_dncnn_checkpoint(tmp_path / "v.safetensors", ndim=3, sigma="0:30"))
    rng = np.random.default_rng(2)
    # intensities 1000 + 2000 · x: the 0.5–99.5 percentiles span about 2000 · (range of x)
    clean = (
        np.add.outer(
            np.add.outer(np.linspace(0, 1, 40), np.linspace(0, 1, 36)), np.linspace(0, 1, 32)
        )
        / 3
    )
    volume = 1000 + 2000 * (clean + rng.normal(0, 0.02, clean.shape))
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.eye(4)), str(tmp_path / "v.nii"))
    assert main(["denoise", str(tmp_path / "v.nii"), "-o", str(tmp_path / "o"),
                 "--model", model, "--quiet", "--device", "cpu"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    lo, hi = np.percentile(volume, [0.5, 99.5])
    expected = 255 * 2000 * 0.02 / (hi - lo)
    assert _sigma_in(out) == pytest.approx(expected, rel=0.1)


def test_sigma_is_refused_for_time_series_and_when_negative(tmp_path, capsys):
    assert main(["denoise", "x.png", "-o", str(tmp_path), "--sigma", "-1"]) == 2
    assert "--sigma: must be a finite number ≥ 0" in capsys.readouterr().err
    code = main(["denoise", "x.nc", "-o", str(tmp_path / "o"), "--var", "v", "--sigma", "5"])
    assert code != 0
    assert "--sigma is for images and volumes" in capsys.readouterr().err
