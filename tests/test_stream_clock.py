"""The stream's counted clock and its candidate lanes: pure, no devices.

The clock is checked on hand-worked timelines (lanes at once, tails one at a time on the
coordinator, in-order delivery, arrivals at an fps, a failed pass holding its devices);
the lanes on Legion tables cut down to subsets of devices and slowed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from maniple.devices.tiny import TINY_INPUT_SHAPE, tiny_cnn
from maniple.errors import ManipleError
from maniple.graph import capture
from maniple.spatial.costs import LegionCosts
from maniple.spatial.runtimes.stream_clock import Spread, StreamClock, throughput
from maniple.spatial.stream_costs import lane_candidates, single_lane, subset_costs
from maniple.spatial.stream_planner import plan_stream


def test_lanes_overlap_and_tails_queue_on_the_coordinator() -> None:
    c = StreamClock()
    s0 = c.start(0, ["a"])
    s1 = c.start(1, ["b"])
    assert s0 == s1 == 0.0
    e0, e1 = c.end(["a"], s0, 100.0), c.end(["b"], s1, 100.0)
    t0 = c.tail(e0, 10.0)
    t1 = c.tail(e1, 10.0)  # waits for the first tail
    assert (t0, t1) == (110.0, 120.0)
    assert c.deliver(0, t0) == 110.0 and c.deliver(1, t1) == 120.0
    assert c.start(2, ["a"]) == 100.0  # the board moved on while the tail ran
    assert c.latency(0) == 110.0


def test_delivery_is_in_order_and_once() -> None:
    c = StreamClock()
    c.deliver(0, 50.0)
    assert c.deliver(1, 20.0) == 50.0  # ready early, leaves after frame 0
    with pytest.raises(ManipleError, match="twice"):
        c.deliver(1, 60.0)
    with pytest.raises(ManipleError, match="before frame 2"):
        c.deliver(3, 60.0)


def test_frames_arrive_at_the_fps_and_wait_for_a_free_lane() -> None:
    c = StreamClock(fps=10.0)
    assert c.arrival(3) == pytest.approx(300.0)
    s = c.start(3, ["a"])
    assert s == pytest.approx(300.0)
    c.end(["a"], s, 500.0)
    assert c.start(4, ["a"]) == pytest.approx(800.0)  # arrived at 400, lane busy


def test_a_failed_pass_holds_its_devices_and_the_frame_keeps_its_arrival() -> None:
    c = StreamClock()
    s = c.start(0, ["a", "b"])
    c.end(["a", "b"], s, 40.0)  # failed after 40 ms
    again = c.start(0, ["b"])
    assert again == 40.0 and c.arrival(0) == 0.0


def test_bad_fps_and_durations_are_refused() -> None:
    with pytest.raises(ManipleError, match="--fps"):
        StreamClock(fps=0.0)
    with pytest.raises(ManipleError, match="finite"):
        StreamClock().end(["a"], 0.0, math.nan)


def test_spread_and_throughput() -> None:
    s = Spread.of([1.0, 2.0, 3.0, 4.0])
    assert (s.n, s.p50, s.min, s.max) == (4, 2.5, 1.0, 4.0)
    assert Spread.of([]).to_dict()["p50_ms"] is None
    assert throughput([100.0, 200.0, 300.0, 400.0]) == pytest.approx(10.0)
    assert throughput([100.0, 200.0, 300.0, 400.0], since_ms=200.0) == pytest.approx(10.0)
    assert throughput([]) == 0.0


def _costs(devices: tuple[str, ...], n: int = 3) -> LegionCosts:
    rng = np.random.default_rng(0)
    d = len(devices)
    upper = np.triu(np.ones((n, n)))
    A = np.broadcast_to(upper, (d, n, n)).copy()
    return LegionCosts(
        devices=devices,
        n_units=n,
        S=rng.uniform(1, 2, (d, n)),
        E=rng.uniform(5, 10, (d, n)),
        R=rng.uniform(1, 2, (d, n)),
        A=A,
        A_in=A.copy(),
        weights=(1 / d,) * d,
        dispatch_ms=1.0,
    )


def test_subset_costs_reweight_rows_and_slow_a_device() -> None:
    costs = _costs(("a", "b", "c"))
    times = {"a": 10.0, "b": 10.0, "c": 20.0}
    sub = subset_costs(costs, ["a", "c"], times, {"c": 1.0})
    assert sub.devices == ("a", "c")
    assert sub.weights == pytest.approx((2 / 3, 1 / 3))
    assert sub.E[0] == pytest.approx(costs.E[0] * (2 / 3) / (1 / 3))
    slowed = subset_costs(costs, ["a", "c"], times, {"a": 2.0})
    assert slowed.weights == pytest.approx((0.5, 0.5))
    assert slowed.E[0] == pytest.approx(costs.E[0] * 1.5 * 2.0)
    with pytest.raises(ManipleError, match="profiled device"):
        subset_costs(costs, ["a", "z"], times, {})


def test_lane_candidates_offer_each_device_and_each_split() -> None:
    graph = capture(tiny_cnn(), TINY_INPUT_SHAPE, "tiny")
    names = ("a", "b", "c")
    n = len(graph.units)
    costs = _costs(names, n)
    times = {d: 30.0 for d in names}
    lanes = lane_candidates("tiny", graph, costs, times, {"a": 2.0}, 1.0, runtime="star")
    assert set(map(len, lanes)) <= {1, 2, 3}
    assert all(frozenset([d]) in lanes for d in names)
    assert lanes[frozenset(["a"])].period_ms == pytest.approx(30.0 + 2.0 + 1.0)
    assert lanes[frozenset(["a"])].latency_ms == pytest.approx(34.0)
    plan = plan_stream("tiny", list(names), lanes, 1.0)
    assert plan.fps > 0 and set(plan.devices) <= set(names)
    only_singles = lane_candidates("tiny", graph, None, times, {}, 1.0)
    assert set(only_singles) == {frozenset([d]) for d in names}


def test_a_slow_single_lane_has_a_longer_period() -> None:
    heights = (8, 4)
    fast = single_lane("n", "a", heights, 100.0, 10.0, 1.0, 5.0)
    slow = single_lane("n", "a", heights, 100.0, 10.0, 1.0, 5.0, slowness=2.0)
    assert (fast.period_ms, slow.period_ms) == (111.0, 211.0)
    assert slow.plan.devices == ("a",)
