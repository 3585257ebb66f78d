"""Run a peer schedule for real: halo rows device to device, the coordinator off the path.

A plan is lowered with `maniple.spatial.schedule_peer.lower_peer`; this module executes the
steps and decides no rows or bytes. Every step of every group is submitted at once: each
device's call for group g takes, as arguments, the tokens of the pieces its peers' group
g-1 calls will return (Ray object references, or futures for devices of this process), so
the pieces move worker to worker as soon as they exist and this process touches only the
input it scatters and the last bands it gathers.

Time is counted on a critical path of steps, since groups no longer start together. A
step ends, counted, at the counted end of the step that released it last (its own
previous step or the sender of its last piece) plus the real gap before it started (Ray's
dispatch and object transfer, undivided) plus its own device time (the board's dilated
time divided by the dilation). The latency is the last such end plus the real time until
the coordinator held every band, plus stitching and the tail. On the testbed the real
gaps also hold shaped wire time, which is divided out like a board's (`shaped_wire`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from maniple.devices.handles import DeviceHandle, StepCall
from maniple.devices.step import StepOrder, make_piece
from maniple.devices.sync_exchange import prepare_swap
from maniple.devices.timing import CallTiming
from maniple.devices.wire import from_wire
from maniple.devices.wire_codec import unpack
from maniple.errors import ManipleError
from maniple.graph import LayerGraph
from maniple.spatial.runtimes.result import GroupRun, SpatialRun, check_runnable
from maniple.spatial.runtimes.shaped_wire import Wire, band_wire, counted, peer_wire
from maniple.spatial.schedule import COORDINATOR, INPUT, Schedule, Step
from maniple.tiling import stitch

StepKey = tuple[int, str]  # (group, device)


@dataclass(frozen=True)
class _Done:
    """A step as it ran: its timing and its counted end and device time (ms from start)."""

    timing: CallTiming
    counted_end_ms: float
    device_path_ms: float
    gap_ms: float


def step_orders(schedule: Schedule, compress: bool, swap: bool = False) -> dict[StepKey, StepOrder]:
    """Each step's order: what it holds, receives, runs and hands on, from the schedule."""
    orders: dict[StepKey, StepOrder] = {}
    prev_out: dict[str, tuple[int, tuple[int, int]]] = {}  # device -> (unit, rows) it keeps
    groups = schedule.groups
    for g in range(len(groups)):
        nxt = schedule.group_steps(g + 1) if g + 1 < len(groups) else ()
        steps = schedule.group_steps(g)
        for step in steps:
            run, dev = step.run, step.device
            own = None
            kept = prev_out.get(dev)
            if kept is not None and kept[0] == run.first - 1:
                lo, hi = max(kept[1][0], run.in_rows[0]), min(kept[1][1], run.in_rows[1])
                own = (lo, hi) if lo < hi else None
            sends = [(t.dest, t.rows) for s in nxt for t in s.receive if t.source == dev]
            sends += [(t.dest, t.rows) for t in step.send]
            syncs = len(schedule.group_syncs(g)) if len(steps) > 1 else 0
            orders[(g, dev)] = StepOrder(
                run.first,
                run.last,
                run.out_rows,
                run.in_rows,
                own,
                tuple(t.source for t in step.receive),
                tuple(t.rows for t in step.receive),
                tuple(d for d, _ in sends),
                tuple(r for _, r in sends),
                concurrent=len(steps),
                compress=compress,
                syncs=syncs,
                peers=tuple(s.device for s in steps) if syncs else (),
                swap=swap and bool(syncs),
            )
        for step in steps:
            prev_out[step.device] = (step.run.last, step.run.out_rows)
    return orders


def check_peer(
    schedule: Schedule, handles: Mapping[str, DeviceHandle], graph: LayerGraph, x: torch.Tensor
) -> None:
    """Refuse, before the clock starts, what this runtime cannot run as written."""
    check_runnable(schedule, handles, graph, x)
    kinds = {handles[d].transport for d in schedule.devices}
    if len(kinds) != 1 or kinds & {"none"}:
        raise ManipleError(
            f"the peer runtime moves pieces between devices of one transport, but these "
            f"devices use {sorted(kinds)} ({', '.join(schedule.devices)}); use --runtime star "
            "for a mix of local and Ray devices"
        )
    last = len(schedule.groups) - 1
    for i, step in enumerate(schedule.steps):
        bad = [t for t in step.receive if (t.source == COORDINATOR) != (t.unit == INPUT)]
        bad += [t for t in step.send if t.dest != COORDINATOR or step.group != last]
        if bad:
            raise ManipleError(
                f"step {i} (group {step.group}, device {step.device}) moves rows "
                f"{bad[0].source!r} -> {bad[0].dest!r}: under the peer runtime only the "
                "network input comes from the coordinator and only the last group's bands go "
                "back to it; run this schedule on the star runtime"
            )
    if schedule.tail.device != COORDINATOR:
        raise ManipleError("the peer runtime runs the tail on the coordinator")


def run_peer_schedule(
    schedule: Schedule,
    handles: Mapping[str, DeviceHandle],
    graph: LayerGraph,
    x: torch.Tensor,
    *,
    compress: bool = False,
    run_tail: bool = True,
) -> SpatialRun:
    """Execute a peer `schedule` on `handles` (by device name) for input `x`; see the
    module docstring. `compress` encodes every piece losslessly where that is smaller."""
    check_peer(schedule, handles, graph, x)
    swap = bool(schedule.syncs) and prepare_swap([handles[d] for d in schedule.devices])
    orders = step_orders(schedule, compress, swap)
    steps = list(schedule.steps)
    calls: dict[StepKey, StepCall] = {}
    phases: dict[int, list[list[StepCall]]] = {}  # group -> per device, each phase's call
    tokens: dict[tuple[int, str, str, tuple[int, int]], Any] = {}
    raw = 0
    _wire_bytes(handles, schedule.devices)  # start the links' counters from zero
    with torch.no_grad():
        t0 = time.time()
        for step in steps:
            key, order = (step.group, step.device), orders[(step.group, step.device)]
            pieces = []
            for t in step.receive:
                raw += t.bytes
                if t.source == COORDINATOR:
                    band = x[:, :, t.rows[0] : t.rows[1]]
                    # the input is not post-ReLU: few exact zeros, so it goes raw
                    pieces.append(make_piece(COORDINATOR, t.rows, band, False))
                else:
                    pieces.append(tokens[(step.group - 1, t.source, step.device, t.rows)])
            call = handles[step.device].submit_step(order, pieces)
            phased = order.syncs and not order.swap
            if phased:
                phases.setdefault(step.group, []).append([call])
            calls[key] = call
            if not phased:
                _keep_tokens(tokens, step, order, call)
            if phased and len(phases[step.group]) == len(schedule.group_steps(step.group)):
                _submit_phases(schedule, step.group, orders, handles, phases, calls, tokens)
        last = len(schedule.groups) - 1
        tail_steps = schedule.group_steps(last)
        try:
            with ThreadPoolExecutor(len(tail_steps)) as pool:  # every band at once
                bands = list(pool.map(lambda s: calls[(last, s.device)].values(), tail_steps))
            t_gathered = time.time()
            timings = {k: c.result() for k, c in calls.items()}
            phase_timings = {
                (g, s.device): [c.result() for c in per_device[i]]
                for g, per_device in phases.items()
                for i, s in enumerate(schedule.group_steps(g))
            }
        except ManipleError as exc:
            raise _name_the_dead(handles, schedule.devices, exc) from exc
        t1 = time.perf_counter()
        parts = [from_wire(unpack(p.data)) for pieces in bands for p in pieces]
        raw += sum(t.bytes for s in tail_steps for t in s.send)
        y = stitch(parts)
        stitch_ms = (time.perf_counter() - t1) * 1e3
        t1 = time.perf_counter()
        y = graph.run_tail(y) if run_tail else y
        tail_ms = (time.perf_counter() - t1) * 1e3
    on_wire = peer_wire(schedule, handles, calls, orders)
    done = _critical_path(steps, timings, t0, phase_timings, on_wire)
    ends = [done[(s.group, s.device)] for s in tail_steps]
    crit = max(ends, key=lambda d: d.counted_end_ms)
    j = max(range(len(ends)), key=lambda i: ends[i].timing.end_s)  # its band came last
    gather_gap = counted(
        max(0.0, (t_gathered - ends[j].timing.end_s) * 1e3),
        band_wire(handles[tail_steps[j].device], bands[j]),
        ends[j].timing.fast_forward,
    )
    latency = crit.counted_end_ms + gather_gap + stitch_ms + tail_ms
    wire = _wire_bytes(handles, schedule.devices)
    return SpatialRun(
        None,
        y,
        latency,
        tail_ms,
        _groups(schedule, done),
        schedule,
        runtime="peer",
        bytes_through_coordinator=wire[0],
        bytes_between_devices=wire[1],
        raw_bytes=raw,
        critical_device_ms=crit.device_path_ms,
        gaps_ms=tuple(d.gap_ms for d in done.values()),
        gather_ms=gather_gap + stitch_ms,
        link_bytes=wire[2],
    )


def _released(
    deps: Sequence[_Done], timing: CallTiming, t0: float, wire: Wire | None = None
) -> _Done:
    """A call's counted end: after the dependency that released it last, the real gap
    before it started (less the shaped wire time `wire` it held, on the testbed), then its
    own device time."""
    if deps:
        gate = max(deps, key=lambda d: d.timing.end_s)
        base, path, released = gate.counted_end_ms, gate.device_path_ms, gate.timing.end_s
    else:
        base, path, released = 0.0, 0.0, t0
    gap_ms = counted(max(0.0, (timing.start_s - released) * 1e3), wire, timing.fast_forward)
    own = timing.device_ms
    return _Done(timing, base + gap_ms + own, path + own, gap_ms)


def _critical_path(
    steps: Sequence[Step],
    timings: Mapping[StepKey, CallTiming],
    t0: float,
    phase_timings: Mapping[StepKey, list[CallTiming]] | None = None,
    wire: Mapping[StepKey, Wire] | None = None,
) -> dict[StepKey, _Done]:
    """Each step's counted end and the device time along the path that released it.

    A step with sync points is its phases in turn: phase k of every device of the group
    waits for phase k-1 of all of them (their partials)."""
    done: dict[StepKey, _Done] = {}
    last_of: dict[str, StepKey] = {}
    phase_timings = phase_timings or {}
    by_group: dict[int, list[Step]] = {}
    for step in steps:
        by_group.setdefault(step.group, []).append(step)
    for g, group in by_group.items():
        first: dict[str, _Done] = {}
        for step in group:
            key = (step.group, step.device)
            timing = phase_timings[key][0] if key in phase_timings else timings[key]
            deps = [done[last_of[step.device]]] if step.device in last_of else []
            deps += [done[(g - 1, t.source)] for t in step.receive if t.source != COORDINATOR]
            first[step.device] = _released(deps, timing, t0, (wire or {}).get(key))
        current = first
        n_phases = max((len(phase_timings.get((g, s.device), [])) for s in group), default=0)
        for k in range(1, n_phases):
            prev = list(current.values())
            current = {
                s.device: _released([current[s.device], *prev], phase_timings[(g, s.device)][k], t0)
                for s in group
            }
        for step in group:
            done[(g, step.device)] = current[step.device]
            last_of[step.device] = (g, step.device)
    return done


def _keep_tokens(tokens: dict[Any, Any], step: Step, order: StepOrder, call: StepCall) -> None:
    for token, dest, rows in zip(call.pieces, order.dests, order.send_rows, strict=True):
        tokens[(step.group, step.device, dest, rows)] = token


def _submit_phases(
    schedule: Schedule,
    g: int,
    orders: Mapping[StepKey, StepOrder],
    handles: Mapping[str, DeviceHandle],
    phases: dict[int, list[list[StepCall]]],
    calls: dict[StepKey, StepCall],
    tokens: dict[Any, Any],
) -> None:
    """The later phases of group g's steps, all submitted now: phase k of each device takes
    every device's phase k-1 partial by reference, so the partials go device to device."""
    steps = schedule.group_steps(g)
    n = orders[(g, steps[0].device)].syncs
    for k in range(1, n + 1):
        partials = [per_device[k - 1].pieces[0] for per_device in phases[g]]
        for i, s in enumerate(steps):
            call = handles[s.device].submit_step(orders[(g, s.device)], partials, phase=k)
            phases[g][i].append(call)
    for i, s in enumerate(steps):
        calls[(g, s.device)] = phases[g][i][-1]
        _keep_tokens(tokens, s, orders[(g, s.device)], phases[g][i][-1])


def _groups(schedule: Schedule, done: Mapping[StepKey, _Done]) -> tuple[GroupRun, ...]:
    """Per group: its timings, its real span, and how far it moved the counted clock."""
    out, before = [], 0.0
    for g, units in enumerate(schedule.groups):
        ds = [done[(s.group, s.device)] for s in schedule.group_steps(g)]
        wall = (max(d.timing.end_s for d in ds) - min(d.timing.start_s for d in ds)) * 1e3
        end = max(d.counted_end_ms for d in ds)
        out.append(GroupRun(units, wall, max(0.0, end - before), tuple(d.timing for d in ds)))
        before = max(before, end)
    return tuple(out)


def _wire_bytes(
    handles: Mapping[str, DeviceHandle], devices: Sequence[str]
) -> tuple[int, int, dict[str, dict[str, dict[str, int]]]]:
    """(bytes through the coordinator, bytes between devices, each device's own counts) by
    the links' own counters, which are reset as they are read."""
    coordinator = between = 0
    by_device = {}
    for name in devices:
        counts = by_device[name] = handles[name].link_bytes(reset=True)
        coordinator += counts["received"].get(COORDINATOR, 0) + counts["sent"].get(COORDINATOR, 0)
        between += sum(b for peer, b in counts["received"].items() if peer != COORDINATOR)
    return coordinator, between, by_device


def _name_the_dead(
    handles: Mapping[str, DeviceHandle], devices: Sequence[str], exc: ManipleError
) -> ManipleError:
    """The error of a failed run, naming the devices that no longer answer (a step whose
    peer died fails too; the dead one is what the user must drop)."""
    dead = []
    for name in devices:
        try:
            handles[name]._submit("ping").result(timeout=5.0)
        except ManipleError:
            dead.append(name)
    if not dead:
        return exc
    return ManipleError(
        f"device{'s' if len(dead) > 1 else ''} {', '.join(map(repr, dead))} stopped answering "
        f"during the peer run ({exc}); drop {'them' if len(dead) > 1 else 'it'} from the "
        "cluster and plan again"
    )
