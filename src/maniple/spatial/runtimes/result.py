"""What a spatial run measured, whichever runtime ran it.

Both runtimes (the star and the peer runtime) answer with a `SpatialRun`: the output, the
latency counted honestly (boards' own time divided out of the dilation, everything else
real), per-group timings, and the bytes the links carried, so that a report compares them
field by field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from maniple.devices.handles import DeviceHandle
from maniple.devices.timing import CallTiming
from maniple.errors import ManipleError
from maniple.graph import LayerGraph
from maniple.spatial.plan import SpatialPlan
from maniple.spatial.schedule import Schedule


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
    """A whole inference under a plan: output, latency and where the time went.

    plan: the plan that was run (None when a schedule was run directly).
    schedule: the steps that ran.
    """

    plan: SpatialPlan | None
    output: torch.Tensor
    latency_ms: float
    tail_ms: float
    groups: tuple[GroupRun, ...] = field(default_factory=tuple)
    schedule: Schedule | None = None
    runtime: str = "star"
    bytes_through_coordinator: int = 0
    """Wire bytes to and from the coordinator (after any encoding)."""
    bytes_between_devices: int = 0
    """Wire bytes from one device to another (after any encoding)."""
    raw_bytes: int = 0
    """The same transfers' bytes before encoding (0: not counted; ratio 1)."""
    critical_device_ms: float | None = None
    """Peer runtime: the boards' own time along the critical path of steps."""
    gaps_ms: tuple[float, ...] = ()
    """Peer runtime: each step's real wait between its last input and its start, in the
    schedule's step order (group 0's first: the coordinator's scatter)."""
    gather_ms: float = 0.0
    """Peer runtime: real ms from the last step's end to the stitched output (no tail)."""
    link_bytes: Mapping[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    """Peer runtime: each device's own count of the wire bytes it sent and received, by
    peer ({'sent': {dest: bytes}, 'received': {source: bytes}})."""

    @property
    def overrun_ms(self) -> float:
        """Real ms by which any board overran its dilated target (0 when the host kept up)."""
        return sum(g.overrun_ms for g in self.groups)

    @property
    def device_ms(self) -> float:
        """The boards' share of the latency: along the critical path of steps (peer), or
        summed over groups of the slowest device's own time (star)."""
        if self.critical_device_ms is not None:
            return self.critical_device_ms
        return sum(g.device_ms for g in self.groups)

    @property
    def compression_ratio(self) -> float:
        """Wire bytes over raw bytes of everything moved (1.0: nothing encoded)."""
        moved = self.bytes_through_coordinator + self.bytes_between_devices
        return moved / self.raw_bytes if self.raw_bytes else 1.0

    @property
    def coordinator_ms(self) -> float:
        """Everything else, real and undivided: coordinator work, calls, stitching, tail."""
        return self.latency_ms - self.device_ms


def check_runnable(
    schedule: Schedule, handles: Mapping[str, DeviceHandle], graph: LayerGraph, x: torch.Tensor
) -> None:
    """What every runtime refuses before its clock starts: an unsound schedule, devices that
    are not open, an input the schedule was not lowered for."""
    schedule.validate(graph)
    missing = [d for d in schedule.devices if d not in handles]
    if missing:
        raise ManipleError(
            f"the schedule uses devices {missing} that are not open; open: {sorted(handles)}"
        )
    shape = (1, *schedule.input_shape)
    if tuple(x.shape) != shape or x.element_size() != schedule.bytes_per_element:
        raise ManipleError(
            f"input of shape {tuple(x.shape)} with {x.element_size()} bytes per element, but "
            f"the schedule was lowered for {shape} with {schedule.bytes_per_element}; lower "
            "the plan for this input"
        )
