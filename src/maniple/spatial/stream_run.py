"""One measured stream: the frames, the best single device's stream beside it, the checks.

`run_stream` is what `maniple stream` and `maniple bench stream` run: the best device
alone streams a few frames first (the same executor, one lane), then the planned stream
runs every frame; both on the counted clock, so the speedup is two throughputs measured
in the same run. Outputs of a sample of frames (every frame with `check_all`) are
checked afterwards against the whole network run here in fp32, outside the clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from maniple.errors import ManipleError
from maniple.spatial.runtimes.stream import FrameRun, StreamEvent, StreamExecutor
from maniple.spatial.runtimes.stream_clock import Spread, throughput
from maniple.spatial.stream_costs import single_lane
from maniple.spatial.stream_plan import StreamPlan
from maniple.spatial.stream_planner import plan_stream
from maniple.spatial.stream_session import StreamSession, check_frames, synthetic_frames

SINGLE_FRAMES = 6
CHECK_EVERY = 10

FrameHook = Callable[[FrameRun], None]


@dataclass(frozen=True)
class StreamResult:
    """What a stream measured (ms on the counted clock unless said otherwise)."""

    network: str
    plan: StreamPlan
    final_plan: StreamPlan
    frames: tuple[FrameRun, ...]
    events: tuple[StreamEvent, ...]
    fps_target: float | None
    single_device: str
    single_frames: tuple[FrameRun, ...]
    checked: int
    max_rel_error: float
    tolerance: float
    dilation: float
    interrupted: bool = False
    profiled: tuple[str, ...] = field(default_factory=tuple)

    @property
    def throughput_fps(self) -> float:
        return throughput([f.delivered_ms for f in self.frames])

    @property
    def single_fps(self) -> float:
        return throughput([f.delivered_ms for f in self.single_frames])

    @property
    def speedup(self) -> float:
        return self.throughput_fps / self.single_fps if self.single_fps > 0 else math.nan

    @property
    def latency(self) -> Spread:
        return Spread.of([f.latency_ms for f in self.frames])

    @property
    def single_latency(self) -> Spread:
        return Spread.of([f.latency_ms for f in self.single_frames])

    def throughput_after(self, kinds: tuple[str, ...] = ("lost", "plan")) -> float | None:
        """Frames a second after the last change of `kinds` (None: there was none)."""
        changes = [e.at_ms for e in self.events[1:] if e.kind in kinds]
        if not changes:
            return None
        return throughput([f.delivered_ms for f in self.frames], max(changes))

    def to_dict(self) -> dict[str, Any]:
        def num(v: float | None, nd: int = 3) -> float | None:
            return None if v is None or not math.isfinite(v) else round(v, nd)

        return {
            "network": self.network,
            "frames": len(self.frames),
            "interrupted": self.interrupted,
            "fps_target": self.fps_target,
            "throughput_fps": num(self.throughput_fps),
            "latency": self.latency.to_dict(),
            "single_device": self.single_device,
            "single_fps": num(self.single_fps),
            "single_latency": self.single_latency.to_dict(),
            "speedup": num(self.speedup),
            "throughput_after_change_fps": num(self.throughput_after()),
            "checked_frames": self.checked,
            "max_rel_error": self.max_rel_error,
            "tolerance": self.tolerance,
            "dilation": self.dilation,
            "profiled": list(self.profiled),
            "plan": self.plan.to_dict(),
            "final_plan": self.final_plan.to_dict(),
            "events": [
                {
                    "kind": e.kind,
                    "frame": e.frame,
                    "at_ms": num(e.at_ms),
                    "detail": e.detail,
                    "devices": list(e.devices),
                }
                for e in self.events
            ],
            "frame_runs": [
                {
                    "index": f.index,
                    "lane": f.lane,
                    "devices": list(f.devices),
                    "arrival_ms": num(f.arrival_ms),
                    "start_ms": num(f.start_ms),
                    "lane_ms": num(f.lane_ms),
                    "tail_ms": num(f.tail_ms),
                    "delivered_ms": num(f.delivered_ms),
                    "latency_ms": num(f.latency_ms),
                    "attempts": f.attempts,
                }
                for f in self.frames
            ],
        }


class _Fixed:
    """The control of the single-device stream: never re-plans; a lost device ends it."""

    def after_frame(self, run: FrameRun) -> None:
        return None

    def on_lost(self, dead: tuple[str, ...], live: tuple[str, ...]) -> StreamPlan:
        raise ManipleError(f"the single-device stream lost {', '.join(dead)}")


def single_plan(session: StreamSession) -> StreamPlan:
    """The best device alone (the shortest predicted period), as a one-lane stream."""
    session.prepare()
    heights = tuple(u.out_shape[2] for u in session.graph.units)
    dispatch = session.costs.dispatch_ms if session.costs is not None else 0.0
    lanes = {
        frozenset([d]): single_lane(
            session.graph.name,
            d,
            heights,
            session.times_ms[d],
            session.io_ms[d],
            dispatch,
            session.tail_ms,
        )  # fmt: skip
        for d in session.live()
    }
    best = min(lanes.values(), key=lambda lane: lane.period_ms)
    return plan_stream(
        session.graph.name, best.devices, {frozenset(best.devices): best}, session.tail_ms
    )


def run_stream(
    session: StreamSession,
    n_frames: int,
    *,
    frames: Iterable[torch.Tensor] | None = None,
    check_all: bool = False,
    check_every: int = CHECK_EVERY,
    single_frames: int = SINGLE_FRAMES,
    on_frame: FrameHook | None = None,
    seed: int = 0,
) -> StreamResult:
    """Stream `n_frames` (synthetic ones unless `frames` is given) and the best device's
    baseline; see the module docstring. Ctrl-C ends the stream with what was delivered."""
    if n_frames < 1:
        raise ManipleError(f"--frames must be at least 1, got {n_frames}")
    graph = session.graph
    session.prepare()
    alone = single_plan(session)
    inputs: dict[int, torch.Tensor] = {}
    outputs: dict[int, torch.Tensor] = {}

    def kept(source: Iterable[torch.Tensor]) -> Iterable[torch.Tensor]:
        for k, x in enumerate(source):
            if check_all or k % max(1, check_every) == 0:
                inputs[k] = x if x.dim() == 4 else x.unsqueeze(0)
            yield x

    baseline = StreamExecutor(
        session.handles, graph, _Fixed(), dilation=session.dilation, compress=session.compress
    )
    n_single = min(n_frames, max(1, single_frames))
    plan = session.plan()
    source = frames if frames is not None else synthetic_frames(graph, n_frames, seed)
    single: list[FrameRun] = []
    done: list[FrameRun] = []
    interrupted = False
    ex = session.executor()
    try:
        single.extend(baseline.run(synthetic_frames(graph, n_single, seed + 1), alone))
        for run in ex.run(kept(source), plan):
            done.append(run)
            if run.index in inputs:
                outputs[run.index] = run.output
            if on_frame is not None:
                on_frame(run)
    except KeyboardInterrupt:
        interrupted = True
    checked = {k: v for k, v in inputs.items() if k in outputs}
    if interrupted:  # stop soon: check a couple of the frames delivered
        checked = dict(list(checked.items())[:2])
    err = check_frames(graph, checked, outputs, session.legion.tolerance)
    return StreamResult(
        network=graph.name,
        plan=plan,
        final_plan=ex.plan or plan,
        frames=tuple(done),
        events=tuple(ex.events),
        fps_target=session.fps,
        single_device=alone.devices[0],
        single_frames=tuple(single),
        checked=len(checked),
        max_rel_error=err,
        tolerance=session.legion.tolerance,
        dilation=session.dilation,
        interrupted=interrupted,
        profiled=tuple(session.legion.profiled),
    )
