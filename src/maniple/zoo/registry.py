"""The zoo's name -> network table, and `build`, which gives seeded random weights.

Names are the seed papers' (`vgg-16`, `squeezenet_v1.1`, ...) so that results and the
published numbers they are compared with line up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from maniple.errors import UnknownNameError
from maniple.zoo import (
    convnext,
    densenet,
    efficientnet,
    inception,
    mobilenet,
    mobilenet_v3,
    regnet,
    resnet,
    shufflenet,
    squeezenet,
    vgg,
    yolov2,
)
from maniple.zoo.init import init_parameters


@dataclass(frozen=True)
class ZooEntry:
    """One zoo network: its name, input shape (C, H, W), a one-line description, and a
    builder that makes the architecture (with torch's default, unseeded init; use
    `build` for seeded weights)."""

    name: str
    input_shape: tuple[int, int, int]
    description: str
    builder: Callable[[], nn.Module]


_IMAGENET = (3, 224, 224)

_ENTRIES: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("mobilenet", _IMAGENET, "MobileNet v1 1.0, ~0.57 GMACs", mobilenet.mobilenet_v1),
        ZooEntry(
            "squeezenet_v1.0", _IMAGENET, "SqueezeNet 1.0, ~0.82 GMACs", squeezenet.squeezenet1_0
        ),
        ZooEntry(
            "squeezenet_v1.1", _IMAGENET, "SqueezeNet 1.1, ~0.35 GMACs", squeezenet.squeezenet1_1
        ),
        ZooEntry("resnet-18", _IMAGENET, "ResNet-18, ~1.82 GMACs", resnet.resnet18),
        ZooEntry("resnet-34", _IMAGENET, "ResNet-34, ~3.67 GMACs", resnet.resnet34),
        ZooEntry("resnet-50", _IMAGENET, "ResNet-50 v1.5, ~4.09 GMACs", resnet.resnet50),
        ZooEntry(
            "inception_v3",
            (3, 299, 299),
            "Inception v3, no aux head, ~5.71 GMACs",
            inception.inception_v3,
        ),
        ZooEntry("vgg-16", _IMAGENET, "VGG-16, no BN, ~15.47 GMACs", vgg.vgg16),
        ZooEntry("vgg-19", _IMAGENET, "VGG-19, no BN, ~19.63 GMACs", vgg.vgg19),
        ZooEntry("densenet-121", _IMAGENET, "DenseNet-121, ~2.83 GMACs", densenet.densenet121),
        ZooEntry(
            "yolov2", (3, 416, 416), "YOLOv2 (VOC), Darknet-19 + head, 125x13x13 out", yolov2.yolov2
        ),
        ZooEntry(
            "efficientnet-b0",
            _IMAGENET,
            "EfficientNet-B0, ~0.39 GMACs",
            efficientnet.efficientnet_b0,
        ),
        ZooEntry(
            "mobilenet-v3-large",
            _IMAGENET,
            "MobileNet v3-Large 1.0, ~0.22 GMACs",
            mobilenet_v3.mobilenet_v3_large,
        ),
        ZooEntry("regnety-400mf", _IMAGENET, "RegNetY-400MF, ~0.40 GMACs", regnet.regnet_y_400mf),
        ZooEntry("convnext-tiny", _IMAGENET, "ConvNeXt-Tiny, ~4.46 GMACs", convnext.convnext_tiny),
        ZooEntry(
            "shufflenet-v2",
            _IMAGENET,
            "ShuffleNet v2 1.0x, ~0.15 GMACs",
            shufflenet.shufflenet_v2_x1_0,
        ),
    )
}


def names() -> list[str]:
    """The zoo's model names, small to large within each family, in the seeds' order."""
    return list(_ENTRIES)


def entry(name: str) -> ZooEntry:
    """The entry for `name`; an unknown name raises UnknownNameError with a did-you-mean."""
    try:
        return _ENTRIES[name]
    except KeyError:
        raise UnknownNameError("model", name, names()) from None


def input_shape(name: str) -> tuple[int, int, int]:
    """The (C, H, W) input the network was designed for."""
    return entry(name).input_shape


def build(name: str, seed: int = 0) -> nn.Module:
    """`name` with random weights drawn from `seed`: float32, CPU, eval mode.

    The same (name, seed) gives bit-identical weights in any process; the global torch
    RNG is neither read nor advanced. The architecture is built on the meta device (no
    memory, no default init), then given real storage and filled by `init_parameters`,
    which also makes large models (VGG's 138 M parameters) quick to build.
    """
    spec = entry(name)
    with torch.device("meta"):
        model = spec.builder()
    model = model.to_empty(device="cpu")
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    init_parameters(model, generator)
    return model.float().eval()
