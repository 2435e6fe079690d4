"""The engine is task-agnostic: a toy classification task, registered from this file, trains
with cross-entropy on integer labels, checkpoints, resumes bit-identically, learns then
freezes its densities, and goes through ``ndwconv compare``; and the layers import one way.
"""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("safetensors", reason="checkpoints need ndwconv[recipes]")

import ndwconv
from ndwconv.cli import main
from ndwconv.recipes.engine import (
    FreezeDensities,
    Metric,
    compare,
    fit,
    load_checkpoint,
)
from ndwconv.recipes.tasks import (
    TaskEntry,
    get_task,
    load_model,
    register_task,
    unregister_task,
)

ROOT = Path(__file__).resolve().parents[1]
CLASSES, LENGTH = 3, 12


class Blobs:
    """Sample ``i``: a length-12 signal with a bump in the third of its class, and the
    class as a Python int (the trainer must not turn labels into floats)."""

    def __init__(self, seed: int):
        self.seed = seed

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + i)
        label = int(torch.randint(CLASSES, (), generator=g))
        x = 0.5 * torch.randn(1, LENGTH, generator=g)
        x[0, label * 4 : label * 4 + 4] += 1.0
        return x, label


def build_toy(method: str, density: str | None) -> nn.Module:
    net = nn.Sequential(
        nn.Conv1d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * LENGTH, CLASSES)
    )
    if method == "weighted":
        ndwconv.convert(net, density, inplace=True)
    return net


class ToyTask:
    name = "toy"
    target_dtype = torch.long
    spatial_dims = 1

    def __init__(self, config, method, data=None):
        self.config, self.method = config, method
        self.density = config.get("weighted", {}).get("density", "table:0.5")
        self.dataset = Blobs(config.get("train", {}).get("seed", 0))
        self.held_out = [Blobs(10_000)[i] for i in range(60)]
        self.label_dtypes: set[torch.dtype] = set()

    def build_model(self) -> nn.Module:
        return build_toy(self.method, self.density)

    def loss(self, output, target):
        self.label_dtypes.add(target.dtype)
        return F.cross_entropy(output, target)

    def evaluate(self, model, device, final=True):
        x = torch.stack([s[0] for s in self.held_out]).to(device)
        y = torch.tensor([s[1] for s in self.held_out], device=device)
        return {"accuracy": 100.0 * float((model(x).argmax(1) == y).float().mean())}

    def describe(self):
        density = self.density if self.method == "weighted" else None
        return {"method": self.method, "model": {"name": "toy"}, "density": density}


TOY = TaskEntry(
    name="toy",
    help="a tiny 1-D classifier on synthetic bumps",
    metrics=(Metric("accuracy", "accuracy", higher_is_better=True, digits=1, unit="%"),),
    make=ToyTask,
    check_config=lambda config: None,
    build_model=lambda config, method: build_toy(
        method, config.get("weighted", {}).get("density", "table:0.5")
    ),
    model_from_description=lambda d: build_toy(d["method"], d["density"]),
)


@pytest.fixture(autouse=True)
def toy_registered():
    register_task(TOY, replace=True)
    yield
    unregister_task("toy")


def toy_config(steps=12, **train):
    return {
        "task": "toy",
        "name": "toy",
        "weighted": {"density": "table:0.5"},
        "train": {"steps": steps, "batch_size": 8, "log_every": 4, "threads": 1, **train},
        "optim": {"lr": 0.05},
        "schedule": {"name": "cosine"},
    }


class StopAt:
    """A dataset that fails when sample ``stop`` is asked for (a crash mid-run)."""

    def __init__(self, dataset, stop):
        self.dataset, self.stop = dataset, stop

    def __getitem__(self, i):
        if i >= self.stop:
            raise RuntimeError("crash")
        return self.dataset[i]


def test_toy_task_trains_with_integer_labels_and_cross_entropy(tmp_path):
    task = ToyTask(toy_config(steps=40), "weighted")
    result = fit(task, toy_config(steps=40), tmp_path, progress=False)
    assert task.label_dtypes == {torch.long}
    assert result.metrics["accuracy"] > 80.0  # chance is 33 %
    _, sidecar = load_checkpoint(result.checkpoint)
    assert sidecar["task"] == "toy" and sidecar["step"] == 40
    assert sidecar["densities"] == {"0": "table:0.5"}
    rebuilt = load_model(result.checkpoint)
    x = torch.stack([Blobs(5)[i][0] for i in range(16)])
    torch.testing.assert_close(rebuilt(x), result.model(x), rtol=0, atol=0)


@pytest.mark.parametrize("hooks", [(), (FreezeDensities(3),)], ids=["plain", "freeze-at-3"])
def test_toy_task_resumes_bit_identically(tmp_path, hooks):
    cfg = toy_config(steps=8, checkpoint_every=0)
    if hooks:
        cfg["weighted"]["density"] = "learned:0.5"
        cfg["optim"]["density_lr"] = 0.05
    straight = fit(ToyTask(cfg, "weighted"), cfg, tmp_path / "a", progress=False, hooks=hooks)
    crashing = ToyTask(cfg, "weighted")
    crashing.dataset = StopAt(crashing.dataset, 5 * 8)  # fails in step 6
    with pytest.raises(RuntimeError, match="crash"):
        fit(crashing, cfg, tmp_path / "b", progress=False, hooks=hooks)
    _, sidecar = load_checkpoint(tmp_path / "b" / "checkpoints" / "step-00000005.json")
    assert sidecar["step"] == 5
    resumed = fit(
        ToyTask(cfg, "weighted"), cfg, tmp_path / "b", resume=True, progress=False, hooks=hooks
    )
    assert resumed.step == 8
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    if hooks:  # frozen: no learned density is left, and the frozen values did move
        assert not any(k.startswith("0.phi.") for k in a)
        frozen = dict(ndwconv.weighted_layers(straight.model))["0"].density
        assert frozen.to_spec()["family"] == "table" and str(frozen) != "table:0.5"


def test_toy_task_goes_through_compare(tmp_path):
    results = compare(get_task("toy"), toy_config(steps=30), seeds=[0, 1], out_dir=tmp_path,
                      progress=False)
    assert [(r["seed"], r["method"]) for r in results["runs"]] == [
        (0, "standard"), (0, "weighted"), (1, "standard"), (1, "weighted")
    ]
    # both arms start from the same initial weights: the checkpoints' first layers differ
    # only through training, and the paired differences are those of the runs
    s, w = results["summary"]["standard"], results["summary"]["weighted"]
    diffs = results["summary"]["difference"]["accuracy_per_seed"]
    runs = {(r["seed"], r["method"]): r["accuracy"] for r in results["runs"]}
    assert diffs == [runs[(i, "weighted")] - runs[(i, "standard")] for i in (0, 1)]
    assert s["accuracy"] == pytest.approx((runs[(0, "standard")] + runs[(1, "standard")]) / 2)
    assert w["accuracy"] > 60.0
    report = (tmp_path / "report.md").read_text("utf-8")
    assert "| method | accuracy (%) | seeds |" in report
    assert "Weighted − standard accuracy:" in report
    assert json.loads((tmp_path / "results.json").read_text("utf-8"))["task"] == "toy"


def test_the_command_line_is_built_from_the_registry(tmp_path, capsys):
    config = tmp_path / "toy.toml"
    config.write_text(
        'task = "toy"\n[weighted]\ndensity = "table:0.5"\n'
        "[train]\nsteps = 6\nbatch_size = 8\nthreads = 1\n[optim]\nlr = 0.05\n",
        "utf-8",
    )
    code = main(["compare", "toy", "--config", str(config), "--seeds", "2", "--quiet",
                 "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "| weighted − standard |" in out and "accuracy" in out
    # a configuration names its task: another task refuses it
    code = main(["train", "denoise", "--config", str(config), "--out", str(tmp_path / "x")])
    assert code == 1
    assert "is for the task 'toy', not 'denoise'" in capsys.readouterr().err


def test_a_density_that_does_not_fit_fails_before_any_training(tmp_path, capsys):
    out = tmp_path / "run"
    start = time.perf_counter()
    code = main(["compare", "denoise", "--config", "quick", "--density", "table:0.2,0.8",
                 "--out", str(out)])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 1
    assert "weighted model" in err and "'body.0'" in err, err  # names the misfit layer
    assert not out.exists()
    assert elapsed < 5.0  # built once without data; no image was read, nothing trained


# ---------------------------------------------------------------------------------------
# Layers import one way: core ← adapters ← recipes; the engine never imports a task
# ---------------------------------------------------------------------------------------

PACKAGES = {"ndwconv": ROOT / "ndwconv", "ndwconv.adapters": ROOT / "adapters",
            "ndwconv.recipes": ROOT / "recipes"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (never imported at run time)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = child.test if isinstance(child, ast.If) else None
            if test is not None and "TYPE_CHECKING" in ast.unparse(test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``name`` imports anywhere in its file (lazy imports too)."""
    is_package = path.name == "__init__.py"
    targets = set()
    for node in _runtime_nodes(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:  # `from pkg import submodule` needs the submodule
                sub = f"{module}.{alias.name}"
                targets.add(sub if sub in modules else module)
    return {t for t in targets if t in modules and t != name}


def test_layers_import_in_one_direction_without_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    layer = {
        name: "recipes" if name.startswith("ndwconv.recipes")
        else "adapters" if name.startswith("ndwconv.adapters") else "core"
        for name in modules
    }
    allowed = {"core": {"core"}, "adapters": {"core", "adapters"},
               "recipes": {"core", "adapters", "recipes"}}
    wrong = [(a, b) for a, deps in graph.items() for b in deps if layer[b] not in allowed[layer[a]]]
    assert not wrong, wrong
    engine = [(a, b) for a, deps in graph.items() for b in deps
              if a.startswith("ndwconv.recipes.engine") and b.startswith("ndwconv.recipes.tasks")]
    assert not engine, engine
    assert graph.get("ndwconv.recipes.engine.trainer")

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*path, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    # a package importing its own submodules is not a cycle unless a submodule imports back
    cycles = [c for c in map(cycle_from, graph) if c]
    assert not cycles, cycles[0]
