"""MobileNet v3-Large (width 1.0, 224x224), Howard et al. 2019, Table 1, laid out as
torchvision's mobilenet_v3_large.

A 3x3/2 stem (16 channels, Hardswish), fifteen inverted-residual blocks (optional 1x1
expansion, k x k depthwise carrying the stride, optional squeeze-and-excitation with
ReLU / Hardsigmoid squeezing to make_divisible(expanded / 4, 8), linear 1x1 projection,
shortcut when the shape is kept), a 1x1 conv to 960 channels, global average pool, then
Linear(960, 1280) -> Hardswish -> Dropout(0.2) -> Linear(1280, 1000). Blocks use ReLU
("RE") or Hardswish ("HS") as the paper's table says. BatchNorm eps 1e-3, momentum 0.01,
as torchvision. 5,483,032 parameters; ~0.22 GMACs (conv and fc multiply-accumulates).
"""

from __future__ import annotations

import torch
from torch import nn

from maniple.zoo._layers import ConvBN, ConvBNAct, SqueezeExcitation, make_divisible
from maniple.zoo.init import RESIDUAL_BN

_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01

# (in, kernel, expanded, out, squeeze-excite, activation, stride) per block.
_BLOCKS: tuple[tuple[int, int, int, int, bool, str, int], ...] = (
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
)


def _act(kind: str) -> nn.Module:
    return nn.Hardswish() if kind == "HS" else nn.ReLU(inplace=False)


def _conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    act: nn.Module,
    stride: int = 1,
    groups: int = 1,
) -> ConvBNAct:
    return ConvBNAct(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=(kernel_size - 1) // 2,
        groups=groups,
        act=act,
        bn_eps=_BN_EPS,
        bn_momentum=_BN_MOMENTUM,
    )


class InvertedResidual(nn.Module):
    """MobileNet v3 bottleneck: [expand] -> depthwise -> [SE] -> project [+ shortcut]."""

    def __init__(
        self,
        in_channels: int,
        kernel_size: int,
        expanded: int,
        out_channels: int,
        use_se: bool,
        activation: str,
        stride: int,
    ) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expanded != in_channels:
            layers.append(_conv_bn_act(in_channels, expanded, 1, _act(activation)))
        layers.append(
            _conv_bn_act(
                expanded, expanded, kernel_size, _act(activation), stride=stride, groups=expanded
            )
        )
        if use_se:
            squeeze = make_divisible(expanded // 4, 8)
            layers.append(
                SqueezeExcitation(expanded, squeeze, nn.ReLU(inplace=False), nn.Hardsigmoid())
            )
        project = ConvBN(expanded, out_channels, 1, bn_eps=_BN_EPS, bn_momentum=_BN_MOMENTUM)
        if self.use_res_connect:
            setattr(project[1], RESIDUAL_BN, True)
        layers.append(project)
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = out + x
        return out


class MobileNetV3(nn.Module):
    """features (stem, 15 blocks, 1x1 head conv) -> avgpool -> classifier."""

    def __init__(
        self,
        blocks: tuple[tuple[int, int, int, int, bool, str, int], ...] = _BLOCKS,
        last_channel: int = 1280,
        dropout: float = 0.2,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        stem_channels = blocks[0][0]
        layers: list[nn.Module] = [_conv_bn_act(3, stem_channels, 3, nn.Hardswish(), stride=2)]
        layers.extend(InvertedResidual(*spec) for spec in blocks)
        last_in = blocks[-1][3]
        last_conv = 6 * last_in
        layers.append(_conv_bn_act(last_in, last_conv, 1, nn.Hardswish()))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, last_channel),
            nn.Hardswish(),
            nn.Dropout(p=dropout),
            nn.Linear(last_channel, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v3_large() -> MobileNetV3:
    """MobileNet v3-Large 1.0-224."""
    return MobileNetV3()
