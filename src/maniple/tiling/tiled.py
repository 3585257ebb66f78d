"""Run a network's spatial part group by group, band by band, on this process.

This is the reference executor that `maniple verify` and the tests use to show that a
fused-layer configuration and a set of ratios give exactly the unsplit output; the
distributed runtime sends the same `SpanProgram`s to devices instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from maniple.errors import ManipleError
from maniple.graph import LayerGraph
from maniple.tiling.bands import Band, split_rows_capped, stitch
from maniple.tiling.span import SpanProgram, combine_runs

Group = tuple[int, int]


def check_flc(graph: LayerGraph, flc: Sequence[Group]) -> None:
    """Raise a clear error unless `flc` covers units 0..n-1 with contiguous groups."""
    expected = 0
    for i, (first, last) in enumerate(flc):
        if first != expected or last < first:
            raise ManipleError(
                f"group {i} is units {first}..{last} but should start at unit {expected}; "
                "groups must be contiguous, in order, and cover every unit once"
            )
        expected = last + 1
    if expected != len(graph.units):
        raise ManipleError(
            f"the groups cover units 0..{expected - 1} but {graph.name!r} has "
            f"{len(graph.units)} units; the last group must end at unit {len(graph.units) - 1}"
        )


class TiledModel:
    """A captured network with a cache of span programs, one per (span, band)."""

    def __init__(self, graph: LayerGraph) -> None:
        self.graph = graph
        self._programs: dict[tuple[int, int, Band], SpanProgram] = {}

    def program(self, first: int, last: int, out_rows: Band) -> SpanProgram:
        """The span program for units first..last and output rows [a, b), built once."""
        key = (first, last, (int(out_rows[0]), int(out_rows[1])))
        prog = self._programs.get(key)
        if prog is None:
            prog = SpanProgram(self.graph, None, first, last, key[2])
            self._programs[key] = prog
        return prog

    def group_bands(self, group: Group, ratios: Sequence[float]) -> tuple[Band, ...]:
        """Bands of the group's output rows, one per device, in proportion to `ratios`."""
        return split_rows_capped(self.graph.units[group[1]].out_shape[2], ratios)

    def run_group(self, x: torch.Tensor, group: Group, ratios: Sequence[float]) -> torch.Tensor:
        """One fused group: each band from its own slice of `x`, stitched back. At each sync
        point the bands' partial reductions are combined and every band carries on."""
        runs = []
        for band in self.group_bands(group, ratios):
            if band[1] <= band[0]:
                continue
            prog = self.program(group[0], group[1], band)
            lo, hi = prog.input_rows
            runs.append(prog.start(x[:, :, lo:hi]))
        while runs[0].pending is not None:
            combine_runs(runs)
        return stitch([r.output for r in runs])  # type: ignore[misc]

    def run_spatial(
        self, x: torch.Tensor, flc: Sequence[Group], ratios: Sequence[float]
    ) -> torch.Tensor:
        """The whole spatial part under a fused-layer configuration and device ratios."""
        check_flc(self.graph, flc)
        for group in flc:
            x = self.run_group(x, group, ratios)
        return x
