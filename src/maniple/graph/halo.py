"""Halo math: which rows every node of a fused span must produce for a band of output rows.

For units i..j and output rows [a, b) of unit j, walking the span backwards gives, for every
node, the rows of its output it must compute, and for every window op the padding to apply
at the *true* top and bottom borders of the map (never at a band's inner edge). A join
(residual add, channel concat) needs the union of what its consumers need. Legion's alpha is
the ratio of the rows a unit computes when fused to the rows it computes alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from maniple.errors import ManipleError
from maniple.graph.types import LayerGraph

GLOBAL_ROWS = (0, 0)
"""The `out_rows` of a global node and the `in_rows` of a global input: no rows, the whole
value (every device holds the same)."""


@dataclass(frozen=True)
class NodeBand:
    """Rows one node computes, the rows of each input it reads, and border padding.

    A sync point computes no rows (`GLOBAL_ROWS`); its `in_rows` are the rows of its input
    this band owns and reduces, so that across the bands of a group every row is reduced
    exactly once, halo rows never twice.
    """

    out_rows: tuple[int, int]
    in_rows: tuple[tuple[int, int], ...]
    pad: tuple[int, int] = (0, 0)
    is_global: bool = False


@dataclass(frozen=True)
class HaloPlan:
    """Everything a band of units first..last needs, node by node, in execution order."""

    first: int
    last: int
    out_rows: tuple[int, int]
    input_name: str
    input_rows: tuple[int, int]
    nodes: tuple[tuple[str, NodeBand], ...]

    @property
    def input_height(self) -> int:
        return self.input_rows[1] - self.input_rows[0]

    def rows_of(self, name: str) -> tuple[int, int]:
        """Rows of node `name`'s output this band computes (the span input included)."""
        if name == self.input_name:
            return self.input_rows
        for n, band in self.nodes:
            if n == name:
                return band.out_rows
        raise KeyError(name)


def check_band(graph: LayerGraph, unit: int, rows: tuple[int, int]) -> None:
    """Raise a clear error unless [a, b) is a non-empty band inside unit's output map."""
    a, b = rows
    height = graph.units[unit].out_shape[2]
    if a >= b:
        raise ManipleError(
            f"band [{a}, {b}) of unit {unit} is empty; a band needs at least one row (a < b)"
        )
    if a < 0 or b > height:
        raise ManipleError(
            f"band [{a}, {b}) is outside unit {unit}'s output map of {height} rows; "
            f"use rows within [0, {height})"
        )


def span_nodes(graph: LayerGraph, first: int, last: int) -> list[str]:
    """Node names of units first..last, in execution order."""
    graph.unit_range_check(first, last)
    return [name for u in graph.units[first : last + 1] for name in u.nodes]


def halo(graph: LayerGraph, first: int, last: int, out_rows: tuple[int, int]) -> HaloPlan:
    """Rows every node of units first..last computes for rows [a, b) of unit last's output."""
    graph.unit_range_check(first, last)
    out_rows = (int(out_rows[0]), int(out_rows[1]))
    check_band(graph, last, out_rows)
    names = span_nodes(graph, first, last)
    span_input = graph.units[first].input
    required: dict[str, tuple[int, int]] = {graph.units[last].output: out_rows}
    wanted: set[str] = set()  # global values (and sync points) something in the span reads
    bands: dict[str, NodeBand] = {}
    out_height = graph.units[last].out_shape[2]
    for name in reversed(names):
        node = graph.node(name)
        if node.role in ("global", "sync"):
            if name not in wanted:
                continue
            if node.role == "sync":
                x = node.inputs[0]
                owned = _owned_rows(out_rows, out_height, graph.node(x).height)
                old = required.get(x)
                if owned[0] < owned[1]:  # a band may own none of a small map's rows
                    required[x] = owned if old is None else _hull(old, owned)
                bands[name] = NodeBand(GLOBAL_ROWS, (owned,), is_global=True)
            else:
                wanted.update(node.inputs)
                ins = tuple(GLOBAL_ROWS for _ in node.inputs)
                bands[name] = NodeBand(GLOBAL_ROWS, ins, is_global=True)
            continue
        if name not in required:
            continue  # dead inside the span: nothing downstream reads it
        rows = required[name]
        rowmap = node.rowmap
        assert rowmap is not None, f"{name} is in a unit but has no row map"
        in_rows: list[tuple[int, int]] = []
        pad = (0, 0)
        for inp in node.inputs:
            if graph.node(inp).role in ("global", "sync"):
                wanted.add(inp)
                in_rows.append(GLOBAL_ROWS)
                continue
            in_height = graph.node(inp).height
            (lo, hi), p = rowmap.needed_clamped(rows, in_height)
            if rowmap.kind == "window":
                pad = p
            in_rows.append((lo, hi))
            old = required.get(inp)
            required[inp] = (lo, hi) if old is None else _hull(old, (lo, hi))
        bands[name] = NodeBand(rows, tuple(in_rows), pad)
    ordered = tuple((n, bands[n]) for n in names if n in bands)
    return HaloPlan(first, last, out_rows, span_input, required[span_input], ordered)


def _hull(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return (min(a[0], b[0]), max(a[1], b[1]))


def _owned_rows(out_rows: tuple[int, int], out_height: int, height: int) -> tuple[int, int]:
    """Rows of a sync point's input that the band `out_rows` of the span's output owns:
    the same share of the map, so the bands of a group own every row exactly once."""
    a, b = out_rows
    return (a * height // out_height, b * height // out_height)


def rows_needed(graph: LayerGraph, k: int, j: int, out_rows: tuple[int, int]) -> tuple[int, int]:
    """Rows of unit k's output needed for rows [a, b) of unit j's output (k <= j)."""
    if k == j:
        check_band(graph, j, out_rows)
        return out_rows
    return halo(graph, k + 1, j, out_rows).input_rows


def alpha(
    graph: LayerGraph,
    k: int,
    j: int,
    out_rows: tuple[int, int],
    unfused_rows: tuple[int, int],
) -> float:
    """Legion's alpha: rows of unit k computed when fused through j over rows computed alone.

    `out_rows` is this device's band of unit j's output; `unfused_rows` its band of unit k's
    output when unit k runs as a group of its own (the same ratio applied to k's height).
    """
    lo, hi = rows_needed(graph, k, j, out_rows)
    alone = unfused_rows[1] - unfused_rows[0]
    if alone <= 0:
        raise ManipleError(f"unfused band {unfused_rows} of unit {k} is empty; alpha needs rows")
    return (hi - lo) / alone


def input_alpha(
    graph: LayerGraph,
    i: int,
    j: int,
    out_rows: tuple[int, int],
    unfused_rows: tuple[int, int],
) -> float:
    """Rows of unit i's *input* sent for group i..j over rows sent when unit i runs alone."""
    lo, hi = halo(graph, i, j, out_rows).input_rows
    alo, ahi = halo(graph, i, i, unfused_rows).input_rows
    return (hi - lo) / (ahi - alo)
