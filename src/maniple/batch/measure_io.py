"""Host <-> device I/O time per batch size (the study's measure_io.py, as `maniple measure-io`).

Why on its own: the batch tables fold I/O into each entry; this answers the narrower
question "how long does moving a batch of B images to this device, and its output back,
take?", one direction at a time, over a range of sizes. What is timed is what a run does:

- a local GPU (cuda, xpu, mps): a pageable host tensor of the batch copied to the device,
  and a device tensor of the output's shape copied back, each synchronised;
- a local CPU: nothing moves (0 ms);
- an emulated board: its link model for those bytes (emulated ms; open it in fast-forward
  mode so nothing sleeps), plus the real per-call overhead of reaching its process;
- a Ray device: the per-call overhead of a transfer call (no payload is shipped by the
  devices API today, so this is a floor, and said so in the report).

Results can be kept in the profile store as Set (to the device) and Get (back) cost
cells of the whole network: first_unit = last_unit = WHOLE_NETWORK, band_rows = H.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from maniple.batch.store import ProfileStore
from maniple.devices import DeviceHandle, ModelSpec
from maniple.devices.wire import _synchronize  # the worker's own: times what it does
from maniple.errors import ManipleError
from maniple.store import DeviceKey

WHOLE_NETWORK = -1
"""first_unit / last_unit of a cost cell that is about the network's input or output."""


@dataclass(frozen=True)
class IoMeasurement:
    """Median ms to move one batch to the device and its output back."""

    batch: int
    input_bytes: int
    output_bytes: int
    to_device_ms: float
    from_device_ms: float

    @property
    def total_ms(self) -> float:
        return self.to_device_ms + self.from_device_ms

    def to_json(self) -> dict[str, float | int]:
        return {**asdict(self), "total_ms": self.total_ms}


def io_sizes(batch: int, max_batch: int | None = None, inc: int = 0) -> list[int]:
    """The seed's sizes: `batch` alone (inc 0), else batch, batch+inc, ... up to max_batch."""
    for name, value, low in (("--batch", batch, 1), ("--inc", inc, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ManipleError(f"{name} must be a whole number >= {low}, got {value!r}")
    if inc == 0:
        return [batch]
    if max_batch is None or max_batch < batch:
        raise ManipleError(
            f"--inc {inc} steps from --batch {batch} up to --max-batch, which must be >= "
            f"{batch} (got {max_batch!r}); e.g. --batch 1 --max-batch 128 --inc 8"
        )
    return list(range(batch, max_batch + 1, inc))


def output_shape(model: ModelSpec, input_shape: tuple[int, int, int]) -> tuple[int, ...]:
    """The shape of one image's output (without the batch dimension), from one CPU run."""
    built = model.build()
    try:
        with torch.inference_mode():
            y = built.module(torch.zeros((1, *input_shape)))
    except RuntimeError as exc:
        raise ManipleError(
            f"{model.network} does not run on an input of {'x'.join(map(str, input_shape))}: "
            f"{str(exc).splitlines()[0]}; give a larger --input-shape"
        ) from None
    return tuple(y.shape[1:])


def measure_io(
    handle: DeviceHandle,
    sizes: Sequence[int],
    input_shape: tuple[int, int, int],
    out_shape: tuple[int, ...],
    *,
    repeats: int = 5,
    warmup: int = 1,
) -> list[IoMeasurement]:
    """Time the I/O of each size in `sizes` on `handle` (see the module docstring)."""
    if repeats < 1 or warmup < 0:
        raise ManipleError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    out = []
    for b in sizes:
        x = torch.randn((b, *input_shape))
        y_numel = b * math.prod(out_shape)
        n_in, n_out = x.numel() * x.element_size(), y_numel * 4
        runs = [_once(handle, x, y_numel) for _ in range(warmup + repeats)][warmup:]
        out.append(
            IoMeasurement(
                b,
                n_in,
                n_out,
                statistics.median(r[0] for r in runs),
                statistics.median(r[1] for r in runs),
            )
        )
    return out


def store_io(
    store: ProfileStore,
    key: DeviceKey,
    network: str,
    input_shape: tuple[int, int, int],
    results: Sequence[IoMeasurement],
    repeats: int,
) -> None:
    """Keep `results` as Set/Get cost cells of the whole network (module docstring)."""
    rows = input_shape[1]
    for m in results:
        shape = "x".join(map(str, (m.batch, *input_shape)))
        for matrix, ms in (("S", m.to_device_ms), ("R", m.from_device_ms)):
            store.put_cost(
                key, network, shape, matrix, WHOLE_NETWORK, WHOLE_NETWORK, rows, ms, repeats
            )


def _once(handle: DeviceHandle, x: torch.Tensor, y_numel: int) -> tuple[float, float]:
    spec = handle.spec
    if spec.is_local:
        if spec.kind == "cpu":
            return 0.0, 0.0
        device = torch.device(spec.torch_device)
        _synchronize(device)
        t0 = time.perf_counter()
        xd = x.to(device)
        _synchronize(device)
        t1 = time.perf_counter()
        yd = torch.empty(y_numel, device=device)
        _synchronize(device)
        t2 = time.perf_counter()
        yd.to("cpu")
        _synchronize(device)
        t3 = time.perf_counter()
        del xd, yd
        return (t1 - t0) * 1e3, (t3 - t2) * 1e3
    to_dev = handle.transfer(x.numel() * x.element_size()).elapsed_ms
    back = handle.transfer(y_numel * 4).elapsed_ms
    return to_dev, back
