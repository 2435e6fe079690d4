"""The recipes' trainer, checkpoints, configuration and the denoising comparison.

Everything runs on a tiny DnCNN and a generated folder of images, so each training run
takes a second or two; the distributed test starts two gloo processes with torchrun.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

pytest.importorskip("safetensors")
pytest.importorskip("skimage")
PIL = pytest.importorskip("PIL.Image")

import ndwconv  # noqa: E402
from ndwconv.adapters.atomic import atomic_write  # noqa: E402
from ndwconv.cli import main  # noqa: E402
from ndwconv.recipes import engine as tr  # noqa: E402
from ndwconv.recipes.engine import LOSSES, compare, trainer  # noqa: E402
from ndwconv.recipes.engine import log as training_log  # noqa: E402
from ndwconv.recipes.engine.config import (  # noqa: E402
    apply_overrides,
    builtin_configs,
    load_config,
    parse_override,
)
from ndwconv.recipes.tasks import get_task  # noqa: E402
from ndwconv.recipes.tasks.denoise import DenoiseTask, load_denoiser  # noqa: E402
from ndwconv.recipes.tasks.denoise.config import check_config  # noqa: E402

DENOISE = get_task("denoise")

STEPS = 40
HALF = 20
# a model that draws from the global RNG while training
NAFNET_DROPOUT = {
    "name": "nafnet",
    "width": 4,
    "enc_blocks": [1],
    "middle_blocks": 1,
    "dec_blocks": [1],
    "dropout": 0.3,
}


def tiny_config(**train: object) -> dict:
    """A DnCNN of three 8-channel layers on 16×16 patches, batch 4."""
    return {
        "name": "tiny",
        "model": {"name": "dncnn", "ndim": 2, "depth": 3, "width": 8, "batch_norm": True},
        "weighted": {"density": "table:0.5"},
        "data": {"train": "train", "validation": "val", "channels": 1, "patch_size": 16},
        "noise": {"sigma": 25},
        "optim": {"name": "adam", "lr": 1e-3},
        "schedule": {"name": "cosine", "min_lr": 1e-5},
        "train": {"steps": STEPS, "batch_size": 4, "log_every": 5, "seed": 3, **train},
        "eval": {"seed": 0},
    }


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Smooth random 8-bit images: 5 for training (48×40), 2 for validation (37×45)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for folder, count, shape in (("train", 5, (48, 40)), ("val", 2, (37, 45))):
        (root / folder).mkdir()
        for i in range(count):
            field = rng.normal(size=shape).cumsum(0).cumsum(1)
            field = (field - field.min()) / (np.ptp(field) + 1e-9) * 255
            PIL.fromarray(field.round().astype(np.uint8)).save(root / folder / f"im{i}.png")
    return root


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(builtin_configs()))
def test_every_builtin_config_is_valid(name):
    config = load_config(name)
    get_task(config.get("task", "denoise")).check_config(config)  # each config's own task
    tr.validate(config)
    assert config["description"], name


def test_overrides_are_toml_values_with_a_string_fallback():
    assert parse_override("train.steps=5") == (["train", "steps"], 5)
    assert parse_override("optim.lr=1e-4") == (["optim", "lr"], 1e-4)
    assert parse_override("noise.sigma=0-55") == (["noise", "sigma"], "0-55")
    assert parse_override('weighted.density="gaussian:1.2"')[1] == "gaussian:1.2"
    cfg = apply_overrides({"train": {"steps": 1}}, ["train.steps=7", "eval.tile=64"])
    assert cfg == {"train": {"steps": 7}, "eval": {"tile": 64}}
    with pytest.raises(ValueError, match=r"section\.key=value"):
        parse_override("steps")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.stpes=3", "unknown config key train.stpes"),
        ("train.steps=1.5", "train.steps must be int"),
        ("train.steps=0", "train.steps must be ≥ 1"),
        ("optim.name='rmsprop'", "optim.name must be one of"),
        ("schedule.name='multistep'", "schedule.milestones"),
        ("train.amp=1", "train.amp must be bool"),
    ],
)
def test_bad_trainer_config_names_the_key(override, fragment):
    with pytest.raises(ValueError, match=fragment):
        tr.validate(apply_overrides(tiny_config(), [override]))


def test_bad_task_config_names_the_key(data_root):
    with pytest.raises(ValueError, match="unknown config section"):
        check_config({**tiny_config(), "modle": {}})
    with pytest.raises(ValueError, match=r"data\.patch_size must be int"):
        check_config(apply_overrides(tiny_config(), ["data.patch_size='big'"]))
    with pytest.raises(ValueError, match="pass --data ROOT"):
        DenoiseTask(tiny_config())
    embedded = apply_overrides(
        tiny_config(), ["data.train='embedded:train'", "data.validation='embedded:validation'"]
    )
    with pytest.raises(ValueError, match="--data is given but"):
        DenoiseTask(embedded, data_root=data_root)
    with pytest.raises(FileNotFoundError, match=r"data\.validation"):
        DenoiseTask(apply_overrides(tiny_config(), ["data.validation='nope'"]), data_root=data_root)
    with pytest.raises(ValueError, match="density"):
        check_config(apply_overrides(tiny_config(), ["weighted.density='nosuch'"]))
    with pytest.raises(ValueError, match=r"train\.loss must be one of mse, l1, psnr"):
        check_config(apply_overrides(tiny_config(), ["train.loss='huber'"]))


def test_psnr_loss_is_minus_the_mean_per_sample_psnr():
    out, target = torch.rand(3, 1, 5, 5, dtype=torch.float64), torch.rand(3, 1, 5, 5)
    mse = ((out - target.double()) ** 2).mean(dim=(1, 2, 3)).numpy()
    expected = float(np.mean(10 * np.log10(mse)))  # = −mean PSNR for a peak of 1
    assert LOSSES["psnr"](out, target.double()).item() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------------
# Same start for both methods
# ---------------------------------------------------------------------------------------


def test_standard_and_weighted_start_from_the_same_weights(data_root):
    cfg = tiny_config()
    models = {}
    for method in ("standard", "weighted"):
        task = DenoiseTask(cfg, method, data_root)
        torch.manual_seed(cfg["train"]["seed"])
        models[method] = task.build_model()
    a, b = state(models["standard"]), state(models["weighted"])
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert sum(1 for _ in ndwconv.weighted_layers(models["weighted"])) == 3
    assert not any(True for _ in ndwconv.weighted_layers(models["standard"]))


# ---------------------------------------------------------------------------------------
# Checkpoints and resume
# ---------------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


class StopAt:
    """A dataset that raises once training reaches global sample ``limit``."""

    def __init__(self, dataset, limit: int):
        self.dataset, self.limit = dataset, limit

    def __getitem__(self, i: int):
        if i >= self.limit:
            raise Interrupted(f"stopped at sample {i}")
        return self.dataset[i]

    def __len__(self) -> int:
        return len(self.dataset)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
            "schedule": {"name": "multistep", "milestones": [30], "gamma": 0.5},
        },
        {"model": NAFNET_DROPOUT},
    ],
    ids=["adam-cosine", "sgd-multistep", "nafnet-dropout"],
)
def test_twenty_steps_then_resume_equals_forty_straight(tmp_path, data_root, options):
    cfg = {**tiny_config(), **options}
    straight = tr.fit(DenoiseTask(cfg, "weighted", data_root), cfg, tmp_path / "a", progress=False)

    task = DenoiseTask(cfg, "weighted", data_root)
    task.dataset = StopAt(task.dataset, HALF * cfg["train"]["batch_size"])
    with pytest.raises(Interrupted):
        tr.fit(task, cfg, tmp_path / "b", progress=False)
    saved = tr.latest_checkpoint(tmp_path / "b")
    assert saved is not None and saved.name == f"step-{HALF:08d}.safetensors"  # saved on exit

    resumed = tr.fit(
        DenoiseTask(cfg, "weighted", data_root), cfg, tmp_path / "b", resume=True, progress=False
    )
    assert resumed.step == straight.step == STEPS
    a, b = state(straight.model), state(resumed.model)
    for key in a:
        assert torch.equal(a[key], b[key]), key  # bit-identical, BN statistics included
    ta, _ = tr.load_checkpoint(straight.checkpoint)
    tb, _ = tr.load_checkpoint(resumed.checkpoint)
    optimizer_keys = [k for k in ta if k.startswith("optimizer.")]
    assert optimizer_keys
    for key in optimizer_keys:
        assert torch.equal(ta[key], tb[key]), key
    # the log of the resumed run has each step once
    train_log, _ = training_log.read_log(tmp_path / "b" / "metrics.jsonl")
    steps = [r["step"] for r in train_log]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS


class TerminateAt(StopAt):
    """A dataset that sends this process SIGTERM at global sample ``limit``."""

    def __getitem__(self, i: int):
        if i == self.limit:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.dataset[i]


def test_sigterm_stops_training_with_a_checkpoint(tmp_path, data_root):
    cfg = tiny_config(steps=10)
    task = DenoiseTask(cfg, "standard", data_root)
    task.dataset = TerminateAt(task.dataset, 6 * cfg["train"]["batch_size"])
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        tr.fit(task, cfg, tmp_path, progress=False)
    assert stopped.value.code == 128 + signal.SIGTERM
    # the signal came while the 7th step's samples were read: that step is finished first
    assert tr.latest_checkpoint(tmp_path).name == "step-00000007.safetensors"
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is restored


def test_a_signal_mid_step_stops_after_the_step_and_resumes_exactly(tmp_path, data_root):
    cfg = tiny_config(steps=10)
    straight = tr.fit(DenoiseTask(cfg, "weighted", data_root), cfg, tmp_path / "a", progress=False)
    updates = []

    def terminate_after_sixth_update(optimizer, args, kwargs):
        updates.append(1)
        if len(updates) == 6:  # between optimizer.step() and the step counter
            os.kill(os.getpid(), signal.SIGTERM)

    hook = register_optimizer_step_post_hook(terminate_after_sixth_update)
    try:
        with pytest.raises(SystemExit):
            tr.fit(DenoiseTask(cfg, "weighted", data_root), cfg, tmp_path / "b", progress=False)
    finally:
        hook.remove()
    assert tr.latest_checkpoint(tmp_path / "b").name == "step-00000006.safetensors"
    resumed = tr.fit(
        DenoiseTask(cfg, "weighted", data_root), cfg, tmp_path / "b", resume=True, progress=False
    )
    a, b = state(straight.model), state(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_ignores_and_keeps_the_callers_global_rng(tmp_path, data_root):
    cfg = {**tiny_config(steps=6), "model": NAFNET_DROPOUT}
    results = []
    for i, prior in enumerate((1, 2)):
        torch.manual_seed(prior)
        before = torch.get_rng_state()
        task = DenoiseTask(cfg, "weighted", data_root)
        results.append(tr.fit(task, cfg, tmp_path / str(i), progress=False))
        assert torch.equal(torch.get_rng_state(), before)
    a, b = state(results[0].model), state(results[1].model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_torn_log_line_does_not_block_resume(tmp_path, data_root):
    cfg = tiny_config(steps=6, checkpoint_every=3)
    task = DenoiseTask(cfg, "standard", data_root)
    task.dataset = StopAt(task.dataset, 4 * cfg["train"]["batch_size"])
    with pytest.raises(Interrupted):
        tr.fit(task, cfg, tmp_path, progress=False)
    with (tmp_path / "metrics.jsonl").open("a") as log:
        log.write('{"step": 9, "lo')  # a process killed while writing
    resumed = tr.fit(DenoiseTask(cfg, "standard", data_root), cfg, tmp_path, resume=True)
    assert resumed.step == 6
    train_log, _ = training_log.read_log(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in train_log] == [5, 6]


def test_resume_refuses_a_changed_config_and_a_run_is_not_overwritten(tmp_path, data_root):
    cfg = tiny_config(steps=4)
    first = tr.fit(DenoiseTask(cfg, "standard", data_root), cfg, tmp_path, progress=False)
    with pytest.raises(FileExistsError, match="already holds a run"):
        tr.fit(DenoiseTask(cfg, "standard", data_root), cfg, tmp_path, progress=False)
    changed = apply_overrides(cfg, ["optim.lr=0.01"])
    with pytest.raises(ValueError, match=r"optim\.lr"):
        tr.fit(DenoiseTask(changed, "standard", data_root), changed, tmp_path, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        tr.fit(DenoiseTask(cfg, "standard", data_root), cfg, tmp_path / "new", resume=True)
    # only logging settings may change on resume; a finished run is just re-evaluated
    relog = apply_overrides(cfg, ["train.log_every=1", "compare.seeds=5", "eval.curve_images=1"])
    again = tr.fit(DenoiseTask(relog, "standard", data_root), relog, tmp_path, resume=True)
    assert again.step == 4
    assert again.train_seconds == first.train_seconds  # totals over the run, none added
    with pytest.raises(ValueError, match="method: 'standard' → 'weighted'"):
        tr.fit(DenoiseTask(cfg, "weighted", data_root), cfg, tmp_path, resume=True)
    with pytest.raises(ValueError, match="model"):
        wider = apply_overrides(cfg, ["model.width=16"])
        tr.fit(DenoiseTask(wider, "standard", data_root), wider, tmp_path, resume=True)


def test_checkpoint_files_load_without_code_and_rebuild_the_denoiser(tmp_path, data_root):
    cfg = tiny_config(steps=3)
    result = tr.fit(DenoiseTask(cfg, "weighted", data_root), cfg, tmp_path, progress=False)
    tensors, sidecar = tr.load_checkpoint(result.checkpoint.with_suffix(".json"))
    assert sidecar["format"] == tr.CHECKPOINT_FORMAT and sidecar["step"] == 3
    convs = [n for n, m in result.model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 and sidecar["densities"] == dict.fromkeys(convs, "table:0.5")
    assert sidecar["config"]["train"]["steps"] == 3
    assert tensors["rng.torch"].dtype == torch.uint8
    model = load_denoiser(result.checkpoint)
    x = torch.rand(1, 1, 21, 19)
    with torch.no_grad():
        assert torch.equal(model(x), result.model(x))

    result.checkpoint.with_suffix(".json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not an ndwconv checkpoint"):
        tr.load_checkpoint(result.checkpoint)
    result.checkpoint.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tr.load_checkpoint(result.checkpoint)
    assert tr.latest_checkpoint(tmp_path) is None  # a checkpoint without sidecar is incomplete


def test_only_the_newest_checkpoints_are_kept(tmp_path, data_root):
    cfg = tiny_config(steps=10, checkpoint_every=2, keep_checkpoints=2)
    tr.fit(DenoiseTask(cfg, "standard", data_root), cfg, tmp_path, progress=False)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == [
        "step-00000008.json",
        "step-00000008.safetensors",
        "step-00000010.json",
        "step-00000010.safetensors",
    ]
    assert not list(tmp_path.rglob("*.tmp"))


def test_step_indices_split_each_global_batch_between_ranks():
    whole = list(trainer.step_indices(5, 8))
    parts = [list(trainer.step_indices(5, 8, rank, 4)) for rank in range(4)]
    assert [i for part in parts for i in part] == whole == list(range(40, 48))
    with pytest.raises(ValueError, match="divisible"):
        trainer.step_indices(0, 6, 0, 4)


# ---------------------------------------------------------------------------------------
# Distributed: two gloo processes equal one process with the same global batch
# ---------------------------------------------------------------------------------------


def test_two_process_ddp_equals_single_process(tmp_path, data_root):
    cfg = tiny_config(steps=8, batch_size=8, log_every=4)
    cfg["model"]["batch_norm"] = False  # CPU has no synchronised batch norm
    config_file = tmp_path / "tiny.toml"
    config_file.write_text(_toml(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "-m",
        "ndwconv",
        "train",
        "denoise",
        "--config",
        str(config_file),
        "--data",
        str(data_root),
        "--out",
        str(tmp_path / "ddp"),
        "--method",
        "weighted",
        "--quiet",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]

    single = tr.fit(DenoiseTask(cfg, "weighted", data_root), cfg, tmp_path / "one", progress=False)
    ddp_tensors, ddp_meta = tr.load_checkpoint(tr.latest_checkpoint(tmp_path / "ddp"))
    assert ddp_meta["step"] == 8
    reference = single.model.state_dict()
    for key, value in reference.items():
        torch.testing.assert_close(ddp_tensors[f"model.{key}"], value, rtol=1e-4, atol=1e-5)
    # and the runs did train: the weights moved away from the initial ones
    initial = DenoiseTask(cfg, "weighted", data_root)
    torch.manual_seed(cfg["train"]["seed"])
    start = initial.build_model().state_dict()
    assert any(not torch.allclose(start[k], reference[k]) for k in reference)
    # only rank 0 wrote: one log with each step once
    train_log, _ = training_log.read_log(tmp_path / "ddp" / "metrics.jsonl")
    assert [r["step"] for r in train_log] == [4, 8]


def _toml(cfg: dict) -> str:
    tomli_w = pytest.importorskip("tomli_w")
    return tomli_w.dumps(cfg)


# ---------------------------------------------------------------------------------------
# compare: both methods, several seeds, the report files
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def comparison(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("compare")
    cfg = tiny_config(steps=6, eval_every=3)
    with pytest.raises(ValueError, match=r"compare sets train\.seed itself"):
        compare(DENOISE, cfg, seeds=[0, 1], out_dir=out, data=[data_root], progress=False)
    del cfg["train"]["seed"]
    return out, compare(DENOISE, cfg, seeds=[0, 1], out_dir=out, data=[data_root], progress=False)


def test_compare_writes_the_report_files(comparison):
    out, _ = comparison
    for name in ("results.json", "per_image.csv", "report.md", "figure.png"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["seeds"] == [0, 1]
    assert [(r["seed"], r["method"]) for r in on_disk["runs"]] == [
        (0, "standard"),
        (0, "weighted"),
        (1, "standard"),
        (1, "weighted"),
    ]
    report = (out / "report.md").read_text()
    assert "| weighted − standard |" in report and "seed spread" in report
    rows = (out / "per_image.csv").read_text().strip().splitlines()
    assert rows[0].startswith("seed,method,image,psnr,ssim")
    assert len(rows) == 1 + 2 * 2 * 2  # seeds × methods × validation images
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_summary_matches_the_per_image_scores(comparison, data_root):
    _, results = comparison
    for method in ("standard", "weighted"):
        per_run = [
            np.mean(
                [
                    r["psnr"]
                    for r in results["per_item"]
                    if r["method"] == method and r["seed"] == seed
                ]
            )
            for seed in (0, 1)
        ]
        assert results["summary"][method]["psnr"] == pytest.approx(np.mean(per_run))
        assert results["summary"][method]["psnr_std"] == pytest.approx(np.std(per_run, ddof=1))
    # the noisy input's PSNR, recomputed here from the validation images and σ
    task = DenoiseTask(tiny_config(), "standard", data_root)
    expected = []
    for _, clean, noisy in task.validation:
        err = np.clip(noisy[0].double().numpy() * 255, 0, 255) - clean.astype(np.float64)
        expected.append(10 * math.log10(255**2 / np.mean(err**2)))
    noisy_input = results["summary"]["baselines"]["noisy input"]
    assert noisy_input["psnr"] == pytest.approx(np.mean(expected), rel=1e-9)


def test_compare_command_prints_the_table(tmp_path, data_root, capsys):
    config_file = tmp_path / "tiny.toml"
    cfg = tiny_config(steps=2)
    del cfg["train"]["seed"]
    config_file.write_text(_toml(cfg))
    code = main(
        [
            "compare",
            "denoise",
            "--config",
            str(config_file),
            "--data",
            str(data_root),
            "--seeds",
            "1",
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "| noisy input |" in out and "One seed only" in out
    assert main(["compare", "denoise", "--list-configs"]) == 0
    assert "bsd-cpu" in capsys.readouterr().out


def test_train_command_reports_bad_input_in_one_line(tmp_path, capsys):
    code = main(
        ["train", "denoise", "--config", "quick", "--set", "train.stpes=3", "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "train.stpes" in err[0]
    code = main(["train", "denoise", "--config", "no-such-config", "--out", str(tmp_path)])
    assert code == 1 and "no-such-config" in capsys.readouterr().err


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    """Outputs are readable as any new file is (0o666 less the umask), not owner-only like
    the temporary file they were written through; a failed write leaves nothing."""
    umask = os.umask(0o022)
    try:
        target = tmp_path / "report.md"
        atomic_write(target, lambda p: p.write_text("x", "utf-8"))
        assert target.stat().st_mode & 0o777 == 0o644
        with pytest.raises(RuntimeError):
            atomic_write(tmp_path / "bad.md", lambda p: (_ for _ in ()).throw(RuntimeError()))
    finally:
        os.umask(umask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_compare_report_ends_with_the_command_that_applies_the_best_checkpoint(
    comparison, tmp_path, capsys
):
    out, results = comparison
    report = (out / "report.md").read_text().rstrip().splitlines()
    best = max(results["runs"], key=lambda r: r["psnr"])
    assert report[-1] == "```" and report[-3] == "```bash"
    command = report[-2]
    assert command == (f"ndwconv denoise photo.png -o denoised --model {best['checkpoint']}")
    assert f"seed {best['seed']}, {best['method']}" in "\n".join(report[-8:])
    # and the command works as printed, on an image
    from PIL import Image

    from ndwconv.cli import main

    Image.fromarray(np.full((20, 24), 128, np.uint8)).save(tmp_path / "photo.png")
    argv = command.split()[1:]
    argv[argv.index("denoised")] = str(tmp_path / "denoised")
    argv[argv.index("photo.png")] = str(tmp_path / "photo.png")
    assert main([*argv, "--quiet"]) == 0
    assert "photo.png -> " in capsys.readouterr().out
    assert (tmp_path / "denoised" / "photo.png").is_file()
