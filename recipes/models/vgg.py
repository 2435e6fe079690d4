"""VGG with batch normalisation and the CIFAR head: 11, 13, 16 and 19 weight layers.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015 (arXiv 1409.1556), configurations A, B, D and E, in the form the
CIFAR-100 literature trains them (e.g. the widely used pytorch-cifar100 benchmark of
weiaicunzai, whose table lists vgg16_bn at 34.0 M parameters and 72.93 % top-1): every
3×3 convolution is followed by BatchNorm and ReLU, five 2×2 max-pools take a 32×32 image
to 1×1, and the classifier is ``Linear(512, 4096)-ReLU-Dropout-Linear(4096, 4096)-ReLU-
Dropout-Linear(4096, classes)``.

The network is built from plain ``nn.ConvNd``/``nn.BatchNormNd``/``nn.MaxPoolNd`` layers,
so ``make_weighted`` (``ndwconv.convert``) gives every 3×3 convolution a density; the
linear classifier stays as it is.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .layers import batch_norm as norm
from .layers import conv_type

__all__ = ["VGG", "VGG_LAYERS", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]

VGG_LAYERS: dict[int, tuple[tuple[int, ...], ...]] = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}
"""Convolution widths of each stage (a max-pool follows every stage), by depth: the
configurations A (11), B (13), D (16) and E (19) of Simonyan & Zisserman, Table 1."""

_MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_MIN_SIZE = 2 ** len(VGG_LAYERS[11])  # five 2× max-pools


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")


class VGG(nn.Module):
    """VGG-``depth`` for small images: conv 3×3 (+ BatchNorm) + ReLU stacks, 5 max-pools.

    ``features``: for each stage of ``VGG_LAYERS[depth]``, its 3×3 convolutions ("same"
    padding, with bias, as the published CIFAR variants have it) each followed by
    BatchNorm (when ``batch_norm``) and ReLU, then a 2× max-pool. ``classifier``:
    ``Linear(512, 4096)``, ReLU, Dropout, ``Linear(4096, 4096)``, ReLU, Dropout,
    ``Linear(4096, num_classes)``.

    A 32×32 image (CIFAR) leaves the features at 1×1, which are flattened into the
    classifier. Larger inputs (at least 32 samples along every axis) are accepted too: the
    map the features leave is averaged over its positions first, which for 32×32 (up to
    63×63) inputs is the plain flattening.

    Weights keep PyTorch's default initialisation, so a model built after
    ``torch.manual_seed(s)`` is reproducible. Parameters for 100 classes:
    28 518 244 (VGG-11), 28 703 140 (13), 34 015 396 (16), 39 327 652 (19).

    Args:
        depth: 11, 13, 16 or 19 weight layers.
        in_channels: input channels (3 for colour images).
        num_classes: number of classes (output logits).
        batch_norm: BatchNorm after every convolution (the ``_bn`` variants).
        dropout: dropout probability in the classifier, in [0, 1).
        ndim: spatial dimensions, 1–3 (2 for images; 1 for sequences, 3 for volumes).

    Raises:
        ValueError: on an invalid argument (the message names it).

    Shapes:
        ``(B, in_channels, *spatial)``, every spatial size ≥ 32 → ``(B, num_classes)``.

    Example:
        >>> import torch
        >>> net = VGG(11, num_classes=10)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
        >>> VGG(11, in_channels=1, num_classes=4, ndim=1)(torch.randn(2, 1, 40)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        depth: int = 16,
        in_channels: int = 3,
        num_classes: int = 100,
        batch_norm: bool = True,
        dropout: float = 0.5,
        ndim: int = 2,
    ):
        super().__init__()
        if isinstance(depth, bool) or depth not in VGG_LAYERS:
            raise ValueError(f"depth must be one of {sorted(VGG_LAYERS)}, got {depth!r}")
        _check_int("in_channels", in_channels, 1)
        _check_int("num_classes", num_classes, 1)
        if isinstance(ndim, bool) or ndim not in _MAX_POOL:
            raise ValueError(f"ndim must be 1, 2 or 3 (max pooling), got {ndim!r}")
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0 <= dropout < 1
        ):
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.config: dict[str, Any] = {
            "depth": depth,
            "in_channels": in_channels,
            "num_classes": num_classes,
            "batch_norm": bool(batch_norm),
            "dropout": float(dropout),
            "ndim": ndim,
        }
        self.ndim = ndim
        self.in_channels = in_channels
        conv = conv_type(ndim)
        layers: list[nn.Module] = []
        width = in_channels
        for stage in VGG_LAYERS[depth]:
            for out in stage:
                layers.append(conv(width, out, 3, padding=1))
                if batch_norm:
                    layers.append(norm(ndim, out))
                layers.append(nn.ReLU(inplace=True))
                width = out
            layers.append(_MAX_POOL[ndim](kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(width, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        if (
            x.dim() != self.ndim + 2
            or x.shape[1] != self.in_channels
            or min(x.shape[2:]) < _MIN_SIZE
        ):
            raise ValueError(
                f"VGG(ndim={self.ndim}, in_channels={self.in_channels}) expects input of "
                f"shape (B, {self.in_channels}, {', '.join(['*'] * self.ndim)}) with every "
                f"spatial size ≥ {_MIN_SIZE} (five 2× max-pools), got {tuple(x.shape)}"
            )
        features = self.features(x)
        return self.classifier(features.flatten(2).mean(dim=2))


def vgg11_bn(
    in_channels: int = 3, num_classes: int = 100, dropout: float = 0.5, ndim: int = 2
) -> VGG:
    """VGG-11 (configuration A) with BatchNorm; 28 518 244 parameters for 100 classes."""
    return VGG(11, in_channels, num_classes, batch_norm=True, dropout=dropout, ndim=ndim)


def vgg13_bn(
    in_channels: int = 3, num_classes: int = 100, dropout: float = 0.5, ndim: int = 2
) -> VGG:
    """VGG-13 (configuration B) with BatchNorm; 28 703 140 parameters for 100 classes."""
    return VGG(13, in_channels, num_classes, batch_norm=True, dropout=dropout, ndim=ndim)


def vgg16_bn(
    in_channels: int = 3, num_classes: int = 100, dropout: float = 0.5, ndim: int = 2
) -> VGG:
    """VGG-16 (configuration D) with BatchNorm; 34 015 396 parameters for 100 classes."""
    return VGG(16, in_channels, num_classes, batch_norm=True, dropout=dropout, ndim=ndim)


def vgg19_bn(
    in_channels: int = 3, num_classes: int = 100, dropout: float = 0.5, ndim: int = 2
) -> VGG:
    """VGG-19 (configuration E) with BatchNorm; 39 327 652 parameters for 100 classes."""
    return VGG(19, in_channels, num_classes, batch_norm=True, dropout=dropout, ndim=ndim)
