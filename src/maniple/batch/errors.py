"""Errors raised while profiling a device.

Kept apart from `maniple.errors` because only profiling code and the device runners that
feed it need them; a runner raises `DeviceOutOfMemory` and the profiler turns it into a
recorded limit instead of a crash.
"""

from __future__ import annotations

from maniple.errors import ManipleError


class DeviceOutOfMemory(ManipleError):
    """A device could not run a batch because it ran out of memory.

    Runners raise it (wrapping e.g. `torch.cuda.OutOfMemoryError`) so that the profiler can
    record the batch size as the device's limit and stop there, keeping what it measured.
    """

    def __init__(self, device: str, batch: int, detail: str = "") -> None:
        self.device, self.batch, self.detail = device, batch, detail
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"device {device!r} ran out of memory at batch {batch}{extra}; "
            f"use a batch below {batch} on it, or free memory on the device"
        )
