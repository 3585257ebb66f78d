"""Ray: with ray_calls (the calls in flight) the only module that imports ray, and the one
place `Worker` is wrapped with `ray.remote`; what needs no Ray is beside it (ray_config,
ray_nodes, remote_calls).

Why Ray: users with several machines need a real distributed engine (placement, object
transfer, failure detection), not sockets of our own; Ray has x86-64 and aarch64 wheels,
so 64-bit boards can join. Emulated boards are Ray actors too, on this host.

Safety: with no address, a private local instance is started on loopback only
(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, node IP 127.0.0.1, no dashboard). Ray's token
authentication stays on: RAY_AUTH_MODE=token is set for this process and the processes
it starts (Ray creates ~/.ray/auth_token for a new local cluster; a joining node or an
existing cluster must use the same token), and any other RAY_AUTH_MODE is refused.

A private Ray is recorded (ray_leftovers) so that a killed driver leaves no Ray process
behind for long. A worker is checked against its node's CPUs and GPUs before its actor is
made, and Ray's scheduling failures become ManipleErrors naming the device and the nodes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from torch import nn

from maniple.devices import ray_leftovers
from maniple.devices.emulated import BoardClock
from maniple.devices.handles import (
    DEFAULT_TIMEOUT_S,
    Call,
    DeviceHandle,
    StepCall,
    device_error,
)
from maniple.devices.model_spec import ModelSpec
from maniple.devices.names import DeviceSpec
from maniple.devices.ray_calls import (
    RayCall,
    RayStepCall,
    check_usable,
    mark_failed,
    wait_started,
)
from maniple.devices.ray_config import (
    INIT_ARGS,
    LOOPBACK_VAR,
    RaySession,
    local_init_args,
    loopback_error,
    require_token_auth_env,
    set_env,
)
from maniple.devices.ray_nodes import (
    check_fits,
    live_nodes,
    node_devices,
    pick_node,
    unschedulable_error,
)
from maniple.devices.remote_calls import (
    CONTROL,
    STARTUP_TIMEOUT_S,
    STEADY_MALLOC_ENV,
    actor_options,
    arg_to_wire,
    call_finish,
    check_remote_device,
    check_remote_model,
)
from maniple.devices.step import StepOrder
from maniple.devices.timing import WorkerInfo
from maniple.devices.worker import Worker
from maniple.errors import ManipleError

_lock = threading.RLock()
_session: RaySession | None = None
_remote_worker: Any = None
log = logging.getLogger("maniple.ray")


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
    require_token_auth_env()
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
            return _session.join(address)
        ray_leftovers.clean_leftovers()  # what a killed maniple left (never raises)
        local = address in (None, "local")
        ray = _import_ray()
        if ray.is_initialized():  # someone else in this process connected first
            _check_token_auth_on()
            _session = RaySession(ray.get_runtime_context().gcs_address, started_here=False)
            return _session.join()
        _require_token_auth()
        if local:
            _session = _start_local(ray)
        else:
            try:
                ray.init(address=address, **INIT_ARGS)
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
        return _session.join()


def _start_local(ray: Any) -> RaySession:
    """A private single-node Ray on 127.0.0.1 only; refuses to run if Ray picks another
    address. The loopback settings are undone when the session ends."""
    from ray._private import ray_constants

    restore = {"env": os.environ.get(LOOPBACK_VAR), "flag": ray_constants.ENABLE_RAY_CLUSTER}
    # Every process Ray starts reads the variable; this process read it at import, so the
    # flag it set then is overridden too (else Ray resolves 127.0.0.1 to the machine's
    # outward address).
    os.environ[LOOPBACK_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(**local_init_args())
    gcs = ray.get_runtime_context().gcs_address
    session = RaySession(gcs, started_here=True, restore=restore, tracker=_track(ray))
    error = loopback_error(gcs, {n["NodeManagerAddress"] for n in ray.nodes()})
    if error is not None:
        _shutdown(ray, session)
        raise error
    return session


def _track(ray: Any) -> ray_leftovers.Tracker | None:
    """Record the private Ray just started (ray_leftovers); None where that fails."""
    try:
        session_dir = ray._private.worker._global_node.get_session_dir_path()
        return ray_leftovers.track(session_dir, os.path.dirname(ray.__file__))
    except Exception as exc:  # noqa: BLE001 - a Ray without these internals still runs
        log.warning("not recording this Ray session for cleanup after a crash: %s", exc)
        return None


def _shutdown(ray: Any, session: RaySession) -> None:
    ray.shutdown()
    if session.tracker is not None:  # only after a shutdown that worked: else the watcher
        session.tracker.close()  # stops what is left when this process ends
        session.tracker = None
    if session.restore is not None:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = session.restore["flag"]
        set_env(LOOPBACK_VAR, session.restore["env"])


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
            _remote_worker = ray.remote(concurrency_groups={CONTROL: 2})(Worker)
        return _remote_worker


def find_node(selector: str) -> str:
    """The id of the one live node that `selector` names (IP, node id, name, custom resource,
    label or 'head': ray_nodes.node_matches). Errors list the live nodes."""
    return pick_node(live_nodes(_import_ray().nodes()), selector)["NodeID"]


class RayHandle(DeviceHandle):
    """A Worker in a Ray actor: a device on a Ray node, or an emulated board on this host.

    env: environment variables of the worker process (emulated boards: STEADY_MALLOC_ENV).
    node: the node an emulated board runs on (a selector; a testbed's); None: this node.
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
        node: str | None = None,
    ) -> None:
        check_remote_device(spec, clock)
        self.spec, self.timeout_s, self._clock, self._node = spec, timeout_s, clock, node
        self._env = dict(STEADY_MALLOC_ENV) if env is None and spec.is_emulated else env
        self._session: RaySession | None = ensure_ray(address)
        self.pid: int | None = None
        self._actor: Any = None
        self.failed: str | None = None  # why it stopped: later calls fail at once (ray_calls)
        self._info: WorkerInfo | None = None
        try:
            self._actor = self._start(threads, model)
            # The model is loaded (and warmed up) by a call, not in the constructor, so it
            # runs on the same actor thread as every later call: per-thread first-use costs
            # (allocator arenas, oneDNN scratch) are paid here, not in the first timing.
            self._ready_ref = (
                self._actor.load.remote(model)
                if model is not None
                else self._actor.info.options(concurrency_group=CONTROL).remote()
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
            wait_started(self, self._ready_ref, startup_timeout_s)
            self._info = self._get(ray, self._ready_ref, "start")
            self.pid = self._info.pid
        return self._info

    def _start(self, threads: int | None, model: ModelSpec | None) -> Any:
        ray = _import_ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        spec = self.spec
        options, worker_spec = actor_options(spec, threads, self._env)
        if spec.is_emulated and self._node is None:
            node_id = ray.get_runtime_context().get_node_id()  # calibrated for this host
        else:
            node = pick_node(live_nodes(ray.nodes()), self._node or spec.node or "")
            private = self._session is not None and self._session.private
            check_fits(node, spec.name, options["num_cpus"], spec.target or "cpu", private=private)
            node_id = node["NodeID"]
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
        check_remote_model(spec, model)
        return (
            remote_worker_class()
            .options(**options)
            .remote(worker_spec, None, threads=threads, clock=self._clock, numpy_out=True)
        )

    def _get(self, ray: Any, ref: Any, method: str) -> Any:
        try:
            return ray.get(ref, timeout=self.timeout_s)
        except (
            ray.exceptions.ActorUnschedulableError,  # its node went away, or lacks what it
            ray.exceptions.TaskUnschedulableError,  # asks for
        ) as exc:
            raise unschedulable_error(self.name, str(exc), live_nodes(ray.nodes())) from exc
        except ray.exceptions.RayActorError as exc:
            raise mark_failed(self, f"device {self.name!r} died during {method}: its worker "
                f"process (pid {self.pid}) is gone ({type(exc).__name__}). Drop it from the "
                "cluster") from exc  # fmt: skip
        except ray.exceptions.GetTimeoutError as exc:
            raise mark_failed(self, f"device {self.name!r}: {method} result not retrievable "
                f"within {self.timeout_s:g} s") from exc  # fmt: skip
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            raise ManipleError(str(device_error(self.name, method, cause))) from exc

    def _submit(self, method: str, *args: Any, **kwargs: Any) -> Call[Any]:
        check_usable(self)
        if method == "load" and isinstance(args[0], nn.Module):
            raise ManipleError(
                f"device {self.name!r} runs in another process: load a ModelSpec, not a module"
            )
        actor_method = getattr(self._actor, method)
        if method in ("info", "ping"):
            actor_method = actor_method.options(concurrency_group=CONTROL)
        kwargs, finish = call_finish(self.spec, method, args, kwargs)
        t0 = time.perf_counter()
        args = tuple(arg_to_wire(a) for a in args)
        return RayCall(self, method, actor_method.remote(*args, **kwargs), t0, finish)

    transport = "ray"

    def submit_step(self, order: StepOrder, pieces: Sequence[Any], phase: int = 0) -> StepCall:
        """The step as an actor call whose pieces are object references: passed to the next
        steps as arguments, Ray moves them worker to worker, never through this process."""
        check_usable(self)
        t0 = time.perf_counter()
        n_out = order.outputs(phase)
        method = self._actor.run_step.options(num_returns=1 + n_out)
        refs = method.remote(order, *pieces, phase=phase)
        refs = refs if isinstance(refs, list) else [refs]
        return RayStepCall(self, RayCall(self, "run_step", refs[0], t0), refs[1:])

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
    return node_devices(live_nodes(_import_ray().nodes()))
