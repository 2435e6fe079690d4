"""``ndwconv train`` and ``ndwconv compare``: every registered task on the command line.

Each command has one subcommand per task in ``ndwconv.recipes.tasks`` (``denoise``), built
from the registry: the flags every task shares (configuration, overrides, output folder,
device, density, resume) plus the task's own (denoising: ``--ndim``, ``--noise``)::

    ndwconv compare denoise --config quick
    ndwconv compare denoise --config bsd-cpu --data ../data/denoising --seeds 3
    ndwconv train denoise --config bsd --data ../data/denoising --method weighted \\
        --set train.steps=1000 --out runs/bsd-weighted
    torchrun --nproc_per_node 2 -m ndwconv train denoise --config quick

A configuration (a built-in name or a TOML file, see ``ndwconv.recipes.engine.config``)
says which task it is for (``task = "denoise"``); giving it to another task is an error.
Every ``--set`` override is checked, also where a shorthand flag (``--steps``,
``--device``, ``--density``, ``--seed``, a task's own) names the same key (the two must
agree) and where a later ``--set`` of the same key wins. The output folder
(``-o``/``--out``) is checked before any data or model is built, and it is locked while
the run writes into it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .engine.arms import ARM_HELP, ARMS
from .engine.distributed import DEVICE_HELP

__all__ = ["compare_command", "train_command"]


def _common(parser: argparse.ArgumentParser, data_help: str, out_default: str) -> None:
    parser.add_argument(
        "--config",
        help="built-in configuration (see --list-configs) or a TOML file (default: the "
        "task's, e.g. quick)",
    )
    parser.add_argument(  # SUPPRESS: `compare --list-configs TASK` keeps the flag
        "--list-configs",
        action="store_true",
        default=argparse.SUPPRESS,
        help="list the built-in configurations and exit",
    )
    parser.add_argument("--data", nargs="+", metavar="PATH", help=data_help)
    parser.add_argument(
        "-o", "--out", metavar="DIR", help=f"output folder (default: {out_default})"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a configuration value, e.g. --set train.steps=200 (repeatable)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="shorthand for --set train.steps=N; with --resume, a larger N extends the run "
        "(the learning-rate schedule is laid out for the new total from the resumed step on)",
    )
    parser.add_argument(
        "--device",
        help=f"shorthand for --set train.device=D: {DEVICE_HELP}; under torchrun each "
        "process takes cuda:LOCAL_RANK when CUDA is used",
    )
    parser.add_argument(
        "--density",
        metavar="SPEC",
        help="shorthand for --set weighted.density=SPEC (e.g. table:0.7, gaussian:1.2)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run(s) already in the output folder (to a larger --steps: extend them)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _task_parsers(
    parser: argparse.ArgumentParser, command: str, out_default: str, example: str
) -> list[argparse.ArgumentParser]:
    """One subparser per registered task under ``parser``, with the shared flags."""
    from .tasks import get_task, task_names

    parser.add_argument(
        "--list-configs", action="store_true", help="list the built-in configurations and exit"
    )
    sub = parser.add_subparsers(dest="task", metavar="TASK", title="tasks")
    made = []
    for name in task_names():
        entry = get_task(name)
        task_parser = sub.add_parser(
            name,
            help=entry.help,
            description=parser.description,
            epilog=f"example: {example.format(task=name)}",
        )
        _common(task_parser, entry.data_help, out_default)
        entry.add_arguments(task_parser)
        made.append(task_parser)
    return made


def train_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ndwconv train``."""
    parser = subparsers.add_parser(
        "train",
        help="train one model of a task (also under torchrun)",
        description="Train one model of a task: checkpoints, metrics.jsonl and curves.png "
        "go to the output folder. Runs distributed under torchrun --nproc_per_node N, where "
        "train.batch_size (the global batch) must be divisible by N.",
        epilog="example: ndwconv train denoise --config quick --method weighted --steps 200",
    )
    example = "ndwconv train {task} --config quick --method weighted --steps 200"
    for task_parser in _task_parsers(parser, "train", "runs/TASK-CONFIG-METHOD", example):
        task_parser.add_argument(
            "--method",
            choices=("standard", "weighted"),
            default="weighted",
            help="plain convolutions, or made weighted with [weighted] density (default: weighted)",
        )
        task_parser.add_argument("--seed", type=int, help="shorthand for --set train.seed=N")
    parser.set_defaults(func=_train, command="train")


def compare_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ndwconv compare``."""
    parser = subparsers.add_parser(
        "compare",
        help="standard vs weighted (and more arms): same initial weights, data and budget, "
        "several seeds",
        description="Train the standard and the weighted model of a task (and the further "
        "arms --arms names) from the same initial weights, on the same samples, for the same "
        "budget, for each seed, each at its own learning rate with --lr-sweep; write "
        "report.md, figure.png, per-item scores and results.json, and print the table. "
        "Runs in one process (not under torchrun).",
        epilog="example: ndwconv compare denoise --config quick --seeds 2",
    )
    example = "ndwconv compare {task} --config quick --seeds 2"
    for task_parser in _task_parsers(parser, "compare", "runs/compare-TASK-CONFIG", example):
        task_parser.add_argument(
            "--seeds",
            type=int,
            metavar="N",
            help="train with seeds 0 … N−1 (default: the config's compare.seeds); the "
            "comparison sets train.seed itself",
        )
        task_parser.add_argument(
            "--arms",
            type=_arm_list,
            metavar="A,B,…",
            help="the arms to train, standard among them (shorthand for compare.arms; "
            "default standard,weighted): " + "; ".join(f"{k}: {v}" for k, v in ARM_HELP.items()),
        )
        task_parser.add_argument(
            "--tuned",
            metavar="PATH_OR_SPEC",
            help="the weighted-tuned arm's density: a density file (ndwconv tune -o …) or a "
            "spec (shorthand for compare.tuned)",
        )
        task_parser.add_argument(
            "--lr-sweep",
            type=_rate_list,
            metavar="R1,R2,…",
            help="choose each arm's learning rate from these, by the primary metric on the "
            'validation split (tune.split = "validation", seed = the first seed), before the '
            "final runs (shorthand for compare.lr_sweep), e.g. 3e-4,1e-3,3e-3",
        )
        task_parser.add_argument(
            "--sweep-steps",
            type=int,
            metavar="N",
            help="training steps of each sweep run (shorthand for compare.sweep_steps; "
            "default train.steps)",
        )
    parser.set_defaults(func=_compare, command="compare")


def _arm_list(text: str) -> list[str]:
    """``--arms``: comma-separated arm names (checked against ``ARMS``)."""
    arms = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise argparse.ArgumentTypeError(
            f"unknown arm {unknown[0]!r} (known: {', '.join(ARMS)})"
            if unknown
            else f"name the arms, e.g. standard,weighted (known: {', '.join(ARMS)})"
        )
    return arms


def _rate_list(text: str) -> list[float]:
    """``--lr-sweep``: comma-separated positive learning rates."""
    rates = []
    for part in text.split(","):
        try:
            rate = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} is not a learning rate (give numbers, e.g. 3e-4,1e-3,3e-3)"
            ) from None
        if not (rate > 0 and rate < float("inf")):
            raise argparse.ArgumentTypeError(f"learning rates must be positive, got {part!r}")
        rates.append(rate)
    return rates


def _list_configs(task: str | None) -> int:
    """The built-in configurations of ``task`` (all of them, with their task, without one)."""
    from .engine.config import builtin_configs
    from .tasks import get_task

    if task is not None:
        get_task(task)  # an unknown task is an error, not an empty list
        for name, line in builtin_configs(task).items():
            print(f"{name:20s} {line}")
        return 0
    from .tasks import task_names

    owner = {name: t for t in task_names() for name in builtin_configs(t)}
    for name, line in builtin_configs().items():
        print(f"{name:20s} {owner.get(name, '-'):10s} {line}")
    return 0


def _entry(args: argparse.Namespace) -> Any:
    from .tasks import get_task, task_names

    if args.task is None:
        raise ValueError(
            f"name the task ({', '.join(task_names())}), e.g. `ndwconv {args.command} "
            "denoise --config quick`"
        )
    return get_task(args.task)


def _config(entry: Any, args: argparse.Namespace, extra: list[tuple[str, str]]) -> dict[str, Any]:
    """The configuration: ``--config`` with every override applied and checked.

    ``extra`` holds ``(flag, override)`` pairs of command-specific shorthands.
    """
    from .engine.config import apply_overrides, load_config, parse_override, validate
    from .engine.distributed import resolve_device

    shorthands: list[tuple[str, str]] = [
        (f"a {entry.name} flag", text) for text in entry.overrides(args)
    ]
    if args.steps is not None:
        shorthands.append(("--steps", f"train.steps={args.steps}"))
    if args.device is not None:
        resolve_device(args.device, "--device")
        shorthands.append(("--device", f"train.device={json.dumps(args.device)}"))
    if args.density is not None:
        shorthands.append(("--density", f"weighted.density={json.dumps(args.density)}"))
    shorthands += extra
    given: dict[tuple[str, ...], str] = {}
    superseded: list[str] = []  # a repeated --set: the last one wins, each is checked
    for text in args.overrides:
        path = tuple(parse_override(text)[0])
        if path in given:
            superseded.append(given[path])
        given[path] = text
    for flag, text in shorthands:
        path, value = parse_override(text)
        if tuple(path) in given:
            _, other = parse_override(given[tuple(path)])
            if other != value:
                raise ValueError(
                    f"{'.'.join(path)} is given twice, as {value!r} ({flag}) and as {other!r} "
                    f"(--set {given[tuple(path)]}); give it once"
                )
    config = load_config(
        entry.config_name(args), [*args.overrides, *(text for _, text in shorthands)]
    )
    task = config.get("task", entry.name)
    if task != entry.name:
        raise ValueError(
            f"configuration {config['name']!r} is for the task {task!r}, not {entry.name!r}: "
            f"run `ndwconv {args.command} {task} --config {config['name']}`"
        )
    validate(config)
    for text in superseded:
        variant = apply_overrides(config, [text])
        validate(variant)
        entry.check_config(variant)
    return config


def _output_folder(args: argparse.Namespace, default: str) -> Path:
    """``-o/--out`` (or ``default``), checked before any work."""
    from .engine.lock import check_output_folder

    return check_output_folder(Path(args.out or default), "--out" if args.out else "output folder")


def _train(args: argparse.Namespace) -> int:
    if args.list_configs:
        return _list_configs(args.task)
    entry = _entry(args)
    from .engine.compare import check_fit
    from .engine.trainer import fit

    extra = [] if args.seed is None else [("--seed", f"train.seed={args.seed}")]
    config = _config(entry, args, extra)
    entry.check_config(config)
    out = _output_folder(args, f"runs/{entry.name}-{config['name']}-{args.method}")
    check_fit(entry, config)
    task = entry.make(config, args.method, args.data)
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
        return _list_configs(args.task)
    entry = _entry(args)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "compare runs in one process; under torchrun use `ndwconv train` for each method"
        )
    from .engine.arms import compare_settings
    from .engine.compare import compare, format_table, verdict

    flags = {
        "seeds": ("--seeds", args.seeds),
        "arms": ("--arms", args.arms),
        "tuned": ("--tuned", args.tuned),
        "lr_sweep": ("--lr-sweep", args.lr_sweep),
        "sweep_steps": ("--sweep-steps", args.sweep_steps),
    }
    given = {key: flag for key, (flag, value) in flags.items() if value is not None}
    extra = []
    for key, flag in given.items():
        value = flags[key][1]
        if key == "tuned":
            path = Path(value).expanduser()  # a file is recorded by its absolute path
            value = str(path.resolve()) if path.is_file() else value
        extra.append((flag, f"compare.{key}={json.dumps(value)}"))
    config = _config(entry, args, extra)
    seeds = config.get("compare", {}).get("seeds", 1)
    source = given.get("seeds", "compare.seeds")
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"{source} must be an integer ≥ 1, got {seeds!r}")
    compare_settings(config, given)  # the message names the flag that gave a bad value
    out = _output_folder(args, f"runs/compare-{entry.name}-{config['name']}")
    results = compare(
        entry, config, range(seeds), out, args.data, resume=args.resume, progress=not args.quiet
    )
    print(format_table(results))
    print()
    print(verdict(results))
    print(f"report: {out / 'report.md'}", file=sys.stderr)
    return 0
