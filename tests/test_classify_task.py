"""The classification task on fixtures this file controls, and the engine additions it uses.

A learnable fixture (a bump whose position is the class, in 1-D series and in 2-D images)
is registered as a dataset kind, and a tiny dimension-generic CNN as a model, so the task's
training, resumption, comparison and command line are checked without the real data sets
or the real models. The learning-rate warm-up and the epoch conversion are checked against
a float64 re-derivation of the rates, independent of the engine's scheduler.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("safetensors", reason="checkpoints need ndwconv[recipes]")

import ndwconv
from ndwconv.cli import main
from ndwconv.recipes import models
from ndwconv.recipes.engine import compare, fit, load_checkpoint, load_config, trainer
from ndwconv.recipes.engine.config import validate
from ndwconv.recipes.tasks import get_task, load_model
from ndwconv.recipes.tasks.classify import (
    ClassifyTask,
    Split,
    build_model,
    check_config,
    register_dataset,
    unregister_dataset,
)
from ndwconv.recipes.tasks.classify.data import TrainSamples

CLASSES = 6


class TinyNet(nn.Module):
    """conv → ReLU → global mean → linear, in 1, 2 or 3 dimensions."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, ndim: int = 1, width: int = 8):
        super().__init__()
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[ndim - 1]
        self.features = nn.Sequential(
            conv(in_channels, width, 3, padding=1),
            nn.ReLU(),
            conv(width, width, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(width * CLASSES, num_classes)
        self.ndim = ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        # pool each of CLASSES strips along the first spatial axis: position survives
        strips = torch.stack(
            [s.mean(dim=tuple(range(2, h.ndim))) for s in h.chunk(CLASSES, dim=2)], dim=-1
        )
        return self.head(strips.flatten(1))


def bumps(n: int, ndim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy samples whose class is where a bump is, along the first axis."""
    rng = np.random.default_rng(seed)
    size = 4 * CLASSES
    y = rng.integers(0, CLASSES, n)
    x = 0.5 * rng.normal(size=(n, 1) + (size,) * ndim).astype(np.float32)
    for i, label in enumerate(y):
        x[i, :, 4 * label : 4 * label + 4] += 1.0
    return x, y.astype(np.int64)


def roll(batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A stand-in augmentation: a random circular shift by −1, 0 or 1 along the last axis."""
    return batch.roll(int(torch.randint(-1, 2, (), generator=g)), dims=-1)


def load_bumps(data, folder):
    ndim = 2 if data.get("name") == "images" else 1
    train_x, train_y = bumps(96, ndim, 0)
    test_x, test_y = bumps(60, ndim, 1)
    names = [f"bump {i}" for i in range(CLASSES)]
    augment = roll if data.get("augment", False) else None
    return Split(
        train_x, train_y, test_x, test_y, names, augment=augment, description="bumps (test fixture)"
    )


@pytest.fixture(autouse=True)
def fixtures_registered(monkeypatch):
    monkeypatch.setitem(models.MODELS, "tiny_cls", TinyNet)
    # each run's curves.png is the engine's (tested there) and costs a second or two a run
    monkeypatch.setattr(trainer, "plot_curves", lambda *args: None)
    register_dataset("bumps", load_bumps, lambda d: (1, CLASSES))
    yield
    unregister_dataset("bumps")


def config(steps=30, ndim=1, **train):
    return {
        "task": "classify",
        "name": "bumps",
        "model": {"name": "tiny_cls", "ndim": ndim},
        "data": {"dataset": "bumps", "name": "images" if ndim == 2 else "series"},
        "weighted": {"density": "table:0.5"},
        "train": {
            "loss": "cross_entropy",
            "steps": steps,
            "batch_size": 16,
            "log_every": 5,
            "threads": 1,
            **train,
        },
        "optim": {"name": "adam", "lr": 0.01},
    }


def losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text("utf-8").splitlines()
    return [r["loss"] for r in map(json.loads, lines) if "loss" in r]


@pytest.mark.parametrize("ndim", [1, 2])
def test_a_short_run_learns_the_fixture_in_1d_and_2d(tmp_path, ndim):
    task = ClassifyTask(config(40, ndim), "weighted")
    labels = []
    loss = task.loss
    task.loss = lambda out, target: (labels.append(target.dtype), loss(out, target))[1]
    result = fit(task, config(40, ndim), tmp_path, progress=False)
    assert set(labels) == {torch.int64}
    curve = losses(tmp_path)
    assert curve[-1] < 0.5 * curve[0]  # ln 6 ≈ 1.79 at the start
    assert result.metrics["accuracy"] > 80.0  # chance is 16.7 %
    assert set(result.metrics) == {
        "accuracy",
        "macro_f1",
        "top5",
        "macro_precision",
        "macro_recall",
    }
    details = task.final_details
    assert np.asarray(details["confusion"]).sum() == 60
    assert np.trace(np.asarray(details["confusion"])) / 60 * 100 == pytest.approx(
        result.metrics["accuracy"]
    )
    rebuilt = load_model(result.checkpoint, task="classify")
    x = task.split.inputs(task.split.test_x[:8])
    torch.testing.assert_close(rebuilt(x), result.model(x), rtol=0, atol=0)
    assert {str(layer.density) for _, layer in ndwconv.weighted_layers(rebuilt)} == {"table:0.5"}


def test_training_samples_are_a_pure_function_of_seed_and_index():
    split = load_bumps({"augment": True}, None)
    a, b, other = TrainSamples(split, 3), TrainSamples(split, 3), TrainSamples(split, 4)
    for i in (0, 5, 95, 96, 250):
        xa, ya = a[i]
        xb, yb = b[i]
        assert torch.equal(xa, xb) and ya == yb and isinstance(ya, int)
    # each pass visits every training sample once, in an order that changes per pass
    plain = TrainSamples(split, 3, augment=False)
    for start in (0, 96):
        seen = sorted(int(plain.order(start // 96)[k]) for k in range(96))
        assert seen == list(range(96))
    assert not torch.equal(plain.order(0), plain.order(1))
    assert not torch.equal(plain.order(0), TrainSamples(split, 4, augment=False).order(0))
    assert any(not torch.equal(a[i][0], other[i][0]) for i in range(4))


def test_resume_is_bit_identical_with_epochs_warmup_smoothing_and_augmentation(tmp_path):
    cfg = config(ndim=1, label_smoothing=0.1, checkpoint_every=0, epochs=2)
    del cfg["train"]["steps"]
    cfg["data"]["augment"] = True
    cfg["optim"] = {
        "name": "sgd",
        "lr": 0.05,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
    }
    cfg["schedule"] = {
        "name": "multistep",
        "milestone_epochs": [1],
        "gamma": 0.2,
        "warmup_steps": 3,
    }
    straight = fit(ClassifyTask(cfg, "weighted"), cfg, tmp_path / "a", progress=False)
    assert straight.step == 12  # 2 epochs of ceil(96 / 16) = 6 steps
    crashing = ClassifyTask(cfg, "weighted")
    samples = crashing.dataset

    class StopAt:
        def __getitem__(self, i):
            if i >= 7 * 16:
                raise RuntimeError("crash")
            return samples[i]

    crashing.dataset = StopAt()
    with pytest.raises(RuntimeError, match="crash"):
        fit(crashing, cfg, tmp_path / "b", progress=False)
    _, sidecar = load_checkpoint(tmp_path / "b" / "checkpoints" / "step-00000007.json")
    assert sidecar["step"] == 7
    resumed = fit(ClassifyTask(cfg, "weighted"), cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed.step == 12
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.metrics == straight.metrics


def _rates(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text("utf-8").splitlines()
    return [r["lr"] for r in map(json.loads, lines) if "lr" in r]


@pytest.mark.parametrize("name", ["multistep", "cosine", "constant"])
def test_warmup_then_schedule_rates_follow_the_documented_formula(tmp_path, name):
    steps, warmup, factor, lr = 18, 5, 0.2, 0.1
    cfg = config(steps, log_every=1)
    cfg["optim"] = {"name": "sgd", "lr": lr, "momentum": 0.9, "nesterov": True}
    cfg["schedule"] = {
        "name": name,
        "warmup_steps": warmup,
        "warmup_factor": factor,
        "gamma": 0.5,
        "min_lr": 0.001,
    }
    if name == "multistep":
        cfg["schedule"]["milestones"] = [4, 10]
    fit(ClassifyTask(cfg, "standard"), cfg, tmp_path, progress=False)
    expected = []
    for s in range(steps):  # float64, from the formula in the trainer's documentation
        warm = factor + (1 - factor) * s / warmup if s < warmup else 1.0
        if name == "multistep":
            main = lr * 0.5 ** sum(m <= s for m in (4, 10))
        elif name == "cosine":
            main = 0.001 + (lr - 0.001) * (1 + math.cos(math.pi * s / steps)) / 2
        else:
            main = lr
        expected.append(warm * main)
    np.testing.assert_allclose(_rates(tmp_path), expected, rtol=1e-12)


def test_without_warmup_the_schedules_are_unchanged(tmp_path):
    """Configurations without warm-up keep torch's own schedulers (and their checkpoints)."""
    cfg = config(8, log_every=1)
    cfg["schedule"] = {"name": "multistep", "milestones": [3], "gamma": 0.5}
    fit(ClassifyTask(cfg, "standard"), cfg, tmp_path, progress=False)
    assert _rates(tmp_path) == [0.01] * 3 + [0.005] * 5
    _, sidecar = load_checkpoint(tmp_path / "checkpoints" / "step-00000008.json")
    assert "lr_lambdas" not in sidecar["scheduler"]


def test_epochs_convert_to_steps_by_ceil_of_train_size_over_batch():
    cfg = load_config("cifar100-paper")
    tables = validate(cfg, train_size=50_000)  # 391 steps an epoch
    assert tables["train"]["steps"] == 200 * 391
    assert tables["schedule"]["milestones"] == [60 * 391, 120 * 391, 160 * 391]
    assert tables["schedule"]["warmup_steps"] == 391
    assert tables["train"]["eval_every"] == tables["train"]["checkpoint_every"] == 10 * 391
    assert validate(cfg)["train"]["steps"] is None  # no size: checked, not converted
    odd = {"train": {"epochs": 3, "batch_size": 16}, "schedule": {"warmup_epochs": 0.5}}
    converted = validate(odd, train_size=97)  # ceil(97 / 16) = 7
    assert converted["train"]["steps"] == 21 and converted["schedule"]["warmup_steps"] == 4


def test_an_epoch_config_needs_a_task_that_reports_its_size(tmp_path):
    class NoSize:
        name = "nosize"
        dataset = None

    cfg = {"train": {"epochs": 2}}
    with pytest.raises(ValueError, match="does not report its training-set size"):
        fit(NoSize(), cfg, tmp_path, progress=False)


BAD = [
    ({"data": {}}, "config key data.dataset is missing"),
    ({"data": {"dataset": "imagenet"}}, "data.dataset must be one of"),
    ({"data": {"dataset": "bumps", "colour": 1}}, "unknown config key data.colour"),
    ({"data": {"dataset": "cifar100", "labels": "medium"}}, "data.labels must be 'fine'"),
    ({"model": {}}, "config key model.name is missing"),
    ({"model": {"name": "tiny_cls", "num_classes": 0}}, "model.num_classes must be an integer"),
    ({"eval": {"batch_size": 0}}, "eval.batch_size must be ≥ 1"),
    ({"weighted": {"density": "gaussian:1mm"}}, "is given in mm"),
    ({"train": {"loss": "mse"}}, "train.loss must be one of cross_entropy"),
    ({"surprise": {}}, "unknown config section"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_task_configs_name_the_key(change, message):
    cfg = config()
    for section, table in change.items():
        cfg[section] = table if not isinstance(cfg.get(section), dict) else {**table}
    with pytest.raises(ValueError, match=message):
        check_config(cfg)


ENGINE_BAD = [
    ({"train": {"steps": 5, "epochs": 2}}, "give train.steps or train.epochs, not both"),
    ({"train": {"epochs": 0}}, "train.epochs must be ≥ 1"),
    ({"train": {"eval_every_epochs": -1}}, "train.eval_every_epochs must be ≥ 0"),
    (
        {"train": {"checkpoint_every": 5, "checkpoint_every_epochs": 1}},
        "give train.checkpoint_every or train.checkpoint_every_epochs, not both",
    ),
    ({"schedule": {"milestone_epochs": [0]}}, "schedule.milestone_epochs must be"),
    (
        {"schedule": {"milestones": [5], "milestone_epochs": [1]}},
        "give schedule.milestones or schedule.milestone_epochs",
    ),
    ({"schedule": {"warmup_factor": 1.5}}, r"schedule.warmup_factor must be in \[0, 1\]"),
    ({"schedule": {"warmup_steps": -1}}, "schedule.warmup_steps must be ≥ 0"),
    (
        {"train": {"label_smoothing": 1.0, "loss": "cross_entropy"}},
        r"train.label_smoothing must be in \[0, 1\)",
    ),
    ({"train": {"label_smoothing": 0.1}}, "applies to train.loss = 'cross_entropy' only"),
    ({"optim": {"name": "sgd", "nesterov": True}}, "optim.nesterov = true needs optim.momentum"),
]


@pytest.mark.parametrize(("cfg", "message"), ENGINE_BAD)
def test_bad_engine_settings_name_the_key(cfg, message):
    with pytest.raises(ValueError, match=message):
        validate(cfg, train_size=100)


def test_the_builtin_classify_configs_are_valid():
    for name in ("cifar100-paper", "cifar100-resnet18", "mnist1d", "ucr", "quick-classify"):
        cfg = load_config(name)
        assert cfg["task"] == "classify", name
        check_config(cfg)
        validate(cfg, train_size=1000)
    assert get_task("classify").default_config == "quick-classify"
    paper = load_config("cifar100-paper")
    assert paper["model"]["name"] == "vgg16_bn" and paper["optim"]["lr"] == 0.1
    assert paper["schedule"]["gamma"] == 0.2 and paper["train"]["batch_size"] == 128


def test_build_model_needs_no_data_and_fills_channels_and_classes():
    cfg = config()
    net = build_model(cfg, "weighted")
    assert net.head.out_features == CLASSES
    assert {str(layer.density) for _, layer in ndwconv.weighted_layers(net)} == {"table:0.5"}
    cfg["weighted"]["density"] = "table:0.2,0.8"  # two taps: does not fit a 3-tap kernel
    with pytest.raises(ValueError, match=r"features\.0"):
        build_model(cfg, "weighted")


def test_compare_writes_its_report_files(tmp_path):
    cfg = config(16)
    results = compare(get_task("classify"), cfg, seeds=[0, 1], out_dir=tmp_path, progress=False)
    for name in ("results.json", "report.md", "figure.png"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "results.json").read_text("utf-8"))
    assert saved["task"] == "classify"
    runs = saved["runs"]
    assert [(r["seed"], r["method"]) for r in runs] == [
        (0, "standard"),
        (0, "weighted"),
        (1, "standard"),
        (1, "weighted"),
    ]
    for run in runs:
        cm = np.asarray(run["details"]["confusion"])
        assert cm.shape == (CLASSES, CLASSES) and cm.sum() == 60
        assert run["accuracy"] == pytest.approx(100 * np.trace(cm) / 60)
    diffs = results["summary"]["difference"]["accuracy_per_seed"]
    by = {(r["seed"], r["method"]): r["accuracy"] for r in runs}
    assert diffs == [by[(s, "weighted")] - by[(s, "standard")] for s in (0, 1)]
    report = (tmp_path / "report.md").read_text("utf-8")
    assert report.startswith("# Classification: standard vs weighted convolution (bumps)")
    assert "| method | top-1 accuracy (%) | macro F1 (%) | seeds |" in report
    assert "top-5 accuracy (%)" in report and "Most frequent confusions" in report
    assert "Weighted − standard top-1 accuracy:" in report
    # the main table and its verdict come first, then the further scores, then the runs
    order = [
        report.index("| method | top-1 accuracy (%) | macro F1 (%) | seeds |"),
        report.index("Weighted − standard top-1 accuracy:"),
        report.index("Further final scores"),
        report.index("Most frequent confusions"),
        report.index("## Runs"),
    ]
    assert order == sorted(order)
    # a second invocation with --resume only re-scores the finished runs: details again
    again = compare(
        get_task("classify"), cfg, seeds=[0, 1], out_dir=tmp_path, progress=False, resume=True
    )
    assert [r["details"] for r in again["runs"]] == [r["details"] for r in runs]


def test_the_command_line_trains_and_compares_classify(tmp_path, capsys):
    toml = tmp_path / "bumps.toml"
    toml.write_text(
        'task = "classify"\n[model]\nname = "tiny_cls"\n[data]\ndataset = "bumps"\n'
        '[weighted]\ndensity = "table:0.5"\n'
        '[train]\nloss = "cross_entropy"\nsteps = 6\nbatch_size = 16\nthreads = 1\n'
        "[optim]\nlr = 0.01\n",
        "utf-8",
    )
    code = main(
        [
            "compare",
            "classify",
            "--config",
            str(toml),
            "--seeds",
            "2",
            "--quiet",
            "--out",
            str(tmp_path / "cmp"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "| weighted − standard |" in out and "top-1 accuracy" in out
    code = main(
        [
            "train",
            "classify",
            "--config",
            str(toml),
            "--quiet",
            "--method",
            "standard",
            "--out",
            str(tmp_path / "one"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("standard: 6 steps, accuracy")
    code = main(
        [
            "train",
            "classify",
            "--config",
            str(toml),
            "--data",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "two"),
        ]
    )
    assert code == 1
    assert "--data" in capsys.readouterr().err


def test_the_figure_shows_top_confusions_for_many_classes(tmp_path):
    pytest.importorskip("matplotlib")
    from ndwconv.recipes.tasks.classify import report

    rng = np.random.default_rng(0)
    classes = [f"c{i}" for i in range(100)]
    runs = []
    for method in ("standard", "weighted"):
        cm = rng.integers(0, 3, (100, 100))
        np.fill_diagonal(cm, 60)
        cm[7, 3] = 40  # the weighted model's largest confusion is c7 → c3
        runs.append(
            {
                "seed": 0,
                "method": method,
                "accuracy": 50.0,
                "steps": 5,
                "history": [{"step": 5, "accuracy": 50.0}],
                "details": {
                    "classes": classes,
                    "confusion": cm.tolist(),
                    "top5": 90.0,
                    "macro_precision": 50.0,
                    "macro_recall": 50.0,
                },
            }
        )
    results = {
        "seeds": [0],
        "runs": runs,
        "config": {"name": "many", "train": {"steps": 5}},
        "metrics": [
            {
                "name": "accuracy",
                "label": "top-1 accuracy",
                "higher_is_better": True,
                "digits": 2,
                "unit": "%",
            }
        ],
    }
    png = report.figure(results, {}, None, tmp_path / "figure.png")
    assert png is not None and png.stat().st_size > 10_000
    sections = "\n".join(report.report_sections(results))
    assert "- weighted: c7 → c3 (40)" in sections
    assert "| standard | 90.00 | 50.00 | 50.00 |" in sections


class FakeCifar:
    """The agreed interface of ``classify.cifar``, on four tiny images: what the task's
    data plumbing calls, and with what."""

    CIFAR100_MEAN, CIFAR100_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    def __init__(self):
        self.calls = []

    def load_cifar100(self, source, split="train", labels="fine"):
        from types import SimpleNamespace

        self.calls.append((Path(source), split, labels))
        n = 4 if split == "train" else 2
        images = np.full((n, 3, 32, 32), 200, dtype=np.uint8)
        return SimpleNamespace(
            images=images, labels=np.arange(n, dtype=np.int64) % 2, classes=["apple", "bee"]
        )

    def augment(self, batch, generator):
        assert batch.dtype == torch.uint8 and batch.shape[1:] == (3, 32, 32)
        return batch.flip(-1) if torch.rand((), generator=generator) < 0.5 else batch

    def normalise(self, batch):
        return (batch.float() / 255 - 0.5) / 0.25


def test_cifar100_data_goes_through_the_agreed_interface(tmp_path, monkeypatch):
    import sys

    fake = FakeCifar()
    monkeypatch.setitem(sys.modules, "ndwconv.recipes.tasks.classify.cifar", fake)
    cfg = config()
    cfg["data"] = {"dataset": "cifar100", "labels": "coarse"}
    cfg["model"] = {"name": "tiny_cls", "ndim": 2, "num_classes": 2}
    with pytest.raises(ValueError, match="needs its files: give --data PATH"):
        ClassifyTask(cfg, "standard")
    task = ClassifyTask(cfg, "standard", [str(tmp_path)])
    assert fake.calls == [(tmp_path, "train", "coarse"), (tmp_path, "test", "coarse")]
    x, label = task.dataset[3]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
    assert torch.allclose(x, torch.full_like(x, (200 / 255 - 0.5) / 0.25))
    assert isinstance(label, int) and task.train_size == 4 and task.spatial_dims == 2
    assert (
        build_model({**cfg, "model": {"name": "tiny_cls", "ndim": 2}}, "standard").head.out_features
        == 20
    )  # coarse labels: 20 classes, known without the files


@dataclasses.dataclass
class FakeSeriesData:
    """The agreed ``SeriesData``: ``x`` float32 (N, C, L), ``y`` int64 (N,), ``classes``."""

    x: np.ndarray
    y: np.ndarray
    classes: list


class FakeSeries:
    """The interface of ``classify.series``: ``mnist1d(seed, split)`` (the benchmark's
    4000/1000 split), ``load_ucr(source, split)``,
    ``bundled_ucr(name)``, ``znormalise(x)``."""

    def __init__(self, root: Path):
        self.root, self.calls = root, []

    def _data(self, n, length, offset=0.0):
        x = np.arange(n * length, dtype=np.float32).reshape(n, 1, length) + offset
        return FakeSeriesData(x, np.arange(n, dtype=np.int64) % 3, ["a", "b", "c"])

    def mnist1d(self, seed=42, split="train"):
        self.calls.append(("mnist1d", seed, split))
        n, first = (4000, 0) if split == "train" else (1000, 4000)
        made = self._data(n, 40, offset=first * 40.0)
        made.classes = [str(i) for i in range(10)]
        made.y = np.arange(first, first + n, dtype=np.int64) % 10
        return made

    def bundled_ucr(self, name):
        self.calls.append(("bundled", name))
        return self.root / "bundled" / name

    def load_ucr(self, source, split):
        self.calls.append(("load", Path(source), split))
        return self._data(6 if split == "train" else 4, 12, offset=5.0)

    def znormalise(self, x):
        return (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)


def test_series_data_goes_through_the_agreed_interface(tmp_path, monkeypatch):
    import sys

    fake = FakeSeries(tmp_path)
    monkeypatch.setitem(sys.modules, "ndwconv.recipes.tasks.classify.series", fake)
    cfg = config()
    cfg["data"] = {"dataset": "mnist1d", "seed": 3}
    task = ClassifyTask(cfg, "standard")
    assert fake.calls == [("mnist1d", 3, "train"), ("mnist1d", 3, "test")]
    assert task.train_size == 4000 and len(task.split.test_y) == 1000
    assert task.num_classes == 10 and task.split.test_x[0, 0, 0] == 4000 * 40
    with pytest.raises(ValueError, match="is generated, not read: drop --data"):
        ClassifyTask(cfg, "standard", str(tmp_path))
    cfg["data"] = {"dataset": "ucr", "name": "OSULeaf"}
    task = ClassifyTask(cfg, "standard")  # no --data: the bundled copy
    assert fake.calls[-3:] == [
        ("bundled", "OSULeaf"),
        ("load", tmp_path / "bundled" / "OSULeaf", "train"),
        ("load", tmp_path / "bundled" / "OSULeaf", "test"),
    ]
    x = task.split.train_x
    np.testing.assert_allclose(x.mean(-1), 0, atol=1e-5)  # z-normalised per series
    np.testing.assert_allclose(x.std(-1), 1, atol=1e-5)
    (tmp_path / "archive" / "OSULeaf").mkdir(parents=True)
    ClassifyTask(cfg, "standard", str(tmp_path / "archive"))  # the archive folder
    assert fake.calls[-1] == ("load", tmp_path / "archive" / "OSULeaf", "test")
    ClassifyTask(cfg, "standard", str(tmp_path / "archive" / "OSULeaf"))  # the set's folder
    assert fake.calls[-1] == ("load", tmp_path / "archive" / "OSULeaf", "test")
