"""The denoising recipe on 1-D series: reading, split, normalisation, crops, PSNR/SNR,
classical yardsticks, and a tiny end-to-end comparison.

References are independent of the code under test: the geometry of generated series
(strictly increasing ramps, so every value names its position), float64 NumPy formulas
for the scores, SciPy's filters called directly over the same grid for the parameter
search, ``numpy.loadtxt`` for the bundled file, and the expected PSNR of Gaussian noise.
"""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("safetensors")
signal = pytest.importorskip("scipy.signal")

from ndwconv.recipes.engine import load_config  # noqa: E402
from ndwconv.recipes.engine.compare import compare  # noqa: E402
from ndwconv.recipes.tasks import get_task  # noqa: E402
from ndwconv.recipes.tasks.denoise import (  # noqa: E402
    SeriesDenoiseTask,
    classical,
    load_denoiser,
    make_task,
)
from ndwconv.recipes.tasks.denoise import series_data as sd  # noqa: E402
from ndwconv.recipes.tasks.denoise.metrics import series_psnr, snr  # noqa: E402

TINY = [
    "model.depth=3",
    "model.width=4",
    "data.patch_size=32",
    "train.steps=2",
    "train.batch_size=4",
    "train.eval_every=0",
    "train.log_every=0",
    "train.checkpoint_every=0",
    "train.threads=1",
]


def _config(path, *overrides):
    cfg = load_config("ecg", [*TINY, *overrides])
    cfg["data"]["train"] = str(path)
    cfg["data"].pop("sampling_rate", None)
    return cfg


def _ecg_like(n=1200, seed=0):
    """Spikes every 100 samples on a slow wave: a crude ECG, smooth between beats."""
    t = np.arange(n)
    wave = 0.3 * np.sin(2 * np.pi * t / 400) + np.exp(-0.5 * ((t % 100 - 50) / 2.0) ** 2)
    return wave + 0.01 * np.random.default_rng(seed).standard_normal(n)


@pytest.fixture
def ramp_file(tmp_path):
    """A strictly increasing series: each value tells where it came from."""
    path = tmp_path / "ramp.npy"
    np.save(path, np.arange(1000, dtype=np.float64) * 0.5 + 3.0)
    return path


# --------------------------------------------------------------------------- reading


def test_read_csv_npy_and_columns(tmp_path):
    values = np.array([0.5, -1.25, 3.0, 2.0])
    (tmp_path / "a.csv").write_text(
        "time,lead\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values))
    )
    (tmp_path / "b.csv").write_text("".join(f"{v}\t{2 * v}\n" for v in values).replace("\t", ","))
    (tmp_path / "c.tsv").write_text("x\n" + "".join(f"{v}\n" for v in values))
    np.save(tmp_path / "d.npy", values[None, :, None])
    assert sd.read_series(f"{tmp_path / 'a.csv'}:lead")[1].tolist() == values.tolist()
    assert sd.read_series(f"{tmp_path / 'b.csv'}:1")[1].tolist() == (2 * values).tolist()
    assert sd.read_series(str(tmp_path / "c.tsv"))[1].tolist() == values.tolist()
    name, read = sd.read_series(str(tmp_path / "d.npy"))
    assert name == "d.npy" and read.dtype == np.float64 and read.tolist() == values.tolist()


@pytest.mark.parametrize(
    ("content", "spec", "fragment"),
    [
        ("time,lead\n0,1\n", "f.csv", r"2 columns \(time, lead\); name one"),
        ("time,lead\n0,1\n", "f.csv:ecg", "no column 'ecg'; its columns: time, lead"),
        ("x\n1\nabc\n", "f.csv", "line 3: 'abc' in column 'x' is not a number"),
        ("x\n1\nnan\n2\n", "f.csv", "1 missing or non-finite samples .first at sample 1"),
        ("x\n1\n", "f.txt", "unknown file type '.txt'"),
    ],
)
def test_bad_series_files_are_named(tmp_path, content, spec, fragment):
    (tmp_path / spec.split(":")[0]).write_text(content)
    with pytest.raises(ValueError, match=fragment):
        sd.read_series(str(tmp_path / spec))


def test_read_a_netcdf_variable(tmp_path):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    values = np.array([1.5, 2.0, -0.5, 4.0], dtype=np.float32)
    data = xr.Dataset(
        {"temp": ("time", values), "grid": (("x", "time"), np.zeros((2, 4)))},
        coords={"time": np.arange(4)},
    )
    data.to_netcdf(tmp_path / "obs.nc", engine="h5netcdf")
    name, read = sd.read_series(f"{tmp_path / 'obs.nc'}:temp")
    assert name == "obs.nc:temp" and read.tolist() == values.astype(np.float64).tolist()
    with pytest.raises(ValueError, match=r"2 variables \(temp, grid\); name one"):
        sd.read_series(str(tmp_path / "obs.nc"))
    with pytest.raises(ValueError, match=r"'grid' has dims \('x', 'time'\)"):
        sd.read_series(f"{tmp_path / 'obs.nc'}:grid")
    (tmp_path / "text.nc").write_text("x\n1\n")
    with pytest.raises(ValueError, match="cannot be read as NetCDF-4/HDF5"):
        sd.read_series(str(tmp_path / "text.nc"))


def test_bad_npy_and_missing_file(tmp_path):
    np.save(tmp_path / "m.npy", np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"shape \(3, 4\); a series is 1-D"):
        sd.read_series(str(tmp_path / "m.npy"))
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        sd.read_series(str(tmp_path / "nope.csv"))


def test_bundled_mitdb_is_the_data_column_of_sktimes_file():
    if importlib.util.find_spec("sktime") is None:  # importing sktime itself takes seconds
        pytest.skip("sktime (the examples extra) is not installed")
    path = sd.mitdb_path()
    assert path.parts[-4:] == ("datasets", "data", "mitdb", "mitdb.csv")
    reference = np.loadtxt(path, delimiter=",", skiprows=1)  # columns: data, label
    name, values = sd.read_series(sd.EMBEDDED_MITDB)
    assert name == "mitdb" and values.shape == (7500,)
    np.testing.assert_array_equal(values, reference[:, 0])
    # MIT-BIH stores 200 ADC units per mV: the values are whole multiples of 1/200
    np.testing.assert_allclose(values * 200, np.round(values * 200), atol=1e-9)


def test_missing_sktime_gives_the_install_hint(monkeypatch):
    monkeypatch.setattr(sd.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r'embedded:mitdb.*pip install -e "\.\[examples\]"'):
        sd.read_series(sd.EMBEDDED_MITDB)


# --------------------------------------------------------------------------- split, scale


def test_split_is_contiguous_and_disjoint():
    x = np.arange(1000.0)
    original = x.copy()
    train, test = sd.split(x, holdout=0.3, gap=10)
    assert train.tolist() == list(range(690)) and test.tolist() == list(range(700, 1000))
    assert not set(train.tolist()) & set(test.tolist())
    np.testing.assert_array_equal(x, original)
    with pytest.raises(ValueError, match=r"holdout must be in \(0, 1\)"):
        sd.split(x, holdout=1.0)
    with pytest.raises(ValueError, match="leaves 2 held-out and 0 training"):
        sd.split(np.arange(5.0), holdout=0.4, gap=3)


def test_task_split_crops_come_from_the_training_part_only(ramp_file):
    task = make_task(_config(ramp_file, "data.holdout=0.25", "data.gap=20"), "standard")
    assert isinstance(task, SeriesDenoiseTask)
    (_, train, test), (lo, hi) = task.parts[0], task.ranges["ramp.npy"]
    ramp = np.arange(1000) * 0.5 + 3.0
    # back to the file's units, the parts are the file's first 730 and last 250 samples
    np.testing.assert_allclose(lo + train.astype(np.float64) * (hi - lo), ramp[:730], atol=1e-4)
    np.testing.assert_allclose(lo + test.astype(np.float64) * (hi - lo), ramp[750:], atol=1e-4)
    for i in range(50):
        _, clean = task.dataset[i]
        index = (lo + clean[0].double().numpy() * (hi - lo) - 3.0) / 0.5
        assert index.max() < 730 - 0.01  # never the gap, never the held-out part
        np.testing.assert_allclose(np.diff(index), 1.0, atol=1e-3)  # one contiguous crop


def test_normalisation_uses_the_training_part_only(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=1000)
    x[900:] += 50.0  # a held-out part far outside the training range
    path = tmp_path / "s.npy"
    np.save(path, x)
    task = make_task(_config(path, "data.holdout=0.1"), "standard")
    lo, hi = task.ranges["s.npy"]
    assert (lo, hi) == (x[:900].min(), x[:900].max())
    _, train, test = task.parts[0]
    np.testing.assert_allclose(train, (x[:900] - lo) / (hi - lo), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(test, (x[900:] - lo) / (hi - lo), rtol=1e-6)
    assert test.min() > 1.0  # not clipped
    x[900:] *= -3.0  # another held-out part: the training part's scale does not move
    np.save(path, x)
    again = make_task(_config(path, "data.holdout=0.1"), "standard")
    np.testing.assert_array_equal(again.parts[0][1], train)
    (_,), (plo, phi) = sd.normalise(x[:900], [], (5, 95))
    assert (plo, phi) == tuple(np.percentile(x[:900], [5, 95]))


def test_crops_are_a_pure_function_of_seed_and_index(ramp_file):
    a = make_task(_config(ramp_file, "train.seed=3"), "standard").dataset
    b = make_task(_config(ramp_file, "train.seed=3"), "weighted").dataset
    c = make_task(_config(ramp_file, "train.seed=4"), "standard").dataset
    later = [b[i] for i in (7, 2, 0)]  # another order, another task
    for i, (noisy, clean) in zip((7, 2, 0), later, strict=True):
        assert torch.equal(a[i][0], noisy) and torch.equal(a[i][1], clean)
    assert a[0][0].shape == (1, 32)
    assert not torch.equal(a[0][0], c[0][0])


def test_short_series_and_bad_keys_are_refused(tmp_path):
    np.save(tmp_path / "short.npy", np.arange(60.0))
    with pytest.raises(ValueError, match=r"short.npy has 60 samples: 42 for training .needs ≥ 32"):
        make_task(_config(tmp_path / "short.npy", "data.holdout=0.3"), "standard")
    np.save(tmp_path / "flat.npy", np.r_[np.arange(100.0), np.zeros(50)])
    with pytest.raises(ValueError, match=r"flat.npy: the held-out part .the last 45 samples. is"):
        make_task(_config(tmp_path / "flat.npy", "data.holdout=0.3"), "standard")
    with pytest.raises(ValueError, match=r"data.holdout must be in \(0, 1\)"):
        make_task(_config(tmp_path / "short.npy", "data.holdout=1.5"), "standard")
    with pytest.raises(ValueError, match=r"unknown config key data\.validation"):
        make_task(_config(tmp_path / "short.npy", "data.validation='x'"), "standard")
    with pytest.raises(ValueError, match=r"is a series.*--ndim 1"):
        make_task(load_config("quick"), "standard", str(tmp_path / "short.npy"))


# --------------------------------------------------------------------------- scores


def test_psnr_and_snr_against_float64_numpy():
    rng = np.random.default_rng(2)
    clean = rng.normal(size=500).astype(np.float32) * 0.2 + 0.4
    estimate = clean + rng.normal(size=500).astype(np.float32) * 0.05
    c, e = clean.astype(np.float64), estimate.astype(np.float64)
    mse = sum((a - b) ** 2 for a, b in zip(e.tolist(), c.tolist(), strict=True)) / 500
    assert series_psnr(estimate, clean) == pytest.approx(10 * math.log10(1.0 / mse), rel=1e-12)
    assert series_psnr(estimate, clean, peak=2.0) == pytest.approx(
        10 * math.log10(4.0 / mse), rel=1e-12
    )
    mean = sum(c.tolist()) / 500
    power = sum((a - mean) ** 2 for a in c.tolist())
    assert snr(estimate, clean) == pytest.approx(10 * math.log10(power / (mse * 500)), rel=1e-12)
    # in physical units (x = lo + y·(hi − lo)): SNR unchanged, PSNR with peak hi − lo
    lo, hi = -0.6, 1.25
    phys_e, phys_c = lo + e * (hi - lo), lo + c * (hi - lo)
    assert snr(phys_e, phys_c) == pytest.approx(snr(e, c), rel=1e-9)
    assert series_psnr(phys_e, phys_c, peak=hi - lo) == pytest.approx(series_psnr(e, c), rel=1e-9)
    assert series_psnr(clean + 5.0, clean) < 0  # not clipped
    assert math.isinf(snr(clean, clean))
    with pytest.raises(ValueError, match="clean is constant"):
        snr(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match=r"estimate \(3,\) and clean \(4,\)"):
        series_psnr(np.ones(3), np.ones(4))


# --------------------------------------------------------------------------- classical


def _noisy_sine(n=3000, f=0.05, sigma=0.1, seed=3):
    t = np.arange(n)
    clean = 0.5 + 0.4 * np.sin(np.pi * f * t)  # f as a fraction of Nyquist
    return clean + np.random.default_rng(seed).normal(0, sigma, n), clean


def test_butterworth_search_picks_the_grid_maximum():
    noisy, clean = _noisy_sine()
    orders, cutoffs = (1, 2, 4, 6), tuple(np.geomspace(0.02, 0.8, 12))
    choice = classical.best_butterworth(noisy, clean, orders, cutoffs)
    scores = {}
    for order in orders:
        for cut in cutoffs:
            out = signal.sosfiltfilt(signal.butter(order, cut, output="sos"), noisy)
            scores[(order, cut)] = -10 * np.log10(np.mean((out - clean) ** 2))
    best = max(scores, key=scores.get)
    assert (choice.parameters["order"], choice.parameters["cutoff"]) == best
    assert choice.training_psnr == pytest.approx(scores[best], abs=1e-9)
    assert choice.candidates == len(scores)
    # a case known in advance: a sine at 0.05 × Nyquist; 0.01 removes it, 0.5 lets in
    # 5 times the noise of 0.1; order 2 at 0.1 damps the sine by 6 %, order 4 by 0.4 %
    known = classical.best_butterworth(noisy, clean, (2, 4), (0.01, 0.1, 0.5))
    assert known.parameters == {"order": 4, "cutoff": 0.1}
    assert known.describe(360) == "order 4, cut-off 18 Hz"


def test_savgol_search_picks_the_grid_maximum():
    noisy, clean = _noisy_sine(f=0.01)
    windows, orders = (5, 11, 21, 41, 81), (0, 1, 2, 3, 4)
    choice = classical.best_savgol(noisy, clean, windows, orders)
    scores = {
        (w, p): -10 * np.log10(np.mean((signal.savgol_filter(noisy, w, p) - clean) ** 2))
        for w in windows
        for p in orders
        if p < w
    }
    best = max(scores, key=scores.get)
    assert (choice.parameters["window"], choice.parameters["polyorder"]) == best
    assert choice.training_psnr == pytest.approx(scores[best], abs=1e-9)
    # a case known in advance: a constant under white noise; a window-w mean leaves
    # σ²/w, any higher order leaves more, so the longest window at order 0 wins
    flat = np.full(2000, 0.3)
    noise = np.random.default_rng(4).normal(0, 0.1, flat.size)
    known = classical.best_savgol(flat + noise, flat, (5, 21, 101), (0, 2, 4))
    assert known.parameters == {"window": 101, "polyorder": 0}
    assert known.describe(360).startswith("window 101 samples (281 ms), polynomial order 0")


# --------------------------------------------------------------------------- end to end


def test_tiny_compare_writes_the_report_with_the_classical_rows(tmp_path):
    path = tmp_path / "ecg.csv"
    values = _ecg_like()
    path.write_text("t,mv\n" + "".join(f"{i},{float(v)!r}\n" for i, v in enumerate(values)))
    cfg = _config(f"{path}:mv")
    cfg["data"]["sampling_rate"] = 100.0
    entry = get_task("denoise")
    results = compare(entry, cfg, seeds=[0], out_dir=tmp_path / "out", progress=False)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| method | PSNR (dB) | SNR (dB) | seeds |" in report and "SSIM" not in report
    assert "| noisy input |" in report
    assert (
        "| Butterworth low-pass (order " in report and "Hz; chosen on the training part)" in report
    )
    assert "| Savitzky–Golay (window " in report and "## Classical filters" in report
    base = results["summary"]["baselines"]
    rows = [r for r in results["per_item"] if r["seed"] == 0 and r["method"] == "standard"]
    # the noisy input: Gaussian noise of σ = 15/255 of the training range, 360 samples
    noise_psnr = -20 * math.log10(15 / 255)
    assert base["noisy input"]["psnr"] == pytest.approx(noise_psnr, abs=0.6)
    assert rows[0]["butterworth_psnr"] > base["noisy input"]["psnr"] + 3
    for r in results["runs"]:
        assert set(r) >= {"psnr", "snr"} and "ssim" not in r
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [m["name"] for m in saved["metrics"]] == ["psnr", "snr"]
    assert (tmp_path / "out" / "figure.png").stat().st_size > 1000
    # the checkpoint rebuilds a 1-D DnCNN that gives the scored estimate's PSNR
    model = load_denoiser(tmp_path / "out" / "seed-0" / "standard")
    task = make_task(cfg, "standard")
    _, clean, noisy = task.validation[0]
    with torch.no_grad():
        estimate = model(noisy[None])[0, 0].double().numpy()
    assert series_psnr(estimate, clean) == pytest.approx(rows[0]["psnr"], abs=1e-6)
