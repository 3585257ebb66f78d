"""A stream end to end on open devices: profile once, plan for throughput, run, re-plan.

`StreamSession` holds one network on a set of open devices. It profiles them the way
`maniple spatial` does (the same cached speed probe and Legion tables, via
`LegionSession`), predicts every candidate lane (`stream_costs`), lets the pure planner
pick the lanes (`stream_planner.plan_stream`: the time per frame at the bottleneck, or
the lowest latency that still keeps up with `--fps`), and runs the frames
(`runtimes.stream.StreamExecutor`). While frames run it is the executor's control:

- **re-balancing**: each device's own time per frame is compared with its time in its
  first frames under the current plan (the median of REF_FRAMES); when it drifts more
  than DRIFT (15%) for DRIFT_FRAMES (3) frames of that device in a row, its slowness is
  scaled by the median of those drifts and the lanes are planned again from the same
  tables (no profiling);
- **lost devices**: the executor names the devices that stopped answering; the lanes
  are planned again over the live ones;
- **joining**: a device added with `add_device` (a board that came back, or a new one)
  joins at the next re-plan, which is the next frame: a device that was profiled gets
  every lane, a new one only lanes of its own (its whole-part time measured once).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from maniple.devices.handles import DeviceHandle
from maniple.errors import ManipleError
from maniple.graph import LayerGraph
from maniple.spatial.cache import CostCache
from maniple.spatial.costs import LegionCosts
from maniple.spatial.measured import fast_forward, reference_input
from maniple.spatial.peer_costs import PeerLinks
from maniple.spatial.profiler import measure_speeds
from maniple.spatial.runtimes.stream import FrameRun, StreamEvent, StreamExecutor
from maniple.spatial.session import LegionSession
from maniple.spatial.stream_costs import lane_candidates
from maniple.spatial.stream_plan import StreamPlan
from maniple.spatial.stream_planner import plan_stream
from maniple.tiling.verify import relative_error

DRIFT = 0.15
DRIFT_FRAMES = 3
REF_FRAMES = 2
"""A device's time under a plan is the median of its first frames under it (a board's
first frame of new work runs cold)."""
TAIL_REPEATS = 5

Progress = Callable[[str, int, int], None]


@dataclass
class _Drift:
    """One device's reference time under the current plan and its run of drifted frames."""

    first: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)

    @property
    def ref_ms(self) -> float | None:
        return statistics.median(self.first) if len(self.first) >= REF_FRAMES else None


class StreamSession:
    """One network streamed over open devices; see the module docstring."""

    def __init__(
        self,
        handles: Sequence[DeviceHandle],
        graph: LayerGraph,
        *,
        cache: CostCache | None = None,
        fps: float | None = None,
        runtime: str = "star",
        compress: str = "auto",
        progress: Progress | None = None,
        max_split: int | None = None,
    ) -> None:
        self.legion = LegionSession(
            handles, graph, repeats=1, progress=progress, cache=cache, compress=compress
        )
        self.graph, self.fps, self.runtime, self.max_split = graph, fps, runtime, max_split
        self.handles: dict[str, DeviceHandle] = {h.name: h for h in handles}
        self.order = [h.name for h in handles]
        self.slowness: dict[str, float] = {}
        self.times_ms: dict[str, float] = {}
        self.io_ms: dict[str, float] = {}
        self.costs: LegionCosts | None = None
        self.links: PeerLinks | None = None
        self.compress = False
        self.tail_ms = 0.0
        self.dead: set[str] = set()
        self._joined: list[str] = []
        self._drift: dict[str, _Drift] = {}
        self.dilation = max((h.dilation for h in handles), default=1.0)
        self._ready = False
        self.last_executor: StreamExecutor | None = None

    # -- what the plans are made from -----------------------------------------------------
    def prepare(self) -> None:
        """Profile (or read from the cache) everything the lanes are predicted from."""
        if self._ready:
            return
        speeds = self.legion.speeds()
        self.times_ms = dict(zip(speeds.devices, speeds.spatial_ms))
        for name in speeds.devices:
            self.io_ms[name] = self._io_ms(self.handles[name])
        if len(self.order) > 1:
            self.costs = self.legion._costs_with_probe()
            if self.runtime in ("peer", "auto"):
                self.links, self.compress = self.legion.peer()
        self.tail_ms = self._measure_tail()
        self._ready = True

    def _io_ms(self, handle: DeviceHandle) -> float:
        """A whole frame in and its map out over the device's own link (0 on this host)."""
        board = handle.spec.board
        if board is None:
            return 0.0
        last = self.graph.units[-1].out_shape
        out_bytes = 4 * int(torch.Size(last).numel())
        in_bytes = 4 * int(torch.Size(self.graph.input_shape).numel())
        return board.link.transfer_ms(in_bytes) + board.link.transfer_ms(out_bytes)

    def _measure_tail(self) -> float:
        """The coordinator's tail on one frame's map, real ms (median of a few runs)."""
        with torch.no_grad():
            spatial = self.graph.spatial_module(self.legion.x)
            times = []
            for _ in range(TAIL_REPEATS):
                t0 = time.perf_counter()
                self.graph.run_tail(spatial)
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    def live(self) -> list[str]:
        return [d for d in self.order if d not in self.dead]

    def plan(self, devices: Sequence[str] | None = None) -> StreamPlan:
        """The stream plan over `devices` (default: the live ones) for the current speeds."""
        self.prepare()
        devices = list(devices if devices is not None else self.live())
        costs = self.costs if self.costs is not None and len(devices) > 1 else None
        lanes = lane_candidates(
            self.graph.name,
            self.graph,
            costs,
            self.times_ms,
            self.io_ms,
            self.tail_ms,
            devices=devices,
            slowness=self.slowness,
            runtime=self.runtime,
            links=self.links,
            max_split=self.max_split,
        )
        return plan_stream(self.graph.name, devices, lanes, self.tail_ms, fps=self.fps)

    # -- the executor's control -----------------------------------------------------------
    def after_frame(self, run: FrameRun) -> tuple[StreamPlan, str] | None:
        if self._joined:
            names, self._joined = ", ".join(self._joined), []
            return self._replan(), f"joined {names}"
        drifted = []
        for name, ms in run.device_ms.items():
            state = self._drift.setdefault(name, _Drift())
            ref = state.ref_ms
            if ref is None:
                state.first.append(ms)
                continue
            ratio = ms / ref if ref > 0 else 1.0
            if abs(ratio - 1.0) > DRIFT:
                state.ratios.append(ratio)
            else:
                state.ratios.clear()
            if len(state.ratios) >= DRIFT_FRAMES:
                drifted.append((name, statistics.median(state.ratios)))
        if not drifted:
            return None
        for name, ratio in drifted:
            self.slowness[name] = self.slowness.get(name, 1.0) * ratio
        why = ", ".join(f"{n} {r:.2f}x its time" for n, r in drifted)
        return self._replan(), f"re-balanced: {why}"

    def on_lost(self, dead: tuple[str, ...], live: tuple[str, ...]) -> StreamPlan:
        self.dead.update(dead)
        return self._replan()

    def _replan(self) -> StreamPlan:
        self._drift.clear()  # every device's time is measured afresh under the new plan
        return self.plan()

    def add_device(self, handle: DeviceHandle) -> None:
        """A device that joins the stream at the next re-plan (the next frame)."""
        name = handle.name
        self.handles[name] = handle
        self.dead.discard(name)
        if self.last_executor is not None:
            self.last_executor.dead.discard(name)
        if name not in self.order:
            self.order.append(name)
        if name not in self.times_ms:  # a new device: its whole-part time, once
            with fast_forward([handle]):
                probe = measure_speeds([handle], self.graph, self.legion.x)
            self.times_ms[name] = probe.spatial_ms[0]
            self.io_ms[name] = self._io_ms(handle)
        self.slowness.pop(name, None)
        self._joined.append(name)

    # -- running --------------------------------------------------------------------------
    def executor(self) -> StreamExecutor:
        """A fresh executor of this session's streams (it is the executor's control)."""
        self.last_executor = StreamExecutor(
            self.handles,
            self.graph,
            self,
            fps=self.fps,
            dilation=self.dilation,
            compress=self.compress,
        )
        return self.last_executor

    def stream(
        self, frames: Iterable[torch.Tensor], plan: StreamPlan | None = None
    ) -> Iterator[FrameRun]:
        """Each frame's run, in frame order, under `plan` (default: a fresh one)."""
        self._drift.clear()
        yield from self.executor().run(frames, plan or self.plan())

    def outputs(self, frames: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The Python way: frames in, each frame's output out, in order."""
        for run in self.stream(frames):
            yield run.output

    @property
    def events(self) -> list[StreamEvent]:
        ex = self.last_executor
        return list(ex.events) if ex is not None else []


def synthetic_frames(graph: LayerGraph, n: int, seed: int = 0) -> Iterator[torch.Tensor]:
    """`n` distinct frames of the network's input shape (seeded; a camera stand-in)."""
    base = reference_input(graph)
    for k in range(n):
        g = torch.Generator().manual_seed(seed * 1_000_003 + k)
        yield torch.rand(base.shape, generator=g) * 2 - 1


def check_frames(
    graph: LayerGraph,
    inputs: dict[int, torch.Tensor],
    outputs: dict[int, torch.Tensor],
    tolerance: float,
) -> float:
    """The largest relative error of the checked frames' outputs against the whole network
    run here in strict fp32 (one device); a ManipleError naming the first frame outside
    `tolerance`."""
    worst = 0.0
    with torch.no_grad():
        for k in sorted(inputs):
            ref = graph.module(inputs[k])
            err = relative_error(outputs[k], ref)
            worst = max(worst, err)
            if not err <= tolerance:
                raise ManipleError(
                    f"frame {k}: output differs from one device's by {err:.3g} (relative), "
                    f"more than the tolerance {tolerance:g}"
                )
    return worst
