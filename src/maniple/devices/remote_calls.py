"""Calls on a Worker in another process, apart from Ray itself: the actor protocol's
constants, which devices and models such a worker takes, the options its actor gets, how
tensors cross the wire, how a real transfer is timed, and when a waiting call pings its
worker or gives up.

Why apart from ray_backend: none of this needs Ray (it is arithmetic on specs, timings,
tensors and clocks), and ray_backend, the one module that imports ray, then holds only
what calls it: the session, the actor and the calls in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from maniple.devices.handles import add_overhead
from maniple.devices.model_spec import ModelSpec
from maniple.devices.names import DeviceSpec
from maniple.devices.timing import CallTiming
from maniple.devices.worker import from_wire, to_wire
from maniple.errors import ManipleError

EMULATED_NUM_CPUS = 0.01  # logical CPUs an emulated board reserves (it sleeps most of the time)
STARTUP_TIMEOUT_S = 300.0  # process start + model build of a new worker
PING_EVERY_S = 5.0  # a waiting call pings its worker this often (at most timeout_s / 3)
POLL_S = 0.25  # how long a waiting call blocks before it looks at the pings
CONTROL = "control"  # concurrency group for ping/info, answered while a call computes

# glibc malloc settings for processes whose CPU time is turned into board time. By default
# glibc maps and unmaps large tensors per call, and whether a process does (its dynamic
# mmap threshold) depends on what it allocated before: the page faults that costs moved
# MobileNet's CPU time by 45% and VGG-16's by 10% between processes here. With large
# blocks kept on the heap and never trimmed, every process pays the same (none), as a
# board running a TVM module with its memory planned ahead would.
STEADY_MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),  # glibc's maximum
    "MALLOC_TRIM_THRESHOLD_": str(2**40),
}


def actor_options(
    spec: DeviceSpec, threads: int | None, env: dict[str, str] | None
) -> tuple[dict[str, Any], DeviceSpec]:
    """The actor options of `spec`'s worker, all but where it is scheduled, and the spec
    the worker is built with (a Ray GPU actor sees its one GPU as cuda:0)."""
    options: dict[str, Any] = {"max_restarts": 0, "max_task_retries": 0}
    worker_spec = spec
    if spec.is_emulated:
        options["num_cpus"] = EMULATED_NUM_CPUS
    else:
        options["num_cpus"] = threads or spec.threads or 1
        if spec.target and spec.target.startswith("cuda"):
            # Ray gives the actor one GPU and hides the others: it is cuda:0 in there.
            options["num_gpus"] = 1
            worker_spec = replace(spec, target="cuda:0", label=spec.name)
    if env:
        options["runtime_env"] = {"env_vars": env}
    return options, worker_spec


def check_remote_device(spec: DeviceSpec, clock: Any) -> None:
    """Refuse a spec that no worker in another process runs (emulated boards need a clock)."""
    if not (spec.is_ray or spec.is_emulated):
        raise ManipleError(f"device {spec.name!r} is neither a Ray device nor emulated")
    if spec.is_emulated and clock is None:
        raise ManipleError(f"emulated device {spec.name!r} needs a BoardClock")


def check_remote_model(spec: DeviceSpec, model: Any) -> None:
    """Refuse a model that cannot be shipped to another process (only a ModelSpec can)."""
    if model is not None and not isinstance(model, ModelSpec):
        raise ManipleError(
            f"device {spec.name!r} runs in another process: give it a ModelSpec, "
            "not an nn.Module (ModelSpec(...).with_weights(module) ships weights once)"
        )


def call_finish(
    spec: DeviceSpec, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[dict[str, Any], Callable[[Any, float], Any]]:
    """The keyword arguments `method` is sent with, and how its result is finished: outputs
    back to tensors, then the overhead filled in; a transfer to a real remote device ships
    `args[0]` bytes and is timed by them (`real_transfer`)."""
    finish: Callable[[Any, float], Any] = add_overhead
    if method == "transfer" and not spec.is_emulated:
        # A real link: ship the bytes, and the time they took is the transfer's time.
        kwargs = {**kwargs, "payload": np.zeros(int(args[0]), dtype=np.uint8)}
        finish = real_transfer
    return kwargs, tensor_result(finish)


def real_transfer(timing: CallTiming, caller_ms: float) -> CallTiming:
    """A transfer to a real remote worker: its device time is the measured round trip of
    shipping the payload (no overhead left over)."""
    return replace(timing, wall_ms=caller_ms, link_ms=caller_ms, overhead_ms=0.0)


def arg_to_wire(arg: Any) -> Any:
    """Tensors cross Ray as numpy arrays (worker.to_wire); other arguments as they are."""
    return to_wire(arg) if isinstance(arg, torch.Tensor) else arg


def tensor_result(finish: Callable[[Any, float], Any]) -> Callable[[Any, float], Any]:
    """`finish`, after turning a (numpy output, timing) result back into a tensor."""

    def wrapped(value: Any, caller_ms: float) -> Any:
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], np.ndarray):
            value = (from_wire(value[0]), value[1])
        return finish(value, caller_ms)

    return wrapped


@dataclass
class Liveness:
    """When a call waiting on `device` pings its worker, and when it gives up: after
    `timeout_s` with no ping answered, or past the caller's own `timeout` (None: never).
    Times are `time.perf_counter()` seconds, from `start`."""

    device: str
    method: str
    timeout_s: float
    timeout: float | None
    start: float
    last_alive: float = field(init=False)
    ping_sent: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_alive = self.ping_sent = self.start

    def ping_due(self, now: float) -> bool:
        return now - self.ping_sent >= min(PING_EVERY_S, self.timeout_s / 3)

    def check(self, now: float, pid: int | None) -> None:
        """Raise if the worker has stopped answering or the caller's time is up."""
        if now - self.last_alive > self.timeout_s:
            raise ManipleError(
                f"device {self.device!r} stopped answering: no reply to a liveness ping for "
                f"{self.timeout_s:g} s during {self.method} (worker pid {pid}). Drop it from "
                "the cluster, or give it longer with --timeout SECONDS (timeout_s in a "
                "cluster file)"
            )
        if self.timeout is not None and now > self.start + self.timeout:
            raise ManipleError(
                f"device {self.device!r}: {self.method} gave no result within {self.timeout:g} s"
            )
