"""``ndwconv tune``: search a density for any task's configuration.

::

    ndwconv tune --config quick-classify --method direct-l --budget 20 -o densities.json
    ndwconv tune --config quick --method learn-freeze --steps 400 -o learned.json
    ndwconv compare denoise --config quick --density densities.json
    torchrun --nproc_per_node 2 -m ndwconv tune --config quick -o densities.json  # DDP
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ndwconv.cli import positive_int

__all__ = ["tune_command"]


def tune_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ndwconv tune``."""
    from .run import METHODS
    from .space import SHARES

    parser = subparsers.add_parser(
        "tune",
        help="search a density (DIRECT-L, line search, learn-then-freeze) on a validation split",
        description="Search the density of a task's weighted model on a part held out of "
        "its training data (tune.split = validation; the test split is never read): every "
        "evaluation trains from the same initial weights, data order and noise and reads the "
        "task's primary metric. Writes the density file (-o), which --density, "
        "ndwconv.convert and Table.load accept, and RUNS/search.png, RUNS/evaluations.jsonl. "
        "Under torchrun --nproc_per_node N the ranks train each evaluation together "
        "(data-parallel, as ndwconv train does); rank 0 searches and writes.",
        epilog="example: ndwconv tune --config quick-classify --method direct-l --budget 20 "
        "-o densities.json",
    )
    parser.add_argument("--config", required=True, help="built-in configuration or TOML file")
    parser.add_argument("--task", help="the task (default: the configuration's `task`)")
    parser.add_argument(
        "--method", choices=METHODS, help="search method (default: tune.method, else direct-l)"
    )
    parser.add_argument(
        "--budget", type=positive_int, metavar="N", help="evaluations (default: tune.budget, 20)"
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        metavar="N",
        help="training steps per evaluation (default: tune.steps, else the configuration's)",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        metavar="R",
        help="train each point R times (seeds tune.seed …) and score the mean (default 1)",
    )
    parser.add_argument(
        "--share", choices=SHARES, help="one profile per kernel size (default), or per layer"
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="the density file to write (.json)"
    )
    parser.add_argument(
        "--runs", metavar="DIR", help="the search's folder (default: FILE without .json + .search)"
    )
    parser.add_argument(
        "--data", nargs="+", metavar="PATH", help="the task's data (see its --help)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a configuration value, e.g. --set tune.holdout=0.25 (repeatable)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="evaluations run at once, in N processes (not under torchrun)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the search logged in --runs"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_tune, command="tune")


def _tune(args: argparse.Namespace) -> int:
    from ..engine.config import load_config, validate
    from ..engine.distributed import shard
    from ..tasks import get_task
    from .run import tune

    config = load_config(args.config, args.overrides)
    name = args.task or config.get("task")
    if name is None:
        raise ValueError(f"configuration {args.config!r} names no task: pass --task")
    entry = get_task(name)
    if config.get("task", name) != name:
        raise ValueError(
            f"configuration {args.config!r} is for task {config['task']!r}, not {name!r}"
        )
    validate(config)
    entry.check_config(config)
    result = tune(
        entry,
        config,
        Path(args.output),
        args.runs,
        args.data,
        method=args.method,
        budget=args.budget,
        steps=args.steps,
        share=args.share,
        repeats=args.repeats,
        workers=args.workers,
        resume=args.resume,
        progress=not args.quiet,
    )
    if shard()[0] != 0:  # under torchrun rank 0 reports
        return 0
    meta: dict[str, Any] = dict(result.densities.meta)
    found = result.densities
    what = str(found.shared) if found.shared is not None else f"{len(found.layers)} layer tables"
    print(
        f"{meta['method']}: {what}; validation {result.metric} {result.value:.4g} "
        f"after {meta['evaluations']} evaluation(s), {result.train_steps} training steps "
        f"({result.train_seconds / 60:.1f} min)"
    )
    for edge in result.at_bounds:
        print(
            f"note: the best {edge['label']} = {edge['value']:.4g} lies on the {edge['bound']} "
            "bound of its range; the optimum may lie outside it (widen the range with "
            "tune.bounds)",
            file=sys.stderr,
        )
    print(f"density file: {args.output}", file=sys.stderr)
    if result.figure is not None:
        print(f"figure: {result.figure}", file=sys.stderr)
    return 0
