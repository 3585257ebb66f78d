"""VGG-16 and VGG-19 (configurations D and E), without batch norm, as torchvision defines them.

Thirteen / sixteen 3x3 convs with bias and ReLU, five 2x2 max pools, then the
7x7 adaptive average pool (identity at 224x224, kept so the MACs and the graph match
torchvision) and the 4096-wide classifier. The classifier's Linear layers hold ~90% of
the parameters but <1% of the 15.47 GMACs, which is why VGG splits so well spatially.
"""

from __future__ import annotations

import torch
from torch import nn

# "M" is a 2x2 max pool; integers are 3x3 conv output channels.
_CONFIGS: dict[str, list[int | str]] = {
    "vgg-16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M"]
    + [512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg-19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"]
    + [512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG feature stack + 3-layer classifier; the tail starts at `avgpool`."""

    def __init__(self, config: list[int | str], num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                assert isinstance(item, int)
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=False)]
                channels = item
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=False),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=False),
            nn.Dropout(0.5),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def vgg16() -> VGG:
    """VGG-16 (configuration D), 224x224, ~15.47 GMACs."""
    return VGG(_CONFIGS["vgg-16"])


def vgg19() -> VGG:
    """VGG-19 (configuration E), 224x224, ~19.63 GMACs."""
    return VGG(_CONFIGS["vgg-19"])
