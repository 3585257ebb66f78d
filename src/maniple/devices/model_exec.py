"""A worker's model as its `ExecMode` says: cast, in its memory format, compiled per shape,
and fed from the host in chunks whose uploads overlap the compute.

Why apart from worker.py: the worker decides *what* runs (batches, spans, sync points)
and times it; this decides *how fast* a forward runs on its device, the part plain PyTorch
users tune by hand (bf16, channels-last, torch.compile, pinned non-blocking copies).

- Precision: weights and activations in the mode's dtype; an input arrives in float32
  and is cast on the device, as a PyTorch user would. Outputs stay in that dtype.
- Channels-last where the mode resolves to it (see `ExecMode.channels_last`).
- Compiled: `torch.compile` (inductor) with static shapes, or CUDA graphs captured once
  per shape. The first call of a shape builds it untimed (`ensure_built`), and its
  build time is kept in `build_ms`, so compile time never lands in a timed run. Only
  GPUs compile; a CPU runs eager (inductor's CPU path needs a C++ toolchain and minutes).
- Upload overlap: on a GPU at bf16 or fp16 a host batch of at least 2 x `MIN_CHUNK` images
  is cut into up to `MAX_CHUNKS` chunks; chunk k+1 is copied on a copy stream while chunk
  k computes. From pinned memory the copies are truly asynchronous; from pageable memory
  each copy still runs while the kernels already queued compute. Measured on an H200 at
  batch 256 (benchmarks/upload_chunks.py, docs/results/gpu-precision): two chunks save
  1-3% at bf16 (the 154 MB upload is ~15% of a 20 ms ResNet-50), four chunks of 64 cost
  up to 32% (ResNet-50 runs small batches less well), and in fp32, where the upload is
  ~4% of the compute, any chunking costs more than it hides (ResNet-50 +5% with two). So
  fp32 and tf32 upload whole, and bf16/fp16 in at most two chunks of 128 or more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from maniple.errors import ManipleError
from maniple.precision import ExecMode

MIN_CHUNK = 128
MAX_CHUNKS = 2
CHUNKED_PRECISIONS = ("bf16", "fp16")
Forward = Callable[[torch.Tensor], torch.Tensor]


def _raise_recompile_limit(limit: int = 64) -> None:
    """Static shapes mean one dynamo entry per shape: allow many (default 8)."""
    import torch._dynamo as dynamo

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo.config, name) and getattr(dynamo.config, name) < limit:
            setattr(dynamo.config, name, limit)


def chunk_sizes(
    batch: int, min_chunk: int | None = None, max_chunks: int | None = None
) -> list[int]:
    """Near-equal chunks of `batch`, each at least `min_chunk` images (default MIN_CHUNK), at
    most `max_chunks` (default MAX_CHUNKS, read at each call so a benchmark can vary it)."""
    min_chunk = MIN_CHUNK if min_chunk is None else min_chunk
    max_chunks = MAX_CHUNKS if max_chunks is None else max_chunks
    n = max(1, min(max_chunks, batch // max(1, min_chunk)))
    base, extra = divmod(batch, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


class ModelExec:
    """`module` on `device` in `mode`; `forward(x)` for inputs on the device, `run_host(x)`
    for a host batch (overlapped upload on a GPU). Not thread-safe: the worker's lock
    serialises calls."""

    def __init__(self, module: nn.Module, device: torch.device, mode: ExecMode) -> None:
        self.device = device
        self.mode = mode.on(device.type)
        self.dtype = mode.dtype
        self.channels_last = mode.channels_last(device.type)
        module = module.to(device=device, dtype=self.dtype)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module.eval()
        self.build_ms: dict[tuple[int, ...], float] = {}
        self._built: dict[tuple[int, ...], Forward] = {}
        self._compiled: nn.Module | None = None
        self._copy_stream: Any = None

    # -- inputs --------------------------------------------------------------------------
    def cast(self, x: torch.Tensor) -> torch.Tensor:
        """An input on the device in this mode's dtype and memory format."""
        x = x.to(device=self.device, dtype=self.dtype)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def restore(self) -> None:
        """Put the weights back on the device in this mode (after a float32 capture)."""
        self.module.to(device=self.device, dtype=self.dtype)
        if self.channels_last:
            self.module.to(memory_format=torch.channels_last)

    def chunk_shapes(self, batch_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The input shapes a host batch of `batch_shape` runs in (its upload chunks)."""
        if self.device.type != "cuda":
            return [tuple(batch_shape)]
        rest = tuple(batch_shape[1:])
        return sorted({(n, *rest) for n in self._chunks(int(batch_shape[0]))})

    def _chunks(self, batch: int) -> list[int]:
        """The upload chunks of a host batch on this device (see the module docstring)."""
        if self.device.type != "cuda" or self.mode.precision not in CHUNKED_PRECISIONS:
            return [batch]
        return chunk_sizes(batch)

    # -- forwards ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model on `x` (on the device, any dtype): compiled for its shape if the mode
        says so, built first if this shape is new."""
        x = self.cast(x)
        if self.mode.compile == "off":
            return self.module(x)
        return self.ensure_built(tuple(x.shape))(x)

    def run_host(self, x: torch.Tensor) -> torch.Tensor:
        """A host batch through the model; the output on the device."""
        if self.device.type != "cuda" or x.device.type != "cpu":
            return self.forward(x.to(self.device))
        sizes = self._chunks(int(x.shape[0]))
        if len(sizes) == 1:
            return self.forward(x.to(self.device, non_blocking=x.is_pinned()))
        return torch.cat(self._overlapped(x, sizes))

    def ensure_built(self, shape: tuple[int, ...]) -> Forward:
        """The compiled forward of inputs of `shape` (cast), built and run once untimed."""
        fn = self._built.get(shape)
        if fn is not None:
            return fn
        t0 = time.perf_counter()
        sample = torch.zeros(shape, device=self.device, dtype=self.dtype)
        if self.channels_last and len(shape) == 4:
            sample = sample.contiguous(memory_format=torch.channels_last)
        if self.mode.compile == "cuda-graphs":
            fn = _graphed(self.module, sample)
        else:
            fn = self._torch_compiled()
            fn(sample)  # the compile happens on this first call
        torch.cuda.synchronize(self.device)
        self.build_ms[shape] = (time.perf_counter() - t0) * 1e3
        self._built[shape] = fn
        return fn

    # -- internals -----------------------------------------------------------------------
    def _torch_compiled(self) -> nn.Module:
        if self._compiled is None:
            _raise_recompile_limit()
            try:
                self._compiled = torch.compile(self.module, mode=self.mode.compile, dynamic=False)
            except Exception as exc:  # noqa: BLE001 - torch.compile raises many kinds
                raise ManipleError(
                    f"torch.compile (mode {self.mode.compile}) failed on {self.device}: "
                    f"{str(exc).splitlines()[0][:200]}; run with --compile off"
                ) from exc
        return self._compiled

    def _overlapped(self, x: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
        """Chunk k+1's upload on the copy stream while chunk k computes on the current one."""
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(self.device)
        copy, compute = self._copy_stream, torch.cuda.current_stream(self.device)
        pinned = x.is_pinned()
        starts = [sum(sizes[:i]) for i in range(len(sizes))]

        def upload(i: int) -> tuple[torch.Tensor, torch.cuda.Event]:
            with torch.cuda.stream(copy):
                part = x[starts[i] : starts[i] + sizes[i]].to(self.device, non_blocking=pinned)
                done = torch.cuda.Event()
                done.record(copy)
            return part, done

        outs, nxt = [], upload(0)
        for i in range(len(sizes)):
            part, done = nxt
            if i + 1 < len(sizes):
                nxt = upload(i + 1)
            compute.wait_event(done)
            part.record_stream(compute)
            outs.append(self.forward(part))
        return outs


def _graphed(module: nn.Module, sample: torch.Tensor) -> Forward:
    """`module` captured as a CUDA graph for inputs shaped like `sample`: warmed on a side
    stream (as torch.cuda.graph requires), captured, then replayed per call."""
    static_in = sample.clone()
    side = torch.cuda.Stream(sample.device)
    side.wait_stream(torch.cuda.current_stream(sample.device))
    with torch.cuda.stream(side), torch.inference_mode():
        for _ in range(2):
            module(static_in)
    torch.cuda.current_stream(sample.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        static_out = module(static_in)

    def replay(x: torch.Tensor) -> torch.Tensor:
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()

    return replay
