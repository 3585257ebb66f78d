"""MobileNet v1 (width 1.0, 224x224), as in Howard et al. 2017, Table 1.

torchvision has no v1, so this follows the paper: a 3x3/2 stem, thirteen depthwise
separable blocks (3x3 depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU), global average
pool and a 1000-way fc; ~569 M MACs. Plain ReLU as in the paper (and in TVM's benchmark
model the seed measured), not TensorFlow's ReLU6.
"""

from __future__ import annotations

import torch
from torch import nn

from maniple.zoo._layers import ConvBNAct

# (pointwise output channels, depthwise stride) for the 13 separable blocks.
_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise conv then 1x1 pointwise conv, each with BN and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(
            ConvBNAct(in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels),
            ConvBNAct(in_channels, out_channels, 1),
        )


class MobileNetV1(nn.Module):
    """Stem, 13 separable blocks, global pool + fc tail."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 32, 3, stride=2, padding=1)]
        channels = 32
        for out_channels, stride in _BLOCKS:
            layers.append(DepthwiseSeparable(channels, out_channels, stride))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.fc(torch.flatten(x, 1))


def mobilenet_v1() -> MobileNetV1:
    """MobileNet v1 1.0-224."""
    return MobileNetV1()
