"""`Schedule.validate`'s checks, one function per concern, each naming the bad step.

Apart from `schedule.py` so that the schedule's types and lowering stay one readable
file; these read a schedule's fields only, so they need none of its classes.
"""

from __future__ import annotations

from typing import Any

from maniple.errors import ManipleError
from maniple.graph import LayerGraph
from maniple.spatial.bands import HeldRows, step_rows, sync_units
from maniple.tiling.bands import Band

COORDINATOR = "coordinator"
INPUT = -1


def _label(s: Any, i: int) -> str:
    return f"step {i} (group {s.steps[i].group}, device {s.steps[i].device})"


def _map_name(unit: int) -> str:
    return "the network input" if unit == INPUT else f"unit {unit}'s output"


def check_header(s: Any) -> None:
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
    if not s.unit_shapes or not s.steps or type(s.tail).__name__ != "Tail":
        raise ManipleError(f"{where}: needs units, steps and a Tail; got {len(s.steps)} steps")


def check_syncs(s: Any) -> None:
    last = -1
    for i, p in enumerate(s.syncs):
        if not isinstance(getattr(p, "node", None), str) or not p.node:
            raise ManipleError(f"schedule sync point {i}: must name a node; got {p!r}")
        if not (0 <= p.unit < s.n_units) or p.unit < last:
            raise ManipleError(
                f"schedule sync point {i} ({p.node}): unit {p.unit} is outside 0..{s.n_units - 1}"
                " or before the sync point above it; list them in unit order"
            )
        if isinstance(p.bytes, bool) or not isinstance(p.bytes, int) or p.bytes < 1:
            raise ManipleError(
                f"schedule sync point {i} ({p.node}): {p.bytes!r} bytes; a partial is >= 1 byte"
            )
        last = p.unit


def _check_rows(s: Any, what: str, unit: int, rows: Band) -> None:
    height = s.map_shape(unit)[1]
    lo, hi = rows
    if not (0 <= lo < hi <= height):
        raise ManipleError(
            f"{what}: rows {lo}:{hi} of {_map_name(unit)} are not a non-empty band of its "
            f"{height} rows; use lo < hi within 0:{height}"
        )


def check_groups(s: Any) -> None:
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


def check_flow(s: Any) -> None:
    """Replay the steps: every row read must have been computed or sent there before."""
    held = HeldRows()
    held.add(COORDINATOR, INPUT, (0, s.input_shape[1]))
    known = (COORDINATOR, *s.devices)

    def move(label: str, t: Any, device: str, receive: bool) -> None:
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


def check_against(s: Any, graph: LayerGraph) -> None:
    """The schedule fits `graph`: same map shapes, and each step's halo rows are exact."""
    if tuple((p.unit, p.node, p.bytes) for p in s.syncs) != sync_units(graph):
        raise ManipleError(
            f"schedule for {s.network!r} lists sync points {[p.node for p in s.syncs]}, but "
            f"graph {graph.name!r} has {list(graph.sync_points)}; lower the plan on the graph "
            "it runs on"
        )
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
