"""The link model and the emulated board clock, in fast-forward (pure, no processes)."""

from __future__ import annotations

import time

import pytest
import torch

from maniple.devices.calibration_record import Calibration
from maniple.devices.emulated import DEFAULT_DILATION, BoardClock, dilation_for
from maniple.devices.link import LinkSpec
from maniple.devices.presets import FIREFLY_MS, board
from maniple.errors import ManipleError


def _calibration(scale: float = 0.2) -> Calibration:
    """A made-up host that runs every reference network `scale` x the Firefly's time."""
    return Calibration(
        host="test",
        host_ms={n: ms * scale for n, ms in FIREFLY_MS.items()},
        measured_at="2020-01-01T00:00:00+00:00",
        repeats=1,
    )


def test_one_megabyte_at_100_mbps_is_80_ms() -> None:
    link = LinkSpec(mbps=100, latency_ms=0.0)
    assert link.transfer_ms(1_000_000) == pytest.approx(80.0)
    assert LinkSpec().transfer_ms(1_000_000) == pytest.approx(80.5)
    assert LinkSpec().transfer_ms(0) == 0.0


def test_shared_uplink_limits_many_transfers() -> None:
    link = LinkSpec(mbps=100, latency_ms=0.0, uplink_mbps=1000)
    assert link.transfer_ms(1_000_000, concurrent=10) == pytest.approx(80.0)
    assert link.transfer_ms(1_000_000, concurrent=20) == pytest.approx(160.0)


def test_link_rejects_nonsense() -> None:
    with pytest.raises(ManipleError, match="concurrent"):
        LinkSpec().transfer_ms(10, concurrent=0)
    with pytest.raises(ManipleError, match="latency"):
        LinkSpec(latency_ms=-1)


def test_factors() -> None:
    cal = _calibration()
    assert cal.firefly_factor("vgg-16") == pytest.approx(5.0)
    assert cal.firefly_factor("not-a-reference") == pytest.approx(cal.geomean_factor())
    assert Calibration.from_dict(cal.to_dict()) == cal
    with pytest.raises(ManipleError, match="version"):
        Calibration.from_dict({**cal.to_dict(), "version": 99})
    odroid = BoardClock(board("odroid-xu4"), cal, dilation=1.0, fast_forward=True)
    assert odroid.factor("vgg-16") == pytest.approx(5.0 / 0.65)


def test_fast_forward_clock_does_not_sleep() -> None:
    clock = BoardClock(board("firefly-rk3399"), _calibration(), dilation=50.0, fast_forward=True)
    t0 = time.perf_counter()
    out, times = clock.compute(lambda: torch.ones(3).sum(), "vgg-16")
    assert clock.link(10_000_000) == pytest.approx(800.5)
    assert time.perf_counter() - t0 < 1.0
    assert out.item() == 3.0
    assert times.board_ms == pytest.approx(times.cpu_ms * 5.0)


def test_dilated_clock_sleeps_board_time_times_d() -> None:
    clock = BoardClock(board("firefly-rk3399"), _calibration(), dilation=2.0)
    t0 = time.perf_counter()
    ms = clock.link(125_000)  # 10 ms at 100 Mbps + 0.5 ms latency
    real = (time.perf_counter() - t0) * 1e3
    assert ms == pytest.approx(10.5)
    assert 21.0 <= real < 60.0


def test_dilation_below_one_is_refused() -> None:
    with pytest.raises(ManipleError, match="dilation"):
        BoardClock(board("firefly-rk3399"), _calibration(), dilation=0.5)


def test_default_dilation_grows_with_the_boards() -> None:
    cal = _calibration(scale=0.2)  # every factor 5: a board ms costs 0.2 host ms
    firefly, odroid = board("firefly-rk3399"), board("odroid-xu4")
    assert dilation_for([firefly] * 6, cal, slots=1) == DEFAULT_DILATION  # 1.2 x 1.5 = 1.8
    assert dilation_for([firefly] * 12, cal, slots=1) == 4.0  # 2.4 x 1.5 = 3.6
    assert dilation_for([firefly] * 12, cal, slots=3) == DEFAULT_DILATION
    assert dilation_for([odroid] * 12, cal, slots=1) < dilation_for([firefly] * 12, cal, slots=1)
