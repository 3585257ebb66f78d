"""The clock of an emulated edge board: real computation, then a sleep to the board's time.

Why this way: the board's time for a piece of work is the host CPU time of that work on
one thread (time.thread_time, which leaves out the time other processes run) times the
board's calibrated factor. The call then lasts board time x D, the time-dilation factor:
with D large enough, six boards sharing two cores still finish their real computation
before their dilated deadline, so contention never shows in their timings. If the
computation does overrun its dilated target, the overrun is recorded and left in the
call's wall time (an overloaded host makes the board look slower, never faster).

Two things keep host noise out of board times:
- boards take turns on the host's cores (cpuslots.py), so they never time-slice or
  share caches with each other while they compute;
- the same work (op and shapes) costs a board the same time, and interference can only
  add CPU time, so a board's time for a piece of work is its fastest run so far.
What remains is the host's own speed drift since calibration (a few %).

Fast-forward mode skips the sleeps and reports board time directly, for profiling sweeps.
Links sleep `transfer_ms x D` the same way, except on the testbed (`real_link`), where the
bytes move for real over a veth shaped to the link / D: there the link never sleeps, and
in fast-forward it still answers the model's ms, so profiles match an emulated board's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from maniple.devices.calibration_record import Calibration
from maniple.devices.cpuslots import CpuSlots, slot_count
from maniple.devices.presets import BoardSpec
from maniple.devices.shaped_link import ShapedLink
from maniple.errors import ManipleError

T = TypeVar("T")

# Chosen so that six boards running VGG-16 at once on a 2-core host each stay within 10%
# of their speed, with room for other load; see docs/results/emulation.md. Clusters of
# more boards get more (dilation_for).
DEFAULT_DILATION = 2.0
_HEADROOM = 1.5  # real time per call / host core time the boards need, at least

# One per process: the host's compute slots (see cpuslots.py).
_SLOTS = CpuSlots()


class ComputeTimes(NamedTuple):
    board_ms: float | None  # None: a real device, which has no board time
    compute_ms: float
    cpu_ms: float
    overrun_ms: float
    queue_ms: float


def sleep_until(deadline: float) -> None:
    """Sleep until time.perf_counter() reaches `deadline`."""
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            return
        time.sleep(left)


@dataclass(frozen=True)
class BoardClock:
    """Turns host computation into board time for one emulated board (picklable).

    real_link: the board's shaped veth on the testbed (None: the link is the model's)."""

    board: BoardSpec
    calibration: Calibration
    dilation: float = DEFAULT_DILATION
    fast_forward: bool = False
    real_link: ShapedLink | None = None
    slowdown: float = 1.0
    """Board time multiplier for a board made slower on purpose (fault and re-balancing
    benchmarks: `DeviceHandle.set_slowdown`); 1 is the calibrated board."""

    def __post_init__(self) -> None:
        if not self.dilation >= 1.0:
            raise ManipleError(f"time dilation must be >= 1 (1 = real time), got {self.dilation!r}")
        if not (math.isfinite(self.slowdown) and self.slowdown >= 1.0):
            raise ManipleError(
                f"board slowdown must be a finite factor >= 1 (1 = as calibrated), got "
                f"{self.slowdown!r}"
            )

    def factor(self, network: str | None) -> float:
        """Board ms per host CPU ms (at calibration speed) for `network`; the geometric
        mean of the reference networks' factors if `network` has no published number."""
        base = self.calibration.firefly_factor(network) * self.board.slowdown_vs_firefly
        return base * self.slowdown

    def compute(
        self,
        fn: Callable[[], T],
        network: str | None,
        key: Hashable | None = None,
        fastest: dict[Hashable, float] | None = None,
    ) -> tuple[T, ComputeTimes]:
        """Run `fn` for real, holding a compute slot (waiting for one if need be), then
        sleep so the call lasts board time x D from its start. Time spent waiting for a
        slot or computing beyond that target is the overrun.

        `key` names the work (op and shapes) and `fastest` is the worker's memo of the
        least CPU time seen per key; board time comes from that minimum.
        """
        w0 = time.perf_counter()
        with _SLOTS.hold() as queue_ms:
            t0 = time.perf_counter()
            c0 = time.thread_time()
            out = fn()
            cpu_ms = (time.thread_time() - c0) * 1e3
            compute_ms = (time.perf_counter() - t0) * 1e3
        work_ms = cpu_ms
        if key is not None and fastest is not None:
            work_ms = min(work_ms, fastest.get(key, work_ms))
            fastest[key] = work_ms
        board_ms = work_ms * self.factor(network)
        assert queue_ms is not None
        if self.fast_forward:
            return out, ComputeTimes(board_ms, compute_ms, cpu_ms, 0.0, queue_ms)
        deadline = w0 + board_ms * self.dilation / 1e3
        overrun_ms = max(0.0, (time.perf_counter() - deadline) * 1e3)
        sleep_until(deadline)
        return out, ComputeTimes(board_ms, compute_ms, cpu_ms, overrun_ms, queue_ms)

    def wait(self, ms: float) -> float:
        """Sleep `ms` emulated link milliseconds x D (unless fast-forward); returns `ms`.
        On a real link: no sleep, and 0 ms in real time (the bytes took their own)."""
        if self.real_link is not None:
            return ms if self.fast_forward else 0.0
        if not self.fast_forward and ms > 0:
            sleep_until(time.perf_counter() + ms * self.dilation / 1e3)
        return ms

    def link(self, nbytes: int, concurrent: int = 1) -> float:
        """Emulated ms to move `nbytes` over the board's link; sleeps that x D (unless
        fast-forward) and returns the emulated ms (a real link: as `wait`)."""
        return self.wait(self.board.link.transfer_ms(nbytes, concurrent))


def dilation_for(
    boards: list[BoardSpec], calibration: Calibration, slots: int | None = None
) -> float:
    """The default dilation for these boards together: DEFAULT_DILATION, or more when the
    boards, all computing at once, would keep the host's compute slots busy more than
    2/3 of the time (host ms per board ms = 1 / the geometric-mean factor), rounded up
    to a multiple of 0.5."""
    per_board = [1.0 / (calibration.geomean_factor() * b.slowdown_vs_firefly) for b in boards]
    load = sum(per_board) / (slots or slot_count())
    return max(DEFAULT_DILATION, math.ceil(2 * _HEADROOM * load) / 2)
