"""The real-link testbed (#17): its plan, state record, counters and link counting need
nothing; bringing one up needs root and iproute2 (marked `testbed`, skipped elsewhere).

The live tests make a 2-board testbed, run a peer split over it in a process of its own
(a Ray driver must live in the coordinator's namespace; this one stays where it is),
check the output and the coordinator's byte counter, tear it down and check that no
namespace, veth, bridge or Ray process is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer

from maniple.cluster.testbed import counters, names, network, plan, state
from maniple.cluster.testbed.shell import missing_requirements
from maniple.devices.shaped_link import ShapedLink, payload_bytes
from maniple.errors import ManipleError

pytestmark = pytest.mark.testbed


@pytest.fixture(autouse=True)
def _own_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test keeps its record in its own folder, never the user's."""
    monkeypatch.setenv(names.STATE_VAR, str(tmp_path / "testbed.json"))


def _plan(boards: str = "3xfirefly-rk3399", **kw: object) -> plan.TestbedPlan:
    return plan.plan_testbed(boards, dilation=4.0, **kw)  # type: ignore[arg-type]


# -- plan, names, record: no root needed ------------------------------------------------------


def test_plan_names_addresses_and_shaping() -> None:
    p = _plan("2xfirefly-rk3399+odroid-xu4", taken=["10.213.0.0/24", "192.0.2.2/24"])
    assert p.subnet == "10.213.1.0/24" and p.coordinator_address == "10.213.1.1"
    assert [b.name for b in p.boards] == [
        "emu:firefly-rk3399#0",
        "emu:firefly-rk3399#1",
        "emu:odroid-xu4",
    ]
    assert [b.address for b in p.boards] == ["10.213.1.10", "10.213.1.11", "10.213.1.12"]
    assert p.namespaces[:2] == (names.SWITCH_NS, names.COORDINATOR_NS)
    assert all(names.is_ours(ns) for ns in p.namespaces)
    assert p.boards[0].resource == "maniple-testbed.board0.emu-firefly-rk3399-0"
    tc = p.board_shaping.tc_args()
    assert tc[:3] == ["tbf", "rate", "25000000bit"]  # 100 Mbit/s / dilation 4
    assert p.uplink_shaping.rate_bits == 250_000_000
    assert p.gcs_address == "10.213.1.1:6379"


def test_plan_refuses_bad_settings_with_the_fix() -> None:
    with pytest.raises(ManipleError, match="--link-mbps must be > 0"):
        plan.plan_testbed("2xfirefly-rk3399", link_mbps=0, dilation=4)
    with pytest.raises(ManipleError, match="--dilation must be >= 1"):
        plan.plan_testbed("2xfirefly-rk3399", dilation=0.5)
    with pytest.raises(ManipleError, match="at most 32"):
        plan.plan_testbed("33xfirefly-rk3399", dilation=4)
    with pytest.raises(ManipleError, match="overlaps"):
        plan.pick_subnet(["10.213.0.0/16"])


def test_names_outside_the_prefix_are_never_ours() -> None:
    assert names.is_ours("maniple-tb-board12") and names.is_ours("maniple-tb-coord")
    for other in ("maniple-tb-", "maniple-tb-board", "maniple-tb-coord2", "netns0", "x"):
        assert not names.is_ours(other)


def test_record_round_trips_and_refuses_what_is_not_one(tmp_path: Path) -> None:
    record = state.new_state(_plan())
    path = state.write(record, tmp_path / "r.json")
    back = state.read(path)
    assert back == record
    doc = json.loads(path.read_text())
    bad = [
        ({**doc, "schema": "other"}, "not a maniple.testbed record"),
        ({**doc, "version": 2}, "version 2"),
        ({**doc, "status": "odd"}, "status 'odd'"),
        ({**doc, "coordinator_address": "192.0.2.1"}, "outside the subnet"),
        ({**doc, "ray_dir": "/etc"}, "ray_dir"),
        ({**doc, "dilation": 0.5}, "dilation >= 1"),
        (
            {**doc, "boards": [{**doc["boards"][0], "namespace": "root"}]},
            r"boards\[0\]",
        ),
    ]
    for changed, words in bad:
        path.write_text(json.dumps(changed))
        with pytest.raises(ManipleError, match=words):
            state.read(path)
    path.write_text("{not json")
    with pytest.raises(ManipleError, match="not valid JSON"):
        state.read(path)
    assert state.read(tmp_path / "none.json") is None


def test_counters_parse_the_bridge_ports() -> None:
    p = _plan("2xfirefly-rk3399")
    entry = {"ifname": "coord", "stats64": {"rx": {"bytes": 1066, "packets": 1},
             "tx": {"bytes": 132, "packets": 2}}}  # fmt: skip
    c = counters._count(entry)
    assert (c.sent_bytes, c.received_bytes, c.sent_packets, c.received_packets) == (1066, 132, 1, 2)
    assert c.payload == 1000  # 66 bytes of headers per packet off; the ACKs count nothing
    later = counters.LinkCount(2066, 200, 2, 3)
    assert (later - c).to_dict()["payload_bytes"] == (1000 - 66) + (68 - 66)
    assert counters.link_ports(p) == {
        "coordinator": "coord",
        "emu:firefly-rk3399#0": "board0",
        "emu:firefly-rk3399#1": "board1",
    }
    assert payload_bytes(10, 1) == 0


def test_shaped_link_divides_out_only_its_wire_time() -> None:
    link = ShapedLink(100.0, 4.0, 12_500)
    wire = link.wire_ms(1_000_000)  # at 25 Mbit/s, frames whole, less the bucket
    assert 330 < wire < 335
    assert link.wire_ms(0) == 0.0 and link.wire_ms(1000) == 0.0  # within the burst
    # a 400 ms wait holding that much wire: the wire counts a quarter, the rest whole
    assert link.counted_ms(400.0, wire, False) == pytest.approx(400 - wire + wire / 4)
    assert link.counted_ms(400.0, wire, True) == pytest.approx(400 - wire)  # fast-forward
    assert link.counted_ms(100.0, wire, False) == pytest.approx(25.0)  # never below wire/D


def test_a_board_on_a_real_link_never_sleeps_for_it() -> None:
    from dataclasses import replace

    from maniple.devices.calibration_record import Calibration
    from maniple.devices.emulated import BoardClock
    from maniple.devices.presets import board

    cal = Calibration("h", {"vgg-16": 170.0, "resnet-18": 30.0, "mobilenet": 14.0,
                            "squeezenet_v1.1": 8.0}, "now", 1)  # fmt: skip
    clock = BoardClock(board("firefly-rk3399"), cal, 4.0, real_link=ShapedLink(100, 4, 0))
    assert clock.link(10_000_000) == 0.0  # no 3.2 s sleep: the bytes take their own time
    assert replace(clock, fast_forward=True).link(1_000_000) == pytest.approx(80.5)


def test_without_root_the_error_says_what_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    from maniple.cli.boundary import EXIT_USER_ERROR, run_guarded
    from maniple.cli.main import app

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert any("root" in m for m in missing_requirements())
    said: list[str] = []
    code = run_guarded(
        typer.main.get_command(app),
        ["testbed", "up", "--boards", "2xfirefly-rk3399"],
        said.append,
        lambda _stream: None,
    )
    assert code == EXIT_USER_ERROR
    assert len(said) == 1 and "needs root" in said[0] and "sudo" in said[0]


# -- live: root and iproute2 ---------------------------------------------------------------


def _live_skip() -> str | None:
    if missing_requirements():
        return "needs " + "; ".join(missing_requirements())
    if network.ours():
        return f"a testbed is already up here ({', '.join(network.ours())}); not touching it"
    try:
        import ray  # noqa: F401
    except ImportError:
        return "needs Ray"
    return None


live = pytest.mark.skipif(_live_skip() is not None, reason=str(_live_skip()))

RUN = textwrap.dedent(
    """
    import dataclasses, json, sys
    import numpy as np, torch
    from maniple.cluster import open_cluster, parse_shorthand, with_link
    from maniple.cluster import testbed as tbm
    from maniple.devices import ModelSpec
    from maniple.devices.tiny import TINY_NETWORK, tiny_cnn
    from maniple.graph import capture
    from maniple.spatial.costs import ProfilingSpent
    from maniple.spatial.planners import plan_with_matrix
    from maniple.spatial.runtimes.peer import run_peer_schedule
    from maniple.spatial.schedule_peer import coordinator_bytes, lower_peer
    from maniple.spatial.testbed_session import expected_bytes
    from maniple.tiling.verify import relative_error

    tb = tbm.attach()
    shape = (3, 128, 128)
    p = tb.plan
    spec = with_link(parse_shorthand(emulate=p.boards_text, dilation=p.dilation), p.link_mbps)
    spec = dataclasses.replace(spec, ray_address=tb.address)
    model = ModelSpec(TINY_NETWORK, input_shape=shape)
    with open_cluster(spec, model, input_shape=shape, nodes=tb.nodes(), links=tb.links()) as c:
        handles = {h.name: h for h in c}
        where = {h.name: h.info().node_ip for h in c}
        graph = capture(tiny_cnn(), shape, "tiny")
        n = len(graph.units)
        heights = tuple(u.out_shape[2] for u in graph.units)
        plan = plan_with_matrix("tiny", "layerwise", tuple(handles), heights, (1.0, 1.0),
                                tuple((k, k) for k in range(n)), np.ones((n, n)),
                                ProfilingSpent(), runtime="peer")
        schedule = lower_peer(plan, graph)
        x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
        run_peer_schedule(schedule, handles, graph, x)  # warm: builds the band programs
        before = tb.counters()
        run = run_peer_schedule(schedule, handles, graph, x)
        seen = tb.since(before)
    with torch.no_grad():
        err = relative_error(run.output, graph.module(x))
    doc = {
        "error": err, "where": where, "addresses": {b.name: b.address for b in p.boards},
        "coordinator_bytes": coordinator_bytes(schedule), "wire": run.bytes_through_coordinator,
        "seen": {k: v.to_dict() for k, v in seen.items()},
        "expected": expected_bytes(run, list(seen)), "latency_ms": run.latency_ms,
    }
    sys.stdout.write(json.dumps(doc))
    """
)


def _ray_processes_of_the_testbed() -> list[int]:
    mark = str(names.ray_temp_dir()).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if mark in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _nothing_left() -> None:
    from maniple.cluster import testbed

    assert network.ours() == []
    assert testbed.leftovers() == {"namespaces": [], "processes": 0, "record": False}
    assert _ray_processes_of_the_testbed() == []
    assert not names.ray_temp_dir().exists()
    links = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout
    assert "maniple" not in links  # the root namespace never gained an interface


@live
def test_two_boards_run_a_split_over_real_links_and_leave_nothing() -> None:
    from maniple.cluster import testbed

    try:
        record = testbed.up("2xfirefly-rk3399", link_mbps=100.0, dilation=4.0)
        assert record.status == "up" and state.read() == record
        with pytest.raises(ManipleError, match="already here"):
            testbed.up("2xfirefly-rk3399", dilation=4.0)
        done = subprocess.run(
            [sys.executable, "-c", RUN], capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, done.stderr[-3000:]
        doc = json.loads(done.stdout)
        assert doc["error"] <= 1e-4
        assert doc["where"] == doc["addresses"]  # each board on its own node, by resource
        # what crossed the coordinator's veth: the scatter and the gathered bands, and
        # Ray's few messages beside them (a few KB: 4 steps)
        payload = doc["seen"]["coordinator"]["payload_bytes"]
        assert doc["expected"]["coordinator"]["wire_bytes"] == doc["wire"]
        assert doc["wire"] <= payload <= 1.1 * doc["wire"] + 16_000, doc["seen"]
        assert doc["coordinator_bytes"] >= doc["wire"] > 100_000
    finally:
        report = testbed.down()
    assert report["namespaces_removed"] and report["record_removed"]
    _nothing_left()


@live
def test_down_cleans_up_after_a_crash_with_or_without_the_record() -> None:
    from maniple.cluster import testbed

    p = _plan("1xfirefly-rk3399")
    try:
        state.write(state.new_state(p))  # what `up` writes before it makes anything
        subprocess.run(["ip", "netns", "add", names.board_ns(0)], check=True)
        report = testbed.down()
        assert report["namespaces_removed"] == [names.board_ns(0)] and report["record_removed"]
        _nothing_left()
        subprocess.run(["ip", "netns", "add", names.SWITCH_NS], check=True)  # no record
        assert testbed.status()["leftovers"]
        with pytest.raises(ManipleError, match="testbed down"):
            testbed.up("1xfirefly-rk3399", dilation=4.0)
        report = testbed.down()
        assert report["namespaces_removed"] == [names.SWITCH_NS]
        assert testbed.down()["namespaces_removed"] == []  # nothing there: a no-op
    finally:
        testbed.down()
    _nothing_left()
