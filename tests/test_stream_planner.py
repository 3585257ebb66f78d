"""The stream planner: lanes of devices for a stream of frames, against its brute force."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maniple.errors import ManipleError, UnknownNameError
from maniple.spatial.costs import ProfilingSpent
from maniple.spatial.flc import one_group
from maniple.spatial.plan import SpatialPlan
from maniple.spatial.planners import plan_single, plan_with_matrix
from maniple.spatial.stream_plan import StreamLane, StreamPlan
from maniple.spatial.stream_planner import brute_force_stream, plan_stream

NET = "net"
HEIGHTS = (32, 16, 8)
Lanes = dict[frozenset[str], StreamLane]


@cache
def lane_plan(devices: tuple[str, ...], network: str = NET) -> SpatialPlan:
    """A real, validated plan on `devices` (plans are frozen, so one per device tuple)."""
    if len(devices) == 1:
        return plan_single(network, devices[0], HEIGHTS)
    n = len(HEIGHTS)
    return plan_with_matrix(
        network,
        "legion",
        devices,
        HEIGHTS,
        [1.0] * len(devices),
        one_group(n),
        np.ones((n, n)),
        ProfilingSpent(),
    )


def lane(devices: Sequence[str], period: float, latency: float) -> StreamLane:
    return StreamLane(tuple(devices), float(period), float(latency), lane_plan(tuple(devices)))


def keyed(*lanes: StreamLane) -> Lanes:
    return {frozenset(ln.devices): ln for ln in lanes}


def names(n: int) -> tuple[str, ...]:
    return tuple(f"dev-{i}" for i in range(n))


def subset(devices: tuple[str, ...], mask: int) -> tuple[str, ...]:
    return tuple(d for i, d in enumerate(devices) if mask >> i & 1)


def check_against_brute(
    devices: tuple[str, ...], lanes: Lanes, coordinator_ms: float, fps: float | None
) -> StreamPlan:
    """plan_stream reaches the reference's objective values (not necessarily its lanes)."""
    got = plan_stream(NET, devices, lanes, coordinator_ms, fps=fps)
    ref = brute_force_stream(NET, devices, lanes, coordinator_ms, fps=fps)
    assert got.validate() is got
    assert got.frame_ms == pytest.approx(ref.frame_ms, rel=1e-9)
    assert got.latency_ms == pytest.approx(ref.latency_ms, rel=1e-9)
    assert len(got.lanes) == len(ref.lanes)  # the "fewer lanes" tie-break, too
    assert (got.objective, got.target_fps, bool(got.note)) == (
        ref.objective,
        ref.target_fps,
        bool(ref.note),
    )
    used = [d for ln in got.lanes for d in ln.devices]
    assert len(used) == len(set(used))  # disjoint lanes
    assert sorted(used + list(got.left_out)) == sorted(devices)
    assert all(lanes[frozenset(ln.devices)] == ln for ln in got.lanes)
    return got


# -- against the brute force ------------------------------------------------------------------
def random_table(seed: int) -> tuple[tuple[str, ...], Lanes, float, float | None]:
    """1-6 devices, every single device and a random share of the larger subsets."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 7))
    devices = names(n)
    keep = rng.uniform(0.2, 1.0)
    whole = rng.uniform() < 0.5  # whole ms: ties on latency, so the tie-breaks matter
    lanes: Lanes = {}
    for mask in range(1, 1 << n):
        if mask & (mask - 1) == 0 or rng.uniform() < keep:
            period = float(rng.uniform(1.0, 20.0))
            latency = period * float(rng.uniform(1.0, 3.0))
            if whole:
                period, latency = float(round(period)), float(math.ceil(latency))
            ln = lane(subset(devices, mask), period, latency)
            lanes[frozenset(ln.devices)] = ln
    kind = int(rng.integers(3))
    coordinator_ms = [0.0, float(rng.uniform(0.0, 2.0)), float(rng.uniform(3.0, 30.0))][kind]
    fps = None
    if rng.uniform() < 0.6:  # around what the devices can do: reachable or not
        top = plan_stream(NET, devices, lanes, coordinator_ms).fps
        fps = top * float(rng.uniform(0.1, 1.3))
    return devices, lanes, coordinator_ms, fps


@pytest.mark.parametrize("seed", range(40))
def test_random_tables_match_brute_force(seed: int) -> None:
    check_against_brute(*random_table(seed))


@st.composite
def shapes(draw: Any) -> tuple[tuple[str, ...], Lanes, float, float | None]:
    """Few distinct periods and latencies, so that ties (and tie-breaks) are common."""
    n = draw(st.integers(1, 6))
    devices = names(n)
    masks = [m for m in range(1, 1 << n) if draw(st.booleans())]
    if not masks:
        masks = [draw(st.integers(1, (1 << n) - 1))]
    lanes: Lanes = {}
    for mask in masks:
        period = draw(st.sampled_from([1.0, 2.0, 3.0, 4.0, 6.0, 12.0]))
        latency = period + draw(st.sampled_from([0.0, 1.0, 2.5, 10.0]))
        ln = lane(subset(devices, mask), period, latency)
        lanes[frozenset(ln.devices)] = ln
    coordinator_ms = draw(st.sampled_from([0.0, 0.25, 1.0, 5.0]))
    fps = draw(st.one_of(st.none(), st.sampled_from([50.0, 250.0, 500.0, 1000.0, 4000.0])))
    return devices, lanes, coordinator_ms, fps


@settings(max_examples=60, deadline=None)
@given(shapes())
def test_shapes_match_brute_force(
    shape: tuple[tuple[str, ...], Lanes, float, float | None],
) -> None:
    check_against_brute(*shape)


def test_eight_devices_all_subsets_is_quick() -> None:
    devices = names(8)
    rng = np.random.default_rng(8)
    lanes: Lanes = {}
    for r in range(1, 9):
        for group in itertools.combinations(devices, r):
            period = float(rng.uniform(1.0, 10.0))
            lanes[frozenset(group)] = lane(group, period, period * float(rng.uniform(1.0, 3.0)))
    assert len(lanes) == 255
    start = time.perf_counter()
    for fps in (None, 200.0, 1e6):
        plan_stream(NET, devices, lanes, 0.5, fps=fps).validate()
        plan_stream(NET, devices, lanes, 0.0, fps=fps).validate()
    assert time.perf_counter() - start < 2.0 * 6


# -- the objectives on cases worked by hand ----------------------------------------------------
def test_coordinator_cap_picks_lowest_latency() -> None:
    devices = ("a", "b", "c")
    lanes = keyed(
        lane(["a"], 10, 10), lane(["b"], 10, 10), lane(["a", "b"], 4, 5), lane(["c"], 100, 200)
    )
    capped = plan_stream(NET, devices, lanes, 5.0)
    assert [ln.devices for ln in capped.lanes] == [("a", "b")]
    assert capped.left_out == ("c",)
    assert (capped.frame_ms, capped.latency_ms, capped.bottleneck) == (5.0, 5.0, "coordinator")
    free = plan_stream(NET, devices, lanes, 0.0)  # uncapped, c's extra frames count
    assert [ln.devices for ln in free.lanes] == [("a", "b"), ("c",)]
    assert free.bottleneck == "lanes"
    assert free.frame_ms == pytest.approx(1 / (1 / 4 + 1 / 100))


def test_ties_go_to_fewer_lanes() -> None:
    devices = ("a", "b", "c")
    lanes = keyed(lane(["a"], 1, 1), lane(["b"], 1, 1), lane(["c"], 3, 1))
    capped = plan_stream(NET, devices, lanes, 1.0)  # a or b alone reaches the cap
    assert len(capped.lanes) == 1 and capped.frame_ms == 1.0
    # fps: the lowest latency (all tie), then the lowest frame_ms, then the fewest lanes
    uncapped = plan_stream(NET, devices, lanes, 0.0, fps=900.0)
    assert len(uncapped.lanes) == 3
    assert uncapped.frame_ms == pytest.approx(1 / (2 + 1 / 3))
    capped_fps = plan_stream(NET, devices, lanes, 1.0, fps=900.0)
    assert len(capped_fps.lanes) == 1 and capped_fps.fps == 1000.0


def test_fps_picks_split_lanes_and_throughput_the_singles() -> None:
    devices = names(6)
    lanes = keyed(
        lane(devices[:3], 10, 12),
        lane(devices[3:], 10, 12),
        *(lane([d], 20, 40) for d in devices),
    )
    fast = plan_stream(NET, devices, lanes, 0.0)
    assert [ln.devices for ln in fast.lanes] == [(d,) for d in devices]
    assert fast.fps == pytest.approx(300.0)
    assert fast.latency_ms == 40.0
    low = plan_stream(NET, devices, lanes, 0.0, fps=150.0)
    assert [ln.devices for ln in low.lanes] == [devices[:3], devices[3:]]
    assert (low.objective, low.target_fps, low.note) == ("fps", 150.0, "")
    assert low.fps == pytest.approx(200.0)
    assert low.latency_ms == 12.0
    exact = plan_stream(NET, devices, lanes, 0.0, fps=200.0)  # met exactly, within slack
    assert exact.latency_ms == 12.0 and not exact.note


def test_unreachable_fps_gives_throughput_choice_with_note() -> None:
    devices = ("a", "b")
    lanes = keyed(lane(["a"], 10, 10), lane(["b"], 10, 15))
    plan = plan_stream(NET, devices, lanes, 0.0, fps=500.0)
    assert len(plan.lanes) == 2 and plan.fps == pytest.approx(200.0)
    assert (plan.objective, plan.target_fps) == ("fps", 500.0)
    assert "at most 200.00 frames/s" in plan.note and "--fps 500" in plan.note
    assert "lower --fps or add devices" in plan.note
    capped = plan_stream(NET, devices, lanes, 8.0, fps=500.0)
    assert "coordinator" in capped.note and capped.bottleneck == "coordinator"
    assert "note:" in str(plan)


def test_lane_order_and_left_out_follow_devices() -> None:
    devices = ("c", "a", "b", "d")
    lanes = keyed(lane(["b", "a"], 1, 1), lane(["c"], 1, 1), lane(["d"], 100, 1000))
    plan = plan_stream(NET, devices, lanes, 0.9)
    assert [ln.devices for ln in plan.lanes] == [("c",), ("b", "a")]
    assert plan.devices == ("c", "b", "a")
    assert plan.left_out == ("d",)


# -- the plan: round trips, text, validate ------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_round_trips(seed: int) -> None:
    plan = plan_stream(NET, *random_table(seed)[:3], fps=random_table(seed)[3])
    assert StreamPlan.from_json(plan.to_json()) == plan
    assert StreamPlan.from_dict(plan.to_dict()) == plan
    assert StreamPlan.from_dict(json.loads(plan.to_json())) == plan
    text = str(plan)
    for ln in plan.lanes:
        assert "+".join(ln.devices) in text
    assert "bottleneck" in text and "left out" in text


def good_plan() -> StreamPlan:
    lanes = keyed(lane(["a"], 2, 3), lane(["b", "c"], 2, 4), lane(["d"], 1000, 1000))
    plan = plan_stream(NET, ("a", "b", "c", "d"), lanes, 1.0)  # capped: d would add latency
    assert plan.left_out == ("d",) and len(plan.lanes) == 2
    return plan


def bad_lane(stream: StreamPlan, i: int, **changes: Any) -> StreamPlan:
    """`stream` with lane i's fields changed (`plan=` among them, hence the name)."""
    lanes = list(stream.lanes)
    lanes[i] = dataclasses.replace(lanes[i], **changes)
    return dataclasses.replace(stream, lanes=tuple(lanes))


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda p: dataclasses.replace(p, lanes=()), "needs at least one lane"),
        (
            lambda p: bad_lane(p, 1, devices=("b", "a"), plan=lane_plan(("b", "a"))),
            r"lane 1 \(b\+a\): device 'a' is already in lane 0",
        ),
        (lambda p: dataclasses.replace(p, left_out=("d", "a")), "'a' is both in lane 0"),
        (lambda p: bad_lane(p, 1, period_ms=math.nan), r"lane 1 \(b\+c\): period_ms is nan"),
        (lambda p: bad_lane(p, 0, period_ms=-1.0), r"lane 0 \(a\): period_ms is -1.0"),
        (lambda p: bad_lane(p, 0, latency_ms=0.0), "latency_ms is 0.0; must be a finite"),
        (lambda p: bad_lane(p, 0, latency_ms=math.inf), "latency_ms is inf"),
        (lambda p: bad_lane(p, 1, plan=lane_plan(("b", "d"))), r"lane 1 \(b\+c\): its plan runs"),
        (lambda p: bad_lane(p, 0, plan=lane_plan(("a",), "other")), "for network 'other'"),
        (lambda p: dataclasses.replace(p, coordinator_ms=-1.0), "coordinator_ms is -1.0"),
        (lambda p: dataclasses.replace(p, coordinator_ms=math.nan), "coordinator_ms is nan"),
        (lambda p: dataclasses.replace(p, objective="fps"), "objective 'fps' needs target_fps"),
        (
            lambda p: dataclasses.replace(p, objective="fps", target_fps=0.0),
            "needs target_fps > 0",
        ),
        (lambda p: dataclasses.replace(p, target_fps=30.0), "'throughput' takes no target_fps"),
    ],
)
def test_validate_errors(make: Any, phrase: str) -> None:
    with pytest.raises(ManipleError, match=phrase):
        make(good_plan()).validate()


def test_validate_unknown_objective_lists_valid() -> None:
    with pytest.raises(UnknownNameError, match="Valid choices: fps, throughput"):
        dataclasses.replace(good_plan(), objective="speed").validate()


@pytest.mark.parametrize(
    ("edit", "phrase"),
    [
        (lambda d: d.update(format="maniple.spatial_plan/1"), "field 'format' is"),
        (lambda d: d.update(version=2), "version 2 is not supported; this maniple reads version 1"),
        (lambda d: d.pop("lanes"), "missing field 'lanes'"),
        (lambda d: d.pop("coordinator_ms"), "missing field 'coordinator_ms'"),
        (lambda d: d["lanes"][0].pop("plan"), "lane 0: missing field 'plan'"),
        (lambda d: d.update(coordinator_ms="1"), "'coordinator_ms' must be a finite number"),
        (lambda d: d.update(left_out=["a"]), "both in lane 0"),
    ],
)
def test_from_dict_errors(edit: Any, phrase: str) -> None:
    doc = json.loads(good_plan().to_json())
    edit(doc)
    with pytest.raises(ManipleError, match=phrase):
        StreamPlan.from_dict(doc)
    with pytest.raises(ManipleError, match=phrase):
        StreamPlan.from_json(json.dumps(doc))


def test_from_json_refuses_bad_text() -> None:
    with pytest.raises(ManipleError, match="not valid JSON"):
        StreamPlan.from_json("{")
    with pytest.raises(ManipleError, match="expected a JSON object"):
        StreamPlan.from_json("[]")


# -- plan_stream's input errors ------------------------------------------------------------------
ONE = keyed(lane(["a"], 1, 1), lane(["b"], 2, 2))


@pytest.mark.parametrize(
    ("args", "kwargs", "phrase"),
    [
        ((NET, (), ONE, 0.0), {}, "needs at least one device"),
        ((NET, ("a", "b", "a"), ONE, 0.0), {}, r"\['a'\] named twice"),
        ((NET, ("a",), ONE, 0.0), {}, "device 'b' is not one of the devices given; valid: a"),
        (
            (NET, ("a", "b"), {frozenset({"b"}): lane(["a"], 1, 1)}, 0.0),
            {},
            r"its key must be frozenset\(lane.devices\)",
        ),
        ((NET, ("a", "b"), {}, 0.0), {}, "no candidate lanes"),
        ((NET, ("a", "b"), ONE, -1.0), {}, "coordinator_ms is -1.0; must be a finite"),
        ((NET, ("a", "b"), ONE, math.inf), {}, "coordinator_ms is inf"),
        ((NET, ("a", "b"), ONE, 0.0), {"fps": 0.0}, "fps is 0.0; must be a finite"),
        ((NET, ("a", "b"), ONE, 0.0), {"fps": -5.0}, "fps is -5.0"),
        ((NET, ("a", "b"), ONE, 0.0), {"fps": math.nan}, "fps is nan"),
        ((NET, ("a", "b"), ONE, 0.0), {"fps": math.inf}, "fps is inf"),
        (
            (NET, ("a", "b"), keyed(lane(["a"], math.nan, 1)), 0.0),
            {},
            r"candidate lane \['a'\]: period_ms is nan",
        ),
    ],
)
def test_plan_stream_errors(args: tuple[Any, ...], kwargs: dict[str, Any], phrase: str) -> None:
    with pytest.raises(ManipleError, match=phrase):
        plan_stream(*args, **kwargs)
    with pytest.raises(ManipleError, match=phrase):
        brute_force_stream(*args, **kwargs)
