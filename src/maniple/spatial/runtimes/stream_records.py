"""What a stream reports as it runs: each frame's run, the changes, and who decides them.

Kept apart from the executor (`stream.py`) so that sessions, reports and tests read the
records without the threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch

from maniple.spatial.stream_plan import StreamPlan


@dataclass(frozen=True)
class FrameRun:
    """One frame as it ran: where, when (counted ms) and each device's own time."""

    index: int
    lane: int
    devices: tuple[str, ...]
    arrival_ms: float
    start_ms: float
    lane_ms: float
    tail_ms: float
    delivered_ms: float
    device_ms: Mapping[str, float]
    attempts: int
    output: torch.Tensor = field(repr=False, compare=False)

    @property
    def latency_ms(self) -> float:
        return self.delivered_ms - self.arrival_ms


@dataclass(frozen=True)
class StreamEvent:
    """A change during the stream: a new plan (why), a device lost or joined."""

    kind: str  # "plan", "lost", "joined", "stopped"
    frame: int  # the next frame not yet delivered when it happened
    at_ms: float  # counted time
    detail: str
    devices: tuple[str, ...] = ()


class StreamControl(Protocol):
    """Decides plans while a stream runs (the session implements it)."""

    def after_frame(self, run: FrameRun) -> tuple[StreamPlan, str] | None:
        """A new plan and why (drift, a device joined), or None to keep this one."""

    def on_lost(self, dead: tuple[str, ...], live: tuple[str, ...]) -> StreamPlan:
        """A plan for the live devices once `dead` stopped answering."""
