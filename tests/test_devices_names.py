"""Device names: parsing, canonical round trips, presence checks and their errors (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maniple.devices import (
    PRESETS,
    DeviceSpec,
    available_devices,
    check_present,
    parse_device,
    resolve_device,
)
from maniple.devices.link import LinkSpec
from maniple.errors import ManipleError


@pytest.mark.parametrize(
    ("text", "name", "torch_device"),
    [
        ("cpu", "cpu", "cpu"),
        ("CPU", "cpu", "cpu"),
        ("cuda", "cuda:0", "cuda:0"),
        ("cuda:3", "cuda:3", "cuda:3"),
        ("gpu0", "cuda:0", "cuda:0"),
        ("gpu1", "cuda:1", "cuda:1"),
        ("igpu", "xpu:0", "xpu:0"),
        ("xpu:1", "xpu:1", "xpu:1"),
        ("mps", "mps", "mps"),
        ("emu:firefly-rk3399", "emu:firefly-rk3399", "cpu"),
        ("emu:odroid-xu4#2", "emu:odroid-xu4#2", "cpu"),
        ("emu:firefly-rk3399@50", "emu:firefly-rk3399@50", "cpu"),
        ("emu:custom:500@20#1", "emu:custom:500@20#1", "cpu"),
        ("ray:10.0.0.5", "ray:10.0.0.5/cpu", "cpu"),
        ("ray:Board-A/cuda", "ray:Board-A/cuda:0", "cuda:0"),
        ("ray:head/cuda:1", "ray:head/cuda:1", "cuda:1"),
    ],
)
def test_parse_names(text: str, name: str, torch_device: str) -> None:
    spec = parse_device(text)
    assert spec.name == name
    assert spec.torch_device == torch_device
    assert parse_device(spec.canonical) == spec


def test_emulated_boards() -> None:
    firefly = parse_device("emu:firefly-rk3399").board
    odroid = parse_device("emu:odroid-xu4").board
    custom = parse_device("emu:custom:485@50").board
    assert firefly is not None and odroid is not None and custom is not None
    assert firefly.reference_ms("vgg-16") == 970.0
    assert firefly.reference_ms("squeezenet_v1.1") == 44.0
    assert odroid.reference_ms("vgg-16") == pytest.approx(970.0 / 0.65)
    assert custom.slowdown_vs_firefly == pytest.approx(0.5)
    assert custom.reference_ms("resnet-18") == pytest.approx(169.0 / 2)
    assert custom.link == LinkSpec(mbps=50.0)
    assert firefly.link.mbps == 100.0 and firefly.link.uplink_mbps == 1000.0
    assert "ASSUMED" in PRESETS["odroid-xu4"].description


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("tpu", "not a device name"),
        ("cuda0", "write cuda:0"),
        ("emu:fireflyy", "did you mean 'firefly-rk3399'"),
        ("emu:firefly-rk3399:500", "only emu:custom"),
        ("emu:custom", "VGG-16 latency"),
        ("emu:custom:0", "> 0 ms"),
        ("emu:firefly-rk3399@0", "> 0 Mbit/s"),
        ("ray:", "ray:NODE"),
        ("ray:node/tpu", "ray:NODE"),
    ],
)
def test_bad_names_say_why(text: str, fragment: str) -> None:
    with pytest.raises(ManipleError, match=None) as info:
        parse_device(text)
    assert fragment in str(info.value)


def test_bad_threads() -> None:
    with pytest.raises(ManipleError, match="threads"):
        parse_device("cpu", threads=0)


def test_available_devices_lists_cpu_and_presets() -> None:
    names = [d.name for d in available_devices()]
    assert names[0] == "cpu"
    assert "emu:firefly-rk3399" in names and "emu:odroid-xu4" in names


def test_absent_device_lists_present_ones() -> None:
    import torch

    missing = f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}"
    with pytest.raises(ManipleError) as info:
        resolve_device(missing)
    message = str(info.value)
    assert repr(missing) in message and "Present devices: cpu" in message
    assert "emu:firefly-rk3399" in message


def test_present_devices_pass() -> None:
    assert check_present(parse_device("cpu")).name == "cpu"
    assert check_present(parse_device("emu:firefly-rk3399")).is_emulated


def test_spec_is_frozen_and_labelled() -> None:
    spec = DeviceSpec("cpu", label="host")
    assert spec.name == "host" and spec.canonical == "cpu"
    with pytest.raises(AttributeError):
        spec.kind = "cuda"  # type: ignore[misc]


@given(
    kind=st.sampled_from(["firefly-rk3399", "odroid-xu4", "custom"]),
    ms=st.integers(1, 5000),
    mbps=st.one_of(st.none(), st.integers(1, 10_000)),
    k=st.one_of(st.none(), st.integers(0, 99)),
)
def test_emu_names_round_trip(kind: str, ms: int, mbps: int | None, k: int | None) -> None:
    text = "emu:" + (f"custom:{ms}" if kind == "custom" else kind)
    text += f"@{mbps}" if mbps is not None else ""
    text += f"#{k}" if k is not None else ""
    spec = parse_device(text)
    assert parse_device(spec.name) == spec
    assert spec.index == k
