"""The one place where a group's device bands and their halo rows are decided.

Planners (bands of a plan), the profiler (bands it measures units and groups on) and the
schedule lowering (input rows each device receives) must agree row for row: a profile
taken on other bands than the plan runs on predicts the wrong plan, and a runtime that
cut other rows than the halo math needs would compute wrong outputs. So each of them
calls these helpers instead of `split_rows_capped` or `halo` directly.
"""

from __future__ import annotations

from collections.abc import Sequence

from maniple.errors import ManipleError
from maniple.graph import LayerGraph, halo
from maniple.spatial.flc import FLC
from maniple.spatial.plan import SpatialPlan
from maniple.tiling.bands import Band, split_rows_capped


def split_output(rows: int, weights: Sequence[float], where: str) -> tuple[Band, ...]:
    """Each device's band of a map of `rows` rows, in proportion to `weights`.

    A map with fewer rows than devices goes to the fastest devices only
    (`split_rows_capped`): the slowest sit it out with an empty band. `where` names the
    group in the error.
    """
    try:
        return split_rows_capped(rows, weights)
    except ManipleError as exc:
        raise ManipleError(f"{where} ({rows} output rows): {exc}") from None


def group_bands(
    flc: FLC, unit_heights: Sequence[int], weights: Sequence[float]
) -> tuple[tuple[Band, ...], ...]:
    """Every group's bands of its output rows (what `SpatialPlan.bands` holds)."""
    return tuple(
        split_output(unit_heights[last], weights, f"group {g} (units {first}..{last})")
        for g, (first, last) in enumerate(flc)
    )


def output_bands(
    graph: LayerGraph, first: int, last: int, weights: Sequence[float]
) -> tuple[Band, ...]:
    """Each device's band of the output of group first..last of `graph`.

    The bands depend only on the last unit's height (the same for every group ending at
    `last`); `first` names the group in errors.
    """
    graph.unit_range_check(first, last)
    return split_output(graph.units[last].out_shape[2], weights, f"units {first}..{last}")


def step_rows(graph: LayerGraph, first: int, last: int, band: Band) -> Band:
    """Rows of the group's input (unit first-1's output, or the network input) that a
    device needs to compute rows `band` of unit last's output: the band with its halo."""
    return halo(graph, first, last, band).input_rows


def needed_rows(graph: LayerGraph, k: int, last: int, band: Band) -> Band:
    """Rows of unit k's output (k <= last) that rows `band` of unit last's output need
    when units k+1..last are fused: the band itself for k == last."""
    return band if k == last else step_rows(graph, k + 1, last, band)


def band_bytes(shape: tuple[int, int, int], rows: Band, bytes_per_element: int) -> int:
    """Bytes of rows [lo, hi) of a (C, H, W) map, batch 1: what sending them moves."""
    c, _, w = shape
    return c * (rows[1] - rows[0]) * w * bytes_per_element


class HeldRows:
    """Which rows of which maps each holder (the coordinator or a device) has, kept as
    sorted disjoint bands: what a schedule's replay checks every read against."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, int], list[Band]] = {}

    def add(self, holder: str, unit: int, rows: Band) -> None:
        """`holder` now has rows [lo, hi) of unit `unit`'s output (-1: the network input)."""
        merged: list[Band] = []
        for a, b in sorted([*self._held.get((holder, unit), []), rows]):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self._held[(holder, unit)] = merged

    def missing(self, holder: str, unit: int, rows: Band) -> Band | None:
        """The first run of rows in `rows` that `holder` lacks, or None when it has all."""
        lo, hi = rows
        for a, b in self._held.get((holder, unit), []):
            if b <= lo:
                continue
            if a > lo:
                return (lo, min(a, hi))
            lo = b
            if lo >= hi:
                return None
        return (lo, hi) if lo < hi else None


def peer_sources(
    prev_bands: Sequence[Band], need: Band, device: int
) -> tuple[Band | None, tuple[tuple[int, Band], ...]]:
    """Where device `device` finds rows `need` of a map whose rows the devices hold as
    `prev_bands` (one band each, tiling the map): the rows it holds itself (None if none),
    and (holder, rows) for every other device that holds some of the rest, in row order.

    The peer runtime's exchange: a device keeps its band between groups and asks only
    for the rows it lacks, from whoever holds them (usually its neighbours, further ones
    where bands are thin).
    """
    own: Band | None = None
    others: list[tuple[int, Band]] = []
    for e, (a, b) in enumerate(prev_bands):
        lo, hi = max(a, need[0]), min(b, need[1])
        if lo < hi:
            if e == device:
                own = (lo, hi)
            else:
                others.append((e, (lo, hi)))
    covered = sum(hi - lo for _, (lo, hi) in others) + (own[1] - own[0] if own else 0)
    if covered != need[1] - need[0]:
        raise ManipleError(
            f"rows {need[0]}:{need[1]} are not all held by the devices' bands "
            f"{list(prev_bands)}; the bands of a group must tile its output"
        )
    return own, tuple(others)


def check_plan_on(plan: SpatialPlan, graph: LayerGraph) -> tuple[int, ...]:
    """The graph's unit heights, once the plan is sound and made for them."""
    plan.validate()
    heights = tuple(u.out_shape[2] for u in graph.units)
    if heights != plan.unit_heights:
        raise ManipleError(
            f"the plan for {plan.network!r} has unit heights {list(plan.unit_heights)} but "
            f"graph {graph.name!r} has {list(heights)}; plan and capture for the same "
            "network and input shape"
        )
    return heights


def sync_units(graph: LayerGraph) -> tuple[tuple[int, str, int], ...]:
    """The graph's sync points as (unit, node, bytes of one band's partial): float32,
    batch 1, every dim but the reduced ones and the batch kept."""
    unit_of = {name: u.index for u in graph.units for name in u.nodes}
    out = []
    for name in graph.sync_points:
        node = graph.node(name)
        assert node.sync is not None
        shape = graph.node(node.inputs[0]).out_shape or ()
        numel = 1
        for d, size in enumerate(shape[1:], start=1):
            numel *= 1 if d in node.sync.dims else size
        out.append((unit_of[name], name, numel * 4))
    return tuple(out)
