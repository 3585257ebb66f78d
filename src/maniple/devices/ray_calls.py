"""Calls in flight on Ray actors: a plain call, and a peer step whose pieces stay object
references.

Why apart from ray_backend: the session and the actor's life are one job, waiting on a
call (pinging the actor meanwhile, so a dead board is named within its timeout) another.
Ray is imported inside the methods, as in ray_backend, so importing this module never
imports Ray.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from maniple.devices.handles import Call, StepCall, add_overhead
from maniple.devices.remote_calls import CONTROL, POLL_S, Liveness
from maniple.devices.step import Piece
from maniple.devices.timing import CallTiming
from maniple.errors import ManipleError

RayHandle = Any  # maniple.devices.ray_backend.RayHandle (which imports this module)


class RayCall(Call[Any]):
    """A call on a Ray actor. While waiting, the actor is pinged on its control group; if it
    dies, or answers no ping for `timeout_s`, the call fails naming the device."""

    def __init__(
        self,
        handle: RayHandle,
        method: str,
        ref: Any,
        t0: float,
        finish: Callable[[Any, float], Any] = add_overhead,
    ) -> None:
        self._handle, self.method, self._ref = handle, method, ref
        self.device = handle.name
        self._t0 = t0  # before the arguments were serialised
        self._finish = finish
        self._t_ready: float | None = None
        ref.future().add_done_callback(lambda _future: self._mark_ready())

    def _mark_ready(self) -> None:
        self._t_ready = time.perf_counter()

    def done(self) -> bool:
        import ray

        ready, _ = ray.wait([self._ref], timeout=0)
        return bool(ready)

    def result(self, timeout: float | None = None) -> Any:
        import ray

        h = self._handle
        watch = Liveness(self.device, self.method, h.timeout_s, timeout, time.perf_counter())
        ping_ref = None
        while not ray.wait([self._ref], timeout=POLL_S)[0]:
            now = time.perf_counter()
            if ping_ref is not None and ray.wait([ping_ref], timeout=0)[0]:
                h._get(ray, ping_ref, "ping")  # raises if the actor died
                watch.last_alive, ping_ref = now, None
            if ping_ref is None and watch.ping_due(now):
                ping_ref = h._actor.ping.options(concurrency_group=CONTROL).remote()
                watch.ping_sent = now
            try:
                watch.check(now, h.pid)
            except ManipleError as exc:
                raise mark_failed(h, str(exc)) from None
        value = h._get(ray, self._ref, self.method)
        t_ready = self._t_ready or time.perf_counter()
        return self._finish(value, (t_ready - self._t0) * 1e3)


class RayStepCall(StepCall):
    """A peer step on a Ray actor: the timing's call, and the pieces' object references."""

    def __init__(self, handle: RayHandle, call: RayCall, refs: list[Any]) -> None:
        self._handle, self._call, self.device = handle, call, handle.name
        self.pieces = tuple(refs)

    def result(self, timeout: float | None = None) -> CallTiming:
        value = self._call.result(timeout)
        # with nothing to send, the one return value is the whole (timing,) tuple
        return value[0] if isinstance(value, tuple) else value

    def values(self, timeout: float | None = None) -> list[Piece]:
        self.result(timeout)
        return list(self._handle._get(_ray(), list(self.pieces), "run_step"))


def _ray() -> Any:
    import ray

    return ray


def wait_started(handle: RayHandle, ready_ref: Any, startup_timeout_s: float) -> None:
    """Wait for a new worker's first call (`ready_ref`: its model load) to finish.

    A worker may take long to start (a process, torch, the model), so the start as a
    whole is bounded by `startup_timeout_s`; but once the worker has answered one ping it
    is known to be up, and from then on a worker that answers none for the handle's
    `timeout_s` (stopped, hung) fails the start naming the device, instead of holding
    the run for the whole start-up bound."""
    import ray

    start = time.perf_counter()
    watch = Liveness(handle.name, "start", handle.timeout_s, None, start)
    alive = False
    ping_ref = handle._actor.ping.options(concurrency_group=CONTROL).remote()
    while not ray.wait([ready_ref], timeout=POLL_S)[0]:
        now = time.perf_counter()
        if ray.wait([ping_ref], timeout=0)[0]:
            handle._get(ray, ping_ref, "ping")  # raises if the worker died
            alive, watch.last_alive = True, now
            ping_ref = handle._actor.ping.options(concurrency_group=CONTROL).remote()
            watch.ping_sent = now
        if not alive:  # still starting: only the start-up bound applies
            watch.last_alive = now
        if now - start > startup_timeout_s:
            raise ManipleError(
                f"device {handle.name!r} did not start within {startup_timeout_s:g} s "
                "(worker process start and model build); is the node short of CPUs, "
                "GPUs or memory? `ray status` shows what is free"
            )
        watch.check(now, handle.pid)


def mark_failed(handle: RayHandle, message: str) -> ManipleError:
    """Record that `handle`'s worker died or went silent; the error to raise.

    Later calls on it then fail at once with the same words (check_usable) instead of
    each waiting out the timeout again, e.g. while the boards are set back to real time
    after the failure: one silent board costs one timeout, not several."""
    handle.failed = message
    return ManipleError(message)


def check_usable(handle: RayHandle) -> None:
    """Raise before a call on a closed handle, or on one whose worker has failed."""
    if handle.failed is not None:
        raise ManipleError(handle.failed)
    if handle._actor is None:
        raise ManipleError(f"device {handle.name!r} is closed")
