"""``ndwconv train`` and ``ndwconv compare``: the recipes on the command line.

Both take a task (``denoise``), a configuration (a built-in name or a TOML file, see
``ndwconv.recipes.config``) and overrides::

    ndwconv compare denoise --config quick
    ndwconv compare denoise --config bsd-cpu --data ../data/denoising --seeds 3
    ndwconv train denoise --config bsd --data ../data/denoising --method weighted \\
        --set train.steps=1000 --out runs/bsd-weighted
    torchrun --nproc_per_node 2 -m ndwconv train denoise --config quick

Volumes: ``--ndim 3`` (or 4) selects the volume recipe (default configuration ``mni``), and
``--data`` then lists training volumes (NIfTI or ``file.h5:/dataset``)::

    ndwconv compare denoise --config mni --seeds 3
    ndwconv train denoise --ndim 3 --data sub-01_T1w.nii.gz sub-02_T1w.nii.gz \\
        --noise rician:15 --density gaussian:1.0mm
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
        help="built-in configuration (see --list-configs) or a TOML file (default: quick; "
        "mni with --ndim 3 or more)",
    )
    parser.add_argument(
        "--list-configs", action="store_true", help="list the built-in configurations and exit"
    )
    parser.add_argument(
        "--data",
        nargs="+",
        metavar="PATH",
        help="images: the folder (ROOT) holding the configuration's relative data folders "
        "(e.g. Train400/ and BSD68/), required by every built-in image configuration but "
        "quick; volumes (--ndim ≥ 3): the training volumes, NIfTI files or file.h5:/dataset "
        "(default: the configuration's data.train)",
    )
    parser.add_argument(
        "--ndim",
        type=int,
        metavar="N",
        help="shorthand for --set model.ndim=N; 3 or more trains on volumes",
    )
    parser.add_argument(
        "--noise",
        metavar="KIND:SIGMA",
        help="shorthand for noise.kind and noise.sigma (volumes), e.g. rician:15 or "
        "gaussian:25; σ on the 0–255 scale",
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

    overrides = []
    if args.ndim is not None:
        overrides.append(f"model.ndim={args.ndim}")
    if args.noise is not None:
        kind, sep, sigma = args.noise.partition(":")
        if not sep or not sigma:
            raise ValueError(f"--noise must look like KIND:SIGMA (e.g. rician:15), got "
                             f"{args.noise!r}")
        overrides += [f"noise.kind={json.dumps(kind)}", f"noise.sigma={sigma}"]
    overrides += list(args.overrides)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if args.device is not None:
        overrides.append(f"train.device={json.dumps(args.device)}")
    if args.density is not None:
        overrides.append(f"weighted.density={json.dumps(args.density)}")
    name = args.config
    if name is None:
        name = "mni" if args.ndim is not None and args.ndim >= 3 else "quick"
    return load_config(name, [*overrides, *extra])


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
    from .denoise import make_task
    from .train import fit

    extra = [] if args.seed is None else [f"train.seed={args.seed}"]
    config = _config(args, extra)
    out = Path(args.out or f"runs/{args.task}-{config['name']}-{args.method}")
    task = make_task(config, args.method, args.data)
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
