"""``ndwconv train`` and ``ndwconv compare``: the recipes on the command line.

Both take a task (``denoise``), a configuration (a built-in name or a TOML file, see
``ndwconv.recipes.config``) and overrides::

    ndwconv compare denoise --config quick
    ndwconv compare denoise --config bsd-cpu --data ../data/denoising --seeds 3
    ndwconv train denoise --config bsd --data ../data/denoising --method weighted \\
        --set train.steps=1000 --out runs/bsd-weighted
    torchrun --nproc_per_node 2 -m ndwconv train denoise --config quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["compare_command", "train_command"]

TASKS = ("denoise",)


def _common(parser: argparse.ArgumentParser, out_default: str) -> None:
    parser.add_argument(
        "task", nargs="?", choices=TASKS, help="the recipe (required unless --list-configs)"
    )
    parser.add_argument(
        "--config",
        default="quick",
        help="built-in configuration (see --list-configs) or a TOML file (default: quick)",
    )
    parser.add_argument(
        "--list-configs", action="store_true", help="list the built-in configurations and exit"
    )
    parser.add_argument(
        "--data",
        metavar="ROOT",
        help="folder holding the configuration's relative data folders (e.g. Train400/ and "
        "BSD68/); required by every built-in configuration but quick, which uses images "
        "bundled with scikit-image",
    )
    parser.add_argument("--out", metavar="DIR", help=f"output folder (default: {out_default})")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a configuration value, e.g. --set train.steps=200 (repeatable)",
    )
    parser.add_argument("--steps", type=int, metavar="N", help="shorthand for --set train.steps=N")
    parser.add_argument(
        "--device",
        help="shorthand for --set train.device=D: auto (default), cpu, cuda or cuda:N; under "
        "torchrun each process takes cuda:LOCAL_RANK when CUDA is used",
    )
    parser.add_argument(
        "--density",
        metavar="SPEC",
        help="shorthand for --set weighted.density=SPEC (e.g. table:0.7, gaussian:1.2)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run(s) already in the output folder"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def train_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ndwconv train``."""
    parser = subparsers.add_parser(
        "train",
        help="train one model of a recipe (also under torchrun)",
        description="Train one model of a recipe: checkpoints, metrics.jsonl and curves.png "
        "go to the output folder. Runs distributed under torchrun --nproc_per_node N, where "
        "train.batch_size (the global batch) must be divisible by N.",
        epilog="example: ndwconv train denoise --config quick --method weighted --steps 200",
    )
    _common(parser, "runs/TASK-CONFIG-METHOD")
    parser.add_argument(
        "--method",
        choices=("standard", "weighted"),
        default="weighted",
        help="plain convolutions, or made weighted with [weighted] density (default: weighted)",
    )
    parser.add_argument("--seed", type=int, help="shorthand for --set train.seed=N")
    parser.set_defaults(func=_train, command="train")


def compare_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ndwconv compare``."""
    parser = subparsers.add_parser(
        "compare",
        help="standard vs weighted: same initial weights, data and budget, several seeds",
        description="Train the standard and the weighted model of a recipe from the same "
        "initial weights, on the same samples, for the same budget, for each seed; write "
        "report.md, figure.png, per_image.csv and results.json, and print the table. "
        "Runs in one process (not under torchrun).",
        epilog="example: ndwconv compare denoise --config quick --seeds 2",
    )
    _common(parser, "runs/compare-TASK-CONFIG")
    parser.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help="train with seeds 0 … N−1 (default: the config's compare.seeds); the comparison "
        "sets train.seed itself",
    )
    parser.set_defaults(func=_compare, command="compare")


def _list_configs() -> int:
    from .config import builtin_configs

    for name, line in builtin_configs().items():
        print(f"{name:20s} {line}")
    return 0


def _config(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    from .config import load_config

    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if args.device is not None:
        overrides.append(f"train.device={json.dumps(args.device)}")
    if args.density is not None:
        overrides.append(f"weighted.density={json.dumps(args.density)}")
    return load_config(args.config, [*overrides, *extra])


def _task(args: argparse.Namespace) -> None:
    if args.task is None:
        raise ValueError(
            f"name the task ({', '.join(TASKS)}), e.g. `ndwconv {args.command} "
            "denoise --config quick`"
        )


def _train(args: argparse.Namespace) -> int:
    if args.list_configs:
        return _list_configs()
    _task(args)
    from .denoise import DenoiseTask
    from .train import fit

    extra = [] if args.seed is None else [f"train.seed={args.seed}"]
    config = _config(args, extra)
    out = Path(args.out or f"runs/{args.task}-{config['name']}-{args.method}")
    task = DenoiseTask(config, args.method, args.data)
    result = fit(
        task,
        config,
        out,
        resume=args.resume,
        progress=not args.quiet,
        description=f"{args.method}",
    )
    if int(os.environ.get("RANK", "0")) == 0:
        scores = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
        print(f"{args.method}: {result.step} steps, {scores} (checkpoint {result.checkpoint})")
    return 0


def _compare(args: argparse.Namespace) -> int:
    if args.list_configs:
        return _list_configs()
    _task(args)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "compare runs in one process; under torchrun use `ndwconv train` for each method"
        )
    from .denoise import compare, format_table, verdict

    config = _config(args, [])
    if args.seeds is not None:
        seeds, source = args.seeds, "--seeds"
    else:
        seeds, source = config.get("compare", {}).get("seeds", 1), "compare.seeds"
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"{source} must be an integer ≥ 1, got {seeds!r}")
    out = Path(args.out or f"runs/compare-{args.task}-{config['name']}")
    results = compare(
        config, range(seeds), out, args.data, resume=args.resume, progress=not args.quiet
    )
    print(format_table(results))
    print()

    print(verdict(results))
    print(f"report: {out / 'report.md'}", file=sys.stderr)
    return 0
