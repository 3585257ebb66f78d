"""Run a `BatchPlan`: every unit runs its share of the batch at the same time.

Why submit-all-then-wait: the point of a batch split is that units work in parallel, so
the coordinator hands each unit its slice (a thread for a local device, an actor for a
remote or emulated one) before waiting for any. Slices are contiguous and taken in the
plan's device order, so concatenating the outputs in that order restores input order.

What counts as the run's time (the measured makespan): for each unit, the host time
until its call was submitted (real, undivided) plus the call's `elapsed_ms` (the
device's own time, which for an emulated board is its emulated time, plus the real
per-call overhead, undivided), and after the last unit the host's reassembly time. For
devices of this process that is the wall clock; for emulated boards it is what the run
would take with real boards, never flattered by the dilation.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from maniple.batch.plan import BatchPlan
from maniple.devices import CallTiming, DeviceHandle
from maniple.errors import ManipleError
from maniple.tiling.verify import relative_error


@dataclass(frozen=True)
class UnitRun:
    """One unit's part of a run. Times in ms from the start of the run (host clock).

    start_ms: when its call had been submitted (units are submitted one after another,
    the one predicted to finish last first; submitting serialises a remote unit's
    input); end_ms = start_ms + elapsed_ms.
    device_ms: the device's own time; overhead_ms: real time beyond it (Ray, queueing).
    A unit with no images is not called: its times are 0 and `timing` is None.
    """

    device: str
    images: int
    first: int
    predicted_ms: float
    start_ms: float = 0.0
    device_ms: float = 0.0
    overhead_ms: float = 0.0
    timing: CallTiming | None = None

    @property
    def called(self) -> bool:
        return self.timing is not None

    @property
    def elapsed_ms(self) -> float:
        return self.device_ms + self.overhead_ms

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.elapsed_ms if self.called else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "images": self.images,
            "first_image": self.first,
            "predicted_ms": self.predicted_ms,
            "measured_ms": self.elapsed_ms,
            "device_ms": self.device_ms,
            "overhead_ms": self.overhead_ms,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "emulated": bool(self.timing and self.timing.emulated),
            "dilation": self.timing.dilation if self.timing else 1.0,
        }


@dataclass(frozen=True)
class BatchRun:
    """The result of running a plan: the output in input order and how long each unit took.

    measured_ms: the makespan as defined in the module docstring; wall_ms: the real wall
    clock of the run (longer than measured_ms by the dilation where boards are emulated);
    host_ms: the coordinator's own time (submitting and reassembling), real.
    """

    plan: BatchPlan
    output: torch.Tensor
    units: tuple[UnitRun, ...]
    measured_ms: float
    wall_ms: float
    host_ms: float

    @property
    def measured_by_device(self) -> dict[str, float]:
        return {u.device: u.elapsed_ms for u in self.units}

    def to_json(self) -> dict[str, Any]:
        """Times and shares (not the output tensor)."""
        return {
            "planner": self.plan.planner,
            "network": self.plan.network,
            "batch": self.plan.batch,
            "shares": dict(self.plan.shares),
            "predicted_ms": self.plan.makespan_ms,
            "measured_ms": self.measured_ms,
            "wall_ms": self.wall_ms,
            "host_ms": self.host_ms,
            "units": [u.to_json() for u in self.units],
        }


def _handles_by_name(
    handles: Mapping[str, DeviceHandle] | Iterable[DeviceHandle],
) -> dict[str, DeviceHandle]:
    if isinstance(handles, Mapping):
        return dict(handles)
    return {h.name: h for h in handles}


def run_batch_plan(
    plan: BatchPlan,
    handles: Mapping[str, DeviceHandle] | Iterable[DeviceHandle],
    x: torch.Tensor,
    *,
    timeout_s: float | None = None,
) -> BatchRun:
    """Run `plan` on the open devices `handles` (by name, or any iterable of handles such
    as a Cluster) for input batch `x` (N, C, H, W) with N == plan.batch. Units with no
    images are not called. `timeout_s` bounds the wait for each unit (None: the handles'
    own liveness checks)."""
    by_name = _handles_by_name(handles)
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] != plan.batch:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ManipleError(
            f"the plan splits a batch of {plan.batch} images but the input has shape {got}; "
            f"pass a tensor of {plan.batch} images (N, C, H, W)"
        )
    missing = [d for d in plan.devices_used if d not in by_name]
    if missing:
        raise ManipleError(
            f"plan gives images to {', '.join(missing)}, which is not open here "
            f"(open devices: {', '.join(by_name) or 'none'}); open it or plan without it"
        )
    active = len(plan.devices_used)
    firsts, first = {}, 0
    for dev, n in plan.shares.items():
        firsts[dev] = first
        first += n
    # The unit predicted to finish last is submitted first: submitting is serial host work.
    order = sorted(plan.devices_used, key=lambda d: -plan.predicted_ms[d])
    t0 = time.perf_counter()
    calls, starts = {}, {}
    for dev in order:
        handle, a = by_name[dev], firsts[dev]
        part = x[a : a + plan.shares[dev]]
        if not handle.spec.is_local:
            part = part.clone()  # a view would pickle all of x on its way there
        calls[dev] = handle.submit_batch(part, concurrent=active)
        starts[dev] = (time.perf_counter() - t0) * 1e3
    submitted_ms = (time.perf_counter() - t0) * 1e3
    results: dict[str, tuple[torch.Tensor, CallTiming]] = {}
    for dev, call in calls.items():
        results[dev] = call.result(timeout_s)
    t_gather = time.perf_counter()
    output = torch.cat([results[d][0] for d in plan.shares if d in results])
    gather_ms = (time.perf_counter() - t_gather) * 1e3
    wall_ms = (time.perf_counter() - t0) * 1e3
    units = []
    for dev, n in plan.shares.items():
        unit = UnitRun(dev, n, firsts[dev], plan.predicted_ms[dev])
        if dev in results:
            timing = results[dev][1]
            unit = UnitRun(
                dev, n, firsts[dev], plan.predicted_ms[dev], starts[dev],
                timing.device_ms, timing.overhead_ms, timing,
            )  # fmt: skip
        units.append(unit)
    measured = max(u.end_ms for u in units) + gather_ms
    return BatchRun(plan, output, tuple(units), measured, wall_ms, submitted_ms + gather_ms)


def run_interleaved(
    plans: Mapping[str, BatchPlan],
    handles: Mapping[str, DeviceHandle] | Iterable[DeviceHandle],
    x: torch.Tensor,
    *,
    repeats: int = 3,
    warmup: int = 1,
) -> dict[str, list[BatchRun]]:
    """Run each of `plans` (by label) `warmup` times untimed, then `repeats` times in turn
    (plan A, plan B, A, B, ...), so that a drift of the host during the runs hits every
    plan alike. Returns the timed runs by label."""
    if repeats < 1 or warmup < 0:
        raise ManipleError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        for plan in plans.values():
            run_batch_plan(plan, handles, x)
    runs: dict[str, list[BatchRun]] = {label: [] for label in plans}
    for _ in range(repeats):
        for label, plan in plans.items():
            runs[label].append(run_batch_plan(plan, handles, x))
    return runs


def median_run(runs: Sequence[BatchRun]) -> BatchRun:
    """The run with the median makespan (the lower middle one for an even count)."""
    if not runs:
        raise ManipleError("no runs to take the median of")
    ordered = sorted(runs, key=lambda r: r.measured_ms)
    return ordered[(len(ordered) - 1) // 2]


def max_rel_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    """The batch output's error relative to the reference's scale (see relative_error)."""
    return relative_error(output, reference)
