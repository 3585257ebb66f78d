"""Emulated edge boards: Ray actor processes on this host that keep a board's time.

Marked `emulated`; one local Ray instance (127.0.0.1 only) serves the whole module.
"""

from __future__ import annotations

import os
import signal
import statistics
import time

import pytest
import torch

from maniple.cluster import open_cluster, parse_shorthand
from maniple.devices import ModelSpec, open_device, probe
from maniple.devices.emulated import DEFAULT_DILATION
from maniple.devices.tiny import TINY_INPUT_SHAPE, TINY_NETWORK
from maniple.errors import ManipleError

pytestmark = [pytest.mark.emulated, pytest.mark.usefixtures("ray_session")]
pytest.importorskip("ray")

TINY = ModelSpec(TINY_NETWORK, input_shape=TINY_INPUT_SHAPE)
TOLERANCE = 0.10


@pytest.mark.slow  # a timing threshold: the benchmark command reports it
def test_firefly_runs_vgg16_in_970_ms() -> None:
    pytest.importorskip("maniple.zoo")
    result = probe("emu:firefly-rk3399", "vgg-16", repeats=3)
    assert result.emulated and result.dilation == DEFAULT_DILATION
    assert result.reference_ms == 970.0
    assert abs(result.latency_ms - 970.0) <= TOLERANCE * 970.0, result
    assert result.overrun_ms == 0.0, result
    assert result.board_ms is not None and abs(result.board_ms - result.latency_ms) < 30.0


def test_one_megabyte_over_100_mbps_takes_80_ms() -> None:
    with open_device("emu:firefly-rk3399") as board:
        t0 = time.perf_counter()
        timing = board.transfer(1_000_000)
        real_ms = (time.perf_counter() - t0) * 1e3
    assert timing.link_ms == pytest.approx(80.5)  # 80 ms on the wire + 0.5 ms latency
    assert abs(timing.device_ms - 80.0) <= TOLERANCE * 80.0, timing
    assert real_ms >= 80.0 * DEFAULT_DILATION  # the sleep really is dilated


def test_batch_charges_its_bytes_to_the_link() -> None:
    with open_device("emu:odroid-xu4@10", TINY, dilation=1.0) as board:
        x = torch.randn(8, *TINY_INPUT_SHAPE)
        y, timing = board.run_batch(x)
        link = board.spec.board.link  # type: ignore[union-attr]
        expected = link.transfer_ms(x.numel() * 4) + link.transfer_ms(y.numel() * 4)
        assert timing.link_ms == pytest.approx(expected)
        assert timing.board_ms is not None and timing.board_ms > timing.cpu_ms
        _, bare = board.run_batch(x, link=False)
        assert bare.link_ms == 0.0
        info = board.info()
        assert info.threads == 1 and info.board == "odroid-xu4" and info.pid != os.getpid()


@pytest.mark.slow  # a timing threshold: the benchmark command reports it
def test_six_boards_at_once_keep_their_speed() -> None:
    """Six Fireflies run VGG-16 at once on this 2-core host at the default dilation. Each
    board's time seen from outside (dilated wall time / D) stays within 10% of its own
    board time (what it computes for that work) in every round, i.e. running together
    costs no board speed, with no overrun; and every board stays within 20% of the published 970 ms
    (each board is its own process, whose speed differs by a few % from the next one's;
    the probe test holds a lone board to 10%)."""
    pytest.importorskip("maniple.zoo")
    x = torch.randn(1, 3, 224, 224)
    spec = parse_shorthand(emulate="6xfirefly-rk3399")
    per_board: dict[str, list[tuple[float, float]]] = {}
    overruns = []
    with open_cluster(spec, ModelSpec("vgg-16")) as cluster:
        assert len(cluster) == 6 and len({d.dilation for d in cluster}) == 1
        assert cluster.devices[0].dilation >= DEFAULT_DILATION  # 2 here (dilation_for)
        for round_ in range(6):
            calls = [d.submit_batch(x, link=False) for d in cluster]
            timings = [c.result()[1] for c in calls]
            if round_ >= 2:  # two warm-up rounds
                for t in timings:
                    assert t.board_ms is not None
                    per_board.setdefault(t.device, []).append((t.device_ms, t.board_ms))
                    overruns.append(t.overrun_ms)
    slowed = {n: v for n, v in per_board.items() if any(d / b - 1 > TOLERANCE for d, b in v)}
    assert not slowed, f"boards slowed by running together (seen, own ms): {slowed}"
    seen = {n: statistics.median(d for d, _ in v) for n, v in per_board.items()}
    assert max(overruns) == 0.0, overruns
    far = {n: ms for n, ms in seen.items() if abs(ms / 970.0 - 1) > 0.2}
    assert not far, f"boards far from 970 ms: {far}"


def test_killed_board_is_named_within_the_timeout() -> None:
    with open_device("emu:firefly-rk3399", timeout_s=30.0) as board:
        pid = board.info().pid
        call = board.submit_transfer(50_000_000)  # 4 s emulated, 8 s real
        time.sleep(0.5)
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ManipleError, match="emu:firefly-rk3399.*died"):
            call.result()
        assert time.perf_counter() - t0 < 30.0


def test_silent_board_is_named_within_the_timeout() -> None:
    with open_device("emu:firefly-rk3399", timeout_s=3.0) as board:
        pid = board.info().pid
        os.kill(pid, signal.SIGSTOP)
        try:
            call = board.submit_transfer(1000)
            t0 = time.perf_counter()
            with pytest.raises(ManipleError, match="emu:firefly-rk3399.*stopped answering"):
                call.result()
            assert time.perf_counter() - t0 < 3.0 + 6.0
        finally:
            os.kill(pid, signal.SIGKILL)


def test_cluster_drops_a_dead_board_and_goes_on() -> None:
    spec = parse_shorthand(emulate="2xfirefly-rk3399", dilation=1.0)
    with open_cluster(spec, TINY) as cluster:
        victim, survivor = cluster.devices
        os.kill(victim.info().pid, signal.SIGKILL)
        with pytest.raises(ManipleError, match=victim.name):
            victim.run_batch(torch.zeros(1, *TINY_INPUT_SHAPE))
        cluster.drop(victim.name)
        assert cluster.names == [survivor.name] and cluster.dropped == [victim.name]
        y, _ = survivor.run_batch(torch.zeros(1, *TINY_INPUT_SHAPE))
        assert y.shape == (1, 10)


def test_fast_forward_reports_board_time_without_sleeping() -> None:
    with open_device("emu:firefly-rk3399", TINY, fast_forward=True, dilation=10.0) as board:
        t0 = time.perf_counter()
        timing = board.transfer(10_000_000)  # 800 ms emulated
        assert (time.perf_counter() - t0) < 0.5
        assert timing.fast_forward and timing.device_ms == pytest.approx(800.5)


def test_remote_devices_refuse_modules() -> None:
    from maniple.devices.tiny import tiny_cnn

    with pytest.raises(ManipleError, match="ModelSpec"):
        open_device("emu:firefly-rk3399", tiny_cnn())
