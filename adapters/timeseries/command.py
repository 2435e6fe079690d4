"""``ndwconv smooth``: smooth NetCDF-4/HDF5 time series along a dimension, streamed.

Each input's variable ``--var`` is filtered by :func:`ndwconv.adapters.timeseries.smooth`
(a normalised weighted moving average whose weights follow ``--density``) along ``--dim``
and written to ``OUTPUT_DIR/<input file name>`` by
:func:`ndwconv.adapters.timeseries.netcdf.filter_file`: chunk by chunk (a file larger than
memory streams through), with every other variable, coordinate and attribute unchanged,
the variable's attributes and encoding (dtype, ``_FillValue``, packing, compression,
chunks) kept, atomically; an input is never written to.

Before anything is computed, the output folder, every input and every output are checked
(a missing input, an input listed twice, two inputs with one output name, an output that
is an input, an existing output without ``--overwrite``, an unknown ``--var``/``--dim``,
non-numeric values); a file that fails is reported on one line and the others go on
(exit code 1).

Example::

    ndwconv smooth obs.nc -o out/ --var temp --dim time --density gaussian:6h
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from ndwconv.cli import one_line, positive_int

from ..outfolder import check_out_folder, check_target, claim_input, make_folder, remove_empty
from .netcdf import PACKING_POLICIES, filter_file, open_series

__all__ = ["MODES", "NAN_POLICIES", "smooth_command"]

MODES = ("reflect", "constant", "nearest", "mirror", "wrap")
"""Edge modes of ``--mode`` (scipy.ndimage's)."""

NAN_POLICIES = ("raise", "propagate", "mask")
"""Missing-value policies of ``--nan``."""


def smooth_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ndwconv smooth``."""
    parser = subparsers.add_parser(
        "smooth",
        help="smooth NetCDF-4/HDF5 time series with a weighted moving average (streamed)",
        description="Smooth the variable VAR of each INPUT (NetCDF-4 or HDF5) along the\n"
        "dimension DIM with a normalised weighted moving average whose weights follow\n"
        "--density, and write it to the folder DIR under the same file name. The file is\n"
        "read and written chunk by chunk, so it may be larger than memory; everything else\n"
        "in it (variables, coordinates, attributes) is copied, and VAR keeps its attributes\n"
        "and encoding. The output folder, the inputs and the outputs are checked before\n"
        "any work; a file that fails is reported and the others go on (exit code 1).",
        epilog="examples:\n"
        "  ndwconv smooth obs.nc -o out/ --var temp --dim time --density gaussian:6h\n"
        "  ndwconv smooth station-*.nc -o smoothed --var pressure --density gaussian:30s \\\n"
        "      --nan mask --mode nearest --chunks 100000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="NetCDF-4 or HDF5 file (.nc, .nc4, .h5)"
    )
    parser.add_argument(
        "-o", "--out", required=True, metavar="DIR", help="folder for the results (created)"
    )
    parser.add_argument("--var", required=True, help="the variable to smooth")
    parser.add_argument(
        "--dim",
        default="time",
        help="the dimension to smooth along (default: time); plain HDF5 datasets have "
        "phony_dim_0, phony_dim_1, …",
    )
    parser.add_argument(
        "--density",
        required=True,
        metavar="SPEC",
        help="weight profile, in the coordinate's units where it has them, e.g. "
        "gaussian:6h, gaussian:30s, table:0.7 (see `ndwconv info`)",
    )
    parser.add_argument(
        "--size",
        type=positive_int,
        default=None,
        metavar="N",
        help="kernel length in samples (default: chosen from the density)",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="reflect",
        help="how the series is extended past its ends, as scipy.ndimage (default: reflect)",
    )
    parser.add_argument(
        "--cval", type=float, default=0.0, help="the value past the ends for --mode constant"
    )
    parser.add_argument(
        "--nan",
        choices=NAN_POLICIES,
        default="raise",
        help="missing values (NaN, _FillValue): raise refuses them, propagate spreads them "
        "over the kernel, mask averages the valid neighbours only (default: raise)",
    )
    parser.add_argument(
        "--chunks",
        type=positive_int,
        default=None,
        metavar="N",
        help="samples along DIM read and written at a time (default: about 64 MiB)",
    )
    parser.add_argument(
        "--packing",
        choices=PACKING_POLICIES,
        default="keep",
        help="a packed integer variable (scale_factor/add_offset): keep writes the result "
        "packed the same way, rounded to its precision; float writes floats (default: keep)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_smooth)


def _smooth(args: argparse.Namespace) -> int:
    debug = bool(getattr(args, "debug", False))
    check_out_folder(args.out)
    failed = 0

    def report(path: str, err: BaseException) -> None:
        nonlocal failed
        failed += 1
        if debug:
            traceback.print_exception(err, file=sys.stderr)
        message = one_line(err)
        if not message.startswith(path):
            message = f"{path}: {message}"
        print(f"ndwconv: error: {message}", file=sys.stderr, flush=True)

    problems = _plan(args.inputs, args.out, args.overwrite, args.var, args.dim)
    for i, err in sorted(problems.items()):
        report(args.inputs[i], err)
    todo = [i for i in range(len(args.inputs)) if i not in problems]
    if not todo:
        return 1
    try:  # after the checks, which need no filter
        from ndwconv.adapters.timeseries import smooth
    except ImportError as exc:
        raise ImportError(
            f"ndwconv smooth needs ndwconv.adapters.timeseries.smooth, which this install "
            f"lacks ({exc})"
        ) from exc

    def func(da):  # the lazy filter, built per file
        return smooth(
            da,
            args.dim,
            density=args.density,
            size=args.size,
            mode=args.mode,
            cval=args.cval,
            nan=args.nan,
        )

    created = make_folder(args.out)
    try:
        for i in todo:
            path = args.inputs[i]
            start = time.perf_counter()
            try:
                target = filter_file(
                    path,
                    _output_path(path, args.out),
                    func,
                    var=args.var,
                    dim=args.dim,
                    chunks=args.chunks,
                    progress=not args.quiet,
                    overwrite=args.overwrite,
                    packing=args.packing,
                )
            except Exception as err:
                report(path, err)
                continue
            seconds = time.perf_counter() - start
            print(f"{path} -> {target}: {args.var} smoothed along {args.dim}, {seconds:.2f} s")
    finally:
        remove_empty(created)
    return 1 if failed else 0


def _output_path(source: str, out: str) -> Path:
    return Path(out) / os.path.basename(source)


def _plan(inputs: list[str], out: str, overwrite: bool, var: str, dim: str) -> dict[int, Exception]:
    """The inputs that cannot be smoothed into ``out``, by index, each with its error."""
    problems: dict[int, Exception] = {}
    seen: dict[str, str] = {}
    owner: dict[str, str] = {}
    for i, path in enumerate(inputs):
        try:
            _check_input(path, out, overwrite, var, dim, seen, owner)
        except (OSError, ValueError, TypeError, ImportError) as err:
            problems[i] = err
    return problems


def _check_input(
    path: str,
    out: str,
    overwrite: bool,
    var: str,
    dim: str,
    seen: dict[tuple[str, str], str],
    owner: dict[str, str],
) -> None:
    key = (os.path.normcase(os.path.realpath(path)), "")
    claim_input(path, path, key, seen, owner, "a NetCDF-4/HDF5 file")
    check_target(path, path, _output_path(path, out), overwrite)
    with open_series(path, var=var, dim=dim):  # the variable and dimension, before any work
        pass
