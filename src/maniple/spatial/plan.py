"""`SpatialPlan`: the frozen result of a spatial (Legion-style) planner.

A spatial plan says, for one network on an ordered list of devices, how units are fused
into groups (the FLC) and which rows of each group's output every device computes. The
runtime derives each device's input rows (with halo) from these output bands through the
graph's halo math, so the plan holds only what the planner chose. The planners that make
plans live in `maniple.spatial.planners`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import maniple.jsonio as jsonio
from maniple.errors import ManipleError, UnknownNameError
from maniple.spatial.costs import ProfilingSpent
from maniple.spatial.flc import FLC, check_flc
from maniple.spatial.plan_checks import (
    check_bands,
    check_devices,
    check_heights,
    check_predicted,
)
from maniple.tiling.bands import Band

PLAN_SCHEMA = "maniple.spatial_plan/1"
SEARCHES = ("legion", "legion-wildcard", "fss", "layerwise", "one-group", "single")
PREDICTED_SEARCHES = ("legion", "layerwise", "one-group")
RUNTIMES = ("star", "peer")
"""How a plan's bands move: through the coordinator every group (Legion's star), or halo
rows device to device (maniple.spatial.schedule_peer)."""


@dataclass(frozen=True)
class SpatialPlan:
    """One network's spatial split: groups of units and each device's rows per group.

    unit_heights[k]: rows of unit k's output (the group's output height is that of its
        last unit).
    bands[g][d]: half-open rows [start, end) of group g's output computed by devices[d];
        empty (start == end) for a device that sits the group out.
    predicted_ms / group_ms: the planner's cost of the whole plan and of each group (for
        `fss`, measured costs); None when the planner had nothing to predict from.
    spent: the profiling it took to make this plan.
    runtime: the runtime its costs were predicted for and that runs it ('star', 'peer').
    """

    network: str
    search: str
    devices: tuple[str, ...]
    unit_heights: tuple[int, ...]
    flc: FLC
    bands: tuple[tuple[Band, ...], ...]
    predicted_ms: float | None
    group_ms: tuple[float, ...] | None
    spent: ProfilingSpent = field(default_factory=ProfilingSpent)
    runtime: str = "star"

    def __post_init__(self) -> None:
        """Turn lists into tuples (so plans built from JSON-like data compare and hash);
        anything that is not a sequence is left for `validate` to report."""
        _set = object.__setattr__
        _set(self, "devices", _tupled(self.devices, 1))
        _set(self, "unit_heights", _tupled(self.unit_heights, 1))
        _set(self, "flc", _tupled(self.flc, 2))
        _set(self, "bands", _tupled(self.bands, 3))
        if self.group_ms is not None:
            _set(self, "group_ms", _tupled(self.group_ms, 1))

    @property
    def n_units(self) -> int:
        return len(self.unit_heights)

    def validate(self) -> SpatialPlan:
        """Raise ManipleError naming the first bad step; return the plan when it is sound."""
        where = f"spatial plan for {self.network!r}"
        if not isinstance(self.network, str) or not self.network:
            raise ManipleError(
                f"spatial plan: network must be a non-empty name; got {self.network!r}"
            )
        if self.search not in SEARCHES:
            raise UnknownNameError("search", str(self.search), SEARCHES)
        check_devices(where, self.devices, self.search)
        check_heights(where, self.unit_heights)
        try:
            check_flc(self.flc, self.n_units)
        except ManipleError as exc:
            raise ManipleError(f"{where}: {exc}") from None
        check_bands(where, self.flc, self.bands, self.devices, self.unit_heights)
        check_predicted(where, self.predicted_ms, self.group_ms, len(self.flc))
        if self.runtime not in RUNTIMES:
            raise UnknownNameError("runtime", str(self.runtime), RUNTIMES)
        if not isinstance(self.spent, ProfilingSpent):
            raise ManipleError(f"{where}: spent must be a ProfilingSpent; got {self.spent!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (`flc` as [first, last] lists, `bands` as [start, end])."""
        return {
            "schema": PLAN_SCHEMA,
            "network": self.network,
            "search": self.search,
            "devices": list(self.devices),
            "unit_heights": list(self.unit_heights),
            "flc": [list(group) for group in self.flc],
            "bands": [[list(band) for band in group] for group in self.bands],
            "predicted_ms": self.predicted_ms,
            "group_ms": None if self.group_ms is None else list(self.group_ms),
            "spent": self.spent.to_dict(),
            "runtime": self.runtime,
        }

    def to_json(self) -> str:
        """Versioned JSON (`maniple.spatial_plan/1`)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> SpatialPlan:
        """Read `to_json`'s output; checks every field's type, then `validate()`."""
        return cls.from_dict(jsonio.load_document(text, PLAN_SCHEMA))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> SpatialPlan:
        schema = PLAN_SCHEMA
        jsonio.check_schema(doc, schema)

        def get(name: str) -> Any:
            return jsonio.field(doc, name, schema)

        def floats(name: str) -> tuple[float, ...] | None:
            value = get(name)
            if value is None:
                return None
            return tuple(
                jsonio.as_float(v, name, schema) for v in jsonio.as_list(value, name, schema)
            )

        predicted = get("predicted_ms")
        plan = cls(
            network=jsonio.as_str(get("network"), "network", schema),
            search=jsonio.as_str(get("search"), "search", schema),
            devices=tuple(
                jsonio.as_str(d, "devices", schema)
                for d in jsonio.as_list(get("devices"), "devices", schema)
            ),
            unit_heights=tuple(
                jsonio.as_int(h, "unit_heights", schema)
                for h in jsonio.as_list(get("unit_heights"), "unit_heights", schema)
            ),
            flc=tuple(
                jsonio.as_pair(g, "flc", schema) for g in jsonio.as_list(get("flc"), "flc", schema)
            ),
            bands=tuple(
                tuple(
                    jsonio.as_pair(b, "bands", schema)
                    for b in jsonio.as_list(group, "bands", schema)
                )
                for group in jsonio.as_list(get("bands"), "bands", schema)
            ),
            predicted_ms=None
            if predicted is None
            else jsonio.as_float(predicted, "predicted_ms", schema),
            group_ms=floats("group_ms"),
            spent=ProfilingSpent.from_dict(get("spent"), schema),
            # plans written before the peer runtime existed are star plans
            runtime=jsonio.as_str(doc.get("runtime", "star"), "runtime", schema),
        )
        return plan.validate()

    def __str__(self) -> str:
        """An aligned table: one row per group, each device's rows as start:end."""
        total = "-" if self.predicted_ms is None else f"{self.predicted_ms:.2f} ms"
        head = (
            f"spatial plan: {self.network}, search {self.search}, runtime {self.runtime}, "
            f"{len(self.devices)} "
            f"device(s), {len(self.flc)} group(s), predicted {total}\n"
            f"profiling spent: {self.spent}\n"
            "each device's band is start:end of the group's output rows\n"
        )
        header = ["group", "units", "rows", *self.devices, "predicted ms"]
        rows = []
        for g, (first, last) in enumerate(self.flc):
            units = str(first) if first == last else f"{first}..{last}"
            bands = [f"{a}:{b}" if b > a else "-" for a, b in self.bands[g]]
            ms = "-" if self.group_ms is None else f"{self.group_ms[g]:.2f}"
            rows.append([str(g), units, str(self.unit_heights[last]), *bands, ms])
        return head + _table(header, rows, right={0, 2, len(header) - 1})


def _tupled(value: Any, depth: int) -> Any:
    """Lists to tuples, `depth` levels deep; other values unchanged."""
    if not isinstance(value, (list, tuple)):
        return value
    if depth == 1:
        return tuple(value)
    return tuple(_tupled(v, depth - 1) for v in value)


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    """Columns padded to their widest cell; `right` columns right-aligned."""
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(w) if c in right else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join(line(r) for r in [header, *rows])
