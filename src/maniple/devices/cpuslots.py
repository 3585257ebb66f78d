"""Host-wide compute slots: emulated boards take turns on the host's cores.

Why: time.thread_time is *not* immune to contention. When six boards time-slice two
cores, each one's CPU time grows by 10-60% (caches and memory bandwidth are shared and
every context switch evicts them), so their board times would grow too; even two boards
computing at once on two cores slow each other by ~5-10% (shared L3 and memory
bandwidth). Dilation leaves plenty of real time per call, so boards take turns instead:
a board waits for a free slot (waiting costs no CPU time and is absorbed by the dilated
deadline), computes, and releases it. There is one slot per core less one, which is left
to Ray, the coordinator and the rest of the host: one slot on a 2-core machine. The
slots are flock()ed files, shared by every process of this user on this host (also
boards of another Ray instance), and freed by the kernel if a process dies holding one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

_POLL_S = 0.0005


def slot_count() -> int:
    """One slot per core this process may run on, less one core left to Ray, the
    coordinator and everything else on the host ($MANIPLE_EMU_SLOTS overrides)."""
    env = os.environ.get("MANIPLE_EMU_SLOTS")
    if env:
        return max(1, int(env))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def _slot_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"maniple-cpu-slots-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


class CpuSlots:
    """`with slots.hold(): compute()` runs while holding one of the host's core slots."""

    def __init__(self, count: int | None = None) -> None:
        self.count = count or slot_count()
        self._files: list[int] = []

    def _open(self) -> list[int]:
        if not self._files:
            d = _slot_dir()
            self._files = [
                os.open(d / f"slot-{i}", os.O_RDWR | os.O_CREAT, 0o600) for i in range(self.count)
            ]
        return self._files

    @contextlib.contextmanager
    def hold(self, wait: bool = True) -> Iterator[float | None]:
        """Hold a free slot for the block; yields the ms spent waiting for it. With
        wait=False, yields None at once (holding nothing) if no slot is free."""
        files = self._open()
        t0 = time.perf_counter()
        start = os.getpid() % len(files)  # spread first tries across slots
        held = None
        while held is None:
            for k in range(len(files)):
                fd = files[(start + k) % len(files)]
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                held = fd
                break
            else:
                if not wait:
                    yield None
                    return
                time.sleep(_POLL_S)
        try:
            yield (time.perf_counter() - t0) * 1e3
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)

    def __getstate__(self) -> dict[str, int]:  # file descriptors do not cross processes
        return {"count": self.count}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.count = state["count"]
        self._files = []
