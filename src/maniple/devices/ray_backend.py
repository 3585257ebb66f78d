"""Ray: the only module that imports ray, and the one place `Worker` is wrapped with
`ray.remote`.

Why Ray: users with several machines need a real distributed engine (placement, object
transfer, failure detection), not sockets of our own; Ray has x86-64 and aarch64 wheels,
so 64-bit boards can join. Emulated boards are Ray actors too, on this host.

Safety: with no address, a private local instance is started on loopback only
(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, node IP 127.0.0.1, no dashboard). Ray's token
authentication stays on: RAY_AUTH_MODE=token is set for this process and the processes
it starts (Ray creates ~/.ray/auth_token for a new local cluster; a joining node or an
existing cluster must use the same token), and any other RAY_AUTH_MODE is refused.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from maniple.devices.emulated import BoardClock
from maniple.devices.handles import DEFAULT_TIMEOUT_S, Call, DeviceHandle, add_overhead
from maniple.devices.model_spec import ModelSpec
from maniple.devices.names import DeviceSpec
from maniple.devices.timing import CallTiming, WorkerInfo
from maniple.devices.worker import Worker, from_wire, to_wire
from maniple.errors import ManipleError

EMULATED_NUM_CPUS = 0.01  # logical CPUs an emulated board reserves (it sleeps most of the time)
STARTUP_TIMEOUT_S = 300.0  # process start + model build of a new worker
_PING_EVERY_S = 5.0
_POLL_S = 0.25
_LOCAL_OBJECT_STORE_BYTES = 2 * 2**30  # inputs, bands and shipped weights; spills beyond
_CONTROL = "control"  # concurrency group for ping/info, answered while a call computes

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

_lock = threading.RLock()
_session: RaySession | None = None
_remote_worker: Any = None


@dataclass
class RaySession:
    """This process's connection to Ray: who started it, where it is, how many users."""

    address: str
    started_here: bool
    users: int = 0
    restore: dict[str, Any] | None = None  # loopback settings to undo at shutdown


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ManipleError(
            "Ray is needed for emulated boards and Ray devices but is not installed; "
            "pip install ray (local devices work without it)"
        ) from exc
    return ray


def _require_token_auth() -> None:
    """Turn Ray's token authentication on for this process (before ray.init)."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None and mode.lower() != "token":
        raise ManipleError(
            f"RAY_AUTH_MODE={mode!r}: maniple keeps Ray's token authentication on; "
            "unset RAY_AUTH_MODE or set it to 'token'"
        )
    os.environ["RAY_AUTH_MODE"] = "token"
    try:  # refresh Ray's cached config if ray was imported before the variable was set
        from ray._raylet import Config

        Config.initialize("")
    except Exception:  # noqa: BLE001 - a Ray without this hook reads the env at init
        pass


def _check_token_auth_on() -> None:
    """Refuse a Ray connection that does not use token authentication."""
    try:
        from ray._raylet import AuthenticationMode, get_authentication_mode
    except ImportError:  # a Ray without token authentication at all
        raise ManipleError(
            "this Ray has no token authentication; maniple needs Ray >= 2.52"
        ) from None
    if get_authentication_mode() != AuthenticationMode.TOKEN:
        raise ManipleError(
            "this process is connected to Ray without token authentication; maniple keeps it "
            "on: start Ray with RAY_AUTH_MODE=token (or let maniple start it)"
        )


def ensure_ray(address: str | None = None) -> RaySession:
    """Connect this process to Ray, once; each caller must `release_ray()` when done.

    address None or 'local': start a private Ray on 127.0.0.1 (or reuse the one already
    connected); 'auto': the cluster started with `ray start` on this machine; 'HOST:PORT':
    that cluster's GCS.
    """
    global _session
    with _lock:
        if _session is not None:
            if address not in (None, "local", "auto", _session.address):
                raise ManipleError(
                    f"this process is already connected to Ray at {_session.address}; "
                    f"cannot also connect to {address!r} (close the other cluster first)"
                )
            _session.users += 1
            return _session
        local = address in (None, "local")
        ray = _import_ray()
        if ray.is_initialized():  # someone else in this process connected first
            _check_token_auth_on()
            _session = RaySession(ray.get_runtime_context().gcs_address, started_here=False)
            _session.users += 1
            return _session
        _require_token_auth()
        if local:
            _session = _start_local(ray)
        else:
            try:
                ray.init(
                    address=address,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                    namespace="maniple",
                )
            except Exception as exc:
                raise ManipleError(
                    f"cannot connect to the Ray cluster at {address!r}: {exc}. Start it with "
                    "`RAY_AUTH_MODE=token ray start --head` and copy ~/.ray/auth_token to "
                    "every node"
                ) from exc
            _session = RaySession(ray.get_runtime_context().gcs_address, started_here=True)
        try:
            _check_token_auth_on()
        except ManipleError:
            _shutdown(ray, _session)
            _session = None
            raise
        _session.users += 1
        return _session


def _start_local(ray: Any) -> RaySession:
    """A private single-node Ray on 127.0.0.1 only; refuses to run if Ray picks another
    address. The loopback settings are undone when the session ends."""
    from ray._private import ray_constants

    restore = {
        "env": os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"),
        "flag": ray_constants.ENABLE_RAY_CLUSTER,
    }
    # Every process Ray starts reads the variable; this process read it at import, so the
    # flag it set then is overridden too (else Ray resolves 127.0.0.1 to the machine's
    # outward address).
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(
        address="local",
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        num_cpus=max(2, os.cpu_count() or 1),
        num_gpus=0,
        object_store_memory=_LOCAL_OBJECT_STORE_BYTES,
        log_to_driver=False,
        logging_level=logging.WARNING,
        namespace="maniple",
    )
    gcs = ray.get_runtime_context().gcs_address
    addresses = {n["NodeManagerAddress"] for n in ray.nodes()}
    session = RaySession(gcs, started_here=True, restore=restore)
    if not gcs.startswith("127.0.0.1:") or addresses != {"127.0.0.1"}:
        _shutdown(ray, session)
        raise ManipleError(
            f"the local Ray instance came up on {gcs} / {sorted(addresses)}, not on 127.0.0.1 "
            "only; refusing to use it. Set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before "
            "anything imports ray"
        )
    return session


def _shutdown(ray: Any, session: RaySession) -> None:
    ray.shutdown()
    if session.restore is not None:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = session.restore["flag"]
        if session.restore["env"] is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = session.restore["env"]


def release_ray(session: RaySession) -> None:
    """Drop one use; the last user of a Ray connection we made shuts it down."""
    global _session
    with _lock:
        if _session is not session:
            return
        session.users -= 1
        if session.users <= 0:
            if session.started_here:
                import ray

                _shutdown(ray, session)
            _session = None


def remote_worker_class() -> Any:
    """`ray.remote(Worker)`: the one place the Worker class is wrapped for Ray."""
    global _remote_worker
    with _lock:
        if _remote_worker is None:
            ray = _import_ray()
            _remote_worker = ray.remote(concurrency_groups={_CONTROL: 2})(Worker)
        return _remote_worker


def _node_summary(node: dict[str, Any]) -> str:
    custom = sorted(k for k in node["Resources"] if not k.startswith("node:") and k not in _BUILTIN)
    labels = {k: v for k, v in node.get("Labels", {}).items() if not k.startswith("ray.io/")}
    head = " head" if "node:__internal_head__" in node["Resources"] else ""
    return (
        f"{node['NodeManagerAddress']}{head} (id {node['NodeID'][:12]}…, resources "
        f"{custom or '-'}, labels {labels or '-'})"
    )


_BUILTIN = {"CPU", "GPU", "memory", "object_store_memory", "accelerator_type"}


def find_node(selector: str) -> str:
    """The id of the one live node that `selector` names: its IP, node id (or a prefix of
    at least 8 characters), node name, hostname, a custom resource it holds, a label
    value, or 'head'. Errors list the live nodes."""
    ray = _import_ray()
    nodes = [n for n in ray.nodes() if n.get("Alive")]

    def matches(n: dict[str, Any]) -> bool:
        if selector == "head":
            return "node:__internal_head__" in n["Resources"]
        if len(selector) >= 8 and n["NodeID"].startswith(selector):
            return True
        names = (n["NodeManagerAddress"], n.get("NodeName"), n.get("NodeManagerHostname"))
        return (
            selector in names
            or (selector in n["Resources"] and selector not in _BUILTIN)
            or selector in n.get("Labels", {}).values()
        )

    hits = [n for n in nodes if matches(n)]
    listing = "; ".join(_node_summary(n) for n in nodes)
    if not hits:
        raise ManipleError(
            f"no live Ray node matches {selector!r}. Nodes: {listing}. Name a node by IP, "
            "node id, a custom resource (ray start --resources='{\"board1\": 1}') or a label"
        )
    if len(hits) > 1:
        raise ManipleError(
            f"Ray node selector {selector!r} matches {len(hits)} nodes: "
            f"{'; '.join(_node_summary(n) for n in hits)}. Use a node id or a custom resource"
        )
    return hits[0]["NodeID"]


def _real_transfer(timing: CallTiming, caller_ms: float) -> CallTiming:
    """A transfer to a real remote worker: its device time is the measured round trip of
    shipping the payload (no overhead left over)."""
    return replace(timing, wall_ms=caller_ms, link_ms=caller_ms, overhead_ms=0.0)


def _to_wire(arg: Any) -> Any:
    """Tensors cross Ray as numpy arrays (worker.to_wire); other arguments as they are."""
    return to_wire(arg) if isinstance(arg, torch.Tensor) else arg


def _tensor_result(finish: Callable[[Any, float], Any]) -> Callable[[Any, float], Any]:
    """`finish`, after turning a (numpy output, timing) result back into a tensor."""

    def wrapped(value: Any, caller_ms: float) -> Any:
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], np.ndarray):
            value = (from_wire(value[0]), value[1])
        return finish(value, caller_ms)

    return wrapped


class RayCall(Call[Any]):
    """A call on a Ray actor. While waiting, the actor is pinged on its control group; if it
    dies, or answers no ping for `liveness_s`, the call fails naming the device."""

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
        deadline = None if timeout is None else time.perf_counter() + timeout
        last_alive = time.perf_counter()
        ping_ref, ping_sent = None, time.perf_counter()
        while True:
            ready, _ = ray.wait([self._ref], timeout=_POLL_S)
            if ready:
                break
            now = time.perf_counter()
            if ping_ref is not None and ray.wait([ping_ref], timeout=0)[0]:
                h._get(ray, ping_ref, "ping")  # raises if the actor died
                last_alive, ping_ref = now, None
            if ping_ref is None and now - ping_sent >= min(_PING_EVERY_S, h.timeout_s / 3):
                ping_ref = h._actor.ping.options(concurrency_group=_CONTROL).remote()
                ping_sent = now
            if now - last_alive > h.timeout_s:
                raise ManipleError(
                    f"device {self.device!r} stopped answering: no reply to a liveness ping for "
                    f"{h.timeout_s:g} s during {self.method} (worker pid {h.pid}). Drop it from "
                    "the cluster or raise timeout_s"
                )
            if deadline is not None and now > deadline:
                raise ManipleError(
                    f"device {self.device!r}: {self.method} gave no result within {timeout:g} s"
                )
        value = h._get(ray, self._ref, self.method)
        t_ready = self._t_ready or time.perf_counter()
        return self._finish(value, (t_ready - self._t0) * 1e3)


class RayHandle(DeviceHandle):
    """A Worker in a Ray actor: a device on a Ray node, or an emulated board on this host.

    env: environment variables of the worker process (emulated boards: STEADY_MALLOC_ENV).
    """

    def __init__(
        self,
        spec: DeviceSpec,
        model: ModelSpec | None = None,
        *,
        threads: int | None = None,
        clock: BoardClock | None = None,
        address: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        wait: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        if not (spec.is_ray or spec.is_emulated):
            raise ManipleError(f"device {spec.name!r} is neither a Ray device nor emulated")
        if spec.is_emulated and clock is None:
            raise ManipleError(f"emulated device {spec.name!r} needs a BoardClock")
        self.spec, self.timeout_s, self._clock = spec, timeout_s, clock
        self._env = dict(STEADY_MALLOC_ENV) if env is None and spec.is_emulated else env
        self._session: RaySession | None = ensure_ray(address)
        self.pid: int | None = None
        self._actor: Any = None
        self._info: WorkerInfo | None = None
        try:
            self._actor = self._start(threads, model)
            # The model is loaded (and warmed up) by a call, not in the constructor, so it
            # runs on the same actor thread as every later call: per-thread first-use costs
            # (allocator arenas, oneDNN scratch) are paid here, not in the first timing.
            self._ready_ref = (
                self._actor.load.remote(model)
                if model is not None
                else self._actor.info.options(concurrency_group=_CONTROL).remote()
            )
            if wait:
                self.wait_ready(startup_timeout_s)
        except BaseException:
            self.close()
            raise

    @property
    def dilation(self) -> float:
        return self._clock.dilation if self._clock else 1.0

    @property
    def node_id(self) -> str | None:
        return self._info.node_id if self._info else None

    def wait_ready(self, startup_timeout_s: float = STARTUP_TIMEOUT_S) -> WorkerInfo:
        """Wait until the worker process has started and built its model."""
        if self._info is None:
            ray = _import_ray()
            ready, _ = ray.wait([self._ready_ref], timeout=startup_timeout_s)
            if not ready:
                raise ManipleError(
                    f"device {self.name!r} did not start within {startup_timeout_s:g} s "
                    "(worker process start and model build); is the node short of CPUs, "
                    "GPUs or memory? `ray status` shows what is free"
                )
            self._info = self._get(ray, self._ready_ref, "start")
            self.pid = self._info.pid
        return self._info

    def _start(self, threads: int | None, model: ModelSpec | None) -> Any:
        ray = _import_ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        spec = self.spec
        options: dict[str, Any] = {
            "max_restarts": 0,
            "max_task_retries": 0,
        }
        worker_spec = spec
        if spec.is_emulated:
            node_id = ray.get_runtime_context().get_node_id()  # calibrated for this host
            options["num_cpus"] = EMULATED_NUM_CPUS
        else:
            node_id = find_node(spec.node or "")
            options["num_cpus"] = threads or spec.threads or 1
            if spec.target and spec.target.startswith("cuda"):
                # Ray gives the actor one GPU and hides the others: it is cuda:0 in there.
                options["num_gpus"] = 1
                worker_spec = replace(spec, target="cuda:0", label=spec.name)
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
        if self._env:
            options["runtime_env"] = {"env_vars": self._env}
        if model is not None and not isinstance(model, ModelSpec):
            raise ManipleError(
                f"device {spec.name!r} runs in another process: give it a ModelSpec, "
                "not an nn.Module (ModelSpec(...).with_weights(module) ships weights once)"
            )
        return (
            remote_worker_class()
            .options(**options)
            .remote(worker_spec, None, threads=threads, clock=self._clock, numpy_out=True)
        )

    def _get(self, ray: Any, ref: Any, method: str) -> Any:
        try:
            return ray.get(ref, timeout=self.timeout_s)
        except ray.exceptions.RayActorError as exc:
            raise ManipleError(
                f"device {self.name!r} died during {method}: its worker process "
                f"(pid {self.pid}) is gone ({type(exc).__name__}). Drop it from the cluster"
            ) from exc
        except ray.exceptions.GetTimeoutError as exc:
            raise ManipleError(
                f"device {self.name!r}: {method} result not retrievable within {self.timeout_s:g} s"
            ) from exc
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            if isinstance(cause, ManipleError):
                raise ManipleError(str(cause)) from exc
            raise ManipleError(
                f"device {self.name!r}: {method} failed: {type(cause).__name__}: {cause}"
            ) from exc

    def _submit(self, method: str, *args: Any, **kwargs: Any) -> Call[Any]:
        if self._actor is None:
            raise ManipleError(f"device {self.name!r} is closed")
        if method == "load" and isinstance(args[0], nn.Module):
            raise ManipleError(
                f"device {self.name!r} runs in another process: load a ModelSpec, not a module"
            )
        actor_method = getattr(self._actor, method)
        if method in ("info", "ping"):
            actor_method = actor_method.options(concurrency_group=_CONTROL)
        finish = add_overhead
        if method == "transfer" and not self.spec.is_emulated:
            # A real link: ship the bytes, and the time they took is the transfer's time.
            kwargs["payload"] = np.zeros(int(args[0]), dtype=np.uint8)
            finish = _real_transfer
        t0 = time.perf_counter()
        args = tuple(_to_wire(a) for a in args)
        return RayCall(
            self, method, actor_method.remote(*args, **kwargs), t0, _tensor_result(finish)
        )

    def load(
        self,
        model: ModelSpec | nn.Module,
        *,
        input_shape: tuple[int, int, int] | None = None,
        warmup: bool = True,
    ) -> WorkerInfo:
        info = super().load(model, input_shape=input_shape, warmup=warmup)
        self._info = info
        return info

    def close(self) -> None:
        if self._actor is not None:
            try:
                import ray

                ray.kill(self._actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead or Ray gone: nothing to free
                pass
            self._actor = None
        if self._session is not None:
            release_ray(self._session)
            self._session = None


def this_node_id() -> str:
    """The Ray node id of this process (Ray must be up)."""
    return _import_ray().get_runtime_context().get_node_id()


def ray_node_devices() -> list[DeviceSpec]:
    """One ray device per live node's CPU and per GPU (for `--ray` with no devices)."""
    specs = []
    nodes = [n for n in _import_ray().nodes() if n.get("Alive")]
    ips = [n["NodeManagerAddress"] for n in nodes]
    for n in nodes:
        selector = (
            n["NodeManagerAddress"] if ips.count(n["NodeManagerAddress"]) == 1 else n["NodeID"][:12]
        )
        specs.append(DeviceSpec("ray", node=selector, target="cpu"))
        for g in range(int(n["Resources"].get("GPU", 0))):
            specs.append(DeviceSpec("ray", node=selector, target=f"cuda:{g}"))
    return specs
