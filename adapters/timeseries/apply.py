"""Run a 1-D network along one dimension of a labelled array, in memory or lazily on dask.

:func:`apply` feeds every series of a DataArray (every position along the other
dimensions) through a network that maps ``(batch, channels, length)`` to
``(batch, channels', length)``, and returns a DataArray with the input's dimensions,
coordinates, name and attributes. A dask-backed input gives a lazy, dask-backed result
whose chunks overlap by the network's receptive-field radius
(:func:`ndwconv.adapters.receptive.receptive_radius` with ``strict=True``), so that it
equals the whole-series pass; it runs unchanged on a ``dask.distributed`` cluster (the
network is one object in the task graph, shipped once to each worker that needs it).
"""

from __future__ import annotations

import copy
import itertools
import math
import threading
import uuid
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ndwconv.progress import progress_bar

from ..receptive import receptive_field
from ._containers import as_dataarray, import_xarray

__all__ = ["apply"]

PROVENANCE_ATTR = "ndwconv_apply"


class _ModelError(ValueError):
    """The network broke :func:`apply`'s contract (its message says how)."""


class _Runner:
    """A private copy of the network, in eval mode, that runs blocks of series.

    The copy is kept on the CPU for pickling (a dask cluster ships it to its workers);
    each process moves it to ``device`` once, at its first block.
    """

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
        self.model = copy.deepcopy(model).to(device="cpu", dtype=dtype).eval()
        self.device = device
        self.dtype = dtype
        self._lock = threading.Lock()
        self._on_device: nn.Module | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self.model, "device": self.device, "dtype": self.dtype}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._on_device = None

    def network(self) -> nn.Module:
        with self._lock:
            if self._on_device is None:
                if self.device.type == "cpu":
                    self._on_device = self.model
                else:
                    self._on_device = copy.deepcopy(self.model).to(self.device)
            return self._on_device

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``(n, channels, length)`` values → the network's ``(n, channels', length)``."""
        net = self.network()
        with torch.inference_mode():
            x = np.ascontiguousarray(x)
            if not x.flags.writeable:  # torch warns on read-only memory (never written)
                x = x.copy()
            t = torch.from_numpy(x).to(device=self.device, dtype=self.dtype)
            y = net(t)
            if not isinstance(y, torch.Tensor) or y.ndim != 3 or y.shape[0] != x.shape[0]:
                shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                raise _ModelError(
                    f"model must map (batch, channels, length) to (batch, channels', length); "
                    f"it gave {shape} for an input of shape {tuple(x.shape)}"
                )
            if y.shape[-1] != x.shape[-1]:
                raise _ModelError(
                    f"model changes the length of a series ({x.shape[-1]} samples in, "
                    f"{y.shape[-1]} out); apply needs a network whose output has the input's "
                    "length (pad its convolutions, e.g. padding='same')"
                )
            return y.to(device="cpu", dtype=_out_torch_dtype(self.dtype)).numpy()


def _out_torch_dtype(dtype: torch.dtype) -> torch.dtype:
    """NumPy has no bfloat16: such results come back as float32."""
    return torch.float32 if dtype == torch.bfloat16 else dtype


def _run_block(
    block: np.ndarray,
    runner: _Runner,
    *,
    channels: bool,
    out_channels: int,
    batch_size: int,
    bar: Any = None,
) -> np.ndarray:
    """The network over every series of ``block`` (``(*batch, [C,] L)``), ``batch_size``
    series per call."""
    length = block.shape[-1]
    batch = block.shape[:-2] if channels else block.shape[:-1]
    n = math.prod(batch)
    flat = block.reshape(n, block.shape[-2] if channels else 1, length)
    out_dtype = torch.empty(0, dtype=_out_torch_dtype(runner.dtype)).numpy().dtype
    out = np.empty((n, out_channels, length), dtype=out_dtype)
    for start in range(0, n, batch_size):
        y = runner(flat[start : start + batch_size])
        if y.shape[1] != out_channels:
            raise _ModelError(
                f"model gave {y.shape[1]} channels here but {out_channels} on the first series"
            )
        out[start : start + batch_size] = y
        if bar is not None:
            bar.update(1)
    return out.reshape(*batch, out_channels, length) if channels else out.reshape(*batch, length)


def _chunk_task(
    block: np.ndarray,
    runner: _Runner,
    *,
    halo: int,
    channels: bool,
    out_channels: int,
    batch_size: int,
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    """One dask block: the network over the block extended by ``halo`` samples on each
    inner side (none at the series' ends), then the extension cut off again."""
    out = _run_block(
        block, runner, channels=channels, out_channels=out_channels, batch_size=batch_size
    )
    if halo == 0 or block_info is None:
        return out
    where = block_info[None]["chunk-location"][-1]
    count = block_info[None]["num-chunks"][-1]
    left = halo if where > 0 else 0
    right = halo if where < count - 1 else 0
    return out[..., left : out.shape[-1] - right]


def _chunks_along(chunks: Sequence[int], halo: int, stride: int) -> tuple[int, ...]:
    """Chunks along the filtered dimension merged so that every chunk is at least ``halo``
    long (dask's overlap reads the halo from the neighbouring chunk only) and, for a
    strided network, starts on its coarsest grid (a multiple of ``stride``)."""
    total = sum(chunks)
    least = max(halo, 1)
    bounds = [0]
    edge = 0
    for size in chunks[:-1]:
        edge += size
        b = edge // stride * stride
        if b - bounds[-1] >= least and total - b >= least:
            bounds.append(b)
    bounds.append(total)
    return tuple(int(b - a) for a, b in itertools.pairwise(bounds))


def _check_locality(runner: _Runner, channels: int, r: int, stride: int, *, given: bool) -> None:
    """Refuse a network whose outputs change farther than ``r`` samples from a changed
    input (a ``torch.mean`` over time in a ``forward``, say, which no layer shows).

    A random series, and the same series with its first (then its last) sample changed:
    outputs more than ``r`` samples away must not move. Not a proof (a dependence can hide
    behind an inactive ReLU for one input), but it catches what the layers cannot show.
    """
    length = math.ceil((4 * r + 64) / stride) * stride
    x = np.random.default_rng(0).standard_normal((1, channels, length)).astype(np.float32)
    y = runner(x)
    scale = float(np.abs(y).max()) + 1e-30
    tol = (1e-3 if runner.dtype in (torch.float16, torch.bfloat16) else 1e-6) * scale
    for end in (0, length - 1):
        z = x.copy()
        z[..., end] += 10.0
        moved = np.flatnonzero(np.abs(runner(z) - y).max(axis=(0, 1)) > tol)
        reach = int(np.abs(moved - end).max()) if moved.size else 0
        if reach > r:
            source = "the radius given" if given else "the radius bound from its layers"
            raise ValueError(
                f"model: changing one input sample moved outputs {reach} samples away, "
                f"beyond {source} ({r}): its forward mixes positions in a way no chunked "
                "pass can reproduce from the layers' reach (e.g. a mean over time outside "
                "a module)" + ("" if given else "; pass radius= if you know a larger radius")
            )


def _resolve_dtype(dtype: Any, model: nn.Module) -> torch.dtype:
    if dtype is None:
        floats = [p.dtype for p in model.parameters() if p.is_floating_point()]
        return floats[0] if floats else torch.float32
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    else:
        try:
            resolved = torch.from_numpy(np.empty(0, dtype=np.dtype(dtype))).dtype
        except TypeError as err:
            raise TypeError(f"dtype must be a floating-point dtype, got {dtype!r}") from err
    if not resolved.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype!r}")
    return resolved


def _resolve_device(device: Any, model: nn.Module) -> torch.device:
    if device is None:
        for p in model.parameters():
            return p.device
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must name a torch device, got {device!r}: {err}") from err


def apply(
    model: nn.Module,
    data: Any,
    dim: Hashable = "time",
    channel_dim: Hashable | None = None,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    dtype: Any = None,
    radius: int | None = None,
    progress: bool = False,
) -> Any:
    """Run a 1-D network along ``dim`` of ``data``; the result has ``data``'s form.

    ``model`` takes ``(batch, channels, length)`` and returns ``(batch, channels',
    length)``, the same length (a network that changes it is refused with an error). Every
    dimension other than ``dim`` (and ``channel_dim``) is a batch dimension: each series
    along ``dim`` goes through the network on its own, ``batch_size`` series per call.

    - ``channel_dim=None``: the network sees one channel and must return one.
    - ``channel_dim`` given: that dimension is the network's channels. When the network
      returns as many channels as it was given, the dimension keeps its coordinates;
      otherwise it keeps its name, takes the new size, and its coordinates (and any
      coordinate along it) are dropped.

    The network runs on a copy of ``model`` (in eval mode, under
    ``torch.inference_mode``, on ``device``, in ``dtype``), so ``model`` itself is not
    touched: neither its parameters nor its training flag nor its device.

    **In memory** (NumPy-backed data): each series is one whole-series pass with the
    network's own padding at its ends.

    **Dask** (dask-backed DataArray): the result is lazy and dask-backed, chunked as the
    input (the channel dimension in one chunk). Each chunk runs extended by the receptive
    radius ``r`` of the network on each inner side, with nothing added at the series'
    ends (``boundary="none"``: the network pads the ends as in the whole-series pass), and
    the extension is cut off again: the result equals the in-memory one up to
    floating-point rounding. Chunks along ``dim`` shorter than ``r`` are first merged
    with their neighbours (dask's overlap reads its halo from the next chunk only); for a
    strided network, chunk starts are moved onto its coarsest grid (a multiple of the
    product of its strides) and the halo rounded up to one. The network is one object in
    the task graph, so a ``dask.distributed`` cluster ships it once to each worker.

    ``r`` is :func:`ndwconv.adapters.receptive.receptive_radius` with ``strict=True``:
    a network with a layer whose reach cannot be bounded (recurrent, attention,
    ``nn.Linear`` over positions, global pooling, a layer type it does not know) is
    refused, naming the layer. Pass ``radius=`` to state the radius yourself (a layer of
    your own, say); it is then your promise that outputs depend on no input farther away.
    Either radius is also probed before any work: a random series is run with its first,
    then its last sample changed, and a network whose outputs move farther away than the
    radius (a ``forward`` that takes a mean over time outside any module, a radius given
    too small) is refused. The same networks are refused for in-memory data, so that what
    works on a sample in memory also works on the dask-backed whole.

    Args:
        model: a ``torch.nn.Module``; 1-D (``Conv1d``-like) layers.
        data: an ``xarray.DataArray`` (NumPy- or dask-backed), a NumPy array (``dim`` is
            its last axis, the others are named ``axis_0``, ``axis_1``, …) or a pandas
            Series/DataFrame (``dim`` is the index; a DataFrame's columns are the
            dimension ``columns``).
        dim: the dimension the network runs along.
        channel_dim: the dimension that holds the network's input channels, or ``None``.
        batch_size: series per network call.
        device: where the network runs (default: where ``model``'s parameters are).
        dtype: floating-point type the network runs in (default: its parameters'); the
            result has this type (float32 for bfloat16).
        radius: the receptive radius to use instead of the one computed from the layers.
        progress: a progress bar over the network calls (in-memory data only; for dask,
            use dask's own diagnostics).

    Returns:
        The same type as ``data``; a DataArray has ``data``'s dimensions in the same
        order, its coordinates, name and attributes, plus the attribute
        ``ndwconv_apply`` (a string: the network's class, parameter count, receptive
        radius, dtype and device).

    Raises:
        TypeError: ``model`` is not a module, ``data`` is not one of the types above or
            holds no real numbers, ``dtype`` is not a floating-point type.
        ValueError: ``dim``/``channel_dim`` is not a dimension of ``data``, the series is
            empty, the network's receptive field cannot be determined (the message says
            which layer and why) or the probe finds it wider than the radius, the network
            fails on a series or changes its length or its channel count without
            ``channel_dim``.

    Example:
        >>> import numpy as np, xarray as xr
        >>> from torch import nn
        >>> net = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        >>> _ = nn.init.constant_(net.weight, 1.0)          # a 3-point moving sum
        >>> da = xr.DataArray([[0.0, 1, 2, 3]], dims=("station", "time"), name="x",
        ...                   attrs={"units": "K"})
        >>> out = apply(net, da)
        >>> out.values.tolist(), out.dims, out.name, out.attrs["units"]
        ([[1.0, 3.0, 6.0, 5.0]], ('station', 'time'), 'x', 'K')
        >>> out.attrs["ndwconv_apply"].split(";")[0]
        'Conv1d (3 parameters)'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    da, restore = as_dataarray(data, dim, argument="data")
    xr = import_xarray()
    if channel_dim is not None and (channel_dim not in da.dims or channel_dim == dim):
        raise ValueError(
            f"channel_dim {channel_dim!r} must be a dimension of data other than dim "
            f"{dim!r}; its dimensions are {list(da.dims)}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer ≥ 1, got {batch_size!r}")
    length = da.sizes[dim]
    if length == 0:
        raise ValueError(f"data has no samples along dim {dim!r}")

    if radius is None:
        try:
            field = receptive_field(model, ndim=1, strict=True)
        except ValueError as err:
            raise ValueError(
                f"model: its receptive field along {dim!r} cannot be determined, so no "
                f"chunked pass can be made to equal the whole-series pass: {err} (pass "
                "radius= if you know it)"
            ) from None
        assert field is not None  # strict mode raises instead
        r, stride = field[0][0], field[1][0]
    else:
        if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
            raise ValueError(f"radius must be an integer ≥ 0, got {radius!r}")
        try:
            field = receptive_field(model, ndim=1, strict=False)
        except ValueError:
            field = None
        r, stride = radius, (field[1][0] if field is not None else 1)

    torch_dtype = _resolve_dtype(dtype, model)
    torch_device = _resolve_device(device, model)
    runner = _Runner(model, torch_device, torch_dtype)

    channels = channel_dim is not None
    in_channels = da.sizes[channel_dim] if channels else 1
    order = [d for d in da.dims if d not in (dim, channel_dim)]
    order += [channel_dim, dim] if channels else [dim]
    values = da.transpose(*order).data

    # one short probe: clear errors before any long run, and the output channel count
    probe_len = min(length, math.ceil((4 * r + 64) / stride) * stride)
    try:
        out_channels = runner(np.zeros((1, in_channels, probe_len), dtype=np.float32)).shape[1]
    except _ModelError:
        raise
    except Exception as err:
        raise ValueError(
            f"model fails on a series of shape (1, {in_channels}, {probe_len}) "
            f"(batch, channels, length): {type(err).__name__}: {err}"
        ) from err
    if not channels and out_channels != 1:
        raise ValueError(
            f"model returns {out_channels} channels from one; give channel_dim (a "
            "dimension of data for the channels) or use a network with one output channel"
        )
    _check_locality(runner, in_channels, r, stride, given=radius is not None)

    try:
        import dask.array as dsa
    except ImportError:  # pragma: no cover - dask comes with the timeseries extra
        dsa = None

    if dsa is not None and isinstance(values, dsa.Array):
        if channels:
            values = values.rechunk({values.ndim - 2: -1})
        axis = values.ndim - 1
        halo = math.ceil(r / stride) * stride if r > 0 else 0
        along = _chunks_along(values.chunks[axis], halo, stride)
        if along != values.chunks[axis]:
            values = values.rechunk({axis: along})
        if halo > 0 and len(along) > 1:
            extended = dsa.overlap.overlap(
                values,
                depth={a: (halo if a == axis else 0) for a in range(values.ndim)},
                boundary={a: "none" for a in range(values.ndim)},
            )
        else:
            extended, halo = values, 0
        out_chunks = list(values.chunks)
        if channels:
            out_chunks[-2] = (out_channels,)
        out_dtype = torch.empty(0, dtype=_out_torch_dtype(torch_dtype)).numpy().dtype
        import dask

        # the network is one key of the graph, read by every block's task (a cluster
        # ships it once to each worker, instead of once per task)
        key = f"ndwconv-apply-model-{uuid.uuid4().hex}"
        shipped = dask.delayed(runner, name=key, traverse=False)
        result = dsa.map_blocks(
            _chunk_task,
            extended,
            shipped,
            halo=halo,
            channels=channels,
            out_channels=out_channels,
            batch_size=batch_size,
            chunks=tuple(out_chunks),
            dtype=out_dtype,
            meta=np.empty((0,) * values.ndim, dtype=out_dtype),
            token="ndwconv-apply",
        )
    else:
        values = np.asarray(values)
        n = math.prod(values.shape[:-2] if channels else values.shape[:-1])
        with progress_bar(
            total=math.ceil(n / batch_size), desc="apply", unit="call", enabled=progress
        ) as bar:
            result = _run_block(
                values,
                runner,
                channels=channels,
                out_channels=out_channels,
                batch_size=batch_size,
                bar=bar,
            )

    coords = da.coords
    if channels and out_channels != in_channels:
        coords = da.drop_vars([k for k, v in da.coords.items() if channel_dim in v.dims]).coords
    parameters = sum(p.numel() for p in model.parameters())
    provenance = (
        f"{type(model).__name__} ({parameters:,} parameters); receptive radius {r} samples "
        f"along {dim!r}{' (given)' if radius is not None else ''}; "
        f"{str(torch_dtype).removeprefix('torch.')} on {torch_device}; "
        "ndwconv.adapters.timeseries.apply"
    )
    out = xr.DataArray(
        result,
        dims=order,
        coords={k: v.variable for k, v in coords.items()},
        name=da.name,
        attrs={**da.attrs, PROVENANCE_ATTR: provenance},
    ).transpose(*da.dims)
    return restore(out)
