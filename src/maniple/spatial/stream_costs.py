"""Candidate lanes for a stream: every set of devices, with its predicted period and latency.

The stream planner (`stream_planner.plan_stream`) picks disjoint lanes from these; this
module predicts what each lane would do, from the tables one profile already holds, so
that neither a stream nor its re-planning measures anything new:

- a lane of one device runs the whole spatial part on it: its period is the device's
  whole-part time (the speed probe's) times its slowness, plus its link's time for the
  frame in and the map out, plus the coordinator's dispatch of one group;
- a lane of several devices splits each frame under Legion's plan for just those devices
  (or the peer runtime's), whose predicted latency is its period. Its cost tables are the
  profiled ones cut down to those devices with the bands re-weighted by speed: a device's
  send, compute and receive times scale with its rows (the new weight over the profiled
  one) and its compute also with its slowness; the halo ratios are kept.

`slowness` is how much slower each device now runs than when it was profiled (1: as
profiled); re-balancing raises it from measured frames, and nothing is profiled again.
A lane's latency adds the coordinator's tail.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from maniple.errors import ManipleError, UnknownNameError
from maniple.graph import LayerGraph
from maniple.spatial.costs import LegionCosts
from maniple.spatial.peer_costs import PeerLinks, plan_peer
from maniple.spatial.planners import plan_single, plan_spatial
from maniple.spatial.stream_plan import StreamLane
from maniple.tiling.bands import speed_weights

LANE_RUNTIMES = ("auto", "star", "peer")


def subset_costs(
    costs: LegionCosts,
    devices: Sequence[str],
    times_ms: Mapping[str, float],
    slowness: Mapping[str, float],
) -> LegionCosts:
    """`costs` cut down to `devices`, bands re-weighted by speed (see module docstring)."""
    index = {d: i for i, d in enumerate(costs.devices)}
    missing = [d for d in devices if d not in index]
    if missing:
        raise UnknownNameError("profiled device", missing[0], costs.devices)
    idx = [index[d] for d in devices]
    slow = np.array([slowness.get(d, 1.0) for d in devices])
    weights = speed_weights([times_ms[d] * s for d, s in zip(devices, slow)])
    rows = np.array(weights) / np.array([costs.weights[i] for i in idx])
    return LegionCosts(
        devices=tuple(devices),
        n_units=costs.n_units,
        S=costs.S[idx] * rows[:, None],
        E=costs.E[idx] * (rows * slow)[:, None],
        R=costs.R[idx] * rows[:, None],
        A=costs.A[idx],
        A_in=costs.A_in[idx],
        weights=weights,
        spent=costs.spent,
        dispatch_ms=costs.dispatch_ms,
        sync_ms=costs.sync_ms,
    )


def subset_links(links: PeerLinks, all_devices: Sequence[str], devices: Sequence[str]) -> PeerLinks:
    """The peer predictor's links for `devices` only."""
    idx = [list(all_devices).index(d) for d in devices]
    return PeerLinks(
        tuple(links.mbps[i] for i in idx),
        tuple(links.latency_ms[i] for i in idx),
        links.step_ms,
        links.ratios,
        links.scatter_ms,
        links.gather_ms,
    )


def single_lane(
    network: str,
    device: str,
    heights: Sequence[int],
    whole_ms: float,
    io_ms: float,
    dispatch_ms: float,
    tail_ms: float,
    slowness: float = 1.0,
) -> StreamLane:
    """One device running whole frames (see module docstring)."""
    period = whole_ms * slowness + io_ms + dispatch_ms
    plan = plan_single(network, device, heights, predicted_ms=period)
    return StreamLane((device,), period, period + tail_ms, plan)


def lane_candidates(
    network: str,
    graph: LayerGraph,
    costs: LegionCosts | None,
    times_ms: Mapping[str, float],
    io_ms: Mapping[str, float],
    tail_ms: float,
    *,
    devices: Sequence[str] | None = None,
    slowness: Mapping[str, float] | None = None,
    runtime: str = "star",
    links: PeerLinks | None = None,
    max_split: int | None = None,
) -> dict[frozenset[str], StreamLane]:
    """Every lane the planner may pick among `devices` (default: every device with a
    time): each device alone, and each set of 2..`max_split` profiled devices split
    under `runtime` (`auto`: the lane's faster prediction; peer needs `links`). Without
    `costs` only single-device lanes are offered."""
    if runtime not in LANE_RUNTIMES:
        raise UnknownNameError("runtime", runtime, LANE_RUNTIMES)
    if runtime in ("peer", "auto") and costs is not None and links is None:
        raise ManipleError("peer lanes need the peer predictor's links (PeerLinks)")
    slowness = dict(slowness or {})
    devices = list(devices if devices is not None else times_ms)
    heights = tuple(u.out_shape[2] for u in graph.units)
    dispatch = costs.dispatch_ms if costs is not None else 0.0
    out: dict[frozenset[str], StreamLane] = {}
    for d in devices:
        if not (math.isfinite(times_ms[d]) and times_ms[d] > 0):
            raise ManipleError(f"device {d!r} has time {times_ms[d]!r} ms; it must be > 0")
        lane = single_lane(
            network, d, heights, times_ms[d], io_ms.get(d, 0.0), dispatch, tail_ms,
            slowness.get(d, 1.0),
        )  # fmt: skip
        out[frozenset(lane.devices)] = lane
    if costs is None:
        return out
    profiled = [d for d in devices if d in costs.devices]
    most = len(profiled) if max_split is None else min(max_split, len(profiled))
    for size in range(2, most + 1):
        for subset in itertools.combinations(profiled, size):
            lane = _split_lane(
                network, graph, costs, subset, times_ms, slowness, runtime, links, tail_ms
            )
            if lane is not None:
                out[frozenset(subset)] = lane
    return out


def _split_lane(
    network: str,
    graph: LayerGraph,
    costs: LegionCosts,
    subset: tuple[str, ...],
    times_ms: Mapping[str, float],
    slowness: Mapping[str, float],
    runtime: str,
    links: PeerLinks | None,
    tail_ms: float,
) -> StreamLane | None:
    """The lane of `subset` splitting each frame, or None where a device would get no
    rows of the last map (more devices than rows)."""
    sub = subset_costs(costs, subset, times_ms, slowness)
    heights = tuple(u.out_shape[2] for u in graph.units)
    plans = []
    if runtime in ("star", "auto"):
        plans.append(plan_spatial(sub, "legion", heights, network=network))
    if runtime in ("peer", "auto"):
        assert links is not None
        peer_links = subset_links(links, costs.devices, subset)
        plans.append(plan_peer(sub, graph, peer_links, "legion", network))
    plan = min(plans, key=lambda p: p.predicted_ms or math.inf)
    if any(b[1] <= b[0] for b in plan.bands[-1]):
        return None  # a device idle at the last group: a smaller lane does the same
    period = float(plan.predicted_ms or 0.0)
    if not period > 0:
        return None
    return StreamLane(tuple(subset), period, period + tail_ms, plan)
