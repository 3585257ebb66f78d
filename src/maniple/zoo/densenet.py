"""DenseNet-121 (growth 32, bottleneck width 4x32, blocks 6/12/24/16), 224x224, ~2.83 GMACs.

Each dense layer is BN-ReLU-1x1 conv (128) -> BN-ReLU-3x3 conv (32), and its output is
concatenated onto its input: `x = cat([x, layer(x)])`. torchvision instead keeps a list
of all earlier outputs and concatenates the whole list before every layer; the two are
the same tensors in the same channel order with the same MACs, but the running-concat
form leaves one live tensor between layers, so the layer graph finds a cut point after
every dense layer instead of only after every block. Transitions are BN-ReLU-1x1 conv
halving the channels, then AvgPool2d(2, 2).
"""

from __future__ import annotations

import torch
from torch import nn


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv to bn_size*growth, BN-ReLU-3x3 conv to growth; returns only the new
    features (the enclosing block concatenates them)."""

    def __init__(self, in_channels: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.Module):
    """`depth` dense layers, each appending `growth` channels to the running tensor."""

    def __init__(self, depth: int, in_channels: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth, growth, bn_size) for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:  # unrolled by torch.fx: the layer count is fixed
            x = torch.cat([x, layer(x)], 1)
        return x


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv to `out_channels`, then 2x2 average pool."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.AvgPool2d(kernel_size=2, stride=2),
        )


class DenseNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool), dense blocks and transitions, final BN,
    then ReLU, global pool, flatten and the classifier."""

    def __init__(
        self,
        depths: tuple[int, ...] = (6, 12, 24, 16),
        growth: int = 32,
        init_channels: int = 64,
        bn_size: int = 4,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, init_channels, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(init_channels),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        ]
        channels = init_channels
        for index, depth in enumerate(depths):
            layers.append(DenseBlock(depth, channels, growth, bn_size))
            channels += depth * growth
            if index != len(depths) - 1:
                layers.append(Transition(channels, channels // 2))
                channels //= 2
        layers.append(nn.BatchNorm2d(channels))
        self.features = nn.Sequential(*layers)
        self.relu = nn.ReLU(inplace=False)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.relu(self.features(x)))
        return self.classifier(torch.flatten(x, 1))


def densenet121() -> DenseNet:
    """DenseNet-121, 224x224."""
    return DenseNet((6, 12, 24, 16))
