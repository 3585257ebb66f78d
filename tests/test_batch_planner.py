"""Batch planners: exact equals brute force, greedy sits between exact and single, plans
round-trip and validate, bad input gives clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maniple.batch import PLANNERS, BatchPlan, PerfEntry, PerfTable, load_tables, plan_batch
from maniple.errors import ManipleError, UnknownNameError

STUDY = Path(__file__).resolve().parents[2] / "shared" / "data" / "kcc2020-perf-tables"
needs_study = pytest.mark.skipif(not STUDY.is_dir(), reason="study tables not present")


def brute_force(table: PerfTable, batch: int) -> float:
    """Minimum makespan over every split of `batch` images (a unit may get none)."""
    cost = {d: [table.estimate_ms(d, k) for k in range(batch + 1)] for d in table.devices}
    names = list(table.devices)

    def best(i: int, left: int, worst: float) -> float:
        if i == len(names) - 1:
            return max(worst, cost[names[i]][left])
        return min(best(i + 1, left - k, max(worst, cost[names[i]][k])) for k in range(left + 1))

    return best(0, batch, 0.0)


def linear(**per_image: float) -> PerfTable:
    return PerfTable("net", {d: (PerfEntry(1, ms),) for d, ms in per_image.items()})


@st.composite
def random_tables(draw: st.DrawFn) -> PerfTable:
    """1-4 units, measured at a random few sizes with random (non-monotone) times, some
    with a memory limit."""
    units = draw(st.integers(1, 4))
    entries, limits = {}, {}
    for u in range(units):
        sizes = draw(st.lists(st.integers(1, 48), min_size=1, max_size=6, unique=True))
        entries[f"u{u}"] = tuple(
            PerfEntry(b, draw(st.floats(0.1, 500.0)), draw(st.floats(0.0, 20.0))) for b in sizes
        )
        if u > 0 and draw(st.booleans()):
            limits[f"u{u}"] = draw(st.integers(0, 40))
    return PerfTable("net", entries, max_batch=limits)


@settings(max_examples=120, deadline=None)
@given(random_tables(), st.integers(1, 40))
def test_exact_is_brute_force_and_greedy_lies_between(table: PerfTable, batch: int) -> None:
    exact = plan_batch(table, batch, "exact")
    assert exact.makespan_ms == brute_force(table, batch)
    greedy = plan_batch(table, batch, "greedy")
    single_ms = min(table.estimate_ms(d, batch) for d in table.devices)
    assert exact.makespan_ms <= greedy.makespan_ms <= single_ms
    for plan in (exact, greedy, plan_batch(table, batch, "single")):
        assert sum(plan.shares.values()) == batch
        assert list(plan.shares) == list(table.devices)
        plan.validate(table.entries)


@needs_study
@pytest.mark.parametrize("network", sorted(p.stem for p in STUDY.glob("*.json")))
def test_exact_equals_brute_force_on_the_study_tables(network: str) -> None:
    table = load_tables(STUDY)[network]
    exact = plan_batch(table, 100, "exact")
    assert exact.makespan_ms == brute_force(table, 100)
    greedy = plan_batch(table, 100, "greedy")
    assert exact.makespan_ms <= greedy.makespan_ms <= exact.best_single_ms


def test_exact_prefers_fewer_units_then_faster_ones() -> None:
    # b does all 4 images in 4 ms; no split beats that
    plan = plan_batch(linear(c=4.0, b=1.0, a=5.0), 4, "exact")
    assert plan.shares == {"c": 0, "b": 4, "a": 0}
    # 2 images take 10 ms on x alone, or 10 ms split 1+1: the tie goes to fewer units
    tie = PerfTable(
        "net", {"y": (PerfEntry(1, 10.0),), "x": (PerfEntry(1, 10.0), PerfEntry(2, 10.0))}
    )
    assert plan_batch(tie, 2, "exact").shares == {"y": 0, "x": 2}
    # equally fast units and an optimal split over both: the faster-first order is stable
    assert plan_batch(linear(x=1.0, y=1.0), 3, "exact").shares == {"x": 2, "y": 1}


def test_proportional_split_on_linear_units() -> None:
    table = linear(slow=4.0, mid=2.0, fast=1.0)  # speeds 1:2:4
    for planner in ("exact", "greedy"):
        plan = plan_batch(table, 70, planner)
        assert plan.shares == {"slow": 10, "mid": 20, "fast": 40}
        assert plan.makespan_ms == pytest.approx(40.0)
        assert plan.predicted_speedup == pytest.approx(70 / 40)


def test_equal_and_single() -> None:
    table = linear(slow=4.0, mid=2.0, fast=1.0)
    eq = plan_batch(table, 8, "equal")
    assert eq.shares == {"slow": 2, "mid": 3, "fast": 3}
    assert eq.makespan_ms == 8.0
    single = plan_batch(table, 8, "single")
    assert single.shares == {"slow": 0, "mid": 0, "fast": 8}
    assert single.predicted_speedup == 1.0 and single.best_single_device == "fast"


def test_devices_subset_keeps_the_given_order() -> None:
    table = linear(a=1.0, b=2.0, c=3.0)
    plan = plan_batch(table, 5, "exact", devices=["c", "a"])
    assert list(plan.shares) == ["c", "a"]
    with pytest.raises(UnknownNameError, match="unknown device 'z'"):
        plan_batch(table, 5, devices=["z"])


def test_memory_limits_are_respected() -> None:
    table = PerfTable(
        "net",
        {"fast": (PerfEntry(1, 1.0),), "slow": (PerfEntry(1, 10.0),)},
        max_batch={"fast": 5},
    )
    for planner in ("exact", "greedy"):
        plan = plan_batch(table, 8, planner)
        assert plan.shares["fast"] <= 5 and plan.makespan_ms == 30.0
    assert plan_batch(table, 8, "single").shares == {"fast": 0, "slow": 8}
    with pytest.raises(ManipleError, match="above its memory limit of 5"):
        plan_batch(table, 20, "equal")
    limited = PerfTable("net", dict(table.entries), max_batch={"fast": 5, "slow": 3})
    with pytest.raises(ManipleError, match="limits hold 8 images together"):
        plan_batch(limited, 9, "exact")


@pytest.mark.parametrize("batch", [0, -3])
def test_batch_must_be_positive(batch: int) -> None:
    with pytest.raises(
        ManipleError, match=f"batch must be a positive number of images, got {batch}"
    ):
        plan_batch(linear(a=1.0), batch)


def test_unknown_planner() -> None:
    with pytest.raises(UnknownNameError, match="unknown planner 'fastest'") as info:
        plan_batch(linear(a=1.0), 4, "fastest")
    assert info.value.valid == sorted(PLANNERS)


def test_plan_json_round_trip_and_text() -> None:
    plan = plan_batch(linear(slow=4.0, fast=1.0), 10, "exact")
    doc = plan.to_json()
    assert doc["schema"] == "maniple.batch_plan/1"
    assert {"planner", "batch", "shares", "makespan_ms"} <= set(doc)
    assert BatchPlan.from_json(doc) == plan
    assert BatchPlan.from_json(json.dumps(doc)) == plan
    text = str(plan)
    assert "slow" in text and "fast" in text and "makespan 8.0 ms" in text


def test_plan_with_no_single_device_able_round_trips() -> None:
    table = PerfTable(
        "net", {"a": (PerfEntry(1, 1.0),), "b": (PerfEntry(1, 1.0),)}, max_batch={"a": 3, "b": 3}
    )
    plan = plan_batch(table, 6, "exact")
    assert math.isinf(plan.best_single_ms)
    doc = plan.to_json()
    assert doc["best_single_ms"] is None and doc["predicted_speedup"] is None
    assert BatchPlan.from_json(doc) == plan
    assert "cannot hold it" in str(plan)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shares": {"slow": 2, "fast": 7}}, "step 'shares': shares sum to 9 images"),
        ({"shares": {"slow": -1, "fast": 11}}, "step 'shares': device 'slow' gets a negative"),
        ({"batch": 0}, "step 'batch'"),
        ({"makespan_ms": 1.0}, "step 'makespan_ms'"),
        ({"predicted_ms": {"slow": 8.0}}, "step 'predicted_ms'"),
        ({"schema": "maniple.batch_plan/0"}, "field 'schema'"),
    ],
)
def test_bad_plans_name_the_step(change: dict, message: str) -> None:
    doc = plan_batch(linear(slow=4.0, fast=1.0), 10, "exact").to_json()
    doc.update(change)
    with pytest.raises(ManipleError, match=message):
        BatchPlan.from_json(doc)


def test_validate_names_an_unknown_device() -> None:
    plan = plan_batch(linear(slow=4.0, fast=1.0), 10, "exact")
    with pytest.raises(ManipleError, match="step 'devices': unknown device 'slow'"):
        plan.validate({"fast": None})
