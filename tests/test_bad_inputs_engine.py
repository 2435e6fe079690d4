"""Bad input to the engine, table-driven: each row is an input and the exception type (or
the command line's exit code) plus a fragment of the message. Command-line rows also
check that the error is one line (exit 1) or a usage error (exit 2), never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("safetensors", reason="checkpoints need ndwconv[recipes]")

from test_engine import TOY, build_toy, toy_registered  # noqa: F401

from ndwconv.cli import main
from ndwconv.recipes.engine import load_checkpoint
from ndwconv.recipes.engine.checkpoint import CheckpointError, save_checkpoint
from ndwconv.recipes.engine.config import load_config, parse_override, validate
from ndwconv.recipes.engine.distributed import resolve_device
from ndwconv.recipes.engine.lock import check_output_folder
from ndwconv.recipes.tasks import load_model


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A folder of bad inputs: config files, a checkpoint to damage, plain files."""
    root = tmp_path_factory.mktemp("bad")
    (root / "dir.toml").mkdir()
    (root / "binary.toml").write_bytes(bytes(range(128, 256)) * 8)
    (root / "broken.toml").write_text("[train\nsteps = 3\n", "utf-8")
    (root / "file.txt").write_text("not a folder", "utf-8")
    (root / "toy.toml").write_text(
        'task = "toy"\n[weighted]\ndensity = "table:0.5"\n'
        "[train]\nsteps = 2\nbatch_size = 8\nthreads = 1\n[optim]\nlr = 0.05\n",
        "utf-8",
    )
    meta = {
        "task": "toy",
        "step": 3,
        "config": {"train": {"steps": 5}},
        "description": {"method": "weighted", "model": {"name": "toy"}, "density": "table:0.5"},
    }
    (root / "ckpt").mkdir()
    save_checkpoint(root / "ckpt" / "good.safetensors", build_toy("weighted", "table:0.5"), meta)
    return root


def sidecar_edited(ws: Path, name: str, edit: Callable[[dict], Any]) -> Path:
    """A copy of the good checkpoint with ``edit`` applied to its sidecar."""
    folder = ws / "edited"
    folder.mkdir(exist_ok=True)
    src = ws / "ckpt" / "good.safetensors"
    (folder / f"{name}.safetensors").write_bytes(src.read_bytes())
    sidecar = json.loads(src.with_suffix(".json").read_text("utf-8"))
    edit(sidecar)
    (folder / f"{name}.json").write_text(json.dumps(sidecar), "utf-8")
    return folder / f"{name}.safetensors"


def truncated(ws: Path) -> Path:
    path = sidecar_edited(ws, "truncated", lambda s: None)
    path.write_bytes(path.read_bytes()[:100])
    return path


CALLS: list[tuple[str, Callable[[Path], Any], type[BaseException], str]] = [
    (
        "config-missing",
        lambda ws: load_config(ws / "nope.toml"),
        FileNotFoundError,
        "does not exist",
    ),
    (
        "config-directory",
        lambda ws: load_config(ws / "dir.toml"),
        IsADirectoryError,
        "is a directory, not a TOML file",
    ),
    ("config-binary", lambda ws: load_config(ws / "binary.toml"), ValueError, "is not a text file"),
    (
        "config-bad-toml",
        lambda ws: load_config(ws / "broken.toml"),
        ValueError,
        "is not valid TOML",
    ),
    (
        "override-without-value",
        lambda ws: parse_override("train.steps"),
        ValueError,
        "must look like section.key=value",
    ),
    (
        "override-empty-key",
        lambda ws: parse_override("train..steps=3"),
        ValueError,
        "must look like section.key=value",
    ),
    (
        "batch-zero",
        lambda ws: validate({"train": {"batch_size": 0}}),
        ValueError,
        "train.batch_size must be ≥ 1",
    ),
    (
        "batch-negative",
        lambda ws: validate({"train": {"batch_size": -8}}),
        ValueError,
        "train.batch_size must be ≥ 1",
    ),
    (
        "batch-float",
        lambda ws: validate({"train": {"batch_size": 8.0}}),
        ValueError,
        "train.batch_size must be int",
    ),
    (
        "steps-zero",
        lambda ws: validate({"train": {"steps": 0}}),
        ValueError,
        "train.steps must be ≥ 1",
    ),
    (
        "steps-bool",
        lambda ws: validate({"train": {"steps": True}}),
        ValueError,
        "train.steps must be int",
    ),
    (
        "keep-zero",
        lambda ws: validate({"train": {"keep_checkpoints": 0}}),
        ValueError,
        "train.keep_checkpoints must be ≥ 1",
    ),
    (
        "grad-clip-nan",
        lambda ws: validate({"train": {"grad_clip": float("nan")}}),
        ValueError,
        "train.grad_clip",
    ),
    ("lr-negative", lambda ws: validate({"optim": {"lr": -1.0}}), ValueError, "optim.lr"),
    (
        "unknown-train-key",
        lambda ws: validate({"train": {"stpes": 3}}),
        ValueError,
        "unknown config key train.stpes",
    ),
    (
        "section-not-table",
        lambda ws: validate({"train": 3}),
        ValueError,
        "config section [train] must be a table",
    ),
    (
        "device-unknown",
        lambda ws: resolve_device("tpu", "--device"),
        ValueError,
        "--device 'tpu' is not a device name",
    ),
    (
        "device-not-string",
        lambda ws: resolve_device(0, "--device"),
        TypeError,
        "--device must be a string",
    ),
    (
        "out-is-a-file",
        lambda ws: check_output_folder(ws / "file.txt"),
        NotADirectoryError,
        "is an existing file, not a folder",
    ),
    (
        "out-under-a-file",
        lambda ws: check_output_folder(ws / "file.txt" / "run"),
        NotADirectoryError,
        "is an existing file, not a folder",
    ),
    (
        "model-missing",
        lambda ws: load_model(ws / "nope.safetensors"),
        FileNotFoundError,
        "does not exist",
    ),
    (
        "model-directory",
        lambda ws: load_model(ws / "dir.toml"),
        CheckpointError,
        "is a directory; expected a .safetensors checkpoint or a run folder",
    ),
    (
        "model-not-a-checkpoint",
        lambda ws: load_model(ws / "file.txt"),
        CheckpointError,
        "is not a checkpoint",
    ),
    (
        "run-folder-without-checkpoints",
        lambda ws: load_model(_empty_run(ws)),
        FileNotFoundError,
        "holds no complete checkpoint",
    ),
    (
        "safetensors-truncated",
        lambda ws: load_checkpoint(truncated(ws)),
        CheckpointError,
        "truncated.safetensors' is damaged or truncated",
    ),
    ("sidecar-not-json", lambda ws: load_checkpoint(_not_json(ws)), CheckpointError, "is not JSON"),
    (
        "sidecar-other-format",
        lambda ws: load_checkpoint(sidecar_edited(ws, "fmt", lambda s: s.update(format="other"))),
        CheckpointError,
        "is not an ndwconv checkpoint",
    ),
    (
        "sidecar-newer-format",
        lambda ws: load_checkpoint(
            sidecar_edited(ws, "v9", lambda s: s.update(format="ndwconv.checkpoint/9"))
        ),
        CheckpointError,
        "a newer ndwconv wrote it",
    ),
    (
        "sidecar-no-task",
        lambda ws: load_checkpoint(sidecar_edited(ws, "notask", lambda s: s.pop("task"))),
        CheckpointError,
        "field 'task' is missing",
    ),
    (
        "sidecar-step-string",
        lambda ws: load_checkpoint(sidecar_edited(ws, "sstr", lambda s: s.update(step="3"))),
        CheckpointError,
        "field 'step' must be an integer ≥ 0, got '3'",
    ),
    (
        "sidecar-step-negative",
        lambda ws: load_checkpoint(sidecar_edited(ws, "sneg", lambda s: s.update(step=-2))),
        CheckpointError,
        "field 'step' must be an integer ≥ 0, got -2",
    ),
    (
        "sidecar-step-beyond-run",
        lambda ws: load_checkpoint(sidecar_edited(ws, "sbig", lambda s: s.update(step=50))),
        CheckpointError,
        "field 'step' (50) is beyond the run's length",
    ),
    (
        "sidecar-densities-not-strings",
        lambda ws: load_checkpoint(
            sidecar_edited(ws, "dens", lambda s: s.update(densities={"0": 0.5}))
        ),
        CheckpointError,
        "field 'densities' must be an object",
    ),
    (
        "sidecar-history-no-step",
        lambda ws: load_checkpoint(
            sidecar_edited(ws, "hist", lambda s: s.update(history=[{"accuracy": 1}]))
        ),
        CheckpointError,
        "field 'history' must be a list",
    ),
    (
        "sidecar-unknown-field",
        lambda ws: load_checkpoint(sidecar_edited(ws, "unk", lambda s: s.update(surprise=1))),
        CheckpointError,
        "unknown field(s) 'surprise'",
    ),
    (
        "sidecar-method-null",
        lambda ws: load_model(
            sidecar_edited(ws, "mnull", lambda s: s["description"].update(method=None))
        ),
        CheckpointError,
        "field 'description.method' must be one of standard, weighted",
    ),
    (
        "sidecar-density-edited",
        lambda ws: load_model(
            sidecar_edited(ws, "dedit", lambda s: s["description"].update(density="table:0.8"))
        ),
        CheckpointError,
        "field 'densities' records 'table:0.5' for layer '0'",
    ),
    (
        "sidecar-wrong-task",
        lambda ws: load_model(ws / "ckpt" / "good.json", task="denoise"),
        CheckpointError,
        "is a 'toy' checkpoint, not denoise",
    ),
    (
        "sidecar-unregistered-task",
        lambda ws: load_model(sidecar_edited(ws, "task", lambda s: s.update(task="nosuch"))),
        ValueError,
        "unknown task 'nosuch'",
    ),
]


def _empty_run(ws: Path) -> Path:
    (ws / "empty-run" / "checkpoints").mkdir(parents=True, exist_ok=True)
    return ws / "empty-run"


def _not_json(ws: Path) -> Path:
    path = sidecar_edited(ws, "notjson", lambda s: None)
    path.with_suffix(".json").write_text("{not json", "utf-8")
    return path


@pytest.mark.parametrize(
    ("make", "error", "fragment"), [r[1:] for r in CALLS], ids=[r[0] for r in CALLS]
)
def test_bad_input_raises_a_named_error(ws, make, error, fragment):
    with pytest.raises(error) as raised:
        make(ws)
    assert fragment in str(raised.value)


# Command-line rows: argv (with {ws} for the folder of bad inputs), exit code, fragment.
ARGV: list[tuple[str, list[str], int, str]] = [
    (
        "out-is-a-file",
        ["train", "toy", "--config", "{ws}/toy.toml", "-o", "{ws}/file.txt"],
        1,
        "is an existing file, not a folder",
    ),
    (
        "steps-not-int",
        ["train", "toy", "--config", "{ws}/toy.toml", "--steps", "abc"],
        2,
        "invalid int value",
    ),
    (
        "steps-zero",
        ["train", "toy", "--config", "{ws}/toy.toml", "--steps", "0"],
        1,
        "train.steps must be ≥ 1",
    ),
    (
        "batch-negative",
        ["train", "toy", "--config", "{ws}/toy.toml", "--set", "train.batch_size=-3"],
        1,
        "train.batch_size must be ≥ 1",
    ),
    (
        "set-without-value",
        ["train", "toy", "--config", "{ws}/toy.toml", "--set", "steps"],
        1,
        "must look like section.key=value",
    ),
    (
        "set-conflicts-with-steps",
        ["train", "toy", "--config", "{ws}/toy.toml", "--steps", "3", "--set", "train.steps=abc"],
        1,
        "train.steps is given twice",
    ),
    (
        "device-bad-index",
        ["train", "toy", "--config", "{ws}/toy.toml", "--device", "cuda:x"],
        1,
        "--device 'cuda:x'",
    ),
    ("config-directory", ["train", "toy", "--config", "{ws}/dir.toml"], 1, "is a directory"),
    (
        "config-binary",
        ["compare", "toy", "--config", "{ws}/binary.toml"],
        1,
        "binary.toml' is not a text file",
    ),
    (
        "seeds-zero",
        ["compare", "toy", "--config", "{ws}/toy.toml", "--seeds", "0"],
        1,
        "--seeds must be an integer ≥ 1",
    ),
    (
        "resume-nothing",
        ["train", "toy", "--config", "{ws}/toy.toml", "--resume", "-o", "{ws}/no-run"],
        1,
        "resume: no checkpoint",
    ),
    ("unknown-flag", ["train", "toy", "--stesp", "3"], 2, "unrecognized arguments"),
    ("no-task", ["train"], 1, "name the task"),
]


@pytest.mark.parametrize(
    ("argv", "code", "fragment"), [r[1:] for r in ARGV], ids=[r[0] for r in ARGV]
)
def test_bad_command_line_is_one_line_or_a_usage_error(ws, capsys, argv, code, fragment):
    argv = [a.replace("{ws}", str(ws)) for a in argv]
    assert main([*argv, "--quiet"] if argv[1:] else argv) == code
    err = capsys.readouterr().err
    assert fragment in err, err
    assert "Traceback" not in err
    if code == 1:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ndwconv: error: "), err
