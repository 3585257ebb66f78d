"""What a worker measured about one call, and who the worker is.

Why so many numbers: an emulated board's real duration is dilated, part of a call is the
board's compute, part its link, and part is host overhead (Ray, queues) that must be
counted undivided. Keeping them apart lets every report divide out exactly the dilated
part and nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class CallTiming:
    """Times of one call on one device (ms unless said otherwise).

    wall_ms:     real host time inside the worker, sleeps included
    compute_ms:  real host time of the computation alone
    cpu_ms:      thread CPU time of the computation (time.thread_time)
    board_ms:    emulated board compute time (None: a real device): the fastest CPU time
                 this worker has seen for the same work (op and shapes) x the board factor
    link_ms:     emulated link time, in + out (0 for a real device)
    overrun_ms:  real ms by which the computation overran its dilated target (emulated);
                 > 0 means the host could not keep up and the board looks slower
    queue_ms:    real ms an emulated board waited for a free host core before computing
    dilation:    the time-dilation factor D of the worker (1 for a real device)
    fast_forward: emulated without sleeping (wall_ms is then not dilated board time)
    overhead_ms: real ms the caller waited beyond wall_ms (Ray, serialisation, queueing);
                 filled in by the handle, never divided by the dilation
    start_s/end_s: time.time() in the worker at the call's start and end (timelines)
    pid:         the worker's process id
    """

    device: str
    op: str
    wall_ms: float
    compute_ms: float = 0.0
    cpu_ms: float = 0.0
    board_ms: float | None = None
    link_ms: float = 0.0
    overrun_ms: float = 0.0
    queue_ms: float = 0.0
    dilation: float = 1.0
    fast_forward: bool = False
    overhead_ms: float = 0.0
    start_s: float = 0.0
    end_s: float = 0.0
    pid: int = 0

    @property
    def emulated(self) -> bool:
        return self.board_ms is not None

    @property
    def device_ms(self) -> float:
        """The device's own time for this call: real ms for a real device; for an emulated
        board the dilated wall time divided by D (so an overrun shows as a slower board),
        or board + link ms in fast-forward mode."""
        if self.board_ms is None:
            return self.wall_ms
        if self.fast_forward:
            return self.board_ms + self.link_ms
        return self.wall_ms / self.dilation

    @property
    def elapsed_ms(self) -> float:
        """What a caller should count for this call: device time + undivided overhead."""
        return self.device_ms + self.overhead_ms

    def with_overhead(self, caller_ms: float) -> CallTiming:
        """This timing with overhead_ms = what the caller waited beyond the worker's wall."""
        return replace(self, overhead_ms=max(0.0, caller_ms - self.wall_ms))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["device_ms"] = self.device_ms
        d["elapsed_ms"] = self.elapsed_ms
        return d


@dataclass(frozen=True)
class WorkerInfo:
    """Who a worker is and where it runs (for reports and for checking placement)."""

    device: str
    torch_device: str
    pid: int
    hostname: str
    node_id: str | None
    node_ip: str | None
    threads: int
    torch_version: str
    network: str | None
    board: str | None
    dilation: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
