"""N-dimensional sliding-window inference with overlap blending into any array-like.

A volume too large for one forward pass is cut into overlapping tiles, each tile is
predicted, and the predictions are blended with per-voxel weights (constant, or a
Gaussian importance map as in MONAI's ``sliding_window_inference`` and nnU-Net). Unlike
MONAI, no full-volume buffer is kept: the weighted sum covers one *slab* of ``tile[0]`` rows
along the first spatial axis, and every finished row range is rounded and written to
``out`` (NumPy array, ``np.memmap`` or h5py dataset), so peak memory is set by the tile and
the other axes, never by the length of the first axis. A source that is not in memory
(h5py dataset, lazy reader) is read the same way, one slab of ``tile[0]`` rows at a time.
The weights are separable, and so is their sum: each tile's weight is normalised by it
per axis, so no map of summed weights is stored and nothing is divided at the end.

Blending is exact: with an identity predictor the output equals the input bit for bit in
float32, borders included (see :func:`sliding_window`, "Exactness").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ndwconv.progress import progress_bar

from .convert import check_target_dtype, to_dtype

__all__ = ["sliding_window", "tile_starts"]

_BLENDS = ("gaussian", "constant")
# Floor of each axis of the Gaussian importance map (its peak is 1), so that no covered
# voxel gets a weight that underflows: a tile's weight is at least 1e-3 ** ndim.
_MIN_GAUSSIAN_WEIGHT = 1e-3


def _per_axis(value: Any, ndim: int, name: str) -> tuple:
    """Broadcast a scalar to ``ndim`` axes, or check a sequence has one entry per axis."""
    if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str):
        values = tuple(value)
        if len(values) != ndim:
            raise ValueError(f"{name} has {len(values)} entries but source has {ndim} spatial dims")
        return values
    return (value,) * ndim


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_ints(values: tuple, name: str, minimum: int) -> tuple[int, ...]:
    if not all(_is_int(v) and v >= minimum for v in values):
        raise ValueError(f"{name} must be integers >= {minimum}, got {values}")
    return tuple(int(v) for v in values)


def _overlap_voxels(overlap: Any, tile: tuple[int, ...]) -> tuple[int, ...]:
    """Overlap in voxels per axis: floats are fractions of the tile, ints are voxels."""
    values = _per_axis(overlap, len(tile), "overlap")
    voxels = []
    for value, size in zip(values, tile, strict=True):
        if _is_int(value):
            if not 0 <= value < size:
                raise ValueError(
                    f"overlap in voxels must be in [0, tile), got {value} for tile {size}"
                )
            voxels.append(int(value))
        elif isinstance(value, (float, np.floating)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"overlap as a fraction must be in [0, 1), got {value}")
            voxels.append(math.floor(value * size))
        else:
            raise TypeError(f"overlap must be a float fraction or int voxels, got {value!r}")
    return tuple(voxels)


def tile_starts(size: int, tile: int, step: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``[0, size)`` with stride ``step``.

    The last tile is shifted inward to end exactly at ``size``; a ``size`` smaller than the
    tile gives one start, 0.

    >>> tile_starts(10, 4, 3)
    [0, 3, 6]
    >>> tile_starts(11, 4, 3)
    [0, 3, 6, 7]
    >>> tile_starts(3, 4, 3)
    [0]
    """
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, step))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def _kept(extent: int, margin: int, first: bool, last: bool) -> tuple[int, int]:
    """``[a, b)``: the part of one axis of a tile that is kept, without its inner margins."""
    return (0 if first else margin), (extent if last else extent - margin)


def _axis_weight(tile: int, extent: int, kept: tuple[int, int], blend: str) -> np.ndarray:
    """1-D weight of the kept part ``[a, b)`` of one axis of one tile: Gaussian or ones."""
    if blend == "gaussian":
        sigma = tile / 8.0  # σ = tile/8 as in MONAI (sigma_scale=0.125)
        x = np.arange(tile, dtype=np.float64) - (tile - 1) / 2.0
        weight = np.maximum(np.exp(-0.5 * (x / sigma) ** 2), _MIN_GAUSSIAN_WEIGHT)
    else:
        weight = np.ones(tile, dtype=np.float64)
    return weight[:extent][kept[0] : kept[1]].copy()


def _check_out(out: Any) -> None:
    """Refuse an ``out`` that cannot be written or cannot hold the values, before any work."""
    if isinstance(out, torch.Tensor):
        raise TypeError("out must be a NumPy array, np.memmap or h5py dataset, not a torch.Tensor")
    check_target_dtype(np.dtype(getattr(out, "dtype", np.float32)), "out")
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        raise ValueError("out is read-only (a NumPy array or memmap that cannot be written)")
    file = getattr(out, "file", None)
    if file is not None and getattr(file, "mode", None) == "r":
        name = getattr(file, "filename", "")
        raise ValueError(f"out is read-only: its file {name!r} is open for reading only")


def _read_tile(source: Any, slices: tuple[slice, ...], dest: torch.Tensor) -> None:
    """Copy ``source[:, *slices]`` into the float32 CPU tile ``dest``, replicate-padding its end.

    NumPy blocks (views of an in-memory source, or arrays read from a file) and tensors are
    copied by torch in one pass, cast on the way; a block torch cannot view (read-only,
    non-native byte order, a dtype torch lacks) is copied by NumPy.
    """
    block = source[(slice(None), *slices)]
    if tuple(block.shape[1:]) != tuple(dest.shape[1:]):  # an axis shorter than the tile
        if isinstance(block, torch.Tensor):
            block = block.detach().to("cpu", torch.float32).numpy()
        block = np.asarray(block, dtype=np.float32)
        pad = [(0, 0)] + [(0, t - b) for t, b in zip(dest.shape[1:], block.shape[1:], strict=True)]
        block = np.pad(block, pad, mode="edge")
    if isinstance(block, torch.Tensor):
        dest.copy_(block.detach())
        return
    block = np.asarray(block)
    if block.flags.writeable and block.dtype.isnative:
        try:
            dest.copy_(torch.from_numpy(block))
            return
        except (TypeError, ValueError):  # a dtype or strides torch cannot view
            pass
    np.copyto(dest.numpy(), block, casting="unsafe")


class _SlabReader:
    """Serve tiles of a source that is not in memory from one slab of rows at a time.

    A file-backed source (h5py dataset, or any array-like other than a NumPy array or a
    tensor) is read as ``source[:, z:z + rows]``, the full extent of every axis after the
    first, once per first-axis tile start ``z``: one large contiguous read instead of one
    strided hyperslab per tile. h5py datasets are read with ``read_direct`` into one buffer
    of the source's dtype (native byte order), made once and reused.
    """

    def __init__(self, source: Any, rows: int) -> None:
        self.source, self.rows = source, rows
        self.start: int | None = None
        self.block: Any = None
        self.buffer: np.ndarray | None = None
        dtype = getattr(source, "dtype", None)
        self.direct = (
            hasattr(source, "read_direct") and isinstance(dtype, np.dtype) and dtype.kind in "biuf"
        )

    def slab(self, start: int) -> Any:
        """The block of rows ``[start, start + rows)``, read if not already held."""
        if start != self.start:
            rows = (slice(None), slice(start, start + self.rows))
            rows += (slice(None),) * (len(self.source.shape) - 2)
            if self.direct:
                if self.buffer is None:
                    shape = (self.source.shape[0], self.rows, *self.source.shape[2:])
                    self.buffer = np.empty(shape, dtype=self.source.dtype.newbyteorder("="))
                self.source.read_direct(self.buffer, source_sel=rows)
                self.block = self.buffer
            else:
                self.block = None  # let the previous slab go before reading the next
                block = self.source[rows]
                if not isinstance(block, (np.ndarray, torch.Tensor)):  # e.g. a lazy dask slab
                    block = np.asarray(block)
                self.block = block
            self.start = start
        return self.block


def sliding_window(
    predictor: Callable[[torch.Tensor], torch.Tensor],
    source: Any,
    tile: int | Sequence[int],
    overlap: float | int | Sequence[float] | Sequence[int] = 0.25,
    blend: str = "gaussian",
    batch_size: int = 4,
    out: Any = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    out_channels: int | None = None,
    margin: int | Sequence[int] = 0,
) -> Any:
    """Predict a ``(C, *spatial)`` volume tile by tile and blend the tiles into ``out``.

    Any number of spatial dims. Tiles start at 0 with stride ``tile - overlap`` per axis;
    the last tile of an axis is shifted inward to end exactly at the border, so no voxel is
    dropped or zeroed. Along an axis shorter than the tile, the input is padded at its end
    by replicating the last voxel up to the tile size and the prediction is cropped back.

    ``source`` is never loaded whole. A NumPy array (``np.memmap`` included) or a tensor is
    sliced tile by tile (views, copied into the tile batch). Any other array-like (an h5py
    dataset, a lazy reader) is read one *slab* at a time, ``source[:, z:z + tile[0], :, …]``
    once per first-axis tile start ``z`` (h5py: ``read_direct`` into one reused buffer of
    the source's dtype), and its tiles are cut from that slab: a few large contiguous reads
    rather than one strided hyperslab per tile.

    Predictions are blended with normalised weights ``ŵ = w / Σ w`` and accumulated as
    ``Σ ŵ · prediction`` in float64 over a slab of ``tile[0]`` rows of the first spatial
    axis (all of the other axes); each finished row range is rounded to ``out``'s dtype
    and written once no later tile can touch it. An integer (or bool) ``out`` gets values
    (first rounded to float32 when every prediction is float32, so an identity predictor
    is exact there too) rounded to nearest and clipped to its range, the conversion
    ``ndwconv.adapters.volumes`` uses for on-disk dtypes
    (``ndwconv.adapters.convert.to_dtype``); a NaN or ±inf bound for an integer ``out``,
    or a finite value beyond a float ``out``'s range (e.g. float16), is a ValueError
    naming ``out``. A tile's weight ``w`` is a product of 1-D weights, one per axis, and
    the tiles form a grid, so ``Σ w`` is the product of the axes' 1-D sums and ``ŵ`` the
    product of 1-D weights each divided by its axis's sum: no sum of weights is ever
    stored or divided by. Peak memory is therefore about
    ``8 · C_out · tile[0] · prod(spatial[1:])`` bytes for the float64 slab (half as much
    again for a float32 row buffer when the caller gives ``out``), plus, for a source read
    by slabs, ``C · tile[0] · prod(spatial[1:])`` voxels of the source's dtype, plus one
    batch of tiles, one float64 tile (a prediction promoted) and the weights of one layer
    of tiles over the other axes (about ``8 · (tile/step)^(N-1) · prod(spatial[1:])``
    bytes): independent of ``spatial[0]``, whether ``out`` is in memory, a memmap or an
    h5py dataset. These buffers are made once and reused, so tiles and flushes allocate no
    slab-sized temporaries.

    Exactness: a voxel's output is ``Σ ŵᵢ·pᵢ`` over the ``k`` tiles covering it, computed
    in float64 and rounded once to ``out``'s dtype, with ``ŵᵢ`` a product of ``N`` factors
    ``wᵢ,ₐ / Sₐ`` (1-D weight ``0 < wᵢ,ₐ ≤ 1`` over the float64 1-D sum ``Sₐ``, whose rounding
    is shared by all ``k`` tiles). When every ``pᵢ`` equals the same float32 value ``x``
    (e.g. an identity predictor), the float64 sum is ``x·(1 + η)`` with
    ``|η| ≤ (2k + 2N + 3)·2⁻⁵³``, far below half a float32 ulp (``≥ 2⁻²⁵·|x|``) for any
    ``k, N < 2²⁶``, so it rounds back to ``x`` bit for bit (zeros, subnormals, infinities
    and NaNs included; no overflow, since ``|ŵᵢ·x| ≤ |x|``; no underflow of the weights,
    each at least ``10⁻³ᴺ / k``).

    Args:
        predictor: callable mapping a float32 batch ``(B, C, *tile)`` on ``device`` to
            ``(B, C_out, *tile)`` (same spatial size, any device/dtype). It is called under
            ``torch.no_grad()``. On the CPU the batch is one tensor refilled for every
            call, so a predictor must not keep it (returning it, as an identity does, is
            fine: each prediction is used up before the next call).
        source: ``(C, *spatial)`` array-like with ``.shape`` and slicing: NumPy array,
            ``np.memmap``, h5py dataset or torch tensor. The channel axis always comes first.
        tile: tile size, one int for every axis or one per spatial axis.
        overlap: overlap of neighbouring tiles, per axis or for all: a float in ``[0, 1)``
            is a fraction of the tile (``floor(overlap · tile)`` voxels), an int is a number
            of voxels in ``[0, tile)``.
        blend: ``"gaussian"`` (separable Gaussian, σ = tile/8 per axis, peak 1, each axis
            floored at 1e-3) or ``"constant"`` (all weights 1).
        batch_size: number of tiles per predictor call.
        out: writable ``(C_out, *spatial)`` array-like (NumPy, memmap, h5py dataset) of a
            bool, integer or float dtype; ``None`` allocates a NumPy float32 array. It is
            checked (shape, dtype, writable) before anything is predicted.
        device: device the tile batches are moved to.
        progress: show a tqdm progress bar over tiles.
        out_channels: expected ``C_out``; by default taken from the first prediction.
        margin: voxels per axis discarded at each tile face that lies inside the volume,
            for predictors whose outputs near the tile edge are spoiled by their own
            padding. Discarded voxels of a prediction are never read (not even multiplied
            by 0), so NaN or inf there cannot reach the output. Needs
            ``2 · margin ≤ overlap`` voxels so every voxel stays covered.
            With ``margin ≥`` the receptive radius, a convolution's tiled output equals its
            whole-volume output (faces on the volume border are kept).

    Returns:
        ``out`` (the new array when ``out`` was ``None``).

    Raises:
        ValueError: a bad ``tile``, ``overlap``, ``blend``, ``batch_size``, ``margin``,
            ``out_channels``, a ``source`` without spatial dims or with an axis of length
            0, an ``out`` of the wrong shape or read-only, a prediction of the wrong shape
            or whose channel count changes between batches, or values ``out`` cannot hold.
        TypeError: an ``overlap`` that is neither float nor int, an ``out`` whose dtype
            is not bool, integer or float, or a prediction that is not a torch.Tensor.

    Example:
        >>> volume = np.arange(2 * 7 * 5, dtype=np.float32).reshape(2, 7, 5)
        >>> result = sliding_window(lambda x: x, volume, tile=4, overlap=0.5, progress=False)
        >>> result.shape, result.dtype, bool((result == volume).all())
        ((2, 7, 5), dtype('float32'), True)
    """
    shape = tuple(int(s) for s in source.shape)
    if len(shape) < 2:
        raise ValueError(f"source must have shape (C, *spatial) with >= 1 spatial dim, got {shape}")
    spatial = shape[1:]
    ndim = len(spatial)
    if 0 in shape:
        raise ValueError(f"source has an axis of length 0: shape {shape} (C, *spatial)")
    tile = _check_ints(_per_axis(tile, ndim, "tile"), "tile", 1)
    overlap_voxels = _overlap_voxels(overlap, tile)
    if blend not in _BLENDS:
        raise ValueError(f"blend must be one of {_BLENDS}, got {blend!r}")
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    margin = _check_ints(_per_axis(margin, ndim, "margin"), "margin", 0)
    for m, ov in zip(margin, overlap_voxels, strict=True):
        if 2 * m > ov:
            raise ValueError(f"margin {margin} needs 2 * margin <= overlap {overlap_voxels} voxels")
    if out_channels is not None and (not _is_int(out_channels) or out_channels < 1):
        raise ValueError(f"out_channels must be an integer >= 1, got {out_channels!r}")
    if out is not None:
        out_shape = tuple(out.shape)
        channels = out_shape[0] if out_shape and out_channels is None else out_channels
        if out_shape != (channels, *spatial):
            raise ValueError(
                f"out has shape {out_shape}, expected (C_out, *spatial) with C_out = "
                f"{out_channels or 'any'} and spatial = {spatial}"
            )
        _check_out(out)

    extent = tuple(min(t, s) for t, s in zip(tile, spatial, strict=True))
    steps = tuple(t - ov for t, ov in zip(tile, overlap_voxels, strict=True))
    starts = [tile_starts(s, t, st) for s, t, st in zip(spatial, tile, steps, strict=True)]
    n_tiles = math.prod(len(axis) for axis in starts)

    # 1-D weights per axis for a tile that starts at ``s``; a tile's weight is their outer
    # product, and the weights summed over all tiles are the outer product of ``sums``.
    # Only the kept part of a tile (without the margins inside the volume) is weighted and
    # read: discarded voxels of a prediction are sliced away, never multiplied by 0.
    def kept(axis: int, s: int) -> tuple[int, int]:
        first, last = s == 0, s + extent[axis] == spatial[axis]
        return _kept(extent[axis], margin[axis], first, last)

    def axis_weight(axis: int, s: int) -> np.ndarray:
        return _axis_weight(tile[axis], extent[axis], kept(axis, s), blend)

    sums = []
    for axis, axis_starts in enumerate(starts):
        total = np.zeros(spatial[axis], dtype=np.float64)
        for s in axis_starts:
            a, b = kept(axis, s)
            total[s + a : s + b] += axis_weight(axis, s)
        sums.append(total)

    # Weights are normalised per axis: a tile's weight along an axis divided by the sum of all
    # tiles' weights there. Their outer product is the tile's weight over Σ w (the sums are
    # separable too), so the slab holds finished values and a flush only rounds them. The
    # first-axis factor is cached per start, the rest per start of the other axes (the
    # weights of one layer of tiles: about (tile/step)^(N-1) · prod(spatial[1:]) values).
    first_cache: dict[int, torch.Tensor] = {}
    rest_cache: dict[tuple[int, ...], torch.Tensor] = {}

    def normalised(axis: int, s: int) -> np.ndarray:
        a, b = kept(axis, s)
        return axis_weight(axis, s) / sums[axis][s + a : s + b]

    def tile_weight(start: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        if start[0] not in first_cache:
            values = torch.from_numpy(normalised(0, start[0]))
            first_cache[start[0]] = values.reshape(-1, *[1] * (ndim - 1))
        if start[1:] not in rest_cache:
            rest = np.ones(())
            for a, s in enumerate(start[1:], start=1):
                rest = np.multiply.outer(rest, normalised(a, s))
            rest_cache[start[1:]] = torch.from_numpy(rest)
        return first_cache[start[0]], rest_cache[start[1:]]

    def batches() -> Iterator[list[tuple[int, ...]]]:
        # Axis 0 outermost: tiles arrive in non-decreasing order of their first-axis start.
        positions = itertools.product(*starts)
        while batch := list(itertools.islice(positions, batch_size)):
            yield batch

    num: torch.Tensor | None = None  # slab of Σ ŵ·p, rows [lo, lo + extent[0]) of axis 0
    lo = 0

    # Buffers made once, on the first prediction, and reused: every tile and every flush
    # would otherwise allocate (and page-fault in) fresh slab-sized temporaries.
    own_out = out is None  # made here (float32, in memory): flushes round straight into it
    # one tile's kept prediction promoted to float64 and scaled by its first-axis weight (a
    # same-dtype multiply-add is vectorised, a mixed-dtype one is not), one per kept shape
    promoted: dict[tuple[int, ...], torch.Tensor] = {}
    rows32: torch.Tensor | None = None  # finished rows rounded to float32 for ``out``
    wide = False  # a float64 prediction was seen: its values may lie beyond float32's range

    def check_float32(rounded: torch.Tensor, rows: int) -> None:
        """Refuse finite float64 values that became infinite in float32."""
        overflow = int((torch.isinf(rounded) & torch.isfinite(num[:, :rows])).sum())
        if overflow:
            raise ValueError(
                f"out: {overflow} values lie beyond the range of float32 "
                f"(±{np.finfo(np.float32).max:g}) and would become infinite"
            )

    def flush(rows: int, last: bool = False) -> None:
        """Write rows [lo, lo + rows) to ``out`` and slide the slab forward by ``rows``."""
        nonlocal lo
        dtype = np.dtype(getattr(out, "dtype", np.float32))
        rows_out = (slice(None), slice(lo, lo + rows))
        if own_out:  # our own float32 ``out``: rounded in place, once
            rounded = torch.from_numpy(out[rows_out]).copy_(num[:, :rows])
            if wide:
                check_float32(rounded, rows)
        elif dtype == np.float32:
            rounded = rows32[:, :rows].copy_(num[:, :rows])
            if wide:
                check_float32(rounded, rows)
            out[rows_out] = rounded.numpy()
        else:  # rounded to ``out``'s dtype (integers: to nearest, clipped)
            values = num[:, :rows]
            if not wide and dtype.kind in "biu":
                # float32 predictions blend to float32 values: rounded there first, the
                # float64 sum's last-bit error cannot move a tie such as 2.5 across it
                values = rows32[:, :rows].copy_(values)
            out[rows_out] = to_dtype(values.numpy(), dtype, name="out")
        lo += rows
        if last:
            return
        # rows [rows, E) move to [0, E - rows) in chunks of at most ``rows`` rows, so no
        # chunk's source overlaps its destination or an earlier chunk's destination
        keep = extent[0] - rows
        for a in range(0, keep, rows):
            b = min(a + rows, keep)
            num[:, a:b].copy_(num[:, a + rows : b + rows])
        num[:, keep:].zero_()

    # in-memory sources are sliced tile by tile (views); others are read a slab at a time
    in_memory = isinstance(source, (np.ndarray, torch.Tensor))
    if isinstance(source, torch.Tensor):
        real = not source.is_complex()
    else:
        real = np.dtype(getattr(source, "dtype", np.float32)).kind in "biuf"
    if not real:
        raise TypeError(f"source has dtype {source.dtype}; it must hold real numbers")
    reader = None if in_memory else _SlabReader(source, extent[0])

    inputs: torch.Tensor | None = None
    with (
        torch.no_grad(),
        progress_bar(total=n_tiles, desc="tiles", unit="tile", enabled=progress) as bar,
    ):
        for batch in batches():
            windows = [
                tuple(slice(s, s + e) for s, e in zip(start, extent, strict=True))
                for start in batch
            ]
            # one batch tensor from PyTorch's allocator, refilled for every call
            if inputs is None:
                inputs = torch.empty((batch_size, shape[0], *tile), dtype=torch.float32)
            view = inputs[: len(batch)]
            for i, (start, window) in enumerate(zip(batch, windows, strict=True)):
                if reader is None:
                    _read_tile(source, window, view[i])
                else:
                    _read_tile(reader.slab(start[0]), (slice(0, extent[0]), *window[1:]), view[i])
            prediction = predictor(view.to(device))
            if not isinstance(prediction, torch.Tensor):
                kind = type(prediction)
                raise TypeError(
                    f"predictor must return a torch.Tensor (B, C_out, *tile), got "
                    f"{kind.__module__}.{kind.__qualname__}"
                )
            if (
                prediction.ndim != ndim + 2
                or prediction.shape[0] != len(batch)
                or tuple(prediction.shape[2:]) != tile
            ):
                raise ValueError(
                    f"predictor must return (B, C_out, *tile) = ({len(batch)}, C_out, "
                    f"{', '.join(map(str, tile))}), got {tuple(prediction.shape)}"
                )
            if num is None:
                channels = prediction.shape[1]
                if out_channels is not None and channels != out_channels:
                    raise ValueError(
                        f"out_channels is {out_channels} but the predictor returned {channels}"
                    )
                if own_out:
                    # zero-filled at once: cheaper than faulting its pages in from the
                    # threads of each flush's division
                    out = torch.zeros((channels, *spatial), dtype=torch.float32).numpy()
                elif out.shape[0] != channels:
                    raise ValueError(
                        f"out has {out.shape[0]} channels but the predictor returned {channels}"
                    )
                num = torch.zeros((channels, extent[0], *spatial[1:]), dtype=torch.float64)
                if not own_out:
                    rows32 = torch.empty((channels, extent[0], *spatial[1:]), dtype=torch.float32)
            elif prediction.shape[1] != channels:
                raise ValueError(
                    f"predictor returned {prediction.shape[1]} channels, but {channels} in "
                    "an earlier batch: C_out must not change between batches"
                )
            prediction = prediction.detach().to("cpu")
            wide = wide or prediction.dtype == torch.float64
            if prediction.dtype not in (torch.float32, torch.float64):
                prediction = prediction.to(torch.float64)  # exact for float16/bfloat16/ints
            for start, pred in zip(batch, prediction, strict=True):
                if start[0] > lo:
                    flush(start[0] - lo)
                ranges = [kept(axis, s) for axis, s in enumerate(start)]
                (a0, b0), rest_ranges = ranges[0], ranges[1:]
                local = (
                    slice(start[0] - lo + a0, start[0] - lo + b0),
                    *(
                        slice(s + a, s + b)
                        for s, (a, b) in zip(start[1:], rest_ranges, strict=True)
                    ),
                )
                crop = (slice(None), *(slice(a, b) for a, b in ranges))
                size = tuple(b - a for a, b in ranges)
                if size not in promoted:
                    promoted[size] = torch.empty((channels, *size), dtype=torch.float64)
                buffer = promoted[size]
                # Σ ŵ·p in float64 (float32 predictions are promoted exactly)
                first, rest = tile_weight(start)
                if pred.dtype == torch.float64:
                    torch.mul(pred[crop], first, out=buffer)
                else:
                    buffer.copy_(pred[crop]).mul_(first)
                num[(slice(None), *local)].addcmul_(buffer, rest)
            bar.update(len(batch))
        flush(spatial[0] - lo, last=True)
    return out
