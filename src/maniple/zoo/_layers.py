"""Small building blocks shared by several zoo networks.

They are plain `nn.Sequential`/`nn.Module` subclasses so that torch.fx traces through
them and sees the leaf modules (Conv2d, BatchNorm2d, activations) directly, and the layer
graph can name and split them.
"""

from __future__ import annotations

import torch
from torch import nn

IntPair = int | tuple[int, int]


class ConvBN(nn.Sequential):
    """Conv (no bias) -> BatchNorm with no activation: the linear projections of
    inverted-residual and bottleneck blocks, and their shortcut projections."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair = 1,
        stride: IntPair = 1,
        padding: IntPair = 0,
        groups: int = 1,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
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
            nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum),
        )


class ConvBNAct(ConvBN):
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
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, groups, bn_eps, bn_momentum
        )
        self.append(act if act is not None else nn.ReLU(inplace=False))


class SqueezeExcitation(nn.Module):
    """Hu et al.'s squeeze-and-excitation, laid out as torchvision.ops.SqueezeExcitation.

    Global average pool -> 1x1 conv (with bias) -> activation -> 1x1 conv (with bias) ->
    gate, and the gate scales the input per channel: `scale * x`. The activation and the
    gate differ by network (SiLU/Sigmoid in EfficientNet, ReLU/Hardsigmoid in MobileNet
    v3, ReLU/Sigmoid in RegNet), so they are passed in as modules.
    """

    def __init__(
        self,
        channels: int,
        squeeze_channels: int,
        activation: nn.Module,
        scale_activation: nn.Module,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.activation = activation
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.scale_activation = scale_activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.avgpool(x)
        scale = self.activation(self.fc1(scale))
        scale = self.scale_activation(self.fc2(scale))
        return scale * x


class StochasticDepth(nn.Module):
    """Huang et al.'s stochastic depth on a residual branch ("row" mode, per sample).

    In eval mode (every zoo model is built in eval mode) it returns its input unchanged,
    and since `self.training` is a plain Python bool, torch.fx traces it away entirely.
    In training mode each sample's branch is zeroed with probability `p` and the kept
    ones are scaled by 1 / (1 - p), as torchvision.ops.StochasticDepth does.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        shape = [x.shape[0]] + [1] * (x.dim() - 1)
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def make_divisible(value: float, divisor: int) -> int:
    """`value` rounded to the nearest multiple of `divisor` (at least `divisor`), never
    more than 10% below `value`: the channel rounding of the MobileNet/EfficientNet/RegNet
    reference code."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded
