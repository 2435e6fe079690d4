"""``ndwconv denoise``: denoise NIfTI and HDF5 volumes with a trained checkpoint, tile by tile.

Each input is read lazily (:func:`ndwconv.adapters.volumes.load`), denoised with
:func:`ndwconv.adapters.tiling.sliding_window` and written to ``OUTPUT_DIR/<input file
name>`` (an HDF5 output keeps the dataset path) with the input's header, affine and, by
default, on-disk dtype (:func:`ndwconv.adapters.volumes.save`, atomic: a failure leaves no
output and no temporary file, and an input is never written over).

How a volume is walked depends on the model's spatial dimensionality (``description.model.ndim``
in the checkpoint's sidecar, 2 when absent):

* a 3-D model on a volume ``(X, Y, Z)``: one sliding window over the volume;
* a 3-D model on a series ``(X, Y, Z, T)``: one sliding window per frame (last axis);
* a 4-D model on a series ``(X, Y, Z, T)``: one sliding window over the series.

Anything else is an error naming both dimensionalities.

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

    ndwconv denoise scans/*.nii.gz study.h5:/mri/t1 -o denoised --model dncnn3d.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ndwconv.adapters import volumes
from ndwconv.adapters.atomic import scratch_file
from ndwconv.adapters.tiling import sliding_window, tile_starts
from ndwconv.adapters.volumes import split_path
from ndwconv.cli import one_line
from ndwconv.progress import progress_bar

from ...engine.distributed import DEVICE_HELP, resolve_device, shard
from . import load_denoiser

__all__ = ["PERCENTILES", "denoise_command", "robust_range"]

PERCENTILES = (0.5, 99.5)
"""Percentiles of the robust intensity range mapped to [0, 1]."""

_SAMPLE_VOXELS = 1 << 20
# (model ndim, volume ndim) → walk the whole volume at once, or frame by frame (last axis)
_WALKS = {(3, 3): "whole", (3, 4): "frames", (4, 4): "whole"}


def denoise_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ndwconv denoise``."""
    parser = subparsers.add_parser(
        "denoise",
        help="denoise NIfTI/HDF5 volumes with a trained checkpoint (also under torchrun)",
        description="Denoise each INPUT tile by tile with a checkpoint written by `ndwconv train\n"
        "denoise`, and write it to OUTPUT_DIR under the same file name (HDF5: the same dataset\n"
        "path) with the input's header and affine. Each volume is mapped to [0, 1] by its\n"
        "0.5th-99.5th percentile range, denoised and mapped back. A 3-D model denoises 3-D\n"
        "volumes, and 4-D series frame by frame; a 4-D model denoises 4-D series. A file that\n"
        "fails is reported and the others go on (exit code 1). Under torchrun the inputs are\n"
        "shared out between the processes.",
        epilog="examples:\n"
        "  ndwconv denoise scans/*.nii.gz study.h5:/mri/t1 -o denoised \\\n"
        "      --model runs/denoise-weighted/checkpoints/step-1000.safetensors\n"
        "  torchrun --nproc_per_node 2 -m ndwconv denoise scans/*.nii.gz -o denoised \\\n"
        "      --model model.safetensors --device cuda",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="volume: .nii, .nii.gz or file.h5[:/dataset] (the dataset may be left out when "
        "the file holds exactly one)",
    )
    parser.add_argument(
        "-o", "--output-dir", required=True, metavar="OUTPUT_DIR", help="folder for the results"
    )
    parser.add_argument(
        "--model", required=True, metavar="CKPT", help="denoising checkpoint (.safetensors)"
    )
    parser.add_argument(
        "--tile", type=int, default=64, help="tile size per axis, voxels (default: 64)"
    )
    parser.add_argument(
        "--overlap",
        type=float,
        default=0.25,
        help="overlap of neighbouring tiles, a fraction in [0, 1) of the tile (default: 0.25); "
        "half of it is dropped at inner tile faces",
    )
    parser.add_argument("--batch", type=int, default=4, help="tiles per forward pass (default: 4)")
    parser.add_argument(
        "--device",
        default="auto",
        help=f"{DEVICE_HELP} (default: auto); under torchrun each process takes "
        "cuda:LOCAL_RANK when CUDA is used",
    )
    parser.add_argument(
        "--blend",
        choices=("gaussian", "constant"),
        default="gaussian",
        help="weights of overlapping tiles (default: gaussian)",
    )
    parser.add_argument(
        "--dtype",
        choices=("input", "float32"),
        default="input",
        help="output dtype: the input's on-disk dtype (rounded, on its NIfTI scaling grid) or "
        "float32 (default: input)",
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
    axis), read region by region and mapped by ``(x - lo) / scale``."""

    def __init__(self, volume: volumes.Volume, lo: float, scale: float, frame: int | None = None):
        self.volume, self.lo, self.scale, self.frame = volume, lo, scale, frame
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
        return block[None]


def _denoise(args: argparse.Namespace) -> int:
    if args.tile < 1:
        raise ValueError(f"--tile must be >= 1, got {args.tile}")
    if not 0.0 <= args.overlap < 1.0:
        raise ValueError(f"--overlap must be in [0, 1), got {args.overlap}")
    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    rank, world = shard()
    device = resolve_device(args.device, "--device")
    model_ndim, model_spacing = _model_info(args.model)
    model = load_denoiser(args.model, device)
    os.makedirs(args.output_dir, exist_ok=True)

    # Output clashes are found over all inputs, so that every rank sees the same ones.
    first_owner: dict[str, str] = {}
    clash: dict[int, str] = {}
    for i, path in enumerate(args.inputs):
        key = os.path.normcase(os.path.basename(_file_part(path)))
        if key in first_owner:
            clash[i] = f"{path}: has the same output file as {first_owner[key]}"
        else:
            first_owner[key] = path

    failed = 0
    for i in range(rank, len(args.inputs), world):
        path = args.inputs[i]
        try:
            if i in clash:
                raise ValueError(clash[i])
            print(_denoise_file(model, model_ndim, model_spacing, path, args, device), flush=True)
        except Exception as err:
            failed += 1
            message = one_line(err)
            if not message.startswith((path, _file_part(path))):
                message = f"{path}: {message}"
            print(f"ndwconv: error: {message}", file=sys.stderr, flush=True)
    return 1 if failed else 0


def _denoise_file(
    model: torch.nn.Module,
    model_ndim: int,
    model_spacing: tuple[float, ...] | None,
    path: str,
    args: argparse.Namespace,
    device: torch.device,
) -> str:
    """Denoise one input into ``args.output_dir``; returns its summary line."""
    start = time.perf_counter()
    with volumes.load(path) as volume:
        walk = _WALKS.get((model_ndim, volume.ndim))
        if walk is None:
            raise ValueError(
                f"{path}: a {model_ndim}-D model cannot denoise this {volume.ndim}-D volume "
                f"(shape {volume.shape}); it takes a 3-D model on 3-D or 4-D volumes, or a "
                "4-D model on 4-D series"
            )
        output = _output_path(volume.source or path, args.output_dir)
        _check_output(path, output, args.overwrite)
        lo, hi = robust_range(volume)
        name = os.path.basename(_file_part(output))
        with scratch_file(args.output_dir, name, ".result") as scratch:
            result = np.memmap(scratch, dtype=np.float32, mode="w+", shape=volume.shape)
            _predict_into(
                result,
                model,
                volume,
                args,
                device,
                walk,
                lo,
                hi,
                os.path.basename(_file_part(path)),
            )
            volumes.save(
                result, output, like=volume, dtype_policy=args.dtype, overwrite=args.overwrite
            )
            del result  # closes the memmap before its file is removed
    seconds = time.perf_counter() - start
    shape = "×".join(map(str, volume.shape))
    note = _spacing_note(model_spacing, volume.spacing[: len(model_spacing or ())])
    return (
        f"{path} -> {output}: shape {shape}, {seconds:.2f} s, "
        f"range [{lo:.6g}, {hi:.6g}] (percentiles {PERCENTILES[0]:g}-{PERCENTILES[1]:g}) -> [0, 1]"
        + note
    )


def _spacing_note(model: tuple[float, ...] | None, volume: tuple[float, ...]) -> str:
    """A note when the model's density was resolved for another voxel spacing."""
    if not model or np.allclose(model, volume, rtol=1e-3):
        return ""
    return (
        f"; note: the model's density is in mm for spacing {'×'.join(f'{s:g}' for s in model)}"
        f", this volume has {'×'.join(f'{s:g}' for s in volume)}"
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
) -> None:
    """Denoise ``volume`` into ``result`` tile by tile, in [0, 1], and map it back."""
    frames = [None] if walk == "whole" else list(range(volume.shape[-1]))
    spatial = volume.shape if walk == "whole" else volume.shape[:-1]
    tile = tuple(min(args.tile, n) for n in spatial)
    overlap = tuple(math.floor(args.overlap * t) for t in tile)
    tiles = math.prod(
        len(tile_starts(n, t, t - ov)) for n, t, ov in zip(spatial, tile, overlap, strict=True)
    )
    with progress_bar(
        total=tiles * len(frames), desc=label, unit="tile", enabled=not args.quiet, leave=False
    ) as bar:

        def predict(batch: torch.Tensor) -> torch.Tensor:
            prediction = model(batch)
            bar.update(batch.shape[0])
            return prediction

        for frame in frames:
            sliding_window(
                predict,
                _Normalised(volume, lo, hi - lo, frame),
                tile,
                overlap=overlap,
                blend=args.blend,
                batch_size=args.batch,
                out=result[None] if frame is None else result[None, ..., frame],
                device=device,
                progress=False,
                out_channels=1,
                margin=tuple(ov // 2 for ov in overlap),
            )
    for rows in range(0, result.shape[0], 16):  # back to the input's units, by slabs
        block = result[rows : rows + 16]
        block *= np.float32(hi - lo)
        block += np.float32(lo)


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
    source, target = Path(_file_part(path)).resolve(), Path(_file_part(output))
    if target.resolve() == source:
        raise ValueError(f"{path}: the output {target} is the input; choose another -o folder")
    if os.path.lexists(target) and not overwrite:
        raise FileExistsError(f"{path}: the output {target} exists; pass --overwrite to replace it")


def _model_info(checkpoint: str) -> tuple[int, tuple[float, ...] | None]:
    """Spatial dims of a checkpoint's model (its sidecar's ``description.model.ndim``,
    default 2) and, when its density is in mm, the voxel spacing it was resolved for; the
    model must take one channel, as the volumes have."""
    sidecar_path = Path(checkpoint).with_suffix(".json")
    try:
        description = json.loads(sidecar_path.read_text("utf-8"))["description"]
        ndim = int(description["model"].get("ndim", 2))
        channels = int(description["model"].get("channels", description["data"]["channels"]))
        density = description.get("density") or ""
        spacing = (
            tuple(float(v) for v in description["spacing"])
            if "spacing=" in density and description.get("spacing")
            else None
        )
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint sidecar {sidecar_path} does not exist") from None
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(
            f"{checkpoint}: not a denoising checkpoint (sidecar {sidecar_path}: {err!r})"
        ) from None
    if channels != 1:
        raise ValueError(f"{checkpoint}: the model takes {channels} channels, volumes have one")
    return ndim, spacing
