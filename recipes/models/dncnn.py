"""DnCNN: residual learning of Gaussian noise with a plain stack of convolutions.

Zhang, Zuo, Chen, Meng & Zhang, "Beyond a Gaussian Denoiser: Residual Learning of Deep CNN
for Image Denoising", IEEE Transactions on Image Processing 26(7), 2017 (arXiv 1608.03981),
Section III-A. In 1-D, 2-D and 3-D the network is built from plain
``nn.ConvNd``/``nn.BatchNormNd``/``nn.ReLU`` only, so ``ndwconv.convert`` turns it into its
weighted twin. PyTorch has no 4-D convolution, so from 4-D on (e.g. 3-D + time) the
convolutions are ``ndwconv.WeightedConvNd`` with the ``ones`` density — exactly a plain
N-D convolution — which ``make_weighted`` gives a real density.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from .layers import batch_norm as norm
from .layers import conv_type

__all__ = ["DnCNN"]

def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")


def _kernel_sizes(kernel_size: Any, ndim: int) -> tuple[int, ...]:
    """``kernel_size`` (an int, or one odd int per spatial axis) as one size per axis."""
    if isinstance(kernel_size, Sequence) and not isinstance(kernel_size, (str, bytes)):
        sizes = tuple(kernel_size)
        if len(sizes) != ndim:
            raise ValueError(
                f"kernel_size must be one integer or {ndim} (one per spatial axis), "
                f"got {list(sizes)}"
            )
    else:
        sizes = (kernel_size,) * ndim
    for size in sizes:
        _check_int("kernel_size", size, 1)
        if size % 2 == 0:
            raise ValueError(f"kernel_size must be odd ('same' padding), got {kernel_size!r}")
    return sizes


class DnCNN(nn.Module):
    """DnCNN (Zhang et al., 2017): the body predicts the noise, the forward subtracts it.

    Layers, as in Section III-A of the paper: ``conv + ReLU``, then ``depth - 2`` ×
    ``conv + BatchNorm + ReLU``, then ``conv``; every convolution has ``kernel_size``
    taps per axis (or per-axis sizes, e.g. ``(3, 3, 1)`` for in-plane filtering of a volume)
    and "same" zero padding (``kernel_size // 2``). The middle convolutions
    have no bias when ``batch_norm`` is on (BatchNorm's shift makes it redundant); the
    first and the last convolution keep theirs. With ``depth=17, width=64`` and greyscale
    input this is the paper's DnCNN-S (556 097 parameters).

    Weights keep PyTorch's default initialisation (Kaiming-uniform convolutions, BatchNorm
    γ = 1, β = 0), so a model built after ``torch.manual_seed(s)`` is reproducible.

    Args:
        ndim: spatial dimensions, ≥ 1 (1–3: ``nn.ConvNd``; ≥ 4: ``WeightedConvNd`` with
            the ``ones`` density and ``BatchNormNd``).
        channels: image channels (1 for greyscale, 3 for colour).
        depth: number of convolutions, ≥ 2 (17 in the paper's DnCNN-S).
        width: feature channels of the hidden convolutions, ≥ 1 (64 in the paper).
        kernel_size: odd kernel size, ≥ 1 (3 in the paper), or one odd size per spatial
            axis (``(3, 3, 1)``: a 3-D network that filters within slices only).
        batch_norm: BatchNorm after each middle convolution.
        residual: return ``x - body(x)`` (the body predicts the noise, as in the paper);
            otherwise return ``body(x)`` directly.

    Raises:
        ValueError: on an invalid argument (the message names it).

    Shapes:
        ``(B, channels, *spatial)`` with ``len(spatial) == ndim`` → the same shape.

    Example:
        >>> import torch
        >>> net = DnCNN(ndim=3, channels=1, depth=3, width=4)
        >>> net(torch.randn(2, 1, 5, 6, 7)).shape
        torch.Size([2, 1, 5, 6, 7])
        >>> DnCNN(ndim=4, depth=3, width=4)(torch.randn(1, 1, 3, 5, 6, 7)).shape  # 3-D + time
        torch.Size([1, 1, 3, 5, 6, 7])
        >>> DnCNN(ndim=3, depth=2, width=4, kernel_size=(3, 3, 1)).body[0].kernel_size
        (3, 3, 1)
    """

    def __init__(
        self,
        ndim: int = 2,
        channels: int = 1,
        depth: int = 17,
        width: int = 64,
        kernel_size: int | Sequence[int] = 3,
        batch_norm: bool = True,
        residual: bool = True,
    ):
        super().__init__()
        _check_int("ndim", ndim, 1)
        _check_int("channels", channels, 1)
        _check_int("depth", depth, 2)
        _check_int("width", width, 1)
        sizes = _kernel_sizes(kernel_size, ndim)
        self.config: dict[str, Any] = {
            "ndim": ndim,
            "channels": channels,
            "depth": depth,
            "width": width,
            "kernel_size": sizes[0] if len(set(sizes)) == 1 else list(sizes),
            "batch_norm": bool(batch_norm),
            "residual": bool(residual),
        }
        self.ndim = ndim
        self.channels = channels
        self.residual = bool(residual)
        conv, pad = conv_type(ndim), tuple(k // 2 for k in sizes)
        layers: list[nn.Module] = [
            conv(channels, width, sizes, padding=pad),
            nn.ReLU(inplace=True),
        ]
        for _ in range(depth - 2):
            layers.append(conv(width, width, sizes, padding=pad, bias=not batch_norm))
            if batch_norm:
                layers.append(norm(ndim, width))
            layers.append(nn.ReLU(inplace=True))
        layers.append(conv(width, channels, sizes, padding=pad))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != self.ndim + 2 or x.shape[1] != self.channels:
            raise ValueError(
                f"DnCNN(ndim={self.ndim}, channels={self.channels}) expects input of shape "
                f"(B, {self.channels}, {', '.join(['*'] * self.ndim)}), got {tuple(x.shape)}"
            )
        return x - self.body(x) if self.residual else self.body(x)
