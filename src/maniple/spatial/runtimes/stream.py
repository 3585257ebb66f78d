"""Run a stream of frames under a `StreamPlan`: lanes at once, tails beside them, in order.

Each lane of the plan (one device, or several splitting a frame under a spatial plan) is
a thread that takes the lowest-numbered waiting frame, runs its spatial part on the
lane's devices (the star or peer runtime, from the schedule lowered once per lane) and
hands the bands to this thread, which runs the tail on the coordinator and delivers the
outputs in frame order. So while one frame's tail runs here, the boards already compute
the next frames, and a faster lane simply takes more frames.

What this module decides: nothing about rows or bytes (the schedules do) and nothing
about plans (the `StreamControl` does, from what each frame measured). It only keeps the
promise of a stream:

- no frame lost, duplicated or reordered: a pass that fails because a device stopped
  answering (its process died, or it was silent for its timeout) puts the frame back,
  the dead devices are reported to the control, and the frame runs again under the new
  plan on the remaining devices;
- a new plan takes effect between frames: lanes it keeps go on, lanes it drops finish
  their frame first, and its new lanes start when their devices are free;
- Ctrl-C (or `stop()`) ends the stream at once: the frames delivered so far are kept,
  nothing in flight is waited for (closing the devices ends it).

Time is counted on `StreamClock` (see there); frames are released in real time at the
boards' pace (k / fps x the dilation), so the real run keeps the counted run's order.
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import torch

from maniple.devices.handles import DeviceHandle
from maniple.errors import ManipleError
from maniple.graph import LayerGraph
from maniple.spatial.runtimes.peer import run_peer_schedule
from maniple.spatial.runtimes.result import SpatialRun
from maniple.spatial.runtimes.star import run_schedule
from maniple.spatial.runtimes.stream_clock import StreamClock
from maniple.spatial.runtimes.stream_records import FrameRun, StreamControl, StreamEvent
from maniple.spatial.schedule import Schedule, lower
from maniple.spatial.schedule_peer import lower_peer
from maniple.spatial.stream_plan import StreamLane, StreamPlan

__all__ = ["FrameRun", "StreamControl", "StreamEvent", "StreamExecutor"]

POLL_S = 0.05
PING_S = 5.0  # how long a device suspected dead gets to answer a ping


@dataclass
class _Frame:
    index: int
    x: torch.Tensor
    attempts: int = 0

    def __lt__(self, other: _Frame) -> bool:
        return self.index < other.index


@dataclass
class _Lane:
    id: int
    spec: StreamLane
    schedule: Schedule | None
    retired: bool = False
    thread: threading.Thread | None = None
    after: list[threading.Thread] = field(default_factory=list)


@dataclass
class _Done:
    lane: _Lane
    frame: _Frame
    run: SpatialRun | None
    wall_ms: float
    error: ManipleError | None = None
    dead: tuple[str, ...] = ()
    handles: Mapping[str, DeviceHandle] = field(default_factory=dict)


class StreamExecutor:
    """Runs frames through the lanes of a plan; see the module docstring."""

    def __init__(
        self,
        handles: Mapping[str, DeviceHandle],
        graph: LayerGraph,
        control: StreamControl,
        *,
        fps: float | None = None,
        dilation: float = 1.0,
        compress: bool = False,
    ) -> None:
        self.handles, self.graph, self.control = handles, graph, control
        self.fps, self.dilation, self.compress = fps, dilation, compress
        self.clock = StreamClock(fps)
        self.frames: list[FrameRun] = []
        self.events: list[StreamEvent] = []
        self.dead: set[str] = set()
        self._heap: list[_Frame] = []
        self._cv = threading.Condition()
        self._results: queue.Queue[_Done] = queue.Queue()
        self._lanes: list[_Lane] = []
        self._next_id = 0
        self._stopping = False
        self.plan: StreamPlan | None = None

    # -- lanes --------------------------------------------------------------------------
    def _lower(self, spec: StreamLane) -> Schedule | None:
        plan = spec.plan
        bpe = 4
        if plan.runtime == "peer" and len(plan.devices) > 1:
            return lower_peer(plan, self.graph, bytes_per_element=bpe)
        return lower(plan, self.graph, bytes_per_element=bpe)

    def _apply(self, plan: StreamPlan, why: str) -> None:
        """Make `plan` the one lanes follow from the next frame on (see module docstring)."""
        plan.validate()
        if set(plan.devices) & self.dead:
            raise ManipleError(
                f"the new plan uses lost devices {sorted(set(plan.devices) & self.dead)}"
            )
        kept = {_key(ln.spec): ln for ln in self._lanes if not ln.retired}
        wanted = {_key(s) for s in plan.lanes}
        for key, lane in kept.items():
            if key not in wanted:
                lane.retired = True
        new = []
        for spec in plan.lanes:
            if _key(spec) in kept:
                continue
            holders = [
                ln.thread
                for ln in self._lanes
                if ln.thread is not None and set(ln.spec.devices) & set(spec.devices)
            ]
            lane = _Lane(self._next_id, spec, self._lower(spec), after=holders)
            self._next_id += 1
            new.append(lane)
        self._lanes = [ln for ln in self._lanes if not ln.retired] + new
        for lane in new:
            lane.thread = threading.Thread(
                target=self._lane_loop, args=(lane,), name=f"stream-lane-{lane.id}", daemon=True
            )
            lane.thread.start()
        self.plan = plan
        self.events.append(StreamEvent("plan", len(self.frames), self.clock.now, why, plan.devices))
        with self._cv:
            self._cv.notify_all()

    def _take(self, lane: _Lane) -> _Frame | None:
        with self._cv:
            while not (self._heap or lane.retired or self._stopping):
                self._cv.wait(POLL_S)
            if lane.retired or self._stopping:
                return None
            return heapq.heappop(self._heap)

    def _lane_loop(self, lane: _Lane) -> None:
        try:
            self._lane_frames(lane)
        except BaseException as exc:  # noqa: BLE001 - after stop() nobody listens
            if not self._stopping:
                err = ManipleError(f"lane {lane.id}: {type(exc).__name__}: {exc}")
                self._results.put(_Done(lane, _Frame(-1, torch.empty(0)), None, 0.0, err))

    def _lane_frames(self, lane: _Lane) -> None:
        for holder in lane.after:  # the old plan's lanes finish their frames first
            holder.join()
        while (frame := self._take(lane)) is not None:
            # the handles of this pass: a device that rejoins meanwhile has a new one
            handles = {d: self.handles[d] for d in lane.spec.devices}
            t0 = time.perf_counter()
            try:
                run = self._run(lane, frame.x, handles)
            except ManipleError as exc:
                if self._stopping:
                    return
                wall = (time.perf_counter() - t0) * 1e3
                dead = self._find_dead(handles)
                self._results.put(_Done(lane, frame, None, wall, exc, dead, handles))
                return  # a lane whose pass failed is broken: the control plans again
            self._results.put(_Done(lane, frame, run, (time.perf_counter() - t0) * 1e3))

    def _run(self, lane: _Lane, x: torch.Tensor, handles: Mapping[str, DeviceHandle]) -> SpatialRun:
        assert lane.schedule is not None
        if lane.spec.plan.runtime == "peer" and len(lane.spec.devices) > 1:
            return run_peer_schedule(
                lane.schedule, handles, self.graph, x, compress=self.compress, run_tail=False
            )
        return run_schedule(lane.schedule, handles, self.graph, x, run_tail=False)

    def _find_dead(self, handles: Mapping[str, DeviceHandle]) -> tuple[str, ...]:
        """The devices among `handles` that no longer answer a ping."""
        calls, dead = [], []
        for name, handle in handles.items():
            try:
                calls.append((name, handle._submit("ping")))
            except ManipleError:
                dead.append(name)
        for name, call in calls:
            try:
                call.result(timeout=PING_S)
            except ManipleError:
                dead.append(name)
        return tuple(sorted(dead))

    # -- the stream ---------------------------------------------------------------------
    def stop(self) -> None:
        """End the stream: no lane takes another frame; `run` returns."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()

    def run(self, frames: Iterable[torch.Tensor], plan: StreamPlan) -> Iterator[FrameRun]:
        """Yield each frame's `FrameRun` (output included) in frame order."""
        source = iter(frames)
        self._apply(plan, "start")
        t0 = time.perf_counter()
        taken, exhausted = 0, False
        ready: dict[int, tuple[_Done, float, float, float]] = {}
        try:
            while not exhausted or len(self.frames) < taken:
                while not exhausted and self._want_frame(taken, t0):
                    x = next(source, None)
                    if x is None:
                        exhausted = True
                        break
                    with self._cv:
                        heapq.heappush(self._heap, _Frame(taken, _as_frame(x, taken)))
                        self._cv.notify_all()
                    taken += 1
                try:
                    done = self._results.get(timeout=POLL_S)
                except queue.Empty:
                    self._check_alive(taken)
                    continue
                if done.error is not None:
                    self._failed(done)
                    continue
                yield from self._finished(done, ready)
        except KeyboardInterrupt:
            self.events.append(
                StreamEvent("stopped", len(self.frames), self.clock.now, "interrupted")
            )
            raise
        finally:
            self.stop()

    def _want_frame(self, taken: int, t0: float) -> bool:
        if self.fps is None:
            return len(self._heap) < sum(1 for ln in self._lanes if not ln.retired)
        due = t0 + taken / self.fps * self.dilation
        return time.perf_counter() >= due

    def _check_alive(self, taken: int) -> None:
        if len(self.frames) < taken and not any(not ln.retired for ln in self._lanes):
            raise ManipleError("no device is left to run the stream: every device was lost")

    def _finished(
        self, done: _Done, ready: dict[int, tuple[_Done, float, float, float]]
    ) -> Iterator[FrameRun]:
        run, frame, lane = done.run, done.frame, done.lane
        assert run is not None
        start = self.clock.start(frame.index, lane.spec.devices)
        lane_end = self.clock.end(lane.spec.devices, start, run.latency_ms)
        t1 = time.perf_counter()
        with torch.no_grad():
            y = self.graph.run_tail(run.output)
        tail_ms = (time.perf_counter() - t1) * 1e3
        ready[frame.index] = (done, start, self.clock.tail(lane_end, tail_ms), tail_ms)
        done.frame.x = y  # the output, kept until delivered
        while (nxt := len(self.frames)) in ready:
            d, s, tail_end, t_ms = ready.pop(nxt)
            fr = self._record(d, s, tail_end, t_ms)
            self.frames.append(fr)
            yield fr
            change = self.control.after_frame(fr)
            if change is not None:
                self._apply(*change)

    def _record(self, done: _Done, start: float, tail_end: float, tail_ms: float) -> FrameRun:
        run = done.run
        assert run is not None
        delivered = self.clock.deliver(done.frame.index, tail_end)
        per_device: dict[str, float] = {d: 0.0 for d in done.lane.spec.devices}
        for g in run.groups:
            for t in g.timings:
                if t.device in per_device:
                    per_device[t.device] += t.device_ms
        arrival = self.clock.arrival(done.frame.index)
        assert arrival is not None
        return FrameRun(
            done.frame.index,
            done.lane.id,
            done.lane.spec.devices,
            arrival,
            start,
            run.latency_ms,
            tail_ms,
            delivered,
            per_device,
            done.frame.attempts + 1,
            done.frame.x,
        )

    def _failed(self, done: _Done) -> None:
        """A pass that failed: name the dead, put the frame back, plan again without them."""
        assert done.error is not None
        if not done.dead:
            raise done.error  # every device answers: not a lost board, a real error
        start = self.clock.start(done.frame.index, done.lane.spec.devices)
        self.clock.end(done.lane.spec.devices, start, done.wall_ms)
        done.lane.retired = True
        for name in done.dead:
            old = done.handles.get(name)
            if old is None or self.handles.get(name) is old:  # not rejoined meanwhile
                self.dead.add(name)
            try:
                (old or self.handles[name]).close()
            except Exception:  # noqa: BLE001 - already gone: nothing to free
                pass
        done.frame.attempts += 1
        with self._cv:
            heapq.heappush(self._heap, done.frame)
        self.events.append(
            StreamEvent(
                "lost",
                len(self.frames),
                self.clock.now,
                f"{', '.join(done.dead)} stopped answering during frame {done.frame.index} "
                f"({done.error})",
                done.dead,
            )
        )
        live = tuple(d for d in self.handles if d not in self.dead)
        if not live:
            raise ManipleError(
                f"every device was lost (last: {', '.join(done.dead)}): {done.error}"
            )
        # devices of the broken lane that still answer are free again
        self._apply(
            self.control.on_lost(tuple(sorted(self.dead)), live), f"lost {', '.join(done.dead)}"
        )


def _key(lane: StreamLane) -> tuple[object, ...]:
    """What a lane runs (its devices and their rows), whatever was predicted for it: a
    new plan with the same key keeps the lane running."""
    p = lane.plan
    return (lane.devices, p.runtime if len(p.devices) > 1 else "", p.flc, p.bands)


def _as_frame(x: torch.Tensor, index: int) -> torch.Tensor:
    """A frame as the runtimes take it: (1, C, H, W) float32, contiguous."""
    if not isinstance(x, torch.Tensor):
        raise ManipleError(f"frame {index} is a {type(x).__name__}, not a torch.Tensor")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ManipleError(
            f"frame {index} has shape {tuple(x.shape)}; a frame is (C, H, W) or (1, C, H, W)"
        )
    return x.to(torch.float32).contiguous()
