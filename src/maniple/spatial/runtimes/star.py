"""Run a spatial schedule for real: Legion's coordinator star.

A plan is lowered into a `Schedule` first (`maniple.spatial.schedule.lower`), which names
every step's rows; this module only executes it. For each fused group the coordinator
(this process) cuts the input rows each step receives, sends them all at once, the devices
run the group at the same time, and the coordinator gathers and stitches the output bands
in step order. The tail runs here on the coordinator.

Time is counted honestly on emulated boards: a group's time is the real time the
coordinator spent on it, with only the slowest board's own dilated time (its compute and
link sleeps) divided by the dilation. Coordinator work, Ray's per-call overhead and
stitching stay undivided. On the testbed the bands really cross shaped links outside the
boards' calls; the least time they spent on the wire is divided out too (`shaped_wire`).

At a sync point inside a group (squeeze-and-excitation's pool) the devices swap their
partial reductions among themselves mid-call (`maniple.devices.sync_exchange`); where
they cannot (devices of two transports) they answer with their partials, and the
coordinator combines them and sends the result back, one more round per sync point,
counted the same way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import torch

from maniple.devices.handles import DeviceHandle
from maniple.devices.step import make_partial, open_partial
from maniple.devices.sync_exchange import prepare_swap
from maniple.devices.timing import CallTiming
from maniple.errors import ManipleError
from maniple.graph import LayerGraph
from maniple.spatial.plan import SpatialPlan
from maniple.spatial.runtimes.result import GroupRun, SpatialRun, check_runnable
from maniple.spatial.runtimes.shaped_wire import Wire, star_wire
from maniple.spatial.runtimes.shaped_wire import counted as wire_counted
from maniple.spatial.schedule import COORDINATOR, Schedule, lower
from maniple.tiling import stitch
from maniple.tiling.sync import combine


def _counted_ms(
    wall_ms: float, timings: list[CallTiming], wire: list[Wire | None] | None = None
) -> float:
    """Group time: real wall time, with the slowest device's own dilated part divided out.
    On the testbed (`wire`, per timing: each device's link and its bands' least wire time)
    the slowest is the device whose bands and call take longest together, and its bands'
    wire time is divided out too."""
    if not timings:
        return wall_ms
    on_wire = [w[1] if w else 0.0 for w in wire] if wire else [0.0] * len(timings)
    i = max(range(len(timings)), key=lambda k: timings[k].wall_ms + on_wire[k])
    crit = timings[i]
    outside = wire_counted(
        max(0.0, wall_ms - crit.wall_ms), wire[i] if wire else None, crit.fast_forward
    )
    return outside + crit.device_ms


def run_spatial_plan(
    plan: SpatialPlan,
    handles: Mapping[str, DeviceHandle],
    graph: LayerGraph,
    x: torch.Tensor,
    *,
    run_tail: bool = True,
) -> SpatialRun:
    """Run `plan` on `handles` (by device name) for input `x`; see the module docstring.

    The plan is lowered (bands to steps, halo rows, bytes) before the clock starts, since
    that is planning, not inference.
    """
    plan.validate()
    if len(plan.flc) and plan.flc[-1][1] != len(graph.units) - 1:
        raise ManipleError(
            f"the plan covers {plan.n_units} units but {graph.name!r} has {len(graph.units)}"
        )
    schedule = lower(plan, graph, bytes_per_element=x.element_size())
    return replace(run_schedule(schedule, handles, graph, x, run_tail=run_tail), plan=plan)


def run_schedule(
    schedule: Schedule,
    handles: Mapping[str, DeviceHandle],
    graph: LayerGraph,
    x: torch.Tensor,
    *,
    run_tail: bool = True,
) -> SpatialRun:
    """Execute a star `schedule` on `handles` (by device name) for input `x`.

    Every step must receive its input rows from the coordinator in one transfer and send
    its output band back to it, and the coordinator must run the tail: a schedule with
    device-to-device transfers needs a peer runtime. Each group's time is counted from
    cutting its inputs to stitching its output (`_counted_ms`).
    """
    _check_star(schedule, handles, graph, x)
    swap = bool(schedule.syncs) and prepare_swap([handles[d] for d in schedule.devices])
    groups: list[GroupRun] = []
    with torch.no_grad():
        for g, (first, last) in enumerate(schedule.groups):
            steps = schedule.group_steps(g)
            alone = len(steps) == 1
            swapping = swap and not alone and bool(schedule.group_syncs(g))
            peers = tuple(s.device for s in steps) if swapping else ()
            t0 = time.perf_counter()
            calls = []
            for step in steps:
                lo, hi = step.receive[0].rows
                x_band = x[:, :, lo:hi].contiguous()
                calls.append(
                    handles[step.device].submit_span(
                        first,
                        last,
                        step.run.out_rows,
                        x_band,
                        concurrent=len(steps),
                        solo=alone,  # a lone device's partials are the whole reductions
                        peers=peers,
                    )
                )
            with ThreadPoolExecutor(len(calls)) as pool:  # every band back at once
                results = list(pool.map(lambda c: c.result(), calls))
            wall_ms = (time.perf_counter() - t0) * 1e3
            timings = [t for _, t in results]
            counted = _counted_ms(wall_ms, timings, star_wire(handles, steps))
            for point in () if alone or swapping else schedule.group_syncs(g):
                results, round_ms, round_timings = _sync_round(
                    schedule, g, point.node, results, handles, graph
                )
                wall_ms += round_ms
                counted += _counted_ms(round_ms, round_timings)
                timings += round_timings
            t1 = time.perf_counter()
            x = stitch([y for y, _ in results])
            stitch_ms = (time.perf_counter() - t1) * 1e3
            wall_ms += stitch_ms
            groups.append(GroupRun((first, last), wall_ms, counted + stitch_ms, tuple(timings)))
        t0 = time.perf_counter()
        y = graph.run_tail(x) if run_tail else x
        tail_ms = (time.perf_counter() - t0) * 1e3
    latency = sum(g.elapsed_ms for g in groups) + tail_ms
    moved = schedule.bytes_by_link()
    return SpatialRun(
        None,
        y,
        latency,
        tail_ms,
        tuple(groups),
        schedule,
        bytes_through_coordinator=sum(moved.values()),
    )


def _sync_round(
    schedule: Schedule,
    g: int,
    node: str,
    results: list[tuple[Any, CallTiming]],
    handles: Mapping[str, DeviceHandle],
    graph: LayerGraph,
) -> tuple[list[tuple[Any, CallTiming]], float, list[CallTiming]]:
    """One sync point of group g through the coordinator: the devices' partials in, their
    combination (in device order) out to every device, which carries on to the next sync
    point or the end. (results, the round's real ms, its timings)."""
    steps = schedule.group_steps(g)
    t0 = time.perf_counter()
    partials = [open_partial(p, COORDINATOR, s.device) for (p, _), s in zip(results, steps)]
    info = graph.node(node).sync
    assert info is not None
    total = make_partial(COORDINATOR, combine(partials, info))
    first, last = schedule.groups[g]
    calls = [
        handles[s.device].submit_resume(first, last, s.run.out_rows, total, concurrent=len(steps))
        for s in steps
    ]
    results = [c.result() for c in calls]
    return results, (time.perf_counter() - t0) * 1e3, [t for _, t in results]


def _check_star(
    schedule: Schedule, handles: Mapping[str, DeviceHandle], graph: LayerGraph, x: torch.Tensor
) -> None:
    """Refuse, before the clock starts, what this runtime cannot run as written."""
    check_runnable(schedule, handles, graph, x)
    for i, step in enumerate(schedule.steps):
        ok = (
            len(step.receive) == 1
            and step.receive[0].source == COORDINATOR
            and step.receive[0].rows == step.run.in_rows
            and [(t.dest, t.rows) for t in step.send] == [(COORDINATOR, step.run.out_rows)]
        )
        if not ok:
            raise ManipleError(
                f"step {i} (group {step.group}, device {step.device}) is not a star step: it "
                "must receive its input rows from the coordinator and send its band back to "
                "it; run this schedule on a runtime that moves rows between devices"
            )
    if schedule.tail.device != COORDINATOR:
        raise ManipleError(
            f"the schedule runs the tail on {schedule.tail.device!r}; the star runtime runs "
            "it on the coordinator"
        )
