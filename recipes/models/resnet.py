"""ResNet-18/34 (basic blocks) and ResNet-50 (bottlenecks) with the CIFAR stem.

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv
1512.03385), Table 1, in the form the CIFAR-100 literature trains them (e.g. the widely
used pytorch-cifar100 benchmark of weiaicunzai: resnet18 11.2 M parameters, 75.61 %
top-1; resnet50 23.7 M, 77.39 %): the ImageNet stem (7×7 stride-2 convolution and
max-pool) is replaced by one 3×3 stride-1 convolution, so a 32×32 image enters the first
stage at full size; the four stages of 64, 128, 256 and 512 channels (× 4 for
bottlenecks) halve it three times, and global average pooling feeds one linear layer.

Projection shortcuts (1×1 convolution + BatchNorm, option B of the paper) wherever a
block changes the resolution or the width; identity elsewhere. In a bottleneck the
stride sits on the 3×3 convolution. Every convolution is bias-free (BatchNorm follows).
``make_weighted`` gives the 3×3 convolutions a density; the 1×1 bottleneck and shortcut
convolutions stay plain (a density cannot change a 1×1 kernel).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .layers import batch_norm as norm
from .layers import conv_type

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50"]

_WIDTHS = (64, 128, 256, 512)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")


def _shortcut(ndim: int, in_width: int, out_width: int, stride: int) -> nn.Module:
    """Identity, or a 1×1 projection + BatchNorm where the shape changes."""
    if stride == 1 and in_width == out_width:
        return nn.Identity()
    conv = conv_type(ndim)(in_width, out_width, 1, stride=stride, bias=False)
    return nn.Sequential(conv, norm(ndim, out_width))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm, ReLU between, added to the shortcut, ReLU.

    Args:
        ndim: spatial dimensions.
        in_width: input channels.
        width: channels of both convolutions (the output has ``width * expansion``).
        stride: stride of the first convolution (and of the projection shortcut).
    """

    expansion = 1

    def __init__(self, ndim: int, in_width: int, width: int, stride: int = 1):
        super().__init__()
        conv = conv_type(ndim)
        self.residual = nn.Sequential(
            conv(in_width, width, 3, stride=stride, padding=1, bias=False),
            norm(ndim, width),
            nn.ReLU(inplace=True),
            conv(width, width, 3, padding=1, bias=False),
            norm(ndim, width),
        )
        self.shortcut = _shortcut(ndim, in_width, width, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.residual(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand ×4, BatchNorm after each; shortcut; ReLU.

    Args:
        ndim: spatial dimensions.
        in_width: input channels.
        width: channels of the 1×1 reduction and the 3×3 convolution; the output has
            ``width * expansion`` (= 4 × width).
        stride: stride of the 3×3 convolution (and of the projection shortcut).
    """

    expansion = 4

    def __init__(self, ndim: int, in_width: int, width: int, stride: int = 1):
        super().__init__()
        conv = conv_type(ndim)
        out_width = width * self.expansion
        self.residual = nn.Sequential(
            conv(in_width, width, 1, bias=False),
            norm(ndim, width),
            nn.ReLU(inplace=True),
            conv(width, width, 3, stride=stride, padding=1, bias=False),
            norm(ndim, width),
            nn.ReLU(inplace=True),
            conv(width, out_width, 1, bias=False),
            norm(ndim, out_width),
        )
        self.shortcut = _shortcut(ndim, in_width, out_width, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.residual(x) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with the CIFAR stem: 3×3 conv + BatchNorm + ReLU, four stages, pool, linear.

    Stage ``i`` has ``blocks[i]`` blocks of width 64, 128, 256, 512; the first block of
    stages 2–4 has stride 2. The output of the last stage is averaged over every spatial
    position and mapped to ``num_classes`` logits by one ``nn.Linear``.

    Weights keep PyTorch's default initialisation, so a model built after
    ``torch.manual_seed(s)`` is reproducible. Parameters for 100 classes: 11 220 132
    (ResNet-18), 21 328 292 (34), 23 705 252 (50).

    Args:
        block: ``"basic"`` (``BasicBlock``) or ``"bottleneck"`` (``Bottleneck``).
        blocks: blocks per stage, four integers ≥ 1 ((2, 2, 2, 2) for ResNet-18,
            (3, 4, 6, 3) for ResNet-34 and -50).
        in_channels: input channels (3 for colour images).
        num_classes: number of classes (output logits).
        ndim: spatial dimensions, ≥ 1 (2 for images; 1–3: ``nn.ConvNd``; ≥ 4:
            ``WeightedConvNd`` with the ``ones`` density, made weighted by
            ``make_weighted`` like the others).

    Raises:
        ValueError: on an invalid argument (the message names it).

    Shapes:
        ``(B, in_channels, *spatial)`` with ``len(spatial) == ndim`` → ``(B, num_classes)``.

    Example:
        >>> import torch
        >>> net = ResNet("basic", (1, 1, 1, 1), num_classes=10)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        block: str = "basic",
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        in_channels: int = 3,
        num_classes: int = 100,
        ndim: int = 2,
    ):
        super().__init__()
        kinds: dict[str, type[BasicBlock] | type[Bottleneck]] = {
            "basic": BasicBlock,
            "bottleneck": Bottleneck,
        }
        if not isinstance(block, str) or block not in kinds:
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        if not isinstance(blocks, (tuple, list)) or len(blocks) != len(_WIDTHS):
            raise ValueError(f"blocks must be four integers ≥ 1, got {blocks!r}")
        for count in blocks:
            _check_int("blocks", count, 1)
        _check_int("in_channels", in_channels, 1)
        _check_int("num_classes", num_classes, 1)
        _check_int("ndim", ndim, 1)
        self.config: dict[str, Any] = {
            "block": block,
            "blocks": tuple(blocks),
            "in_channels": in_channels,
            "num_classes": num_classes,
            "ndim": ndim,
        }
        self.ndim = ndim
        self.in_channels = in_channels
        unit = kinds[block]
        self.stem = nn.Sequential(
            conv_type(ndim)(in_channels, _WIDTHS[0], 3, padding=1, bias=False),
            norm(ndim, _WIDTHS[0]),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        in_width = _WIDTHS[0]
        for i, (width, count) in enumerate(zip(_WIDTHS, blocks, strict=True)):
            stage = []
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                stage.append(unit(ndim, in_width, width, stride))
                in_width = width * unit.expansion
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != self.ndim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ResNet(ndim={self.ndim}, in_channels={self.in_channels}) expects input of "
                f"shape (B, {self.in_channels}, {', '.join(['*'] * self.ndim)}), "
                f"got {tuple(x.shape)}"
            )
        features = self.stages(self.stem(x))
        return self.fc(features.flatten(2).mean(dim=2))


def resnet18(in_channels: int = 3, num_classes: int = 100, ndim: int = 2) -> ResNet:
    """ResNet-18 (basic blocks 2-2-2-2); 11 220 132 parameters for 100 classes."""
    return ResNet("basic", (2, 2, 2, 2), in_channels, num_classes, ndim)


def resnet34(in_channels: int = 3, num_classes: int = 100, ndim: int = 2) -> ResNet:
    """ResNet-34 (basic blocks 3-4-6-3); 21 328 292 parameters for 100 classes."""
    return ResNet("basic", (3, 4, 6, 3), in_channels, num_classes, ndim)


def resnet50(in_channels: int = 3, num_classes: int = 100, ndim: int = 2) -> ResNet:
    """ResNet-50 (bottlenecks 3-4-6-3); 23 705 252 parameters for 100 classes."""
    return ResNet("bottleneck", (3, 4, 6, 3), in_channels, num_classes, ndim)
