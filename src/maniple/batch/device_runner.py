"""`DeviceBatchRunner`: the profiler's `BatchRunner` over an open device handle.

Why an adapter: `maniple.profile.profile_batch_table` only needs "time a batch of b
images" and must never see a device; the handle runs the whole network there. Exec and
I/O are split the way each kind of device moves data:

- local CPU: nothing moves, I/O is 0;
- local GPU (cuda, xpu, mps): the batch is copied host to device and the output back
  inside the timed call; the same number of bytes is timed once more on its own
  (`handle.transfer`) and that is the I/O share;
- emulated board: its link time (`CallTiming.link_ms`, emulated) plus the real cost of
  reaching its worker process (undivided): submitting the call, which serialises the
  input, and the per-call overhead;
- Ray device: submitting the call plus the per-call overhead (shipping input and output
  through Ray).

Exec + I/O always add up to the host time of submitting the call plus its `elapsed_ms`,
which is what the runner of a plan measures per unit, so tables predict what a run
costs. A device that runs out of memory
raises `DeviceOutOfMemory`, which the profiler records as the device's limit.
"""

from __future__ import annotations

import time

import torch

from maniple.batch.errors import DeviceOutOfMemory
from maniple.devices import CallTiming, DeviceHandle
from maniple.errors import ManipleError

_OOM_TEXT = ("out of memory", "can't allocate memory", "outofmemoryerror")


def is_out_of_memory(exc: BaseException) -> bool:
    """True if `exc` (or an exception it was raised from) says a device ran out of memory:
    torch.OutOfMemoryError, MemoryError, or a RuntimeError whose text says so (CUDA,
    the CPU allocator, or an error relayed from a remote worker)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, torch.OutOfMemoryError | MemoryError):
            return True
        if any(text in str(cur).lower() for text in _OOM_TEXT):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def release_cached_memory(handle: DeviceHandle) -> None:
    """After an out-of-memory error, give a local GPU's cached blocks back, so that the
    next (smaller) batch is not refused for memory the failed one left reserved."""
    if handle.spec.is_local and handle.spec.kind == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


class DeviceBatchRunner:
    """Times the whole network on `handle` for a batch of random images.

    input_shape: (C, H, W) of one image; seed: the inputs' generator seed. Inputs are made
    before the timed call, so timing never includes making them. Emulated boards should
    be opened in fast-forward mode for profiling (board time without the sleeps).
    """

    def __init__(
        self, handle: DeviceHandle, input_shape: tuple[int, int, int], *, seed: int = 0
    ) -> None:
        self.handle = handle
        self.input_shape = tuple(input_shape)
        self.seed = seed
        self._pool: torch.Tensor | None = None
        self._x: torch.Tensor | None = None
        self.last_timing: CallTiming | None = None

    def inputs(self, batch: int) -> torch.Tensor:
        """`batch` random images: the first `batch` of a seeded pool, copied into a tensor
        of their own (a slice would pickle the whole pool on its way to a remote worker)."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ManipleError(f"batch must be a positive number of images, got {batch!r}")
        if self._x is None or self._x.shape[0] != batch:
            if self._pool is None or self._pool.shape[0] < batch:
                gen = torch.Generator().manual_seed(self.seed)
                self._pool = torch.randn((batch, *self.input_shape), generator=gen)
            self._x = self._pool[:batch].clone()
            spec = self.handle.spec
            if spec.is_local and spec.kind == "cuda" and torch.cuda.is_available():
                self._x = self._x.pin_memory()  # as a run's input is: uploads overlap compute
        return self._x

    def run(self, batch: int) -> tuple[float, float]:
        """(exec_ms, io_ms) of one inference of `batch` images (see the module docstring)."""
        x = self.inputs(batch)
        try:
            t0 = time.perf_counter()
            call = self.handle.submit_batch(x)
            submit_ms = (time.perf_counter() - t0) * 1e3
            y, timing = call.result()
        except ManipleError as exc:
            if is_out_of_memory(exc):
                release_cached_memory(self.handle)
                raise DeviceOutOfMemory(self.handle.name, batch, _first_line(exc)) from exc
            raise
        self.last_timing = timing
        total = submit_ms + timing.elapsed_ms
        io = min(total, self._io_ms(timing, submit_ms, x.numel() * x.element_size() + _nbytes(y)))
        return total - io, io

    def _io_ms(self, timing: CallTiming, submit_ms: float, nbytes: int) -> float:
        spec = self.handle.spec
        if timing.emulated:
            return submit_ms + timing.link_ms + timing.overhead_ms
        if spec.is_ray:
            return submit_ms + timing.overhead_ms
        if spec.kind == "cpu":
            return 0.0
        return self.handle.transfer(nbytes).device_ms


def _nbytes(y: torch.Tensor) -> int:
    return y.numel() * y.element_size() if isinstance(y, torch.Tensor) else 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
