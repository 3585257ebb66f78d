"""A spatial plan lowered into explicit steps: who receives which rows, runs what, sends where.

A `SpatialPlan` says only what the planner chose (groups and output bands). Running it
needs more: each device's input rows with their halo, the bytes every transfer moves, and
the order in which the coordinator hands out and gathers. `lower` works all of that out
once, through the same band and halo helpers the profiler uses (`maniple.spatial.bands`),
so that a runtime only executes steps. Transfers may go device to device (the peer
lowering, `maniple.spatial.schedule_peer`); the star lowering here goes through the
coordinator. `validate` replays the steps and names the first one that reads rows nobody
produced, so a hand-edited or foreign schedule fails before it runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import maniple.jsonio as jsonio
from maniple.errors import ManipleError
from maniple.graph import LayerGraph
from maniple.spatial import schedule_checks, schedule_text
from maniple.spatial.bands import band_bytes, check_plan_on, step_rows, sync_units
from maniple.spatial.plan import SpatialPlan
from maniple.tiling.bands import Band

SCHEDULE_SCHEMA = "maniple.spatial_schedule/1"
COORDINATOR = schedule_checks.COORDINATOR
"""The process that holds the network input, hands out bands and runs the tail."""
INPUT = schedule_checks.INPUT
"""The `unit` of a transfer that moves rows of the network input."""
Shape = tuple[int, int, int]


@dataclass(frozen=True)
class Transfer:
    """Rows [lo, hi) of one map moving from `source` to `dest` (the coordinator or a device).

    unit: the map, unit `unit`'s output or `INPUT` (-1) for the network input.
    bytes: what moves, N*C*rows*W*bytes_per_element with N = 1.
    """

    source: str
    dest: str
    unit: int
    rows: Band
    bytes: int


@dataclass(frozen=True)
class Run:
    """Units first..last run on one device: rows `in_rows` of the group's input (unit
    first-1's output, or the network input) in, rows `out_rows` of unit last's output out."""

    first: int
    last: int
    out_rows: Band
    in_rows: Band


@dataclass(frozen=True)
class Step:
    """One device's part of one group: receive, run, send, in that order.

    Each transfer is listed once, on the step that waits for it (`receive`, whose `dest`
    is this device) or on the step that produces it (`send`, whose `source` is).
    """

    group: int
    device: str
    run: Run
    receive: tuple[Transfer, ...] = ()
    send: tuple[Transfer, ...] = ()

    @property
    def units(self) -> tuple[int, int]:
        return (self.run.first, self.run.last)


@dataclass(frozen=True)
class Tail:
    """The last step: `device` runs the network's tail on rows `rows` of unit `unit`'s
    output (all of them, gathered from the last group)."""

    device: str
    unit: int
    rows: Band


@dataclass(frozen=True)
class SyncPoint:
    """A reduction over rows inside unit `unit` (node `node`): in every group that runs
    the unit, each of its devices reduces the rows it owns, the partials (`bytes` each,
    float32, batch 1) are combined (through the coordinator on the star runtime, device to
    device on the peer runtime), and every device carries on with the same values."""

    unit: int
    node: str
    bytes: int


@dataclass(frozen=True)
class Schedule:
    """A plan's steps on named devices; `unit_shapes[k]` is unit k's output (C, H, W)."""

    network: str
    devices: tuple[str, ...]
    input_shape: Shape
    unit_shapes: tuple[Shape, ...]
    bytes_per_element: int
    steps: tuple[Step, ...]
    tail: Tail
    syncs: tuple[SyncPoint, ...] = ()

    def group_syncs(self, g: int) -> tuple[SyncPoint, ...]:
        """The sync points group g meets, in the order its devices meet them."""
        first, last = self.groups[g]
        return tuple(p for p in self.syncs if first <= p.unit <= last)

    @property
    def n_units(self) -> int:
        return len(self.unit_shapes)

    @property
    def groups(self) -> tuple[tuple[int, int], ...]:
        """Each group's (first, last) units, in order (the plan's FLC)."""
        seen: dict[int, tuple[int, int]] = {}
        for step in self.steps:
            seen.setdefault(step.group, step.units)
        return tuple(seen[g] for g in sorted(seen))

    def map_shape(self, unit: int) -> Shape:
        """(C, H, W) of unit `unit`'s output, or of the network input for `INPUT`."""
        return self.input_shape if unit == INPUT else self.unit_shapes[unit]

    def rows_bytes(self, unit: int, rows: Band) -> int:
        """Bytes of rows [lo, hi) of a map, batch 1."""
        return band_bytes(self.map_shape(unit), rows, self.bytes_per_element)

    def group_steps(self, g: int) -> tuple[Step, ...]:
        """The steps of group g (its active devices), in row order."""
        return tuple(s for s in self.steps if s.group == g)

    def input_rows(self, g: int, device: str) -> Band:
        """Rows of group g's input that `device` reads (its band with halo)."""
        for s in self.group_steps(g):
            if s.device == device:
                return s.run.in_rows
        raise ManipleError(
            f"device {device!r} has no step in group {g} of the {self.network} schedule "
            f"(it sits the group out, or the group does not exist); devices: {list(self.devices)}"
        )

    def bytes_by_link(self) -> dict[tuple[str, str], int]:
        """Total bytes per (source, dest) link over every transfer of every step."""
        totals: dict[tuple[str, str], int] = defaultdict(int)
        for step in self.steps:
            for t in (*step.receive, *step.send):
                totals[(t.source, t.dest)] += t.bytes
        return dict(totals)

    def sync_bytes(self, g: int) -> int:
        """Bytes of one device's partials over all sync points of group g."""
        return sum(p.bytes for p in self.group_syncs(g))

    def validate(self, graph: LayerGraph | None = None) -> Schedule:
        """Raise ManipleError naming the first bad step; return the schedule when sound.

        Replays the steps in order: the coordinator starts with the network input, every
        holder then has what it computed or was sent, and each receive, run, send and the
        tail must read only rows its source holds. With `graph`, also checks the map
        shapes and that every step reads exactly the rows the halo math needs.
        """
        schedule_checks.check_header(self)
        schedule_checks.check_syncs(self)
        schedule_checks.check_groups(self)
        schedule_checks.check_flow(self)
        if graph is not None:
            schedule_checks.check_against(self, graph)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: the fields as they are, tuples as lists."""
        return {"schema": SCHEDULE_SCHEMA, **json.loads(json.dumps(dataclasses.asdict(self)))}

    def to_json(self) -> str:
        """Versioned JSON (`maniple.spatial_schedule/1`)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> Schedule:
        """Read `to_json`'s output; checks every field's type, then `validate()`."""
        return cls.from_dict(jsonio.load_document(text, SCHEDULE_SCHEMA))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Schedule:
        f = schedule_text.fields(doc, SCHEDULE_SCHEMA)
        steps = tuple(
            Step(
                st["group"],
                st["device"],
                Run(*st["run"]),
                *(tuple(Transfer(*t) for t in st[key]) for key in ("receive", "send")),
            )
            for st in f["steps"]
        )
        head = [f[k] for k in ("network", "devices", "input_shape", "unit_shapes")]
        syncs = tuple(SyncPoint(*p) for p in f["syncs"])
        return cls(*head, f["bytes_per_element"], steps, Tail(*f["tail"]), syncs).validate()

    def __str__(self) -> str:
        """An aligned table, one line per step, under a header; `parse` reads it back."""
        return schedule_text.render(self.to_dict(), self.bytes_by_link())

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """Read `str(schedule)` back into an equal schedule (then `validate()`)."""
        return cls.from_dict(schedule_text.read(text, SCHEDULE_SCHEMA))


def lower(plan: SpatialPlan, graph: LayerGraph, *, bytes_per_element: int = 4) -> Schedule:
    """The star schedule of `plan` on `graph`: for every group, each active device receives
    its input rows (band plus halo) from the coordinator, runs the group and sends its
    output band back; the coordinator then runs the tail on the gathered last group.
    Devices with an empty band sit the group out (no step)."""
    heights = check_plan_on(plan, graph)
    shapes = (tuple(graph.input_shape), *(tuple(u.out_shape[1:]) for u in graph.units))
    steps, bpe = [], bytes_per_element
    for g, ((first, last), bands) in enumerate(zip(plan.flc, plan.bands, strict=True)):
        for device, band in zip(plan.devices, bands, strict=True):
            if band[1] > band[0]:  # an empty band sits the group out
                rows = step_rows(graph, first, last, band)
                nin, nout = (
                    band_bytes(shapes[first], rows, bpe),
                    band_bytes(shapes[last + 1], band, bpe),
                )
                receive = Transfer(COORDINATOR, device, first - 1, rows, nin)
                send = Transfer(device, COORDINATOR, last, band, nout)
                steps.append(Step(g, device, Run(first, last, band, rows), (receive,), (send,)))
    tail = Tail(COORDINATOR, len(heights) - 1, (0, heights[-1]))
    return Schedule(
        plan.network,
        plan.devices,
        shapes[0],
        shapes[1:],
        bytes_per_element,
        tuple(steps),
        tail,
        sync_points(graph),
    ).validate()


def sync_points(graph: LayerGraph) -> tuple[SyncPoint, ...]:
    """The graph's sync points with their units and partial bytes (float32, batch 1)."""
    return tuple(SyncPoint(*p) for p in sync_units(graph))
