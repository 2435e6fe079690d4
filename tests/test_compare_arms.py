"""Comparison arms beyond standard and weighted, the per-arm learning-rate sweep on the
validation split, and the compute each arm used.

A toy task registered here records every evaluation (which split, which rate) and, on
the validation split, returns scores the tests choose, so the sweep's choice is known in
advance. The ``standard-phi-init`` arm is checked to start from the weighted arm's function
on the toy task (through the task objects the comparison trains) and on built-in models
(without data), and its kernels against a float64 reference.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("safetensors", reason="checkpoints need ndwconv[recipes]")

from test_engine import CLASSES, LENGTH, Blobs

import ndwconv
import ndwconv.recipes.engine.trainer as trainer
from ndwconv.cli import main
from ndwconv.recipes.engine import Metric, compare, compare_settings, fit, load_checkpoint
from ndwconv.recipes.engine.arms import arm_model, arm_task, make_arms
from ndwconv.recipes.engine.config import load_config, tuning_split
from ndwconv.recipes.models import make_weighted
from ndwconv.recipes.tasks import TaskEntry, get_task, load_model, register_task, unregister_task

compare_module = importlib.import_module("ndwconv.recipes.engine.compare")  # not the function
DENSITY = "table:3=0.5;5=0.3,0.7"
ALL_ARMS = ["standard", "weighted", "standard-phi-init", "weighted-tuned"]
EVALUATIONS: list[dict] = []
"""Every evaluation of the toy task: split, rate, method, final."""
VALIDATION_SCORES: dict[tuple[str, float], float] = {}
"""The toy task's score on the validation split, by (method, learning rate)."""


def build_toy(method: str, density: str | None) -> nn.Module:
    net = nn.Sequential(
        nn.Conv1d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv1d(4, 4, 5, padding=2),
        nn.ReLU(),
        nn.Conv1d(4, 4, 1),  # pointwise: no arm changes it
        nn.Flatten(),
        nn.Linear(4 * LENGTH, CLASSES),
    )
    return make_weighted(net, density) if method == "weighted" else net


class ArmsToy:
    name = "armstoy"
    target_dtype = torch.long
    spatial_dims = 1

    def __init__(self, config, method, data=None):
        self.config, self.method = config, method
        self.density = config["weighted"]["density"]
        self.split = tuning_split(config)["split"]
        self.dataset = Blobs(config["train"].get("seed", 0))
        self.test = None if self.split == "validation" else [Blobs(10_000)[i] for i in range(30)]

    def build_model(self):
        return build_toy(self.method, self.density)

    def loss(self, output, target):
        return F.cross_entropy(output, target)

    def evaluate(self, model, device, final=True):
        lr = self.config["optim"]["lr"]
        EVALUATIONS.append({"split": self.split, "lr": lr, "method": self.method, "final": final})
        if self.split == "validation":  # the score the test chose for this rate
            return {"score": VALIDATION_SCORES.get((self.method, lr), 0.0)}
        x = torch.stack([s[0] for s in self.test])
        y = torch.tensor([s[1] for s in self.test])
        return {"score": 100.0 * float((model(x).argmax(1) == y).float().mean())}

    def describe(self):
        density = self.density if self.method == "weighted" else None
        return {"method": self.method, "model": {"name": "armstoy"}, "density": density}


def toy_entry(higher_is_better: bool = True) -> TaskEntry:
    return TaskEntry(
        name="armstoy",
        help="a tiny 1-D classifier for the arms tests",
        metrics=(Metric("score", "score", higher_is_better=higher_is_better, digits=1),),
        make=ArmsToy,
        check_config=lambda config: None,
        build_model=lambda config, method: build_toy(method, config["weighted"]["density"]),
        model_from_description=lambda d: build_toy(d["method"], d["density"]),
    )


@pytest.fixture(autouse=True)
def toy_registered(monkeypatch):
    register_task(toy_entry(), replace=True)
    EVALUATIONS.clear()
    VALIDATION_SCORES.clear()
    monkeypatch.setattr(trainer, "plot_curves", lambda *a, **k: None)  # each run's curves.png
    yield
    unregister_task("armstoy")


def toy_config(steps: int = 4, **compare_table) -> dict:
    return {
        "task": "armstoy",
        "name": "armstoy",
        "weighted": {"density": DENSITY},
        "train": {"steps": steps, "batch_size": 8, "log_every": 2, "threads": 1},
        "optim": {"lr": 0.05},
        **({"compare": compare_table} if compare_table else {}),
    }


def _profile(values: list[float]) -> np.ndarray:
    return np.array([*values, 1.0, *values[::-1]])


# ---------------------------------------------------------------------------------------
# standard-phi-init: the weighted arm's initial function, plain layers
# ---------------------------------------------------------------------------------------


def _built(task, seed: int) -> nn.Module:
    torch.manual_seed(seed)  # as fit builds it
    model = task.build_model()
    return model


def test_phi_init_arm_starts_from_the_weighted_arms_function():
    config = toy_config(arms=ALL_ARMS, tuned="gaussian:0.8")
    arms = {arm.name: arm for arm in make_arms(compare_settings(config))}
    cfg = {**config, "train": {**config["train"], "seed": 3}}
    tasks = {
        name: arm_task(get_task("armstoy"), arm, arm.configure(cfg), None)
        for name, arm in arms.items()
    }
    models = {name: _built(task, 3) for name, task in tasks.items()}
    after = {}
    for name, task in tasks.items():  # the RNG is left as the arm's method leaves it
        _built(task, 3)
        after[name] = torch.rand(3)
    assert torch.equal(after["standard-phi-init"], after["standard"])
    x = torch.randn(16, 1, LENGTH)
    with torch.no_grad():  # float32, as trained: the very same function, bit for bit
        out = {name: model(x) for name, model in models.items()}
    assert torch.equal(out["standard-phi-init"], out["weighted"])
    assert not torch.allclose(out["standard"], out["weighted"])
    assert not torch.allclose(out["weighted-tuned"], out["weighted"])
    phi_init, standard = models["standard-phi-init"], models["standard"]
    assert not any(ndwconv.is_weighted(m) for m in phi_init.modules())
    assert list(phi_init.state_dict()) == list(standard.state_dict())
    # against a float64 reference: W₀ times the profiles [d…, 1, …d] of each kernel size
    # (the kernels are float32: one rounding of the product)
    w0 = {k: v.double().numpy() for k, v in standard.state_dict().items()}
    w = {k: v.detach().double().numpy() for k, v in phi_init.state_dict().items()}
    np.testing.assert_allclose(w["0.weight"], w0["0.weight"] * _profile([0.5]), rtol=1e-7)
    np.testing.assert_allclose(w["2.weight"], w0["2.weight"] * _profile([0.3, 0.7]), rtol=1e-7)
    for key in ("4.weight", "0.bias", "2.bias", "6.weight"):
        np.testing.assert_array_equal(w[key], w0[key])


def test_a_resumed_phi_init_run_continues_from_its_saved_weights(tmp_path):
    config = toy_config(steps=3, arms=["standard", "standard-phi-init"])
    (arm,) = [a for a in make_arms(compare_settings(config)) if a.name == "standard-phi-init"]
    cfg = {**config, "train": {**config["train"], "seed": 0, "checkpoint_every": 2}}
    entry = get_task("armstoy")
    straight = fit(arm_task(entry, arm, cfg, None), cfg, tmp_path / "a", progress=False)
    # stop after step 2, then resume: the φ-init is applied to the built model, then the
    # checkpoint's weights replace it, so the run ends exactly as the uninterrupted one
    short = {**cfg, "train": {**cfg["train"], "steps": 2}}
    fit(arm_task(entry, arm, short, None), short, tmp_path / "b", progress=False)
    resumed = fit(arm_task(entry, arm, cfg, None), cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed.step == 3
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_a_standard_run_does_not_resume_as_phi_init_nor_the_reverse(tmp_path):
    config = toy_config(steps=3, arms=["standard", "standard-phi-init"])
    standard, phi = make_arms(compare_settings(config))
    cfg = {**config, "train": {**config["train"], "seed": 0}}
    short = {**cfg, "train": {**cfg["train"], "steps": 2}}
    entry = get_task("armstoy")
    for first, then, folder in ((standard, phi, "a"), (phi, standard, "b")):
        fit(arm_task(entry, first, short, None), short, tmp_path / folder, progress=False)
        with pytest.raises(ValueError, match=r"differs from the checkpoint.*init: "):
            fit(arm_task(entry, then, cfg, None), cfg, tmp_path / folder, resume=True)
    # the checkpoint records which initial change was made, with the density it used
    _, sidecar = load_checkpoint(next((tmp_path / "b" / "checkpoints").glob("*.safetensors")))
    assert sidecar["description"]["init"] == {"arm": "standard-phi-init", "density": DENSITY}
    assert "init" not in load_checkpoint(
        next((tmp_path / "a" / "checkpoints").glob("*.safetensors"))
    )[1]["description"]


@pytest.mark.parametrize(
    ("task", "config", "overrides", "shape"),
    [
        ("denoise", "quick", ["model.depth=3", "model.width=4"], (1, 1, 12, 12)),
        ("denoise", "mni", ["model.ndim=4", "model.depth=3", "model.width=2"], (1, 1, 5, 5, 5, 4)),
        ("classify", "quick-classify", [], (2, 1, 40)),
    ],
    ids=["dncnn-2d", "dncnn-4d", "mnist1d-cnn"],
)
def test_phi_init_of_builtin_models_starts_from_the_weighted_function(
    task, config, overrides, shape
):
    entry = get_task(task)
    cfg = load_config(config, overrides)
    arms = {a.name: a for a in make_arms(compare_settings({"compare": {"arms": ALL_ARMS[:3]}}))}
    models = {}
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # built in float64: compared in float64
    try:
        for name in ("standard", "weighted", "standard-phi-init"):
            torch.manual_seed(0)
            models[name] = arm_model(entry, arms[name], cfg).eval()
    finally:
        torch.set_default_dtype(default)
    assert all(p.dtype == torch.float64 for m in models.values() for p in m.parameters())
    x = torch.randn(shape, dtype=torch.float64)
    with torch.no_grad():
        out = {name: model(x) for name, model in models.items()}
    torch.testing.assert_close(out["standard-phi-init"], out["weighted"], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out["standard"], out["weighted"])
    assert sorted(models["standard-phi-init"].state_dict()) == sorted(
        models["standard"].state_dict()
    )


# ---------------------------------------------------------------------------------------
# A comparison of every arm: runs, results, report, resume
# ---------------------------------------------------------------------------------------


def test_a_comparison_of_every_arm(tmp_path, monkeypatch):
    config = toy_config(arms=ALL_ARMS, tuned="gaussian:0.8")
    results = compare(get_task("armstoy"), config, seeds=[0, 1], out_dir=tmp_path, progress=False)
    assert results["format"] == "ndwconv.compare/3" and results["arms"] == ALL_ARMS
    assert [(r["seed"], r["method"]) for r in results["runs"]] == [
        (s, a) for s in (0, 1) for a in ALL_ARMS
    ]
    by = {(r["seed"], r["method"]): r for r in results["runs"]}
    summary = results["summary"]
    for arm in ALL_ARMS[1:]:
        diffs = summary["differences"][arm]["score_per_seed"]
        assert diffs == [by[(s, arm)]["score"] - by[(s, "standard")]["score"] for s in (0, 1)]
        assert results["compute"][arm] == {
            "steps": 8,
            "train_seconds": by[(0, arm)]["train_seconds"] + by[(1, arm)]["train_seconds"],
            "sweep_steps": 0,
            "sweep_train_seconds": 0.0,
        }
    assert summary["difference"] == summary["differences"]["weighted"]
    # what each run folder holds: the arm's model, recorded so load_model rebuilds it
    for arm, method, densities in [
        ("standard-phi-init", "standard", {}),
        ("weighted-tuned", "weighted", {"0": "gaussian:0.8", "2": "gaussian:0.8"}),
        ("weighted", "weighted", {"0": DENSITY, "2": DENSITY}),
    ]:
        _, sidecar = load_checkpoint(tmp_path / "seed-1" / arm)
        assert sidecar["description"]["method"] == method
        assert {k: str(ndwconv.as_density(v)) for k, v in sidecar["densities"].items()} == {
            k: str(ndwconv.as_density(v)) for k, v in densities.items()
        }
    rebuilt = load_model(tmp_path / "seed-1" / "standard-phi-init")
    x = torch.stack([Blobs(7)[i][0] for i in range(8)])
    phi_run = next(r for r in results["runs"] if r["method"] == "standard-phi-init")
    assert phi_run["weighted_layers"] == 0
    # the report names every arm in its table, verdict and list of arms
    report = (tmp_path / "report.md").read_text("utf-8")
    assert "| method | score | seeds | training steps | training time |" in report
    for arm in ALL_ARMS:
        assert f"| {arm} | " in report and f"- `{arm}`:" in report
    for arm in ALL_ARMS[1:]:
        assert f"| {arm} − standard |" in report
    assert "Weighted − standard score:" in report and "weighted better in" in report
    assert "Standard-phi-init − standard score:" in report
    assert "Weighted-tuned − standard score:" in report and "`gaussian:0.8`" in report
    assert "| 8 | " in report  # training steps: 2 seeds × 4 steps
    if results.get("figure"):
        assert (tmp_path / "figure.png").stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text("utf-8"))
    assert saved["arms"] == ALL_ARMS and saved["lr_sweep"] is None
    # resuming re-scores the finished runs from their saved weights: nothing retrains
    EVALUATIONS.clear()
    monkeypatch.setattr(compare_module, "_curves_figure", lambda *a: None)  # drawn above
    again = compare(
        get_task("armstoy"), config, seeds=[0, 1], out_dir=tmp_path, progress=False, resume=True
    )
    assert [r["score"] for r in again["runs"]] == [r["score"] for r in results["runs"]]
    assert [r["steps"] for r in again["runs"]] == [4] * 8
    assert not EVALUATIONS
    torch.testing.assert_close(rebuilt(x), load_model(tmp_path / "seed-1" / "standard-phi-init")(x))


# ---------------------------------------------------------------------------------------
# The learning-rate sweep
# ---------------------------------------------------------------------------------------

RATES = [0.3, 0.03, 0.1]


@pytest.mark.parametrize(
    ("higher_is_better", "seeds"), [(True, [2, 3]), (False, [2])], ids=["higher", "lower"]
)
def test_the_sweep_picks_each_arms_best_validation_rate(tmp_path, higher_is_better, seeds):
    register_task(toy_entry(higher_is_better), replace=True)
    VALIDATION_SCORES.update(
        {
            ("standard", 0.3): 10.0,
            ("standard", 0.03): 50.0,
            ("standard", 0.1): 30.0,
            ("weighted", 0.3): 40.0,
            ("weighted", 0.03): 20.0,
            ("weighted", 0.1): 60.0,
        }
    )
    chosen = (
        {"standard": 0.03, "weighted": 0.1}
        if higher_is_better
        else {"standard": 0.3, "weighted": 0.03}
    )
    config = toy_config(steps=3, lr_sweep=RATES, sweep_steps=2)
    results = compare(get_task("armstoy"), config, seeds=seeds, out_dir=tmp_path, progress=False)
    sweep = results["lr_sweep"]
    assert sweep["rates"] == RATES and sweep["steps"] == 2
    assert sweep["holdout"] == {"split": "validation", "holdout": 0.2, "holdout_seed": 0}
    for arm in ("standard", "weighted"):
        record = sweep["arms"][arm]
        assert record["chosen"] == chosen[arm]
        assert record["scores"] == [VALIDATION_SCORES[(arm, r)] for r in RATES]
        assert record["seed"] == 2 and record["split"] == "validation"
        assert record["steps"] == 6 and record["train_seconds"] > 0
        # the final runs use the chosen rate, recorded in results and checkpoints
        for seed in seeds:
            run = next(r for r in results["runs"] if (r["seed"], r["method"]) == (seed, arm))
            assert run["lr"] == chosen[arm] and run["steps"] == 3
            _, sidecar = load_checkpoint(tmp_path / f"seed-{seed}" / arm)
            assert sidecar["config"]["optim"]["lr"] == chosen[arm]
        for rate in RATES:
            _, sidecar = load_checkpoint(tmp_path / "sweep" / arm / f"lr-{rate!r}")
            assert sidecar["config"]["tune"]["split"] == "validation"
            assert sidecar["config"]["train"]["seed"] == 2 and sidecar["step"] == 2
        assert results["compute"][arm]["sweep_steps"] == 6
    # the sweep never scored the test split; the final runs scored nothing else
    splits = [e["split"] for e in EVALUATIONS]
    sweep_evaluations = sum(1 for e in EVALUATIONS if e["split"] == "validation")
    assert sweep_evaluations >= 6
    assert splits == ["validation"] * sweep_evaluations + ["test"] * (
        len(splits) - sweep_evaluations
    )
    report = (tmp_path / "report.md").read_text("utf-8")
    assert "## Learning rate per arm" in report and "chosen on the validation split" in report
    assert "the test split never read" in report
    best = "highest" if higher_is_better else "lowest"
    assert f"the {best} score there won" in report
    assert f"| standard | 10.00 | 50.00 | 30.00 | {chosen['standard']:g} |" in report
    assert f"| {3 * len(seeds)} + 6 sweep |" in report
    # resumable: a second invocation reuses every run of the sweep and its choice
    EVALUATIONS.clear()
    again = compare(
        get_task("armstoy"), config, seeds=seeds, out_dir=tmp_path, progress=False, resume=True
    )
    assert not EVALUATIONS
    assert {a: r["chosen"] for a, r in again["lr_sweep"]["arms"].items()} == chosen


def test_a_sweep_of_diverged_runs_names_the_arm(tmp_path):
    VALIDATION_SCORES.update({("standard", 0.1): math.nan, ("standard", 0.2): math.nan})
    config = toy_config(steps=2, lr_sweep=[0.1, 0.2], arms=["standard", "standard-phi-init"])
    with pytest.raises(ValueError, match=r"sweep of the standard arm: every rate gave .* NaN"):
        compare(get_task("armstoy"), config, seeds=[0], out_dir=tmp_path, progress=False)


# ---------------------------------------------------------------------------------------
# Bad values: errors that name the flag or the key, before anything is written
# ---------------------------------------------------------------------------------------


@pytest.fixture()
def toy_toml(tmp_path) -> Path:
    path = tmp_path / "armstoy.toml"
    path.write_text(
        f'task = "armstoy"\n[weighted]\ndensity = "{DENSITY}"\n'
        "[train]\nsteps = 2\nbatch_size = 8\nthreads = 1\n[optim]\nlr = 0.05\n",
        "utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--arms", "standard,bogus"], "argument --arms: unknown arm 'bogus'"),
        (["--arms", "weighted,standard-phi-init"], "--arms must hold 'standard'"),
        (["--arms", "standard"], "--arms must hold 'standard' (every arm is compared"),
        (["--arms", "standard,weighted,weighted"], "--arms: an arm is given twice"),
        (["--arms", "standard,weighted-tuned"], "--arms holds weighted-tuned but no tuned"),
        (
            ["--tuned", "gaussian:0.8"],
            "--tuned is given but the arms (compare.arms: standard, weighted) do not hold",
        ),
        (
            ["--arms", "standard,weighted-tuned", "--tuned", "nope.json"],
            "--tuned: the density file 'nope.json' does not exist",
        ),
        (
            ["--arms", "standard,weighted-tuned", "--tuned", "bogus:1"],
            "--tuned: 'bogus:1' is neither a density file nor a density spec",
        ),
        (["--lr-sweep", "1e-3,fast"], "argument --lr-sweep: 'fast' is not a learning rate"),
        (["--lr-sweep", "0,1e-3"], "argument --lr-sweep: learning rates must be positive"),
        (["--lr-sweep", "1e-3,0.001"], "--lr-sweep: a learning rate is given twice"),
        (["--lr-sweep", "1e-3", "--sweep-steps", "0"], "--sweep-steps must be ≥ 1"),
        (["--sweep-steps", "5"], "--sweep-steps is given without a learning-rate sweep"),
        (
            ["--arms", "standard,weighted", "--set", 'compare.arms=["standard"]'],
            "compare.arms is given twice",
        ),
        (["--set", 'compare.arms="standard,weighted"'], "config key compare.arms must be list"),
        (["--set", "compare.bogus=1"], "unknown config key compare.bogus"),
    ],
)
def test_bad_values_give_errors_naming_the_flag(tmp_path, toy_toml, capsys, flags, message):
    out = tmp_path / "run"
    code = main(
        ["compare", "armstoy", "--config", str(toy_toml), "--quiet", "--out", str(out), *flags]
    )
    err = capsys.readouterr().err
    assert code != 0
    assert message in err, err
    assert not out.exists()


def test_compare_settings_defaults_and_tuned_files(tmp_path, monkeypatch):
    settings = compare_settings({})
    assert settings == {
        "seeds": 1,
        "arms": ("standard", "weighted"),
        "tuned": None,
        "lr_sweep": None,
        "sweep_steps": None,
    }
    density_file = tmp_path / "densities.json"
    density_file.write_text("{}", "utf-8")
    monkeypatch.chdir(tmp_path)
    config = {"compare": {"arms": ["standard", "weighted-tuned"], "tuned": "densities.json"}}
    assert compare_settings(config)["tuned"] == str(density_file.resolve())
    assert config["compare"]["tuned"] == "densities.json"  # what was given is not modified
    config["compare"]["tuned"] = "gaussian:1.2"
    assert compare_settings(config)["tuned"] == "gaussian:1.2"
    with pytest.raises(
        ValueError, match=r"compare\.tuned: the density file 'nope\.json' does not exist"
    ):
        compare_settings(
            {"compare": {"arms": ["standard", "weighted-tuned"], "tuned": "nope.json"}}
        )
    with pytest.raises(ValueError, match=r"compare.lr_sweep: learning rates must be positive"):
        compare_settings({"compare": {"lr_sweep": [1e-3, -1.0]}})


def test_a_density_the_tuned_arm_cannot_use_fails_before_any_training(tmp_path):
    config = toy_config(arms=["standard", "weighted-tuned"], tuned="table:0.5")  # 3 only, no 5
    with pytest.raises(ValueError, match=r"the weighted-tuned model of this configuration"):
        compare(get_task("armstoy"), config, seeds=[0], out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists() and not EVALUATIONS


def test_the_command_line_runs_the_arms_and_prints_them(tmp_path, toy_toml, capsys):
    code = main(
        [
            "compare",
            "armstoy",
            "--config",
            str(toy_toml),
            "--quiet",
            "--seeds",
            "2",
            "--arms",
            "standard,weighted,standard-phi-init",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    for row in (
        "| standard |",
        "| weighted |",
        "| standard-phi-init |",
        "| weighted − standard |",
        "| standard-phi-init − standard |",
    ):
        assert row in out, row
    assert "Standard-phi-init − standard score:" in out
    saved = json.loads((tmp_path / "r" / "results.json").read_text("utf-8"))
    assert saved["config"]["compare"]["arms"] == ["standard", "weighted", "standard-phi-init"]
