"""Density search: the methods find known optima, searches resume, the test split is never
used, and the result is a density file the rest of the library takes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ndwconv
from ndwconv import Table, load_densities
from ndwconv.recipes.engine.config import tuning_split
from ndwconv.recipes.engine.task import Metric
from ndwconv.recipes.models import make_weighted
from ndwconv.recipes.tasks import TaskEntry, register_task, unregister_task
from ndwconv.recipes.tune import SearchSpace, direct_l, line_search, tune
from ndwconv.recipes.tune.run import at_bound

TRUE_PHI = 0.6  # the density that generated the toy task's targets
WEIGHT = (0.2, 0.5, 0.3)
LENGTH = 32


# -- the search methods on cheap objectives with known optima ----------------------------


def _counted(f):
    calls = []

    def objective(x):
        calls.append(list(x))
        return f(x)

    return objective, calls


@pytest.mark.parametrize("method", ["direct-l", "line"])
def test_methods_find_a_known_optimum_within_budget(method):
    optimum = [0.8, 0.3, 1.1]

    def f(x):  # a tilted, non-separable bowl: its minimum is at ``optimum``
        d = [a - b for a, b in zip(x, optimum, strict=True)]
        return d[0] ** 2 + 2 * d[1] ** 2 + d[2] ** 2 + 0.5 * d[0] * d[2]

    objective, calls = _counted(f)
    lower, upper = [0.5, 0.05, 0.5], [1.5, 1.0, 1.5]
    if method == "direct-l":
        found = direct_l(objective, lower, upper, budget=150)
    else:
        found = line_search(objective, lower, upper, budget=150, step=0.1, min_step=0.002)
    assert len(calls) <= 150 and found.evaluations == len({tuple(c) for c in calls})
    assert max(abs(a - b) for a, b in zip(found.point, optimum, strict=True)) < 0.03
    assert found.value == min(f(c) for c in calls)


def test_direct_l_starts_at_the_centre_and_line_search_at_one():
    objective, direct_calls = _counted(lambda x: (x[0] - 0.9) ** 2)
    direct_l(objective, [0.5], [1.5], budget=3)
    assert direct_calls[0] == [1.0]
    objective, line_calls = _counted(lambda x: (x[0] - 0.9) ** 2 + (x[1] - 0.2) ** 2)
    line_search(objective, [0.5, 0.05], [1.5, 0.5], budget=3)
    assert line_calls[0] == [1.0, 0.5]  # every value 1, clipped into its bounds


def test_budget_is_a_hard_limit_and_bad_budgets_are_refused():
    objective, calls = _counted(lambda x: sum(v * v for v in x))
    direct_l(objective, [0.1, 0.1], [1.0, 1.0], budget=7)
    assert len(calls) == 7
    with pytest.raises(ValueError, match="budget"):
        direct_l(objective, [0.1], [1.0], budget=0)
    with pytest.raises(ValueError, match="lower"):
        line_search(objective, [1.0], [0.5], budget=3)


def test_search_space_bounds_and_tables():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, (1, 5)), nn.Conv2d(2, 1, 1))
    shared = SearchSpace.of(net)
    assert shared.labels == ["k3[0]", "k5[0]", "k5[1]"]
    assert shared.neutral() == [1.0, 1.0, 1.0]
    per_layer = SearchSpace.of(net, "layer", bounds={"3": [[0.6, 0.9]]})
    assert per_layer.labels == ["0:k3[0]", "1:k5[0]", "1:k5[1]"]
    assert per_layer.lower == [0.6, 0.05, 0.5] and per_layer.neutral() == [0.9, 1.0, 1.0]
    found = per_layer.densities([0.7, 0.2, 0.8])
    assert found.shared is None
    assert found.layers == {"0": Table({3: [0.7]}), "1": Table({5: [0.2, 0.8]})}
    with pytest.raises(ValueError, match="outside its bounds"):
        per_layer.densities([0.5, 0.2, 0.8])
    with pytest.raises(ValueError, match=r"kernel size\(s\) \[9\]"):
        SearchSpace.of(nn.Conv1d(1, 1, 9))
    with pytest.raises(ValueError, match=r"2 range"):
        SearchSpace.of(net, bounds={"5": [[0.1, 0.9]]})
    with pytest.raises(ValueError, match=r"tune.share"):
        SearchSpace.of(net, "everything")


# -- a toy task whose best density is known: targets made with Φ = [0.6, 1, 0.6] ----------


def _signal(seed: int, i: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + i)
    return torch.randn(1, LENGTH, generator=g)


def _target(x: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([[[WEIGHT[0] * TRUE_PHI, WEIGHT[1], WEIGHT[2] * TRUE_PHI]]])
    return F.conv1d(x[None], kernel, padding=1)[0]


class Samples:
    """Training pairs: signals drawn under the run's seed, targets made with TRUE_PHI."""

    def __init__(self, indices, seed):
        self.indices, self.seed = list(indices), seed

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        x = _signal(self.seed + 1, self.indices[i % len(self.indices)])
        return x, _target(x)


def build_phi_model(method: str, density) -> nn.Module:
    net = nn.Sequential(nn.Conv1d(1, 1, 3, padding=1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[list(WEIGHT)]]))
    if method == "weighted":
        make_weighted(net, density)
    return net


class PhiTask:
    """Regression onto targets made with the true density; scored by MSE on the split
    ``tune.split`` names (the test signals can be poisoned)."""

    name = "phi"
    target_dtype = torch.float32
    spatial_dims = 1
    evaluated: ClassVar[list[str]] = []  # the splits every instance scored, in order
    poison_test = False

    def __init__(self, config, method, data=None):
        self.config, self.method = config, method
        self.split = tuning_split(config)
        train = list(range(100))
        held = int(self.split["holdout"] * len(train))
        seed = config.get("train", {}).get("seed", 0)
        if self.split["split"] == "validation":
            self.dataset, self.scored = Samples(train[held:], seed), train[:held]
        else:
            self.dataset, self.scored = Samples(train, seed), list(range(1000, 1040))

    def build_model(self):
        return build_phi_model(self.method, self.config["weighted"]["density"])

    def loss(self, output, target):
        return F.mse_loss(output, target)

    def evaluate(self, model, device, final=True):
        PhiTask.evaluated.append(self.split["split"])
        xs = torch.stack([_signal(0, i) for i in self.scored])
        ys = torch.stack([_target(x) for x in xs])
        if self.split["split"] == "test" and PhiTask.poison_test:
            xs = torch.full_like(xs, math.nan)
        with torch.no_grad():
            return {"mse": float(F.mse_loss(model(xs.to(device)), ys.to(device)))}

    def describe(self):
        density = self.config["weighted"]["density"] if self.method == "weighted" else None
        return {"method": self.method, "model": {"name": "phi"}, "density": density}


def phi_from_config(config, method):
    return build_phi_model(method, config["weighted"]["density"])


def phi_from_description(description):
    return build_phi_model(description["method"], description["density"])


PHI = TaskEntry(  # module-level functions only: worker processes receive it pickled
    name="phi",
    help="regression onto targets made with a known density",
    metrics=(Metric("mse", "MSE", higher_is_better=False, digits=5),),
    make=PhiTask,
    check_config=tuning_split,
    build_model=phi_from_config,
    model_from_description=phi_from_description,
)


@pytest.fixture(autouse=True)
def phi_registered():
    register_task(PHI, replace=True)
    PhiTask.evaluated = []
    PhiTask.poison_test = False
    yield
    unregister_task("phi")


def phi_config(**tune_keys):
    return {
        "task": "phi",
        "name": "phi",
        "weighted": {"density": "table:0.7"},
        "optim": {"name": "adam", "lr": 1e-9},  # the weights stay put: only Φ matters
        "train": {"steps": 2, "batch_size": 10, "log_every": 0, "threads": 1},
        "tune": {"steps": 2, **tune_keys},
    }


@pytest.mark.parametrize("method", ["direct-l", "line"])
def test_tune_finds_the_density_that_made_the_data(tmp_path, method):
    result = tune(PHI, phi_config(), tmp_path / "d.json", method=method, budget=20, progress=False)
    (value,) = load_densities(tmp_path / "d.json").shared.by_size[3]
    assert abs(value - TRUE_PHI) < 0.02
    assert result.value < 1e-4 and result.metric == "mse"
    assert result.at_bounds == [] and result.densities.meta["at_bounds"] == []
    assert set(PhiTask.evaluated) == {"validation"}  # never the test split
    meta = result.densities.meta
    assert meta["split"] == "validation" and meta["evaluations"] == len(result.evaluations)
    assert meta["train_steps"] == 2 * len(result.evaluations)
    # the file is what convert, Table.load and the recipes' --density take
    assert Table.load(tmp_path / "d.json") == Table({3: [value]})
    net = ndwconv.convert(nn.Conv1d(1, 1, 3), tmp_path / "d.json")
    assert str(net.density) == str(Table({3: [value]}))
    built = PHI.make(
        {**phi_config(), "weighted": {"density": str(tmp_path / "d.json")}}, "weighted"
    )
    assert [str(m.density) for _, m in ndwconv.weighted_layers(built.build_model())] == [
        str(Table({3: [value]}))
    ]
    assert (tmp_path / "d.search" / "search.png").stat().st_size > 1000


def test_learn_freeze_learns_the_density_and_freezes_it(tmp_path):
    config = phi_config(steps=150, freeze_at=100, density_lr=0.05)
    result = tune(PHI, config, tmp_path / "d.json", method="learn-freeze", progress=False)
    found = load_densities(tmp_path / "d.json")
    assert found.shared is None and list(found.layers) == ["0"]
    frozen = found.layers["0"]
    assert isinstance(frozen, Table)
    (value,) = frozen.half_profile(3, 0, 1)
    assert value != 0.7  # it moved from where it started …
    assert abs(value - TRUE_PHI) < 0.03  # … to the density that made the data
    assert result.densities.meta["freeze_at"] == 100
    assert result.train_steps == 150
    assert set(PhiTask.evaluated) == {"validation"}


def test_an_interrupted_search_resumes_without_repeating_evaluations(tmp_path, monkeypatch):
    whole = tune(
        PHI, phi_config(), tmp_path / "a.json", method="direct-l", budget=6, progress=False
    )
    trained = []
    original = PhiTask.build_model
    monkeypatch.setattr(PhiTask, "build_model", lambda self: trained.append(1) or original(self))

    # an interruption after 3 evaluations, with the 4th cut short mid-line …
    tune(PHI, phi_config(), tmp_path / "b.json", method="direct-l", budget=3, progress=False)
    log = tmp_path / "b.search" / "evaluations.jsonl"
    with log.open("a") as stream:
        stream.write('{"index": 3, "key": "0.9')
    (tmp_path / "b.search" / "evals" / "0003").mkdir()  # a half-written evaluation folder
    trained.clear()
    with pytest.raises(FileExistsError, match="resume"):
        tune(PHI, phi_config(), tmp_path / "b.json", method="direct-l", budget=6, progress=False)
    again = tune(
        PHI,
        phi_config(),
        tmp_path / "b.json",
        method="direct-l",
        budget=6,
        resume=True,
        progress=False,
    )
    assert len(trained) == 3  # only the evaluations not finished before
    assert [r["point"] for r in again.evaluations] == [r["point"] for r in whole.evaluations]
    assert again.densities.shared == whole.densities.shared
    assert again.value == whole.value


def test_a_log_of_other_settings_is_refused(tmp_path):
    tune(PHI, phi_config(), tmp_path / "d.json", method="direct-l", budget=2, progress=False)
    with pytest.raises(ValueError, match=r"other settings.*seed"):
        tune(
            PHI,
            phi_config(seed=3),
            tmp_path / "d.json",
            method="direct-l",
            budget=2,
            resume=True,
            progress=False,
        )
    with pytest.raises(ValueError, match=r"other settings.*method"):
        tune(
            PHI,
            phi_config(),
            tmp_path / "d.json",
            method="line",
            budget=2,
            resume=True,
            progress=False,
        )


def test_workers_evaluate_the_same_points_to_the_same_result(tmp_path):
    # budget 3: the start, then its two neighbours, which two processes train at once
    one = tune(PHI, phi_config(), tmp_path / "a.json", method="line", budget=3, progress=False)
    two = tune(
        PHI, phi_config(), tmp_path / "b.json", method="line", budget=3, workers=2, progress=False
    )
    assert [r["point"] for r in two.evaluations] == [r["point"] for r in one.evaluations]
    assert [r["objective"] for r in two.evaluations] == [r["objective"] for r in one.evaluations]
    assert two.densities.shared == one.densities.shared


TORCHRUN_SCRIPT = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
import torch
from test_tune import PHI, phi_config
from ndwconv.recipes.tasks import register_task
from ndwconv.recipes.tune import tune

register_task(PHI, replace=True)
config = phi_config()
config["optim"]["lr"] = 0.05  # the weights move: the ranks' gradients are averaged
result = tune(PHI, config, sys.argv[2], method=sys.argv[3], budget=4, progress=False)
rank = int(os.environ["RANK"])
assert not torch.distributed.is_initialized()  # the search left the process group
# a file per rank: the ranks' prints to one stdout can interleave mid-line
with open(sys.argv[2] + f".rank-{rank}", "w") as out:
    json.dump({"rank": rank, "shared": str(result.densities.shared),
               "layers": {k: str(v) for k, v in result.densities.layers.items()},
               "objectives": [r["objective"] for r in result.evaluations]}, out)
"""


def test_under_torchrun_two_ranks_search_as_one_process_does(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(TORCHRUN_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1"]
    command += ["--nproc_per_node", "2", str(script), str(Path(__file__).parent)]
    command += [str(tmp_path / "ddp.json"), "direct-l"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"ddp.json.rank-{rank}").read_text()) for rank in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0] == {**ranks[1], "rank": 0}  # every rank returns the search's result

    config = phi_config()
    config["optim"]["lr"] = 0.05
    single = tune(PHI, config, tmp_path / "one.json", budget=4, progress=False)
    log = (tmp_path / "ddp.search" / "evaluations.jsonl").read_text().splitlines()
    assert len(log) == 1 + len(single.evaluations) == 5  # rank 0 alone logged, each once
    assert ranks[0]["objectives"] == pytest.approx(
        [r["objective"] for r in single.evaluations], rel=1e-5, abs=1e-12
    )
    found = load_densities(tmp_path / "ddp.json")
    assert found.shared == single.densities.shared
    assert found.meta["evaluations"] == 4


def test_under_torchrun_what_cannot_run_data_parallel_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="learn-freeze cannot run under torchrun"):
        tune(PHI, phi_config(), tmp_path / "d.json", method="learn-freeze", progress=False)
    with pytest.raises(ValueError, match="workers=2 with torchrun"):
        tune(PHI, phi_config(), tmp_path / "d.json", workers=2, progress=False)
    assert not (tmp_path / "d.search").exists()


def test_repeats_score_the_mean_over_seeds(tmp_path):
    def config(seed):  # a rate at which the weights move: each seed trains differently
        cfg = phi_config(seed=seed)
        cfg["optim"]["lr"] = 0.05
        return cfg

    single = [
        tune(PHI, config(s), tmp_path / f"s{s}.json", budget=1, progress=False).evaluations[0]
        for s in (4, 5, 6)
    ]
    assert len({r["objective"] for r in single}) == 3
    repeated = tune(PHI, config(4), tmp_path / "r.json", budget=1, repeats=3, progress=False)
    (record,) = repeated.evaluations
    assert record["objective"] == pytest.approx(sum(r["objective"] for r in single) / 3, 1e-12)
    assert [m["mse"] for m in record["per_seed"]] == [r["metrics"]["mse"] for r in single]
    assert record["steps"] == 6 and repeated.densities.meta["repeats"] == 3
    with pytest.raises(ValueError, match=r"tune.repeats"):
        tune(PHI, config(4), tmp_path / "x.json", method="learn-freeze", repeats=2)


def test_the_test_split_never_changes_the_search(tmp_path):
    clean = tune(PHI, phi_config(), tmp_path / "c.json", method="line", budget=6, progress=False)
    PhiTask.poison_test = True  # NaN test signals: any use of them would show
    poisoned = tune(PHI, phi_config(), tmp_path / "p.json", method="line", budget=6, progress=False)
    assert [r["objective"] for r in poisoned.evaluations] == [
        r["objective"] for r in clean.evaluations
    ]
    assert (
        json.loads((tmp_path / "p.json").read_text())["shared"]
        == json.loads((tmp_path / "c.json").read_text())["shared"]
    )
    assert set(PhiTask.evaluated) == {"validation"}


def test_bad_settings_name_the_setting(tmp_path):
    with pytest.raises(ValueError, match=r"tune.method"):
        tune(PHI, phi_config(), tmp_path / "d.json", method="grid", progress=False)
    with pytest.raises(ValueError, match=r"tune.budget"):
        tune(PHI, phi_config(budget=0), tmp_path / "d.json", progress=False)
    with pytest.raises(ValueError, match=r"must end in .json"):
        tune(PHI, phi_config(), tmp_path / "d.txt", progress=False)
    with pytest.raises(ValueError, match="workers"):
        tune(PHI, phi_config(), tmp_path / "d.json", workers=0, progress=False)
    with pytest.raises(ValueError, match=r"tune.freeze_at"):
        tune(
            PHI,
            phi_config(freeze_at=50),
            tmp_path / "d.json",
            method="learn-freeze",
            progress=False,
        )
    assert not (tmp_path / "d.json").exists()


def test_the_command(tmp_path, capsys):
    from ndwconv.cli import main

    config = tmp_path / "phi.toml"
    config.write_text(
        'task = "phi"\n[weighted]\ndensity = "table:0.7"\n[optim]\nlr = 1e-9\n'
        "[train]\nsteps = 2\nbatch_size = 10\nlog_every = 0\nthreads = 1\n"
    )
    out = tmp_path / "found.json"
    code = main(
        [
            "tune",
            "--config",
            str(config),
            "--method",
            "direct-l",
            "--budget",
            "5",
            "-o",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("direct-l: table:3=") and "validation mse" in line
    assert "after 5 evaluation(s), 10 training steps" in line
    assert load_densities(out).meta["method"] == "direct-l"


def test_a_best_value_on_the_edge_of_its_range_is_reported(tmp_path, capsys):
    """The density that made the data lies below the range searched: the search ends on
    the lower bound, and the result, the file and the command say so."""
    from ndwconv.cli import main

    low = TRUE_PHI + 0.2
    out = tmp_path / "edge.json"
    config = tmp_path / "phi.toml"
    config.write_text(
        'task = "phi"\n[weighted]\ndensity = "table:0.7"\n[optim]\nlr = 1e-9\n'
        "[train]\nsteps = 2\nbatch_size = 10\nlog_every = 0\nthreads = 1\n"
        f'[tune]\nbounds = {{"3" = [[{low}, 1.5]]}}\n'
    )
    args = ["tune", "--config", str(config), "--method", "line", "--budget", "6", "--quiet"]
    assert main([*args, "-o", str(out)]) == 0
    (edge,) = load_densities(out).meta["at_bounds"]
    assert edge["bound"] == "lower" and edge["label"] == "k3[0]"
    assert abs(edge["value"] - low) < 1e-9
    assert "lies on the lower bound of its range" in capsys.readouterr().err


def test_at_bound_names_the_coordinates_near_either_bound():
    found = at_bound([0.5, 1.0, 1.49, 0.0], [0.5, 0.5, 0.5, -1.0], [1.5, 1.5, 1.5, 1.0], "abcd")
    assert [(f["label"], f["bound"]) for f in found] == [("a", "lower"), ("c", "upper")]


def test_a_comparison_arm_takes_the_file_and_reports_the_search_cost(tmp_path):
    from ndwconv.recipes.engine import compare

    tune(PHI, phi_config(), tmp_path / "d.json", method="direct-l", budget=3, progress=False)
    config = {
        **phi_config(),
        "compare": {"arms": ["standard", "weighted-tuned"], "tuned": str(tmp_path / "d.json")},
    }
    config.pop("tune")
    results = compare(PHI, config, seeds=[0], out_dir=tmp_path / "cmp", progress=False)
    assert results["tuned_search"] == {
        "method": "direct-l",
        "split": "validation",
        "evaluations": 3,
        "train_steps": 6,
        "train_seconds": pytest.approx(results["tuned_search"]["train_seconds"]),
    }
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "found by direct-l on the validation split: 3 evaluation(s), 6 training steps" in report
    assert set(PhiTask.evaluated) == {"validation", "test"}  # the search, then the scores
