"""Cluster specs: shorthands and YAML files, and errors that name the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from maniple.cluster import load_cluster, parse_cluster_text, parse_emulate, parse_shorthand
from maniple.errors import ManipleError

GOOD = """\
version: 1
ray: local
dilation: 3
timeout_s: 10
devices:
  - cpu
  - {kind: cuda, index: 1, threads: 2}
  - kind: emulated
    preset: firefly-rk3399
    count: 2
    link: {mbps: 50, latency_ms: 1}
  - kind: emu
    preset: custom
    vgg16_ms: 485
    name: fast-board
  - kind: ray
    node: board-a
    device: cuda
    threads: 4
"""


def test_shorthand_devices_and_boards() -> None:
    spec = parse_shorthand("cpu,gpu0", "3xfirefly-rk3399+2xodroid-xu4", dilation=3)
    assert spec.names == [
        "cpu",
        "cuda:0",
        "emu:firefly-rk3399#0",
        "emu:firefly-rk3399#1",
        "emu:firefly-rk3399#2",
        "emu:odroid-xu4#0",
        "emu:odroid-xu4#1",
    ]
    assert spec.dilation == 3.0 and spec.needs_ray and not spec.ray_all_nodes


def test_shorthand_single_board_keeps_its_plain_name() -> None:
    assert parse_shorthand(emulate="firefly-rk3399@20").names == ["emu:firefly-rk3399@20"]
    assert [d.name for d in parse_emulate("custom:500,2xcustom:250")] == [
        "emu:custom:500",
        "emu:custom:250",
        "emu:custom:250",
    ]


def test_shorthand_ray() -> None:
    spec = parse_shorthand(ray="auto")
    assert spec.ray_all_nodes and spec.ray_address == "auto" and spec.devices == ()
    assert parse_shorthand("ray:head", ray="127.0.0.1:6379").ray_address == "127.0.0.1:6379"
    assert not parse_shorthand("cpu").needs_ray


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "no devices"),
        ({"devices": "cpu,tpu"}, "--devices item 'tpu'"),
        ({"emulate": "3xfireflyy"}, "did you mean 'firefly-rk3399'"),
        ({"emulate": "0xfirefly-rk3399"}, "count must be >= 1"),
        ({"devices": "cpu,cpu"}, "listed twice"),
        ({"devices": "cpu", "dilation": 0.5}, "--dilation must be"),
        ({"ray": "not an address"}, "--ray must be"),
    ],
)
def test_shorthand_errors(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ManipleError) as info:
        parse_shorthand(**kwargs)
    assert fragment in str(info.value)


def test_good_file(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(GOOD)
    spec = load_cluster(path)
    assert spec.names == [
        "cpu",
        "cuda:1",
        "emu:firefly-rk3399@50#0",
        "emu:firefly-rk3399@50#1",
        "fast-board",
        "ray:board-a/cuda:0",
    ]
    assert spec.dilation == 3.0 and spec.timeout_s == 10.0 and spec.ray_address == "local"
    board = spec.devices[2].board
    assert board is not None and board.link.mbps == 50 and board.link.latency_ms == 1
    assert spec.devices[4].board is not None and spec.devices[4].board.vgg16_ms == 485
    assert spec.devices[5].threads == 4 and spec.devices[1].threads == 2
    assert spec.source == str(path)


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        (
            "    preset: firefly-rk3399",
            "    presett: firefly-rk3399",
            "c.yaml:9: devices[2].presett",
        ),
        ("    count: 2", "    count: 0", "c.yaml:10: devices[2].count: must be a whole number"),
        ("{mbps: 50, latency_ms: 1}", "{mbs: 50}", "c.yaml:11: devices[2].link.mbs"),
        ("{mbps: 50, latency_ms: 1}", "{mbps: -5}", "c.yaml:11: devices[2].link.mbps"),
        ("    preset: firefly-rk3399", "    preset: fireflyy", "c.yaml:9: devices[2].preset"),
        ("    vgg16_ms: 485", "    vgg16_ms: fast", "c.yaml:14: devices[3].vgg16_ms"),
        ("    node: board-a\n", "", "c.yaml:16: devices[4].node: missing"),
        (
            "    device: cuda",
            "    device: tpu",
            "c.yaml:18: devices[4].device: must be cpu or cuda:N",
        ),
        (
            "  - {kind: cuda, index: 1, threads: 2}",
            "  - {kind: cuda, index: -1}",
            "c.yaml:7: devices[1].index",
        ),
        ("  - cpu\n", "  - cpux\n", "c.yaml:6: devices[0]: bad device name 'cpux'"),
        ("  - cpu\n", "  - {kind: tpu}\n", "c.yaml:6: devices[0].kind: unknown device kind 'tpu'"),
        (
            "  - cpu\n",
            "  - cpu\n  - cpu\n",
            "c.yaml:7: devices: 'cpu' is listed twice (first at line 6)",
        ),
        ("dilation: 3", "dilation: 0.5", "c.yaml:3: dilation"),
        ("dilation: 3", "dilatoin: 3", "c.yaml:3: dilatoin"),
        ("version: 1", "version: 2", "c.yaml:1: version"),
        ("ray: local", "ray: [1]", "c.yaml:2: ray"),
        ("timeout_s: 10", "timeout_s: 0", "c.yaml:4: timeout_s"),
        ("  - cpu\n", "  - cpu\n   bad: [\n", "c.yaml:"),
    ],
)
def test_file_errors_name_line_and_field(old: str, new: str, where: str) -> None:
    assert old in GOOD
    with pytest.raises(ManipleError) as info:
        parse_cluster_text(GOOD.replace(old, new), source="c.yaml")
    assert str(info.value).startswith(where), str(info.value)


def test_file_shape_errors(tmp_path: Path) -> None:
    with pytest.raises(ManipleError, match="cannot read cluster file"):
        load_cluster(tmp_path / "missing.yaml")
    with pytest.raises(ManipleError, match="devices: must be a non-empty list"):
        parse_cluster_text("devices: []\n", "c.yaml")
    with pytest.raises(ManipleError, match="a mapping with a 'devices' list"):
        parse_cluster_text("- cpu\n", "c.yaml")
    with pytest.raises(ManipleError, match="c.yaml:2: key 'devices' is given twice"):
        parse_cluster_text("devices: [cpu]\ndevices: [cpu]\n", "c.yaml")
    with pytest.raises(ManipleError, match="not valid YAML"):
        parse_cluster_text("devices: !!python/object:os.system [ls]\n", "c.yaml")
