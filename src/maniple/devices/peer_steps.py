"""The worker's peer steps: one group of a peer schedule on this device.

Why apart from `worker.py`: a peer step does more than run a span (see `Worker.run_step`),
and with sync points it swaps partials mid-call or runs in phases (`sync_phases.py`); it
is one job, kept in one file. Mixed into `Worker`, whose lock, clock, held output and link
counters it uses.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from maniple.devices.step import (
    Piece,
    StepOrder,
    charge_in,
    charge_out,
    compute_step,
    cut_pieces,
    fetch,
    kept_rows,
    share,
    step_input,
)
from maniple.devices.wire import _synchronize
from maniple.errors import ManipleError


class PeerSteps:
    """Mixed into `Worker`: `run_step`."""

    _lock: Any
    _held: Any
    _link_bytes: Any
    clock: Any
    device: torch.device
    numpy_out: bool
    spec: Any

    def _apply_threads(self) -> None: ...  # pragma: no cover
    def _span_program(self, *key: Any) -> Any: ...  # pragma: no cover
    def _measure(self, compute: Any, key: Any) -> Any: ...  # pragma: no cover
    def _timing(self, *args: Any) -> Any: ...  # pragma: no cover

    # _step_phase and _run_swapping come from SyncPhases (never stub them here: this
    # class is before it in Worker's bases, so a stub would hide them)

    def run_step(self, order: StepOrder, *pieces: Piece, phase: int = 0) -> tuple[Any, ...]:
        """One group of a peer schedule: take the rows `order.own_rows` from the output this
        device kept from its previous step, add the pieces others sent, run the span, keep
        its output, and return (timing, *pieces for `order.dests`).

        On an emulated board the wait for the pieces is charged to its link first (the
        coordinator's scatter shares the coordinator's link; peers' pieces cost the slower
        of this board's downlink and the senders' uplinks), the decode, the span and the
        encode of what it sends are its compute, and bands it returns to the coordinator
        cost its link afterwards. Pieces to other devices leave at once: their link time
        travels with them (`Piece.up_ms`) and is paid by the receiver's wait.

        A span with sync points runs in `order.syncs + 1` phases (`sync_phases.py`): phase
        0 takes the pieces above, each later phase every peer's partial of the one before.
        """
        order.check(self.spec.name)
        if order.syncs and not order.swap:
            expected = len(order.sources) if phase == 0 else len(order.peers)
            if len(pieces) != expected:
                raise ManipleError(
                    f"device {self.spec.name!r}: phase {phase} of the step expects {expected} "
                    f"pieces, got {len(pieces)}"
                )
            key = ("step", order.first, order.last, order.out_rows, order.in_rows)
            program = self._span_program(order.first, order.last, order.out_rows, order.in_rows)
            return self._step_phase(order, pieces, phase, program, key)
        if len(pieces) != len(order.sources):
            raise ManipleError(
                f"device {self.spec.name!r}: the step expects {len(order.sources)} pieces, "
                f"got {len(pieces)}"
            )
        key = (
            "step",
            order.first,
            order.last,
            order.out_rows,
            order.in_rows,
            order.own_rows,
            order.piece_rows,
            order.send_rows,
            order.compress,
        )
        with self._lock:
            self._apply_threads()
            clock, name = self.clock, self.spec.name
            if self.numpy_out:  # in a Ray actor: rows from peers come by reference
                pieces = tuple(fetch(pieces))  # before the clock: Ray's time, counted whole
            start, w0 = time.time(), time.perf_counter()
            link_ms = charge_in(clock, order, pieces, self._link_bytes)
            # keyed by the input rows (the band's shape follows from them)
            program = self._span_program(order.first, order.last, order.out_rows, order.in_rows)

            def compute() -> tuple[torch.Tensor, list[Piece]]:
                own = kept_rows(self._held, order, name)
                with torch.inference_mode():
                    out = compute_step(order, pieces, own, program, self.device, name)
                    _synchronize(self.device)
                    return out

            if order.syncs:  # swap the partials with the group's devices mid-call
                own = kept_rows(self._held, order, name)
                x_in = step_input(order, pieces, own, self.device, name)
                run, times, swap_ms = self._run_swapping(program, x_in, order.peers, key)
                y, out, link_ms = run.output, cut_pieces(order, run.output, name), link_ms + swap_ms
            else:
                (y, out), times = self._measure(compute, key)
            self._held = (order.last, order.out_rows, y)
            out, out_ms = charge_out(clock, order, out, self._link_bytes)
            timing = self._timing("step", times, link_ms + out_ms, start, w0)
            if self.numpy_out:  # after the clock, as fetch is before it
                out = share(out, order.dests)
            return (timing, *out)
