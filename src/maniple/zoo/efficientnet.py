"""EfficientNet-B0 (224x224), as in Tan & Le 2019, laid out as torchvision's efficientnet_b0.

A 3x3/2 stem (32 channels), sixteen MBConv blocks in seven stages, a 1x1 conv to 1280
channels, global average pool, dropout 0.2 and a 1000-way fc; SiLU everywhere. An MBConv
block is an optional 1x1 expansion (ratio 6, none in the first stage), a depthwise k x k
conv carrying the stride, squeeze-and-excitation (SiLU / Sigmoid, squeezing to a quarter
of the block's *input* channels), and a linear 1x1 projection; blocks keeping their
shape add a shortcut behind stochastic depth (drop rate 0.2 * block index / 16, the
identity in eval mode). BatchNorm is torch's default (eps 1e-5, momentum 0.1), as in
torchvision's B0 (only its B5-B7 use eps 1e-3). 5,288,548 parameters; ~0.39 GMACs
(torchvision's "0.39 GFLOPS"; conv and fc multiply-accumulates only).
"""

from __future__ import annotations

import torch
from torch import nn

from maniple.zoo._layers import ConvBN, ConvBNAct, SqueezeExcitation, StochasticDepth
from maniple.zoo.init import RESIDUAL_BN

# (expand ratio, kernel, first stride, in channels, out channels, blocks) per stage.
_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation (MBConv6 / MBConv1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: int,
        kernel_size: int,
        stride: int,
        drop_prob: float,
    ) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_channels == out_channels
        expanded = in_channels * expand_ratio
        layers: list[nn.Module] = []
        if expanded != in_channels:
            layers.append(ConvBNAct(in_channels, expanded, 1, act=nn.SiLU()))
        layers.append(
            ConvBNAct(
                expanded,
                expanded,
                kernel_size,
                stride=stride,
                padding=(kernel_size - 1) // 2,
                groups=expanded,
                act=nn.SiLU(),
            )
        )
        squeeze = max(1, in_channels // 4)
        layers.append(SqueezeExcitation(expanded, squeeze, nn.SiLU(), nn.Sigmoid()))
        project = ConvBN(expanded, out_channels, 1)
        if self.use_res_connect:
            setattr(project[1], RESIDUAL_BN, True)
        layers.append(project)
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out) + x
        return out


class EfficientNet(nn.Module):
    """features (stem, 7 MBConv stages, 1x1 head conv) -> avgpool -> classifier."""

    def __init__(
        self,
        stages: tuple[tuple[int, int, int, int, int, int], ...] = _STAGES,
        stochastic_depth_prob: float = 0.2,
        dropout: float = 0.2,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        stem_channels = stages[0][3]
        layers: list[nn.Module] = [
            ConvBNAct(3, stem_channels, 3, stride=2, padding=1, act=nn.SiLU())
        ]
        total_blocks = sum(stage[5] for stage in stages)
        block_id = 0
        for expand, kernel, stride, in_channels, out_channels, repeats in stages:
            blocks: list[nn.Module] = []
            for i in range(repeats):
                drop = stochastic_depth_prob * block_id / total_blocks
                blocks.append(
                    MBConv(
                        in_channels if i == 0 else out_channels,
                        out_channels,
                        expand,
                        kernel,
                        stride if i == 0 else 1,
                        drop,
                    )
                )
                block_id += 1
            layers.append(nn.Sequential(*blocks))
        last_in = stages[-1][4]
        last_channels = 4 * last_in
        layers.append(ConvBNAct(last_in, last_channels, 1, act=nn.SiLU()))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(last_channels, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def efficientnet_b0() -> EfficientNet:
    """EfficientNet-B0 (width and depth multipliers 1.0)."""
    return EfficientNet()
