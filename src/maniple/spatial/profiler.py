"""Legion's profiling on real (or emulated) devices: band ratios, S/E/R matrices, and FSS.

Legion's point is that single-unit profiling predicts fused groups well enough, at a
fraction of what measuring every group costs. Both sweeps are here so that they are
measured and counted the same way: every device call made (warm-ups included) is a run,
every byte sent or received is counted, and the profiling time of one step is the slowest
device's time, since the devices of a step work at once. On emulated boards the caller
switches the boards to fast-forward first: their board time is measured without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from maniple.devices.handles import Call, DeviceHandle
from maniple.devices.timing import CallTiming
from maniple.errors import ManipleError
from maniple.graph import LayerGraph
from maniple.spatial.bands import needed_rows, output_bands, step_rows, sync_units
from maniple.spatial.costs import LegionCosts, ProfilingSpent
from maniple.tiling import Band, TiledModel, speed_weights

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SpeedProbe:
    """Each device's time for the whole spatial part (one image), and the band weights."""

    devices: tuple[str, ...]
    spatial_ms: tuple[float, ...]
    weights: tuple[float, ...]
    spent: ProfilingSpent


def _wait(calls: Sequence[Call[tuple[torch.Tensor, CallTiming]]]) -> list[CallTiming]:
    return [c.result()[1] for c in calls]


def _round(
    spans: Sequence[tuple[DeviceHandle, tuple[Any, ...]]], **kwargs: Any
) -> tuple[list[CallTiming], float]:
    """Submit one step (`handle.submit_span(*args, **kwargs)` for each (handle, args) of
    `spans`) on all devices at once and wait for it: (timings, dispatch ms).

    The dispatch is the real time the step took beyond its slowest worker's own wall time:
    the coordinator handing out inputs and gathering outputs (Ray calls, host work). The
    runtime counts a group's time the same way (runtime/spatial.py), so this is the
    coordinator's per-group cost C of the predictor. On the testbed the slowest worker's
    bands crossed a shaped link meanwhile; their least wire time is not the coordinator's
    (maniple.devices.shaped_link), as in the runtime.
    """
    t0 = time.perf_counter()
    results = [c.result() for c in [h.submit_span(*a, solo=True, **kwargs) for h, a in spans]]
    wall_ms = (time.perf_counter() - t0) * 1e3
    timings = [t for _, t in results]
    i = max(range(len(timings)), key=lambda k: timings[k].wall_ms)
    outside = max(0.0, wall_ms - timings[i].wall_ms)
    link = spans[i][0].shaped_link
    if link is not None:
        wire = link.wire_ms(_bytes(spans[i][1][3])) + link.wire_ms(_bytes(results[i][0]))
        outside = link.counted_ms(outside, wire, timings[i].fast_forward)
    return timings, outside


def _bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def unit_inputs(graph: LayerGraph, x: torch.Tensor) -> list[torch.Tensor]:
    """The input tensor of every unit (and, last, the spatial output), computed here."""
    tiled = TiledModel(graph)
    outs = [x]
    with torch.no_grad():
        for k, unit in enumerate(graph.units):
            prog = tiled.program(k, k, (0, unit.out_shape[2]))
            lo, hi = prog.input_rows
            outs.append(prog(outs[-1][:, :, lo:hi]))
    return outs


def whole_spatial_span(graph: LayerGraph, x: torch.Tensor) -> tuple[int, Band, torch.Tensor]:
    """(last unit, all output rows, input band): the whole spatial part as one span, the
    arguments of `submit_span(0, last, rows, band)` that run it on one device."""
    last = len(graph.units) - 1
    full = (0, graph.units[last].out_shape[2])
    lo, hi = step_rows(graph, 0, last, full)
    return last, full, x[:, :, lo:hi].contiguous()


def measure_speeds(
    handles: Sequence[DeviceHandle], graph: LayerGraph, x: torch.Tensor, repeats: int = 1
) -> SpeedProbe:
    """Run the whole spatial part on every device at once; weights are 1 / time.

    `repeats` timed runs, the median per device; no warm-up run, since every worker warms
    its kernels up with a whole forward pass when it loads the model.
    """
    last, full, x = whole_spatial_span(graph, x)
    times: list[list[float]] = [[] for _ in handles]
    runs, seconds = 0, 0.0
    for _ in range(repeats):
        calls = [h.submit_span(0, last, full, x, link=False, solo=True) for h in handles]
        timings = _wait(calls)
        runs += len(calls)
        seconds += max(t.device_ms for t in timings) / 1e3
        for d, t in enumerate(timings):
            times[d].append(t.device_ms)
    spatial_ms = tuple(float(np.median(t)) for t in times)
    return SpeedProbe(
        tuple(h.name for h in handles),
        spatial_ms,
        speed_weights(spatial_ms),
        ProfilingSpent(runs, 0, seconds),
    )


def _measured_band(band: Band) -> Band:
    """The band a device's unit cost is measured on: its own, or one row if it sits out."""
    return band if band[1] > band[0] else (0, 1)


def profile_units(
    handles: Sequence[DeviceHandle],
    graph: LayerGraph,
    x: torch.Tensor,
    weights: Sequence[float],
    *,
    repeats: int = 1,
    progress: Progress | None = None,
) -> LegionCosts:
    """Legion's cost tables from single-unit runs only: S, E, R measured, A from halo math.

    For each unit all devices run their band at once (one warm-up, then `repeats` timed
    runs, median), and each device's send and receive of that band is charged to its link
    with the other active devices sharing the coordinator's uplink. Bands and halo rows
    come from `maniple.spatial.bands`, as the plans' and schedules' do, and the tables keep
    `weights`, so planners split by exactly the bands that were measured.
    """
    n, nd = len(graph.units), len(handles)
    inputs = unit_inputs(graph, x)
    S, E, R = np.zeros((nd, n)), np.zeros((nd, n)), np.zeros((nd, n))
    measured: list[list[Band]] = []
    dispatches: list[float] = []
    runs, nbytes, seconds = 0, 0, 0.0
    for k in range(n):
        bands = output_bands(graph, k, k, weights)
        mbands = [_measured_band(b) for b in bands]
        measured.append(mbands)
        active = sum(1 for b in bands if b[1] > b[0])
        rows_in = [step_rows(graph, k, k, b) for b in mbands]
        band_in = [inputs[k][:, :, lo:hi].contiguous() for lo, hi in rows_in]
        samples: list[list[float]] = [[] for _ in handles]
        for r in range(repeats + 1):
            timings, dispatch = _round(
                [(h, (k, k, mbands[d], band_in[d])) for d, h in enumerate(handles)], link=False
            )
            runs += nd
            seconds += max(t.device_ms for t in timings) / 1e3
            if r > 0:
                dispatches.append(dispatch)
                for d, t in enumerate(timings):
                    samples[d].append(t.device_ms)
        out_bytes = [_bytes(inputs[k + 1][:, :, a:b]) if b > a else 0 for a, b in bands]
        in_bytes = [_bytes(t) if bands[d][1] > bands[d][0] else 0 for d, t in enumerate(band_in)]
        send = [h.submit_transfer(in_bytes[d], concurrent=active) for d, h in enumerate(handles)]
        sends = [c.result() for c in send]
        recv = [h.submit_transfer(out_bytes[d], concurrent=active) for d, h in enumerate(handles)]
        recvs = [c.result() for c in recv]
        runs += 2 * nd
        nbytes += sum(in_bytes) + sum(out_bytes)
        for d in range(nd):
            E[d, k] = float(np.median(samples[d]))
            S[d, k] = sends[d].device_ms if in_bytes[d] else 0.0
            R[d, k] = recvs[d].device_ms if out_bytes[d] else 0.0
        seconds += (max(S[:, k]) + max(R[:, k])) / 1e3
        if progress:
            progress("profile units", k + 1, n)
    A, A_in = alpha_tables(graph, weights, measured)
    dispatch_ms = float(np.median(dispatches))
    sync_ms, extra = _sync_round_ms(handles, graph, dispatch_ms)
    runs += extra
    return LegionCosts(
        tuple(h.name for h in handles),
        n,
        S,
        E,
        R,
        A,
        A_in,
        tuple(float(w) for w in weights),
        ProfilingSpent(runs, nbytes, seconds),
        dispatch_ms=dispatch_ms,
        sync_ms=sync_ms,
    )


def _sync_round_ms(
    handles: Sequence[DeviceHandle], graph: LayerGraph, dispatch_ms: float
) -> tuple[tuple[float, ...], int]:
    """Per unit, what its sync points cost a group: each one exchange of the partials, the
    slowest device's partial out and the others' in, measured as one transfer of the
    partial's bytes on every link; and where the devices cannot swap partials themselves
    (`prepare_swap`), also a round through the coordinator (`dispatch_ms`).
    ((ms per unit), transfers run)."""
    from maniple.devices.sync_exchange import prepare_swap

    points = sync_units(graph)
    if not points or len(handles) < 2:
        return (), 0
    per_unit = [0.0] * len(graph.units)
    size = max(nbytes for _, _, nbytes in points)
    calls = [h.submit_transfer(size, concurrent=len(handles)) for h in handles]
    link_ms = max(c.result().device_ms for c in calls)
    round_ms = 0.0 if prepare_swap(handles) else dispatch_ms
    for unit, _, _ in points:
        per_unit[unit] += round_ms + 2 * link_ms
    return tuple(per_unit), len(handles)


def alpha_tables(
    graph: LayerGraph, weights: Sequence[float], measured: Sequence[Sequence[Band]]
) -> tuple[np.ndarray, np.ndarray]:
    """Legion's A (output rows) and A_in (input rows) from the halo math; no profiling.

    A[d,k,j]: rows of unit k's output that device d's band of unit j needs, over the rows
    its unit-k cost was measured on. A_in likewise for unit i's input rows (the send).
    """
    n, nd = len(graph.units), len(measured[0])
    A, A_in = np.zeros((nd, n, n)), np.zeros((nd, n, n))
    measured_in = [[step_rows(graph, k, k, measured[k][d]) for d in range(nd)] for k in range(n)]
    for j in range(n):
        bands_j = output_bands(graph, j, j, weights)  # the same for every group ending at j
        for d in range(nd):
            band = bands_j[d]
            if band[1] <= band[0]:
                continue  # sits this group out: no rows, no cost
            for k in range(j + 1):
                lo, hi = needed_rows(graph, k, j, band)
                ma, mb = measured[k][d]
                A[d, k, j] = (hi - lo) / (mb - ma)
            for i in range(j + 1):
                lo, hi = step_rows(graph, i, j, band)
                ma, mb = measured_in[i][d]
                A_in[d, i, j] = (hi - lo) / (mb - ma)
    return A, A_in


def measure_groups(
    handles: Sequence[DeviceHandle],
    graph: LayerGraph,
    x: torch.Tensor,
    weights: Sequence[float],
    *,
    repeats: int = 1,
    progress: Progress | None = None,
) -> tuple[np.ndarray, ProfilingSpent]:
    """FSS: run every group i..j for real on all devices at once; T[i, j] = slowest device
    plus the coordinator's dispatch of that step (as the runtime counts a group).

    Each device's time includes sending its input band and receiving its output band over
    its link (sharing the coordinator's uplink). One warm-up, `repeats` timed runs, median.
    """
    n = len(graph.units)
    inputs = unit_inputs(graph, x)
    T = np.full((n, n), np.inf)
    runs, nbytes, seconds = 0, 0, 0.0
    total, done = n * (n + 1) // 2, 0
    for j in range(n):
        for i in range(j + 1):
            active = [
                (d, b) for d, b in enumerate(output_bands(graph, i, j, weights)) if b[1] > b[0]
            ]
            band_in = {}
            for d, b in active:
                lo, hi = step_rows(graph, i, j, b)
                band_in[d] = inputs[i][:, :, lo:hi].contiguous()
            samples: list[float] = []
            for r in range(repeats + 1):
                timings, dispatch = _round(
                    [(handles[d], (i, j, b, band_in[d])) for d, b in active],
                    concurrent=len(active),
                )
                runs += len(timings)
                step = max(t.device_ms for t in timings)
                seconds += step / 1e3
                step += dispatch  # the group's real cost includes the coordinator's part
                nbytes += sum(_bytes(t) for t in band_in.values())
                nbytes += sum(_bytes(inputs[j + 1][:, :, a:b]) for _, (a, b) in active)
                if r > 0:
                    samples.append(step)
            T[i, j] = float(np.median(samples))
            done += 1
            if progress:
                progress("measure groups (FSS)", done, total)
    return T, ProfilingSpent(runs, nbytes, seconds)


def check_devices(handles: Sequence[DeviceHandle]) -> None:
    """Raise a clear error for an empty device list or duplicate device names."""
    if not handles:
        raise ManipleError("no devices to split across; give --devices or --emulate")
    names = [h.name for h in handles]
    if len(set(names)) != len(names):
        raise ManipleError(f"device names must be unique, got {names}")
