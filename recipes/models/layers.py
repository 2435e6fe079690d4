"""Layers by number of spatial dimensions: one factory for every N-D model.

``conv_type(ndim)`` is ``nn.Conv1d/2d/3d`` for 1–3 dimensions (so ``ndwconv.convert`` can
make them weighted) and, since PyTorch has no plain 4-D convolution, a
``WeightedConvNd(ndim, …)`` constructor with the ``ones`` density — exactly a plain N-D
convolution — from 4 on. ``batch_norm(ndim, width)`` and ``BatchNormNd`` do the same for
batch normalisation.

Example:
    >>> conv_type(2).__name__, type(conv_type(4)(1, 2, 3)).__name__
    ('Conv2d', 'WeightedConvNd')
    >>> type(batch_norm(4, 8)).__name__
    'BatchNormNd'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from ndwconv import WeightedConvNd

__all__ = ["BatchNormNd", "batch_norm", "conv_type"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _check_ndim(ndim: Any) -> int:
    if isinstance(ndim, bool) or not isinstance(ndim, int) or ndim < 1:
        raise ValueError(f"ndim must be an int ≥ 1, got {ndim!r}")
    return ndim


class BatchNormNd(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation over ``(B, C, *spatial)`` for any number of spatial axes.

    Statistics per channel over the batch and every spatial axis, as ``nn.BatchNorm3d``
    computes them (``F.batch_norm`` takes any trailing shape); the same parameters, buffers
    and ``state_dict`` keys. ``ndim`` fixes the expected number of spatial axes.

    Example:
        >>> import torch
        >>> bn = BatchNormNd(4, 3)
        >>> bn(torch.randn(2, 3, 4, 5, 6, 7)).shape
        torch.Size([2, 3, 4, 5, 6, 7])
    """

    def __init__(self, ndim: int, num_features: int, **kwargs: Any):
        super().__init__(num_features, **kwargs)
        self.ndim = ndim

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != self.ndim + 2:
            raise ValueError(
                f"BatchNormNd(ndim={self.ndim}) expects {self.ndim + 2}-D input, "
                f"got {input.dim()}-D"
            )


def conv_type(ndim: int) -> Callable[..., nn.Module]:
    """The convolution constructor for ``ndim`` spatial axes (``nn.ConvNd`` arguments)."""
    if _check_ndim(ndim) in _CONV:
        return _CONV[ndim]

    def conv(*args: Any, **kwargs: Any) -> nn.Module:
        return WeightedConvNd(ndim, *args, density="ones", **kwargs)

    conv.__name__ = f"WeightedConvNd[ndim={ndim}]"
    return conv


def batch_norm(ndim: int, width: int) -> nn.Module:
    """Batch normalisation of ``width`` channels over ``ndim`` spatial axes."""
    if _check_ndim(ndim) in _BATCH_NORM:
        return _BATCH_NORM[ndim](width)
    return BatchNormNd(ndim, width)
