"""`open_cluster`: every device of a ClusterSpec opened at once, as one `Cluster`.

Why: the runtime and the profiler want the devices of a run side by side with one way to
ship the model, look a device up, drop one that died, and release them all (including a
private Ray instance) in one call, even after an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from maniple.cluster.spec import ClusterSpec, load_cluster
from maniple.devices import host_limits
from maniple.devices.handles import DeviceHandle, LocalHandle
from maniple.devices.model_spec import ModelSpec
from maniple.devices.names import check_present
from maniple.devices.shaped_link import ShapedLink
from maniple.devices.timing import WorkerInfo
from maniple.errors import ManipleError, UnknownNameError
from maniple.graph.memory import MemoryEstimate


class Cluster:
    """Open devices, by name. Use as a context manager, or call close()."""

    def __init__(
        self, spec: ClusterSpec, devices: list[DeviceHandle], ray_session: Any = None
    ) -> None:
        self.spec = spec
        self.devices: list[DeviceHandle] = devices
        self._ray_session = ray_session
        self.dropped: list[str] = []

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.devices]

    def __getitem__(self, name: str) -> DeviceHandle:
        for d in self.devices:
            if d.name == name:
                return d
        raise UnknownNameError("device in this cluster", name, self.names)

    def __iter__(self) -> Iterator[DeviceHandle]:
        return iter(list(self.devices))

    def __len__(self) -> int:
        return len(self.devices)

    def load(
        self, model: ModelSpec | nn.Module, *, input_shape: tuple[int, int, int] | None = None
    ) -> list[WorkerInfo]:
        """Ship the model to every device at once (each builds it once) and wait."""
        calls = [d.submit_load(model, input_shape=input_shape) for d in self.devices]
        return [c.result() for c in calls]

    def info(self) -> list[WorkerInfo]:
        return [d.info() for d in self.devices]

    def drop(self, name: str) -> None:
        """Remove a device (e.g. one that died) and release its worker."""
        handle = self[name]
        self.devices.remove(handle)
        self.dropped.append(name)
        handle.close()

    def close(self) -> None:
        """Release every device, then the Ray connection if this cluster made it."""
        errors = []
        for d in self.devices:
            try:
                d.close()
            except Exception as exc:  # noqa: BLE001 - close the rest, then report
                errors.append(f"{d.name}: {exc}")
        self.devices = []
        if self._ray_session is not None:
            from maniple.devices.ray_backend import release_ray

            release_ray(self._ray_session)
            self._ray_session = None
        if errors:
            raise ManipleError(f"closing the cluster: {'; '.join(errors)}")

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Cluster {', '.join(self.names)}>"


def open_cluster(
    spec: ClusterSpec | str | Path,
    model: ModelSpec | nn.Module | None = None,
    *,
    input_shape: tuple[int, int, int] | None = None,
    timeout_s: float | None = None,
    memory: MemoryEstimate | None = None,
    nodes: Mapping[str, str] | None = None,
    links: Mapping[str, ShapedLink] | None = None,
) -> Cluster:
    """Open every device of `spec` (a ClusterSpec or a YAML path), remote ones in parallel,
    each holding `model` if given. On any failure the opened ones are closed again.

    On a testbed (`maniple testbed`): `nodes` places each emulated board named there on
    the Ray node that selector names (else boards run on this node), and `links` gives
    it its real shaped link, so its clock never sleeps for a link.

    Before anything starts, the emulated boards are checked against this host's cores,
    memory and process limit (`host_limits.check_boards`), with `memory` (the model's
    estimate; None: from a zoo ModelSpec's shapes, else the worker processes alone)."""
    if not isinstance(spec, ClusterSpec):
        spec = load_cluster(spec)
    if timeout_s is not None:
        spec = dataclasses.replace(spec, timeout_s=timeout_s)
    for d in spec.devices:
        check_present(d)
    _check_limits(spec, model, input_shape, memory)
    handles: list[DeviceHandle] = []
    session = None
    try:
        if spec.needs_ray:
            from maniple.devices.ray_backend import ensure_ray, ray_node_devices

            session = ensure_ray(spec.ray_address)
            if spec.ray_all_nodes:
                spec = dataclasses.replace(spec, devices=tuple(ray_node_devices()))
        clocks = _clocks(spec)
        for d in spec.devices:
            if d.is_local:
                handles.append(LocalHandle(d, threads=d.threads))
            else:
                from maniple.devices.ray_backend import RayHandle

                if isinstance(model, nn.Module):
                    raise ManipleError(
                        f"device {d.name!r} runs in another process: open the cluster with a "
                        "ModelSpec (or ModelSpec(...).with_weights(module)), not an nn.Module"
                    )
                clock = clocks.get(d.name)
                if clock is not None and links and d.name in links:
                    clock = dataclasses.replace(clock, real_link=links[d.name])
                handles.append(
                    RayHandle(
                        d,
                        model,
                        threads=d.threads,
                        clock=clock,
                        address=spec.ray_address,
                        timeout_s=spec.timeout_s,
                        wait=False,
                        node=(nodes or {}).get(d.name),
                    )
                )
        for h in handles:
            wait_ready = getattr(h, "wait_ready", None)
            if wait_ready is not None:
                wait_ready()
        local = [h for h in handles if isinstance(h, LocalHandle)]
        if model is not None and local:
            calls = [h.submit_load(model, input_shape=input_shape) for h in local]
            for c in calls:
                c.result()
        return Cluster(spec, handles, session)
    except BaseException:
        for h in handles:
            try:
                h.close()
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
        if session is not None:
            from maniple.devices.ray_backend import release_ray

            release_ray(session)
        raise


def _check_limits(
    spec: ClusterSpec,
    model: ModelSpec | nn.Module | None,
    input_shape: tuple[int, int, int] | None,
    memory: MemoryEstimate | None,
) -> None:
    """The boards check, estimating a zoo model here only when there are boards to check."""
    if not any(d.is_emulated for d in spec.devices):
        return
    if memory is None and isinstance(model, ModelSpec):
        from maniple import zoo

        if model.network in zoo.names():
            shape = input_shape or model.input_shape or zoo.input_shape(model.network)
            memory = host_limits.model_memory(model, tuple(shape))  # type: ignore[arg-type]
    host_limits.check_boards(spec.devices, memory, ray_address=spec.ray_address)


def _clocks(spec: ClusterSpec) -> dict[str, Any]:
    boards = [d for d in spec.devices if d.is_emulated]
    if not boards:
        return {}
    from maniple.devices.calibration import load_calibration
    from maniple.devices.emulated import BoardClock, dilation_for

    calibration = load_calibration()
    specs = [d.board for d in boards if d.board is not None]
    dilation = spec.dilation or dilation_for(specs, calibration)
    return {
        d.name: BoardClock(d.board, calibration, dilation, spec.fast_forward)
        for d in boards
        if d.board is not None
    }
