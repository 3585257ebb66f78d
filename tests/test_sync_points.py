"""Sync points (squeeze-and-excitation's pool) on local devices: each band reduces the
rows it owns, the partials are combined, and every runtime gives one device's output.

Needs nothing but this process: three CPU devices on threads of their own.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maniple.devices import DeviceSpec, LocalHandle
from maniple.errors import ManipleError
from maniple.graph import capture, halo
from maniple.spatial.costs import LegionCosts, ProfilingSpent, predict_all
from maniple.spatial.planners import plan_with_matrix
from maniple.spatial.runtimes.peer import run_peer_schedule
from maniple.spatial.runtimes.star import run_schedule
from maniple.spatial.schedule import Schedule, SyncPoint, lower
from maniple.spatial.schedule_peer import lower_peer
from maniple.tiling import SpanProgram, split_rows
from maniple.tiling.verify import relative_error
from modern_blocks import se_net

SHAPE = (3, 48, 48)
NAMES = ("cpu0", "cpu1", "cpu2")


@pytest.fixture(scope="module")
def net():
    model = se_net()
    graph = capture(model, SHAPE, "se-net")
    handles = [
        LocalHandle(DeviceSpec("cpu", threads=1, label=name), model, input_shape=SHAPE)
        for name in NAMES
    ]
    x = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = model(x)
    yield graph, {h.name: h for h in handles}, x, reference
    for h in handles:
        h.close()


def _plan(graph, flc, runtime):
    heights = tuple(u.out_shape[2] for u in graph.units)
    n = len(heights)
    return plan_with_matrix(
        graph.name,
        "legion",
        NAMES,
        heights,
        (1.0, 2.0, 1.5),
        flc,
        np.ones((n, n)),
        ProfilingSpent(),
        runtime=runtime,
    )


def _flcs(n: int):
    return [((0, n - 1),), ((0, 1), (2, n - 1)), tuple((k, k) for k in range(n))]


def test_every_row_is_reduced_by_exactly_one_band(net) -> None:
    graph = net[0]
    last = len(graph.units) - 1
    bands = split_rows(graph.units[last].out_shape[2], (1.0, 2.0, 1.5))
    for name in graph.sync_points:
        owned = [dict(halo(graph, 0, last, b).nodes)[name].in_rows[0] for b in bands]
        height = graph.node(graph.node(name).inputs[0]).height
        assert owned[0][0] == 0 and owned[-1][1] == height
        assert all(a[1] == b[0] for a, b in zip(owned, owned[1:])), owned


@pytest.mark.parametrize("runtime", ["star", "peer"])
@pytest.mark.parametrize("swap", [True, False], ids=["swapped", "through-the-caller"])
def test_runtimes_split_exactly_with_sync_points(net, runtime, swap, monkeypatch) -> None:
    graph, handles, x, reference = net
    if not swap:  # the fallback: partials through the coordinator (star) or by phases (peer)
        import maniple.spatial.runtimes.peer as peer_rt
        import maniple.spatial.runtimes.star as star_rt

        monkeypatch.setattr(star_rt, "prepare_swap", lambda hs: False)
        monkeypatch.setattr(peer_rt, "prepare_swap", lambda hs: False)
    lowering, run = (lower, run_schedule) if runtime == "star" else (lower_peer, run_peer_schedule)
    for flc in _flcs(len(graph.units)):
        schedule = lowering(_plan(graph, flc, runtime), graph)
        assert [p.node for p in schedule.syncs] == list(graph.sync_points)
        out = run(schedule, handles, graph, x).output
        assert relative_error(out, reference) <= 1e-4, (runtime, flc)


def test_schedule_with_sync_points_round_trips_and_names_a_bad_one(net) -> None:
    graph = net[0]
    schedule = lower_peer(_plan(graph, _flcs(len(graph.units))[1], "peer"), graph)
    assert len(schedule.syncs) == 3 and "sync: u" in str(schedule)
    assert Schedule.parse(str(schedule)) == schedule
    assert Schedule.from_json(schedule.to_json()) == schedule
    schedule.validate(graph)
    bad = Schedule(
        *(getattr(schedule, f) for f in ("network", "devices", "input_shape", "unit_shapes")),
        schedule.bytes_per_element,
        schedule.steps,
        schedule.tail,
        (SyncPoint(99, schedule.syncs[0].node, 64),),
    )
    with pytest.raises(ManipleError, match="sync point 0.*unit 99"):
        bad.validate()
    other = Schedule(
        *(getattr(schedule, f) for f in ("network", "devices", "input_shape", "unit_shapes")),
        schedule.bytes_per_element,
        schedule.steps,
        schedule.tail,
        (),
    )
    with pytest.raises(ManipleError, match="sync points"):
        other.validate(graph)


def test_a_band_with_sync_points_runs_only_with_its_peers(net) -> None:
    graph = net[0]
    last = len(graph.units) - 1
    band = (0, graph.units[last].out_shape[2] // 2)
    prog = SpanProgram(graph, None, 0, last, band)
    assert len(prog.sync_points) == 3
    x = net[2][:, :, prog.input_rows[0] : prog.input_rows[1]]
    with pytest.raises(ManipleError, match="sync point"):
        prog(x)
    run = prog.start(x)
    assert run.pending == prog.sync_points[0] and run.partial is not None
    assert tuple(run.partial.shape) == (1, 16, 1, 1)
    assert prog.run_solo(x).shape[2] == band[1] - band[0]  # profiling's same work


def test_worker_pauses_and_resumes_a_band(net) -> None:
    graph, handles, x, _ = net
    worker = handles["cpu0"].worker
    last = len(graph.units) - 1
    band = (0, graph.units[last].out_shape[2])  # the whole map: its own partials are all
    prog = SpanProgram(graph, None, 0, last, band)
    piece, timing = worker.run_span(0, last, band, x)
    for _ in graph.sync_points:
        assert piece.rows == (0, 0) and timing.op == "span"
        piece, timing = worker.resume_span(0, last, band, piece)
    assert torch.allclose(piece, prog(x), rtol=0, atol=1e-6)
    with pytest.raises(ManipleError, match="waits at a sync point"):
        worker.resume_span(0, last, band, piece)


def test_sync_points_cost_their_exchange_in_every_group_that_holds_them() -> None:
    n, nd = 3, 2
    tables = {k: np.ones((nd, n)) for k in ("S", "E", "R")}
    alphas = {k: np.broadcast_to(np.triu(np.ones((n, n))), (nd, n, n)) for k in ("A", "A_in")}
    plain = LegionCosts(("a", "b"), n, **tables, **alphas, weights=(1.0, 1.0))
    synced = LegionCosts(
        ("a", "b"), n, **tables, **alphas, weights=(1.0, 1.0), sync_ms=(0.0, 5.0, 0.0)
    )
    with np.errstate(invalid="ignore"):  # inf - inf below the diagonal
        diff = predict_all(synced) - predict_all(plain)
    assert diff[0, 0] == 0 and diff[1, 1] == 5 and diff[0, 2] == 5 and diff[2, 2] == 0
    assert LegionCosts.from_json(synced.to_json()) == synced
    with pytest.raises(ManipleError, match="sync_ms"):
        LegionCosts(("a", "b"), n, **tables, **alphas, weights=(1.0, 1.0), sync_ms=(1.0,))


def test_spatial_refuses_a_vit_naming_the_op_and_the_batch_split(capsys) -> None:
    from maniple.cli.main import main

    argv = ["spatial", "--network", "modern_blocks:deep_vit", "--input-shape", "3,64,64"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--emulate", "2xfirefly-rk3399"])
    assert exit_info.value.code == 2
    text = " ".join(capsys.readouterr().err.split())
    assert text.startswith("error:") and "'flatten'" in text, text
    assert "maniple infer --network modern_blocks:deep_vit" in text
    assert "of the MACs are before it" in text
