"""SqueezeNet 1.0 and 1.1 as torchvision defines them.

Note the max pools use `ceil_mode=True` (as torchvision and the original Caffe model
do): at 224x224 that gives 54 -> 27 -> 13 instead of 54 -> 26 -> 12, and the MACs
(~0.82 G / ~0.35 G) depend on it. The classifier is Dropout, a 1x1 conv to 1000
channels with ReLU, then the global average pool and flatten.
"""

from __future__ import annotations

import torch
from torch import nn


class Fire(nn.Module):
    """1x1 squeeze, then 1x1 and 3x3 expands concatenated along channels."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, 1)
        self.squeeze_act = nn.ReLU(inplace=False)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_act = nn.ReLU(inplace=False)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_act = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_act(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_act(self.expand1x1(x)), self.expand3x3_act(self.expand3x3(x))], 1
        )


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


class SqueezeNet(nn.Module):
    """Feature stack of Fire modules and a conv classifier ending in a global pool."""

    def __init__(self, version: str, num_classes: int = 1000) -> None:
        super().__init__()
        if version == "1.0":
            layers: list[nn.Module] = [
                nn.Conv2d(3, 96, 7, stride=2),
                nn.ReLU(inplace=False),
                _pool(),
                Fire(96, 16, 64, 64),
                Fire(128, 16, 64, 64),
                Fire(128, 32, 128, 128),
                _pool(),
                Fire(256, 32, 128, 128),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                _pool(),
                Fire(512, 64, 256, 256),
            ]
        elif version == "1.1":
            layers = [
                nn.Conv2d(3, 64, 3, stride=2),
                nn.ReLU(inplace=False),
                _pool(),
                Fire(64, 16, 64, 64),
                Fire(128, 16, 64, 64),
                _pool(),
                Fire(128, 32, 128, 128),
                Fire(256, 32, 128, 128),
                _pool(),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                Fire(512, 64, 256, 256),
            ]
        else:
            raise ValueError(f"SqueezeNet version must be '1.0' or '1.1', not {version!r}")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Conv2d(512, num_classes, 1),
            nn.ReLU(inplace=False),
            nn.AdaptiveAvgPool2d((1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def squeezenet1_0() -> SqueezeNet:
    """SqueezeNet 1.0, 224x224."""
    return SqueezeNet("1.0")


def squeezenet1_1() -> SqueezeNet:
    """SqueezeNet 1.1 (2.4x fewer MACs than 1.0 at the same accuracy), 224x224."""
    return SqueezeNet("1.1")
