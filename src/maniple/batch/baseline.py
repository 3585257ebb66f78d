"""What a user would run instead of maniple, measured in the same run: plain PyTorch on
one device at the same precision, with the input starting on the host.

Why: a speedup over maniple's own single-device run says nothing if maniple's single
device is slower than the few lines a PyTorch user writes. The baseline is those lines
and nothing else: the model cast to the precision (channels-last and compiled when the
run's mode is), the input pinned on the host and copied non-blocking, one forward, the
output copied back; timed by the wall clock after warm-up, every repeat synchronised.

It also gives the fp32 reference that a run at another precision reports its error
against (`fp32_reference`), computed on a sample of the batch.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch

from maniple.devices import ModelSpec
from maniple.errors import ManipleError
from maniple.precision import ExecMode, set_tf32, tf32_enabled
from maniple.spread import spread_json

REFERENCE_IMAGES = 8
"""Images of the batch the fp32 reference is computed for."""


@dataclass(frozen=True)
class TorchBaseline:
    """Plain PyTorch's times on `device` in `mode`, ms per batch (after warm-up);
    build_ms: its compile time, if compiled (not in the times)."""

    device: str
    mode: ExecMode
    batch: int
    runs_ms: tuple[float, ...]
    build_ms: float = 0.0

    @property
    def median_ms(self) -> float:
        ordered = sorted(self.runs_ms)
        return ordered[(len(ordered) - 1) // 2]

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "mode": self.mode.to_json(),
            "batch": self.batch,
            "median_ms": self.median_ms,
            "runs_ms": list(self.runs_ms),
            "spread_ms": spread_json(list(self.runs_ms)),
            "build_ms": self.build_ms,
            "what": "plain PyTorch: model.to(dtype[, channels_last]) [torch.compile], input "
            "pinned on the host, .to(device, non_blocking=True), forward, .cpu()",
        }


def _prepared(model: ModelSpec, device: torch.device, mode: ExecMode) -> torch.nn.Module:
    module = model.build().module.eval().to(device=device, dtype=mode.dtype)
    if mode.channels_last(device.type):
        module = module.to(memory_format=torch.channels_last)
    return module


def torch_baseline(
    model: ModelSpec,
    device: str,
    mode: ExecMode,
    x: torch.Tensor,
    *,
    repeats: int = 3,
    warmup: int = 1,
) -> TorchBaseline:
    """Time plain PyTorch on `device` for host batch `x` (float32), as the module
    docstring says. Compiles only on a GPU, as maniple's workers do."""
    dev = torch.device(device)
    mode = mode.on(dev.type)
    if dev.type == "cuda":
        set_tf32(mode.precision == "tf32")
    module = _prepared(model, dev, mode)
    cl = mode.channels_last(dev.type)
    host = x.pin_memory() if dev.type == "cuda" else x
    build_ms = 0.0
    if mode.compile == "cuda-graphs":
        raise ManipleError(
            "the torch baseline compiles with torch.compile; cuda-graphs has no plain-PyTorch "
            "counterpart here: use --compile default or max-autotune-no-cudagraphs"
        )

    def forward(fn: Any, xh: torch.Tensor) -> torch.Tensor:
        xd = xh.to(dev, non_blocking=True).to(mode.dtype)
        if cl:
            xd = xd.contiguous(memory_format=torch.channels_last)
        return fn(xd).cpu()

    fn: Any = module
    with torch.inference_mode():
        if mode.compile != "off":
            fn = torch.compile(module, mode=mode.compile, dynamic=False)
            t0 = time.perf_counter()
            forward(fn, host)
            build_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(max(warmup, 1)):
            forward(fn, host)
        runs = []
        for _ in range(repeats):
            _sync(dev)
            t0 = time.perf_counter()
            forward(fn, host)
            _sync(dev)
            runs.append((time.perf_counter() - t0) * 1e3)
    del fn, module
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return TorchBaseline(str(dev), mode, int(x.shape[0]), tuple(runs), build_ms)


def fp32_reference(model: ModelSpec, x: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """The model's strict-fp32 eager output for `x` on `device` (the first images of a batch
    run at another precision), on the CPU."""
    dev = torch.device(device)
    was = tf32_enabled()
    set_tf32(False)  # strict, then the process's switch as it was (its workers share it)
    try:
        module = _prepared(model, dev, dataclasses.replace(ExecMode(), memory_format="contiguous"))
        with torch.inference_mode():
            y = module(x.to(dev)).float().cpu()
        del module
    finally:
        set_tf32(was)
    return y


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
