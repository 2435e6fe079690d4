"""Small real architectures used by the conversion tests (plain PyTorch layers)."""

import torch
from torch import nn


def vgg_like(in_ch: int = 3, classes: int = 10) -> nn.Module:
    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(in_ch, 8),
        *block(8, 8),
        nn.MaxPool2d(2),
        *block(8, 16),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, classes),
    )


class BasicBlock(nn.Module):
    def __init__(self, i: int, o: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(o)
        self.conv2 = nn.Conv2d(o, o, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(o)
        self.shortcut = nn.Sequential()
        if stride != 1 or i != o:
            self.shortcut = nn.Sequential(
                nn.Conv2d(i, o, 1, stride=stride, bias=False), nn.BatchNorm2d(o)
            )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def resnet_like(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        BasicBlock(8, 8),
        BasicBlock(8, 16, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, classes),
    )


def net_3d() -> nn.Module:
    return nn.Sequential(
        nn.Conv3d(1, 4, (3, 5, 5), padding=(1, 2, 2), padding_mode="replicate"),
        nn.BatchNorm3d(4),
        nn.ReLU(),
        nn.Conv3d(4, 4, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.Conv3d(4, 1, 1),
    )


def grouped_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, padding_mode="reflect"),  # depthwise
        nn.Conv2d(8, 8, (3, 5), padding=(1, 2), groups=4, padding_mode="circular"),
        nn.Conv2d(8, 4, 1),
    )


def signal_net() -> nn.Module:
    return nn.Sequential(nn.Conv1d(2, 4, 7, padding=3), nn.ReLU(), nn.Conv1d(4, 2, 5, stride=2))


MODELS = {
    "vgg": (vgg_like, (2, 3, 16, 16)),
    "resnet": (resnet_like, (2, 3, 16, 16)),
    "3d": (net_3d, (1, 1, 6, 10, 10)),
    "grouped": (grouped_net, (2, 4, 9, 9)),
    "1d": (signal_net, (3, 2, 30)),
}
