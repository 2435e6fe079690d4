"""``ndwconv denoise``: denoise images, NIfTI and HDF5 volumes and time series with a
trained checkpoint, tile by tile.

Images (``.png``, ``.tif``/``.tiff``, ``.jpg``/``.jpeg``, ``.npy``) take a 2-D model. They
are read by :func:`ndwconv.adapters.images.read_image` (integer samples on [0, 1], the
scale the recipes train on; float samples as they are; EXIF orientation applied; alpha
kept aside), not remapped, denoised tile by tile (``--tile`` default 256) and written to
``OUTPUT_DIR/<input file name>`` in the input's format, sample type, mode and metadata
(:func:`ndwconv.adapters.images.write_image`, atomic). A grey model denoises each channel
of a colour image in turn; a colour model refuses a grey image. ``--dtype float32``
writes the float values (``.tif`` and ``.npy`` only).

Every model is served by :func:`ndwconv.for_inference`: folded (:func:`ndwconv.fold`),
BatchNorm fused (:func:`ndwconv.fuse_batchnorm`) and in the channels-last memory format
(``--no-channels-last`` turns that off), with the same outputs up to float32 rounding;
``--compile`` adds ``torch.compile`` (opt-in: it compiles for seconds first and was not
faster on CPU here).

Noise level: each image's and volume's summary line gives its noise σ on the 0–255 scale
the model sees, ``--sigma`` or else estimated
(:func:`ndwconv.recipes.tasks.denoise.noise_level.estimate_sigma`; a volume's central
block of at most 128 voxels per axis, its first frame for a series), and a warning says
when σ is outside the σ range recorded in the checkpoint's configuration.

Each volume is read lazily (:func:`ndwconv.adapters.volumes.load`), denoised with
:func:`ndwconv.adapters.tiling.sliding_window` and written to ``OUTPUT_DIR/<input file
name>`` (an HDF5 output keeps the dataset path) with the input's header, affine and, by
default, on-disk dtype (:func:`ndwconv.adapters.volumes.save`, atomic: a failure leaves no
output and no temporary file, and an input is never written over).

How a volume is walked depends on the model's spatial dimensionality (``description.model.ndim``
in the checkpoint's sidecar, 2 when absent):

* a 2-D model on a 2-D volume ``(X, Y)`` (a 2-D NIfTI): one sliding window over it;
* a 3-D model on a volume ``(X, Y, Z)``: one sliding window over the volume;
* a 3-D model on a series ``(X, Y, Z, T)``: one sliding window per frame (last axis);
* a 4-D model on a series ``(X, Y, Z, T)``: one sliding window over the series.

Anything else is an error naming both dimensionalities.

A 1-D model denoises NetCDF-4/HDF5 time series: ``--var NAME`` names the variable and
``--dim`` (default ``time``) the dimension to denoise along; each input is streamed chunk
by chunk (``--chunks N`` samples along the dimension at a time), the chunks overlapping by
the model's receptive radius so that the result equals the whole-series pass, with every
other variable, coordinate and attribute copied and the variable's attributes and
encoding kept (:mod:`ndwconv.recipes.tasks.denoise.series_files`). ``--tile``, ``--overlap``
and ``--blend`` do not apply to series. A 1-D model without ``--var``, or ``--var`` with a
model of another dimensionality, is refused.

Intensities: the recipes train on 8-bit images scaled to [0, 1], whereas scanners write
arbitrary units. Each volume (a whole series for 4-D input) is therefore mapped by its
robust range ``[lo, hi]``, the 0.5th and 99.5th percentiles of its finite voxels
(:func:`robust_range`, computed on a strided subsample of about 2²⁰ voxels so that memory
stays bounded), as ``(x - lo) / (hi - lo)``, denoised, and mapped back with
``y · (hi - lo) + lo``. Values outside the range are not clipped, so the mapping is
invertible; the range is printed in each file's summary line.

Tiles are clamped to the volume's size along each axis (a small volume is one pass, with no
padding), and ``margin = overlap // 2`` voxels are dropped at each tile face inside the
volume, so a convolutional model whose receptive radius is at most ``margin`` gives the
same result as on the whole volume at once.

Memory: the reads are one slab of tile rows at a time (``tile`` rows of the first axis,
all of the others), and the result is written slab by slab into a float32
scratch file beside the output (``np.memmap``, removed afterwards), then converted and
saved slab by slab, so a volume larger than memory never has to fit in it; the disk needs
room for the scratch file (4 bytes per voxel) besides the output.

Spacing: a checkpoint trained with a density in millimetres (``gaussian:1.0mm``) records
the voxel spacing it was resolved against; a volume with another spacing is still
denoised, and its summary line says so.

Under ``torchrun`` (``WORLD_SIZE``/``RANK`` set), the inputs are sharded: rank ``r`` of
``W`` processes inputs ``r, r + W, …`` (no process group is needed), each on
``cuda:LOCAL_RANK`` when CUDA is used.

Example::

    ndwconv denoise photo.png scan.tif -o denoised --model dncnn2d.safetensors
    ndwconv denoise scans/*.nii.gz study.h5:/mri/t1 -o denoised --model dncnn3d.safetensors
    ndwconv denoise ecg.nc -o denoised --var ecg --dim time --model dncnn1d.safetensors
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ndwconv import for_inference
from ndwconv.adapters import volumes
from ndwconv.adapters.atomic import scratch_file
from ndwconv.adapters.images import is_image_path, read_image, write_image
from ndwconv.adapters.outfolder import (
    check_out_folder,
    check_target,
    claim_input,
    make_folder,
    remove_empty,
)
from ndwconv.adapters.receptive import receptive_radius
from ndwconv.adapters.tiling import sliding_window, tile_starts
from ndwconv.adapters.volumes import split_path
from ndwconv.cli import one_line, positive_int
from ndwconv.progress import progress_bar

from ...engine.distributed import DEVICE_HELP, resolve_device, shard
from . import load_denoiser
from .data import NoiseSpec
from .inference import PERCENTILES
from .noise_level import estimate_sigma

__all__ = ["NONFINITE_POLICIES", "PERCENTILES", "denoise_command", "robust_range", "tiling_warning"]

NONFINITE_POLICIES = ("raise", "zero", "allow")
"""What ``--nonfinite`` does with NaN/inf input voxels (see ``ndwconv denoise --help``)."""

_SAMPLE_VOXELS = 1 << 20
# the tiling options' defaults: set to anything else with --var, they draw a note
_TILING_DEFAULTS = {"tile": None, "overlap": 0.25, "blend": "gaussian"}
_VOLUME_TILE, _IMAGE_TILE = 64, 256  # --tile's default for volumes and for images
# (model ndim, volume ndim) → walk the whole volume at once, or frame by frame (last axis)
_WALKS = {(2, 2): "whole", (3, 3): "whole", (3, 4): "frames", (4, 4): "whole"}


def _fraction(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {text!r}")
    return value


def denoise_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ndwconv denoise``."""
    parser = subparsers.add_parser(
        "denoise",
        help="denoise images (PNG, TIFF, JPEG, .npy), NIfTI/HDF5 volumes, or NetCDF-4/HDF5 "
        "time series (--var), with a trained checkpoint (also under torchrun)",
        description="Denoise each INPUT tile by tile with a checkpoint written by `ndwconv train\n"
        "denoise`, and write it to the folder DIR under the same file name (HDF5: the same\n"
        "dataset path) with the input's header and affine. A 2-D model denoises images\n"
        "(PNG, TIFF, JPEG, .npy: written back in their format, sample type and mode, alpha\n"
        "and metadata kept; a grey model takes colour images channel by channel) and 2-D\n"
        "volumes. Each volume is mapped to [0, 1] by its 0.5th-99.5th percentile range,\n"
        "denoised and mapped back. A 3-D model denoises 3-D volumes, and 4-D series frame\n"
        "by frame; a 4-D model denoises 4-D series; a\n"
        "1-D model denoises the variable --var of NetCDF-4/HDF5 time series along --dim,\n"
        "streamed chunk by chunk (attributes and encoding kept). The output folder, the\n"
        "outputs and each input's values are checked before the model runs;\n"
        "a file that fails is reported and the others go on (exit code 1). Under torchrun the\n"
        "inputs are shared out between the processes.",
        epilog="examples:\n"
        "  ndwconv denoise photo.png scan.tif -o denoised \\\n"
        "      --model runs/denoise-quick-weighted/checkpoints/step-00000300.safetensors\n"
        "  ndwconv denoise scans/*.nii.gz study.h5:/mri/t1 -o denoised \\\n"
        "      --model runs/denoise-mni-weighted/checkpoints/step-00001000.safetensors\n"
        "  torchrun --nproc_per_node 2 -m ndwconv denoise scans/*.nii.gz -o denoised \\\n"
        "      --model model.safetensors --device cuda\n"
        "  ndwconv denoise ecg.nc -o denoised --var ecg --dim time \\\n"
        "      --model dncnn1d.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image: .png, .tif/.tiff, .jpg/.jpeg or .npy (a 2-D model), or sample:NAME, "
        "a bundled noisy image (sample:camera-noisy); volume: .nii, "
        ".nii.gz or file.h5[:/dataset] (the dataset may be left out when the file holds "
        "exactly one); with --var: a NetCDF-4 or HDF5 file",
    )
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument(
        "-o", "--out", metavar="DIR", help="folder for the results (created when missing)"
    )
    out.add_argument("--output-dir", dest="output_dir", help=argparse.SUPPRESS)
    parser.add_argument(
        "--model",
        metavar="CKPT",
        help="denoising checkpoint (.safetensors), or the name of a shipped model (`ndwconv "
        "models`); default: the shipped model for the input's dimensionality (said on "
        "stderr), where there is one",
    )
    parser.add_argument(
        "--var",
        metavar="NAME",
        help="NetCDF-4/HDF5 time series: the variable to denoise with a 1-D model",
    )
    parser.add_argument(
        "--dim",
        default="time",
        help="with --var: the dimension to denoise along (default: time); the others are "
        "batches of series; plain HDF5 datasets have phony_dim_0, phony_dim_1, …",
    )
    parser.add_argument(
        "--chunks",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --var: samples along DIM read and written at a time (default: about 64 "
        "MiB of the variable, fewer for a wide model: one forward pass stays within about "
        "256 MiB of activations)",
    )
    parser.add_argument(
        "--tile",
        type=positive_int,
        default=None,
        metavar="N",
        help="tile size per axis, voxels or pixels (default: 64 for volumes, 256 for "
        "images); not for time series",
    )
    parser.add_argument(
        "--overlap",
        type=_fraction,
        default=0.25,
        metavar="F",
        help="overlap of neighbouring tiles, a fraction in [0, 1) of the tile (default: 0.25); "
        "half of it is dropped at inner tile faces, which must be at least the model's "
        "receptive radius for the whole-volume result (a warning says when it is not); "
        "time series overlap by the model's receptive radius instead",
    )
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=4,
        metavar="N",
        help="tiles (time series: series) per forward pass (default: 4)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help=f"{DEVICE_HELP} (default: auto); under torchrun each process takes "
        "cuda:LOCAL_RANK when CUDA is used",
    )
    parser.add_argument(
        "--sigma",
        type=_sigma,
        default=None,
        metavar="S",
        help="the noise σ of the inputs on the 0–255 scale the model sees (images: of the "
        "sample type's range; volumes: of the 0.5–99.5 percentile range), when known; "
        "default: estimated per file (median absolute finest diagonal wavelet detail / "
        "0.6745, Donoho-Johnstone). Shown in the summary line and checked against the σ "
        "range the model was trained on (a warning when outside); the shipped models are "
        "blind, so σ is not an input of theirs. Not for time series",
    )
    parser.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        help="run the network in the default (contiguous) memory format instead of "
        "channels-last (same results; channels-last was about 2x faster on CPU)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="run the network through torch.compile (opt-in: compiling takes seconds and "
        "a C++ compiler; same results up to float32 rounding)",
    )
    parser.add_argument(
        "--blend",
        choices=("gaussian", "constant"),
        default="gaussian",
        help="weights of overlapping tiles (default: gaussian); not for time series",
    )
    parser.add_argument(
        "--dtype",
        choices=("input", "float32"),
        default="input",
        help="output dtype: the input's on-disk dtype (rounded, on its NIfTI scaling grid) or "
        "float32 (default: input); time series: input keeps the variable's encoding (a packed "
        "integer variable re-packed on its scale_factor grid), float32 writes a packed "
        "variable as floats; floating-point variables keep their dtype, plain integer ones "
        "become floats",
    )
    parser.add_argument(
        "--nonfinite",
        choices=NONFINITE_POLICIES,
        default="raise",
        help="NaN/inf input voxels: raise refuses the file before the model runs, zero "
        "reads them as 0, allow denoises them as they are (they spread to every voxel "
        "within the receptive radius, and integer outputs store NaN as 0; a time series' "
        "missing values, its _FillValue, count as NaN) (default: raise)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_denoise)


def robust_range(
    volume: volumes.Volume,
    percentiles: tuple[float, float] = PERCENTILES,
    max_voxels: int = _SAMPLE_VOXELS,
) -> tuple[float, float]:
    """``(lo, hi)``: percentiles of the finite voxels of a strided subsample of ``volume``.

    Every axis is read with the same stride, the smallest that keeps the subsample at about
    ``max_voxels`` voxels (stride 1, the whole volume, when it is smaller). A constant
    volume gives ``hi = lo + 1``, so the mapping ``(x - lo) / (hi - lo)`` only shifts it.

    Raises:
        ValueError: the subsample holds no finite voxel.

    Example:
        >>> robust_range(volumes.Volume(np.arange(1001.0).reshape(11, 91)), (0, 50))
        (0.0, 500.0)
    """
    stride = max(1, math.ceil((math.prod(volume.shape) / max_voxels) ** (1 / volume.ndim)))
    sample = volume.read(tuple(slice(None, None, stride) for _ in volume.shape))
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        raise ValueError("no finite voxels to compute the intensity range from")
    lo, hi = (float(v) for v in np.percentile(finite.astype(np.float64), percentiles))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


class _Normalised:
    """``(1, *spatial)`` source for the tiler: a volume, or one frame of a series (last
    axis), read region by region and mapped by ``(x - lo) / scale``; with ``zero_nonfinite``
    NaN/±inf voxels are read as 0 (before the mapping)."""

    def __init__(
        self,
        volume: volumes.Volume,
        lo: float,
        scale: float,
        frame: int | None = None,
        zero_nonfinite: bool = False,
    ):
        self.volume, self.lo, self.scale, self.frame = volume, lo, scale, frame
        self.zero_nonfinite = zero_nonfinite
        spatial = volume.shape if frame is None else volume.shape[:-1]
        self.shape = (1, *spatial)

    def __getitem__(self, index: tuple) -> np.ndarray:
        slices = tuple(index[1:]) + (() if self.frame is None else (self.frame,))
        block = self.volume.read(slices)
        if block.flags.writeable and block.flags.owndata:  # a fresh read: normalise in place
            block -= np.float32(self.lo)
        else:  # a view of the volume's own array, or read-only: never written to
            block = np.subtract(block, np.float32(self.lo), dtype=np.float32)
        block /= np.float32(self.scale)
        if self.zero_nonfinite:
            zero = (np.float32(0.0) - np.float32(self.lo)) / np.float32(self.scale)
            block[~np.isfinite(block)] = zero
        return block[None]


def _denoise(args: argparse.Namespace) -> int:
    if args.output_dir is not None:
        print("ndwconv: note: --output-dir is now -o/--out", file=sys.stderr, flush=True)
    out = args.out if args.out is not None else args.output_dir
    debug = bool(getattr(args, "debug", False))
    var, dim = getattr(args, "var", None), getattr(args, "dim", "time")
    if var is None and (getattr(args, "chunks", None) is not None or dim != "time"):
        raise ValueError("--dim and --chunks are for time series: give --var (the variable)")
    if var is not None and getattr(args, "sigma", None) is not None:
        raise ValueError("--sigma is for images and volumes, not time series (--var)")
    rank, world = shard()
    device = resolve_device(args.device, "--device")
    check_out_folder(out)
    if var is not None:
        ignored = [
            f"--{key}" for key, default in _TILING_DEFAULTS.items() if getattr(args, key) != default
        ]
        if ignored and rank == 0:
            print(
                f"ndwconv: note: {'/'.join(ignored)} "
                f"{'does' if len(ignored) == 1 else 'do'} not apply to time series (--var): "
                "chunks overlap by the model's receptive radius, computed from its layers",
                file=sys.stderr,
                flush=True,
            )

    failed = 0

    def report(path: str, err: BaseException) -> None:
        nonlocal failed
        failed += 1
        if debug:
            traceback.print_exception(err, file=sys.stderr)
        message = one_line(err)
        if not message.startswith((path, _file_part(path))):
            message = f"{path}: {message}"
        print(f"ndwconv: error: {message}", file=sys.stderr, flush=True)

    from ndwconv.recipes.shipped import resolve_sample

    given = list(args.inputs)
    args.inputs = [resolve_sample(p) for p in given]  # sample:NAME, a bundled image
    shown = dict(zip(args.inputs, given, strict=True))  # summaries name what the user typed
    # Every input is checked against every other (so that all ranks agree on clashes) and
    # against its output before any model is loaded.
    problems = _plan(args.inputs, out, args.overwrite, var, dim)
    mine = range(rank, len(args.inputs), world)
    for i in mine:
        if i in problems:
            report(args.inputs[i], problems[i])
    todo = [i for i in mine if i not in problems]
    if not todo:
        return 1 if failed else 0

    models: dict[str, tuple[torch.nn.Module, _ModelInfo]] = {}
    checkpoints: dict[object, str] = {}  # by --model, or by the kind of input without it

    def model_for(path: str) -> tuple[torch.nn.Module, _ModelInfo]:
        """The model for ``path``: ``--model``, or the shipped one for its kind."""
        kind = args.model if args.model is not None else _input_ndim(path, var)
        if kind not in checkpoints:
            checkpoints[kind] = _checkpoint_for(args.model, path, var, announce=rank == 0)
        checkpoint = checkpoints[kind]
        if checkpoint not in models:
            # densities folded, BatchNorm fused, channels-last: the same outputs up to
            # float32 rounding, at the cost of plain convolutions alone
            model = for_inference(
                load_denoiser(checkpoint, device),
                channels_last=getattr(args, "channels_last", True),
                compile=getattr(args, "compile", False),
            )
            info = _model_info(model, checkpoint)
            _check_kind(info, var, checkpoint)
            models[checkpoint] = model, info
        return models[checkpoint]

    if args.model is not None:
        model_for(args.inputs[todo[0]])  # a bad --model fails before any output folder
    if var is not None:
        from .series_files import denoise_series
    created = make_folder(out)
    try:
        for i in todo:
            path = args.inputs[i]
            try:
                model, info = model_for(path)
                if var is not None:
                    line = denoise_series(model, path, out, args, device)
                elif is_image_path(path):
                    line = _denoise_image(model, info, path, out, args, device)
                else:
                    line = _denoise_file(model, info, path, out, args, device)
                if shown[path] != path and line.startswith(path):
                    line = shown[path] + line[len(path) :]
                print(line, flush=True)
            except Exception as err:
                report(path, err)
    finally:
        if world == 1:  # other ranks may still be writing into a folder this one made
            remove_empty(created)
    return 1 if failed else 0


def _input_ndim(path: str, var: str | None) -> int:
    """The dimensionality of model an input takes: series 1, images 2, volumes 3."""
    return 1 if var is not None else 2 if is_image_path(path) else 3


def _checkpoint_for(model: str | None, path: str, var: str | None, announce: bool) -> str:
    """``--model`` as a checkpoint path: a file as given, a shipped model's name, or (not
    given) the shipped model for ``path``'s kind (:func:`_input_ndim`), said on stderr
    when ``announce``."""
    from ndwconv.recipes.shipped import default_model, shipped_models

    if model is not None:
        named = {m.name: m for m in shipped_models()}
        return str(named[model].path) if model in named and not os.path.exists(model) else model
    ndim = _input_ndim(path, var)
    chosen = default_model(ndim)
    if chosen is None:
        raise ValueError(
            f"{path}: no shipped model denoises {ndim}-D inputs (`ndwconv models` lists "
            "them); give --model with a checkpoint from `ndwconv train denoise`"
        )
    if announce:
        print(
            f"ndwconv: using the shipped model {chosen.name} ({chosen.noise}; trained on "
            f"{chosen.data}); --model chooses another",
            file=sys.stderr,
            flush=True,
        )
    return str(chosen.path)


class _ModelInfo(NamedTuple):
    ndim: int
    radius: tuple[int, ...] | None
    spacing: tuple[float, ...] | None
    channels: int = 1
    noise: tuple[float, float] | None = None  # the σ range it was trained on (0–255)


def _model_info(model: torch.nn.Module, checkpoint: str) -> _ModelInfo:
    """The model's spatial dimensionality and receptive radius (from its layers) and, when
    its density is in mm, the voxel spacing it was resolved for (from the sidecar), and
    the channels it takes (volumes and series have one; images one or three)."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    if not convs:
        raise ValueError(f"{checkpoint}: the model has no convolution; not a denoiser")
    ndim, channels = len(convs[0].kernel_size), convs[0].in_channels
    if channels not in (1, 3) or (channels != 1 and ndim != 2):
        raise ValueError(
            f"{checkpoint}: the model takes {channels} channels; volumes and time series have "
            "one, images one (grey) or three (colour)"
        )
    spacing = noise = sidecar = None
    try:
        sidecar = json.loads(Path(checkpoint).with_suffix(".json").read_text("utf-8"))
        description = sidecar["description"]
        if "spacing=" in (description.get("density") or "") and description.get("spacing"):
            spacing = tuple(float(v) for v in description["spacing"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        spacing = None  # the loader accepted the checkpoint; the note is only informative
    try:
        noise = NoiseSpec.parse(str(sidecar["config"]["noise"]["sigma"])).bounds
    except (ValueError, KeyError, TypeError, AttributeError):
        noise = None  # no training noise recorded: nothing to check σ against
    return _ModelInfo(ndim, receptive_radius(model, ndim), spacing, channels, noise)


def _file_noise(
    path: str, args: argparse.Namespace, info: _ModelInfo, estimate: Callable[[], float | None]
) -> str:
    """The summary line's noise part for one file: ``--sigma`` when given, else
    ``estimate()`` (nothing when it gives ``None``)."""
    if getattr(args, "sigma", None) is not None:
        return _noise_note(path, args.sigma, True, info)
    sigma = estimate()
    return "" if sigma is None else _noise_note(path, sigma, False, info)


def _image_noise(pixels: np.ndarray) -> float | None:
    """σ̂ of a ``(C, H, W)`` image on the 0–255 scale of [0, 1], channels averaged;
    ``None`` for a side shorter than 2 or no finite pixel."""
    try:
        return 255 * estimate_sigma(pixels, channel_axis=0)
    except ValueError:
        return None


def _noise_note(path: str, sigma: float, given: bool, info: _ModelInfo) -> str:
    """The summary line's noise part; warns on stderr when σ is outside the σ range the
    model was trained on (by more than the estimator's error: 15 % or 2 grey levels)."""
    how = "given" if given else "estimated"
    note = f", noise σ{'=' if given else '≈'}{sigma:.3g} ({how}, 0–255 scale)"
    if info.noise is not None:
        low, high = info.noise
        if not low - max(2.0, 0.15 * low) <= sigma <= high + max(2.0, 0.15 * high):
            trained = f"{low:g}" if low == high else f"{low:g}–{high:g}"
            print(
                f"ndwconv: warning: {path}: noise σ{'=' if given else '≈'}{sigma:.3g} "
                f"({how}) is outside the σ the model was trained on ({trained}); its output "
                "may be poor" + ("" if given else " (--sigma gives σ when it is known)"),
                file=sys.stderr,
                flush=True,
            )
    return note


def _check_kind(info: _ModelInfo, var: str | None, checkpoint: str) -> None:
    """Refuse a 1-D model without ``--var`` and ``--var`` with any other model."""
    if var is None and info.ndim == 1:
        raise ValueError(
            f"--model {checkpoint}: a 1-D model denoises time series: give --var (the "
            "NetCDF-4/HDF5 variable to denoise) and --dim if it is not 'time'"
        )
    if var is not None and info.channels != 1:
        raise ValueError(
            f"--model {checkpoint}: the model takes {info.channels} channels; time series have one"
        )
    if var is not None and info.ndim != 1:
        raise ValueError(
            f"--model {checkpoint}: a {info.ndim}-D model cannot denoise time series "
            f"(--var {var}); it takes images/volumes (leave out --var), or give a 1-D model"
        )


def _plan(
    inputs: list[str], out: str, overwrite: bool, var: str | None = None, dim: str = "time"
) -> dict[int, Exception]:
    """The inputs that cannot be denoised into ``out``, by index, each with its error:
    a missing input or a folder, an input listed twice, two inputs with one output file,
    an output that is the input, an existing output without ``overwrite``; with ``var``
    (time series), also a file that is not NetCDF-4/HDF5 or lacks ``var`` or ``dim``."""
    problems: dict[int, Exception] = {}
    seen: dict[tuple[str, str], str] = {}
    owner: dict[str, str] = {}
    for i, path in enumerate(inputs):
        try:
            _check_input(path, out, overwrite, seen, owner, var, dim)
        except (OSError, ValueError, TypeError, ImportError) as err:  # raised: --debug shows where
            problems[i] = err
    return problems


def _check_input(
    path: str,
    out: str,
    overwrite: bool,
    seen: dict[tuple[str, str], str],
    owner: dict[str, str],
    var: str | None = None,
    dim: str = "time",
) -> None:
    """One input of :func:`_plan`, given the inputs before it (``seen``: by file and
    dataset, ``owner``: by output file name, both updated). A time series (``var``) is a
    plain file path, opened to check ``var`` and ``dim`` before any model loads."""
    if var is not None:
        _check_series(path, out, overwrite, seen, owner, var, dim)
        return
    file, dataset = (path, None) if is_image_path(path) else split_path(path)
    key = (os.path.normcase(os.path.realpath(file)), dataset or "")
    claim_input(
        path, file, key, seen, owner, "an image file" if is_image_path(path) else "a volume file"
    )
    _check_output(path, _output_path(path, out), overwrite)


def _check_series(
    path: str,
    out: str,
    overwrite: bool,
    seen: dict[tuple[str, str], str],
    owner: dict[str, str],
    var: str,
    dim: str,
) -> None:
    """:func:`_check_input` for a time series file."""
    key = (os.path.normcase(os.path.realpath(path)), "")
    claim_input(path, path, key, seen, owner, "a NetCDF-4/HDF5 file")
    check_target(path, path, Path(out) / os.path.basename(path), overwrite)
    from ndwconv.adapters.timeseries.netcdf import open_series

    with open_series(path, var=var, dim=dim):  # var, dim and the values' type, before any work
        pass


def _denoise_file(
    model: torch.nn.Module,
    info: _ModelInfo,
    path: str,
    out: str,
    args: argparse.Namespace,
    device: torch.device,
) -> str:
    """Denoise one input into ``out``; returns its summary line."""
    start = time.perf_counter()
    if info.channels != 1:
        raise ValueError(
            f"{path}: the model takes {info.channels} channels (a colour image model); "
            "volumes have one"
        )
    with volumes.load(path) as volume:
        walk = _WALKS.get((info.ndim, volume.ndim))
        if walk is None:
            raise ValueError(
                f"{path}: a {info.ndim}-D model cannot denoise this {volume.ndim}-D volume "
                f"(shape {volume.shape}); it takes a 2-D model on 2-D volumes and images, a "
                "3-D model on 3-D or 4-D volumes, or a 4-D model on 4-D series"
            )
        output = _output_path(volume.source or path, out)
        _check_output(path, output, args.overwrite)
        bad = count_nonfinite(volume)
        if bad and args.nonfinite == "raise":
            raise ValueError(
                f"{path}: {bad} non-finite (NaN/inf) voxels; pass --nonfinite zero to read "
                "them as 0, or --nonfinite allow to denoise them as they are"
            )
        lo, hi = robust_range(volume)
        spatial = volume.shape if walk == "whole" else volume.shape[:-1]
        noise = _file_noise(
            path, args, info, lambda: volume_noise(volume, lo, hi, frames=walk != "whole")
        )
        warning = tiling_warning(info.radius, spatial, args.tile or _VOLUME_TILE, args.overlap)
        if warning:
            print(f"ndwconv: warning: {path}: {warning}", file=sys.stderr, flush=True)
        name = os.path.basename(_file_part(output))
        with scratch_file(out, name, ".result") as scratch:
            result = np.memmap(scratch, dtype=np.float32, mode="w+", shape=volume.shape)
            produced = _predict_into(
                result,
                model,
                volume,
                args,
                device,
                walk,
                lo,
                hi,
                os.path.basename(_file_part(path)),
                zero_nonfinite=bool(bad) and args.nonfinite == "zero",
            )
            if produced and args.nonfinite != "allow":
                raise ValueError(
                    f"{path}: the model produced {produced} non-finite (NaN/inf) voxels; "
                    "nothing was written (--nonfinite allow writes them)"
                )
            volumes.save(
                result,
                output,
                like=volume,
                dtype_policy=args.dtype,
                overwrite=args.overwrite,
                nonfinite="allow" if args.nonfinite == "allow" else "raise",
            )
            del result  # closes the memmap before its file is removed
    seconds = time.perf_counter() - start
    shape = "×".join(map(str, volume.shape))
    note = _spacing_note(info.spacing, volume.spacing[: len(info.spacing or ())])
    if bad:
        note += f"; {bad} non-finite input voxels " + (
            "read as 0" if args.nonfinite == "zero" else "kept"
        )
    return (
        f"{path} -> {output}: shape {shape}, {seconds:.2f} s, "
        f"range [{lo:.6g}, {hi:.6g}] (percentiles {PERCENTILES[0]:g}-{PERCENTILES[1]:g}) -> [0, 1]"
        + noise
        + note
    )


def _denoise_image(
    model: torch.nn.Module,
    info: _ModelInfo,
    path: str,
    out: str,
    args: argparse.Namespace,
    device: torch.device,
) -> str:
    """Denoise one image file into ``out`` (same name and format); returns its summary line.

    The pixels are what :func:`ndwconv.adapters.images.read_image` gives (integer files
    on [0, 1], the scale the recipes train on; float files as they are) and are not
    remapped; alpha is kept aside. A grey (1-channel) model denoises a colour image one
    channel at a time; a colour model refuses a grey image.
    """
    start = time.perf_counter()
    if info.ndim != 2:
        raise ValueError(
            f"{path}: a {info.ndim}-D model cannot denoise a 2-D image; images take a 2-D model"
        )
    output = os.path.join(out, os.path.basename(path))
    _check_output(path, output, args.overwrite)
    image = read_image(path)
    if info.channels not in (1, image.channels):
        raise ValueError(
            f"{path}: the model takes {info.channels} channels (colour) and this image is "
            f"{image.mode} (grey); give a grey model"
        )
    if args.dtype == "float32" and Path(output).suffix.lower() not in (".tif", ".tiff", ".npy"):
        raise ValueError(
            f"{path}: --dtype float32 needs a format that holds float samples (.tif, .npy); "
            f"{Path(output).suffix} holds integers"
        )
    pixels = image.pixels.numpy()
    finite = np.isfinite(pixels)
    bad = int(pixels.size - np.count_nonzero(finite))
    if bad and args.nonfinite == "raise":
        raise ValueError(
            f"{path}: {bad} non-finite (NaN/inf) pixels; pass --nonfinite zero to read "
            "them as 0, or --nonfinite allow to denoise them as they are"
        )
    if bad and args.nonfinite == "zero":
        pixels = np.where(finite, pixels, np.float32(0.0))
    height, width = pixels.shape[1:]
    noise = _file_noise(path, args, info, lambda: _image_noise(pixels))
    warning = tiling_warning(info.radius, (height, width), args.tile or _IMAGE_TILE, args.overlap)
    if warning:
        print(f"ndwconv: warning: {path}: {warning}", file=sys.stderr, flush=True)
    groups = (
        [slice(0, image.channels)]
        if info.channels == image.channels
        else [slice(c, c + 1) for c in range(image.channels)]
    )
    result = np.empty_like(pixels)
    jobs = [(pixels[g], result[g], g.stop - g.start) for g in groups]
    _tiled(
        model, jobs, (height, width), args.tile or _IMAGE_TILE, args, device, os.path.basename(path)
    )
    produced = int(result.size - np.count_nonzero(np.isfinite(result)))
    if produced and args.nonfinite != "allow":
        raise ValueError(
            f"{path}: the model produced {produced} non-finite (NaN/inf) pixels; nothing was "
            "written (--nonfinite allow writes them)"
        )
    denoised = image.with_pixels(torch.from_numpy(result))
    if args.dtype == "float32":
        denoised = dataclasses.replace(denoised, dtype="float32", scale=1.0)
    write_image(output, denoised)
    seconds = time.perf_counter() - start
    how = "" if len(groups) == 1 else f", {len(groups)} channels one at a time (grey model)"
    note = "" if image.alpha is None else ", alpha kept"
    if bad:
        note += f"; {bad} non-finite input pixels " + (
            "read as 0" if args.nonfinite == "zero" else "kept"
        )
    return (
        f"{path} -> {output}: {image.mode} {height}×{width} {image.dtype}, {seconds:.2f} s"
        f"{how}{noise}{note}"
    )


def volume_noise(
    volume: volumes.Volume, lo: float, hi: float, frames: bool, edge: int = 128
) -> float | None:
    """σ̂ of ``volume``'s noise on the 0–255 scale of ``[lo, hi]``: :func:`estimate_sigma`
    on its central block of at most ``edge`` voxels per axis (only the first frame, the
    last axis, when ``frames``), so that the cost does not grow with the volume. ``None``
    when an axis is shorter than 2 or the block holds no finite detail.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> noisy = volumes.Volume(0.5 + 0.1 * rng.standard_normal((40, 40, 40)))
        >>> round(volume_noise(noisy, 0.0, 1.0, frames=False) / 255, 2)
        0.1
    """
    shape = volume.shape[:-1] if frames else volume.shape
    starts = [max(0, (n - edge) // 2) for n in shape]
    region = tuple(slice(a, a + min(n, edge)) for a, n in zip(starts, shape, strict=True))
    if frames:
        region += (0,)
    block = (volume.read(region).astype(np.float64) - lo) * (255.0 / (hi - lo))
    try:
        return estimate_sigma(block)
    except ValueError:
        return None


def count_nonfinite(volume: volumes.Volume, max_voxels: int = 1 << 24) -> int:
    """The number of NaN/±inf voxels of ``volume``, read a slab of about ``max_voxels``
    voxels at a time along the axis stored last on disk (NIfTI: the last axis, HDF5: the
    first), so that every read is contiguous.

    An integer volume whose scaling keeps every value finite in float32 is not read.

    Example:
        >>> count_nonfinite(volumes.Volume(np.array([[1.0, np.nan], [np.inf, 2.0]])))
        2
    """
    dtype = np.dtype(volume.dtype)
    if dtype.kind in "iub":
        slope = 1.0 if volume.scl_slope is None else float(volume.scl_slope)
        inter = float(volume.scl_inter or 0.0)
        info = np.iinfo(dtype) if dtype.kind != "b" else np.iinfo(np.uint8)
        bound = abs(slope) * max(abs(int(info.min)), int(info.max)) + abs(inter)
        if math.isfinite(bound) and bound < float(np.finfo(np.float32).max):
            return 0
    if not volume.shape:
        return int(not np.isfinite(volume.read()))
    axis = volume.ndim - 1 if str(volume.kind).startswith("nifti") else 0
    size = volume.shape[axis]
    per_index = max(1, math.prod(volume.shape) // max(size, 1))
    step = max(1, max_voxels // per_index)
    count = 0
    for begin in range(0, size, step):
        index = [slice(None)] * volume.ndim
        index[axis] = slice(begin, min(begin + step, size))
        block = volume.read(tuple(index))
        count += int(block.size - np.count_nonzero(np.isfinite(block)))
    return count


def tiling_warning(
    radius: tuple[int, ...] | None, spatial: tuple[int, ...], tile: int, overlap: float
) -> str | None:
    """Why tiles of ``tile`` voxels overlapping by the fraction ``overlap`` give a result
    other than the whole-volume pass of a model of receptive ``radius`` (per axis, ``None``
    for a model that pools over its whole input), with the smallest tile that would not;
    ``None`` when they give the whole-volume result.

    Along an axis cut into several tiles, ``floor(overlap · tile) // 2`` voxels are
    dropped at inner tile faces; a voxel nearer than the radius to a face sees the tile's
    zero padding, so the margin must be at least the radius: a tile of ``2r + 1`` voxels
    or more with an overlap of ``2r`` voxels or more.

    Example:
        >>> print(tiling_warning((3, 3, 3), (40, 40, 40), 8, 0.25).split("; ")[1])
        use --tile 24 or more or --overlap 0.75 or more
        >>> tiling_warning((3, 3, 3), (40, 40, 40), 24, 0.25) is None
        True
    """
    tiles = [min(tile, n) for n in spatial]
    cut = [axis for axis, (t, n) in enumerate(zip(tiles, spatial, strict=True)) if t < n]
    if not cut:
        return None
    if radius is None:
        return (
            "the model pools over its whole input, so tiles give another result than the "
            f"whole-volume pass; use --tile {max(spatial)} to denoise it in one pass"
        )
    short = [a for a in cut if math.floor(overlap * tiles[a]) // 2 < radius[a]]
    if not short:
        return None
    r = max(radius[a] for a in short)
    kept = min(math.floor(overlap * tiles[a]) // 2 for a in short)
    fixes = []
    if overlap > 0:
        need = max(2 * r + 1, math.ceil(2 * r / overlap))
        while math.floor(overlap * need) < 2 * r:
            need += 1
        fixes.append(f"--tile {need} or more")
    if tile >= 2 * r + 1:
        fraction = math.ceil(200 * r / tile) / 100
        while math.floor(fraction * tile) < 2 * r:
            fraction += 0.01
        if fraction < 1:
            fixes.append(f"--overlap {fraction:.2f} or more")
    if not fixes:
        fixes.append(f"--tile {4 * r} or more with --overlap 0.5")
    return (
        f"the model's receptive radius is {r} voxels, but tile {tile} with --overlap "
        f"{overlap:g} drops only {kept} at inner tile faces, so voxels near them differ "
        f"from the whole-volume pass; use {' or '.join(fixes)}"
    )


def _spacing_note(model: tuple[float, ...] | None, volume: tuple[float, ...]) -> str:
    """A note when the model's density was resolved for another voxel spacing."""
    if not model or np.allclose(model, volume, rtol=1e-3):
        return ""
    return (
        f"; note: the model's density is in mm for spacing {'×'.join(f'{s:g}' for s in model)}"
        f", this volume has {'×'.join(f'{s:g}' for s in volume)}"
    )


def _tiled(
    model: torch.nn.Module,
    jobs: list[tuple[Any, Any, int]],
    spatial: tuple[int, ...],
    tile_size: int,
    args: argparse.Namespace,
    device: torch.device,
    label: str,
) -> None:
    """Run ``model`` tile by tile over each ``(source, out, channels)`` of ``jobs`` (all
    of spatial shape ``spatial``), with one progress bar: tiles of ``tile_size`` clamped
    to the shape, overlapping by ``--overlap``, half of it dropped at inner faces."""
    tile = tuple(min(tile_size, n) for n in spatial)
    overlap = tuple(math.floor(args.overlap * t) for t in tile)
    tiles = math.prod(
        len(tile_starts(n, t, t - ov)) for n, t, ov in zip(spatial, tile, overlap, strict=True)
    )
    with progress_bar(
        total=tiles * len(jobs), desc=label, unit="tile", enabled=not args.quiet, leave=False
    ) as bar:

        def predict(batch: torch.Tensor) -> torch.Tensor:
            prediction = model(batch)
            bar.update(batch.shape[0])
            return prediction

        for source, out, channels in jobs:
            sliding_window(
                predict,
                source,
                tile,
                overlap=overlap,
                blend=args.blend,
                batch_size=args.batch,
                out=out,
                device=device,
                progress=False,
                out_channels=channels,
                margin=tuple(ov // 2 for ov in overlap),
            )


def _predict_into(
    result: np.ndarray,
    model: torch.nn.Module,
    volume: volumes.Volume,
    args: argparse.Namespace,
    device: torch.device,
    walk: str,
    lo: float,
    hi: float,
    label: str,
    zero_nonfinite: bool = False,
) -> int:
    """Denoise ``volume`` into ``result`` tile by tile, in [0, 1], and map it back;
    returns the number of non-finite voxels in the result."""
    frames = [None] if walk == "whole" else list(range(volume.shape[-1]))
    spatial = volume.shape if walk == "whole" else volume.shape[:-1]
    jobs = [
        (
            _Normalised(volume, lo, hi - lo, frame, zero_nonfinite),
            result[None] if frame is None else result[None, ..., frame],
            1,
        )
        for frame in frames
    ]
    _tiled(model, jobs, spatial, args.tile or _VOLUME_TILE, args, device, label)
    produced = 0
    for rows in range(0, result.shape[0], 16):  # back to the input's units, by slabs
        block = result[rows : rows + 16]
        block *= np.float32(hi - lo)
        block += np.float32(lo)
        produced += int(block.size - np.count_nonzero(np.isfinite(block)))
    return produced


def _sigma(text: str) -> float:
    """``--sigma``: a finite number ≥ 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0, got {text!r}")
    return value


def _file_part(path: str) -> str:
    """The file of a volume path (``file.h5:/dataset`` → ``file.h5``)."""
    return split_path(path)[0]


def _output_path(source: str, output_dir: str) -> str:
    """``OUTPUT_DIR/<file name>``, with the dataset path of an HDF5 source."""
    file, dataset = split_path(source)
    name = os.path.join(output_dir, os.path.basename(file))
    return f"{name}:{dataset}" if dataset else name


def _check_output(path: str, output: str, overwrite: bool) -> None:
    """Refuse, before any work, to write over the input or over an existing file."""
    check_target(path, _file_part(path), Path(_file_part(output)), overwrite)
