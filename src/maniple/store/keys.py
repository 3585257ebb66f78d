"""The identity a device's measurements are stored under: `DeviceKey(name, kind, host)`.

Why more than the name: "cpu" on a laptop and "cpu" on a 64-core server, or an emulated
board with a 100 Mbps link and the same board with a 10 Gbps one, must never share a
table. The kind says what the device *is* (CPU model and thread count, GPU model, board
speed and link); the host says where it sits (emulated boards are calibrated per host).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from maniple.devices import DeviceHandle, DeviceSpec, WorkerInfo
from maniple.devices.names import cpu_description


@dataclass(frozen=True, order=True)
class DeviceKey:
    """Who measured: the device's name ("cuda:0"), its kind ("cuda", "cpu", "emulated:firefly")
    and the host it sits on. All three key every row of the store."""

    name: str
    kind: str = "unknown"
    host: str = "localhost"

    def __str__(self) -> str:
        return f"{self.name} ({self.kind} on {self.host})"


def device_kind(spec: DeviceSpec, info: WorkerInfo | None = None) -> str:
    """What the device is, in words that change whenever its speed may change: its
    hardware, and how it computes when that is not strict fp32 eager (`[bf16 ...]`)."""
    kind = _hardware_kind(spec, info)
    mode = spec.exec_mode.on(_torch_type(spec))
    return kind if mode.is_default else f"{kind} [{mode.describe()}]"


def _torch_type(spec: DeviceSpec) -> str:
    return spec.torch_device.split(":")[0]


def _hardware_kind(spec: DeviceSpec, info: WorkerInfo | None) -> str:
    threads = info.threads if info is not None else spec.threads
    if spec.kind == "cpu":
        return f"cpu {cpu_description()}, {threads or 'default'} threads"
    if spec.kind == "cuda":
        return f"cuda {_cuda_name(spec.index or 0)}"
    if spec.kind == "emu":
        assert spec.board is not None
        b, link = spec.board, spec.board.link
        return (
            f"emulated {b.preset} vgg16={b.vgg16_ms:g}ms link={link.mbps:g}Mbps/"
            f"{link.latency_ms:g}ms uplink={link.uplink_mbps:g}Mbps"
        )
    if spec.kind == "ray":
        return f"ray {spec.target}, {threads or 'default'} threads"
    return spec.kind


def device_key(handle: DeviceHandle, info: WorkerInfo | None = None) -> DeviceKey:
    """The store key of an open device. Ray devices are keyed by the host their worker
        runs on; local and emulated ones by this host. Asks the worker for its thread count
    unless `info` is given."""
    spec = handle.spec
    info = info or handle.info()
    host = info.hostname if spec.is_ray else socket.gethostname()
    return DeviceKey(handle.name, device_kind(spec, info), host)


def _cuda_name(index: int) -> str:
    import torch

    try:
        return torch.cuda.get_device_name(index)
    except Exception:  # noqa: BLE001 - no driver here: the index is all we know
        return f"#{index}"
