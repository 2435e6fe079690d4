"""The ``ndwconv`` command line: parsing, errors, ``info`` and a tiny ``compare`` run."""

from __future__ import annotations

import contextlib
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

pytest.importorskip("skimage")
pytest.importorskip("safetensors")
data = pytest.importorskip("ndwconv.recipes.tasks.denoise.data")

# A comparison of a few seconds on the embedded images: a 3-layer DnCNN, 3 steps, 1 seed.
TINY = [
    "--steps",
    "3",
    "--set",
    "model.depth=3",
    "--set",
    "model.width=8",
    "--set",
    "data.patch_size=24",
    "--set",
    "train.batch_size=8",
    "--set",
    "train.eval_every=0",
    "--seeds",
    "1",
    "--quiet",
]
THEORETICAL_NOISY_PSNR = 20 * math.log10(255 / 25)  # ≈ 20.17 dB for σ = 25, before clipping


COMPARE = ("compare", "denoise", "--config", "quick")


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
    for command in ("train", "compare"):  # found through the ndwconv.commands entry points
        assert command in out


@pytest.mark.parametrize("command", ["info", "train", "compare"])
def test_subcommand_help_has_an_example(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert f"usage: ndwconv {command}" in out
    assert f"ndwconv {command}" in out.split("example")[-1]


def test_list_configs_needs_no_task_but_a_run_does(capsys):
    for argv in (["--list-configs"], ["--list-configs", "denoise"], ["denoise", "--list-configs"]):
        code, out, _ = run(capsys, "compare", *argv)
        assert code == 0 and "bsd-cpu" in out and "quick" in out, argv
    code, _, err = run(capsys, "train")
    assert code == 1
    assert_one_line_error(err, "name the task", "ndwconv train denoise")


def test_list_configs_of_a_task_lists_only_that_tasks_configurations(capsys):
    """``compare classify --list-configs`` must not offer denoising configurations (and the
    other way round); without a task every configuration is listed with its task."""
    code, out, _ = run(capsys, "compare", "classify", "--list-configs")
    names = {line.split()[0] for line in out.splitlines()}
    assert code == 0 and {"quick-classify", "mnist1d", "cifar100-paper"} <= names
    assert not names & {"quick", "bsd-cpu", "mni"}
    code, out, _ = run(capsys, "train", "denoise", "--list-configs")
    names = {line.split()[0] for line in out.splitlines()}
    assert code == 0 and {"quick", "bsd-cpu", "mni"} <= names and "mnist1d" not in names
    code, out, _ = run(capsys, "compare", "--list-configs")
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()}
    assert rows["quick"] == "denoise" and rows["quick-classify"] == "classify"
    code, _, err = run(capsys, "train", "--config", "quick")  # flags belong to a task
    assert code == 2 and "usage: ndwconv train" in err


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
    code, _, err = run(capsys, "compare", "denoise", "--no-such-flag")
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
            name, example = line.split(maxsplit=1)  # a JSON spec may hold spaces
            examples[name] = example
    assert set(examples) == {"default", *ndwconv.registered_families()}
    for name, example in examples.items():
        density = ndwconv.as_density(example)
        assert name == "default" or density.family == name


# ---------------------------------------------------------------------------------------
# Errors: one line on stderr, a traceback only with --debug
# ---------------------------------------------------------------------------------------


def test_unknown_density_is_a_one_line_error(capsys, tmp_path):
    code, out, err = run(capsys, *COMPARE, "--density", "nosuch", *TINY, "--out", str(tmp_path))
    assert code == 1
    assert out == ""
    assert_one_line_error(err, "unknown density 'nosuch'")


def test_density_that_does_not_fit_the_kernel_is_a_one_line_error(capsys, tmp_path):
    code, _, err = run(
        capsys, *COMPARE, "--density", "table:0.2,0.8", *TINY, "--out", str(tmp_path)
    )
    assert code == 1
    assert_one_line_error(err, "size 3")


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--device", "tpu"], "--device 'tpu' is not a device name"),
        (["--set", "train.device=tpu"], "train.device 'tpu' is not a device name"),
        (["--set", "data.patch_size=2000"], "patch_size"),
        (["--set", "noise.sigma=-5"], "sigma"),
        (["--seeds", "0"], "--seeds must be an integer ≥ 1"),
        (["--set", "train.batch_size=0"], "train.batch_size must be ≥ 1"),
    ],
)
def test_bad_compare_arguments_are_one_line_errors(capsys, tmp_path, flags, fragment):
    code, _, err = run(capsys, *COMPARE, *TINY, *flags, "--out", str(tmp_path))
    assert code == 1
    assert_one_line_error(err, fragment)


@pytest.mark.parametrize("position", ["before", "after"])
def test_debug_shows_the_exception(position):
    argv = [*COMPARE, "--density", "nosuch"]
    argv = ["--debug", *argv] if position == "before" else [*argv, "--debug"]
    with pytest.raises(ValueError, match="unknown density"):
        main(argv)


def test_missing_scikit_image_names_the_extra(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "skimage", None)  # makes `import skimage` fail
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    code, _, err = run(capsys, *COMPARE, *TINY, "--out", str(tmp_path))
    assert code == 1
    assert_one_line_error(err, 'pip install -e ".[recipes]" in the ndwconv repository root')


# ---------------------------------------------------------------------------------------
# compare: the main job, in miniature
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two tiny comparisons with the same seed: ``(output folder, stdout, stderr)`` of each."""
    runs = []
    for i in range(2):
        out = tmp_path_factory.mktemp(f"compare{i}")
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main([*COMPARE, *TINY, "--out", str(out)])
        assert code == 0, stderr.getvalue()
        runs.append((out, stdout.getvalue(), stderr.getvalue()))
    return runs


def test_compare_scores_held_out_images_with_finite_psnrs(tiny_runs):
    out, _, _ = tiny_runs[0]
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["train"]["steps"] == 3
    assert results["seeds"] == [0]
    images = {row["image"] for row in results["per_item"]}
    assert images == set(data.EMBEDDED_VALIDATION)
    assert not images & set(data.EMBEDDED_TRAIN)
    for row in results["per_item"]:
        assert all(math.isfinite(row[k]) for k in ("psnr", "ssim", "noisy_psnr", "noisy_ssim"))
        # Clipping to [0, 255] can only lower the error, and 512×512 samples pin it down.
        assert THEORETICAL_NOISY_PSNR - 0.05 < row["noisy_psnr"] < THEORETICAL_NOISY_PSNR + 1.0
    weighted = next(r for r in results["runs"] if r["method"] == "weighted")
    assert weighted["weighted_layers"] == 3
    assert not list(out.rglob("*.tmp"))  # every file was written atomically


def test_compare_is_reproducible(tiny_runs):
    first, second = (json.loads((out / "results.json").read_text()) for out, _, _ in tiny_runs)
    for results in (first, second):
        for key in ("wall_seconds", "data"):
            results.pop(key)
        for run_ in results["runs"]:
            for key in ("train_seconds", "samples_per_second", "checkpoint"):
                run_.pop(key)
        for used in results["compute"].values():  # timings; the steps stay
            for key in ("train_seconds", "sweep_train_seconds"):
                used.pop(key)
    assert first == second


def test_compare_prints_the_table(tiny_runs):
    _, out, err = tiny_runs[0]
    for row in ("| noisy input |", "| standard |", "| weighted |", "| weighted − standard |"):
        assert row in out, row
    assert "One seed only" in out
    assert "report:" in err and "%|" not in err  # --quiet: no progress bar
