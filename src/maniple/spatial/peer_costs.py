"""The cost predictor and planner for the peer runtime, from Legion's single-unit profile.

Under the peer runtime (maniple.spatial.schedule_peer) a group no longer pays Legion's S
and R, the coordinator's send of every band and its receive back; it pays an exchange:
each device waits for the rows it lacks from the devices that hold them. Those rows and
bytes follow from the halo math alone, and their time from the links, so the predictor
keeps Legion's measured E and alpha tables and replaces S and R per group by

    X[d, i, j] = latency_d + max(down_d * r / bw_d, max_e up_e * r / bw_e)   (i > 0)

with down_d the bytes device d receives, up_e the bytes sender e sends to all its peers,
r the lossless compression ratio of unit i-1's output on the wire and bw each board's
own link. Group 0 keeps Legion's S (the coordinator's scatter) and the last group its R
(the gather). Each step adds `step_ms`, the real per-step overhead (Ray's dispatch and
object transfer on this host) measured on one peer run; first-group steps add the
scatter's overhead instead, and the last group the gather's. The planners are Legion's: the
dynamic programme over the FLC (`best_flc`), the Wild Card's merge and FSS, on this matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from maniple.errors import ManipleError
from maniple.graph import LayerGraph
from maniple.spatial.bands import band_bytes, peer_sources, split_output, step_rows, sync_units
from maniple.spatial.costs import LegionCosts
from maniple.spatial.flc import best_flc, layerwise, one_group, wildcard_candidate
from maniple.spatial.plan import SpatialPlan
from maniple.spatial.planners import plan_with_matrix


@dataclass(frozen=True)
class PeerLinks:
    """What the peer predictor needs beyond Legion's tables.

    mbps, latency_ms: each device's own link (math.inf / 0 for a device of this host).
    step_ms: the real overhead of one step (dispatch, object transfer), undivided.
    ratios: wire bytes over raw bytes of each unit's output under compression (1.0 off).
    scatter_ms: the real overhead of a first-group step (the coordinator cuts and ships
        the input and submits every step), in place of step_ms.
    gather_ms: the real time from the last step's end to the stitched output.
    """

    mbps: tuple[float, ...]
    latency_ms: tuple[float, ...]
    step_ms: float = 0.0
    ratios: tuple[float, ...] = ()
    scatter_ms: float = 0.0
    gather_ms: float = 0.0

    def __post_init__(self) -> None:
        if len(self.mbps) != len(self.latency_ms):
            raise ManipleError(
                f"PeerLinks: {len(self.mbps)} link speeds for {len(self.latency_ms)} latencies"
            )
        for v in (
            *self.mbps,
            *self.latency_ms,
            self.step_ms,
            *self.ratios,
            self.scatter_ms,
            self.gather_ms,
        ):
            if not (v >= 0) or math.isnan(v):
                raise ManipleError(f"PeerLinks: {v!r} must be a number >= 0")

    def ratio(self, unit: int) -> float:
        return self.ratios[unit] if 0 <= unit < len(self.ratios) else 1.0


def exchange_bytes(
    graph: LayerGraph, weights: Sequence[float], first: int, last: int
) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """(down[d], up[e], senders[d]) of group first..last (first >= 1): bytes each device
    receives and each sends, and who sends to each device, with bands split by `weights`."""
    if first < 1:
        raise ManipleError(f"group {first}..{last}: the first group has no exchange")
    n = len(weights)
    prev = split_output(graph.units[first - 1].out_shape[2], weights, f"unit {first - 1}")
    bands = split_output(graph.units[last].out_shape[2], weights, f"units {first}..{last}")
    shape = tuple(graph.units[first - 1].out_shape[1:])
    down, up = np.zeros(n), np.zeros(n)
    senders: list[list[int]] = [[] for _ in range(n)]
    for d, band in enumerate(bands):
        if band[1] <= band[0]:
            continue
        _, others = peer_sources(prev, step_rows(graph, first, last, band), d)
        for e, rows in others:
            nbytes = band_bytes(shape, rows, 4)  # type: ignore[arg-type]
            down[d] += nbytes
            up[e] += nbytes
            senders[d].append(e)
    return down, up, senders


def _wire_ms(nbytes: np.ndarray, mbps: np.ndarray) -> np.ndarray:
    """Ms that `nbytes` occupy each link (0 on a device of this host: mbps inf)."""
    return np.where(np.isinf(mbps), 0.0, nbytes * 8.0 / (np.where(np.isinf(mbps), 1.0, mbps) * 1e3))


def predict_peer_all(costs: LegionCosts, graph: LayerGraph, links: PeerLinks) -> np.ndarray:
    """The peer runtime's cost matrix T (n x n, ms; +inf below the diagonal)."""
    n, nd = costs.n_units, len(costs.devices)
    if len(links.mbps) != nd or len(graph.units) != n:
        raise ManipleError(
            f"peer costs: {len(links.mbps)} links and {len(graph.units)} units, but the costs "
            f"have {nd} devices and {n} units"
        )
    mbps = np.array(links.mbps, dtype=float)
    lat = np.array(links.latency_ms, dtype=float)
    T = np.full((n, n), np.inf)
    syncs = _unit_syncs(graph)
    for j in range(n):
        bands = split_output(graph.units[j].out_shape[2], costs.weights, f"unit {j}")
        active = np.array([b[1] > b[0] for b in bands])
        for i in range(j + 1):
            run = (costs.E[:, i : j + 1] * costs.A[:, i : j + 1, j]).sum(axis=1)
            if i == 0:
                move = costs.S[:, 0] * costs.A_in[:, 0, j]
            else:
                down, up, senders = exchange_bytes(graph, costs.weights, i, j)
                r = links.ratio(i - 1)
                down_ms, up_ms = _wire_ms(down * r, mbps), _wire_ms(up * r, mbps)
                move = np.array(
                    [
                        (lat[d] + max(down_ms[d], max(up_ms[e] for e in senders[d])))
                        if senders[d]
                        else 0.0
                        for d in range(nd)
                    ]
                )
            gather = costs.R[:, j] if j == n - 1 else 0.0
            overhead = links.scatter_ms if i == 0 else links.step_ms
            sync = _sync_ms(syncs, i, j, int(active.sum()), links, mbps, lat)
            per_device = np.where(active, move + run + gather + overhead + sync, 0.0)
            T[i, j] = float(per_device.max()) + (links.gather_ms if j == n - 1 else 0.0)
    return T


def _unit_syncs(graph: LayerGraph) -> list[tuple[int, int]]:
    """(count, bytes of the largest partial) of the sync points in each unit."""
    out = [(0, 0)] * len(graph.units)
    for unit, _, nbytes in sync_units(graph):
        count, size = out[unit]
        out[unit] = (count + 1, max(size, nbytes))
    return out


def _sync_ms(
    syncs: list[tuple[int, int]],
    i: int,
    j: int,
    active: int,
    links: PeerLinks,
    mbps: np.ndarray,
    lat: np.ndarray,
) -> np.ndarray:
    """Per device, the exchanges of group i..j's sync points: each one more step (its
    overhead), one latency and every peer's partial on the wire (none for a lone device)."""
    count = sum(c for c, _ in syncs[i : j + 1])
    if count == 0 or active < 2:
        return np.zeros(len(mbps))
    size = max(b for _, b in syncs[i : j + 1])
    return count * (links.step_ms + lat + _wire_ms(np.full(len(mbps), size * (active - 1)), mbps))


def plan_peer(
    costs: LegionCosts,
    graph: LayerGraph,
    links: PeerLinks,
    search: str,
    network: str | None = None,
) -> SpatialPlan:
    """A peer-runtime plan: `legion` (the dynamic programme on the peer matrix),
    `layerwise`, `one-group`, or `legion-wildcard` (Legion's FLC with the Wild Card's merge
    when that is predicted no slower; the session also races the two for real)."""
    T = predict_peer_all(costs, graph, links)
    n = costs.n_units
    if search in ("legion", "legion-wildcard"):
        flc, _ = best_flc(T)
    elif search == "layerwise":
        flc = layerwise(n)
    elif search == "one-group":
        flc = one_group(n)
    else:
        raise ManipleError(
            f"search {search!r} has no peer prediction; use legion, legion-wildcard, "
            "layerwise or one-group (fss measures, single runs one device)"
        )
    heights = tuple(u.out_shape[2] for u in graph.units)
    name = network or graph.name
    return plan_with_matrix(
        name, search, costs.devices, heights, costs.weights, flc, T, costs.spent, runtime="peer"
    )


def peer_wildcard(
    costs: LegionCosts, graph: LayerGraph, links: PeerLinks, network: str | None = None
) -> tuple[SpatialPlan, SpatialPlan | None]:
    """The Wild Card's two candidates over the peer matrix (base FLC, merged FLC or None)."""
    T = predict_peer_all(costs, graph, links)
    base = plan_peer(costs, graph, links, "legion-wildcard", network)
    merged = wildcard_candidate(base.flc, T)
    if merged is None:
        return base, None
    heights = tuple(u.out_shape[2] for u in graph.units)
    return base, plan_with_matrix(
        base.network,
        "legion-wildcard",
        costs.devices,
        heights,
        costs.weights,
        merged,
        T,
        costs.spent,
        runtime="peer",
    )
