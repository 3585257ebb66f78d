"""What the peer runtime needs measured before it plans, and one entry to run any plan.

The peer predictor (maniple.spatial.peer_costs) takes Legion's single-unit tables and adds
what they lack: each board's link (from its spec), how well each unit's output compresses
on the wire (encoded on the coordinator from the reference input's own activations), and
the real per-step overhead of the peer runtime on these devices (one fast-forward run of
the layer-wise peer plan: halo-sized transfers only, no extra profiling sweep).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import fx

from maniple.devices.handles import DeviceHandle
from maniple.devices.wire_codec import encode_rows
from maniple.errors import UnknownNameError
from maniple.graph import LayerGraph
from maniple.spatial.costs import ProfilingSpent
from maniple.spatial.measured import fast_forward
from maniple.spatial.peer_costs import PeerLinks
from maniple.spatial.plan import SpatialPlan
from maniple.spatial.planners import layerwise, plan_with_matrix
from maniple.spatial.runtimes.peer import run_peer_schedule
from maniple.spatial.runtimes.result import SpatialRun
from maniple.spatial.runtimes.star import run_spatial_plan
from maniple.spatial.schedule_peer import lower_peer

COMPRESS_MODES = ("auto", "on", "off")
RUNTIME_CHOICES = ("auto", "star", "peer")
AUTO_COMPRESS_BELOW_MBPS = 1000.0
"""`--compress auto` encodes when some board's link is slower than this and the maps
shrink by at least AUTO_COMPRESS_MIN_SAVING: on such links the bytes saved cost far more
link time than the board spends encoding them (about 1 ms per MB on this host)."""
AUTO_COMPRESS_MIN_SAVING = 0.1


def unit_ratios(graph: LayerGraph, x: torch.Tensor) -> tuple[float, ...]:
    """Wire bytes over raw bytes of each unit's output for input `x`, losslessly encoded."""
    outputs: dict[str, torch.Tensor] = {}
    wanted = {u.output for u in graph.units}

    class _Keep(fx.Interpreter):
        def run_node(self, n: fx.Node) -> object:
            out = super().run_node(n)
            if n.name in wanted and isinstance(out, torch.Tensor):
                outputs[n.name] = out
            return out

    with torch.no_grad():
        _Keep(graph.spatial_module).run(x)
    ratios = []
    for u in graph.units:
        t = outputs.get(u.output)
        ratios.append(1.0 if t is None else min(1.0, encode_rows(t.numpy()).ratio))
    return tuple(ratios)


def device_links(handles: Sequence[DeviceHandle]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(Mbit/s, latency ms) of each device's own link; a device of this host has none."""
    mbps, latency = [], []
    for h in handles:
        board = h.spec.board
        mbps.append(board.link.mbps if board is not None else math.inf)
        latency.append(board.link.latency_ms if board is not None else 0.0)
    return tuple(mbps), tuple(latency)


def resolve_compress(mode: str, mbps: Sequence[float], ratios: Sequence[float]) -> bool:
    """Whether pieces are encoded: `on`, `off`, or `auto` (see AUTO_COMPRESS_BELOW_MBPS)."""
    if mode not in COMPRESS_MODES:
        raise UnknownNameError("--compress", mode, COMPRESS_MODES)
    if mode != "auto":
        return mode == "on"
    saving = 1.0 - statistics.fmean(ratios) if ratios else 0.0
    return min(mbps, default=math.inf) < AUTO_COMPRESS_BELOW_MBPS and (
        saving >= AUTO_COMPRESS_MIN_SAVING
    )


def run_plan(
    plan: SpatialPlan,
    handles: Mapping[str, DeviceHandle],
    graph: LayerGraph,
    x: torch.Tensor,
    *,
    compress: bool = False,
    run_tail: bool = True,
) -> SpatialRun:
    """Run `plan` on the runtime it was planned for (`plan.runtime`)."""
    if plan.runtime == "peer" and len(plan.devices) > 1:
        schedule = lower_peer(plan, graph, bytes_per_element=x.element_size())
        run = run_peer_schedule(schedule, handles, graph, x, compress=compress, run_tail=run_tail)
        return dataclasses.replace(run, plan=plan)
    return run_spatial_plan(plan, handles, graph, x, run_tail=run_tail)


def measure_overheads(
    handles: Sequence[DeviceHandle],
    graph: LayerGraph,
    x: torch.Tensor,
    weights: Sequence[float],
    compress: bool,
) -> tuple[float, float, float]:
    """(step, scatter, gather) real overheads of the peer runtime on these devices, ms: the
    median wait between a step's last input and its start (first-group steps apart: they
    wait for the coordinator's scatter) and the time to gather and stitch, over one
    fast-forward run of the layer-wise peer plan (every boundary exchanges halo rows)."""
    if len(handles) < 2:
        return 0.0, 0.0, 0.0
    n = len(graph.units)
    heights = tuple(u.out_shape[2] for u in graph.units)
    flc = layerwise(n)
    T = np.zeros((n, n))  # the plan's predicted costs are not used: it is only run
    plan = plan_with_matrix(
        graph.name,
        "layerwise",
        tuple(h.name for h in handles),
        heights,
        weights,
        flc,
        T,
        ProfilingSpent(),
        runtime="peer",
    )
    by_name = {h.name: h for h in handles}
    with fast_forward(handles):
        for _ in range(2):  # the first run builds every band program: keep the second
            run = run_plan(plan, by_name, graph, x, compress=compress)
    first = sum(1 for b in plan.bands[0] if b[1] > b[0])
    gaps = run.gaps_ms

    def median(values: Sequence[float]) -> float:
        return statistics.median(values) if values else 0.0  # one group: no later steps

    return median(gaps[first:]), median(gaps[:first]), run.gather_ms


def peer_links(
    handles: Sequence[DeviceHandle],
    graph: LayerGraph,
    x: torch.Tensor,
    weights: Sequence[float],
    compress_mode: str,
) -> tuple[PeerLinks, bool]:
    """The peer predictor's links and overheads for these devices, and whether pieces are
    encoded (`compress_mode` resolved)."""
    ratios = unit_ratios(graph, x)
    mbps, latency = device_links(handles)
    compress = resolve_compress(compress_mode, mbps, ratios)
    step, scatter, gather = measure_overheads(handles, graph, x, weights, compress)
    return PeerLinks(mbps, latency, step, ratios if compress else (), scatter, gather), compress
