"""Small networks with ops the zoo lacks, shared by the graph and tiling tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class OddOps(nn.Module):
    """Ceil-mode pools, avg pools without pad counting, dilation, depthwise, upsampling."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 5, stride=3, padding=2)
        self.mp = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.c2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.ap = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.ap2 = nn.AvgPool2d(3, stride=1, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.same = nn.Conv2d(8, 8, 3, padding="same")
        self.c3 = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.c1(x))
        x = self.mp(x)
        x = torch.sigmoid(self.c2(x))
        x = self.dw(x)
        y = self.ap(x)
        y = self.ap2(y)
        y = self.up(y)
        y = F.avg_pool2d(y, 3, 1, 1, count_include_pad=False)
        y = F.max_pool2d(y, 2, 2, ceil_mode=True)
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        z = self.same(y)
        z = torch.cat([z, y], dim=1)
        z = F.pixel_shuffle(z, 2)
        z = F.pixel_unshuffle(z, 2)
        return self.c3(z * 0.5 + 1.0)


class Untraceable(nn.Module):
    """Control flow on tensor values: fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.c(x)
        return x


class RollNet(nn.Module):
    """torch.roll mixes rows across the whole map: neither row-local nor a tail op."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.roll(self.c(x), 1, dims=2))


class TailOnly(nn.Module):
    """Nothing row-local: a global pool first."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def odd_ops() -> nn.Module:
    """Factory used as a `module:callable` spec in CLI tests."""
    torch.manual_seed(0)
    return OddOps().eval()
