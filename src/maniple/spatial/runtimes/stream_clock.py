"""The counted clock of a stream: frames, lanes and the coordinator composed on one timeline.

Why a clock of its own: a stream runs for real, lanes at once, emulated boards dilated by
D. Its wall time cannot be divided by D as a whole, since the coordinator's work (tails,
cutting and stitching bands, Ray's calls) is real time and must count whole, and in real
time the dilated boards hide it. So every measured piece is placed on a counted timeline,
as the peer runtime does for its steps:

- a lane's pass over a frame lasts its counted time (its runtime's latency without the
  tail: boards' own time divided by D, everything else real);
- a lane starts a frame when the frame has arrived and every device of the lane is free
  (a lane of a new plan waits for the lanes of the old plan that held its devices);
- the tails run one at a time on the coordinator, each when its lane's pass has ended;
- outputs are delivered in frame order, each when its tail and every earlier frame's are
  done;
- a failed pass (a board lost) holds its lane's devices for the real time it took to
  fail, undivided, and the frame goes round again.

Frames arrive at `fps` (frame k at k / fps) or, with no fps, as fast as they are taken:
a frame arrives when a lane first takes it. The latency of a frame is its delivery minus
its arrival; the throughput is frames over the time to the last delivery.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from maniple.errors import ManipleError


@dataclass
class StreamClock:
    """The counted timeline of one stream (ms from its start); see the module docstring."""

    fps: float | None = None
    device_free: dict[str, float] = field(default_factory=dict)
    coordinator_free: float = 0.0
    arrivals: dict[int, float] = field(default_factory=dict)
    delivered: dict[int, float] = field(default_factory=dict)
    _last_delivery: float = 0.0

    def __post_init__(self) -> None:
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ManipleError(
                f"--fps must be a positive number of frames a second, got {self.fps!r}"
            )

    def arrival(self, index: int) -> float | None:
        """When frame `index` arrives (None: not yet, with no fps: when first taken)."""
        if self.fps is not None:
            return index * 1e3 / self.fps
        return self.arrivals.get(index)

    def start(self, index: int, devices: Sequence[str]) -> float:
        """Counted start of a pass of frame `index` on a lane of `devices`."""
        free = max((self.device_free.get(d, 0.0) for d in devices), default=0.0)
        arrived = self.arrival(index)
        if arrived is None:
            self.arrivals[index] = arrived = free
        return max(free, arrived)

    def end(self, devices: Sequence[str], start_ms: float, lane_ms: float) -> float:
        """A pass that started at `start_ms` and lasted `lane_ms` (counted, or the real
        time a failed one took): its devices are free again at its end, returned."""
        if not (math.isfinite(lane_ms) and lane_ms >= 0):
            raise ManipleError(f"a lane's pass must last a finite ms >= 0, got {lane_ms!r}")
        end = start_ms + lane_ms
        for d in devices:
            self.device_free[d] = max(self.device_free.get(d, 0.0), end)
        return end

    def tail(self, lane_end_ms: float, tail_ms: float) -> float:
        """The coordinator runs a tail (real ms) once the pass has ended: its end."""
        start = max(self.coordinator_free, lane_end_ms)
        self.coordinator_free = start + max(0.0, tail_ms)
        return self.coordinator_free

    def deliver(self, index: int, ready_ms: float) -> float:
        """Frame `index` (called in frame order) leaves when ready and after the frame
        before it: its delivery time."""
        if index in self.delivered:
            raise ManipleError(f"frame {index} delivered twice")
        if index and index - 1 not in self.delivered:
            raise ManipleError(f"frame {index} delivered before frame {index - 1}")
        self._last_delivery = max(self._last_delivery, ready_ms)
        self.delivered[index] = self._last_delivery
        return self._last_delivery

    def latency(self, index: int) -> float:
        arrived = self.arrival(index)
        assert arrived is not None
        return self.delivered[index] - arrived

    @property
    def now(self) -> float:
        """The latest time on the timeline so far (a new plan's lanes start after it)."""
        return max([self.coordinator_free, self._last_delivery, *self.device_free.values()])


@dataclass(frozen=True)
class Spread:
    """Latency percentiles of a set of frames (ms)."""

    n: int
    p50: float
    p95: float
    p99: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        a = np.asarray(values, dtype=float)
        p50, p95, p99 = (float(v) for v in np.percentile(a, [50, 95, 99]))
        return cls(len(a), p50, p95, p99, float(a.min()), float(a.max()))

    def to_dict(self) -> dict[str, float | int | None]:
        def num(v: float) -> float | None:
            return None if math.isnan(v) else round(v, 3)

        return {
            "n": self.n,
            "p50_ms": num(self.p50),
            "p95_ms": num(self.p95),
            "p99_ms": num(self.p99),
            "min_ms": num(self.min),
            "max_ms": num(self.max),
        }


def throughput(deliveries: Sequence[float], since_ms: float = 0.0) -> float:
    """Frames a second delivered after `since_ms`, over the time from then to the last."""
    after = [t for t in deliveries if t > since_ms]
    if not after:
        return 0.0
    span = max(after) - since_ms
    return len(after) * 1e3 / span if span > 0 else math.inf
