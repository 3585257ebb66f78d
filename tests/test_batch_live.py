"""Live batch split: three emulated CPU-class units of speed 1:2:4 (the issue's acceptance),
and a tiny CPU + CUDA run where a GPU is present.

The emulated units are `emu:custom` boards (VGG-16 in 1940, 3880 and 7760 ms: half, a
quarter and an eighth of a Firefly-RK3399) on a fast local link, running ResNet-18 at
64x64 (its time per image hardly depends on the batch size there, and its input is
small), so that the whole test stays well under two minutes on two cores. They are
profiled in fast-forward mode and then run for real, exact against equal.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from maniple.batch import (
    ProfileStore,
    ideal_ms,
    max_rel_error,
    median_run,
    plan_batch,
    profile_sizes,
    profiled_cluster,
    random_batch,
    run_batch_plan,
    run_interleaved,
)
from maniple.cluster import ClusterSpec
from maniple.devices import DeviceSpec, LinkSpec, ModelSpec
from maniple.devices.presets import BoardSpec

BOARDS_MS = (1940.0, 3880.0, 7760.0)  # VGG-16 latency: speeds 4:2:1
FAST_LINK = LinkSpec(mbps=10_000, latency_ms=0.05, uplink_mbps=100_000)
NETWORK = "resnet-18"
SHAPE = (3, 64, 64)
BATCH = 112
TOLERANCE = 0.10


def three_units() -> ClusterSpec:
    boards = (DeviceSpec("emu", board=BoardSpec("custom", ms, FAST_LINK)) for ms in BOARDS_MS)
    return ClusterSpec(tuple(boards))  # the default dilation: room for other processes


@pytest.mark.slow  # a timing threshold: the benchmark command reports it
@pytest.mark.emulated
def test_exact_split_on_units_of_speed_1_2_4_meets_its_prediction(tmp_path: Path) -> None:
    model = ModelSpec(NETWORK, input_shape=SHAPE)
    x = random_batch(BATCH, SHAPE, seed=0)
    sizes = profile_sizes(BATCH)
    with (
        ProfileStore(tmp_path / "profiles.sqlite") as store,
        profiled_cluster(three_units(), model, SHAPE, store, sizes, repeats=5, progress=False)
        as (devices, table, _),
    ):  # fmt: skip
        plan = plan_batch(table, BATCH, "exact")
        equal_plan = plan_batch(table, BATCH, "equal")
        # Warm-ups: a board's time is the fastest of its runs of the same work so far,
        # as in profiling, where each size ran warm-up + 5 times.
        runs = run_interleaved({"exact": plan}, devices, x, repeats=3, warmup=2)["exact"]
        equal = run_batch_plan(equal_plan, devices, x)
    fast, mid, slow = table.devices
    per_image = {d: table.estimate_ms(d, 32) / 32 for d in table.devices}
    assert per_image[mid] / per_image[fast] == pytest.approx(2.0, rel=0.35)
    assert per_image[slow] / per_image[fast] == pytest.approx(4.0, rel=0.35)
    assert plan.shares[fast] > plan.shares[mid] > plan.shares[slow] > 0

    exact, ideal = median_run(runs), ideal_ms(table, BATCH)
    units = [
        (u.images, round(u.predicted_ms), round(u.end_ms), round(u.timing.overrun_ms))
        for u in exact.units
        if u.timing is not None
    ]
    summary = (
        f"exact {dict(plan.shares)}: predicted {plan.makespan_ms:.0f} ms, measured "
        f"{exact.measured_ms:.0f} ms (runs {[round(r.measured_ms) for r in runs]}), ideal "
        f"{ideal:.0f} ms; equal predicted {equal_plan.makespan_ms:.0f} ms, measured "
        f"{equal.measured_ms:.0f} ms; units (images, predicted, measured end, overrun) {units}"
    )
    print(summary)  # shown with -s, and on failure
    assert abs(exact.measured_ms / plan.makespan_ms - 1) <= TOLERANCE, summary
    assert abs(exact.measured_ms / ideal - 1) <= TOLERANCE, summary
    assert equal.measured_ms >= 1.5 * exact.measured_ms, summary
    assert all(u.timing is not None and u.timing.emulated for u in exact.units if u.called)

    with torch.inference_mode():
        expected = model.build().module(x)  # one device, this process
    assert max_rel_error(exact.output, expected) <= 1e-4
    assert max_rel_error(equal.output, expected) <= 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_and_cuda_split_is_never_slower_than_cuda_alone(tmp_path: Path) -> None:
    from maniple.batch import InferOptions, infer
    from maniple.cluster import parse_shorthand

    options = InferOptions(
        network="resnet-18",
        batch=32,
        planner="exact",
        repeats=5,
        sizes=(1, 2, 4, 8, 16, 32, 33),
    )
    with ProfileStore(tmp_path / "profiles.sqlite") as store:
        result = infer(parse_shorthand("cpu,cuda:0"), store, options, progress=False)
    assert result.ok, f"outputs differ by {result.max_rel_error:.1e}"
    assert result.single_device == "cuda:0"
    assert result.run.measured_ms <= 1.02 * result.single.measured_ms + 1.0
