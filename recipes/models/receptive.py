"""How far a network looks: an upper bound on its receptive-field radius, per axis.

A tiled pass of a convolutional network equals the whole-input pass when every tile
drops, at its inner faces, at least as many voxels as the network's receptive radius
(the distance from an output voxel to the farthest input voxel it depends on).
:func:`receptive_radius` bounds that radius from the layers alone, without running the
network, so that a tiler can say when its tiles are too small.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
    ...                     nn.Conv2d(4, 1, 5, padding=4, dilation=2))
    >>> receptive_radius(net)   # 1 + 2·(5 − 1)/2
    (5, 5)
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


def receptive_radius(model: nn.Module, ndim: int | None = None) -> tuple[int, ...] | None:
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

    Args:
        model: the network.
        ndim: number of spatial axes of the result; by default that of the first layer
            with a kernel.

    Returns:
        The radius per axis in input voxels (``(0,) * ndim`` for a network that mixes no
        neighbours), or ``None`` when the network pools over its whole input
        (``nn.AdaptiveAvgPool*``/``nn.AdaptiveMaxPool*``, e.g. NAFNet's channel
        attention): then no tiling reproduces the whole-input pass.

    Raises:
        ValueError: ``ndim`` is not given and ``model`` has no layer with a kernel.

    Example:
        >>> from ndwconv.recipes.models import DnCNN
        >>> receptive_radius(DnCNN(ndim=3, depth=5, width=4))
        (5, 5, 5)
    """
    layers = [
        m
        for m in model.modules()
        if isinstance(m, (nn.modules.conv._ConvNd, *_POOLS, *_GLOBAL_POOLS, nn.Upsample))
    ]
    if ndim is None:
        kernels = [m for m in layers if isinstance(m, nn.modules.conv._ConvNd)]
        if not kernels:
            raise ValueError(
                f"{type(model).__name__} has no convolution; give ndim to receptive_radius"
            )
        ndim = len(kernels[0].kernel_size)
    radius = [0] * ndim
    scale = [1] * ndim
    for layer in layers:
        if isinstance(layer, _GLOBAL_POOLS):
            return None
        if isinstance(layer, nn.Upsample):
            if layer.mode != "nearest":
                radius = [r + s for r, s in zip(radius, scale, strict=True)]
            continue
        kernel = _per_axis(layer.kernel_size, ndim)
        dilation = _per_axis(getattr(layer, "dilation", 1), ndim)
        padding = layer.padding
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
    return tuple(radius)
