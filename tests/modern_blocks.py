"""Building blocks of post-ResNet CNNs, written the way torchvision and timm write them, and
small networks made of them, for the tests of splitting such networks by rows.

The blocks are: squeeze-and-excitation (a global average pool whose result scales every
row: a *sync point* of the spatial part), LayerNorm over channels (permute to NHWC,
layer_norm, permute back), a ConvNeXt block (nn.LayerNorm and nn.Linear applied on NHWC),
a ShuffleNet-v2 unit (chunk/split, cat, and a channel shuffle that reshapes with sizes read
from the tensor), an inverted residual with SE (MobileNet-v3 / EfficientNet style) and an
eval-mode stochastic depth. Activations include Hardswish, Hardsigmoid, SiLU and GELU.

`random_network` stacks a random sequence of them; the fixed networks (`se_net`,
`convnext_net`, `shufflenet_net`, `tiny_vit`) are what the deterministic tests use.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
}


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation, padding k // 2."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 3, stride: int = 1, act: str = "relu"
    ) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
            ACTIVATIONS[act](),
        )


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (torchvision's SqueezeExcitation, with variants).

    Global average pool (`pool="adaptive"`: nn.AdaptiveAvgPool2d(1); `pool="mean"`:
    x.mean((2, 3), keepdim=True)) -> 1x1 conv -> ReLU or SiLU -> 1x1 conv -> Sigmoid or
    Hardsigmoid -> scale * x. The pool is the block's sync point: every output row depends
    on every input row, through C numbers only.
    """

    def __init__(
        self,
        channels: int,
        squeeze: int | None = None,
        pool: str = "adaptive",
        act: str = "relu",
        gate: str = "sigmoid",
    ) -> None:
        super().__init__()
        if pool not in ("adaptive", "mean"):
            raise ValueError(f"pool must be 'adaptive' or 'mean', got {pool!r}")
        squeeze = squeeze or max(2, channels // 4)
        self.pool_kind = pool
        self.avgpool = nn.AdaptiveAvgPool2d(1) if pool == "adaptive" else nn.Identity()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.activation = {"relu": nn.ReLU, "silu": nn.SiLU}[act]()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.scale_activation = {"sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid}[gate]()

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_kind == "adaptive":
            s = self.avgpool(x)
        else:
            s = x.mean((2, 3), keepdim=True)
        return self.scale_activation(self.fc2(self.activation(self.fc1(s))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._scale(x) * x


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (torchvision's LayerNorm2d):
    permute(0, 2, 3, 1) -> F.layer_norm over C -> permute(0, 3, 1, 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class StochasticDepth(nn.Module):
    """Stochastic depth (drop path) as timm and torchvision define it: in training, zero a
    whole residual branch per sample (`mode="row"`) or per batch (`mode="batch"`) with
    probability p and rescale the rest; in eval mode, the identity."""

    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop probability must be in [0, 1), got {p}")
        if mode not in ("row", "batch"):
            raise ValueError(f"mode must be 'row' or 'batch', got {mode!r}")
        self.p = p
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        shape = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        keep = 1.0 - self.p
        noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * noise.div_(keep)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block (torchvision's CNBlock): depthwise 7x7 conv -> permute to NHWC ->
    nn.LayerNorm -> nn.Linear(C, 4C) -> GELU -> Dropout -> nn.Linear(4C, C) -> permute
    back -> layer scale (a (C, 1, 1) parameter) -> stochastic depth -> + input."""

    def __init__(
        self, channels: int, layer_scale: float = 1e-6, drop_path: float = 0.1, expand: int = 4
    ) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.pwconv1 = nn.Linear(channels, expand * channels)
        self.act = nn.GELU()
        self.drop = nn.Dropout(0.1)
        self.pwconv2 = nn.Linear(expand * channels, channels)
        self.layer_scale = nn.Parameter(torch.full((channels, 1, 1), layer_scale))
        self.stochastic_depth = StochasticDepth(drop_path, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x)
        y = torch.permute(y, (0, 2, 3, 1))
        y = self.pwconv2(self.drop(self.act(self.pwconv1(self.norm(y)))))
        y = torch.permute(y, (0, 3, 1, 2))
        y = self.stochastic_depth(self.layer_scale * y)
        return x + y


class ConvNeXtDownsample(nn.Sequential):
    """ConvNeXt's downsampling layer between stages: LayerNorm2d -> 2x2 conv, stride 2."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(LayerNorm2d(cin, eps=1e-6), nn.Conv2d(cin, cout, 2, stride=2))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's ShuffleNet-v2 channel shuffle: the sizes come from x.size()."""
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, num_channels, height, width)


class ShuffleUnit(nn.Module):
    """ShuffleNet-v2 unit (torchvision's InvertedResidual).

    Stride 1: split the channels in two halves (`split="chunk"`: x.chunk(2, dim=1);
    `split="split"`: x.split(C // 2, dim=1)), run 1x1 -> depthwise 3x3 -> 1x1 on the second
    half, torch.cat the halves along channels, channel-shuffle. Stride 2: two downsampling
    branches on the whole input, cat, channel-shuffle. Channel counts must be even.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, split: str = "chunk") -> None:
        super().__init__()
        if cout % 2 or (stride == 1 and cin != cout):
            raise ValueError(f"stride-1 units keep an even channel count, got {cin}->{cout}")
        if split not in ("chunk", "split"):
            raise ValueError(f"split must be 'chunk' or 'split', got {split!r}")
        self.stride = stride
        self.split = split
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
                nn.BatchNorm2d(cin),
                nn.Conv2d(cin, half, 1, bias=False),
                nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Identity()
        b2_in = cin if stride > 1 else half
        self.branch2 = nn.Sequential(
            nn.Conv2d(b2_in, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False),
            nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            if self.split == "chunk":
                x1, x2 = x.chunk(2, dim=1)
            else:
                x1, x2 = x.split(x.shape[1] // 2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class InvertedResidualSE(nn.Module):
    """MobileNet-v3 / EfficientNet block: 1x1 expand -> BN -> act -> depthwise 3x3 -> BN ->
    act -> squeeze-and-excitation -> 1x1 project -> BN -> stochastic depth -> + input."""

    def __init__(
        self,
        channels: int,
        expand: int = 2,
        act: str = "hardswish",
        pool: str = "adaptive",
        se_act: str = "relu",
        gate: str = "hardsigmoid",
        drop_path: float = 0.2,
    ) -> None:
        super().__init__()
        mid = channels * expand
        self.block = nn.Sequential(
            ConvBNAct(channels, mid, 1, act=act),
            nn.Conv2d(mid, mid, 3, padding=1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            ACTIVATIONS[act](),
            SqueezeExcitation(mid, max(2, mid // 4), pool, se_act, gate),
            nn.Conv2d(mid, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.stochastic_depth = StochasticDepth(drop_path, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.stochastic_depth(self.block(x))


class ResidualDrop(nn.Module):
    """x + stochastic_depth(dropout(conv-BN-act(x))): dropout and drop path, both no-ops in
    eval mode, on a plain residual branch."""

    def __init__(self, channels: int, act: str = "silu", p: float = 0.2) -> None:
        super().__init__()
        self.conv = ConvBNAct(channels, channels, 3, act=act)
        self.dropout = nn.Dropout2d(p)
        self.stochastic_depth = StochasticDepth(p, "batch")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.dropout(self.dropout(self.conv(x)), 0.1, training=self.training)
        return x + self.stochastic_depth(y)


class Net(nn.Module):
    """`features` (the spatial part) -> adaptive avg pool -> flatten -> linear.

    `block_names` are the paths of the modern blocks in `features` (for checking that the
    spatial part holds them all); `kinds` what each entry of `features` is.
    """

    def __init__(
        self, features: Sequence[nn.Module], kinds: Sequence[str], channels: int, classes: int
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(channels, classes)
        self.kinds = list(kinds)
        self.block_names = [f"features.{i}" for i, k in enumerate(kinds) if k in BLOCK_KINDS]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))


BLOCK_KINDS = ("se", "layernorm", "downsample", "convnext", "shuffle", "mbconv", "drop")


class _Picker:
    """Draw choices from a random.Random or from a hypothesis `draw` function alike."""

    def __init__(self, source: random.Random | Callable[..., Any]) -> None:
        self.rng = source if isinstance(source, random.Random) else None
        self.draw = None if self.rng is not None else source
        if self.rng is None and not callable(source):
            raise TypeError("source must be a random.Random or a hypothesis draw function")

    def integer(self, lo: int, hi: int) -> int:
        if self.rng is not None:
            return self.rng.randint(lo, hi)
        from hypothesis import strategies as st

        return self.draw(st.integers(lo, hi))

    def choice(self, options: Sequence[Any]) -> Any:
        if self.rng is not None:
            return self.rng.choice(list(options))
        from hypothesis import strategies as st

        return self.draw(st.sampled_from(list(options)))

    def boolean(self) -> bool:
        return bool(self.integer(0, 1))


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def random_network(
    source: random.Random | Callable[..., Any],
    in_shape: tuple[int, int, int] = (3, 32, 32),
    max_blocks: int = 5,
    min_blocks: int = 1,
    classes: int = 10,
    min_size: int = 3,
) -> Net:
    """A random small network: a stem conv, then min_blocks..max_blocks blocks drawn from
    BLOCK_KINDS, each followed at random by a conv-BN-act (stride 1 or 2, kernel 1/3/5,
    ReLU/ReLU6/Hardswish/SiLU/GELU), then adaptive avg pool -> flatten -> linear.

    `source` is a random.Random or a hypothesis draw function (`data.draw`), so the same
    builder serves seeded tests and shrinking property tests. Channel counts are even,
    8..16; stride 2 is used only while the map stays at least `min_size` on both sides.
    Weights, batch-norm statistics, norm affines and layer scales are random (from a seed
    drawn from `source`) so that no block is close to the identity. Returned in eval mode.
    """
    pick = _Picker(source)
    widths = (8, 10, 12, 14, 16)
    cin, h, w = in_shape
    seed = pick.integer(0, 2**31 - 1)
    layers: list[nn.Module] = []
    kinds: list[str] = []

    def fits(kernel: int, stride: int) -> bool:
        return min(_conv_out(h, kernel, stride), _conv_out(w, kernel, stride)) >= min_size

    def conv(c_in: int, stem: bool = False) -> int:
        nonlocal h, w
        c_out = pick.choice(widths)
        k = 3 if stem else pick.choice((1, 3, 5))
        stride = 2 if pick.boolean() and fits(k, 2) else 1
        layers.append(ConvBNAct(c_in, c_out, k, stride, pick.choice(sorted(ACTIVATIONS))))
        kinds.append("conv")
        h, w = _conv_out(h, k, stride), _conv_out(w, k, stride)
        return c_out

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        c = conv(cin, stem=True)
        for _ in range(pick.integer(min_blocks, max_blocks)):
            kind = pick.choice(BLOCK_KINDS)
            if kind == "se":
                block: nn.Module = SqueezeExcitation(
                    c,
                    pool=pick.choice(("adaptive", "mean")),
                    act=pick.choice(("relu", "silu")),
                    gate=pick.choice(("sigmoid", "hardsigmoid")),
                )
            elif kind == "layernorm":
                block = LayerNorm2d(c, eps=1e-6)
            elif kind == "downsample":
                c_out = pick.choice(widths)
                if h // 2 >= min_size and w // 2 >= min_size:
                    block = ConvNeXtDownsample(c, c_out)
                    c, h, w = c_out, h // 2, w // 2
                else:
                    block = LayerNorm2d(c, eps=1e-6)
                    kind = "layernorm"
            elif kind == "convnext":
                block = ConvNeXtBlock(c, layer_scale=0.5, expand=pick.choice((2, 4)))
            elif kind == "shuffle":
                if pick.boolean() and fits(3, 2):
                    c_out = pick.choice(widths)
                    block = ShuffleUnit(c, c_out, stride=2)
                    c, h, w = c_out, _conv_out(h, 3, 2), _conv_out(w, 3, 2)
                else:
                    block = ShuffleUnit(c, c, 1, split=pick.choice(("chunk", "split")))
            elif kind == "mbconv":
                block = InvertedResidualSE(
                    c,
                    act=pick.choice(("hardswish", "silu", "relu")),
                    pool=pick.choice(("adaptive", "mean")),
                    se_act=pick.choice(("relu", "silu")),
                    gate=pick.choice(("sigmoid", "hardsigmoid")),
                )
            else:
                block = ResidualDrop(c, act=pick.choice(sorted(ACTIVATIONS)))
            layers.append(block)
            kinds.append(kind)
            if pick.boolean():
                c = conv(c)
        net = Net(layers, kinds, c, classes)
        randomize_(net)
    return net.eval()


def randomize_(module: nn.Module) -> nn.Module:
    """Give batch norms random statistics and affines, LayerNorms random affines and layer
    scales random values, from torch's global generator (call under a seed)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
            elif isinstance(m, nn.LayerNorm) and m.weight is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
            elif isinstance(m, ConvNeXtBlock):
                m.layer_scale.uniform_(0.2, 1.0)
    return module


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return randomize_(build()).eval()


def se_net() -> Net:
    """Three squeeze-and-excitation blocks (adaptive-pool/ReLU/Sigmoid, mean/SiLU/
    Hardsigmoid, and one inside an inverted residual) for a 3x48x48 input; maps 24 and 12
    rows high. Ends in the global pool that is *not* a sync point."""

    def build() -> Net:
        layers = [
            ConvBNAct(3, 16, 3, 2, "hardswish"),
            SqueezeExcitation(16, 4, "adaptive", "relu", "sigmoid"),
            ConvBNAct(16, 16, 3, 1, "silu"),
            InvertedResidualSE(16, pool="mean", se_act="silu", gate="hardsigmoid"),
            ConvBNAct(16, 16, 3, 2, "relu"),
            SqueezeExcitation(16, 4, "mean", "silu", "hardsigmoid"),
            ConvBNAct(16, 16, 1, 1, "gelu"),
        ]
        return Net(layers, ["conv", "se", "conv", "mbconv", "conv", "se", "conv"], 16, 10)

    return _seeded(build, 11)  # type: ignore[return-value]


def convnext_net() -> Net:
    """A tiny ConvNeXt (for a 3x48x48 input): 4x4 stride-4 patchify stem + LayerNorm2d, two
    blocks, downsample (LayerNorm2d + 2x2 stride-2 conv), one block; maps 12 and 6 rows."""

    def build() -> Net:
        layers = [
            nn.Sequential(nn.Conv2d(3, 16, 4, stride=4), LayerNorm2d(16, eps=1e-6)),
            ConvNeXtBlock(16, layer_scale=0.5),
            ConvNeXtBlock(16, layer_scale=0.5),
            ConvNeXtDownsample(16, 16),
            ConvNeXtBlock(16, layer_scale=0.5),
        ]
        return Net(layers, ["conv", "convnext", "convnext", "downsample", "convnext"], 16, 10)

    return _seeded(build, 12)  # type: ignore[return-value]


def shufflenet_net() -> Net:
    """A tiny ShuffleNet-v2 (for a 3x48x48 input): stem conv stride 2, max pool, two
    stride-1 units (chunk and split), a stride-2 unit, a stride-1 unit, a 1x1 conv; maps
    24, 12 and 6 rows high."""

    def build() -> Net:
        layers = [
            ConvBNAct(3, 16, 3, 2, "relu"),
            nn.MaxPool2d(3, 2, 1),
            ShuffleUnit(16, 16, 1, "chunk"),
            ShuffleUnit(16, 16, 1, "split"),
            ShuffleUnit(16, 24, 2),
            ShuffleUnit(24, 24, 1, "chunk"),
            ConvBNAct(24, 32, 1, 1, "relu"),
        ]
        kinds = ["conv", "pool", "shuffle", "shuffle", "shuffle", "shuffle", "conv"]
        return Net(layers, kinds, 32, 10)

    return _seeded(build, 13)  # type: ignore[return-value]


class TinyViT(nn.Module):
    """ViT-like: 16x16 stride-16 patch-embedding conv, flatten(2).transpose(1, 2) to
    tokens, position embedding, one nn.TransformerEncoderLayer, mean over tokens, linear.
    Only the patch conv is row-local; everything from the flatten on runs whole."""

    def __init__(self, image: int = 64, dim: int = 32, heads: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 16, stride=16)
        self.pos_embed = nn.Parameter(torch.randn(1, (image // 16) ** 2, dim) * 0.02)
        self.encoder = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=0.1, activation="gelu", batch_first=True
        )
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = x.flatten(2).transpose(1, 2)
        x = self.encoder(x + self.pos_embed)
        return self.head(x.mean(dim=1))


def tiny_vit() -> TinyViT:
    """TinyViT for a 3x64x64 input, seeded, in eval mode."""
    return _seeded(TinyViT, 14)  # type: ignore[return-value]


class DeepViT(TinyViT):
    """TinyViT with six encoder layers: like a real ViT, most of its MACs come after the
    patch embedding, so a spatial split would leave them on one device."""

    def __init__(self) -> None:
        super().__init__(image=64, dim=32)
        self.encoder = nn.Sequential(
            *(
                nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
                for _ in range(6)
            )
        )


def deep_vit() -> DeepViT:
    """DeepViT for a 3x64x64 input, seeded, in eval mode (a module spec for the CLI)."""
    return _seeded(DeepViT, 15)  # type: ignore[return-value]
