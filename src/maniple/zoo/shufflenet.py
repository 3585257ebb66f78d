"""ShuffleNet v2 1.0x (224x224), Ma et al. 2018, Table 5, laid out as torchvision's
shufflenet_v2_x1_0.

A 3x3/2 conv to 24 channels (BN, ReLU) and a 3x3/2 max pool; three stages of (4, 8, 4)
units at widths (116, 232, 464); a 1x1 conv to 1024 channels (BN, ReLU), a global mean
over H and W, and a 1000-way fc. A stride-2 unit runs two branches on the whole input
(left: 3x3/2 depthwise + BN, 1x1 + BN + ReLU; right: 1x1 + BN + ReLU, 3x3/2 depthwise +
BN, 1x1 + BN + ReLU) and concatenates them; a stride-1 unit splits the channels in half,
passes the first half through and the second through the right branch. Every unit ends
with a channel shuffle of 2 groups (view, transpose, view, as torchvision writes it).
BatchNorm is torch's default. 2,278,604 parameters; ~0.15 GMACs (conv and fc
multiply-accumulates; the paper's "146 MFLOPs").
"""

from __future__ import annotations

import torch
from torch import nn

from maniple.zoo.init import LINEAR_BN

_STAGE_REPEATS = (4, 8, 4)
_STAGE_CHANNELS = (24, 116, 232, 464, 1024)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of `groups` equal groups: (g, c/g) -> (c/g, g)."""
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, -1, h, w)


def _depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels, bias=False)


def _pointwise(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, bias=False)


class InvertedResidual(nn.Module):
    """A ShuffleNet v2 unit (the paper's Fig. 3 (c) for stride 1, (d) for stride 2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        branch = out_channels // 2
        if stride == 1 and in_channels != 2 * branch:
            raise ValueError("a stride-1 unit keeps its width: in_channels == out_channels")
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(in_channels, stride),
                nn.BatchNorm2d(in_channels),
                _pointwise(in_channels, branch),
                nn.BatchNorm2d(branch),
                nn.ReLU(inplace=False),
            )
        else:
            self.branch1 = nn.Sequential()  # unused; kept so the module tree matches
        self.branch2 = nn.Sequential(
            _pointwise(in_channels if stride > 1 else branch, branch),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=False),
            _depthwise(branch, stride),
            nn.BatchNorm2d(branch),
            _pointwise(branch, branch),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=False),
        )
        # The BN behind each depthwise conv feeds a 1x1 conv with no activation between.
        for bn in (self.branch1[1:2], self.branch2[4:5]):
            for module in bn:
                setattr(module, LINEAR_BN, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """conv1 -> maxpool -> stage2..4 -> conv5 -> mean over H, W -> fc."""

    def __init__(
        self,
        stage_repeats: tuple[int, ...] = _STAGE_REPEATS,
        stage_channels: tuple[int, ...] = _STAGE_CHANNELS,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        channels = stage_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=False),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        if len(stage_repeats) != 3 or len(stage_channels) != 5:
            raise ValueError("ShuffleNet v2 has 3 stages: 3 repeats and 5 channel counts")
        stages = []
        for repeats, out_channels in zip(stage_repeats, stage_channels[1:-1]):
            units = [InvertedResidual(channels, out_channels, 2)]
            units += [InvertedResidual(out_channels, out_channels, 1) for _ in range(repeats - 1)]
            stages.append(nn.Sequential(*units))
            channels = out_channels
        self.stage2, self.stage3, self.stage4 = stages
        last = stage_channels[-1]
        self.conv5 = nn.Sequential(
            _pointwise(channels, last), nn.BatchNorm2d(last), nn.ReLU(inplace=False)
        )
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        x = self.conv5(x)
        x = x.mean([2, 3])
        return self.fc(x)


def shufflenet_v2_x1_0() -> ShuffleNetV2:
    """ShuffleNet v2 1.0x."""
    return ShuffleNetV2()
