"""Classical yardsticks of the denoising comparisons: BM3D on images, non-local means on
volumes.

Each per-item score is checked against an independent call: the package's own function
(``bm3d.bm3d``, ``dipy.denoise.nlmeans.nlmeans``) on the noisy item at the known σ,
scored with a NumPy PSNR and scikit-image's SSIM written out here; so the wiring (which
σ, which scale, which items) is what is tested, not the packages.
"""

from __future__ import annotations

import copy
import json
import math
import sys

import numpy as np
import pytest

PIL = pytest.importorskip("PIL.Image")
pytest.importorskip("skimage")
pytest.importorskip("safetensors")
from skimage.metrics import structural_similarity  # noqa: E402

from ndwconv.recipes.engine import compare  # noqa: E402
from ndwconv.recipes.tasks import get_task  # noqa: E402
from ndwconv.recipes.tasks.denoise import DenoiseTask, VolumeDenoiseTask, base  # noqa: E402
from ndwconv.recipes.tasks.denoise import classical as classical_mod  # noqa: E402
from ndwconv.recipes.tasks.denoise.report import report_sections  # noqa: E402

DENOISE = get_task("denoise")
SIGMA = 25.0


def _psnr(estimate255: np.ndarray, clean255: np.ndarray) -> float:
    error = np.clip(estimate255, 0, 255) - np.asarray(clean255, dtype=np.float64)
    return 10 * math.log10(255**2 / np.mean(error**2))


def _ssim(estimate255: np.ndarray, clean255: np.ndarray) -> float:
    return structural_similarity(
        np.clip(estimate255, 0, 255),
        np.asarray(clean255, dtype=np.float64),
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory):
    """Smooth random 8-bit images with edges: 2 for training, 1 for validation (40×44)
    (BM3D costs ~0.7 s a call here, whatever the size)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    for folder, count in (("train", 2), ("val", 1)):
        (root / folder).mkdir()
        for i in range(count):
            field = rng.normal(size=(40, 44)).cumsum(0).cumsum(1)
            field = (field - field.min()) / np.ptp(field) * 200 + 20
            field[10:30, 12:30] += 30  # a square: an edge BM3D keeps
            PIL.fromarray(np.clip(field, 0, 255).round().astype(np.uint8)).save(
                root / folder / f"im{i}.png"
            )
    return root


def _image_config(**evals: object) -> dict:
    return {
        "name": "tiny",
        "model": {"name": "dncnn", "ndim": 2, "depth": 2, "width": 4, "batch_norm": False},
        "weighted": {"density": "table:0.5"},
        "data": {"train": "train", "validation": "val", "channels": 1, "patch_size": 16},
        "noise": {"sigma": SIGMA},
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {
            "steps": 1,
            "batch_size": 2,
            "log_every": 1,
            "eval_every": 0,
            "checkpoint_every": 0,
        },
        "eval": {"seed": 0, **evals},
    }


def test_bm3d_scores_equal_a_direct_call_and_gain_over_the_noisy_input(image_root):
    bm3d = pytest.importorskip("bm3d")
    config = _image_config()
    before = copy.deepcopy(config)
    task = DenoiseTask(config, "standard", image_root)
    model = task.build_model()
    rows = task.evaluate_items(model, classical=True)
    assert config == before
    assert len(rows) == 1
    for row, (name, clean, noisy) in zip(rows, task.validation, strict=True):
        assert row["image"] == name
        direct = bm3d.bm3d(noisy[0].double().numpy(), sigma_psd=SIGMA / 255) * 255
        # the bm4d binary works in float32 over threads: two calls on one input differ by
        # ~2e-7 on the [0, 1] scale, ~1e-7 dB; a wrong σ or scale is off by > 0.1 dB
        assert row["bm3d_psnr"] == pytest.approx(_psnr(direct, clean), abs=1e-5)
        assert row["bm3d_ssim"] == pytest.approx(_ssim(direct, clean), abs=1e-6)
        noisy_psnr = _psnr(noisy[0].double().numpy() * 255, clean)
        assert row["noisy_psnr"] == pytest.approx(noisy_psnr, abs=1e-9)
        assert row["bm3d_psnr"] > noisy_psnr + 5  # σ = 25 on a smooth image
        assert row["bm3d_seconds"] > 0
        assert "sigma_psd = 25/255" in row["bm3d_parameters"]
    # a wrong σ or scale would not match: the same call at twice the σ scores otherwise
    _, clean, noisy = task.validation[0]
    wrong = bm3d.bm3d(noisy[0].double().numpy(), sigma_psd=2 * SIGMA / 255) * 255
    assert abs(_psnr(wrong, clean) - rows[0]["bm3d_psnr"]) > 0.1
    # the training curve's evaluations (no kept item) run no yardstick
    assert "bm3d_psnr" not in task.evaluate_items(model, limit=1, with_ssim=False)[0]


def test_nlmeans_scores_equal_a_direct_call_on_rician_noise(tmp_path):
    nlmeans = pytest.importorskip("dipy.denoise.nlmeans").nlmeans
    if classical_mod.missing_package("nlmeans") is not None:  # dipy < 1.12
        pytest.skip(classical_mod.missing_package("nlmeans"))
    nib = pytest.importorskip("nibabel")
    shape = (22, 20, 32)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grids))
    volume = ((radius < 0.8) * (100 + 40 * np.sin(3 * grids[0]))).astype(np.float32)
    path = tmp_path / "phantom.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))
    config = {
        "name": "tiny-volume",
        "model": {"name": "dncnn", "ndim": 3, "depth": 2, "width": 2, "batch_norm": False},
        "data": {"train": str(path), "holdout": 0.375, "patch_size": 8},
        "noise": {"kind": "rician", "sigma": 20},
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {"steps": 1, "batch_size": 2, "eval_every": 0, "checkpoint_every": 0},
    }
    task = VolumeDenoiseTask(config, "standard")
    (row,) = task.evaluate_items(task.build_model(), classical=True)
    ((_, clean, noisy),) = task.validation
    clean255 = clean.astype(np.float64) * 255
    direct = (
        nlmeans(
            noisy[0].double().numpy(),
            sigma=20 / 255,
            patch_radius=1,
            block_radius=2,
            rician=True,
            num_threads=1,
        )
        * 255
    )
    assert row["nlmeans_psnr"] == pytest.approx(_psnr(direct, clean255), abs=1e-9)
    assert row["nlmeans_ssim"] == pytest.approx(_ssim(direct, clean255), abs=1e-9)
    assert row["nlmeans_psnr"] > row["noisy_psnr"] + 3
    assert "rician=True" in row["nlmeans_parameters"]
    gaussian = (
        nlmeans(
            noisy[0].double().numpy(),
            sigma=20 / 255,
            patch_radius=1,
            block_radius=2,
            rician=False,
            num_threads=1,
        )
        * 255
    )
    assert abs(_psnr(gaussian, clean255) - row["nlmeans_psnr"]) > 0.05  # rician matters
    ((label, values),) = [(k, v) for k, v in base.baselines([row]).items() if "means" in k]
    assert values["psnr"] == row["nlmeans_psnr"] and "1 block)" in label
    results = {
        "config": config,
        "seeds": [0],
        "per_item": [{"seed": 0, "method": "standard", **row}],
    }
    section = "\n".join(report_sections(results))
    assert "## Classical yardstick" in section and "Coupé et al. 2008" in section
    assert "rician=True" in section


@pytest.fixture
def bm3d_calls(monkeypatch) -> list[float]:
    """The σ of every BM3D call, with nothing cached in this process."""
    bm3d = pytest.importorskip("bm3d")
    calls = []
    real = bm3d.bm3d

    def counting(*args, **kwargs):
        calls.append(kwargs["sigma_psd"])
        return real(*args, **kwargs)

    monkeypatch.setattr(bm3d, "bm3d", counting)
    monkeypatch.setattr(base, "_YARDSTICK_CACHE", {})
    monkeypatch.setattr(base, "_YARDSTICK_FILES_READ", set())
    return calls


def test_the_comparison_reports_bm3d_once_on_the_first_seed(tmp_path, image_root, bm3d_calls):
    calls = bm3d_calls
    results = compare(
        DENOISE,
        _image_config(),
        seeds=[0, 1],
        out_dir=tmp_path / "out",
        data=[str(image_root)],
        progress=False,
    )
    assert calls == [SIGMA / 255]  # the validation image once, for 2 seeds × 2 arms
    first = [r for r in results["per_item"] if r["seed"] == 0]
    assert all("bm3d_psnr" in r for r in first)
    assert not any("bm3d_psnr" in r for r in results["per_item"] if r["seed"] == 1)
    (label,) = [k for k in results["summary"]["baselines"] if k.startswith("BM3D")]
    scores = results["summary"]["baselines"][label]
    standard = [r for r in first if r["method"] == "standard"]
    assert scores["psnr"] == pytest.approx(np.mean([r["bm3d_psnr"] for r in standard]))
    assert scores["seconds"] == pytest.approx(sum(r["bm3d_seconds"] for r in standard))
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"| {label} | {scores['psnr']:.2f} | {scores['ssim']:.4f} | - |" in report
    assert "## Classical yardstick" in report and "Dabov et al. 2007" in report


def test_a_resumed_comparison_reads_bm3d_back_instead_of_running_it_again(
    tmp_path, image_root, monkeypatch, bm3d_calls
):
    calls = bm3d_calls
    out = tmp_path / "out"
    first = compare(
        DENOISE, _image_config(), seeds=[0], out_dir=out, data=[str(image_root)], progress=False
    )
    assert len(calls) == 1 and (out / "classical-cache.jsonl").is_file()
    # a new process: nothing in memory; an interrupted write left half a line behind
    monkeypatch.setattr(base, "_YARDSTICK_CACHE", {})
    monkeypatch.setattr(base, "_YARDSTICK_FILES_READ", set())
    with open(out / "classical-cache.jsonl", "a") as f:
        f.write('{"key": ["bm3d", "cut sh')
    again = compare(
        DENOISE,
        _image_config(),
        seeds=[0],
        out_dir=out,
        data=[str(image_root)],
        progress=False,
        resume=True,
    )
    assert len(calls) == 1  # read back, not run again
    assert again["summary"]["baselines"] == first["summary"]["baselines"]
    # a changed noise level is another key: computed, and appended on a line of its own
    monkeypatch.setattr(base, "_YARDSTICK_FILES_READ", set())
    other = _image_config()
    other["noise"]["validation_sigma"] = 2 * SIGMA
    task = DenoiseTask(other, "standard", image_root)
    task.yardstick_cache = out / "classical-cache.jsonl"
    task.evaluate_items(task.build_model(), classical=True)
    assert calls == [SIGMA / 255, 2 * SIGMA / 255]
    lines = (out / "classical-cache.jsonl").read_text().splitlines()
    assert len(lines) == 3 and lines[1].endswith("cut sh")
    assert [json.loads(lines[i])["scores"]["bm3d_psnr"] for i in (0,)] == [
        pytest.approx(first["summary"]["baselines"][k]["psnr"])
        for k in first["summary"]["baselines"]
        if k.startswith("BM3D")
    ]


def test_a_missing_package_is_reported_not_dropped(tmp_path, image_root, monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # import bm3d raises ImportError
    results = compare(
        DENOISE,
        _image_config(),
        seeds=[0],
        out_dir=tmp_path / "out",
        data=[str(image_root)],
        progress=False,
    )
    (label,) = [k for k in results["summary"]["baselines"] if k.startswith("BM3D")]
    assert "not run" in label and "bm3d package is not installed" in label
    assert results["summary"]["baselines"][label] == {}
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"| {label} | - | - | - |" in report
    assert "BM3D was not run: the bm3d package is not installed" in report


def test_eval_classical_false_runs_no_yardstick_and_says_so(image_root, monkeypatch):
    def forbidden(noisy, sigma):
        raise AssertionError("BM3D ran although eval.classical is false")

    monkeypatch.setattr(classical_mod, "bm3d_denoise", forbidden)
    config = _image_config(classical=False)
    task = DenoiseTask(config, "standard", image_root)
    rows = task.evaluate_items(task.build_model(), keep=("im0",))
    assert not any(k.startswith("bm3d") for r in rows for k in r)
    assert list(base.baselines(rows)) == ["noisy input"]
    results = {"config": config, "seeds": [0], "per_item": rows}
    assert "BM3D was not run: `eval.classical = false`" in "\n".join(report_sections(results))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="sigma"):
        classical_mod.bm3d_denoise(np.zeros((8, 8)), 0.0)
    with pytest.raises(ValueError, match="noisy"):
        classical_mod.nlmeans_denoise(np.zeros((8, 8)), 0.1, True)
    with pytest.raises(ValueError, match="spatial_dims"):
        classical_mod.yardstick_for(1, "gaussian", 25)
    with pytest.raises(ValueError, match="key"):
        classical_mod.missing_package("bm4d")
    noisy = np.random.default_rng(0).random((3, 4, 5))
    kept = noisy.copy()
    with pytest.raises(ValueError, match="noisy"):
        classical_mod.bm3d_denoise(noisy[None], 0.1)
    np.testing.assert_array_equal(noisy, kept)
