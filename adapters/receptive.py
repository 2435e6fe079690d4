"""How far a network looks: an upper bound on its receptive-field radius, per axis.

A tiled (or chunked) pass of a convolutional network equals the whole-input pass when
every tile drops, at its inner faces, at least as many voxels as the network's receptive
radius (the distance from an output voxel to the farthest input voxel it depends on).
:func:`receptive_radius` bounds that radius from the layers alone, without running the
network, so that a tiler can say when its tiles are too small, and a chunked pass (such
as :func:`ndwconv.adapters.timeseries.apply` on a dask array) how far its chunks must
overlap.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
    ...                     nn.Conv2d(4, 1, 5, padding=4, dilation=2))
    >>> receptive_radius(net)   # 1 + 2·(5 − 1)/2
    (5, 5)
    >>> try:
    ...     receptive_radius(nn.Sequential(nn.Conv1d(1, 1, 3), nn.GRU(4, 4)), strict=True)
    ... except ValueError as err:
    ...     print(str(err)[:70])
    receptive_radius(strict=True): layer '1' (GRU) prevents a bound: a rec
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

__all__ = ["receptive_radius"]

_GLOBAL_POOLS = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)

# ---- strict mode: what is known about the layers that do not mix positions, or that do
_POOL_NDIM = {
    **dict.fromkeys((nn.MaxPool1d, nn.AvgPool1d, nn.LPPool1d), 1),
    **dict.fromkeys((nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d), 2),
    **dict.fromkeys((nn.MaxPool3d, nn.AvgPool3d, nn.LPPool3d), 3),
}
_PAD_NDIM = {
    **dict.fromkeys((nn.ZeroPad1d, nn.ConstantPad1d, nn.ReflectionPad1d, nn.ReplicationPad1d), 1),
    **dict.fromkeys((nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d), 2),
    **dict.fromkeys((nn.ZeroPad3d, nn.ConstantPad3d, nn.ReflectionPad3d, nn.ReplicationPad3d), 3),
}
_CIRCULAR_PADS = (nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d)
# softmax-like layers normalise along ``dim``: position-wise only when that is the channels
_ALONG_DIM = (nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.GLU)
_ATTENTION = (
    nn.MultiheadAttention,
    nn.Transformer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
)
_WHOLE_SERIES_NORMS = (nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm)
_LINEAR = (nn.Linear, nn.Bilinear, nn.LazyLinear)
# every other activation of torch.nn acts on each element alone
_POINTWISE = (
    nn.Identity,
    nn.Sequential,  # containers: their children are visited (an empty one is the identity)
    nn.ModuleList,
    nn.ModuleDict,
    nn.modules.dropout._DropoutNd,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.LocalResponseNorm,  # across channels, at each position
    nn.ChannelShuffle,
    *(
        cls
        for cls in vars(nn.modules.activation).values()
        if isinstance(cls, type)
        and issubclass(cls, nn.Module)
        and cls is not nn.Module
        # softmax-like layers depend on their dim; Softmax2d on a (batch, channel,
        # length) input would normalise over the batch
        and not issubclass(cls, (*_ALONG_DIM, nn.MultiheadAttention, nn.Softmax2d, *_LINEAR))
    ),
)


def _per_axis(value: Any, ndim: int) -> tuple[int, ...]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(int(v) for v in value)
        return values if len(values) == ndim else (max(values, default=0),) * ndim
    return (int(value),) * ndim


def _reach(kernel: int, dilation: int, padding: int | str) -> int:
    """Farthest input voxel, on either side, that one output voxel of a layer reads."""
    extent = dilation * (kernel - 1)
    if padding == "same":
        low = extent // 2
    elif padding == "valid":
        low = 0
    else:
        low = int(padding)
    return max(low, extent - low, 0)


class _NoBound(ValueError):
    """Raised inside the strict walk; carries the layer's name, type and the reason."""


def _layer_ndim(layer: nn.Module) -> int | None:
    """Spatial axes a kernel-bearing layer expects (None where it does not say)."""
    if isinstance(layer, nn.modules.conv._ConvNd):
        return len(layer.kernel_size)
    for table in (_POOL_NDIM, _PAD_NDIM):
        for cls, ndim in table.items():
            if isinstance(layer, cls):
                return ndim
    return None


def _strict_check(layer: nn.Module, ndim: int) -> str | None:
    """Why ``layer`` prevents a bound (None: it does not). Kernel layers are checked for
    their dimensionality and padding only; their reach is added by the caller."""
    layer_ndim = _layer_ndim(layer)
    if layer_ndim is not None and layer_ndim != ndim:
        return (
            f"a {layer_ndim}-D layer in a network asked about {ndim} spatial "
            f"ax{'is' if ndim == 1 else 'es'}"
        )
    if isinstance(layer, nn.modules.conv._ConvNd):
        if layer.padding_mode == "circular":
            return (
                "padding_mode='circular' wraps the input around, so outputs at one end "
                "depend on inputs at the other"
            )
        return None
    if isinstance(layer, _CIRCULAR_PADS):
        return "circular padding wraps the input around, so outputs at one end depend on the other"
    if isinstance(layer, (*_POOLS, nn.modules.pooling._LPPoolNd, *_PAD_NDIM)):
        return None
    if isinstance(layer, nn.Upsample):
        if layer.scale_factor is None:
            return (
                "it resizes to a fixed size (size=...), so how far it looks depends on the "
                "input's length; use scale_factor"
            )
        return None
    if isinstance(layer, _GLOBAL_POOLS):
        return "adaptive pooling pools over the whole input, so every output depends on every input"
    if isinstance(layer, nn.RNNBase):
        return (
            "a recurrent layer carries state along the sequence, so an output can depend "
            "on inputs arbitrarily far away"
        )
    if isinstance(layer, _ATTENTION):
        return "attention lets every position read every other position"
    if isinstance(layer, _LINEAR):
        return (
            "a linear layer acts on the last axis, which in a (batch, channel, position) "
            "input is a position axis: it mixes all positions"
        )
    if isinstance(layer, _WHOLE_SERIES_NORMS):
        return (
            "its statistics are taken over all positions of the input, so every output "
            "depends on every input"
        )
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        if not layer.track_running_stats:
            return (
                "batch normalisation without running statistics normalises with the "
                "statistics of the whole input, even in eval mode"
            )
        return None
    if isinstance(layer, _ALONG_DIM):
        if layer.dim in (1, -(ndim + 1)):
            return None
        return (
            f"it acts along dim={layer.dim}, not along the channels (dim=1), so it mixes positions"
        )
    if isinstance(layer, _POINTWISE):
        return None
    if not any(True for _ in layer.children()):
        return (
            "an unknown layer type: whether it mixes positions, and how far, cannot be "
            "told from its type"
        )
    return None  # a container: its children are visited


def receptive_field(
    model: nn.Module, ndim: int | None = None, strict: bool = False
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """``(radius, stride)`` per axis: :func:`receptive_radius` and the product of the
    strides of all layers (the spacing, in input voxels, of the network's coarsest grid;
    a chunked pass keeps the network's results only where its chunks start on that grid).
    ``None`` where :func:`receptive_radius` is ``None``."""
    if strict:
        layers = []
        skip: list[str] = []
        for name, module in model.named_modules():
            if any(name.startswith(prefix) for prefix in skip):
                continue
            handled = isinstance(
                module,
                (
                    nn.modules.conv._ConvNd,
                    *_POOLS,
                    nn.modules.pooling._LPPoolNd,
                    *_GLOBAL_POOLS,
                    nn.Upsample,
                    nn.RNNBase,
                    *_ATTENTION,
                    *_LINEAR,
                ),
            )
            if handled:
                skip.append(f"{name}." if name else "")
            layers.append((name, module))
    else:
        layers = [
            (name, m)
            for name, m in model.named_modules()
            if isinstance(m, (nn.modules.conv._ConvNd, *_POOLS, *_GLOBAL_POOLS, nn.Upsample))
        ]
    if ndim is None:
        kernels = [
            m
            for _, m in layers
            if isinstance(m, nn.modules.conv._ConvNd) or (strict and _layer_ndim(m) is not None)
        ]
        if not kernels:
            raise ValueError(
                f"{type(model).__name__} has no convolution; give ndim to receptive_radius"
            )
        ndim = _layer_ndim(kernels[0]) or 1
    radius = [0] * ndim
    scale = [1] * ndim
    for name, layer in layers:
        if strict:
            reason = _strict_check(layer, ndim)
            if reason is not None:
                raise _NoBound(
                    f"receptive_radius(strict=True): layer {name or '(the model itself)'!r} "
                    f"({type(layer).__name__}) prevents a bound: {reason}"
                )
        if isinstance(layer, _GLOBAL_POOLS):
            return None
        if isinstance(layer, nn.Upsample):
            if layer.mode != "nearest":
                radius = [r + s for r, s in zip(radius, scale, strict=True)]
            continue
        if isinstance(layer, tuple(_PAD_NDIM)):
            pads = layer.padding  # (left, right) per axis, last axis first
            for axis in range(ndim):
                left, right = pads[2 * (ndim - 1 - axis)], pads[2 * (ndim - 1 - axis) + 1]
                radius[axis] += max(abs(left), abs(right)) * scale[axis]
            continue
        if not isinstance(layer, (nn.modules.conv._ConvNd, *_POOLS, nn.modules.pooling._LPPoolNd)):
            continue
        kernel = _per_axis(layer.kernel_size, ndim)
        dilation = _per_axis(getattr(layer, "dilation", 1), ndim)
        padding = getattr(layer, "padding", 0)
        pads = (padding,) * ndim if isinstance(padding, str) else _per_axis(padding, ndim)
        stride = _per_axis(layer.stride if layer.stride is not None else kernel, ndim)
        transposed = getattr(layer, "transposed", False)
        for axis in range(ndim):
            reach = _reach(kernel[axis], dilation[axis], pads[axis])
            if transposed:  # read on the coarse grid: reach at most d·(k − 1) coarse voxels
                reach = dilation[axis] * (kernel[axis] - 1)
            radius[axis] += reach * scale[axis]
            if not transposed:
                scale[axis] *= max(stride[axis], 1)
    return tuple(radius), tuple(scale)


def receptive_radius(
    model: nn.Module, ndim: int | None = None, strict: bool = False
) -> tuple[int, ...] | None:
    """An upper bound, per spatial axis, on the receptive-field radius of ``model``.

    The layers that mix neighbouring voxels are visited in the order ``model.modules()``
    lists them: every convolution (``nn.Conv1d/2d/3d``, their transposed forms, and
    ndwconv's ``WeightedConv1d/2d/3d/Nd``, all ``torch.nn`` ``_ConvNd`` subclasses) and
    every max/average pooling. Each adds its reach, ``max(p, d·(k − 1) − p)`` for kernel
    size ``k``, dilation ``d`` and leading padding ``p`` (``d·(k − 1)/2`` for the usual
    "same" padding), times the product of the strides of the layers before it (a layer
    after a stride-2 down-sampling reads voxels twice as far apart). Interpolating
    ``nn.Upsample`` layers add one coarse voxel.

    For a chain of stride-1 convolutions with symmetric padding, such as DnCNN, this is
    the exact radius: ``depth · (k − 1)/2``. Otherwise it is an over-estimate, never an
    under-estimate for networks built from these layers: parallel branches are added as if
    they were in series, and strides are never divided back by up-sampling. Operations
    outside modules (``torch.nn.functional`` calls in a ``forward``) are not seen.

    **strict mode** (``strict=True``) is for callers that rely on the bound (a chunked
    pass that must equal the whole-input pass). The network, in eval mode, is bounded
    when every module is either a container (its children are checked) or a layer whose
    effect on positions is known: the convolutions and poolings above (also ``LPPool``),
    padding layers (``nn.ZeroPad1d``, ``ConstantPad``, ``ReflectionPad``,
    ``ReplicationPad``: they add their width), ``nn.Upsample`` with a ``scale_factor``,
    and the layers that act on each position alone (the activations of ``torch.nn``,
    dropout, ``nn.Identity``, batch normalisation with running statistics,
    ``nn.LocalResponseNorm``, and ``Softmax``/``LogSoftmax``/``Softmin``/``GLU`` along
    the channels, ``dim=1``). Any other module raises a ``ValueError`` that names it (its
    qualified name in ``model.named_modules()`` and its type) and says why:

    - it mixes all positions: recurrent layers (``nn.RNN``/``LSTM``/``GRU``), attention
      and transformer layers, ``nn.Linear`` (it acts on the last axis, a position axis of
      a ``(batch, channel, position…)`` input), adaptive (global) pooling, instance, group
      and layer normalisation, batch normalisation without running statistics,
      softmax-like layers along a position axis;
    - it wraps around: ``padding_mode="circular"`` and ``nn.CircularPad*`` (outputs at one
      end depend on inputs at the other, so no overlap reproduces the ends);
    - it looks at a length-dependent distance: ``nn.Upsample(size=...)``;
    - it has another dimensionality than ``ndim`` (a ``Conv2d`` in a 1-D network);
    - its type is unknown (a leaf module of your own, which may do anything in its
      ``forward``).

    Strides do not prevent a bound (it is the over-estimate above; a chunked pass must in
    addition start its chunks on the network's coarsest grid). Other padding modes
    (``zeros``, ``reflect``, ``replicate``) are fine: they look no farther than the
    kernel. As in the default mode, operations in a ``forward`` outside modules
    (``torch.mean`` over positions, say) cannot be seen.

    Args:
        model: the network.
        ndim: number of spatial axes of the result; by default that of the first layer
            with a kernel.
        strict: raise instead of returning ``None``, and refuse every layer whose reach
            is not known (above).

    Returns:
        The radius per axis in input voxels (``(0,) * ndim`` for a network that mixes no
        neighbours), or, in the default mode, ``None`` when the network pools over its
        whole input (``nn.AdaptiveAvgPool*``/``nn.AdaptiveMaxPool*``, e.g. NAFNet's channel
        attention): then no tiling reproduces the whole-input pass.

    Raises:
        ValueError: ``ndim`` is not given and ``model`` has no layer with a kernel; with
            ``strict=True``, a layer prevents a bound (the message names it).

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv1d(1, 8, 5, padding=2), nn.ReLU(),
        ...                     nn.Conv1d(8, 1, 3, padding=2, dilation=2))
        >>> receptive_radius(net, strict=True)   # 2 + 2·(3 − 1)/2
        (4,)
        >>> receptive_radius(nn.Sequential(net, nn.AdaptiveAvgPool1d(1))) is None
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    try:
        field = receptive_field(model, ndim, strict)
    except _NoBound as err:
        raise ValueError(str(err)) from None
    return None if field is None else field[0]
