"""What a spatial run is measured with and against: the seeded input, the boards' clock
switch, the result of one search, and the check that a saved plan fits.

Apart from the session so that the session holds only what it does (profile, plan, run)
and a report or the CLI can read a result without the session's machinery.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from maniple.devices.handles import DeviceHandle
from maniple.errors import ManipleError
from maniple.graph import LayerGraph
from maniple.spatial.costs import ProfilingSpent
from maniple.spatial.plan import SpatialPlan
from maniple.spread import speedup_verdict, spread_json
from maniple.tiling.verify import relative_error


@contextmanager
def fast_forward(handles: Sequence[DeviceHandle], on: bool = True) -> Iterator[None]:
    """Emulated boards skip their sleeps inside the block (profiling); others are unaffected."""
    for h in handles:
        h.set_fast_forward(on)
    try:
        yield
    finally:
        for h in handles:
            h.set_fast_forward(not on)


def reference_input(graph: LayerGraph, seed: int = 0) -> torch.Tensor:
    """The seeded image every spatial run measures and checks with (batch 1)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, *graph.input_shape, generator=gen)


def output_error(
    outputs: Sequence[torch.Tensor],
    fp32: torch.Tensor,
    single: torch.Tensor | None,
    tolerance: float,
    what: str,
) -> tuple[float, float | None]:
    """(error held to `tolerance`, error against strict fp32 or None) of a plan's outputs;
    an error beyond `tolerance` raises, naming `what` ran.

    At fp32 (`single` None) the host's fp32 output is one device's output. At another
    precision the split is held against the fastest device alone at that precision
    (`single`), and its error against fp32 is reported beside it."""
    vs_fp32 = max(relative_error(y, fp32) for y in outputs)
    err = vs_fp32 if single is None else max(relative_error(y, single) for y in outputs)
    if err > tolerance:
        raise ManipleError(
            f"{what}: split output differs from the single-device output by {err:.2e} of its "
            f"scale (limit {tolerance:.0e}); this is a bug, please report it"
        )
    return err, None if single is None else vs_fp32


@dataclass(frozen=True)
class SpatialResult:
    """One search's plan, measured: what `maniple spatial --json` prints."""

    network: str
    search: str
    plan: SpatialPlan
    latencies_ms: tuple[float, ...]
    single_device: str
    single_device_ms: float
    max_rel_error: float
    profile: ProfilingSpent
    fast_forward_ms: float | None = None
    device_ms: float | None = None
    candidates: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    overrun_ms: float = 0.0
    reused: tuple[str, ...] = ()
    """Profiles read from the store instead of measured (speeds, costs, fss)."""
    profiled: tuple[str, ...] = ()
    """Profiles measured by this run (speeds, costs, fss); empty when nothing was."""
    bytes_through_coordinator: int = 0
    bytes_between_devices: int = 0
    compression_ratio: float = 1.0
    choice: str = ""
    """Why this plan runs (the runtime and split chosen, or the single device)."""
    single_latencies_ms: tuple[float, ...] = ()
    """The timed runs of the fastest device alone (its median is single_device_ms)."""
    tolerance: float = 1e-4
    """What max_rel_error is held to: the loosest of the devices' precisions."""
    error_vs_fp32: float | None = None
    """The output's error against strict fp32 (None: every device ran strict fp32, where
    max_rel_error is that error)."""
    precision: dict[str, str] = field(default_factory=dict)
    """Each device's mode in words (fp32, bf16 channels-last, ...)."""
    testbed: dict[str, Any] | None = None
    """On a testbed: its links, and per timed run each link's byte counters beside the
    bytes the schedule moves on it (maniple.spatial.testbed_session); None elsewhere."""

    @property
    def latency_ms(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def same_as_single(self) -> bool:
        """Whether the plan that ran is the fastest device alone, the baseline itself."""
        return tuple(self.plan.devices) == (self.single_device,) or (
            self.plan.search == "single" and self.single_device in self.plan.devices
        )

    @property
    def speedup(self) -> float:
        """The fastest device alone over this plan; exactly 1.0 when the plan is that
        device alone (any other figure would be noise)."""
        if self.same_as_single:
            return 1.0
        return self.single_device_ms / self.latency_ms

    @property
    def speedup_verdict(self) -> str:
        """'same plan', 'within noise', 'faster' or 'slower' (maniple.spread)."""
        single = self.single_latencies_ms or (self.single_device_ms,)
        return speedup_verdict(single, self.latencies_ms, same_plan=self.same_as_single)

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "search": self.search,
            "devices": list(self.plan.devices),
            "flc": [list(g) for g in self.plan.flc],
            "bands": [[list(b) for b in group] for group in self.plan.bands],
            "predicted_ms": self.plan.predicted_ms,
            "latency_ms": self.latency_ms,
            "latencies_ms": list(self.latencies_ms),
            "fast_forward_ms": self.fast_forward_ms,
            "device_ms": self.device_ms,
            "coordinator_ms": None if self.device_ms is None else self.latency_ms - self.device_ms,
            "single_device": self.single_device,
            "single_device_ms": self.single_device_ms,
            "speedup": self.speedup,
            "speedup_verdict": self.speedup_verdict,
            "latency_spread_ms": spread_json(self.latencies_ms),
            "single_device_latencies_ms": list(self.single_latencies_ms),
            "max_rel_error": self.max_rel_error,
            "tolerance": self.tolerance,
            "error_vs_fp32": self.error_vs_fp32,
            "precision": dict(self.precision),
            "profile_seconds": self.profile.seconds,
            "profile_runs": self.profile.runs,
            "profile_bytes": self.profile.bytes,
            "overrun_ms": self.overrun_ms,
            "candidates": list(self.candidates),
            "reused_profiles": list(self.reused),
            "profiled_now": list(self.profiled),
            "runtime": self.plan.runtime,
            "bytes_through_coordinator": self.bytes_through_coordinator,
            "bytes_between_devices": self.bytes_between_devices,
            "compression_ratio": self.compression_ratio,
            "choice": self.choice,
            **({"testbed": self.testbed} if self.testbed is not None else {}),
        }


def check_plan_fits(plan: SpatialPlan, graph: LayerGraph, devices: Sequence[str]) -> None:
    """Refuse, with the reason, a plan made for another network, input or device set."""
    plan.validate()
    if plan.network != graph.name:
        raise ManipleError(
            f"the plan is for network {plan.network!r}, not {graph.name!r}; make a plan for "
            f"{graph.name!r} with --save-plan, or run {plan.network!r}"
        )
    heights = tuple(u.out_shape[2] for u in graph.units)
    if plan.unit_heights != heights:
        raise ManipleError(
            f"the plan's units have {list(plan.unit_heights)} output rows but {graph.name!r} "
            f"at input {tuple(graph.input_shape)} has {list(heights)}: it was made for another "
            "input shape or model version; pass the --input-shape it was made for, or plan again"
        )
    alone = plan.search == "single" and len(plan.devices) == 1 and plan.devices[0] in devices
    if tuple(plan.devices) != tuple(devices) and not alone:
        raise ManipleError(
            f"the plan is for devices {list(plan.devices)} but the devices open are "
            f"{list(devices)}; open the same devices in the same order, or plan again"
        )
