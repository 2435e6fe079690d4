"""Time-series classifiers: the MNIST-1D CNN and the FCN and ResNet of Wang et al. (2017).

Built from plain ``nn.ConvNd``/``nn.BatchNormNd`` layers chosen by ``layers.conv_type`` and
``layers.batch_norm``, so ``ndim`` (1 by default) costs nothing and ``ndwconv.convert`` /
``make_weighted`` make them weighted. Inputs are ``(B, in_channels, *spatial)``, outputs
logits ``(B, num_classes)`` (softmax belongs to the loss).

* ``MNIST1DCNN`` — the "CNN" baseline of the MNIST-1D benchmark (Greydanus, "Scaling down
  deep learning", arXiv 2011.14439, 2020; 94 % test accuracy): three convolutions of 25
  channels (kernel 5 then 3 and 3, stride 2, padding 1) with ReLU, flattened into one linear
  layer; 5 210 parameters for length 40 and 10 classes.
* ``FCN`` and ``ResNetTS`` — Wang, Yan & Oates, "Time series classification from scratch
  with deep neural networks: a strong baseline", IJCNN 2017, as reimplemented by Ismail
  Fawaz et al., "Deep learning for time series classification: a review", DMKD 2019: FCN =
  three conv–BN–ReLU blocks of 128, 256, 128 channels with kernels 8, 5, 3, global average
  pooling, linear; ResNet = three residual blocks of 64, 128, 128 channels, each three
  conv–BN(–ReLU) with kernels 8, 5, 3 and a shortcut (1×1 conv + BN when the channel count
  changes, BN alone otherwise), global average pooling, linear. Convolutions keep their bias
  and use "same" padding (for the even kernel 8: 3 samples before, 4 after, as Keras does).

What is weighted: ``make_weighted`` (``where=odd_kernel_convs``) converts the convolutions
whose kernel is odd and larger than 1, since the ``Table`` densities fix an odd kernel's
centre tap. So in ``mnist1d_cnn`` all three convolutions are weighted; in ``fcn`` the
kernel-5 and kernel-3 ones (2 of 3; the first, kernel 8, stays plain); in ``resnet_ts``
the kernel-5 and kernel-3 ones of each block (6 of 9; the three kernel-8 ones and the 1×1
shortcuts stay plain). ``kernels=(7, 5, 3)`` is an option (not the published network) whose
convolutions are all odd, hence all weighted. A ``Gaussian`` density accepts even kernels
(its centre falls between taps 4 and 5), but with "same" padding the kernel-8 output is
aligned with tap 4 (index 3), so its profile would sit half a sample off; the recipes do not
weight even kernels.

Example:
    >>> import torch
    >>> net = FCN(in_channels=1, num_classes=3)
    >>> net(torch.randn(2, 1, 251)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .layers import batch_norm, conv_type

__all__ = ["FCN", "MNIST1DCNN", "ResNetTS"]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return value


def _check_ints(name: str, value: Any, count: int | None, example: str) -> tuple[int, ...]:
    """``value`` as a tuple of ``count`` (any number ≥ 1 when None) integers ≥ 1."""
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or not value
        or (count is not None and len(value) != count)
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        many = f"{count}" if count is not None else "one or more"
        raise ValueError(f"{name} must be {many} integers ≥ 1, e.g. {example}, got {value!r}")
    return tuple(value)


class MNIST1DCNN(nn.Module):
    """The MNIST-1D benchmark's CNN: 3 × (conv, ReLU) then a linear layer on the flattened map.

    Convolutions ``in_channels→channels`` kernel 5, then ``channels→channels`` kernel 3
    twice, all stride 2 and padding 1; lengths ``40 → 19 → 10 → 5``, so the linear layer
    sees ``channels · 5 = 125`` features.

    Args:
        in_channels: input channels (1 for MNIST-1D).
        num_classes: outputs (10 for MNIST-1D).
        ndim: spatial dimensions (1 for series).
        length: input length per spatial axis (40 for MNIST-1D); fixes the linear layer.
        channels: convolution channels (25 in the benchmark).

    Raises:
        ValueError: on an invalid argument (the message names it), e.g. a ``length`` too
            short for three stride-2 convolutions.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        ndim: int = 1,
        length: int = 40,
        channels: int = 25,
    ):
        super().__init__()
        _check_int("in_channels", in_channels, 1)
        _check_int("num_classes", num_classes, 1)
        _check_int("ndim", ndim, 1)
        _check_int("length", length, 3)
        _check_int("channels", channels, 1)
        conv = conv_type(ndim)
        self.conv1 = conv(in_channels, channels, 5, stride=2, padding=1)
        self.conv2 = conv(channels, channels, 3, stride=2, padding=1)
        self.conv3 = conv(channels, channels, 3, stride=2, padding=1)
        size = length
        for kernel in (5, 3, 3):
            size = (size + 2 - kernel) // 2 + 1
        self.ndim, self.length = ndim, length
        self.linear = nn.Linear(channels * size**ndim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        expected = (self.length,) * self.ndim
        if x.dim() != self.ndim + 2 or tuple(x.shape[2:]) != expected:
            raise ValueError(
                f"MNIST1DCNN(length={self.length}) expects input (B, C, "
                f"{', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h))
        h = torch.relu(self.conv3(h))
        return self.linear(h.flatten(1))


def _conv_bn(ndim: int, c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        conv_type(ndim)(c_in, c_out, kernel, padding="same"), batch_norm(ndim, c_out)
    )


class FCN(nn.Module):
    """Fully convolutional network of Wang et al. (2017) for series classification.

    ``conv(k₁)–BN–ReLU`` with ``widths[0]`` channels, then ``k₂`` with ``widths[1]``, then
    ``k₃`` with ``widths[2]``, global average pooling over every spatial axis, linear.

    Args:
        in_channels: input channels (dimensions of a multivariate series).
        num_classes: outputs.
        ndim: spatial dimensions.
        kernels: the three kernel sizes; ``(8, 5, 3)`` as published. ``(7, 5, 3)`` makes
            every convolution weightable (see the module docstring).
        widths: the three channel counts; ``(128, 256, 128)`` as published.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        ndim: int = 1,
        kernels: Sequence[int] = (8, 5, 3),
        widths: Sequence[int] = (128, 256, 128),
    ):
        super().__init__()
        _check_int("in_channels", in_channels, 1)
        _check_int("num_classes", num_classes, 1)
        _check_int("ndim", ndim, 1)
        kernels = _check_ints("kernels", kernels, 3, "(8, 5, 3)")
        widths = _check_ints("widths", widths, 3, "(128, 256, 128)")
        layers: list[nn.Module] = []
        c_in = in_channels
        for kernel, width in zip(kernels, widths, strict=True):
            layers += [*_conv_bn(ndim, c_in, width, kernel), nn.ReLU()]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.ndim = ndim
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x)
        return self.linear(h.mean(dim=tuple(range(2, 2 + self.ndim))))


class _ResidualBlock(nn.Module):
    def __init__(self, ndim: int, c_in: int, c_out: int, kernels: tuple[int, ...]):
        super().__init__()
        k1, k2, k3 = kernels
        self.body = nn.Sequential(
            *_conv_bn(ndim, c_in, c_out, k1),
            nn.ReLU(),
            *_conv_bn(ndim, c_out, c_out, k2),
            nn.ReLU(),
            *_conv_bn(ndim, c_out, c_out, k3),
        )
        if c_in != c_out:
            self.shortcut = _conv_bn(ndim, c_in, c_out, 1)
        else:
            self.shortcut = nn.Sequential(batch_norm(ndim, c_out))

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNetTS(nn.Module):
    """Residual network of Wang et al. (2017) for series classification.

    Three residual blocks of ``widths`` channels; each ``conv(k₁)–BN–ReLU–conv(k₂)–BN–ReLU–
    conv(k₃)–BN`` plus a shortcut (``1×1 conv–BN`` when the channel count changes, ``BN``
    otherwise, as in Ismail Fawaz et al.'s reference implementation), then ReLU; global
    average pooling, linear.

    Args:
        in_channels: input channels.
        num_classes: outputs.
        ndim: spatial dimensions.
        kernels: the kernel sizes inside each block; ``(8, 5, 3)`` as published.
        widths: the blocks' channel counts; ``(64, 128, 128)`` as published.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        ndim: int = 1,
        kernels: Sequence[int] = (8, 5, 3),
        widths: Sequence[int] = (64, 128, 128),
    ):
        super().__init__()
        _check_int("in_channels", in_channels, 1)
        _check_int("num_classes", num_classes, 1)
        _check_int("ndim", ndim, 1)
        kernels = _check_ints("kernels", kernels, 3, "(8, 5, 3)")
        widths = _check_ints("widths", widths, None, "(64, 128, 128)")
        blocks = []
        c_in = in_channels
        for width in widths:
            blocks.append(_ResidualBlock(ndim, c_in, width, kernels))
            c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.ndim = ndim
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks(x)
        return self.linear(h.mean(dim=tuple(range(2, 2 + self.ndim))))
