"""The ``ndwconv`` command line: one entry point, one subcommand per capability.

Subcommands are owned by the layer that implements them and found through the
``ndwconv.commands`` entry-point group, so the core never imports the adapters or recipes
layers. An entry point names a callable ``register(subparsers)`` that adds its subparser
(with ``help``, an epilog example and ``set_defaults(func=...)``); ``func(args)`` returns
the exit code. The core's own ``info`` is registered directly, so it also works from a
source tree that is not installed.

Failures exit non-zero with a one-line reason on stderr (``ndwconv: error: ...``); the
global ``--debug`` flag shows the traceback instead.

Example:
    >>> main(["--version"])  # doctest: +ELLIPSIS
    ndwconv ... (torch ...)
    0
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, entry_points, version

import numpy as np
import torch

import ndwconv
from ndwconv._install import install_hint

__all__ = ["COMMAND_GROUP", "build_parser", "info_command", "main", "one_line", "positive_int"]

COMMAND_GROUP = "ndwconv.commands"
"""Entry-point group whose callables ``register(subparsers)`` add subcommands."""

Register = Callable[[argparse._SubParsersAction], object]

# Example spec strings of the built-in families; other families show their defaults.
_FAMILY_EXAMPLES = {
    "ones": "ones",
    "table": "table:0.7",
    "gaussian": "gaussian:1.2",
    "learned": "learned:0.25,0.15,0.55",
}

# Optional distributions worth reporting, with the extra that installs each.
_OPTIONAL = {"scikit-image": "recipes", "matplotlib": "plot"}

# Exceptions whose message is meant for the user (torch reports bad input as RuntimeError);
# anything else is reported with its type so that a bug is not mistaken for bad input.
_USER_ERRORS = (ValueError, TypeError, OSError, ImportError, RuntimeError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ndwconv`` command line.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 2 for a usage error or a missing subcommand, the
        command's own code otherwise (1 when it raised).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("ndwconv: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        print(f"ndwconv: error: {one_line(err)}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with ``info`` and every command registered by entry points."""
    parser = argparse.ArgumentParser(
        prog="ndwconv",
        description="N-dimensional weighted convolution for PyTorch: conv(x, W ⊙ Φ).",
        epilog="examples:\n  ndwconv info\n  ndwconv compare denoise --config quick\n"
        "  ndwconv COMMAND --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"ndwconv {ndwconv.__version__} (torch {torch.__version__})",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback when a command fails"
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    info_command(subparsers)
    for name, register in _discovered_commands():
        if name in subparsers.choices:  # the core's own commands come first
            continue
        _register_safely(subparsers, name, register)
    # ``ndwconv info --debug`` works as well as ``ndwconv --debug info`` (and so does
    # ``ndwconv compare denoise … --debug`` for commands with subcommands of their own)
    for sub in subparsers.choices.values():
        _add_debug(sub)
    return parser


def _add_debug(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and its own subcommands a ``--debug`` flag (SUPPRESS keeps the
    global value when the flag is not repeated after the command)."""
    try:
        parser.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show the full traceback when the command fails",
        )
    except argparse.ArgumentError:  # the command defines its own --debug
        pass
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for nested in action.choices.values():
                _add_debug(nested)


def _discovered_commands() -> list[tuple[str, Register | BaseException]]:
    """``(name, register callable or the error that loading it raised)``, sorted by name."""
    found: dict[str, Register | BaseException] = {}
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: ep.name):
        if ep.name in found:  # the same distribution seen twice on sys.path
            continue
        try:
            found[ep.name] = ep.load()
        except Exception as err:
            found[ep.name] = err
    return list(found.items())


def _register_safely(
    subparsers: argparse._SubParsersAction, name: str, register: Register | BaseException
) -> None:
    """Call ``register(subparsers)``; a command that cannot load fails only when it is run."""
    if not isinstance(register, BaseException):
        try:
            register(subparsers)
            return
        except Exception as err:
            register = err
    if name in subparsers.choices:
        return
    error = register

    def unavailable(args: argparse.Namespace) -> int:
        raise RuntimeError(f"command {name!r} is unavailable: {one_line(error)}") from error

    sub = subparsers.add_parser(name, help=f"(unavailable: {one_line(error)})")
    sub.set_defaults(func=unavailable)


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (a clear usage error otherwise).

    Example:
        >>> positive_int("3")
        3
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 1, got {text!r}")
    return value


def one_line(err: BaseException) -> str:
    """An exception as one line: its message, prefixed by its type unless it is user-facing."""
    message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    if isinstance(err, _USER_ERRORS) and message:
        return message
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


# ---------------------------------------------------------------------------------------
# ndwconv info
# ---------------------------------------------------------------------------------------


def info_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ndwconv info``: versions, devices and density families."""
    sub = subparsers.add_parser(
        "info",
        help="show versions, devices and the registered density families",
        description=(
            "Show the versions of ndwconv, PyTorch, NumPy and Python, the CPU threads,\n"
            "the CUDA/MPS devices, and every registered density family with an example\n"
            "spec for --density."
        ),
        epilog="example:\n  ndwconv info",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(func=_info)


def _info(args: argparse.Namespace) -> int:
    for line in _info_lines():
        print(line)
    return 0


def _info_lines() -> list[str]:
    """The report printed by ``ndwconv info``, one string per line."""
    rows = [
        ("ndwconv", ndwconv.__version__),
        ("torch", torch.__version__),
        ("numpy", np.__version__),
        ("python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("platform", platform.platform()),
        ("cpu threads", f"{torch.get_num_threads()} used by torch, {os.cpu_count()} logical CPUs"),
        *_device_rows(),
        *((dist, _optional_version(dist, extra)) for dist, extra in _OPTIONAL.items()),
    ]
    width = max(len(key) for key, _ in rows)
    lines = [f"{key:<{width}}  {value}" for key, value in rows]
    lines += ["", "density families (use with --density):"]
    families = _family_rows()
    width = max(len(name) for name, _, _ in families)
    for name, example, summary in families:
        lines.append(f"  {name:<{width}}  {example}")
        if summary:
            lines.append(f"  {'':<{width}}    {summary}")
    return lines


def _device_rows() -> list[tuple[str, str]]:
    if torch.cuda.is_available():
        names = [f"{i}: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
        cuda = f"available (CUDA {torch.version.cuda}); " + "; ".join(names)
    else:
        cuda = "not available"
    mps_backend = getattr(torch.backends, "mps", None)
    mps = "available" if mps_backend is not None and mps_backend.is_available() else "not available"
    return [("cuda", cuda), ("mps", mps)]


def _optional_version(dist: str, extra: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return f"not installed ({install_hint(extra)})"


def _family_rows() -> list[tuple[str, str, str]]:
    """``(name, example spec, one-line summary)`` for ``default`` and every family."""
    table = "; ".join(
        f"{k}=" + ",".join(f"{v:g}" for v in values) for k, values in ndwconv.Table.DEFAULT.items()
    )
    rows = [("default", "default", f"Table of the reference values {table}")]
    for name, family in sorted(ndwconv.registered_families().items()):
        rows.append((name, _FAMILY_EXAMPLES.get(name) or _example_spec(family), _summary(family)))
    return rows


def _example_spec(family: type[ndwconv.Density]) -> str:
    """``str()`` of the family built with its default arguments, or the bare name."""
    try:
        return str(family.from_params({}))
    except Exception:  # a user family without defaults: its name is all we can show
        return f"{family.family}:{{...}}"


def _summary(family: type[ndwconv.Density]) -> str:
    doc = (family.__doc__ or "").strip()
    return doc.splitlines()[0].strip().replace("``", "") if doc else ""
