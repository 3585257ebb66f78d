"""Device handles: one interface to a device whether it runs in this process or in a Ray
actor, and `Call`, a call in flight.

Why: the runtime and the profiler submit work to several devices at once and then wait;
a handle hides whether the worker is a thread here (local CPU/GPU) or a process elsewhere
(Ray, emulated boards), and a Call turns every failure into a ManipleError that names the
device, within a bounded time.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from maniple.devices.model_spec import ModelSpec
from maniple.devices.names import DeviceSpec
from maniple.devices.shaped_link import ShapedLink
from maniple.devices.step import Piece, StepOrder
from maniple.devices.timing import CallTiming, WorkerInfo
from maniple.devices.worker import Worker
from maniple.errors import ManipleError

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 30.0


def add_overhead(value: Any, caller_ms: float) -> Any:
    """Fill in overhead_ms on the CallTiming inside a call's result."""
    if isinstance(value, CallTiming):
        return value.with_overhead(caller_ms)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], CallTiming):
        return value[0], value[1].with_overhead(caller_ms)
    return value


def device_error(device: str, method: str, exc: BaseException) -> ManipleError:
    """A ManipleError naming the device for an error raised inside its worker."""
    if isinstance(exc, ManipleError):
        return exc
    return ManipleError(f"device {device!r}: {method} failed: {type(exc).__name__}: {exc}")


class Call(ABC, Generic[T]):
    """A call in flight on one device."""

    device: str
    method: str

    @abstractmethod
    def result(self, timeout: float | None = None) -> T:
        """Wait for the result; ManipleError naming the device on failure or timeout."""

    @abstractmethod
    def done(self) -> bool:
        """True once the result (or error) is ready."""


class DeviceHandle(ABC):
    """What callers hold for a device: the same methods for local, Ray and emulated ones.

    timeout_s bounds how long a dead or silent worker can go unnoticed.
    """

    spec: DeviceSpec
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dilation(self) -> float:
        return 1.0

    @property
    def shaped_link(self) -> ShapedLink | None:
        """An emulated board's real link on the testbed (None: no such link)."""
        return getattr(getattr(self, "_clock", None), "real_link", None)

    @abstractmethod
    def _submit(self, method: str, *args: Any, **kwargs: Any) -> Call[Any]:
        """Start `Worker.method(*args, **kwargs)` on the worker."""

    @abstractmethod
    def close(self) -> None:
        """Release the worker (idempotent)."""

    # -- asynchronous ------------------------------------------------------------------------
    def submit_batch(
        self, x: torch.Tensor, *, link: bool = True, concurrent: int = 1
    ) -> Call[tuple[torch.Tensor, CallTiming]]:
        return self._submit("run_batch", x, link=link, concurrent=concurrent)

    def submit_span(
        self,
        first: int,
        last: int,
        out_rows: tuple[int, int],
        x_band: torch.Tensor,
        *,
        link: bool = True,
        concurrent: int = 1,
        solo: bool = False,
        peers: tuple[str, ...] = (),
    ) -> Call[tuple[Any, CallTiming]]:
        """Start `Worker.run_span`. A span with sync points answers its first partial
        (continue with `submit_resume`) unless `solo` (profiling: its own partials) or
        `peers` (swapped with them mid-call, `prepare_swap` first)."""
        return self._submit(
            "run_span",
            first,
            last,
            tuple(out_rows),
            x_band,
            link=link,
            concurrent=concurrent,
            solo=solo,
            peers=tuple(peers),
        )

    def submit_resume(
        self,
        first: int,
        last: int,
        out_rows: tuple[int, int],
        combined: Any,
        *,
        concurrent: int = 1,
    ) -> Call[tuple[Any, CallTiming]]:
        """Start `Worker.resume_span`: the next phase of a span paused at a sync point."""
        return self._submit(
            "resume_span", first, last, tuple(out_rows), combined, concurrent=concurrent
        )

    transport = "none"
    """How pieces of a peer schedule travel between this device's worker and others':
    'local' (threads of this process) or 'ray' (object references); a peer schedule runs
    on devices of one transport."""

    def submit_step(self, order: StepOrder, pieces: Sequence[Any], phase: int = 0) -> StepCall:
        """Start one step of a peer schedule (`Worker.run_step`). `pieces` are `Piece`s from
        the coordinator or tokens from other steps' `StepCall.pieces` of this transport
        (after phase 0 of a step with sync points: its peers' partials)."""
        raise ManipleError(f"device {self.name!r} cannot run peer steps; use the star runtime")

    def submit_transfer(self, nbytes: int, *, concurrent: int = 1) -> Call[CallTiming]:
        return self._submit("transfer", int(nbytes), concurrent=concurrent)

    # -- blocking ----------------------------------------------------------------------------
    def run_batch(
        self, x: torch.Tensor, *, link: bool = True, concurrent: int = 1
    ) -> tuple[torch.Tensor, CallTiming]:
        """The whole model on batch x; (output on CPU, timing)."""
        return self.submit_batch(x, link=link, concurrent=concurrent).result()

    def run_span(
        self,
        first: int,
        last: int,
        out_rows: tuple[int, int],
        x_band: torch.Tensor,
        *,
        link: bool = True,
        concurrent: int = 1,
    ) -> tuple[torch.Tensor, CallTiming]:
        """Units first..last on an input band, giving output rows out_rows."""
        return self.submit_span(
            first, last, out_rows, x_band, link=link, concurrent=concurrent
        ).result()

    def transfer(self, nbytes: int, *, concurrent: int = 1) -> CallTiming:
        """Charge nbytes to the device's link (see Worker.transfer)."""
        return self.submit_transfer(nbytes, concurrent=concurrent).result()

    def submit_load(
        self,
        model: ModelSpec | nn.Module,
        *,
        input_shape: tuple[int, int, int] | None = None,
        warmup: bool = True,
    ) -> Call[WorkerInfo]:
        """Start shipping the model to the worker (to load several devices at once)."""
        return self._submit("load", model, input_shape=input_shape, warmup=warmup)

    def load(
        self,
        model: ModelSpec | nn.Module,
        *,
        input_shape: tuple[int, int, int] | None = None,
        warmup: bool = True,
    ) -> WorkerInfo:
        """Ship the model to the worker once (an nn.Module only to a local device); it
        builds it and runs one untimed warm-up."""
        return self.submit_load(model, input_shape=input_shape, warmup=warmup).result()

    def link_bytes(self, reset: bool = False) -> dict[str, dict[str, int]]:
        """The bytes this device's link carried under the peer runtime (Worker.link_bytes)."""
        return self._submit("link_bytes", reset).result()

    def build_times(self) -> dict[str, float]:
        """Compile time per input shape built so far, ms (Worker.build_times)."""
        return self._submit("build_times").result()

    def set_fast_forward(self, on: bool) -> None:
        """Emulated boards: skip the sleeps (True) or keep real time (False)."""
        self._submit("set_fast_forward", bool(on)).result()

    def set_slowdown(self, factor: float) -> None:
        """Emulated boards: `factor` times slower from the next call (Worker.set_slowdown)."""
        self._submit("set_slowdown", float(factor)).result()

    def info(self) -> WorkerInfo:
        return self._submit("info").result()

    def __enter__(self) -> DeviceHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def local_result(
    future: Future[tuple[Any, float]], device: str, method: str, timeout: float | None
) -> tuple[Any, float]:
    """(value, caller ms) of a call on a local device's thread; a ManipleError naming the
    device on failure or timeout."""
    try:
        return future.result(timeout)
    except FutureTimeout:
        raise ManipleError(
            f"device {device!r}: {method} gave no result within {timeout:g} s"
        ) from None
    except Exception as exc:
        raise device_error(device, method, exc) from exc


class StepCall(ABC):
    """A peer step in flight: its timing, and tokens for the pieces it will return (one per
    destination of its order) to hand to other devices' steps without waiting."""

    device: str
    pieces: tuple[Any, ...]

    @abstractmethod
    def result(self, timeout: float | None = None) -> CallTiming:
        """Wait for the step's timing; ManipleError naming the device on failure."""

    @abstractmethod
    def values(self, timeout: float | None = None) -> list[Piece]:
        """The pieces themselves (for the coordinator: the gathered bands)."""


class LocalPiece:
    """Piece `index` of a local step's result, resolved by whichever thread needs it."""

    def __init__(self, future: Future[tuple[Any, float]], index: int) -> None:
        self._future, self._index = future, index

    def get(self, timeout: float | None = None) -> Piece:
        return self._future.result(timeout)[0][self._index]


class LocalStepCall(StepCall):
    def __init__(self, future: Future[tuple[Any, float]], device: str, n_out: int) -> None:
        self._future, self.device = future, device
        self.pieces = tuple(LocalPiece(future, i + 1) for i in range(n_out))

    def result(self, timeout: float | None = None) -> CallTiming:
        value, caller_ms = local_result(self._future, self.device, "run_step", timeout)
        return value[0].with_overhead(caller_ms)

    def values(self, timeout: float | None = None) -> list[Piece]:
        self.result(timeout)
        return [p.get(timeout) for p in self.pieces]


class LocalCall(Call[T]):
    """A call on a local device's thread."""

    def __init__(self, future: Future[tuple[T, float]], device: str, method: str) -> None:
        self._future, self.device, self.method = future, device, method

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: float | None = None) -> T:
        value, caller_ms = local_result(self._future, self.device, self.method, timeout)
        return add_overhead(value, caller_ms)


class LocalHandle(DeviceHandle):
    """A device of this process (cpu, cuda:N, xpu:N, mps), with a thread of its own, so that
    a CPU and a GPU compute at the same time."""

    def __init__(
        self,
        spec: DeviceSpec,
        model: ModelSpec | nn.Module | None = None,
        *,
        threads: int | None = None,
        input_shape: tuple[int, int, int] | None = None,
    ) -> None:
        if not spec.is_local:
            raise ManipleError(f"device {spec.name!r} is not a local device")
        self.spec = spec
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(
            1, thread_name_prefix=f"maniple-{spec.name}"
        )
        # Built on its own thread, so its torch thread setting applies there.
        self._worker: Worker = self._pool.submit(Worker, spec, None, threads=threads).result()
        if model is not None:
            self.load(model, input_shape=input_shape)

    @property
    def worker(self) -> Worker:
        return self._worker

    def _submit(self, method: str, *args: Any, **kwargs: Any) -> Call[Any]:
        if self._pool is None:
            raise ManipleError(f"device {self.name!r} is closed")
        bound = getattr(self._worker, method)

        def run() -> tuple[Any, float]:
            t0 = time.perf_counter()
            value = bound(*args, **kwargs)
            return value, (time.perf_counter() - t0) * 1e3

        return LocalCall(self._pool.submit(run), self.name, method)

    transport = "local"

    def submit_step(self, order: StepOrder, pieces: Sequence[Any], phase: int = 0) -> StepCall:
        if self._pool is None:
            raise ManipleError(f"device {self.name!r} is closed")
        worker, timeout = self._worker, self.timeout_s

        def run() -> tuple[Any, float]:
            given = [p.get(timeout) if isinstance(p, LocalPiece) else p for p in pieces]
            t0 = time.perf_counter()
            value = worker.run_step(order, *given, phase=phase)
            return value, (time.perf_counter() - t0) * 1e3

        return LocalStepCall(self._pool.submit(run), self.name, order.outputs(phase))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
