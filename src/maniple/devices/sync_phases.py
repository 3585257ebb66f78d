"""The worker's side of sync points: a span that pauses at each one for the group's partials.

Why apart from `worker.py`: a span with sync points (squeeze-and-excitation's global pool)
cannot run in one call. Its band reduces the rows it owns, and only when every band's
partial is combined can it go on; so the worker keeps the paused run (`SpanRun`) between
calls, one call per phase. On the star runtime the coordinator combines the partials and
sends the result back (`resume_span`); on the peer runtime each device gets every peer's
partial by reference and combines them itself, in device order, so all get the same
values (`run_step` with `phase` > 0). Each phase is timed on its own: on an emulated board
its compute on the board's clock, the partials on its link.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any

import numpy as np
import torch

from maniple.devices.step import (
    COORDINATOR,
    Piece,
    StepOrder,
    charge_in,
    charge_out,
    cut_pieces,
    fetch,
    kept_rows,
    make_partial,
    open_partial,
    share,
    step_input,
)
from maniple.devices.timing import CallTiming
from maniple.devices.wire import _synchronize, from_wire, to_wire
from maniple.errors import ManipleError

PausedKey = tuple[str, int, int, tuple[int, int]]


class SyncPhases:
    """Mixed into `Worker`: the phases of spans and peer steps with sync points."""

    # Provided by Worker.
    _lock: Any
    _paused: dict[PausedKey, tuple[Any, Hashable, int]]
    clock: Any
    device: torch.device
    numpy_out: bool
    spec: Any
    _held: Any
    _link_bytes: Any

    _exchange: Any

    def _measure(self, compute: Any, key: Hashable) -> Any: ...  # pragma: no cover
    def _timing(self, *args: Any) -> CallTiming: ...  # pragma: no cover
    def _apply_threads(self) -> None: ...  # pragma: no cover

    # -- the fast path: partials swapped mid-call (sync_exchange.py) --------------------
    def exchange_address(self) -> tuple[str, int]:
        """An address and a free port of this worker's host, for the group to meet at."""
        import socket

        info = self.info()  # type: ignore[attr-defined]
        host = info.node_ip or "127.0.0.1"
        with socket.socket() as sock:
            sock.bind((host, 0))
            return host, int(sock.getsockname()[1])

    def join_exchange(
        self, address: str, port: int, rank: int, ranks: dict[str, int], timeout_s: float
    ) -> bool:
        """Join the cluster's gloo group (every device at once; blocks until all have)."""
        from maniple.devices.sync_exchange import GlooExchange

        self._exchange = GlooExchange.join(address, port, rank, ranks, timeout_s)
        return True

    def set_exchange(self, exchange: Any) -> None:
        """In-process only: share a `LocalExchange` with the other local workers."""
        self._exchange = exchange

    def _run_swapping(
        self, program: Any, x: torch.Tensor, peers: tuple[str, ...], key: Any
    ) -> tuple[Any, Any, float]:
        """Run a span with sync points to its end in this call, swapping each sync point's
        partials with `peers` (device order, this one included). (run, compute times
        summed over the phases, link ms of the swaps). Call with the lock held."""
        from maniple.devices.emulated import ComputeTimes
        from maniple.devices.sync_exchange import exchange_tag
        from maniple.tiling.sync import combine

        def first() -> Any:
            with torch.inference_mode():
                run = program.start(x)
                _synchronize(self.device)
                return run

        run, times = self._measure(first, (*key, "phase", 0))
        phase, link_ms, name = 0, 0.0, self.spec.name
        while run.pending is not None:
            tag = exchange_tag(program.first, phase)
            partials = self._exchange.swap(name, peers, tag, run.partial)
            if self.clock is not None:
                size = run.partial.numel() * 4 * (len(peers) - 1)
                link = self.clock.board.link
                link_ms += self.clock.wait(link.exchange_ms(size, link.wire_ms(size)))
            for p in peers:
                if p != name:
                    self._link_bytes.add("sent", p, run.partial.numel() * 4)
                    self._link_bytes.add("received", p, run.partial.numel() * 4)
            phase += 1
            total = combine(
                [p.to(self.device) for p in partials], run.program.graph.node(run.pending).sync
            )

            def resume(total: torch.Tensor = total, run: Any = run) -> Any:
                with torch.inference_mode():
                    run.resume(total)
                    _synchronize(self.device)
                    return run

            run, more = self._measure(resume, (*key, "phase", phase))
            times = ComputeTimes(
                None if times.board_ms is None else times.board_ms + (more.board_ms or 0.0),
                times.compute_ms + more.compute_ms,
                times.cpu_ms + more.cpu_ms,
                times.overrun_ms + more.overrun_ms,
                times.queue_ms + more.queue_ms,
            )
        return run, times, link_ms

    # -- star: the coordinator combines -------------------------------------------------
    def _start_synced(
        self, program: Any, x: torch.Tensor | np.ndarray, link: bool, concurrent: int, key: Any
    ) -> tuple[Any, CallTiming]:
        """Phase 0 of a span with sync points: run to the first one, keep the run, and
        return this band's partial (a `Piece` of rows (0, 0))."""
        x = from_wire(x) if isinstance(x, np.ndarray) else x
        with self._lock:
            self._apply_threads()
            start, w0 = time.time(), time.perf_counter()
            link_ms = (
                self.clock.link(x.numel() * x.element_size(), concurrent)
                if (self.clock is not None and link)
                else 0.0
            )

            def compute() -> Any:
                with torch.inference_mode():
                    run = program.start(x.to(self.device))
                    _synchronize(self.device)
                    return run

            run, times = self._measure(compute, (*key, "phase", 0))
            return self._phase_result(
                run, ("span", *key[1:4]), key, 1, link, concurrent, times, link_ms, start, w0
            )

    def resume_span(
        self,
        first: int,
        last: int,
        out_rows: tuple[int, int],
        combined: Piece,
        *,
        link: bool = True,
        concurrent: int = 1,
    ) -> tuple[Any, CallTiming]:
        """The next phase of a paused span: carry on with the combined partials (from the
        coordinator), to the next sync point (its partial) or the end (the output band)."""
        slot: PausedKey = ("span", first, last, (int(out_rows[0]), int(out_rows[1])))
        with self._lock:
            run, key, phase = self._take_paused(slot)
            start, w0 = time.time(), time.perf_counter()
            value = open_partial(combined, self.spec.name, COORDINATOR)
            link_ms = (
                self.clock.link(value.numel() * 4, concurrent)
                if (self.clock is not None and link)
                else 0.0
            )

            def compute() -> Any:
                with torch.inference_mode():
                    run.resume(value.to(self.device))
                    _synchronize(self.device)
                    return run

            run, times = self._measure(compute, (*key, "phase", phase))
            return self._phase_result(
                run, slot, key, phase + 1, link, concurrent, times, link_ms, start, w0
            )

    def _phase_result(
        self,
        run: Any,
        slot: PausedKey,
        key: Any,
        phase: int,
        link: bool,
        concurrent: int,
        times: Any,
        link_ms: float,
        start: float,
        w0: float,
    ) -> tuple[Any, CallTiming]:
        if run.pending is not None:
            self._paused[slot] = (run, key, phase)
            out: Any = make_partial(self.spec.name, run.partial)
            nbytes = run.partial.numel() * run.partial.element_size()
        else:
            y = run.output.to("cpu")
            out = to_wire(y) if self.numpy_out else y
            nbytes = y.numel() * y.element_size()
        if self.clock is not None and link:
            link_ms += self.clock.link(nbytes, concurrent)
        return out, self._timing("span", times, link_ms, start, w0)

    def _take_paused(self, slot: PausedKey) -> tuple[Any, Hashable, int]:
        try:
            return self._paused.pop(slot)
        except KeyError:
            raise ManipleError(
                f"device {self.spec.name!r}: no span of units {slot[1]}..{slot[2]} rows "
                f"{slot[3]} waits at a sync point here; start it first (run the phases in order)"
            ) from None

    # -- peer: every device combines ----------------------------------------------------
    def _step_phase(
        self, order: StepOrder, pieces: tuple[Any, ...], phase: int, program: Any, key: Any
    ) -> tuple[Any, ...]:
        """Phase `phase` of a peer step with sync points: 0 assembles the input and runs to
        the first sync point; later phases combine every peer's partial and go on. Returns
        (timing, partial) before the last phase, (timing, *pieces) after it."""
        name, clock = self.spec.name, self.clock
        slot: PausedKey = ("step", order.first, order.last, order.out_rows)
        with self._lock:
            self._apply_threads()
            if self.numpy_out:
                pieces = tuple(fetch(pieces))  # before the clock: Ray's time, counted whole
            start, w0 = time.time(), time.perf_counter()
            if phase == 0:
                link_ms = charge_in(clock, order, pieces, self._link_bytes)
                run = None
            else:
                run, key, expected = self._take_paused(slot)
                if expected != phase:
                    raise ManipleError(
                        f"device {name!r}: phase {phase} of the step of units "
                        f"{order.first}..{order.last} came, phase {expected} was due"
                    )
                link_ms = self._charge_partials(order, pieces)
            partials = (
                [open_partial(p, name, src) for p, src in zip(pieces, order.peers, strict=True)]
                if phase
                else []
            )

            def compute() -> Any:
                with torch.inference_mode():
                    if run is None:
                        own = kept_rows(self._held, order, name)
                        r = program.start(step_input(order, pieces, own, self.device, name))
                    else:
                        node = run.program.graph.node(run.pending)
                        from maniple.tiling.sync import combine

                        r = run
                        r.resume(combine([p.to(self.device) for p in partials], node.sync))
                    out = cut_pieces(order, r.output, name) if r.pending is None else None
                    _synchronize(self.device)
                    return r, out

            (run, out), times = self._measure(compute, (*key, "phase", phase))
            if run.pending is not None:
                self._paused[slot] = (run, key, phase + 1)
                part = make_partial(name, run.partial)
                for peer in order.peers:
                    if peer != name:
                        self._link_bytes.add("sent", peer, part.wire_bytes)
                if clock is not None:
                    others = max(0, len(order.peers) - 1)
                    part = Piece(
                        name, (0, 0), part.data, clock.board.link.wire_ms(part.wire_bytes * others)
                    )
                timing = self._timing("step", times, link_ms, start, w0)
                shared = share([part], [name]) if self.numpy_out else [part]
                return (timing, *shared)
            self._held = (order.last, order.out_rows, run.output)
            out, out_ms = charge_out(clock, order, out, self._link_bytes)
            timing = self._timing("step", times, link_ms + out_ms, start, w0)
            if self.numpy_out:
                out = share(out, order.dests)
            return (timing, *out)

    def _charge_partials(self, order: StepOrder, pieces: tuple[Any, ...]) -> float:
        """Count the peers' partials on this link and, on a board, wait for them."""
        down, up_ms = 0, 0.0
        for p, src in zip(pieces, order.peers, strict=True):
            if src != self.spec.name:
                self._link_bytes.add("received", src, p.wire_bytes)
                down += p.wire_bytes
                up_ms = max(up_ms, float(p.up_ms))
        if self.clock is None:
            return 0.0
        return self.clock.wait(self.clock.board.link.exchange_ms(down, up_ms))
