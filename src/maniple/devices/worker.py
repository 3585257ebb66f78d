"""The one `Worker`: holds a model on one device, runs whole batches and row-band spans,
and times what it runs.

Why one class: the same code runs in this process for local devices (on a thread of its
own, see handles.py) and inside a Ray actor for Ray and emulated devices (wrapped with
ray.remote in exactly one place, ray_backend.py). It never imports Ray, so local devices
work where Ray is not installed. The model is built once from a `ModelSpec` (or given as
an nn.Module in-process) and never re-sent per call.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from maniple.devices.emulated import BoardClock, ComputeTimes
from maniple.devices.model_exec import ModelExec
from maniple.devices.model_spec import ModelSpec
from maniple.devices.names import DeviceSpec, parse_device
from maniple.devices.peer_steps import PeerSteps
from maniple.devices.step import (
    LinkBytes,
    Piece,
)
from maniple.devices.sync_phases import SyncPhases
from maniple.devices.timing import CallTiming, WorkerInfo
from maniple.devices.wire import _synchronize, from_wire, to_wire
from maniple.errors import ManipleError
from maniple.precision import set_tf32

__all__ = ["Worker", "from_wire", "to_wire"]

SpanKey = tuple[int, int, tuple[int, int], tuple[int, ...]]
T = TypeVar("T")


class Worker(PeerSteps, SyncPhases):
    """Runs a model on one device. Thread-safe: calls are serialised by a lock.

    device:  a DeviceSpec or name; computation happens on `spec.torch_device`
    model:   a ModelSpec (built here) or, in-process only, an nn.Module
    threads: intra-op threads for this worker's calls (None: leave torch's setting);
             emulated boards always use 1
    clock:   the BoardClock of an emulated board (None for a real device)
    numpy_out: return outputs as numpy arrays where the dtype allows (set in a Ray actor:
             Ray moves arrays without pickling; six 340 KB calls took 9 ms instead of 17
             here); inputs may always be tensors or numpy arrays
    """

    def __init__(
        self,
        device: str | DeviceSpec = "cpu",
        model: ModelSpec | nn.Module | None = None,
        *,
        threads: int | None = None,
        clock: BoardClock | None = None,
        input_shape: tuple[int, int, int] | None = None,
        warmup: bool = True,
        numpy_out: bool = False,
    ) -> None:
        self.spec = parse_device(device)
        self.clock = clock
        self.numpy_out = numpy_out
        if self.spec.is_emulated and clock is None:
            raise ManipleError(f"emulated device {self.spec.name!r} needs a BoardClock")
        self.threads = 1 if clock is not None else (threads or self.spec.threads)
        self.device = torch.device(self.spec.torch_device)
        if self.device.type == "cuda":  # fp32 is strict: a split must equal one device
            set_tf32(self.spec.exec_mode.precision == "tf32")
        self._lock = threading.Lock()
        self._module: nn.Module | None = None
        self._exec: ModelExec | None = None  # the module as the device's ExecMode runs it
        self._input_shape: tuple[int, int, int] | None = None
        self._network: str | None = None
        self._spans: dict[SpanKey, Callable[[torch.Tensor], torch.Tensor]] = {}
        self._fastest: dict[Hashable, float] = {}  # emulated: least CPU ms per piece of work
        self._held: tuple[int, tuple[int, int], torch.Tensor] | None = None  # peer: kept output
        self._paused: dict = {}  # spans waiting at a sync point (sync_phases.py)
        self._exchange: Any = None  # how partials are swapped mid-call (sync_exchange.py)
        self._link_bytes = LinkBytes()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
            if clock is not None:
                try:
                    torch.set_num_interop_threads(1)
                except RuntimeError:  # already set in this process
                    pass
        if model is not None:
            self.load(model, input_shape=input_shape, warmup=warmup)

    # -- model ---------------------------------------------------------------------------
    def load(
        self,
        model: ModelSpec | nn.Module,
        *,
        input_shape: tuple[int, int, int] | None = None,
        warmup: bool = True,
    ) -> WorkerInfo:
        """Hold `model` (replacing any other); one untimed warm-up forward at batch 1."""
        with self._lock:
            self._apply_threads()
            if isinstance(model, ModelSpec):
                built = model.build()
                module, shape, name = built.module, built.input_shape, built.name
            elif isinstance(model, nn.Module):
                if input_shape is None:
                    raise ManipleError("Worker.load(module) needs input_shape=(C, H, W)")
                module, shape, name = model.eval(), tuple(input_shape), type(model).__name__
            else:
                raise ManipleError(f"Worker.load takes a ModelSpec or nn.Module, got {model!r}")
            self._exec = ModelExec(module, self.device, self.spec.exec_mode)
            self._module = self._exec.module
            self._input_shape = shape  # type: ignore[assignment]
            self._network = name
            self._spans.clear()
            self._fastest.clear()
            if warmup:
                with torch.inference_mode():  # eager: a compiled shape is built on first use
                    self._module(self._exec.cast(torch.zeros((1, *shape), device=self.device)))
                _synchronize(self.device)
        return self.info()

    @property
    def module(self) -> nn.Module:
        if self._module is None:
            raise ManipleError(
                f"device {self.spec.name!r} holds no model yet; call load(ModelSpec(...)) first"
            )
        return self._module

    def _model_exec(self) -> ModelExec:
        self.module  # noqa: B018 - raises the "holds no model yet" error
        assert self._exec is not None
        return self._exec

    # -- calls ---------------------------------------------------------------------------
    def ping(self) -> int:
        """Liveness check (answered even while a long call runs, in a Ray actor)."""
        return os.getpid()

    def set_fast_forward(self, on: bool) -> None:
        """Switch an emulated board between real time and fast-forward (profiling sweeps
        add up board time without sleeping); a real device has no clock to switch."""
        if self.clock is not None:
            with self._lock:
                self.clock = dataclasses.replace(self.clock, fast_forward=bool(on))

    def set_slowdown(self, factor: float) -> None:
        """Make an emulated board `factor` times slower from its next call on (1: as
        calibrated), for benchmarks of a board that slows down mid-run."""
        if self.clock is None:
            raise ManipleError(
                f"device {self.spec.name!r} is not an emulated board: it has no clock to slow"
            )
        with self._lock:
            self.clock = dataclasses.replace(self.clock, slowdown=float(factor))

    def info(self) -> WorkerInfo:
        node_id = node_ip = None
        ray = sys.modules.get("ray")  # only set inside a Ray worker; never imported here
        if ray is not None and ray.is_initialized():
            ctx = ray.get_runtime_context()
            node_id = ctx.get_node_id()
            node_ip = ray.util.get_node_ip_address()
        return WorkerInfo(
            device=self.spec.name,
            torch_device=str(self.device),
            pid=os.getpid(),
            hostname=socket.gethostname(),
            node_id=node_id,
            node_ip=node_ip,
            threads=self.threads or torch.get_num_threads(),
            torch_version=torch.__version__,
            network=self._network,
            board=self.spec.board.preset if self.spec.board else None,
            dilation=self.clock.dilation if self.clock else 1.0,
        )

    def run_batch(
        self, x: torch.Tensor | np.ndarray, *, link: bool = True, concurrent: int = 1
    ) -> tuple[torch.Tensor | np.ndarray, CallTiming]:
        """The whole model on batch `x` (N, C, H, W); output on the CPU, and its timing.
        On an emulated board `link` charges the input and output bytes to its link."""
        key = ("batch", tuple(x.shape))
        self._build(tuple(x.shape))
        return self._timed("batch", x, self._model_exec().run_host, link, concurrent, key)

    def build_times(self) -> dict[str, float]:
        """Compile (or CUDA-graph capture) time per input shape built so far, in ms: spent
        before the first timed call of each shape, never inside one."""
        with self._lock:
            built = self._exec.build_ms if self._exec is not None else {}
            return {"x".join(map(str, shape)): ms for shape, ms in built.items()}

    def run_span(
        self,
        first: int,
        last: int,
        out_rows: tuple[int, int],
        x_band: torch.Tensor | np.ndarray,
        *,
        link: bool = True,
        concurrent: int = 1,
        solo: bool = False,
        peers: tuple[str, ...] = (),
    ) -> tuple[torch.Tensor | np.ndarray | Piece, CallTiming]:
        """Units first..last on an input row band, giving output rows out_rows=(a, b).
        The band program (maniple.tiling.SpanProgram) is built on first use and cached per
        (first, last, out_rows, band shape).

        A span with sync points stops at the first one and returns this band's partial
        (continue with `resume_span`), unless `solo`: then each sync point takes this band's
        partial alone, the same work (what profiling times) but exact only on the whole map.
        With `peers` (the group's devices, in order) the partials are swapped with them
        mid-call instead, and the call returns the output band.
        """
        out_rows = (int(out_rows[0]), int(out_rows[1]))
        key = (first, last, out_rows, tuple(x_band.shape))
        program = self._span_program(*key)
        if program.sync_points and peers and not solo:
            return self._timed("span", x_band, None, link, concurrent, ("span", *key), peers)
        if program.sync_points and not solo:
            return self._start_synced(program, x_band, link, concurrent, ("span", *key))
        run = program.run_solo if program.sync_points else program
        return self._timed(
            "span", x_band, lambda xb: run(xb.to(self.device)), link, concurrent, ("span", *key)
        )

    def transfer(self, nbytes: int, *, concurrent: int = 1, payload: Any = None) -> CallTiming:
        """Charge `nbytes` to the link: on an emulated board, sleep the dilated link time;
        on a GPU, copy that many bytes host-to-device; elsewhere nothing. (A real remote
        worker's handle ships `nbytes` as `payload` and times the trip itself.)"""
        del payload  # its transport is the measurement
        with self._lock:
            start, w0 = time.time(), time.perf_counter()
            link_ms = 0.0
            if self.clock is not None:
                link_ms = self.clock.link(int(nbytes), concurrent)
            elif self.device.type != "cpu" and nbytes > 0:
                torch.empty(int(nbytes), dtype=torch.uint8).to(self.device)
                _synchronize(self.device)
            wall = (time.perf_counter() - w0) * 1e3
            return CallTiming(
                device=self.spec.name,
                op="transfer",
                wall_ms=wall,
                compute_ms=0.0 if self.clock is not None else wall,
                board_ms=0.0 if self.clock is not None else None,
                link_ms=link_ms,
                dilation=self.clock.dilation if self.clock else 1.0,
                fast_forward=bool(self.clock and self.clock.fast_forward),
                start_s=start,
                end_s=time.time(),
                pid=os.getpid(),
            )

    def link_bytes(self, reset: bool = False) -> dict[str, dict[str, int]]:
        """Bytes this device's link carried under the peer runtime, by peer: {'sent': {dest:
        bytes}, 'received': {source: bytes}} (wire bytes, after any encoding)."""
        with self._lock:
            counts = self._link_bytes.to_dict()
            if reset:
                self._link_bytes = LinkBytes()
            return counts

    # -- internals -----------------------------------------------------------------------
    def _build(self, batch_shape: tuple[int, ...]) -> None:
        """Compile (or capture) every chunk shape a host batch of `batch_shape` runs in,
        before its call is timed; nothing to do for an eager device."""
        with self._lock:
            ex = self._exec
            if ex is None or ex.mode.compile == "off":
                return
            with torch.inference_mode():
                for shape in ex.chunk_shapes(batch_shape):
                    ex.ensure_built(shape)

    def _apply_threads(self) -> None:
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def _span_program(
        self, first: int, last: int, out_rows: tuple[int, int], band_shape: tuple[int, ...]
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        key: SpanKey = (first, last, out_rows, band_shape)
        program = self._spans.get(key)
        if program is None:
            try:
                from maniple.tiling import SpanProgram
            except ImportError as exc:
                raise ManipleError(
                    "run_span needs maniple.tiling.SpanProgram, which is not available"
                ) from exc
            assert self._input_shape is not None
            if self.device.type != "cpu" or self._exec.dtype != torch.float32:
                # The layer graph is captured with a float32 CPU sample: capture on the CPU
                # once (graph_of caches it per module), then move the weights back.
                from maniple.tiling import graph_of

                try:  # in float32: bf16/fp16 weights round-trip through it exactly
                    graph_of(self.module.to("cpu", torch.float32), self._input_shape)
                finally:
                    self._exec.restore()
            program = SpanProgram(self.module, self._input_shape, first, last, out_rows=out_rows)
            self._spans[key] = program
        return program

    def _timed(
        self,
        op: str,
        x: torch.Tensor | np.ndarray,
        fn: Callable[[torch.Tensor], torch.Tensor] | None,
        link: bool,
        concurrent: int,
        key: Any,
        peers: tuple[str, ...] = (),
    ) -> tuple[torch.Tensor | np.ndarray, CallTiming]:
        if isinstance(x, np.ndarray):
            x = from_wire(x)
        if not isinstance(x, torch.Tensor):
            raise ManipleError(
                f"device {self.spec.name!r}: {op} input must be a tensor, got {type(x)}"
            )
        with self._lock:
            self._apply_threads()
            clock = self.clock
            start, w0 = time.time(), time.perf_counter()
            link_ms = 0.0
            if clock is not None and link:
                link_ms += clock.link(x.numel() * x.element_size(), concurrent)

            def compute() -> torch.Tensor:
                with torch.inference_mode():
                    y = fn(x)  # type: ignore[misc]
                    _synchronize(self.device)
                    return y.to("cpu")

            if peers:  # a span with sync points, partials swapped with its peers mid-call
                program = self._span_program(*key[1:])
                run, times, swap_ms = self._run_swapping(program, x.to(self.device), peers, key)
                y, link_ms = run.output.to("cpu"), link_ms + swap_ms
            else:
                y, times = self._measure(compute, key)
            if clock is not None and link:
                link_ms += clock.link(y.numel() * y.element_size(), concurrent)
            timing = self._timing(op, times, link_ms, start, w0)
            return (to_wire(y) if self.numpy_out else y), timing

    def _measure(self, compute: Callable[[], T], key: Hashable) -> tuple[T, ComputeTimes]:
        """Run `compute` on the board's clock (emulated), or timed as it runs (real)."""
        if self.clock is not None:
            return self.clock.compute(compute, self._network, key, self._fastest)
        c0, t0 = time.thread_time(), time.perf_counter()
        out = compute()
        cpu_ms = (time.thread_time() - c0) * 1e3
        return out, ComputeTimes(None, (time.perf_counter() - t0) * 1e3, cpu_ms, 0.0, 0.0)

    def _timing(
        self, op: str, times: ComputeTimes, link_ms: float, start: float, w0: float
    ) -> CallTiming:
        """The timing of a call that started at `start` (time.time) / `w0` (perf_counter)."""
        clock = self.clock
        return CallTiming(
            device=self.spec.name,
            op=op,
            wall_ms=(time.perf_counter() - w0) * 1e3,
            compute_ms=times.compute_ms,
            cpu_ms=times.cpu_ms,
            board_ms=times.board_ms,
            link_ms=link_ms,
            overrun_ms=times.overrun_ms,
            queue_ms=times.queue_ms,
            dilation=clock.dilation if clock else 1.0,
            fast_forward=bool(clock and clock.fast_forward),
            start_s=start,
            end_s=time.time(),
            pid=os.getpid(),
        )
