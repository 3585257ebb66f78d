"""Run a spatial plan for real: Legion's coordinator star.

For each fused group the coordinator (this process) cuts every device's input band with
its halo, sends them all at once, the devices run the group at the same time, and the
coordinator gathers and stitches the output bands. The tail runs here on the coordinator.

Time is counted honestly on emulated boards: a group's time is the real time the
coordinator spent on it, with only the slowest board's own dilated time (its compute and
link sleeps) divided by the dilation. Coordinator work, Ray's per-call overhead and
stitching stay undivided.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from maniple.devices.handles import DeviceHandle
from maniple.devices.timing import CallTiming
from maniple.errors import ManipleError
from maniple.graph import LayerGraph, halo
from maniple.spatial.plan import SpatialPlan
from maniple.tiling import stitch


@dataclass(frozen=True)
class GroupRun:
    """One fused group as it ran: per-device timings and the group's counted time."""

    group: tuple[int, int]
    wall_ms: float
    elapsed_ms: float
    timings: tuple[CallTiming, ...]

    @property
    def overrun_ms(self) -> float:
        return max((t.overrun_ms for t in self.timings), default=0.0)

    @property
    def device_ms(self) -> float:
        """The slowest device's own time (board + link on an emulated board)."""
        return max((t.device_ms for t in self.timings), default=0.0)


@dataclass(frozen=True)
class SpatialRun:
    """A whole inference under a plan: output, latency and where the time went."""

    plan: SpatialPlan
    output: torch.Tensor
    latency_ms: float
    tail_ms: float
    groups: tuple[GroupRun, ...] = field(default_factory=tuple)

    @property
    def overrun_ms(self) -> float:
        """Real ms by which any board overran its dilated target (0 when the host kept up)."""
        return sum(g.overrun_ms for g in self.groups)

    @property
    def device_ms(self) -> float:
        """Sum over groups of the slowest device's own time: the boards' share of latency."""
        return sum(g.device_ms for g in self.groups)

    @property
    def coordinator_ms(self) -> float:
        """Everything else, real and undivided: coordinator work, calls, stitching, tail."""
        return self.latency_ms - self.device_ms


def _counted_ms(wall_ms: float, timings: list[CallTiming]) -> float:
    """Group time: real wall time, with the slowest device's own dilated part divided out."""
    if not timings:
        return wall_ms
    crit = max(timings, key=lambda t: t.wall_ms)
    return max(0.0, wall_ms - crit.wall_ms) + crit.device_ms


def run_spatial_plan(
    plan: SpatialPlan,
    handles: Mapping[str, DeviceHandle],
    graph: LayerGraph,
    x: torch.Tensor,
    *,
    run_tail: bool = True,
) -> SpatialRun:
    """Run `plan` on `handles` (by device name) for input `x`; see the module docstring."""
    plan.validate()
    missing = [d for d in plan.devices if d not in handles]
    if missing:
        raise ManipleError(
            f"the plan uses devices {missing} that are not open; open: {sorted(handles)}"
        )
    if len(plan.flc) and plan.flc[-1][1] != len(graph.units) - 1:
        raise ManipleError(
            f"the plan covers {plan.n_units} units but {graph.name!r} has {len(graph.units)}"
        )
    # Halo rows are planning, not inference: worked out before the clock starts.
    steps = [
        (
            (first, last),
            [
                (plan.devices[d], b, halo(graph, first, last, b).input_rows)
                for d, b in enumerate(bands)
                if b[1] > b[0]
            ],
        )
        for (first, last), bands in zip(plan.flc, plan.bands)
    ]
    groups: list[GroupRun] = []
    with torch.no_grad():
        for (first, last), active in steps:
            t0 = time.perf_counter()
            calls = []
            for name, band, (lo, hi) in active:
                x_band = x[:, :, lo:hi].contiguous()
                calls.append(
                    handles[name].submit_span(first, last, band, x_band, concurrent=len(active))
                )
            results = [c.result() for c in calls]
            x = stitch([y for y, _ in results])
            wall_ms = (time.perf_counter() - t0) * 1e3
            timings = [t for _, t in results]
            groups.append(
                GroupRun((first, last), wall_ms, _counted_ms(wall_ms, timings), tuple(timings))
            )
        t0 = time.perf_counter()
        y = graph.tail_module(x) if run_tail else x
        tail_ms = (time.perf_counter() - t0) * 1e3
    latency = sum(g.elapsed_ms for g in groups) + tail_ms
    return SpatialRun(plan, y, latency, tail_ms, tuple(groups))
