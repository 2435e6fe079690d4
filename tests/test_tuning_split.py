"""``tune.split = "validation"``: every task scores a part held out of its training data.

For each task kind (denoising images, volumes and series; classification) the tests check
against the data's own geometry and values, never against the code's choice: the held-out
items and the items trained on are disjoint and together make up the training data, the
choice depends on ``tune.holdout_seed`` and not on ``train.seed``, training samples come
only from the part kept, and the *poison* tests show that a short training plus its
evaluation gives bit-identical scores whether the test split is clean, garbage, NaN or
absent: the tuning objective never touches the test split.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("safetensors", reason="checkpoints need ndwconv[recipes]")
PIL = pytest.importorskip("PIL.Image")

from test_denoise_series import TINY as SERIES_TINY  # noqa: E402

from ndwconv.recipes.engine import fit, load_config, trainer  # noqa: E402
from ndwconv.recipes.engine.config import validate  # noqa: E402
from ndwconv.recipes.tasks.classify import (  # noqa: E402
    ClassifyTask,
    Split,
    register_dataset,
    unregister_dataset,
)
from ndwconv.recipes.tasks.denoise import make_task  # noqa: E402
from ndwconv.recipes.tasks.holdout import (  # noqa: E402
    choose_holdout,
    holdout_count,
    stratified_holdout,
)


@pytest.fixture(autouse=True)
def no_curve_plots(monkeypatch):
    # each run's curves.png is the engine's (tested there) and costs a second a run
    monkeypatch.setattr(trainer, "plot_curves", lambda *args: None)


def _scores(task, config, out: Path) -> dict:
    """The final scores of a short run, and the per-item (denoising) or per-class
    (classification) scores behind them."""
    metrics = dict(fit(task, config, out, progress=False).metrics)
    rows = getattr(task, "final_rows", None)
    details = getattr(task, "final_details", None)
    return {"metrics": metrics, "rows": rows, "details": details and str(details)}


# --------------------------------------------------------------------------- choosing


def test_holdout_count_rounds_and_keeps_both_parts_non_empty():
    assert [holdout_count(n, 0.2) for n in (2, 5, 10, 12, 13)] == [1, 1, 2, 2, 3]
    assert holdout_count(4, 0.01) == 1 and holdout_count(4, 0.99) == 3
    with pytest.raises(ValueError, match="at least 2"):
        holdout_count(1, 0.5)


def test_choose_holdout_depends_on_its_seed_only():
    a = choose_holdout(50, 0.3, seed=7)
    assert len(a) == 15 == len(set(a.tolist())) and 0 <= a.min() and a.max() < 50
    assert np.array_equal(a, choose_holdout(50, 0.3, seed=7))
    chosen = {tuple(choose_holdout(50, 0.3, seed=s).tolist()) for s in range(6)}
    assert len(chosen) == 6  # another seed, another subset


def test_stratified_holdout_per_class_counts():
    labels = np.repeat(np.arange(4), [10, 3, 1, 7])
    rng = np.random.default_rng(0)
    labels = labels[rng.permutation(len(labels))]
    held = stratified_holdout(labels, 0.3, seed=2)
    # round(0.3 · m) within [1, m − 1] per class; the singleton class keeps its sample
    assert np.bincount(labels[held], minlength=4).tolist() == [3, 1, 0, 2]
    assert np.array_equal(held, stratified_holdout(labels, 0.3, seed=2))
    assert not np.array_equal(held, stratified_holdout(labels, 0.3, seed=3))
    with pytest.raises(ValueError, match="single training sample"):
        stratified_holdout(np.array([0, 1, 2]), 0.5, seed=0)


# --------------------------------------------------------------------------- images


IMAGE_TINY = [
    "model.depth=3",
    "model.width=4",
    "data.patch_size=16",
    "train.steps=3",
    "train.batch_size=2",
    "train.eval_every=0",
    "train.log_every=0",
    "train.checkpoint_every=0",
    "train.threads=1",
    "noise.sigma=25",
]


@pytest.fixture
def image_folder(tmp_path):
    """Eight 24×24 images, image k flat at grey level 20·k + 10 plus a little texture
    (±2): a patch's mean tells which image it came from."""
    folder = tmp_path / "train"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(8):
        image = 20 * k + 10 + rng.integers(-2, 3, (24, 24))
        PIL.fromarray(image.astype(np.uint8)).save(folder / f"img{k}.png")
    return folder


def _image_config(train: Path, validation: str, *extra: str) -> dict:
    return load_config(
        "quick",
        [*IMAGE_TINY, f"data.train='{train}'", f"data.validation='{validation}'", *extra],
    )


def test_image_validation_split_holds_out_whole_training_images(image_folder, tmp_path):
    cfg = _image_config(
        image_folder, tmp_path / "no-such-folder", "tune.split=validation", "tune.holdout=0.25"
    )
    task = make_task(cfg, "standard")
    held = [name for name, _, _ in task.validation]
    trained = list(task.describe()["data"]["validation_images"])
    assert held == trained and len(held) == 2  # round(0.25 · 8)
    names = {f"img{k}" for k in range(8)}
    kept = names - set(held)
    assert set(held) < names
    # training patches come only from the images kept (their grey level tells which)
    levels = set()
    for i in range(200):
        _, clean = task.dataset[i]
        levels.add(round((float(clean.mean()) * 255 - 10) / 20))
    assert levels == {int(name[3:]) for name in kept}
    assert len(task.dataset) == 6 * 128  # the nominal epoch counts the reduced set
    described = task.describe()
    assert described["split"] == "validation" and described["tune_holdout"] == 0.25
    # another train.seed: the same images held out; another holdout_seed: others
    other = make_task(copy.deepcopy(cfg) | {"train": {**cfg["train"], "seed": 5}}, "standard")
    assert [n for n, _, _ in other.validation] == held
    chosen = set()
    for seed in range(5):
        again = make_task(
            _image_config(
                image_folder,
                "nowhere",
                "tune.split=validation",
                "tune.holdout=0.25",
                f"tune.holdout_seed={seed}",
            ),
            "standard",
        )
        chosen.add(tuple(n for n, _, _ in again.validation))
    assert len(chosen) > 1


def test_image_validation_scores_ignore_the_test_folder(image_folder, tmp_path):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "broken.png").write_bytes(b"not an image at all")
    real = tmp_path / "test"
    real.mkdir()
    PIL.fromarray(np.full((24, 24), 200, np.uint8)).save(real / "t.png")
    runs = {}
    for label, folder in (("missing", tmp_path / "absent"), ("garbage", garbage), ("real", real)):
        cfg = _image_config(image_folder, folder, "tune.split=validation")
        runs[label] = _scores(make_task(cfg, "weighted"), cfg, tmp_path / f"run-{label}")
    assert runs["missing"] == runs["garbage"] == runs["real"]
    rows = runs["missing"]["rows"]
    assert len(rows) == 2 and all(np.isfinite(r["ssim"]) for r in rows)
    # the test split is what test mode reads: there the missing folder is an error
    with pytest.raises(FileNotFoundError, match=r"data\.validation"):
        make_task(_image_config(image_folder, tmp_path / "absent"), "standard")


# --------------------------------------------------------------------------- volumes


def _nifti(path: Path, array: np.ndarray) -> str:
    nib = pytest.importorskip("nibabel")
    image = nib.Nifti1Image(np.asarray(array, dtype=np.float32), np.eye(4))
    nib.save(image, str(path))
    return str(path)


def _volume_config(**data) -> dict:
    cfg = load_config(
        "mni",
        [
            "train.steps=2",
            "train.batch_size=2",
            "train.eval_every=0",
            "model.depth=3",
            "model.width=2",
            "train.checkpoint_every=0",
            "train.log_every=0",
            "train.threads=1",
        ],
    )
    cfg["data"] = {
        "patch_size": 8,
        "min_foreground": 0.0,
        "flips": False,
        "percentiles": [0.0, 100.0],
        **data,
    }
    return cfg


def test_volume_validation_block_comes_from_the_training_part(tmp_path):
    # intensity is the position along the last axis: every voxel tells where it came from
    z = np.arange(64, dtype=np.float32)
    path = _nifti(tmp_path / "ramp.nii.gz", np.broadcast_to(z, (12, 12, 64)).copy())
    cfg = _volume_config(train=[path], holdout=0.25)
    cfg["tune"] = {"split": "validation", "holdout": 0.25}
    task = make_task(cfg, "standard")
    # test block: z 48–63; training part z 0–47, normalised by its own range (0 to 47);
    # validation block: its last round(0.25 · 48) = 12 samples, z 36–47
    ((name, clean, _),) = task.validation
    assert name == "ramp.nii.gz[validation]" and clean.shape == (12, 12, 12)
    np.testing.assert_allclose(clean[0, 0] * 47, z[36:48], atol=1e-4)
    for i in range(100):
        _, patch = task.dataset[i]
        assert float(patch.max()) * 47 <= 35 + 1e-3  # only z 0–35 is trained on
    described = task.describe()
    assert described["data"]["train_shapes"] == {"ramp.nii.gz": [12, 12, 36]}
    assert described["split"] == "validation" and described["tune_holdout"] == 0.25


def test_volume_validation_scores_never_see_the_test_block(tmp_path):
    rng = np.random.default_rng(3)
    clean = (rng.random((12, 12, 64)) * 100).astype(np.float32)
    poisoned = clean.copy()
    poisoned[..., 48:] = np.nan  # the test block (data.holdout 0.25)
    runs = []
    for label, volume in (("clean", clean), ("poisoned", poisoned)):
        (tmp_path / label).mkdir()
        path = _nifti(tmp_path / label / "v.nii.gz", volume)
        cfg = _volume_config(train=[path], holdout=0.25)
        cfg["tune"] = {"split": "validation", "holdout": 0.25}
        runs.append(_scores(make_task(cfg, "weighted"), cfg, tmp_path / f"run-{label}"))
    assert runs[0] == runs[1] and np.isfinite(runs[0]["metrics"]["psnr"])
    # in test mode the NaN block is read (and refused)
    cfg = _volume_config(train=[str(tmp_path / "poisoned" / "v.nii.gz")], holdout=0.25)
    with pytest.raises(ValueError, match="non-finite"):
        make_task(cfg, "standard")


def test_volume_validation_with_a_foreground_crop_splits_the_test_modes_training_part(
    tmp_path,
):
    # a bright box at z 10–53 of 64 (elsewhere 0): cropped, the volume is z 10–53 (44);
    # the test block its last round(0.25 · 44) = 11 (z 43–53), the training part z 10–42
    volume = np.zeros((14, 14, 64), np.float32)
    volume[1:13, 2:14, 10:54] = 50 + np.arange(44, dtype=np.float32)
    path = _nifti(tmp_path / "box.nii.gz", volume)
    cfg = _volume_config(train=[path], holdout=0.25, crop="foreground")
    tested = make_task(cfg, "standard")
    assert tested.describe()["data"]["train_shapes"] == {"box.nii.gz": [12, 12, 33]}
    cfg["tune"] = {"split": "validation", "holdout": 1 / 3}
    task = make_task(cfg, "standard")
    # of its 33 samples, the last 11 (z 32–42) are scored, z 10–31 trained on
    ((_, clean, _),) = task.validation
    assert task.describe()["data"]["train_shapes"] == {"box.nii.gz": [12, 12, 22]}
    values = 50 + np.arange(22, 33, dtype=np.float64)  # z 32–42 of the box
    lo, hi = 50.0, 50.0 + 32  # the training part's own range (percentiles 0 and 100)
    np.testing.assert_allclose(clean[0, 0], (values - lo) / (hi - lo), atol=1e-5)


def test_volume_validation_never_opens_listed_test_volumes(tmp_path):
    z = np.arange(40, dtype=np.float32)
    path = _nifti(tmp_path / "ramp.nii.gz", np.broadcast_to(z, (12, 12, 40)).copy())
    cfg = _volume_config(train=[path], validation=[str(tmp_path / "missing.nii.gz")])
    cfg["tune"] = {"split": "validation", "holdout": 0.3}
    task = make_task(cfg, "standard")
    ((_, clean, _),) = task.validation  # round(0.3 · 40) = 12: z 28–39 of the volume
    np.testing.assert_allclose(clean[0, 0] * 39, z[28:], atol=1e-4)
    assert task.describe()["data"]["train_shapes"] == {"ramp.nii.gz": [12, 12, 28]}
    del cfg["tune"]
    with pytest.raises((FileNotFoundError, ValueError), match="missing"):
        make_task(cfg, "standard")


# --------------------------------------------------------------------------- series


def _series_config(path: Path, *overrides: str) -> dict:
    cfg = load_config("ecg", [*SERIES_TINY, *overrides])
    cfg["data"]["train"] = str(path)
    cfg["data"].pop("sampling_rate", None)
    return cfg


def test_series_validation_part_comes_from_the_training_part_with_the_gap(tmp_path):
    path = tmp_path / "ramp.npy"
    np.save(path, np.arange(1000, dtype=np.float64))  # each value is its own index
    cfg = _series_config(
        path, "data.holdout=0.25", "data.gap=20", "tune.split=validation", "tune.holdout=0.2"
    )
    task = make_task(cfg, "standard")
    (_, train, tuned), (lo, hi) = task.parts[0], task.ranges["ramp.npy"]
    # test part: 750–999; training part 0–729 (gap 20); of its 730 samples the last
    # round(0.2 · 730) = 146 (584–729) are scored, training ends 20 before them (at 563)
    assert (lo, hi) == (0.0, 563.0)  # normalised by the samples trained on
    np.testing.assert_allclose(lo + tuned * (hi - lo), np.arange(584, 730), atol=1e-3)
    np.testing.assert_allclose(lo + train * (hi - lo), np.arange(564), atol=1e-3)
    for i in range(50):
        _, crop = task.dataset[i]
        assert float(crop.max()) * 563 <= 563 + 1e-3
    assert task.validation[0][0] == "ramp.npy[validation]"
    assert task.describe()["split"] == "validation"
    assert task.describe()["data"]["train_lengths"] == {"ramp.npy": 564}
    same = make_task(
        _series_config(
            path,
            "data.holdout=0.25",
            "data.gap=20",
            "tune.split=validation",
            "tune.holdout=0.2",
            "train.seed=9",
        ),
        "standard",
    )
    np.testing.assert_array_equal(same.parts[0][2], tuned)


def test_series_validation_scores_ignore_the_test_part(tmp_path):
    t = np.arange(1500)
    signal = np.sin(2 * np.pi * t / 60) + 0.1 * np.sin(2 * np.pi * t / 7)
    poisoned = signal.copy()
    poisoned[-450:] = np.random.default_rng(0).normal(size=450) * 1e6  # the test part
    runs = []
    for label, values in (("clean", signal), ("poisoned", poisoned)):
        (tmp_path / label).mkdir()
        path = tmp_path / label / "s.npy"
        np.save(path, values)
        cfg = _series_config(path, "data.holdout=0.3", "tune.split=validation")
        runs.append(_scores(make_task(cfg, "weighted"), cfg, tmp_path / f"run-{label}"))
    assert runs[0] == runs[1] and np.isfinite(runs[0]["metrics"]["psnr"])


# --------------------------------------------------------------------------- classify

CLASSES = 4


def _samples(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % CLASSES
    x = 0.5 * rng.normal(size=(n, 1, 16)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, :, 4 * label : 4 * label + 4] += 1.0
    return x, y.astype(np.int64)


def _clean_loader(data, folder):
    train_x, train_y = _samples(60, 0)
    test_x, test_y = _samples(40, 1)
    return Split(train_x, train_y, test_x, test_y, [str(c) for c in range(CLASSES)])


def _poisoned_loader(data, folder):
    split = _clean_loader(data, folder)
    split.test_x = np.full_like(split.test_x, np.nan)
    split.test_y = (split.test_y + 1) % CLASSES
    return split


def _train_only_loader(data, folder, test=True):
    if test:
        raise AssertionError("the test split was asked for")
    train_x, train_y = _samples(60, 0)
    return Split(train_x, train_y, None, None, [str(c) for c in range(CLASSES)])


@pytest.fixture
def datasets(monkeypatch):
    from torch import nn

    from ndwconv.recipes import models

    class Tiny(nn.Module):
        def __init__(self, in_channels=1, num_classes=CLASSES):
            super().__init__()
            self.conv = nn.Conv1d(in_channels, 4, 3, padding=1)
            self.head = nn.Linear(64, num_classes)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).flatten(1))

    monkeypatch.setitem(models.MODELS, "tiny_split", Tiny)
    for name, loader in (
        ("clean", _clean_loader),
        ("poisoned", _poisoned_loader),
        ("train_only", _train_only_loader),
    ):
        register_dataset(name, loader, lambda d: (1, CLASSES))
    yield
    for name in ("clean", "poisoned", "train_only"):
        unregister_dataset(name)


def _classify_config(dataset: str, **tune) -> dict:
    return {
        "task": "classify",
        "model": {"name": "tiny_split"},
        "data": {"dataset": dataset},
        "weighted": {"density": "table:0.5"},
        "train": {
            "loss": "cross_entropy",
            "steps": 6,
            "batch_size": 8,
            "log_every": 0,
            "threads": 1,
        },
        "optim": {"name": "adam", "lr": 0.01},
        "tune": {"split": "validation", **tune},
    }


def test_classify_holds_out_a_stratified_part_of_the_training_samples(datasets):
    train_x, train_y = _samples(60, 0)
    task = ClassifyTask(_classify_config("clean", holdout=0.2), "standard")
    held_x, held_y = task.split.test_x, task.split.test_y
    kept_x = task.split.train_x
    assert len(held_y) == 12 and np.bincount(held_y).tolist() == [3] * CLASSES  # 15 each
    rows = {row.tobytes(): i for i, row in enumerate(train_x)}
    held = sorted(rows[r.tobytes()] for r in held_x)
    kept = sorted(rows[r.tobytes()] for r in kept_x)
    assert not set(held) & set(kept) and sorted(held + kept) == list(range(60))
    np.testing.assert_array_equal(held_y, train_y[held])
    assert task.train_size == len(task.dataset) == 48
    assert (
        validate(
            _classify_config("clean") | {"train": {"epochs": 2, "batch_size": 8}}, task.train_size
        )["train"]["steps"]
        == 12
    )  # 2 · ceil(48 / 8)
    assert task.describe()["split"] == "validation"
    seeded = ClassifyTask(
        _classify_config("clean", holdout=0.2) | {"train": {"seed": 4}}, "standard"
    )
    np.testing.assert_array_equal(seeded.split.test_x, held_x)
    other = ClassifyTask(_classify_config("clean", holdout=0.2, holdout_seed=1), "standard")
    assert not np.array_equal(other.split.test_x, held_x)


def test_classify_validation_scores_never_touch_the_test_split(datasets, tmp_path):
    scores = {}
    for name in ("clean", "poisoned", "train_only"):
        cfg = _classify_config(name)
        scores[name] = _scores(ClassifyTask(cfg, "weighted"), cfg, tmp_path / name)
    assert scores["clean"] == scores["poisoned"] == scores["train_only"]
    assert all(np.isfinite(v) for v in scores["clean"]["metrics"].values())
    # scored on the test split, the poison shows
    cfg = _classify_config("poisoned", split="test")
    tested = _scores(ClassifyTask(cfg, "weighted"), cfg, tmp_path / "test-mode")
    assert tested != scores["clean"]


def test_builtin_kinds_do_not_read_their_test_files(datasets, tmp_path, monkeypatch):
    import sys

    from test_classify_task import FakeCifar, FakeSeries

    cifar, series = FakeCifar(), FakeSeries(tmp_path)
    monkeypatch.setitem(sys.modules, "ndwconv.recipes.tasks.classify.cifar", cifar)
    monkeypatch.setitem(sys.modules, "ndwconv.recipes.tasks.classify.series", series)
    cfg = _classify_config("cifar100", holdout=0.2)
    cfg["model"] = {"name": "tiny_split", "num_classes": 2}
    task = ClassifyTask(cfg, "standard", [str(tmp_path)])
    assert [split for _, split, _ in cifar.calls] == ["train"]
    # 4 images, labels 0 1 0 1: one of each class held out, one kept
    assert task.train_size == 2 and sorted(task.split.test_y.tolist()) == [0, 1]
    cfg = _classify_config("mnist1d", holdout=0.2)
    cfg["model"] = {"name": "tiny_split", "num_classes": 10}
    task = ClassifyTask(cfg, "standard")
    assert series.calls == [("mnist1d", 42, "train")]
    # 4000 series, 400 per class: 80 of each held out
    assert task.train_size == 3200 and np.bincount(task.split.test_y).tolist() == [80] * 10
    assert task.split.test_x.max() < 4000 * 40  # training series only (values count up)
    cfg = _classify_config("ucr")
    cfg["model"] = {"name": "tiny_split", "num_classes": 3}
    task = ClassifyTask(cfg, "standard")
    assert [c[-1] for c in series.calls[1:]] == ["ArrowHead", "train"]
    assert task.train_size == 3 and sorted(task.split.test_y.tolist()) == [0, 1, 2]


def test_resume_refuses_another_split_and_accepts_descriptions_without_one(datasets, tmp_path):
    import json

    cfg = _classify_config("clean", split="test")
    fit(ClassifyTask(cfg, "standard"), cfg, tmp_path, progress=False)
    (sidecar,) = sorted((tmp_path / "checkpoints").glob("*.json"))
    record = json.loads(sidecar.read_text("utf-8"))
    assert record["description"]["split"] == "test"
    longer = copy.deepcopy(cfg)
    longer["train"]["steps"] = 8
    validating = copy.deepcopy(longer)
    validating["tune"] = {"split": "validation"}
    with pytest.raises(ValueError, match="split: 'test' → 'validation'"):
        fit(ClassifyTask(validating, "standard"), validating, tmp_path, resume=True, progress=False)
    # a checkpoint written before descriptions recorded the split was scored on the test
    del record["description"]["split"]
    sidecar.write_text(json.dumps(record), "utf-8")
    assert (
        fit(ClassifyTask(longer, "standard"), longer, tmp_path, resume=True, progress=False).step
        == 8
    )


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("tune", "message"),
    [
        ({"split": "valid"}, "tune.split"),
        ({"split": "validation", "holdout": 1.5}, "tune.holdout"),
        ({"split": "validation", "holdout_seed": -1}, "tune.holdout_seed"),
        ({"split": 3}, "tune.split"),
    ],
)
def test_every_task_refuses_bad_tune_values_by_name(
    tune, message, datasets, image_folder, tmp_path
):
    path = tmp_path / "s.npy"
    np.save(path, np.sin(np.arange(600) / 5.0))
    volume = _nifti(tmp_path / "v.nii.gz", np.random.default_rng(0).random((12, 12, 48)))
    configs = [
        _image_config(image_folder, "nowhere"),
        _volume_config(train=[volume]),
        _series_config(path),
    ]
    for cfg in configs:
        cfg["tune"] = tune
        with pytest.raises(ValueError, match=message):
            make_task(cfg, "standard")
    cfg = _classify_config("clean")
    cfg["tune"] = tune
    with pytest.raises(ValueError, match=message):
        ClassifyTask(cfg, "standard")


def test_report_headers_say_which_split_was_scored():
    from ndwconv.recipes.tasks.classify.report import report_header as classify_header
    from ndwconv.recipes.tasks.denoise.report import report_header as denoise_header

    tune = {"split": "validation", "holdout": 0.25}
    runs = [{"seed": 0, "method": m, "steps": 5} for m in ("standard", "weighted")]
    denoise = {
        "config": {
            "name": "q",
            "data": {"train": "embedded:train", "validation": "nope"},
            "train": {"steps": 5},
            "tune": tune,
        },
        "seeds": [0],
        "runs": runs,
    }
    text = "\n".join(denoise_header(denoise))
    assert "validation split (tune.split): 25 % of the training data" in text
    assert "nope" not in text  # the test set it names was not read: not presented as scored
    classify = {
        "config": {"name": "c", "train": {"steps": 5}, "tune": tune},
        "seeds": [0],
        "runs": runs,
    }
    assert "not the test split" in "\n".join(classify_header(classify))
    classify["config"].pop("tune")
    assert "Scores on the test split." in "\n".join(classify_header(classify))
