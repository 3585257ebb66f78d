"""The zoo: every network builds, runs, traces, has the reference MACs, and is reproducible.

Models are built once per session (`_built`) because VGG's 138 M parameters take ~2 s to
fill; the tests that check reproducibility build their own extra copies.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from maniple import zoo
from maniple.errors import ManipleError, UnknownNameError

# The seeds' eleven networks, then the five later ones (tests/test_zoo_modern.py has
# their torchvision parameter counts and more checks).
SEED_NAMES = [
    "mobilenet",
    "squeezenet_v1.0",
    "squeezenet_v1.1",
    "resnet-18",
    "resnet-34",
    "resnet-50",
    "inception_v3",
    "vgg-16",
    "vgg-19",
    "densenet-121",
    "yolov2",
]
MODERN_NAMES = [
    "efficientnet-b0",
    "mobilenet-v3-large",
    "regnety-400mf",
    "convnext-tiny",
    "shufflenet-v2",
]
EXPECTED_NAMES = SEED_NAMES + MODERN_NAMES

# Published multiply-accumulates at the design resolution: torchvision's model docs
# ("GFLOPS" there are MACs), MobileNet v1's paper (569 M), ShuffleNet v2's paper (146 M;
# torchvision rounds to 0.14), and for YOLOv2 Darknet's 29.47 BFLOPs (= 2 x MACs) for
# the 80-class head, less the smaller 125-channel 1x1 conv.
REFERENCE_GMACS = {
    "mobilenet": 0.569,
    "squeezenet_v1.0": 0.82,
    "squeezenet_v1.1": 0.35,
    "resnet-18": 1.81,
    "resnet-34": 3.66,
    "resnet-50": 4.09,
    "inception_v3": 5.71,
    "vgg-16": 15.47,
    "vgg-19": 19.63,
    "densenet-121": 2.83,
    "yolov2": 14.68,
    "efficientnet-b0": 0.39,
    "mobilenet-v3-large": 0.22,
    "regnety-400mf": 0.40,
    "convnext-tiny": 4.46,
    "shufflenet-v2": 0.146,
}

# What the layer graph understood for the seed networks, which must stay within it (the
# later networks add SiLU, Hardswish, LayerNorm, GELU, products, permutes, channel splits
# and shuffles; tests/test_zoo_modern.py traces those).
ALLOWED_MODULES = (
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Dropout,
    nn.Linear,
)
ALLOWED_FUNCTIONS = {torch.flatten, torch.cat, torch.add, operator.add, F.pixel_unshuffle}

FIXTURES = Path(__file__).parent


@functools.cache
def _built(name: str) -> nn.Module:
    return zoo.build(name, seed=0)


@functools.cache
def _input(name: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1234)
    return torch.randn(1, *zoo.input_shape(name), generator=generator)


@functools.cache
def _output(name: str) -> torch.Tensor:
    with torch.no_grad():
        return _built(name)(_input(name))


def _count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Conv and linear MACs per image, counted on the real forward with hooks."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            per_output = module.in_channels // module.groups * kh * kw
            total += out[0].numel() * per_output
        elif isinstance(module, nn.Linear):  # once per position (ConvNeXt: per pixel)
            total += out[0].numel() * module.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return total


def _digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        h.update(key.encode())
        h.update(tensor.contiguous().numpy().tobytes())
    return h.hexdigest()


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- registry -------------------------------------------------------------------------


def test_names_are_the_seed_names_then_the_later_ones() -> None:
    assert zoo.names() == EXPECTED_NAMES


def test_entries_describe_themselves() -> None:
    for name in zoo.names():
        e = zoo.entry(name)
        assert e.name == name and e.description and callable(e.builder)
        assert e.input_shape == zoo.input_shape(name)
    assert zoo.input_shape("inception_v3") == (3, 299, 299)
    assert zoo.input_shape("yolov2") == (3, 416, 416)
    assert zoo.input_shape("vgg-16") == (3, 224, 224)


@pytest.mark.parametrize("call", [zoo.build, zoo.entry, zoo.input_shape])
def test_unknown_name_suggests_the_closest(call) -> None:
    with pytest.raises(UnknownNameError) as info:
        call("vgg16")
    message = str(info.value)
    assert "unknown model 'vgg16'" in message
    assert "did you mean 'vgg-16'?" in message
    assert "resnet-50" in message  # lists the valid names


# --- every network --------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_builds_and_runs(name: str) -> None:
    model = _built(name)
    assert not any(m.training for m in model.modules()), "must be in eval mode"
    assert all(
        t.dtype == torch.float32 for t in model.state_dict().values() if t.is_floating_point()
    )
    y = _output(name)
    assert y.shape == ((1, 125, 13, 13) if name == "yolov2" else (1, 1000))
    assert torch.isfinite(y).all()
    assert 1e-3 < y.std().item() < 1e3


@pytest.mark.parametrize("name", SEED_NAMES)
def test_fx_traceable_with_only_known_ops(name: str) -> None:
    model = _built(name)
    traced = torch.fx.symbolic_trace(model)
    modules = dict(traced.named_modules())
    for node in traced.graph.nodes:
        if node.op == "call_module":
            assert isinstance(modules[node.target], ALLOWED_MODULES), (
                node.target,
                modules[node.target],
            )
        elif node.op == "call_function":
            assert node.target in ALLOWED_FUNCTIONS, node.target
        else:
            assert node.op in ("placeholder", "output"), (node.op, node.target)
    with torch.no_grad():
        assert torch.equal(traced(_input(name)), _output(name))


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_macs_match_the_reference(name: str) -> None:
    macs = _count_macs(_built(name), _input(name))
    reference = REFERENCE_GMACS[name] * 1e9
    assert abs(macs - reference) / reference < 0.02, f"{name}: {macs / 1e9:.4f} GMACs"


def test_vgg16_and_resnet50_macs() -> None:
    """The two figures the seeds quote: VGG-16 15.47 G, ResNet-50 4.09 G (within 2%)."""
    assert abs(_count_macs(_built("vgg-16"), _input("vgg-16")) / 15.47e9 - 1) < 0.02
    assert abs(_count_macs(_built("resnet-50"), _input("resnet-50")) / 4.09e9 - 1) < 0.02


# --- seeding --------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_same_seed_is_bit_identical_and_other_seeds_differ(name: str) -> None:
    assert _same_weights(_built(name), zoo.build(name, seed=0))
    other = zoo.build(name, seed=1)
    assert not _same_weights(_built(name), other)
    # Every conv weight differs, not just some: the seed reaches every layer.
    for (key, a), b in zip(
        _built(name).state_dict().items(), other.state_dict().values(), strict=True
    ):
        if key.endswith("weight") and a.dim() == 4:
            assert not torch.equal(a, b), key


def test_build_does_not_touch_the_global_rng() -> None:
    torch.manual_seed(42)
    before = torch.get_rng_state()
    zoo.build("resnet-18", seed=7)
    assert torch.equal(torch.get_rng_state(), before)


def test_another_process_builds_the_same_weights() -> None:
    """Different thread count, fresh interpreter, same bits."""
    code = (
        "import hashlib, torch; torch.set_num_threads(1); from maniple import zoo\n"
        "m = zoo.build('squeezenet_v1.1', seed=3); h = hashlib.sha256()\n"
        "for k, t in m.state_dict().items():\n"
        "    h.update(k.encode()); h.update(t.contiguous().numpy().tobytes())\n"
        "print(h.hexdigest())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == _digest(zoo.build("squeezenet_v1.1", seed=3))


# --- resolve --------------------------------------------------------------------------


@pytest.fixture
def fixtures_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))


def test_resolve_zoo_name() -> None:
    model, shape, label = zoo.resolve("squeezenet_v1.1")
    assert shape == (3, 224, 224) and label == "squeezenet_v1.1"
    assert _same_weights(model, _built("squeezenet_v1.1"))
    assert not model.training


def test_resolve_zoo_name_with_other_resolution() -> None:
    model, shape, _ = zoo.resolve("squeezenet_v1.1", input_shape=(3, 256, 320), seed=2)
    assert shape == (3, 256, 320)
    assert _same_weights(model, zoo.build("squeezenet_v1.1", seed=2))
    with pytest.raises(ManipleError, match="has 1 channels but 'vgg-16' takes 3"):
        zoo.resolve("vgg-16", input_shape=(1, 224, 224))


def test_resolve_unknown_name_mentions_module_specs() -> None:
    with pytest.raises(UnknownNameError) as info:
        zoo.resolve("resnet50")
    assert "did you mean 'resnet-50'?" in str(info.value)
    assert "package.module:callable" in str(info.value)


@pytest.mark.usefixtures("fixtures_on_path")
@pytest.mark.parametrize(
    "spec",
    ["zoo_fixture_nets:tiny_net", "zoo_fixture_nets:TinyNet", "zoo_fixture_nets:Factories.tiny"],
)
def test_resolve_module_spec(spec: str) -> None:
    torch.manual_seed(5)
    before = torch.get_rng_state()
    model, shape, label = zoo.resolve(spec, input_shape=(3, 32, 32))
    assert torch.equal(torch.get_rng_state(), before), "resolve must not disturb the RNG"
    assert isinstance(model, nn.Module) and not model.training
    assert shape == (3, 32, 32) and label == spec
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    again, _, _ = zoo.resolve(spec, input_shape=(3, 32, 32))
    assert _same_weights(model, again), "seeded: the user's default init is reproducible"
    other, _, _ = zoo.resolve(spec, input_shape=(3, 32, 32), seed=1)
    assert not _same_weights(model, other)


def test_module_spec_needs_an_input_shape(fixtures_on_path: None) -> None:
    with pytest.raises(ManipleError, match="--input-shape C,H,W is required for module specs"):
        zoo.resolve("zoo_fixture_nets:tiny_net")


@pytest.mark.usefixtures("fixtures_on_path")
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "no_such_package_xyz.nets:build",
            r"cannot import 'no_such_package_xyz\.nets'.*PYTHONPATH",
        ),
        ("zoo_fixture_nets:missing", r"has no attribute 'missing'.*tiny_net"),
        ("zoo_fixture_nets:Factories.missing", r"'zoo_fixture_nets:Factories' has no attribute"),
        ("zoo_fixture_nets:NUMBER", r"names a int, which is not callable"),
        ("zoo_fixture_nets:not_a_module", r"returned int, not a torch\.nn\.Module"),
        ("zoo_fixture_nets:needs_args", r"calling it failed with TypeError.*no arguments"),
        ("zoo_fixture_nets:", r"bad model spec.*package\.module:callable"),
        (":tiny_net", r"bad model spec"),
        ("a:b:c", r"bad model spec"),
    ],
)
def test_bad_module_specs(spec: str, expected: str) -> None:
    with pytest.raises(ManipleError, match=expected) as info:
        zoo.resolve(spec, input_shape=(3, 32, 32))
    assert repr(spec) in str(info.value), "the message names the spec"


def test_module_that_fails_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "zoo_broken_fixture.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ManipleError, match=r"RuntimeError: boom.*fix the error in it"):
        zoo.resolve("zoo_broken_fixture:net", input_shape=(3, 8, 8))


def test_module_spec_found_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Console scripts do not put the cwd on sys.path; resolve looks there anyway."""
    (tmp_path / "zoo_cwd_fixture.py").write_text(
        "from torch import nn\ndef net():\n    return nn.Conv2d(3, 4, 1)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    model, _, _ = zoo.resolve("zoo_cwd_fixture:net", input_shape=(3, 8, 8))
    assert isinstance(model, nn.Conv2d)
    assert str(tmp_path) not in sys.path, "sys.path is restored"


def test_bad_input_shape_from_python() -> None:
    with pytest.raises(ManipleError, match=r"expected \(C, H, W\)"):
        zoo.resolve("vgg-16", input_shape=(3, 224))  # type: ignore[arg-type]
    with pytest.raises(ManipleError, match=r"expected \(C, H, W\)"):
        zoo.resolve("vgg-16", input_shape=(3, 224, 0))


# --- parse_input_shape ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shape"), [("3,224,224", (3, 224, 224)), (" 3, 299 ,299 ", (3, 299, 299))]
)
def test_parse_input_shape(text: str, shape: tuple[int, int, int]) -> None:
    assert zoo.parse_input_shape(text) == shape


@pytest.mark.parametrize(
    "text", ["", "3,224", "3,224,224,1", "3x224x224", "3,a,224", "3,0,224", "-3,2,2"]
)
def test_parse_input_shape_rejects(text: str) -> None:
    with pytest.raises(ManipleError, match=r"expected C,H,W.*e\.g\. 3,224,224") as info:
        zoo.parse_input_shape(text)
    assert repr(text) in str(info.value)
