"""ConvNeXt-Tiny (224x224), Liu et al. 2022, laid out as torchvision's convnext_tiny.

A 4x4/4 "patchify" stem conv (96 channels, with bias) + LayerNorm2d; four stages of
(3, 3, 9, 3) blocks at widths (96, 192, 384, 768), with a LayerNorm2d + 2x2/2 conv
between stages; head: global average pool -> LayerNorm2d -> Flatten -> Linear(768, 1000).
A block is a 7x7 depthwise conv, a permute to NHWC, LayerNorm over channels, the
Linear(d, 4d) -> GELU -> Linear(4d, d) MLP, a permute back, a per-channel layer scale of
shape (d, 1, 1), stochastic depth (drop rate 0.1 * block index / 17, the identity in
eval mode) and the residual add. All LayerNorms have eps 1e-6. 28,589,128 parameters;
~4.46 GMACs (conv and fc multiply-accumulates, the MLP's Linears counted per pixel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maniple.zoo._layers import StochasticDepth

_LN_EPS = 1e-6

# (width, blocks) per stage.
_STAGES: tuple[tuple[int, int], ...] = ((96, 3), (192, 3), (384, 9), (768, 3))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, at every pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    """`torch.permute(x, dims)` as a module, so it can sit inside an nn.Sequential."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class CNBlock(nn.Module):
    """x + drop(layer_scale * permute(MLP(LN(permute(dwconv7x7(x))))))."""

    def __init__(self, dim: int, layer_scale: float, drop_prob: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=_LN_EPS),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        # Named LAYER_SCALE ("layer_scale") so that zoo.init knows how to fill it.
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), layer_scale))
        self.stochastic_depth = StochasticDepth(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer_scale * self.block(x)
        return self.stochastic_depth(out) + x


class ConvNeXt(nn.Module):
    """features (stem, 4 stages, 3 downsamples interleaved) -> avgpool -> classifier."""

    def __init__(
        self,
        stages: tuple[tuple[int, int], ...] = _STAGES,
        stochastic_depth_prob: float = 0.1,
        layer_scale: float = 1e-6,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        first = stages[0][0]
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(3, first, kernel_size=4, stride=4, bias=True),
                LayerNorm2d(first, eps=_LN_EPS),
            )
        ]
        total_blocks = sum(depth for _, depth in stages)
        block_id = 0
        for i, (width, depth) in enumerate(stages):
            blocks: list[nn.Module] = []
            for _ in range(depth):
                drop = stochastic_depth_prob * block_id / (total_blocks - 1.0)
                blocks.append(CNBlock(width, layer_scale, drop))
                block_id += 1
            layers.append(nn.Sequential(*blocks))
            if i + 1 < len(stages):
                layers.append(
                    nn.Sequential(
                        LayerNorm2d(width, eps=_LN_EPS),
                        nn.Conv2d(width, stages[i + 1][0], kernel_size=2, stride=2),
                    )
                )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last = stages[-1][0]
        self.classifier = nn.Sequential(
            LayerNorm2d(last, eps=_LN_EPS), nn.Flatten(1), nn.Linear(last, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def convnext_tiny() -> ConvNeXt:
    """ConvNeXt-T."""
    return ConvNeXt()
