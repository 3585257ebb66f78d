"""Spatial runtime and Legion session on local CPU devices: exact output, honest counts."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from maniple import zoo
from maniple.cli import app
from maniple.cluster import parse_shorthand, with_link
from maniple.devices import DeviceSpec, LocalHandle
from maniple.errors import ManipleError
from maniple.graph import NoSpatialPartError, capture
from maniple.spatial.runtimes.star import run_schedule, run_spatial_plan
from maniple.spatial.schedule import Transfer, lower
from maniple.spatial.session import LegionSession
from maniple.spatial.setup import warm_up

from nets import TailOnly

SHAPE = (3, 96, 96)


@pytest.fixture(scope="module")
def session():
    model = zoo.build("resnet-18")
    graph = capture(model, SHAPE, "resnet-18")
    handles = [
        LocalHandle(DeviceSpec("cpu", threads=1, label=f"cpu{i}"), model, input_shape=SHAPE)
        for i in range(2)
    ]
    yield LegionSession(handles, graph, repeats=1)
    for h in handles:
        h.close()


@pytest.mark.parametrize(
    "search", ["single", "layerwise", "one-group", "legion", "legion-wildcard", "fss"]
)
def test_every_search_gives_the_single_device_output(session, search: str) -> None:
    result = session.measure(search)
    assert result.max_rel_error <= 1e-4
    assert result.latency_ms > 0 and result.single_device_ms > 0
    info = result.to_json()
    for key in (
        "flc",
        "bands",
        "predicted_ms",
        "latency_ms",
        "single_device_ms",
        "speedup",
        "max_rel_error",
        "profile_seconds",
    ):
        assert key in info


def test_fss_profiles_far_more_than_legion(session) -> None:
    legion, fss = session.plan("legion"), session.plan("fss")
    assert fss.spent.runs > 2 * legion.spent.runs
    assert fss.spent.seconds > legion.spent.seconds


def test_run_counts_every_group(session) -> None:
    plan = session.plan("layerwise")
    run = run_spatial_plan(plan, session.by_name, session.graph, session.x)
    assert len(run.groups) == len(session.graph.units)
    assert run.latency_ms >= sum(g.elapsed_ms for g in run.groups)
    with torch.no_grad():
        assert torch.allclose(run.output, session.graph.module(session.x), rtol=0, atol=1e-4)


def test_run_schedule_runs_the_lowered_plan(session) -> None:
    """The star runtime executes the schedule's steps; the plan's run is the same run."""
    plan = session.plan("legion")
    schedule = lower(plan, session.graph)
    run = run_schedule(schedule, session.by_name, session.graph, session.x)
    assert run.plan is None and run.schedule == schedule
    assert [g.group for g in run.groups] == list(plan.flc)
    by_plan = run_spatial_plan(plan, session.by_name, session.graph, session.x)
    assert by_plan.plan == plan and by_plan.schedule == schedule
    assert torch.equal(run.output, by_plan.output)
    with torch.no_grad():
        assert torch.allclose(run.output, session.graph.module(session.x), rtol=0, atol=1e-4)


def test_costs_carry_the_weights_they_were_profiled_with(session) -> None:
    assert session.costs().weights == session.speeds().weights


def test_run_schedule_refuses_what_a_star_cannot_run(session) -> None:
    schedule = lower(session.plan("layerwise"), session.graph)
    steps = list(schedule.steps)

    def overlap(a, b):  # rows of b's output band that a's step reads
        return (max(a.run.in_rows[0], b.run.out_rows[0]), min(a.run.in_rows[1], b.run.out_rows[1]))

    # route part of a group-1 step's input from the other device, not the coordinator
    first, a, src, rows = next(
        (i, a, b, overlap(a, b))
        for i, a in enumerate(steps)
        for b in steps
        if a.group == 1 and b.group == 0 and a.device != b.device
        if overlap(a, b)[1] > overlap(a, b)[0]
    )
    peer = Transfer(src.device, a.device, 0, rows, schedule.rows_bytes(0, rows))
    steps[first] = replace(a, receive=(*a.receive, peer))
    peered = replace(schedule, steps=tuple(steps)).validate(session.graph)
    with pytest.raises(ManipleError, match=f"step {first} .*is not a star step"):
        run_schedule(peered, session.by_name, session.graph, session.x)
    with pytest.raises(ManipleError, match="not open"):
        run_schedule(schedule, {}, session.graph, session.x)
    with pytest.raises(ManipleError, match="lower the plan for this input"):
        run_schedule(schedule, session.by_name, session.graph, session.x[:, :, :-1])


def test_more_devices_than_rows_is_clear() -> None:
    model = zoo.build("squeezenet_v1.1")
    graph = capture(model, (3, 35, 35), "tiny")
    handles = [
        LocalHandle(DeviceSpec("cpu", label=f"c{i}"), model, input_shape=(3, 35, 35))
        for i in range(18)
    ]
    try:
        with pytest.raises(ManipleError, match="largest feature map"):
            LegionSession(handles, graph)
    finally:
        for h in handles:
            h.close()


def test_zero_mbps_link_is_clear() -> None:
    with pytest.raises(ManipleError, match="0 Mbps"):
        with_link(parse_shorthand(None, "2xfirefly-rk3399"), 0.0)


def test_no_spatial_part_is_clear() -> None:
    with pytest.raises(NoSpatialPartError):
        capture(TailOnly(), (3, 8, 8))


def test_cli_spatial_json_on_local_cpu() -> None:
    result = CliRunner().invoke(
        app,
        [
            "spatial",
            "--network",
            "squeezenet_v1.1",
            "--devices",
            "cpu",
            "--search",
            "legion",
            "--repeats",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    info = json.loads(result.output[result.output.index("{") :])
    assert info["max_rel_error"] <= 1e-4 and info["flc"][0][0] == 0


def test_cli_spatial_unknown_search() -> None:
    with pytest.raises(ManipleError, match="did you mean 'legion'"):
        CliRunner().invoke(
            app,
            ["spatial", "--network", "vgg-16", "--devices", "cpu", "--search", "legoin"],
            catch_exceptions=False,
        )


class CountingHandle:
    """Wraps a handle and records what warm_up asks of it."""

    def __init__(self, inner) -> None:
        self.inner, self.spans, self.fast_forward = inner, [], []

    def set_fast_forward(self, on: bool) -> None:
        self.fast_forward.append(on)

    def submit_span(self, first, last, out_rows, x_band, **kw):
        self.spans.append((first, last, out_rows, tuple(x_band.shape), kw))
        return self.inner.submit_span(first, last, out_rows, x_band, **kw)


def test_warm_up_runs_the_whole_spatial_part_in_fast_forward(session) -> None:
    handles = [CountingHandle(h) for h in session.handles]
    warm_up(handles, session.graph, session.x, runs=2)
    last = len(session.graph.units) - 1
    rows = session.graph.units[last].out_shape[2]
    for h in handles:
        assert [s[:3] for s in h.spans] == [(0, last, (0, rows))] * 2
        assert all(s[4] == {"link": False, "solo": True} for s in h.spans)
        assert h.fast_forward == [True, False]  # on for the runs, off again after
