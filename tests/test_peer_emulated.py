"""The peer runtime on emulated boards (Ray actors): pieces pass actor to actor as object
references, the links count their own bytes, and a board that dies mid-run is named.

Marked `emulated`; one local Ray instance (127.0.0.1 only) serves the whole module.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from maniple.cluster import open_cluster, parse_shorthand
from maniple.devices import ModelSpec
from maniple.devices.tiny import TINY_INPUT_SHAPE, TINY_NETWORK, tiny_cnn
from maniple.errors import ManipleError
from maniple.graph import capture
from maniple.spatial.costs import ProfilingSpent
from maniple.spatial.measured import fast_forward
from maniple.spatial.planners import plan_with_matrix
from maniple.spatial.runtimes.peer import run_peer_schedule
from maniple.spatial.schedule_peer import coordinator_bytes, device_bytes, lower_peer
from maniple.tiling.verify import relative_error

pytestmark = [pytest.mark.emulated, pytest.mark.usefixtures("ray_session")]
pytest.importorskip("ray")

TINY = ModelSpec(TINY_NETWORK, input_shape=TINY_INPUT_SHAPE)


def _schedule(names, flc=None):
    graph = capture(tiny_cnn(), TINY_INPUT_SHAPE, "tiny")
    n = len(graph.units)
    heights = tuple(u.out_shape[2] for u in graph.units)
    plan = plan_with_matrix(
        "tiny",
        "layerwise",
        tuple(names),
        heights,
        (1.0,) * len(names),
        flc or tuple((k, k) for k in range(n)),
        np.ones((n, n)),
        ProfilingSpent(),
        runtime="peer",
    )
    return graph, lower_peer(plan, graph)


def test_boards_pass_halo_rows_and_count_their_bytes() -> None:
    # dilation 4: three boards on a 2-core host with room to spare, so that a busy host
    # (other test processes still exiting) does not overrun the real-time run
    spec = parse_shorthand(emulate="3xfirefly-rk3399", dilation=4.0)
    with open_cluster(spec, TINY, input_shape=TINY_INPUT_SHAPE) as cluster:
        handles = {h.name: h for h in cluster}
        graph, schedule = _schedule(handles)
        x = torch.randn(1, *TINY_INPUT_SHAPE)
        with torch.no_grad():
            reference = graph.module(x)
        with fast_forward(list(handles.values())):
            plain = run_peer_schedule(schedule, handles, graph, x)
            packed = run_peer_schedule(schedule, handles, graph, x, compress=True)
        real = run_peer_schedule(schedule, handles, graph, x)
    assert relative_error(plain.output, reference) <= 1e-4
    assert torch.equal(plain.output, packed.output) and torch.equal(plain.output, real.output)
    assert plain.bytes_through_coordinator == coordinator_bytes(schedule)
    assert plain.bytes_between_devices == device_bytes(schedule) > 0
    # the real-time run counts the boards' own time divided out of the dilation
    assert real.device_ms <= real.latency_ms
    assert abs(real.device_ms - plain.device_ms) <= 0.5 * plain.device_ms + 5.0


def test_a_board_that_dies_mid_run_is_named() -> None:
    spec = parse_shorthand(emulate="3xfirefly-rk3399", dilation=40.0)
    with open_cluster(spec, TINY, input_shape=TINY_INPUT_SHAPE, timeout_s=30.0) as cluster:
        handles = {h.name: h for h in cluster}
        graph, schedule = _schedule(handles)
        victim = cluster.devices[1]
        pid = victim.info().pid
        x = torch.randn(1, *TINY_INPUT_SHAPE)
        threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
        t0 = time.perf_counter()
        with pytest.raises(ManipleError, match=f"{victim.name}.*(stopped|died)"):
            for _ in range(20):  # long enough that the kill lands mid-run
                run_peer_schedule(schedule, handles, graph, x)
        assert time.perf_counter() - t0 < 30.0


def test_rows_for_peers_stay_in_the_senders_object_store() -> None:
    """What a step hands to a peer is a reference owned by the sending worker: the
    coordinator only passes it on, the rows never come through it."""
    import ray

    from maniple.devices.step import StepOrder

    spec = parse_shorthand(emulate="2xfirefly-rk3399", dilation=1.0)
    with open_cluster(spec, TINY, input_shape=TINY_INPUT_SHAPE) as cluster:
        names = [h.name for h in cluster]
        graph, schedule = _schedule(names, ((0, 1), (2, 3)))  # a 3x3 conv after the cut
        first = schedule.group_steps(0)[0]
        nxt = [t for s in schedule.group_steps(1) for t in s.receive if t.source == first.device]
        order = StepOrder(
            first.run.first,
            first.run.last,
            first.run.out_rows,
            first.run.in_rows,
            None,
            ("coordinator",),
            (first.run.in_rows,),
            tuple(t.dest for t in nxt),
            tuple(t.rows for t in nxt),
        )
        from maniple.devices.step import make_piece

        x = torch.randn(1, *TINY_INPUT_SHAPE)
        lo, hi = first.run.in_rows
        call = cluster.devices[0].submit_step(
            order, [make_piece("coordinator", (lo, hi), x[:, :, lo:hi], False)]
        )
        call.result()
        pieces = ray.get(list(call.pieces))
    assert pieces and all(isinstance(p.data, ray.ObjectRef) for p in pieces), pieces
    assert all(p.wire_bytes > 0 for p in pieces)


def test_cli_peer_runtime_reports_where_the_bytes_went(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from maniple.cli import app

    args = [
        "spatial", "--network", "squeezenet_v1.1", "--input-shape", "3,64,64",
        "--emulate", "2xcustom:40", "--repeats", "1", "--search", "legion",
        "--runtime", "peer", "--min-gain", "0", "--profile-db", str(tmp_path / "p.sqlite"),
        "--json",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for key in ("runtime", "bytes_through_coordinator", "bytes_between_devices",
                "compression_ratio", "choice"):  # fmt: skip
        assert key in doc
    assert doc["max_rel_error"] <= 1e-4
    if doc["runtime"] == "peer":
        assert doc["bytes_through_coordinator"] > 0
    else:  # the split was not predicted faster: one board ran alone, and it says why
        assert "alone" in doc["choice"]
    bad = CliRunner().invoke(app, [*args[:-1], "--runtime", "ring"])
    assert bad.exit_code != 0 and "star" in str(bad.exception)
