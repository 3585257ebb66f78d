"""Legion's planners: pure functions from cost tables to a `SpatialPlan`.

`plan_spatial` serves the searches that need no measuring (`legion`: the FLC optimizer
over predicted costs; `layerwise`; `one-group`), `wildcard_plans` the two candidates the
runtime races for `legion-wildcard`, `plan_from_measured` the `fss` baseline over measured
group costs, and `plan_single` the one-device baseline. This module also re-exports the
rest of the Legion planning API, so `from maniple.spatial.planners import ...` is enough.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence

import numpy as np

from maniple.errors import ManipleError, UnknownNameError
from maniple.spatial.bands import group_bands, output_bands, step_rows
from maniple.spatial.costs import (
    LegionCosts,
    ProfilingSpent,
    group_device_ms,
    predict_all,
    predict_group,
)
from maniple.spatial.flc import (
    FLC,
    best_flc,
    brute_force_flc,
    check_cost_matrix,
    check_flc,
    choose_faster,
    flc_total,
    fss,
    layerwise,
    one_group,
    wildcard_candidate,
)
from maniple.spatial.plan import PREDICTED_SEARCHES, SEARCHES, SpatialPlan
from maniple.spatial.plan_checks import check_heights
from maniple.tiling.bands import Band, speed_weights, split_rows

__all__ = [
    "FLC",
    "PREDICTED_SEARCHES",
    "SEARCHES",
    "Band",
    "LegionCosts",
    "ProfilingSpent",
    "SpatialPlan",
    "best_flc",
    "brute_force_flc",
    "choose_faster",
    "flc_total",
    "fss",
    "group_bands",
    "group_device_ms",
    "layerwise",
    "one_group",
    "output_bands",
    "plan_for_flc",
    "plan_from_measured",
    "plan_legion",
    "plan_single",
    "plan_spatial",
    "plan_with_matrix",
    "predict_all",
    "predict_group",
    "speed_weights",
    "split_rows",
    "step_rows",
    "wildcard_candidate",
    "wildcard_plans",
]


def plan_spatial(
    costs: LegionCosts,
    search: str,
    unit_heights: Sequence[int],
    weights: Sequence[float] | None = None,
    network: str | None = None,
) -> SpatialPlan:
    """Plan a search that needs no measuring: `legion` (the FLC optimizer over predicted
    costs), `layerwise` (no fusion) or `one-group` (everything fused, as in DeepThings).

    `unit_heights` are the output rows of each unit. The bands are split by the weights
    the costs were profiled with (`costs.weights`), since the costs predict only those
    bands; `weights` may still be given (older call sites), and must then equal them.
    """
    if search not in SEARCHES:
        raise UnknownNameError("search", search, SEARCHES)
    if search not in PREDICTED_SEARCHES:
        how = {
            "legion-wildcard": "use wildcard_plans, run both for real, keep choose_faster's",
            "fss": "measure every group and use plan_from_measured",
            "single": "use plan_single",
        }[search]
        raise ManipleError(f"search {search!r} needs measuring or a device choice: {how}")
    name = _check_inputs(costs, unit_heights, weights, network)
    T = predict_all(costs)
    if search == "legion":
        flc, _ = best_flc(T)
    elif search == "layerwise":
        flc = layerwise(costs.n_units)
    else:
        flc = one_group(costs.n_units)
    return plan_with_matrix(
        name, search, costs.devices, unit_heights, costs.weights, flc, T, costs.spent
    )


def plan_for_flc(
    costs: LegionCosts,
    flc: FLC,
    search: str,
    unit_heights: Sequence[int],
    weights: Sequence[float] | None = None,
    network: str | None = None,
) -> SpatialPlan:
    """A plan for a given FLC with Legion's predicted costs (e.g. one chosen elsewhere);
    bands split by `costs.weights`, as in `plan_spatial`."""
    if search not in SEARCHES:
        raise UnknownNameError("search", search, SEARCHES)
    name = _check_inputs(costs, unit_heights, weights, network)
    T = predict_all(costs)
    return plan_with_matrix(
        name, search, costs.devices, unit_heights, costs.weights, flc, T, costs.spent
    )


def wildcard_plans(
    costs: LegionCosts,
    unit_heights: Sequence[int],
    weights: Sequence[float] | None = None,
    network: str | None = None,
) -> tuple[SpatialPlan, SpatialPlan | None]:
    """The two `legion-wildcard` candidates: Legion's optimal FLC, and that FLC with the
    cheapest-looking adjacent merge (None when there is one group). Both are labelled
    `legion-wildcard`; the runtime runs both and keeps the faster (`choose_faster`).
    Bands are split by `costs.weights`, as in `plan_spatial`."""
    legion = plan_spatial(costs, "legion", unit_heights, weights, network)
    base = dataclasses.replace(legion, search="legion-wildcard")
    merged = wildcard_candidate(legion.flc, predict_all(costs))
    if merged is None:
        return base, None
    return base, plan_for_flc(costs, merged, "legion-wildcard", unit_heights, None, base.network)


def plan_from_measured(
    T_measured: np.ndarray | Sequence[Sequence[float]],
    devices: Sequence[str],
    unit_heights: Sequence[int],
    weights: Sequence[float],
    network: str,
    spent: ProfilingSpent,
) -> SpatialPlan:
    """FSS: the best FLC over measured group costs T_measured[i, j] (ms, every group run
    for real on all devices at once); predicted_ms is then the measured sum."""
    T = check_cost_matrix(T_measured)
    if T.shape[0] != len(unit_heights):
        raise ManipleError(
            f"T_measured is {T.shape[0]}x{T.shape[0]} but the network has "
            f"{len(unit_heights)} units; measure one cost per group i..j of its units"
        )
    if len(weights) != len(devices):
        raise ManipleError(
            f"{len(weights)} weights for {len(devices)} devices; give one per device"
        )
    flc, _ = best_flc(T)
    return plan_with_matrix(network, "fss", tuple(devices), unit_heights, weights, flc, T, spent)


def plan_single(
    network: str,
    device: str,
    unit_heights: Sequence[int],
    predicted_ms: float | None = None,
    spent: ProfilingSpent | None = None,
) -> SpatialPlan:
    """The `single` baseline: the whole network on one device, as one group of all rows."""
    heights = _as_heights(network, unit_heights)
    return SpatialPlan(
        network=network,
        search="single",
        devices=(device,),
        unit_heights=heights,
        flc=one_group(len(heights)),
        bands=(((0, heights[-1]),),),
        predicted_ms=predicted_ms,
        group_ms=None if predicted_ms is None else (predicted_ms,),
        spent=spent if spent is not None else ProfilingSpent(),
    ).validate()


def plan_with_matrix(
    network: str,
    search: str,
    devices: tuple[str, ...],
    unit_heights: Sequence[int],
    weights: Sequence[float],
    flc: FLC,
    T: np.ndarray,
    spent: ProfilingSpent,
    runtime: str = "star",
) -> SpatialPlan:
    """Assemble and validate a plan for `flc` whose group costs are read from T (any
    runtime's cost matrix), bands split by `weights`."""
    heights = _as_heights(network, unit_heights)
    check_flc(flc, len(heights))
    flc = tuple((int(first), int(last)) for first, last in flc)
    group_ms = tuple(float(T[first, last]) for first, last in flc)
    total = 0.0
    for ms in group_ms:  # left to right, as best_flc sums, so totals agree exactly
        total += ms
    return SpatialPlan(
        network=network,
        search=search,
        devices=tuple(devices),
        unit_heights=heights,
        flc=flc,
        bands=group_bands(flc, heights, weights),
        predicted_ms=total,
        group_ms=group_ms,
        spent=spent,
        runtime=runtime,
    ).validate()


def _as_heights(network: str, unit_heights: Sequence[int]) -> tuple[int, ...]:
    """Plain ints (numpy integers accepted, floats refused), checked >= 1."""
    where = f"spatial plan for {network!r}"
    heights = []
    for k, h in enumerate(unit_heights):
        try:
            heights.append(operator.index(h))
        except TypeError:
            raise ManipleError(
                f"{where}: unit {k} has {h!r} output rows; must be an integer"
            ) from None
    check_heights(where, tuple(heights))
    return tuple(heights)


def _check_inputs(
    costs: LegionCosts,
    unit_heights: Sequence[int],
    weights: Sequence[float] | None,
    network: str | None,
) -> str:
    """The network's name, once the heights fit the costs and any `weights` given are the
    ones the costs were profiled with."""
    if isinstance(weights, str) or not isinstance(network, str) or not network:
        raise ManipleError(
            f"network must be the network's name (network=...); got network={network!r} "
            f"and weights={weights!r}"
        )
    if len(unit_heights) != costs.n_units:
        raise ManipleError(
            f"{len(unit_heights)} unit heights but the costs have {costs.n_units} units; "
            "give the output rows of every unit"
        )
    if weights is None:
        return network
    if len(weights) != len(costs.devices):
        raise ManipleError(
            f"{len(weights)} weights but the costs have {len(costs.devices)} devices "
            f"({', '.join(costs.devices)}); give one weight per device"
        )
    if tuple(float(w) for w in weights) != costs.weights:
        raise ManipleError(
            f"weights {list(weights)} differ from the weights the costs were profiled with "
            f"{list(costs.weights)}; the costs predict only bands split by those: leave "
            "weights out (the costs carry them) or profile again with the new weights"
        )
    return network


plan_legion = plan_spatial
"""The name `maniple.plan` exports (see docs/ARCHITECTURE.md); same function."""
