"""Inception v3 (299x299) as torchvision defines it, without the aux head or transform_input.

Every conv is BasicConv2d (conv without bias, BN with eps 0.001, ReLU). The modules
A-E keep torchvision's branch order in their concats, their 1x7 / 7x1 factorised convs,
and the 3x3 stride-1 pad-1 average pool (count_include_pad=True) in the pool branches.
Pools are modules (not F.avg_pool2d) so the layer graph sees them as leaves. ~5.71 GMACs.
"""

from __future__ import annotations

import torch
from torch import nn

from maniple.zoo._layers import ConvBNAct, IntPair


def _bc(
    in_channels: int, out_channels: int, kernel: IntPair, stride: int = 1, padding: IntPair = 0
) -> ConvBNAct:
    """torchvision's BasicConv2d: conv (no bias) + BN(eps=1e-3) + ReLU."""
    return ConvBNAct(in_channels, out_channels, kernel, stride=stride, padding=padding, bn_eps=1e-3)


def _avg() -> nn.AvgPool2d:
    return nn.AvgPool2d(kernel_size=3, stride=1, padding=1)


class InceptionA(nn.Module):
    """35x35: 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avgpool->1x1."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _bc(in_channels, 64, 1)
        self.branch5x5_1 = _bc(in_channels, 48, 1)
        self.branch5x5_2 = _bc(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _bc(in_channels, 64, 1)
        self.branch3x3dbl_2 = _bc(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _bc(96, 96, 3, padding=1)
        self.branch_pool_avg = _avg()
        self.branch_pool = _bc(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(self.branch_pool_avg(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction: 3x3/2 | 1x1->3x3->3x3/2 | maxpool/2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = _bc(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = _bc(in_channels, 64, 1)
        self.branch3x3dbl_2 = _bc(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _bc(96, 96, 3, stride=2)
        self.branch_pool = nn.MaxPool2d(kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, self.branch_pool(x)], 1)


class InceptionC(nn.Module):
    """17x17 with factorised 7x7s: 1x1 | 1x1->1x7->7x1 | 1x1->(7x1->1x7)x2 | avgpool->1x1."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = _bc(in_channels, 192, 1)
        self.branch7x7_1 = _bc(in_channels, c7, 1)
        self.branch7x7_2 = _bc(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _bc(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _bc(in_channels, c7, 1)
        self.branch7x7dbl_2 = _bc(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _bc(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _bc(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _bc(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool_avg = _avg()
        self.branch_pool = _bc(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_3(self.branch7x7dbl_2(bd))
        bd = self.branch7x7dbl_5(self.branch7x7dbl_4(bd))
        bp = self.branch_pool(self.branch_pool_avg(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction: 1x1->3x3/2 | 1x1->1x7->7x1->3x3/2 | maxpool/2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = _bc(in_channels, 192, 1)
        self.branch3x3_2 = _bc(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _bc(in_channels, 192, 1)
        self.branch7x7x3_2 = _bc(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _bc(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _bc(192, 192, 3, stride=2)
        self.branch_pool = nn.MaxPool2d(kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_2(self.branch7x7x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(b7))
        return torch.cat([b3, b7, self.branch_pool(x)], 1)


class InceptionE(nn.Module):
    """8x8 with split 1x3 / 3x1 outputs: 1x1 | 1x1->{1x3,3x1} | 1x1->3x3->{1x3,3x1} | pool."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = _bc(in_channels, 320, 1)
        self.branch3x3_1 = _bc(in_channels, 384, 1)
        self.branch3x3_2a = _bc(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _bc(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _bc(in_channels, 448, 1)
        self.branch3x3dbl_2 = _bc(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _bc(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _bc(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool_avg = _avg()
        self.branch_pool = _bc(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(self.branch_pool_avg(x))
        return torch.cat([b1, b3, bd, bp], 1)


class InceptionV3(nn.Module):
    """Stem, Mixed_5b..Mixed_7c, then global pool, dropout, flatten, fc."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _bc(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _bc(32, 32, 3)
        self.Conv2d_2b_3x3 = _bc(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = _bc(64, 80, 1)
        self.Conv2d_4a_3x3 = _bc(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.maxpool1(x)
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6a(x)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        x = self.dropout(self.avgpool(x))
        return self.fc(torch.flatten(x, 1))


def inception_v3() -> InceptionV3:
    """Inception v3, 299x299, no aux logits, no transform_input."""
    return InceptionV3()
