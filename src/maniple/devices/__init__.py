"""Devices: names, the one Worker, and handles on local, emulated and Ray devices.

Importing this package never imports Ray; Ray is imported only when a Ray or emulated
device is opened (maniple.devices.ray_backend).
"""

from maniple.devices.handles import Call, DeviceHandle, LocalHandle
from maniple.devices.link import LinkSpec
from maniple.devices.model_spec import BuiltModel, ModelSpec
from maniple.devices.names import (
    DeviceInfo,
    DeviceSpec,
    available_devices,
    check_present,
    parse_device,
    resolve_device,
)
from maniple.devices.open import open_device
from maniple.devices.presets import PRESETS, REFERENCE_NETWORKS, BoardPreset, BoardSpec
from maniple.devices.probe import ProbeResult, probe
from maniple.devices.timing import CallTiming, WorkerInfo
from maniple.devices.worker import Worker

__all__ = [
    "PRESETS",
    "REFERENCE_NETWORKS",
    "BoardPreset",
    "BoardSpec",
    "BuiltModel",
    "Call",
    "CallTiming",
    "DeviceHandle",
    "DeviceInfo",
    "DeviceSpec",
    "LinkSpec",
    "LocalHandle",
    "ModelSpec",
    "ProbeResult",
    "Worker",
    "WorkerInfo",
    "available_devices",
    "check_present",
    "open_device",
    "parse_device",
    "probe",
    "resolve_device",
]
