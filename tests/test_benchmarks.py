"""Smoke tests of the benchmarks: every ``--quick`` run exits 0 and writes a sound result.

Each runs ``python -m benchmarks.NAME --quick --out FILE`` from the checkout's root, as a
user would, and checks the JSON's structure (machine and version fields, keys, positive
times), never a timing value. MONAI is not in the ``all`` extra, so the tiling benchmark
is skipped where it is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = (
    "per_call",
    "layer_overhead",
    "train_throughput",
    "classify_throughput",
    "tiling",
    "image_throughput",
    "timeseries_smooth",
    "timeseries_apply",
)
MACHINE_KEYS = {"date", "cpu", "cores", "os", "python", "torch", "numpy", "ndwconv", "threads"}
needs_monai = pytest.mark.skipif(
    importlib.util.find_spec("monai") is None,
    reason="MONAI is not installed (the tiling benchmark compares against it; not in [all])",
)


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in the checkout's root, where ``-m benchmarks.NAME`` resolves."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def run_quick(name: str, tmp_path: Path, *extra: str) -> Any:
    """Run ``name --quick [extra]``; check the envelope of its JSON and return its results."""
    out = tmp_path / f"{name}.json"
    proc = run_python("-m", f"benchmarks.{name}", "--quick", "--out", str(out), *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["benchmark"] == name
    assert data["quick"] is True
    assert data["argv"] == ["--quick", "--out", str(out), *extra]
    machine = data["machine"]
    assert MACHINE_KEYS <= machine.keys()
    assert all(isinstance(machine[k], str) and machine[k] for k in ("cpu", "os", "torch"))
    assert machine["cores"] >= 1
    assert machine["threads"] == 1  # --quick runs on one thread
    assert isinstance(data["settings"], dict)
    assert data["wall_s"] > 0
    return data["results"]


def test_per_call_quick(tmp_path: Path) -> None:
    rows = run_quick("per_call", tmp_path)
    modes = {"no_grad", "inference_mode", "train"}
    candidates = {"plain", "reference", "weighted", "weighted_nd", "functional"}
    assert {(r["case"], r["mode"]) for r in rows} == {
        (case, mode)
        for case in ("2-D dense", "2-D depthwise", "1-D MNIST-1D", "3-D", "2-D large")
        for mode in modes
    }
    for row in rows:
        assert set(row["layers"]) == candidates
        for name, entry in row["layers"].items():
            us = entry["us"]
            assert 0 < us["q1"] <= us["median"] <= us["q3"]
            if name != "plain":
                assert {"added_us", "ratio"} <= entry.keys()
                assert entry["ratio"]["median"] > 0
        assert set(row["verdict"]) == {"weighted", "weighted_nd"}
        assert all(v in ("PASS", "MISS", "MISS (noise?)") for v in row["verdict"].values())
        if not row["large"]:
            assert "minus_reference_us" in row["layers"]["weighted"]


def test_layer_overhead_quick(tmp_path: Path) -> None:
    rows = run_quick("layer_overhead", tmp_path)
    cases = {r["case"] for r in rows}
    assert {"A/A control", "N = 4 vs Σ conv3d", "2-D CIFAR-like", "3-D"} <= cases
    for row in rows:
        assert row["mode"] in ("train", "infer")
        assert row["num_median_s"] > 0 and row["den_median_s"] > 0 and row["ratio_median"] > 0
        assert (row["target"] is None) == (row["case"] == "A/A control")


def test_train_throughput_quick(tmp_path: Path) -> None:
    results = run_quick("train_throughput", tmp_path)
    assert len(results["models"]) == 3
    assert all(m["parameters standard"] == m["parameters weighted"] for m in results["models"])
    for row in results["rows"]:
        assert row["standard_patches_per_s"] > 0 and row["candidate_patches_per_s"] > 0
        assert row["time_ratio"]["ratio_median"] > 0
        assert all(t > 0 for times in row["samples_s"].values() for t in times)


def test_classify_throughput_quick(tmp_path: Path) -> None:
    # VGG-16-BN (34 M parameters, three copies) is left out of the smoke test for time;
    # its parameter count is checked in tests/test_classify_models.py
    results = run_quick("classify_throughput", tmp_path, "--models", "resnet18", "fcn")
    measured = {m["key"] for m in results["models"]}
    assert measured == {"resnet18", "fcn"} and not results["skipped"]
    # parameter counts derived by arithmetic in tests/test_classify_models.py
    expected = {"vgg16_bn": (34_015_396, 13, 0), "resnet18": (11_220_132, 17, 3)}
    for m in results["models"]:
        assert m["parameters standard"] == m["parameters weighted"]
        if m["key"] in expected:
            assert m["classes"] == 100 and m["shape"][1:] == [3, 32, 32]
            params, weighted, plain = expected[m["key"]]
            assert m["parameters standard"] == params
            assert (m["weighted convolutions"], m["plain convolutions"]) == (weighted, plain)
    assert len(results["rows"]) == 2 * len(measured)
    for row in results["rows"]:
        assert row["standard_samples_per_s"] > 0 and row["candidate_samples_per_s"] > 0
        assert row["time_ratio"]["ratio_median"] > 0
        assert (row["verdict"] is None) == row["pair"].startswith("A/A")
        assert row["verdict"] in (None, "PASS", "MISS", "MISS (noise?)")
        assert all(t > 0 for times in row["samples_s"].values() for t in times)


def test_timeseries_apply_quick(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    pytest.importorskip("h5netcdf")
    results = run_quick("timeseries_apply", tmp_path)
    rows = results["throughput"]
    assert rows[0]["scheduler"] == "in memory (NumPy)"
    assert {(r["scheduler"], r["workers"], r["chunk"]) for r in rows[1:]} == {
        (s, w, c) for s, w in (("threads", 1), ("LocalCluster", 2)) for c in (5000, 20000)
    }
    for row in rows:
        assert row["samples"] == 20000 and row["samples_per_s"] > 0
        assert 0 < row["seconds"]["q1"] <= row["seconds"]["median"] <= row["seconds"]["q3"]
    (memory,) = results["memory"]
    assert memory["length"] == 10000 and memory["seconds"] > 0
    assert memory["peak_mib"] >= memory["rss_setup_mib"] > 0 or not memory["peak_reset"]


@needs_monai
@pytest.mark.slow
def test_tiling_quick(tmp_path: Path) -> None:
    results = run_quick("tiling", tmp_path)
    assert {t["case"] for t in results["time"]} == {"in-memory", "HDF5"}
    for entry in results["time"]:
        assert entry["ours_median_s"] > 0 and entry["monai_median_s"] > 0
    assert all(v["identical"] for v in results["network_inputs"].values())


def test_image_throughput_quick(tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    results = run_quick("image_throughput", tmp_path)
    assert {"ours", "ours, as given"} <= results.keys()
    for name in ("ours", "ours, as given"):
        assert results[name]["megapixels_per_s"] > 0
        assert all(t > 0 for t in results[name]["seconds"])
    assert results["served_vs_given_max_abs"] < 1e-5  # serving does not change the result


def test_timeseries_smooth_quick(tmp_path: Path) -> None:
    pytest.importorskip("xarray")
    rows = run_quick("timeseries_smooth", tmp_path)
    assert {(r["container"], r["dtype"]) for r in rows} == {
        (c, d) for c in ("numpy", "DataArray") for d in ("float32", "float64")
    }
    for row in rows:
        assert row["scipy_median_s"] > 0 and row["smooth"]["ratio_median"] > 0
        assert row["backend_chosen"] in ("direct", "scipy", "fft")
        assert row["max_rel_error_vs_scipy"] < 1e-5  # the rows compare equal results
        assert row["verdict"] in ("PASS", "MISS", "MISS (noise?)")
        if row["container"] == "numpy":
            assert row["backend_fastest"] in ("direct", "scipy", "fft")
            assert row["direct"]["ratio_median"] > 0 and row["fft"]["ratio_median"] > 0
        assert all(t > 0 for times in row["samples_s"].values() for t in times)


def test_help_shows_an_example() -> None:
    code = "; ".join(
        [
            "import importlib",
            f"names = {BENCHMARKS!r}",
            "mods = [importlib.import_module('benchmarks.' + n) for n in names]",
            "print('\\x00'.join(m.build_parser().format_help() for m in mods))",
        ]
    )
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    helps = proc.stdout.split("\x00")
    for name, text in zip(BENCHMARKS, helps, strict=True):
        assert f"python -m benchmarks.{name} --quick" in text
        assert "--out" in text and "--threads" in text
