"""Legion's pure planners: cost predictor, FLC optimizer, Wild Card, FSS, SpatialPlan."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maniple.errors import ManipleError, UnknownNameError
from maniple.spatial.costs import (
    LegionCosts,
    ProfilingSpent,
    group_device_ms,
    predict_all,
    predict_group,
)
from maniple.spatial.flc import (
    best_flc,
    brute_force_flc,
    choose_faster,
    flc_total,
    fss,
    layerwise,
    one_group,
    wildcard_candidate,
)
from maniple.spatial.plan import SpatialPlan
from maniple.spatial.planners import (
    plan_for_flc,
    plan_from_measured,
    plan_single,
    plan_spatial,
    wildcard_plans,
)
from maniple.tiling.bands import split_rows

DEVICES = ("firefly-0", "firefly-1", "odroid-0")
HEIGHTS = (224, 224, 112, 112, 56, 56, 28)
Edit = Callable[[dict[str, Any]], object]


def random_alpha(rng: np.random.Generator, d: int, n: int) -> np.ndarray:
    """Alpha >= 1, 1 on the diagonal, non-decreasing in j (halos only grow with depth)."""
    steps = rng.uniform(0.0, 0.3, size=(d, n, n))
    alpha = np.ones((d, n, n))
    for k in range(n):
        alpha[:, k, k + 1 :] = 1.0 + np.cumsum(steps[:, k, k + 1 :], axis=1)
    return alpha


def random_costs(
    seed: int,
    n: int,
    d: int = 3,
    spent: ProfilingSpent | None = None,
    weights: tuple[float, ...] | None = None,
) -> LegionCosts:
    rng = np.random.default_rng(seed)
    return LegionCosts(
        devices=tuple(f"dev-{i}" for i in range(d)),
        n_units=n,
        S=rng.uniform(0, 5, (d, n)),
        E=rng.uniform(0, 20, (d, n)),
        R=rng.uniform(0, 5, (d, n)),
        A=random_alpha(rng, d, n),
        A_in=random_alpha(rng, d, n),
        weights=weights if weights is not None else (1.0,) * d,
        spent=spent or ProfilingSpent(),
    )


def direct_group_cost(c: LegionCosts, i: int, j: int) -> float:
    """The formula, written as plainly as possible."""
    worst = 0.0
    for d in range(len(c.devices)):
        total = c.S[d, i] * c.A_in[d, i, j]
        for k in range(i, j + 1):
            total += c.E[d, k] * c.A[d, k, j]
        total += c.R[d, j]
        worst = max(worst, total)
    return worst


# --- cost predictor -----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_predict_group_and_predict_all_match_a_direct_loop(seed: int) -> None:
    c = random_costs(seed, n=9, d=4)
    T = predict_all(c)
    for i in range(9):
        for j in range(9):
            if j < i:
                assert T[i, j] == np.inf
            else:
                assert predict_group(c, i, j) == pytest.approx(direct_group_cost(c, i, j))
                assert T[i, j] == pytest.approx(direct_group_cost(c, i, j))


def test_group_device_ms_names_the_bottleneck() -> None:
    c = random_costs(3, n=4)
    per_device = group_device_ms(c, 1, 3)
    assert per_device.shape == (3,)
    assert per_device.max() == pytest.approx(predict_group(c, 1, 3))
    with pytest.raises(ManipleError, match="group 3..1"):
        predict_group(c, 3, 1)


def test_dispatch_cost_is_added_once_per_group() -> None:
    """The coordinator's per-group cost C makes every extra cut cost C more."""
    c = random_costs(2, n=6)
    with_c = dataclasses.replace(c, dispatch_ms=12.5)
    upper = np.triu_indices(6)
    np.testing.assert_allclose(predict_all(with_c)[upper] - predict_all(c)[upper], 12.5)
    assert predict_group(with_c, 1, 4) == pytest.approx(direct_group_cost(c, 1, 4) + 12.5)
    flc, total = best_flc(predict_all(with_c))
    _, total_without = best_flc(predict_all(c))
    assert total >= total_without + 12.5  # at least one group, each pays C
    assert total == pytest.approx(sum(predict_group(with_c, i, j) for i, j in flc))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "5"])
def test_dispatch_cost_must_be_a_finite_non_negative_number(bad: object) -> None:
    with pytest.raises(ManipleError, match="dispatch_ms must be finite and >= 0 ms"):
        dataclasses.replace(random_costs(0, n=3), dispatch_ms=bad)


def test_costs_json_without_dispatch_reads_as_zero() -> None:
    """Cost files written before the coordinator's cost was measured still load."""
    c = dataclasses.replace(random_costs(4, n=3), dispatch_ms=7.0)
    doc = json.loads(c.to_json())
    assert doc["dispatch_ms"] == 7.0
    assert LegionCosts.from_json(json.dumps(doc)) == c
    doc.pop("dispatch_ms")
    assert LegionCosts.from_json(json.dumps(doc)).dispatch_ms == 0.0


def test_costs_ignore_below_the_diagonal_and_are_read_only() -> None:
    c = random_costs(1, n=3)
    A = np.array(c.A)
    A[:, 2, 0] = np.nan  # below the diagonal: not a group, ignored
    c2 = dataclasses.replace(c, A=A)
    assert c2.A[0, 2, 0] == 0.0
    assert c2 == c
    with pytest.raises(ValueError):
        c2.E[0, 0] = 1.0


def bad_costs(**change: object) -> dict[str, object]:
    fields = {**random_costs(0, n=3, d=2).__dict__}
    fields.update(change)
    return fields


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"E": np.ones((2, 4))}, r"E has shape \(2, 4\), expected \(2, 3\)"),
        ({"A": np.ones((2, 3))}, r"A has shape \(2, 3\), expected \(2, 3, 3\)"),
        ({"S": np.full((2, 3), -1.0)}, r"S\[0, 0\].*finite and >= 0"),
        ({"R": np.full((2, 3), np.nan)}, r"R\[0, 0\].*finite and >= 0"),
        ({"A_in": np.full((2, 3, 3), 2.0)}, r"A_in\[0, 0, 0\].*must be 1"),
        ({"devices": ("a", "a")}, "unique"),
        ({"devices": ()}, "at least one device"),
        ({"n_units": 0}, "n_units"),
        ({"E": "fast"}, "not a numeric array"),
        ({"weights": (1.0,)}, "1 weights for 2 devices"),
        ({"weights": (1.0, -0.5)}, "weight of device 'dev-1' is -0.5; weights must be finite"),
        ({"weights": (1.0, float("nan"))}, "weight of device 'dev-1' is nan"),
        ({"weights": (0.0, 0.0)}, "sum to 0"),
        ({"weights": (1.0, "fast")}, "must be a number"),
        ({"weights": None}, "weights must be a sequence"),
    ],
)
def test_costs_validation_names_the_table(change: dict[str, object], message: str) -> None:
    with pytest.raises(ManipleError, match=message):
        LegionCosts(**bad_costs(**change))


def test_costs_json_round_trip() -> None:
    spent = ProfilingSpent(runs=15, bytes=123456, seconds=2.5)
    c = random_costs(7, n=5, spent=spent, weights=(0.1, 0.2, 1 / 3))
    text = c.to_json()
    assert json.loads(text)["schema"] == "maniple.legion_costs/1"
    assert json.loads(text)["weights"] == [0.1, 0.2, 1 / 3]
    back = LegionCosts.from_json(text)
    assert back == c
    assert back.weights == (0.1, 0.2, 1 / 3)
    assert back.spent == ProfilingSpent(15, 123456, 2.5)
    np.testing.assert_array_equal(predict_all(back), predict_all(c))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(schema="maniple.legion_costs/0"), "field 'schema'"),
        (lambda d: d.pop("E"), "missing field 'E'"),
        (lambda d: d.update(n_units="3"), "field 'n_units' must be an integer"),
        (lambda d: d["spent"].update(seconds=-1), "seconds"),
        (lambda d: d.update(devices=[1, 2, 3]), "field 'devices' must be a string"),
        (lambda d: d.pop("weights"), "missing field 'weights'.*profile the devices again"),
        (lambda d: d.update(weights=[1, "a", 1]), "field 'weights' must be a finite number"),
        (lambda d: d.update(weights=[1, 1]), "2 weights for 3 devices"),
    ],
)
def test_costs_json_errors_name_the_field(edit: Edit, message: str) -> None:
    doc = json.loads(random_costs(0, n=3).to_json())
    edit(doc)
    with pytest.raises(ManipleError, match=message):
        LegionCosts.from_json(json.dumps(doc))
    with pytest.raises(ManipleError, match="not valid JSON"):
        LegionCosts.from_json("{")


def test_weights_are_part_of_the_costs() -> None:
    """Costs profiled with other band weights are other costs: they predict other bands."""
    c = random_costs(5, n=3, weights=(1.0, 2.0, 3.0))
    assert c.weights == (1.0, 2.0, 3.0) and type(c.weights[0]) is float
    assert dataclasses.replace(c, weights=[1, 2, 3]) == c  # lists and ints are normalised
    assert dataclasses.replace(c, weights=(1.0, 2.0, 4.0)) != c


def test_profiling_spent_adds_up_and_refuses_negatives() -> None:
    assert ProfilingSpent(1, 2, 0.5) + ProfilingSpent(3, 4, 1.0) == ProfilingSpent(4, 6, 1.5)
    with pytest.raises(ManipleError, match="runs"):
        ProfilingSpent(runs=-1)


# --- FLC optimizer --------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 14))
def test_dp_equals_brute_force_on_random_float_costs(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    T = np.triu(rng.uniform(0, 100, (n, n)))
    flc, total = best_flc(T)
    assert (flc, total) == brute_force_flc(T)
    assert total == flc_total(flc, T)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 14))
def test_dp_equals_brute_force_with_ties(seed: int, n: int) -> None:
    """Small integer costs tie often; both must break ties the same documented way."""
    rng = np.random.default_rng(seed)
    T = rng.integers(0, 4, (n, n)).astype(float)
    assert best_flc(T) == brute_force_flc(T)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 14), d=st.integers(1, 6))
def test_dp_equals_brute_force_on_predicted_costs(seed: int, n: int, d: int) -> None:
    T = predict_all(random_costs(seed, n, d))
    assert best_flc(T) == brute_force_flc(T)


def test_dp_at_fourteen_units_and_with_infeasible_groups() -> None:
    rng = np.random.default_rng(14)
    T = rng.uniform(0, 10, (14, 14))
    T[0, 5:] = np.inf  # groups starting at 0 may not reach past unit 4
    flc, total = best_flc(T)
    assert (flc, total) == brute_force_flc(T)
    assert flc[0][1] <= 4 and np.isfinite(total)


def test_ties_go_to_fewer_groups() -> None:
    assert best_flc(np.zeros((5, 5))) == (((0, 4),), 0.0)
    T = np.array([[1.0, 2.0], [np.inf, 1.0]])
    assert best_flc(T) == (((0, 1),), 2.0)


def test_cost_matrix_errors() -> None:
    with pytest.raises(ManipleError, match="square"):
        best_flc(np.zeros((2, 3)))
    with pytest.raises(ManipleError, match="square"):
        best_flc(np.zeros((0, 0)))
    with pytest.raises(ManipleError, match=r"T\[0, 1\] is NaN"):
        best_flc(np.array([[1.0, np.nan], [0.0, 1.0]]))
    best_flc(np.array([[1.0, 1.0], [np.nan, 1.0]]))  # below the diagonal: never read
    with pytest.raises(ManipleError, match="2\\^20"):
        brute_force_flc(np.zeros((21, 21)))


def test_baseline_flcs() -> None:
    assert layerwise(3) == ((0, 0), (1, 1), (2, 2))
    assert one_group(3) == ((0, 2),)
    with pytest.raises(ManipleError):
        layerwise(0)


def test_fss_is_the_best_over_measured_costs() -> None:
    T = np.array([[5.0, 9.0, 20.0], [0, 4.0, 6.0], [0, 0, 3.0]])
    assert fss(T) == (((0, 0), (1, 2)), 11.0)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 10))
def test_wildcard_merges_the_cheapest_looking_pair(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    T = np.triu(rng.uniform(0, 50, (n, n)))
    flc = layerwise(n) if seed % 2 else best_flc(T)[0]
    merged = wildcard_candidate(flc, T)
    if len(flc) == 1:
        assert merged is None
        return
    deltas = [T[flc[g][0], flc[g + 1][1]] - T[flc[g]] - T[flc[g + 1]] for g in range(len(flc) - 1)]
    g = int(np.argmin(deltas))
    assert merged == flc[:g] + ((flc[g][0], flc[g + 1][1]),) + flc[g + 2 :]
    assert len(merged) == len(flc) - 1


def test_wildcard_examples() -> None:
    T = np.array(
        [
            [1.0, 1.5, 9.0],
            [0.0, 1.0, 1.2],
            [0.0, 0.0, 1.0],
        ]
    )
    # merging 1+2 saves 0.8, merging 0+1 saves 0.5: the later pair wins
    assert wildcard_candidate(layerwise(3), T) == ((0, 0), (1, 2))
    assert wildcard_candidate(one_group(3), T) is None
    T[1, 2] = np.inf  # infeasible merges are skipped
    assert wildcard_candidate(layerwise(3), T) == ((0, 1), (2, 2))
    T[0, 1] = np.inf
    assert wildcard_candidate(layerwise(3), T) is None
    ties = np.triu(np.ones((3, 3)))
    assert wildcard_candidate(layerwise(3), ties) == ((0, 1), (2, 2))  # leftmost on ties


def test_choose_faster_keeps_the_first_on_ties() -> None:
    a, b = ((0, 1), (2, 2)), ((0, 2),)
    assert choose_faster([(a, 10.0), (b, 9.0)]) == b
    assert choose_faster([(a, 10.0), (b, 10.0)]) == a
    with pytest.raises(ManipleError, match="at least one"):
        choose_faster([])
    with pytest.raises(ManipleError, match="measured time"):
        choose_faster([(a, float("nan"))])


# --- SpatialPlan and the planners -------------------------------------------------------


WEIGHTS = (0.3, 0.3, 0.4)


@pytest.fixture
def costs() -> LegionCosts:
    base = random_costs(11, len(HEIGHTS), len(DEVICES), ProfilingSpent(21, 10_000, 3.0), WEIGHTS)
    return dataclasses.replace(base, devices=DEVICES)


@pytest.mark.parametrize("search", ["legion", "layerwise", "one-group"])
def test_plan_spatial(costs: LegionCosts, search: str) -> None:
    plan = plan_spatial(costs, search, HEIGHTS, WEIGHTS, "vgg-16")
    T = predict_all(costs)
    expected = {
        "legion": best_flc(T)[0],
        "layerwise": layerwise(len(HEIGHTS)),
        "one-group": one_group(len(HEIGHTS)),
    }[search]
    assert plan.flc == expected
    assert plan.search == search and plan.devices == DEVICES and plan.network == "vgg-16"
    assert plan.bands == tuple(split_rows(HEIGHTS[last], WEIGHTS) for _, last in plan.flc)
    assert plan.group_ms == tuple(T[g] for g in plan.flc)
    assert plan.predicted_ms == flc_total(plan.flc, T)
    assert plan.spent == costs.spent
    if search == "legion":
        assert plan.predicted_ms == best_flc(T)[1]
    assert SpatialPlan.from_json(plan.to_json()) == plan


@pytest.mark.parametrize("search", ["legion", "layerwise", "one-group"])
def test_planners_split_by_the_weights_the_costs_carry(costs: LegionCosts, search: str) -> None:
    """Weights may be left out (the costs carry them); given, they must be the same."""
    plan = plan_spatial(costs, search, HEIGHTS, network="vgg-16")
    assert plan == plan_spatial(costs, search, HEIGHTS, WEIGHTS, "vgg-16")
    assert plan.bands == tuple(split_rows(HEIGHTS[last], WEIGHTS) for _, last in plan.flc)
    other = dataclasses.replace(costs, weights=(0.2, 0.3, 0.5))
    assert plan_spatial(other, search, HEIGHTS, network="vgg-16").bands != plan.bands
    with pytest.raises(ManipleError, match=r"weights \[0.2, 0.3, 0.5\] differ from the weights"):
        plan_spatial(costs, search, HEIGHTS, (0.2, 0.3, 0.5), "vgg-16")
    base, merged = wildcard_plans(costs, HEIGHTS, network="vgg-16")
    assert (base, merged) == wildcard_plans(costs, HEIGHTS, WEIGHTS, "vgg-16")
    with pytest.raises(ManipleError, match="differ from the weights"):
        wildcard_plans(costs, HEIGHTS, (1, 1, 1), "vgg-16")
    with pytest.raises(ManipleError, match="differ from the weights"):
        plan_for_flc(costs, ((0, 6),), "legion", HEIGHTS, (1, 1, 1), "vgg-16")
    with pytest.raises(ManipleError, match="network must be the network's name"):
        plan_spatial(costs, search, HEIGHTS, "vgg-16")  # type: ignore[arg-type]


def test_group_with_fewer_rows_than_devices_goes_to_the_fastest(costs: LegionCosts) -> None:
    plan = plan_spatial(costs, "layerwise", (*HEIGHTS[:-1], 2), WEIGHTS, "vgg-16")
    assert sum(b - a > 0 for a, b in plan.bands[-1]) == 2


def test_plan_spatial_refuses_what_it_cannot_do(costs: LegionCosts) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'legion'"):
        plan_spatial(costs, "legoin", HEIGHTS, WEIGHTS, "vgg-16")
    with pytest.raises(ManipleError, match="wildcard_plans"):
        plan_spatial(costs, "legion-wildcard", HEIGHTS, WEIGHTS, "vgg-16")
    with pytest.raises(ManipleError, match="plan_from_measured"):
        plan_spatial(costs, "fss", HEIGHTS, WEIGHTS, "vgg-16")
    with pytest.raises(ManipleError, match="6 unit heights but the costs have 7 units"):
        plan_spatial(costs, "legion", HEIGHTS[:-1], WEIGHTS, "vgg-16")
    with pytest.raises(ManipleError, match="2 weights but the costs have 3 devices"):
        plan_spatial(costs, "legion", HEIGHTS, WEIGHTS[:2], "vgg-16")
    with pytest.raises(ManipleError, match="unit 6 has 0 output rows"):
        plan_spatial(costs, "layerwise", (*HEIGHTS[:-1], 0), WEIGHTS, "vgg-16")
    with pytest.raises(ManipleError, match="must be an integer"):
        plan_spatial(costs, "legion", (*HEIGHTS[:-1], 2.5), WEIGHTS, "vgg-16")


def test_wildcard_plans(costs: LegionCosts) -> None:
    base, merged = wildcard_plans(costs, HEIGHTS, WEIGHTS, "vgg-16")
    T = predict_all(costs)
    assert base.flc == best_flc(T)[0] and base.search == "legion-wildcard"
    assert merged is not None and merged.search == "legion-wildcard"
    assert merged.flc == wildcard_candidate(base.flc, T)
    assert merged.predicted_ms >= base.predicted_ms  # the DP is optimal under the model
    winner = choose_faster([(base.flc, 12.0), (merged.flc, 11.0)])
    assert winner == merged.flc


def test_plan_for_flc_and_single(costs: LegionCosts) -> None:
    plan = plan_for_flc(costs, ((0, 3), (4, 6)), "legion", HEIGHTS, WEIGHTS, "vgg-16")
    assert plan.group_ms == pytest.approx((predict_group(costs, 0, 3), predict_group(costs, 4, 6)))
    with pytest.raises(ManipleError, match="starts at unit 5, expected 4"):
        plan_for_flc(costs, ((0, 3), (5, 6)), "legion", HEIGHTS, WEIGHTS, "vgg-16")
    single = plan_single("vgg-16", "firefly-0", np.array(HEIGHTS), predicted_ms=970.0)
    assert single.flc == ((0, 6),) and single.bands == (((0, 28),),)
    assert single.unit_heights == HEIGHTS and type(single.unit_heights[0]) is int
    assert SpatialPlan.from_json(single.to_json()) == single
    unpredicted = plan_single("vgg-16", "firefly-0", HEIGHTS)
    assert unpredicted.predicted_ms is None and unpredicted.group_ms is None
    assert SpatialPlan.from_json(unpredicted.to_json()) == unpredicted


def test_plan_from_measured_is_fss() -> None:
    T = np.array([[5.0, 9.0, 20.0], [0, 4.0, 6.0], [0, 0, 3.0]])
    spent = ProfilingSpent(runs=6, bytes=999, seconds=12.0)
    plan = plan_from_measured(T, ("a", "b"), (8, 8, 4), (1, 1), "net", spent)
    assert plan.search == "fss" and plan.flc == ((0, 0), (1, 2))
    assert plan.predicted_ms == 11.0 and plan.group_ms == (5.0, 6.0)
    assert plan.bands == (((0, 4), (4, 8)), ((0, 2), (2, 4)))
    assert plan.spent == spent
    with pytest.raises(ManipleError, match="3x3 but the network has 2 units"):
        plan_from_measured(T, ("a", "b"), (8, 4), (1, 1), "net", spent)


def test_str_is_an_aligned_table(costs: LegionCosts) -> None:
    plan = plan_spatial(costs, "layerwise", HEIGHTS, WEIGHTS, "vgg-16")
    text = str(plan)
    assert "vgg-16" in text and "layerwise" in text and "21 runs" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("group"))
    table = lines[header : header + 1 + len(plan.flc)]
    assert len(table) == 1 + len(HEIGHTS)
    for name in DEVICES:
        column = table[0].index(name)
        assert all(row[column - 1] == " " for row in table[1:])  # cells start in line
    assert "0:67" in table[1] and "67:134" in table[1] and "134:224" in table[1]


# --- validate() and JSON errors name the bad step ------------------------------------


def good_plan() -> SpatialPlan:
    return SpatialPlan(
        network="net",
        search="legion",
        devices=("a", "b"),
        unit_heights=(8, 8, 4),
        flc=((0, 1), (2, 2)),
        bands=(((0, 4), (4, 8)), ((0, 2), (2, 4))),
        predicted_ms=3.0,
        group_ms=(1.0, 2.0),
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"flc": ((0, 0), (2, 2))}, r"group 1 \(2..2\) starts at unit 2, expected 1"),
        ({"flc": ((0, 1),)}, "ends at unit 1, but the network has units 0..2"),
        ({"flc": ((1, 1), (2, 2))}, "group 0 .* starts at unit 1, expected 0"),
        ({"flc": ()}, "no groups"),
        ({"bands": (((0, 4), (4, 7)), ((0, 2), (2, 4)))}, r"group 0 .*cover rows 0:7.* 8 rows"),
        ({"bands": (((0, 4), (5, 8)), ((0, 2), (2, 4)))}, r"device 'b': band 5:8 should start"),
        ({"bands": (((0, 8),), ((0, 2), (2, 4)))}, "bands for 1 devices but the plan has 2"),
        ({"bands": (((0, 4), (4, 8)),)}, "bands given for 1 groups but the FLC has 2"),
        ({"devices": ("a",)}, "bands for 2 devices but the plan has 1"),
        ({"devices": ("a", "a")}, "unique"),
        ({"search": "legoin"}, "unknown search 'legoin'"),
        ({"search": "single"}, "search 'single' runs on one device"),
        ({"predicted_ms": 4.0}, "not the sum of group_ms"),
        ({"group_ms": (1.0,)}, "group_ms has 1 entries for 2 groups"),
        ({"group_ms": (1.0, float("inf"))}, r"group_ms\[1\] is inf"),
        ({"predicted_ms": None}, "both be given or both None"),
        ({"unit_heights": (8, 0, 4)}, "unit 1 has 0 output rows"),
        ({"network": ""}, "network must be a non-empty name"),
    ],
)
def test_validate_names_the_bad_step(change: dict[str, object], message: str) -> None:
    good_plan().validate()
    with pytest.raises(ManipleError, match=message):
        dataclasses.replace(good_plan(), **change).validate()


def test_lists_are_accepted_and_compare_equal_to_tuples() -> None:
    plan = dataclasses.replace(
        good_plan(), flc=[[0, 1], [2, 2]], bands=[[[0, 4], [4, 8]], [[0, 2], [2, 4]]]
    )
    assert plan == good_plan()
    hash(plan)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(schema="maniple.batch_plan/1"), "field 'schema' is"),
        (lambda d: d.pop("bands"), "missing field 'bands'"),
        (lambda d: d.update(flc=[[0, 1, 2]]), "field 'flc' must be a pair"),
        (lambda d: d.update(flc=[[0, 0], [2, 2]]), "starts at unit 2, expected 1"),
        (lambda d: d.update(predicted_ms="fast"), "field 'predicted_ms' must be a finite"),
        (lambda d: d.update(devices="ab"), "field 'devices' must be a list"),
        (lambda d: d.update(search="legoin"), "unknown search"),
    ],
)
def test_plan_json_errors_name_the_field(edit: Edit, message: str) -> None:
    doc = json.loads(good_plan().to_json())
    edit(doc)
    with pytest.raises(ManipleError, match=message):
        SpatialPlan.from_json(json.dumps(doc))


def test_plan_json_round_trip_keeps_everything() -> None:
    plan = dataclasses.replace(good_plan(), spent=ProfilingSpent(3, 4, 5.5))
    doc = json.loads(plan.to_json())
    assert doc["schema"] == "maniple.spatial_plan/1"
    assert doc["flc"] == [[0, 1], [2, 2]]
    assert doc["bands"] == [[[0, 4], [4, 8]], [[0, 2], [2, 4]]]
    assert SpatialPlan.from_json(plan.to_json()) == plan
    assert SpatialPlan.from_dict(plan.to_dict()) == plan
