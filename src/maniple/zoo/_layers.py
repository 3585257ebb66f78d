"""Small building blocks shared by several zoo networks.

They are plain `nn.Sequential` subclasses so that torch.fx sees the leaf modules
(Conv2d, BatchNorm2d, ReLU) directly and the layer graph can name and split them.
"""

from __future__ import annotations

from torch import nn

IntPair = int | tuple[int, int]


class ConvBNAct(nn.Sequential):
    """Conv (no bias, BN supplies it) -> BatchNorm -> activation, the common CNN triple."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair = 0,
        groups: int = 1,
        act: nn.Module | None = None,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels, eps=bn_eps),
            act if act is not None else nn.ReLU(inplace=False),
        )
