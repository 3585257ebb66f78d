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
from maniple.spatial import schedule_text
from maniple.spatial.bands import HeldRows, band_bytes, check_plan_on, step_rows
from maniple.spatial.plan import SpatialPlan
from maniple.tiling.bands import Band

SCHEDULE_SCHEMA = "maniple.spatial_schedule/1"
COORDINATOR = "coordinator"
"""The process that holds the network input, hands out bands and runs the tail."""
INPUT = -1
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
class Schedule:
    """A plan's steps on named devices; `unit_shapes[k]` is unit k's output (C, H, W)."""

    network: str
    devices: tuple[str, ...]
    input_shape: Shape
    unit_shapes: tuple[Shape, ...]
    bytes_per_element: int
    steps: tuple[Step, ...]
    tail: Tail

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

    def validate(self, graph: LayerGraph | None = None) -> Schedule:
        """Raise ManipleError naming the first bad step; return the schedule when sound.

        Replays the steps in order: the coordinator starts with the network input, every
        holder then has what it computed or was sent, and each receive, run, send and the
        tail must read only rows its source holds. With `graph`, also checks the map
        shapes and that every step reads exactly the rows the halo math needs.
        """
        _check_header(self)
        _check_groups(self)
        _check_flow(self)
        if graph is not None:
            _check_against(self, graph)
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
        return cls(*head, f["bytes_per_element"], steps, Tail(*f["tail"])).validate()

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
        plan.network, plan.devices, shapes[0], shapes[1:], bytes_per_element, tuple(steps), tail
    ).validate()


def _label(s: Schedule, i: int) -> str:
    return f"step {i} (group {s.steps[i].group}, device {s.steps[i].device})"


def _map_name(unit: int) -> str:
    return "the network input" if unit == INPUT else f"unit {unit}'s output"


def _check_header(s: Schedule) -> None:
    where = f"schedule for {s.network!r}"
    if not isinstance(s.network, str) or not s.network:
        raise ManipleError(f"schedule: network must be a non-empty name; got {s.network!r}")
    names = s.devices
    if not isinstance(names, tuple) or not all(isinstance(d, str) and d for d in names):
        raise ManipleError(f"{where}: devices must be a tuple of device names; got {names!r}")
    if not names or len(set(names)) != len(names) or COORDINATOR in names:
        raise ManipleError(
            f"{where}: device names must be unique, not {COORDINATOR!r}; got {list(names)}"
        )
    bpe = s.bytes_per_element
    if isinstance(bpe, bool) or not isinstance(bpe, int) or bpe < 1:
        raise ManipleError(f"{where}: bytes_per_element is {bpe!r}; must be an integer >= 1")
    for k, shape in enumerate((s.input_shape, *s.unit_shapes), start=-1):
        if not (
            isinstance(shape, tuple)
            and len(shape) == 3
            and all(isinstance(v, int) and v > 0 for v in shape)
        ):
            raise ManipleError(f"{where}: {_map_name(k)} has shape {shape!r}; give (C, H, W) >= 1")
    if not s.unit_shapes or not s.steps or not isinstance(s.tail, Tail):
        raise ManipleError(f"{where}: needs units, steps and a Tail; got {len(s.steps)} steps")


def _check_rows(s: Schedule, what: str, unit: int, rows: Band) -> None:
    height = s.map_shape(unit)[1]
    lo, hi = rows
    if not (0 <= lo < hi <= height):
        raise ManipleError(
            f"{what}: rows {lo}:{hi} of {_map_name(unit)} are not a non-empty band of its "
            f"{height} rows; use lo < hi within 0:{height}"
        )


def _check_groups(s: Schedule) -> None:
    """Groups in order, chained unit to unit, each device once, bands tiling the output."""
    group, end, row, seen = -1, -1, 0, set()

    def tiled(i: int) -> None:
        height = s.unit_shapes[end][1]
        if row != height:
            raise ManipleError(
                f"{_label(s, i)}: the steps of group {group} cover rows 0:{row} of unit {end}'s "
                f"output of {height} rows; bands must tile every row once"
            )

    for i, step in enumerate(s.steps):
        label, (first, last), out = _label(s, i), step.units, step.run.out_rows
        if step.device not in s.devices:
            raise ManipleError(
                f"{label}: device {step.device!r} is not one of the schedule's devices "
                f"({', '.join(s.devices)}); run steps only on listed devices"
            )
        if step.group != group:  # a new group: the one before must be whole
            if group >= 0:
                tiled(i - 1)
            if step.group != group + 1 or first != end + 1 or not first <= last < s.n_units:
                raise ManipleError(
                    f"{label}: group {step.group} runs units {first}..{last}; after group "
                    f"{group} comes group {group + 1}, from unit {end + 1} to at most unit "
                    f"{s.n_units - 1}"
                )
            group, end, row, seen = step.group, last, 0, set()
        elif last != end or step.units != s.steps[i - 1].units:
            raise ManipleError(f"{label}: runs units {first}..{last}, not its group's units")
        if step.device in seen:
            raise ManipleError(f"{label}: device {step.device!r} has two steps in group {group}")
        seen.add(step.device)
        _check_rows(s, label, last, out)
        _check_rows(s, label, first - 1, step.run.in_rows)
        if out[0] != row:
            raise ManipleError(
                f"{label}: computes rows {out[0]}:{out[1]} of unit {last}'s output, but the "
                f"group's bands so far end at row {row}; bands must tile the output in order"
            )
        row = out[1]
    tiled(len(s.steps) - 1)
    if end != s.n_units - 1:
        raise ManipleError(
            f"{_label(s, len(s.steps) - 1)}: the last group ends at unit {end}, but the "
            f"network has units 0..{s.n_units - 1}"
        )


def _check_flow(s: Schedule) -> None:
    """Replay the steps: every row read must have been computed or sent there before."""
    held = HeldRows()
    held.add(COORDINATOR, INPUT, (0, s.input_shape[1]))
    known = (COORDINATOR, *s.devices)

    def move(label: str, t: Transfer, device: str, receive: bool) -> None:
        verb, way, other = ("receives", "from", t.source) if receive else ("sends", "to", t.dest)
        if (t.dest if receive else t.source) != device or other not in known or other == device:
            raise ManipleError(
                f"{label}: {verb} {t.source!r} -> {t.dest!r}; a step {verb} {way} the "
                f"coordinator or another device ({', '.join(s.devices)}), never itself"
            )
        if not (INPUT <= t.unit < s.n_units):
            raise ManipleError(f"{label}: moves unit {t.unit}, outside -1..{s.n_units - 1}")
        _check_rows(s, label, t.unit, t.rows)
        (lo, hi), (c, _, w), what = t.rows, s.map_shape(t.unit), _map_name(t.unit)
        if t.bytes != s.rows_bytes(t.unit, t.rows):
            raise ManipleError(
                f"{label}: {verb} rows {lo}:{hi} of {what} as {t.bytes!r} bytes, but {hi - lo} "
                f"rows x {c} channels x {w} columns x {s.bytes_per_element} bytes = "
                f"{s.rows_bytes(t.unit, t.rows)}; give the bytes the rows hold"
            )
        gap = held.missing(t.source, t.unit, t.rows)
        if gap is not None:
            raise ManipleError(
                f"{label}: {verb} rows {lo}:{hi} of {what} {way} {other!r}, but no earlier step "
                f"produced rows {gap[0]}:{gap[1]}; compute or send them to {t.source!r} first"
            )
        held.add(t.dest, t.unit, t.rows)

    for i, step in enumerate(s.steps):
        label, run = _label(s, i), step.run
        for t in step.receive:
            move(label, t, step.device, receive=True)
        gap = held.missing(step.device, run.first - 1, run.in_rows)
        if gap is not None:
            raise ManipleError(
                f"{label}: runs units {run.first}..{run.last} on rows {run.in_rows[0]}:"
                f"{run.in_rows[1]} of {_map_name(run.first - 1)}, but rows {gap[0]}:{gap[1]} "
                "never reached the device; receive them first"
            )
        held.add(step.device, run.last, run.out_rows)
        for t in step.send:
            move(label, t, step.device, receive=False)
    tail, last = s.tail, s.n_units - 1
    gap = held.missing(tail.device, last, (0, s.unit_shapes[last][1]))
    if (tail.unit, tail.rows) != (last, (0, s.unit_shapes[last][1])) or gap is not None:
        raise ManipleError(
            f"schedule tail: {tail.device!r} runs the tail on rows {tail.rows} of unit "
            f"{tail.unit}, but it must have all rows of unit {last}'s output (missing: {gap}); "
            "send every band of the last group there"
        )


def _check_against(s: Schedule, graph: LayerGraph) -> None:
    """The schedule fits `graph`: same map shapes, and each step's halo rows are exact."""
    shapes = tuple(tuple(u.out_shape[1:]) for u in graph.units)
    if s.unit_shapes != shapes or s.input_shape != tuple(graph.input_shape):
        raise ManipleError(
            f"schedule for {s.network!r} has input {s.input_shape} and unit maps "
            f"{list(s.unit_shapes)}, graph {graph.name!r} has {tuple(graph.input_shape)} and "
            f"{list(shapes)}; lower the plan on the graph it runs on"
        )
    for i, step in enumerate(s.steps):
        run = step.run
        need = step_rows(graph, run.first, run.last, run.out_rows)
        if run.in_rows != need:
            raise ManipleError(
                f"{_label(s, i)}: reads rows {run.in_rows[0]}:{run.in_rows[1]} of "
                f"{_map_name(run.first - 1)}, but rows {run.out_rows[0]}:{run.out_rows[1]} of "
                f"unit {run.last}'s output need rows {need[0]}:{need[1]} (halo math)"
            )
