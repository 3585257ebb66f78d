"""The peer runtime: halo rows device to device, exact output, bytes from the links' counters.

Local CPU devices (threads of this process) need nothing; the Ray tests at the end run on
emulated boards and are marked `emulated`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maniple import zoo
from maniple.devices import DeviceSpec, LocalHandle
from maniple.errors import ManipleError
from maniple.graph import capture
from maniple.spatial.bands import peer_sources
from maniple.spatial.costs import ProfilingSpent
from maniple.spatial.peer_costs import exchange_bytes
from maniple.spatial.planners import plan_with_matrix
from maniple.spatial.runtimes.peer import run_peer_schedule
from maniple.spatial.runtimes.star import run_schedule
from maniple.spatial.schedule import COORDINATOR, Schedule, lower
from maniple.spatial.schedule_peer import coordinator_bytes, device_bytes, lower_peer
from maniple.tiling.verify import relative_error

SHAPE = (3, 96, 96)


@pytest.fixture(scope="module")
def net():
    model = zoo.build("resnet-18")
    graph = capture(model, SHAPE, "resnet-18")
    handles = [
        LocalHandle(DeviceSpec("cpu", threads=1, label=f"cpu{i}"), model, input_shape=SHAPE)
        for i in range(3)
    ]
    yield graph, {h.name: h for h in handles}
    for h in handles:
        h.close()


def _plan(graph, flc, weights=(1.0, 1.0, 2.0), devices=("cpu0", "cpu1", "cpu2")):
    heights = tuple(u.out_shape[2] for u in graph.units)
    n = len(heights)
    return plan_with_matrix(
        graph.name,
        "legion",
        devices,
        heights,
        weights,
        flc,
        np.ones((n, n)),
        ProfilingSpent(),
        runtime="peer",
    )


FLCS = {
    "layerwise": lambda n: tuple((k, k) for k in range(n)),
    "one-group": lambda n: ((0, n - 1),),
    "two-groups": lambda n: ((0, 2), (3, n - 1)),
}


@pytest.mark.parametrize("name", sorted(FLCS))
def test_peer_output_equals_one_device_and_the_star(net, name: str) -> None:
    graph, handles = net
    plan = _plan(graph, FLCS[name](len(graph.units)))
    x = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = graph.module(x)
    plain = run_peer_schedule(lower_peer(plan, graph), handles, graph, x, compress=False)
    packed = run_peer_schedule(lower_peer(plan, graph), handles, graph, x, compress=True)
    star = run_schedule(lower(plan, graph), handles, graph, x)
    assert relative_error(plain.output, reference) <= 1e-4
    assert torch.equal(plain.output, packed.output)  # lossless: bit for bit
    assert torch.equal(plain.output, star.output)  # same rows, same kernels, same bits


def test_coordinator_bytes_are_the_scatter_and_the_gather(net) -> None:
    """The links' own counters: the coordinator carries the input once and the last bands
    once; every other byte goes device to device."""
    graph, handles = net
    plan = _plan(graph, FLCS["layerwise"](len(graph.units)))
    schedule = lower_peer(plan, graph)
    run = run_peer_schedule(schedule, handles, graph, torch.randn(1, *SHAPE))
    scatter = sum(t.bytes for s in schedule.group_steps(0) for t in s.receive)
    last = len(schedule.groups) - 1
    gather = sum(t.bytes for s in schedule.group_steps(last) for t in s.send)
    assert run.bytes_through_coordinator == scatter + gather == coordinator_bytes(schedule)
    assert run.bytes_between_devices == device_bytes(schedule) > 0
    assert run.runtime == "peer" and run.compression_ratio == 1.0


def test_compression_shrinks_what_moves(net) -> None:
    graph, handles = net
    plan = _plan(graph, FLCS["layerwise"](len(graph.units)))
    run = run_peer_schedule(
        lower_peer(plan, graph), handles, graph, torch.randn(1, *SHAPE), compress=True
    )
    assert run.compression_ratio < 0.95
    assert run.bytes_between_devices < device_bytes(lower_peer(plan, graph))


def test_peer_schedule_round_trips_and_names_a_bad_step(net) -> None:
    graph, _ = net
    schedule = lower_peer(_plan(graph, FLCS["two-groups"](len(graph.units))), graph)
    assert Schedule.from_json(schedule.to_json()) == schedule
    assert Schedule.parse(str(schedule)) == schedule
    step = schedule.steps[-1]
    bad = step.receive[0].__class__(*[step.receive[0].source, step.device, 1, (0, 2), 1])
    broken = schedule.__class__(
        *[
            getattr(schedule, f)
            for f in ("network", "devices", "input_shape", "unit_shapes", "bytes_per_element")
        ],
        (
            *schedule.steps[:-1],
            step.__class__(step.group, step.device, step.run, (bad,), step.send),
        ),
        schedule.tail,
    )
    with pytest.raises(ManipleError, match=r"step \d+ \(group 1"):
        broken.validate()


def test_star_runtime_refuses_a_peer_schedule(net) -> None:
    graph, handles = net
    schedule = lower_peer(_plan(graph, FLCS["two-groups"](len(graph.units))), graph)
    with pytest.raises(ManipleError, match="not a star step"):
        run_schedule(schedule, handles, graph, torch.randn(1, *SHAPE))


def test_peer_runtime_refuses_a_star_schedule(net) -> None:
    graph, handles = net
    schedule = lower(_plan(graph, FLCS["two-groups"](len(graph.units))), graph)
    with pytest.raises(ManipleError, match="star runtime"):
        run_peer_schedule(schedule, handles, graph, torch.randn(1, *SHAPE))


@settings(max_examples=60, deadline=None)
@given(
    bounds=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    lo=st.integers(0, 200),
    span=st.integers(1, 60),
    device=st.integers(0, 5),
)
def test_peer_sources_cover_the_rows_exactly_once(bounds, lo, span, device) -> None:
    edges = np.cumsum([0, *bounds]).tolist()
    bands = [(edges[i], edges[i + 1]) for i in range(len(bounds))]
    lo = min(lo, edges[-1] - 1)
    need = (lo, min(edges[-1], lo + span))
    device = device % len(bands)
    own, others = peer_sources(bands, need, device)
    pieces = sorted([*(r for _, r in others), *([own] if own else [])])
    assert pieces[0][0] == need[0] and pieces[-1][1] == need[1]
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    for e, (a, b) in others:
        assert e != device and bands[e][0] <= a < b <= bands[e][1]


def test_predictor_exchange_bytes_are_the_schedules(net) -> None:
    """The peer predictor's bytes per boundary equal what the lowered schedule moves."""
    graph, _ = net
    n = len(graph.units)
    weights = (1.0, 1.0, 2.0)
    for cut in range(1, n):
        schedule = lower_peer(_plan(graph, ((0, cut - 1), (cut, n - 1)), weights), graph)
        down, up, _ = exchange_bytes(graph, weights, cut, n - 1)
        moved = schedule.bytes_by_link()
        for d, name in enumerate(schedule.devices):
            got = sum(b for (s, t), b in moved.items() if t == name and s != COORDINATOR)
            sent = sum(b for (s, t), b in moved.items() if s == name and t != COORDINATOR)
            assert got == down[d] and sent == up[d], (cut, name)
