"""`open_device`: from a device name to a handle that runs work there.

Why a function: it is the one place that decides how a device is reached (a thread here,
a Ray actor on a node, an emulated board in a Ray actor on this host), so callers never
import Ray themselves and local devices never need it.
"""

from __future__ import annotations

from torch import nn

from maniple.devices.handles import DEFAULT_TIMEOUT_S, DeviceHandle, LocalHandle
from maniple.devices.model_spec import ModelSpec
from maniple.devices.names import DeviceSpec, resolve_device
from maniple.errors import ManipleError


def open_device(
    device: str | DeviceSpec,
    model: ModelSpec | nn.Module | None = None,
    *,
    threads: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
    dilation: float | None = None,
    fast_forward: bool = False,
    ray_address: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    wait: bool = True,
) -> DeviceHandle:
    """A handle on `device` holding `model` (an nn.Module only for a local device).

    dilation / fast_forward apply to emulated boards; ray_address to Ray and emulated
    devices (None: a private local Ray on 127.0.0.1); timeout_s bounds how long a dead or
    silent remote worker goes unnoticed. With wait=False a remote worker may still be
    starting when this returns (call `handle.wait_ready()`).
    """
    spec = resolve_device(device, threads=threads)
    if spec.is_local:
        return LocalHandle(spec, model, threads=threads, input_shape=input_shape)
    if isinstance(model, nn.Module):
        raise ManipleError(
            f"device {spec.name!r} runs in another process: pass a ModelSpec (zoo name and "
            "seed, or ModelSpec(...).with_weights(module)), not an nn.Module"
        )
    from maniple.devices.ray_backend import RayHandle

    clock = None
    if spec.is_emulated:
        from maniple.devices.calibration import board_clock

        assert spec.board is not None
        clock = board_clock(spec.board, dilation=dilation, fast_forward=fast_forward)
    return RayHandle(
        spec,
        model,
        threads=threads,
        clock=clock,
        address=ray_address,
        timeout_s=timeout_s,
        wait=wait,
    )
