"""A tiny seeded CNN for smoke tests of devices and clusters without the zoo.

Why here: worker processes (Ray actors) must be able to import the factory by name
(`maniple.devices.tiny:tiny_cnn`), which rules out a module under tests/.
"""

from __future__ import annotations

import torch
from torch import nn

TINY_INPUT_SHAPE = (3, 32, 32)
TINY_NETWORK = "maniple.devices.tiny:tiny_cnn"


def tiny_cnn(seed: int = 0, width: int = 16) -> nn.Module:
    """conv-relu-pool x2 + global pool + linear, weights drawn from `seed` only."""
    model = nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, 10),
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / max(1, p[0].numel()) ** 0.5))
    return model.eval()
