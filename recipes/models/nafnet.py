"""NAFNet: a nonlinear-activation-free U-Net for image restoration.

Chen, Chu, Zhang & Sun, "Simple Baselines for Image Restoration", ECCV 2022 (arXiv
2204.04676). Written from the paper's description (Section 3 and Fig. 3); the default
block counts are those of the official ``NAFNet-SIDD-width32`` configuration
(``options/train/SIDD/NAFNet-width32.yml`` in github.com/megvii-research/NAFNet:
``width: 32, enc_blk_nums: [2, 2, 4, 8], middle_blk_num: 12, dec_blk_nums: [2, 2, 2, 2]``).
Attribute names follow that repository's layout, so its state-dict keys line up.

Every spatial convolution is a plain ``nn.Conv2d`` (the 3×3 intro/ending convolutions and
the depthwise 3×3 convolutions inside each block), so ``ndwconv.convert`` makes them
weighted; pass ``where=odd_kernel_convs`` to leave the 2×2 down-sampling convolutions alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LayerNorm2d", "NAFBlock", "NAFNet", "SimpleGate", "SimplifiedChannelAttention"]


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channels of each pixel, with a per-channel affine.

    Shapes:
        ``(B, C, H, W)`` → ``(B, C, H, W)``.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        y = (x - mean) * torch.rsqrt(var + self.eps)
        return y * self.weight[:, None, None] + self.bias[:, None, None]


class SimpleGate(nn.Module):
    """The paper's replacement for GELU: split the channels in two halves and multiply them.

    Shapes:
        ``(B, 2C, H, W)`` → ``(B, C, H, W)``.
    """

    def forward(self, x: Tensor) -> Tensor:
        first, second = x.chunk(2, dim=1)
        return first * second


class SimplifiedChannelAttention(nn.Sequential):
    """Simplified channel attention: ``x * conv1x1(global_average_pool(x))``.

    A ``Sequential`` of the pooling and the 1×1 convolution (keys ``1.weight``,
    ``1.bias``) whose forward multiplies its input by their result.
    """

    def __init__(self, channels: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x * super().forward(x)


class NAFBlock(nn.Module):
    """One NAFNet block: a gated depthwise-conv branch and a gated feed-forward branch.

    ``y = x + β · drop(conv3(SCA(gate(dwconv3x3(conv1(norm1(x)))))))`` and
    ``out = y + γ · drop(conv5(gate(conv4(norm2(y)))))``, with ``β`` and ``γ`` learnable
    per-channel scales initialised to zero (so a fresh block is the identity).

    Args:
        c: channels in and out.
        dw_expand: channel expansion of the depthwise branch (``c * dw_expand`` must be even).
        ffn_expand: channel expansion of the feed-forward branch (``c * ffn_expand`` even).
        dropout: dropout probability after each branch.

    Shapes:
        ``(B, c, H, W)`` → ``(B, c, H, W)``.
    """

    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2, dropout: float = 0.0):
        super().__init__()
        dw_channels, ffn_channels = c * dw_expand, c * ffn_expand
        if dw_channels % 2 or ffn_channels % 2:
            raise ValueError(
                "SimpleGate halves the channels: c * dw_expand and c * ffn_expand must be even, "
                f"got c={c}, dw_expand={dw_expand}, ffn_expand={ffn_expand}"
            )
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, dw_channels, 1)
        self.conv2 = nn.Conv2d(dw_channels, dw_channels, 3, padding=1, groups=dw_channels)
        self.sg = SimpleGate()
        self.sca = SimplifiedChannelAttention(dw_channels // 2)
        self.conv3 = nn.Conv2d(dw_channels // 2, c, 1)
        self.dropout1 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, ffn_channels, 1)
        self.conv5 = nn.Conv2d(ffn_channels // 2, c, 1)
        self.dropout2 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.sca(self.sg(self.conv2(self.conv1(self.norm1(x)))))
        y = x + self.dropout1(self.conv3(h)) * self.beta
        h = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + self.dropout2(h) * self.gamma


def _check_count(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return value


def _check_counts(name: str, values: Any) -> tuple[int, ...]:
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise ValueError(f"{name} must be a sequence of block counts, got {values!r}")
    return tuple(_check_count(f"{name}[{i}]", v, 0) for i, v in enumerate(values))


class NAFNet(nn.Module):
    """NAFNet (Chen et al., 2022): a U-Net of NAFBlocks with additive skips.

    ``intro`` (3×3, ``channels → width``); per level an encoder (``enc_blocks[i]`` blocks)
    followed by a 2×2 stride-2 convolution doubling the channels; ``middle_blocks`` blocks;
    per level, coarsest first, a 1×1 convolution (``c → 2c``, no bias) + ``PixelShuffle(2)``
    halving the channels, the encoder's features *added*, and a decoder
    (``dec_blocks[i]`` blocks); ``ending`` (3×3, ``width → channels``) plus the input.

    Inputs of any height and width are accepted: they are zero-padded at the bottom and
    right up to a multiple of ``2 ** len(enc_blocks)`` (as in the official implementation)
    and the output is cropped back. The defaults are the paper's width-32 SIDD denoiser,
    29.16 M parameters (number given by the authors, megvii-research/NAFNet issue #60).

    Weights keep PyTorch's default initialisation (``β = γ = 0``, LayerNorm weight 1, bias
    0), so a model built after ``torch.manual_seed(s)`` is reproducible.

    Args:
        channels: image channels (3 for RGB, 1 for greyscale).
        width: channels of the first level, doubled at each down-sampling.
        enc_blocks: number of NAFBlocks per encoder level.
        middle_blocks: number of NAFBlocks at the coarsest level.
        dec_blocks: number of NAFBlocks per decoder level, coarsest first; same length as
            ``enc_blocks``.
        dw_expand: channel expansion of each block's depthwise branch.
        ffn_expand: channel expansion of each block's feed-forward branch.
        dropout: dropout probability inside the blocks.

    Raises:
        ValueError: on an invalid argument (the message names it).

    Shapes:
        ``(B, channels, H, W)`` → ``(B, channels, H, W)``.

    Example:
        >>> import torch
        >>> net = NAFNet(channels=1, width=4, enc_blocks=(1,), middle_blocks=1, dec_blocks=(1,))
        >>> net(torch.randn(1, 1, 13, 10)).shape
        torch.Size([1, 1, 13, 10])
    """

    def __init__(
        self,
        channels: int = 3,
        width: int = 32,
        enc_blocks: Sequence[int] = (2, 2, 4, 8),
        middle_blocks: int = 12,
        dec_blocks: Sequence[int] = (2, 2, 2, 2),
        dw_expand: int = 2,
        ffn_expand: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__()
        _check_count("channels", channels, 1)
        _check_count("width", width, 1)
        enc_blocks = _check_counts("enc_blocks", enc_blocks)
        dec_blocks = _check_counts("dec_blocks", dec_blocks)
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError(
                "enc_blocks and dec_blocks must have the same length (one decoder per encoder "
                f"level), got {len(enc_blocks)} and {len(dec_blocks)}"
            )
        _check_count("middle_blocks", middle_blocks, 0)
        _check_count("dw_expand", dw_expand, 1)
        _check_count("ffn_expand", ffn_expand, 1)
        if (width * dw_expand) % 2 or (width * ffn_expand) % 2:
            raise ValueError(
                "width * dw_expand and width * ffn_expand must be even (SimpleGate halves the "
                f"channels), got width={width}, dw_expand={dw_expand}, ffn_expand={ffn_expand}"
            )
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.config: dict[str, Any] = {
            "channels": channels,
            "width": width,
            "enc_blocks": enc_blocks,
            "middle_blocks": middle_blocks,
            "dec_blocks": dec_blocks,
            "dw_expand": dw_expand,
            "ffn_expand": ffn_expand,
            "dropout": float(dropout),
        }
        self.channels = channels
        self.multiple = 2 ** len(enc_blocks)

        def blocks(c: int, n: int) -> nn.Sequential:
            return nn.Sequential(*(NAFBlock(c, dw_expand, ffn_expand, dropout) for _ in range(n)))

        self.intro = nn.Conv2d(channels, width, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        c = width
        for n in enc_blocks:
            self.encoders.append(blocks(c, n))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle_blks = blocks(c, middle_blocks)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for n in dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(blocks(c, n))
        self.ending = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"NAFNet(channels={self.channels}) expects input of shape "
                f"(B, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        padded = F.pad(x, (0, -w % self.multiple, 0, -h % self.multiple))
        features = self.intro(padded)
        skips = []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            features = encoder(features)
            skips.append(features)
            features = down(features)
        features = self.middle_blks(features)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips), strict=True):
            features = decoder(up(features) + skip)
        out = padded + self.ending(features)
        return out[..., :h, :w]
