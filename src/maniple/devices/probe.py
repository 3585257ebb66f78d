"""`probe`: the whole model on one device, timed, so a user can check a device before
planning with it (`maniple probe`).

For an emulated board the latency is its emulated time (dilated wall time / D, so any
overrun of the host shows), with the dilation and the preset's published number beside
it; Ray's per-call overhead is reported apart, undivided.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

import torch

from maniple.devices.handles import DEFAULT_TIMEOUT_S
from maniple.devices.model_spec import ModelSpec
from maniple.devices.names import DeviceSpec
from maniple.devices.open import open_device
from maniple.devices.timing import CallTiming
from maniple.errors import ManipleError
from maniple.spread import check_repeats

MAX_THREADS = 1024  # intra-op threads; more is a typo, not a machine


@dataclass(frozen=True)
class ProbeResult:
    """Median (and every run's) latency of the whole model on one device."""

    device: str
    network: str
    batch: int
    repeats: int
    latency_ms: float
    runs_ms: tuple[float, ...]
    overhead_ms: float
    cpu_ms: float
    emulated: bool
    dilation: float
    board_ms: float | None
    overrun_ms: float
    reference_ms: float | None
    pid: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["runs_ms"] = list(self.runs_ms)
        return d


def probe(
    device: str | DeviceSpec,
    network: str,
    *,
    batch: int = 1,
    repeats: int = 3,
    seed: int = 0,
    threads: int | None = None,
    dilation: float | None = None,
    fast_forward: bool = False,
    ray_address: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ProbeResult:
    """Run `network` whole on `device` `repeats` times (after one warm-up) at `batch`;
    `timeout_s` bounds how long a silent remote worker is waited for."""
    check_repeats(repeats, "--repeats")
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise ManipleError(f"--threads must be from 1 to {MAX_THREADS}, got {threads}; e.g. 4")
    if batch < 1:
        raise ManipleError(f"batch and repeats must be >= 1, got batch={batch}, repeats={repeats}")
    spec = ModelSpec(network, seed=seed, input_shape=input_shape)
    shape = input_shape or _input_shape(network)
    if shape is not None:
        from maniple.devices.host_limits import check_input_shape

        check_input_shape(shape, batch)  # the batch must fit this host before it is made
    handle = open_device(
        device,
        spec,
        threads=threads,
        dilation=dilation,
        fast_forward=fast_forward,
        ray_address=ray_address,
        timeout_s=timeout_s,
    )
    try:
        info = handle.info()
        if shape is None:
            raise ManipleError(f"give the input shape of {network!r} (--input-shape C,H,W)")
        x = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(seed))
        handle.run_batch(x, link=False)  # warm-up at this batch size
        timings: list[CallTiming] = [handle.run_batch(x, link=False)[1] for _ in range(repeats)]
    finally:
        handle.close()
    med = statistics.median
    board = [t.board_ms for t in timings if t.board_ms is not None]
    ref = handle.spec.board.reference_ms(network) if handle.spec.board else None
    return ProbeResult(
        device=handle.name,
        network=network,
        batch=batch,
        repeats=repeats,
        latency_ms=med(t.device_ms for t in timings),
        runs_ms=tuple(t.device_ms for t in timings),
        overhead_ms=med(t.overhead_ms for t in timings),
        cpu_ms=med(t.cpu_ms for t in timings),
        emulated=bool(board),
        dilation=info.dilation,
        board_ms=med(board) if board else None,
        overrun_ms=max(t.overrun_ms for t in timings),
        reference_ms=ref * batch if ref is not None else None,
        pid=info.pid,
    )


def _input_shape(network: str) -> tuple[int, int, int] | None:
    try:
        import maniple.zoo as zoo

        if network in zoo.names():
            return tuple(zoo.input_shape(network))  # type: ignore[return-value]
    except (ImportError, AttributeError):
        pass
    return None
