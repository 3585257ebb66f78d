"""The five post-2018 zoo networks: they build, run, trace, have torchvision's parameter
counts and the published MACs, and are reproducible from their seed.

Parameter counts are torchvision 0.26's `num_params` for efficientnet_b0,
mobilenet_v3_large, regnet_y_400mf, convnext_tiny and shufflenet_v2_x1_0; an exact match
is a strong check that every layer's shape is right.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.fx
from torch import nn

from maniple import zoo
from maniple.zoo._layers import StochasticDepth
from maniple.zoo.init import LAYER_SCALE
from maniple.zoo.regnet import stage_plan
from maniple.zoo.shufflenet import channel_shuffle

TORCHVISION_PARAMS = {
    "efficientnet-b0": 5_288_548,
    "mobilenet-v3-large": 5_483_032,
    "regnety-400mf": 4_344_144,
    "convnext-tiny": 28_589_128,
    "shufflenet-v2": 2_278_604,
}
MODERN = list(TORCHVISION_PARAMS)

# torchvision's docs ("GFLOPS" there are MACs), except ShuffleNet v2, where torchvision
# rounds to 0.14 and the paper gives 146 M.
REFERENCE_GMACS = {
    "efficientnet-b0": 0.39,
    "mobilenet-v3-large": 0.22,
    "regnety-400mf": 0.40,
    "convnext-tiny": 4.46,
    "shufflenet-v2": 0.146,
}


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
    """Conv and linear MACs per image; a Linear counts once per position it is applied
    at (ConvNeXt's MLPs run on every pixel of an NHWC tensor)."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += out[0].numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
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


def test_registered_after_the_seed_networks() -> None:
    assert zoo.names()[-len(MODERN) :] == MODERN
    for name in MODERN:
        e = zoo.entry(name)
        assert e.input_shape == (3, 224, 224)
        assert "GMACs" in e.description


@pytest.mark.parametrize("name", MODERN)
def test_builds_and_runs(name: str) -> None:
    model = _built(name)
    assert not any(m.training for m in model.modules()), "must be in eval mode"
    y = _output(name)
    assert y.shape == (1, 1000)
    assert torch.isfinite(y).all()
    assert 1e-3 < y.std().item() < 1e3


@pytest.mark.parametrize("name", MODERN)
def test_parameter_count_is_torchvisions(name: str) -> None:
    assert sum(p.numel() for p in _built(name).parameters()) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", MODERN)
def test_macs_match_the_reference(name: str) -> None:
    macs = _count_macs(_built(name), _input(name))
    reference = REFERENCE_GMACS[name] * 1e9
    assert abs(macs - reference) / reference < 0.02, f"{name}: {macs / 1e9:.4f} GMACs"


@pytest.mark.parametrize("name", MODERN)
def test_fx_traces_to_the_same_function(name: str) -> None:
    traced = torch.fx.symbolic_trace(_built(name))
    targets = {str(n.target) for n in traced.graph.nodes if n.op == "call_module"}
    assert not any("stochastic_depth" in t for t in targets), "eval mode traces it away"
    with torch.no_grad():
        assert torch.equal(traced(_input(name)), _output(name))


@pytest.mark.parametrize("name", MODERN)
def test_same_seed_same_output_other_seed_differs(name: str) -> None:
    again = zoo.build(name, seed=0)
    a, b = _built(name).state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        assert torch.equal(again(_input(name)), _output(name))
        assert not torch.equal(zoo.build(name, seed=1)(_input(name)), _output(name))


def test_convnext_layer_scale_and_layer_norms_are_seeded_non_trivially() -> None:
    model = _built("convnext-tiny")
    scales = [p for n, p in model.named_parameters() if n.endswith(LAYER_SCALE)]
    assert len(scales) == 18 and all(s.shape[1:] == (1, 1) for s in scales)
    assert all(0.125 <= s.min() and s.max() <= 0.375 for s in scales)
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 1 + 18 + 3 + 1  # stem, blocks, downsamples, head
    assert all(not torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms)
    assert all(m.eps == 1e-6 for m in norms)


def test_batch_norm_settings_follow_torchvision() -> None:
    def settings(name: str) -> set[tuple[float, float]]:
        bns = [m for m in _built(name).modules() if isinstance(m, nn.BatchNorm2d)]
        return {(m.eps, m.momentum) for m in bns}

    assert settings("mobilenet-v3-large") == {(1e-3, 0.01)}
    for name in ("efficientnet-b0", "regnety-400mf", "shufflenet-v2"):
        assert settings(name) == {(1e-5, 0.1)}, name


def test_regnet_y_400mf_stage_plan() -> None:
    assert stage_plan(16, 48, 27.89, 2.09, 8) == ([48, 104, 208, 440], [1, 3, 6, 6], [8] * 4)


def test_channel_shuffle_interleaves_the_two_halves() -> None:
    x = torch.arange(6.0).reshape(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


def test_stochastic_depth_is_identity_in_eval_and_drops_rows_in_training() -> None:
    module = StochasticDepth(0.5)
    x = torch.randn(64, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    assert module.eval()(x) is x
    torch.manual_seed(0)
    y = module.train()(x)
    kept = [torch.equal(y[i], 2 * x[i]) for i in range(64)]
    dropped = [bool((y[i] == 0).all()) for i in range(64)]
    assert all(k or d for k, d in zip(kept, dropped)) and any(kept) and any(dropped)
    assert StochasticDepth(0.0).train()(x) is x
    with pytest.raises(ValueError):
        StochasticDepth(1.0)
