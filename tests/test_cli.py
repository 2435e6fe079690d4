"""The ``ndwconv`` command line: parsing, errors, ``info`` and a tiny ``demo`` run."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

import ndwconv
from ndwconv import cli
from ndwconv.cli import main

demo = pytest.importorskip("ndwconv.recipes.demo")

# A demo run of a few seconds: 3 steps on small patches, no progress bar.
TINY = ["--steps", "3", "--patch", "24", "--batch", "8", "--quiet"]
THEORETICAL_NOISY_PSNR = 20 * math.log10(255 / 25)  # ≈ 20.17 dB for σ = 25, before clipping


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ndwconv: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err


# ---------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------


def test_help_lists_the_core_and_discovered_commands(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "usage: ndwconv" in out
    assert "info" in out
    assert "demo" in out  # found through the ndwconv.commands entry points


@pytest.mark.parametrize("command", ["info", "demo"])
def test_subcommand_help_has_an_example(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert f"usage: ndwconv {command}" in out
    assert f"ndwconv {command}" in out.split("example")[-1]


def test_no_subcommand_prints_help_and_returns_2(capsys):
    code, out, err = run(capsys)
    assert code == 2
    assert out == ""
    assert "usage: ndwconv" in err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip().startswith(f"ndwconv {ndwconv.__version__}")


def test_unknown_flag_is_a_usage_error(capsys):
    code, _, err = run(capsys, "demo", "--no-such-flag")
    assert code == 2
    assert "unrecognized arguments: --no-such-flag" in err


def test_python_dash_m_ndwconv():
    proc = subprocess.run(
        [sys.executable, "-m", "ndwconv", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: ndwconv" in proc.stdout


def test_a_command_that_cannot_load_fails_only_when_run(capsys, monkeypatch):
    broken = EntryPoint(name="broken", value="no_such_module:register", group=cli.COMMAND_GROUP)
    monkeypatch.setattr(cli, "entry_points", lambda group: [broken])
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "broken" in out
    code, _, err = run(capsys, "broken")
    assert code == 1
    assert_one_line_error(err, "command 'broken' is unavailable", "no_such_module")


# ---------------------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------------------


def test_info_prints_versions_devices_and_parseable_family_examples(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0
    for fragment in (ndwconv.__version__, "torch", "numpy", "python", "cuda", "mps"):
        assert fragment in out
    listing = out.split("density families")[1].splitlines()[1:]
    examples = {}
    for line in listing:
        if line.startswith("  ") and not line.startswith("    "):
            name, example = line.split()
            examples[name] = example
    assert set(examples) == {"default", *ndwconv.registered_families()}
    for name, example in examples.items():
        density = ndwconv.as_density(example)
        assert name == "default" or density.family == name


# ---------------------------------------------------------------------------------------
# Errors: one line on stderr, a traceback only with --debug
# ---------------------------------------------------------------------------------------


def test_unknown_density_is_a_one_line_error(capsys):
    code, out, err = run(capsys, "demo", "--density", "nosuch", *TINY)
    assert code == 1
    assert out == ""
    assert_one_line_error(err, "unknown density 'nosuch'")


def test_density_that_does_not_fit_the_kernel_is_a_one_line_error(capsys):
    code, _, err = run(capsys, "demo", "--density", "table:0.2,0.8", *TINY)
    assert code == 1
    assert_one_line_error(err, "size 3")


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--device", "tpu"], "device must be"),
        (["--patch", "2"], "patch must be"),
        (["--sigma", "0"], "sigma must be"),
    ],
)
def test_bad_demo_arguments_are_one_line_errors(capsys, flags, fragment):
    code, _, err = run(capsys, "demo", *TINY, *flags)
    assert code == 1
    assert_one_line_error(err, fragment)


@pytest.mark.parametrize("position", ["before", "after"])
def test_debug_shows_the_exception(position):
    argv = ["demo", "--density", "nosuch"]
    argv = ["--debug", *argv] if position == "before" else [*argv, "--debug"]
    with pytest.raises(ValueError, match="unknown density"):
        main(argv)


def test_missing_scikit_image_names_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # makes `import skimage` fail
    monkeypatch.setattr(demo, "_load_grey", functools.cache(demo._load_grey.__wrapped__))
    code, _, err = run(capsys, "demo", *TINY)
    assert code == 1
    assert_one_line_error(err, "pip install 'ndwconv[recipes]'")


# ---------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two tiny demo runs with the same seed: ``(output folder, stdout, stderr)`` of each."""
    runs = []
    for i in range(2):
        out = tmp_path_factory.mktemp(f"demo{i}")
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["demo", *TINY, "--seed", "7", "--out", str(out)])
        assert code == 0, stderr.getvalue()
        runs.append((out, stdout.getvalue(), stderr.getvalue()))
    return runs


def test_demo_writes_results_with_finite_psnrs(tiny_runs):
    out, _, _ = tiny_runs[0]
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]  # no temporary left
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["steps"] == 3
    assert results["config"]["seed"] == 7
    assert results["data"]["validation"] == list(demo.VALIDATION_IMAGES)
    assert not set(results["data"]["train"]) & set(results["data"]["validation"])
    assert set(results["per_image"]) == set(demo.VALIDATION_IMAGES)
    for scores in [results["psnr"], *results["per_image"].values()]:
        assert set(scores) == {"noisy", "plain", "weighted"}
        assert all(math.isfinite(v) for v in scores.values())
        # Clipping to [0, 255] can only lower the error, and 512×512 samples pin it down.
        assert THEORETICAL_NOISY_PSNR - 0.05 < scores["noisy"] < THEORETICAL_NOISY_PSNR + 1.0
    assert results["weighted_layers"] == demo.DEPTH


def test_demo_is_reproducible(tiny_runs):
    first, second = (json.loads((out / "results.json").read_text()) for out, _, _ in tiny_runs)
    first.pop("time_s")
    second.pop("time_s")
    assert first == second


def test_demo_prints_the_table(tiny_runs):
    _, out, err = tiny_runs[0]
    assert "0–255 scale" in out
    assert "seed 7 · 3 steps" in out
    for row in ("image", "camera", "astronaut", "mean", "train time"):
        assert any(line.startswith(row) for line in out.splitlines()), row
    assert "weighted - plain" in out
    assert err == ""  # --quiet: no progress bar
