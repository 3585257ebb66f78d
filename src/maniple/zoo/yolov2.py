"""YOLOv2 (yolo-voc.cfg): Darknet-19 backbone and the detection head, 416x416 -> 125x13x13.

Every conv but the last is conv (no bias) + BN + LeakyReLU(0.1). The passthrough takes
the 26x26x512 output of the fifth stage, squeezes it with a 1x1 conv to 64 channels,
reorganises it to 13x13x256 with `pixel_unshuffle(x, 2)` (Darknet's own reorg orders the
channels differently; the MACs and shapes are the same), and concatenates it in front of
the 13x13x1024 branch, as Darknet's `route -1,-4` does. The final 1x1 conv has a bias and
no activation: 125 = 5 anchors x (20 classes + 5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maniple.zoo._layers import ConvBNAct


def _conv(in_channels: int, out_channels: int, kernel: int) -> ConvBNAct:
    """Darknet's convolutional layer: 'same' padding, BN, leaky ReLU 0.1."""
    return ConvBNAct(in_channels, out_channels, kernel, padding=kernel // 2, act=nn.LeakyReLU(0.1))


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=2, stride=2)


class YOLOv2(nn.Module):
    """Darknet-19 to 26x26 (`stage5`), then to 13x13 (`stage6`), head with passthrough."""

    def __init__(self, num_outputs: int = 125) -> None:
        super().__init__()
        self.stage5 = nn.Sequential(
            _conv(3, 32, 3),
            _pool(),
            _conv(32, 64, 3),
            _pool(),
            _conv(64, 128, 3),
            _conv(128, 64, 1),
            _conv(64, 128, 3),
            _pool(),
            _conv(128, 256, 3),
            _conv(256, 128, 1),
            _conv(128, 256, 3),
            _pool(),
            _conv(256, 512, 3),
            _conv(512, 256, 1),
            _conv(256, 512, 3),
            _conv(512, 256, 1),
            _conv(256, 512, 3),
        )
        self.stage6 = nn.Sequential(
            _pool(),
            _conv(512, 1024, 3),
            _conv(1024, 512, 1),
            _conv(512, 1024, 3),
            _conv(1024, 512, 1),
            _conv(512, 1024, 3),
            _conv(1024, 1024, 3),
            _conv(1024, 1024, 3),
        )
        self.passthrough = _conv(512, 64, 1)
        self.head = _conv(64 * 4 + 1024, 1024, 3)
        self.output = nn.Conv2d(1024, num_outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        route = self.stage5(x)
        deep = self.stage6(route)
        shallow = F.pixel_unshuffle(self.passthrough(route), 2)
        x = self.head(torch.cat([shallow, deep], 1))
        return self.output(x)


def yolov2() -> YOLOv2:
    """YOLOv2 for VOC (20 classes, 5 anchors), 416x416."""
    return YOLOv2()
