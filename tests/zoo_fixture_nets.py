"""Tiny user-side networks for the `package.module:callable` specs in test_zoo.py."""

from __future__ import annotations

import torch
from torch import nn

NUMBER = 3


class TinyNet(nn.Module):
    """Conv, ReLU, global pool, linear: the smallest model with the usual tail."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))


def tiny_net() -> nn.Module:
    """A factory, as a user would write one (returned in training mode on purpose)."""
    return TinyNet()


def not_a_module() -> int:
    return 42


def needs_args(width: int) -> nn.Module:
    return nn.Conv2d(3, width, 1)


class Factories:
    """For a dotted attribute path after the colon."""

    @staticmethod
    def tiny() -> nn.Module:
        return TinyNet()
