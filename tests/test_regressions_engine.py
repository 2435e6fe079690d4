"""Regression tests of the engine: checkpoint sidecars are checked against their schema
and the model they describe, run folders have one writer, extending a run, overrides
that are always validated, and outputs checked before any work."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("safetensors", reason="checkpoints need ndwconv[recipes]")

from test_engine import TOY, ToyTask, toy_config, toy_registered  # noqa: F401

from ndwconv.cli import main
from ndwconv.recipes.engine import fit, load_checkpoint
from ndwconv.recipes.engine.checkpoint import (
    CheckpointError,
    prune_checkpoints,
    save_checkpoint,
)
from ndwconv.recipes.engine.lock import LOCK_NAME, FolderInUseError, RunLock
from ndwconv.recipes.engine.log import read_log
from ndwconv.recipes.tasks import load_model

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 6-step weighted toy run; tests copy its checkpoint before editing."""
    out = tmp_path_factory.mktemp("finished")
    cfg = toy_config(steps=6)
    from ndwconv.recipes.tasks import register_task, unregister_task

    register_task(TOY, replace=True)
    try:
        fit(ToyTask(cfg, "weighted"), cfg, out, progress=False)
    finally:
        unregister_task("toy")
    return out


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of a run folder (checkpoints and log)."""
    (dst / "checkpoints").mkdir(parents=True)
    for p in (src / "checkpoints").iterdir():
        (dst / "checkpoints" / p.name).write_bytes(p.read_bytes())
    (dst / "metrics.jsonl").write_bytes((src / "metrics.jsonl").read_bytes())
    return dst


def edit_sidecar(run: Path, edit) -> Path:
    """Apply ``edit(sidecar)`` to the run's newest sidecar; return its tensor file."""
    (sidecar_path,) = sorted((run / "checkpoints").glob("step-*.json"))[-1:]
    sidecar = json.loads(sidecar_path.read_text("utf-8"))
    edit(sidecar)
    sidecar_path.write_text(json.dumps(sidecar), "utf-8")
    return sidecar_path.with_suffix(".safetensors")


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("ndwconv: error: "), err
    return err[0]


# ---------------------------------------------------------------------------------------
# Sidecars: schema and cross-check against the rebuilt model
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [None, "bogus", ""])
def test_sidecar_with_unknown_or_null_method_is_refused_not_loaded_as_standard(
    finished, tmp_path, method
):
    ckpt = edit_sidecar(
        copy_run(finished, tmp_path), lambda s: s["description"].update(method=method)
    )
    with pytest.raises(CheckpointError, match=r"'description\.method'"):
        load_model(ckpt)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("method", "standard", "field 'densities' records other weighted layers"),
        ("density", "table:0.9", "field 'densities' records 'table:0.5' for layer '0'"),
    ],
)
def test_sidecar_with_edited_method_or_density_is_refused_naming_densities(
    finished, tmp_path, field, value, fragment
):
    ckpt = edit_sidecar(
        copy_run(finished, tmp_path), lambda s: s["description"].update({field: value})
    )
    with pytest.raises(CheckpointError, match=fragment):
        load_model(ckpt)


def test_sidecar_step_beyond_the_run_length_is_refused_not_resumed_as_done(finished, tmp_path):
    run = copy_run(finished, tmp_path)
    old = run / "checkpoints" / "step-00000006.json"
    sidecar = json.loads(old.read_text("utf-8"))
    sidecar["step"] = 1000
    sidecar["scheduler"]["last_epoch"] = 1000
    new = run / "checkpoints" / "step-00001000.json"
    new.write_text(json.dumps(sidecar), "utf-8")
    old.with_suffix(".safetensors").rename(new.with_suffix(".safetensors"))
    old.unlink()
    with pytest.raises(CheckpointError, match=r"field 'step' \(1000\) is beyond the run"):
        load_checkpoint(new)
    cfg = toy_config(steps=6)
    with pytest.raises(CheckpointError, match="field 'step'"):
        fit(ToyTask(cfg, "weighted"), cfg, run, resume=True, progress=False)


def test_sidecar_step_that_contradicts_its_file_name_is_refused(finished, tmp_path):
    ckpt = edit_sidecar(copy_run(finished, tmp_path), lambda s: s.update(step=3))
    with pytest.raises(CheckpointError, match=r"field 'step' is 3 but the file is that of step 6"):
        load_checkpoint(ckpt)


def test_sidecar_unknown_scheduler_key_is_refused_not_accepted_and_written_back(finished, tmp_path):
    run = copy_run(finished, tmp_path)
    edit_sidecar(run, lambda s: s["scheduler"].update(bogus=1))
    cfg = toy_config(steps=8)
    with pytest.raises(ValueError, match=r"unknown key\(s\) scheduler\.bogus"):
        fit(ToyTask(cfg, "weighted"), cfg, run, resume=True, progress=False)
    # nothing was written back: the sidecar is as it was edited, and no new checkpoint
    assert sorted(p.name for p in (run / "checkpoints").glob("*.json")) == ["step-00000006.json"]


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda s: s.pop("scheduler"), "has no field 'scheduler'"),
        (lambda s: s.pop("optimizer"), "has no field 'optimizer'"),
        (lambda s: s["optimizer"]["state"].update(x={"step": 1}), "field 'optimizer' does not fit"),
        (lambda s: s["scheduler"].update(last_epoch=2), "scheduler.last_epoch (2) is not"),
        (lambda s: s["scheduler"].update(base_lrs="0.05"), "scheduler.base_lrs must be 1 number"),
    ],
    ids=["no-scheduler", "no-optimizer", "optimizer-index", "last-epoch", "base-lrs"],
)
def test_resume_from_a_sidecar_with_a_bad_trainer_state_names_the_field(
    finished, tmp_path, edit, fragment
):
    run = copy_run(finished, tmp_path)
    edit_sidecar(run, edit)
    cfg = toy_config(steps=6)
    with pytest.raises(ValueError, match=re.escape(fragment)):
        fit(ToyTask(cfg, "weighted"), cfg, run, resume=True, progress=False)
    assert sorted(p.name for p in (run / "checkpoints").glob("*.json")) == ["step-00000006.json"]


def test_log_lines_without_an_integer_step_are_skipped(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text(
        '{"step": 1, "loss": 1.0}\n{"loss": 2.0}\n{"step": "2", "eval": {}}\n[1]\n'
        '{"step": 3, "eval": {"a": 1.0}}\n{"step": 4, "lo',
        "utf-8",
    )
    train, evals = read_log(log)
    assert train == [{"step": 1, "loss": 1.0}] and evals == [{"step": 3, "a": 1.0}]


@pytest.mark.parametrize("field", ["task", "step", "description", "densities"])
def test_sidecar_missing_field_is_named(finished, tmp_path, field):
    ckpt = edit_sidecar(copy_run(finished, tmp_path), lambda s: s.pop(field))
    with pytest.raises(CheckpointError, match=f"field '{field}' is missing"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("step", ["6", 6.0, True, -1, None])
def test_sidecar_wrong_typed_or_negative_step_is_named(finished, tmp_path, step):
    ckpt = edit_sidecar(copy_run(finished, tmp_path), lambda s: s.update(step=step))
    with pytest.raises(CheckpointError, match="field 'step' must be an integer ≥ 0"):
        load_checkpoint(ckpt)


def test_sidecar_unknown_field_and_newer_format_are_refused(finished, tmp_path):
    ckpt = edit_sidecar(copy_run(finished, tmp_path / "a"), lambda s: s.update(extra=1))
    with pytest.raises(CheckpointError, match=r"unknown field\(s\) 'extra'"):
        load_checkpoint(ckpt)
    ckpt = edit_sidecar(
        copy_run(finished, tmp_path / "b"), lambda s: s.update(format="ndwconv.checkpoint/9")
    )
    with pytest.raises(CheckpointError, match="newer ndwconv"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_safetensors_names_the_file(finished, tmp_path, keep):
    run = copy_run(finished, tmp_path)
    ckpt = run / "checkpoints" / "step-00000006.safetensors"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="damaged or truncated") as err:
        load_model(ckpt)
    assert str(ckpt) in str(err.value)


def test_older_sidecar_with_only_the_required_fields_still_loads(finished, tmp_path):
    """A valid sidecar of format 1 without the optional fields (config, versions, …)."""
    keep = {"format", "task", "step", "description", "densities"}
    ckpt = edit_sidecar(
        copy_run(finished, tmp_path), lambda s: [s.pop(k) for k in list(s) if k not in keep]
    )
    model = load_model(ckpt)
    reference = load_model(finished / "checkpoints" / "step-00000006.safetensors")
    x = torch.randn(4, 1, 12)
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


@pytest.mark.parametrize("freeze", [None, 2], ids=["learned", "learn-then-freeze"])
def test_learned_density_checkpoint_loads_with_its_trained_or_frozen_densities(tmp_path, freeze):
    from ndwconv.recipes.engine import FreezeDensities

    cfg = toy_config(steps=4)
    cfg["weighted"]["density"] = "learned:0.5"
    cfg["optim"]["density_lr"] = 0.5
    hooks = () if freeze is None else (FreezeDensities(freeze),)
    result = fit(ToyTask(cfg, "weighted"), cfg, tmp_path, progress=False, hooks=hooks)
    _, sidecar = load_checkpoint(result.checkpoint)
    assert sidecar["densities"]["0"] != "learned:axes=0.5"  # the densities did move
    model = load_model(result.checkpoint)
    x = torch.randn(4, 1, 12)
    torch.testing.assert_close(model(x), result.model(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("key", "value"),
    [("width", 10**6), ("depth", 10**5), ("channels", 10**4), ("kernel_size", 999), ("width", -3)],
)
def test_sidecar_asking_for_a_huge_model_is_refused_before_allocating(tmp_path, key, value):
    from ndwconv.recipes.models import DnCNN

    model = DnCNN(channels=1, depth=3, width=4)
    meta = {
        "task": "denoise",
        "step": 0,
        "description": {
            "method": "standard",
            "model": {"name": "dncnn", "depth": 3, "width": 4},
            "density": None,
        },
    }
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, model, meta, rng=False)
    sidecar = json.loads(path.with_suffix(".json").read_text("utf-8"))
    sidecar["description"]["model"][key] = value
    path.with_suffix(".json").write_text(json.dumps(sidecar), "utf-8")
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=f"model.{key} = {value} is outside"):
        load_model(path)
    assert time.perf_counter() - start < 2.0


# ---------------------------------------------------------------------------------------
# load_model / --model / --resume given a folder or a non-checkpoint
# ---------------------------------------------------------------------------------------


def test_load_model_on_a_folder_says_it_is_a_directory_not_a_missing_sidecar(tmp_path):
    with pytest.raises(CheckpointError, match=r"is a directory; expected a \.safetensors") as err:
        load_model(tmp_path)
    assert ".json" not in str(err.value)


def test_load_model_on_a_run_folder_loads_its_newest_checkpoint(finished):
    model = load_model(finished)
    reference = load_model(finished / "checkpoints" / "step-00000006.json")
    x = torch.randn(4, 1, 12)
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    load_model(finished / "checkpoints")  # the checkpoints/ folder itself


def test_load_model_on_a_non_checkpoint_file_says_so(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello", "utf-8")
    with pytest.raises(CheckpointError, match=r"is not a checkpoint: expected NAME\.safetensors"):
        load_model(other)


# ---------------------------------------------------------------------------------------
# The command line: config files, overrides, output folders
# ---------------------------------------------------------------------------------------


def toy_toml(path: Path, steps: int = 4) -> Path:
    path.write_text(
        'task = "toy"\n[weighted]\ndensity = "table:0.5"\n'
        f"[train]\nsteps = {steps}\nbatch_size = 8\nthreads = 1\nlog_every = 1\n"
        '[optim]\nlr = 0.05\n[schedule]\nname = "cosine"\n',
        "utf-8",
    )
    return path


def test_config_that_is_a_directory_is_reported_as_a_directory(tmp_path, capsys):
    folder = tmp_path / "cfg.toml"
    folder.mkdir()
    code = main(["train", "toy", "--config", str(folder), "--out", str(tmp_path / "run")])
    assert code == 1
    line = one_line_error(capsys)
    assert "is a directory" in line and "no such file" not in line.lower()


def test_builtin_config_name_is_not_shadowed_by_a_folder_of_that_name(tmp_path, monkeypatch):
    from ndwconv.recipes.engine.config import load_config

    (tmp_path / "quick").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_config("quick")["source"] == "builtin:quick"


def test_config_that_is_a_binary_file_names_the_file(tmp_path, capsys):
    binary = tmp_path / "model.toml"
    binary.write_bytes(bytes(range(256)) * 4)
    code = main(["train", "toy", "--config", str(binary), "--out", str(tmp_path / "run")])
    assert code == 1
    line = one_line_error(capsys)
    assert str(binary) in line and "not a text file" in line
    assert "UnicodeDecodeError" not in line


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--steps", "3", "--set", "train.steps=abc"], "train.steps is given twice"),
        (["--steps", "3", "--set", "train.steps=5"], "train.steps is given twice"),
        (["--seed", "1", "--set", "train.seed=x"], "train.seed is given twice"),
        (["--device", "cpu", "--set", "train.device=tpu"], "train.device is given twice"),
        (
            ["--density", "table:0.5", "--set", "weighted.density=nosuch"],
            "weighted.density is given twice",
        ),
        (["--device", "tpu"], "--device 'tpu' is not a device name"),
        (["--set", "train.steps=abc"], "train.steps must be int"),
        (["--set", "train.steps=abc", "--set", "train.steps=3"], "train.steps must be int"),
        (
            ["--set", "train.batch_size=-1", "--set", "train.batch_size=8"],
            "train.batch_size must be ≥ 1",
        ),
    ],
)
def test_set_override_is_validated_when_a_shorthand_flag_is_also_given(
    tmp_path, capsys, flags, fragment
):
    config = toy_toml(tmp_path / "toy.toml")
    code = main(
        ["train", "toy", "--config", str(config), *flags, "--quiet", "--out", str(tmp_path / "run")]
    )
    assert code == 1
    assert fragment in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_compare_set_seeds_is_validated_when_seeds_is_also_given(tmp_path, capsys):
    config = toy_toml(tmp_path / "toy.toml")
    code = main(
        [
            "compare",
            "toy",
            "--config",
            str(config),
            "--seeds",
            "2",
            "--set",
            "compare.seeds=abc",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 1
    assert "compare.seeds is given twice" in one_line_error(capsys)


@pytest.mark.parametrize("command", ["train", "compare"])
@pytest.mark.parametrize("flag", ["-o", "--out"])
def test_out_pointing_at_an_existing_file_is_refused_before_any_work(
    tmp_path, capsys, monkeypatch, command, flag
):
    config = toy_toml(tmp_path / "toy.toml")
    target = tmp_path / "results.txt"
    target.write_text("keep me", "utf-8")

    def no_work(*args, **kwargs):
        raise AssertionError("data or model built before the output folder was checked")

    import test_engine

    monkeypatch.setattr(ToyTask, "__init__", no_work)
    monkeypatch.setattr(test_engine, "build_toy", no_work)
    code = main([command, "toy", "--config", str(config), "--quiet", flag, str(target)])
    assert code == 1
    line = one_line_error(capsys)
    assert "is an existing file, not a folder" in line and str(target) in line
    assert target.read_text("utf-8") == "keep me"


def test_debug_shows_the_traceback_of_a_train_error(tmp_path, capsys):
    config = toy_toml(tmp_path / "toy.toml")
    argv = [
        "train",
        "toy",
        "--config",
        str(config),
        "--set",
        "train.steps=abc",
        "--out",
        str(tmp_path / "run"),
    ]
    with pytest.raises(ValueError, match=r"train\.steps must be int"):
        main(["--debug", *argv])
    proc = subprocess.run(
        [sys.executable, "-c", _TOY_MAIN, "--debug", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr


_TOY_MAIN = textwrap.dedent(
    f"""
    import sys
    sys.path.insert(0, {str(TESTS)!r})
    from test_engine import TOY
    from ndwconv.recipes.tasks import register_task
    from ndwconv.cli import main
    register_task(TOY, replace=True)
    try:
        sys.exit(main(sys.argv[1:]))
    except BaseException:
        import traceback
        traceback.print_exc()
        sys.exit(1)
    """
)


# ---------------------------------------------------------------------------------------
# Extending a run with --resume --steps
# ---------------------------------------------------------------------------------------


def test_resume_to_more_steps_extends_a_finished_run(tmp_path, capsys):
    config = toy_toml(tmp_path / "toy.toml", steps=4)
    out = tmp_path / "run"
    base = ["train", "toy", "--config", str(config), "--quiet", "-o", str(out)]
    assert main(base) == 0
    assert main([*base, "--resume", "--steps", "7"]) == 0
    capsys.readouterr()
    train_log, evals = read_log(out / "metrics.jsonl")
    assert [r["step"] for r in train_log] == list(range(1, 8))  # each step logged once
    assert [e["step"] for e in evals] == [4, 7]
    _, sidecar = load_checkpoint(out / "checkpoints" / "step-00000007.json")
    assert sidecar["step"] == 7 and sidecar["config"]["train"]["steps"] == 7
    assert sidecar["scheduler"]["T_max"] == 7
    # the schedule is laid out for the new total from step 4 on: the cosine rate of a
    # run planned for 7 steps (lr 0.05, min 0), as the rate each logged step used
    expected = [0.05 * (1 + math.cos(math.pi * s / 7)) / 2 for s in range(4, 7)]
    assert [r["lr"] for r in train_log[4:]] == pytest.approx(expected, rel=1e-9)
    model = load_model(out)
    assert model is not None


def test_resume_to_fewer_steps_than_the_checkpoint_is_a_clear_error(tmp_path, capsys):
    config = toy_toml(tmp_path / "toy.toml", steps=4)
    out = tmp_path / "run"
    base = ["train", "toy", "--config", str(config), "--quiet", "--out", str(out)]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "--resume", "--steps", "2"]) == 1
    line = one_line_error(capsys)
    assert "train.steps (2) is below the step of the checkpoint" in line
    assert "step-00000004" in line


# ---------------------------------------------------------------------------------------
# One writer per run folder
# ---------------------------------------------------------------------------------------

_SLOW_RUN = textwrap.dedent(
    f"""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {str(TESTS)!r})
    from test_engine import TOY, ToyTask, toy_config
    from ndwconv.recipes.engine import fit
    from ndwconv.recipes.tasks import register_task

    class Slow:
        def __init__(self, dataset, started):
            self.dataset, self.started = dataset, started
        def __getitem__(self, i):
            self.started.touch()
            time.sleep(0.03)
            return self.dataset[i]

    register_task(TOY, replace=True)
    out, started = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = toy_config(steps=12, log_every=1, checkpoint_every=4)
    task = ToyTask(cfg, "weighted")
    task.dataset = Slow(task.dataset, started)
    fit(task, cfg, out, progress=False)
    """
)


def test_second_run_on_a_folder_in_use_is_refused_while_the_first_completes_intact(
    tmp_path, capsys
):
    out, started = tmp_path / "run", tmp_path / "started"
    first = subprocess.Popen(
        [sys.executable, "-c", _SLOW_RUN, str(out), str(started)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        config = toy_toml(tmp_path / "toy.toml", steps=12)
        for command in ("train", "compare"):
            code = main([command, "toy", "--config", str(config), "--quiet", "--out", str(out)])
            assert code == 1
            line = one_line_error(capsys)
            assert f"run folder {str(out)!r} is in use by another run" in line
            assert f"pid {first.pid}" in line
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
    train_log, evals = read_log(out / "metrics.jsonl")
    assert [r["step"] for r in train_log] == list(range(1, 13))
    assert [e["step"] for e in evals] == [12]
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == [
        "step-00000008.json",
        "step-00000008.safetensors",
        "step-00000012.json",
        "step-00000012.safetensors",
    ]
    _, sidecar = load_checkpoint(out / "checkpoints" / "step-00000012.json")
    assert sidecar["step"] == 12 and [h["step"] for h in sidecar["history"]] == [12]
    assert not (out / LOCK_NAME).exists()


def test_sigterm_releases_the_run_lock_after_checkpointing(tmp_path):
    import signal

    out, started = tmp_path / "run", tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_RUN, str(out), str(started)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert (out / LOCK_NAME).exists()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert not (out / LOCK_NAME).exists()
    assert list((out / "checkpoints").glob("step-*.json"))  # stopped with a checkpoint


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_lock_of_a_killed_process_is_taken_over_with_a_message(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    pid = _dead_pid()
    (out / LOCK_NAME).write_text(
        json.dumps(
            {
                "pid": pid,
                "host": socket.gethostname(),
                "command": "ndwconv train toy",
                "started": "2020-01-01T00:00:00",
            }
        ),
        "utf-8",
    )
    cfg = toy_config(steps=2)
    result = fit(ToyTask(cfg, "weighted"), cfg, out, progress=False)
    assert result.step == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"ndwconv: taking over the stale lock of {str(out)!r} (pid {pid}, "
        "`ndwconv train toy`, started 2020-01-01T00:00:00, no longer running)"
    ]
    assert not (out / LOCK_NAME).exists()


def test_lock_of_a_live_process_is_not_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(
        json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "command": "x"}), "utf-8"
    )
    with pytest.raises(FolderInUseError, match=f"pid {os.getppid()}"):
        RunLock(out).acquire()
    assert (out / LOCK_NAME).exists()


def test_run_lock_is_released_on_keyboard_interrupt(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt), RunLock(out):
        assert (out / LOCK_NAME).exists()
        raise KeyboardInterrupt
    assert not out.exists()  # created by the lock and left empty: removed


def test_prune_checkpoints_orders_by_step_not_by_name(tmp_path):
    for step in (99_999_999, 100_000_000, 100_000_001):
        for suffix in (".json", ".safetensors"):
            (tmp_path / f"step-{step:08d}{suffix}").write_text("x")
    prune_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "step-100000000.json",
        "step-100000001.json",
    ]


def test_resumed_run_removes_temporaries_a_killed_run_left_in_its_folder(finished, tmp_path):
    """A checkpoint written as ``step-N`` is never written again under that name, so a
    killed write's temporary would survive every later run unless the run clears it."""
    run = copy_run(finished, tmp_path / "run")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname())
    stale = [
        run / "checkpoints" / f".step-00000003.safetensors.ndwtmp-{host}-{dead.pid}-ab12cd34.tmp",
        run / f".metrics.jsonl.ndwtmp-{host}-{dead.pid}-ef56gh78.tmp",
    ]
    kept = [
        run / "checkpoints" / f".step-00000003.safetensors.ndwtmp-{host}-{os.getpid()}-live.tmp",
        run / "notes.txt",
    ]
    for path in stale + kept:
        path.write_bytes(b"partial")
    cfg = toy_config(steps=8)
    from ndwconv.recipes.tasks import register_task, unregister_task

    register_task(TOY, replace=True)
    try:
        fit(ToyTask(cfg, "weighted"), cfg, run, resume=True, progress=False)
    finally:
        unregister_task("toy")
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)
