"""Streams of frames on emulated boards (Ray actors): every frame delivered once, in
order and exact, through a board killed mid-stream, a board slowed down, a board that
comes back, and Ctrl-C. Marked `emulated`; one local Ray instance serves the module.
No timing thresholds: `maniple bench stream` and benchmarks/stream_*.py measure speed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from maniple.cluster import open_cluster
from maniple.devices.tiny import TINY_NETWORK
from maniple.errors import ManipleError
from maniple.spatial.runtimes.stream import FrameRun
from maniple.spatial.setup import SpatialSetup, open_devices, prepare
from maniple.spatial.stream_run import StreamResult, run_stream
from maniple.spatial.stream_session import DRIFT, StreamSession

pytestmark = [pytest.mark.emulated, pytest.mark.usefixtures("ray_session")]
pytest.importorskip("ray")

SHAPE = (3, 32, 32)


def _setup(boards: str = "3xfirefly-rk3399", timeout_s: float = 10.0) -> SpatialSetup:
    return prepare(
        TINY_NETWORK, emulate=boards, input_shape=SHAPE, dilation=4.0, timeout_s=timeout_s
    )


@contextmanager
def _session(boards: str = "3xfirefly-rk3399", **kw: object) -> Iterator[StreamSession]:
    setup = _setup(boards)
    with open_devices(setup) as handles:
        yield StreamSession(handles, setup.graph, **kw)  # type: ignore[arg-type]


def _in_order_and_exact(result: StreamResult, n: int) -> None:
    assert [f.index for f in result.frames] == list(range(n))
    assert result.checked == n
    assert result.max_rel_error <= result.tolerance
    json.dumps(result.to_dict(), allow_nan=False)  # strict JSON


def _pid(session: StreamSession, name: str) -> int:
    return int(session.handles[name]._submit("ping").result(timeout=10))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_a_stream_delivers_every_frame_once_in_order_and_exact() -> None:
    with _session() as session:
        result = run_stream(session, 10, check_all=True, single_frames=2)
    _in_order_and_exact(result, 10)
    assert all(f.attempts == 1 for f in result.frames)
    assert result.throughput_fps > 0 and result.single_fps > 0
    assert result.latency.p50 <= result.latency.p99
    assert [e.kind for e in result.events] == ["plan"] or all(
        e.kind == "plan" for e in result.events
    )


def test_a_killed_board_loses_no_frame_and_leaves_no_process() -> None:
    with _session() as session:
        session.prepare()
        victim = session.plan().lanes[0].devices[0]
        pid = _pid(session, victim)

        def kill(run: FrameRun) -> None:
            if run.index == 3:
                os.kill(pid, signal.SIGKILL)

        result = run_stream(session, 14, check_all=True, single_frames=1, on_frame=kill)
        _in_order_and_exact(result, 14)
        lost = [e for e in result.events if e.kind == "lost"]
        assert [e.devices for e in lost] == [(victim,)]
        assert victim not in result.final_plan.devices
        assert all(victim not in f.devices for f in result.frames[8:])
    deadline = time.time() + 10
    while not _gone(pid) and time.time() < deadline:
        time.sleep(0.2)
    assert _gone(pid)


def test_a_slowed_board_is_rebalanced_from_its_measured_times() -> None:
    with _session("2xfirefly-rk3399", fps=None) as session:
        session.prepare()
        victim = session.order[0]

        def slow(run: FrameRun) -> None:
            if run.index == 4:
                session.handles[victim].set_slowdown(2.0)

        result = run_stream(session, 24, single_frames=1, on_frame=slow)
    rebalanced = [e for e in result.events if e.kind == "plan" and victim in e.detail]
    assert rebalanced, [e.detail for e in result.events]
    # its compute runs at half speed; its link and the worker's own overhead do not
    assert 1 + DRIFT < session.slowness[victim] < 2.5
    assert [f.index for f in result.frames] == list(range(24))


def test_a_board_that_comes_back_joins_at_the_next_plan() -> None:
    setup = _setup()
    with open_devices(setup) as handles:
        session = StreamSession(handles, setup.graph)
        session.prepare()
        victim = session.order[1]
        spec = [d for d in setup.spec.devices if d.name == victim][0]
        back = dataclasses.replace(setup.spec, devices=(spec,))
        pid = _pid(session, victim)
        with open_cluster(back, setup.model, input_shape=SHAPE) as again:
            added: list[int] = []

            def churn(run: FrameRun) -> None:
                if run.index == 2:
                    os.kill(pid, signal.SIGKILL)
                lost = any(e.kind == "lost" for e in session.events)
                if run.index >= 7 and lost and not added:
                    session.add_device(list(again)[0])
                    added.append(run.index)

            result = run_stream(session, 30, check_all=True, single_frames=1, on_frame=churn)
    _in_order_and_exact(result, 30)
    kinds = [e.detail for e in result.events]
    assert added and any(d.startswith("joined") for d in kinds), kinds
    assert victim in result.final_plan.devices
    assert any(victim in f.devices for f in result.frames[added[0] :])


def test_ctrl_c_ends_the_stream_at_once_with_the_frames_done() -> None:
    with _session() as session:
        session.prepare()
        state: dict[str, float] = {}

        def interrupt(run: FrameRun) -> None:
            if run.index == 3:
                state["at"] = time.perf_counter()
                raise KeyboardInterrupt

        result = run_stream(session, 40, single_frames=1, on_frame=interrupt)
        took = time.perf_counter() - state["at"]
    assert result.interrupted
    assert [f.index for f in result.frames] == [0, 1, 2, 3]
    assert took < 2.0


def test_bad_frames_are_refused_naming_the_frame() -> None:
    import torch

    with _session("1xfirefly-rk3399") as session:
        with pytest.raises(ManipleError, match="frame 1 has shape"):
            list(session.outputs([torch.zeros(SHAPE), torch.zeros(2, 3, 32, 32)]))


@pytest.mark.parametrize("runtime", ["star", "peer"])
def test_a_lane_that_splits_each_frame_is_exact_and_in_order(runtime: str) -> None:
    from maniple.spatial.stream_costs import lane_candidates
    from maniple.spatial.stream_planner import plan_stream
    from maniple.spatial.stream_session import check_frames, synthetic_frames

    with _session(runtime=runtime) as session:
        session.prepare()
        names = session.order
        lanes = lane_candidates(
            session.graph.name, session.graph, session.costs, session.times_ms,
            session.io_ms, session.tail_ms, runtime=runtime, links=session.links,
        )  # fmt: skip
        split = lanes[frozenset(names)]
        assert split.plan.runtime == runtime and len(split.plan.devices) == 3
        plan = plan_stream(session.graph.name, names, {frozenset(names): split}, 0.0)
        frames = list(synthetic_frames(session.graph, 6))
        runs = list(session.stream(frames, plan))
    assert [r.index for r in runs] == list(range(6))
    # the first frames ran split (a drift on this tiny net may re-plan later ones)
    assert set(runs[0].device_ms) == set(names) and len(runs[0].devices) == 3
    outputs = {r.index: r.output for r in runs}
    inputs = {k: x.unsqueeze(0) if x.dim() == 3 else x for k, x in enumerate(frames)}
    check_frames(session.graph, inputs, outputs, session.legion.tolerance)
