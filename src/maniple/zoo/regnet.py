"""RegNetY-400MF (224x224), Radosavovic et al. 2020, laid out as torchvision's
regnet_y_400mf.

The stage widths and depths come from the paper's quantized linear rule with depth 16,
w_0 48, w_a 27.89, w_m 2.09, group width 8 and bottleneck ratio 1.0, which gives widths
(48, 104, 208, 440) and depths (1, 3, 6, 6). The stem is a 3x3/2 conv to 32 channels
(BN, ReLU); each block ("Y" = X block + squeeze-and-excitation) is 1x1 conv -> 3x3 group
conv (group width 8, carrying the stride) -> SE (ReLU / Sigmoid, squeezing to
round(0.25 * the block's input width)) -> linear 1x1 conv, added to the input or to a
1x1/stride projection of it, then ReLU. Head: global average pool and a 1000-way fc.
BatchNorm is torch's default (eps 1e-5, momentum 0.1). 4,344,144 parameters; ~0.40 GMACs
(conv and fc multiply-accumulates).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from maniple.zoo._layers import ConvBN, ConvBNAct, SqueezeExcitation, make_divisible
from maniple.zoo.init import RESIDUAL_BN

_QUANT = 8


def stage_plan(
    depth: int,
    w_0: int,
    w_a: float,
    w_m: float,
    group_width: int,
    bottleneck_multiplier: float = 1.0,
) -> tuple[list[int], list[int], list[int]]:
    """(stage widths, stage depths, group widths) from RegNet's design-space parameters.

    Block i gets the continuous width w_0 + i * w_a, which is snapped to w_0 * w_m**k for
    the nearest integer k and rounded to a multiple of 8; runs of equal widths are the
    stages. Widths are then made compatible with the group width at the bottleneck.
    Pure Python (no tensors), so it also works while the model is built on the meta device.
    """
    block_widths = []
    for i in range(depth):
        capacity = round(math.log((w_0 + i * w_a) / w_0) / math.log(w_m))
        block_widths.append(int(round(w_0 * w_m**capacity / _QUANT)) * _QUANT)
    widths: list[int] = []
    depths: list[int] = []
    for width in block_widths:
        if widths and widths[-1] == width:
            depths[-1] += 1
        else:
            widths.append(width)
            depths.append(1)
    bottlenecks = [int(w * bottleneck_multiplier) for w in widths]
    groups = [min(group_width, b) for b in bottlenecks]
    bottlenecks = [make_divisible(b, g) for b, g in zip(bottlenecks, groups)]
    widths = [int(b / bottleneck_multiplier) for b in bottlenecks]
    return widths, depths, groups


class BottleneckTransform(nn.Module):
    """The residual branch: a (1x1), b (3x3 group conv), se, c (linear 1x1)."""

    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        group_width: int,
        bottleneck_multiplier: float,
        se_ratio: float,
    ) -> None:
        super().__init__()
        width_b = int(round(width_out * bottleneck_multiplier))
        groups = width_b // group_width
        self.a = ConvBNAct(width_in, width_b, 1)
        self.b = ConvBNAct(width_b, width_b, 3, stride=stride, padding=1, groups=groups)
        squeeze = int(round(se_ratio * width_in))
        self.se = SqueezeExcitation(width_b, squeeze, nn.ReLU(inplace=False), nn.Sigmoid())
        self.c = ConvBN(width_b, width_out, 1)
        setattr(self.c[1], RESIDUAL_BN, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.se(self.b(self.a(x))))


class ResBottleneckBlock(nn.Module):
    """relu(shortcut(x) + f(x)), the shortcut a 1x1 conv + BN when the shape changes."""

    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        group_width: int,
        bottleneck_multiplier: float,
        se_ratio: float,
    ) -> None:
        super().__init__()
        self.proj: ConvBN | None = None
        if width_in != width_out or stride != 1:
            self.proj = ConvBN(width_in, width_out, 1, stride=stride)
        self.f = BottleneckTransform(
            width_in, width_out, stride, group_width, bottleneck_multiplier, se_ratio
        )
        self.activation = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.proj is None else self.proj(x)
        return self.activation(shortcut + self.f(x))


class AnyStage(nn.Sequential):
    """`depth` blocks; the first changes width and carries the stride."""

    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        depth: int,
        group_width: int,
        bottleneck_multiplier: float,
        se_ratio: float,
        stage_index: int,
    ) -> None:
        super().__init__()
        for i in range(depth):
            block = ResBottleneckBlock(
                width_in if i == 0 else width_out,
                width_out,
                stride if i == 0 else 1,
                group_width,
                bottleneck_multiplier,
                se_ratio,
            )
            self.add_module(f"block{stage_index}-{i}", block)


class RegNet(nn.Module):
    """stem -> trunk_output (4 stages) -> avgpool -> fc."""

    def __init__(
        self,
        depth: int = 16,
        w_0: int = 48,
        w_a: float = 27.89,
        w_m: float = 2.09,
        group_width: int = 8,
        se_ratio: float = 0.25,
        bottleneck_multiplier: float = 1.0,
        stem_width: int = 32,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        widths, depths, groups = stage_plan(
            depth, w_0, w_a, w_m, group_width, bottleneck_multiplier
        )
        self.stem = ConvBNAct(3, stem_width, 3, stride=2, padding=1)
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        width_in = stem_width
        for i, (width, stage_depth, group) in enumerate(zip(widths, depths, groups)):
            stages[f"block{i + 1}"] = AnyStage(
                width_in, width, 2, stage_depth, group, bottleneck_multiplier, se_ratio, i + 1
            )
            width_in = width
        self.trunk_output = nn.Sequential(stages)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.trunk_output(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


def regnet_y_400mf() -> RegNet:
    """RegNetY-400MF."""
    return RegNet()
