"""One band's run of a span program, paused at each sync point.

Apart from `span.py`, which compiles a span into steps, because running them is a job of
its own: walk the steps, drop each value after its last use, stop at a sync point with
this band's partial, and go on once the group's partials are combined.
"""

from __future__ import annotations

from typing import Any

import torch

from maniple.errors import ManipleError
from maniple.tiling.sync import combine, finish

Env = dict[str, tuple[Any, Any]]
"""Node name -> (value, first row it holds); the row is None for a global value."""
INPUT_KEY = "#input"
"""Where a run keeps its input (no fx node name starts with '#')."""


def narrow_rows(value: Any, dim: int, start: int, length: int) -> Any:
    """Rows start..start+length of a tensor along `dim` (or of each tensor of a tuple)."""
    if isinstance(value, (tuple, list)):
        return type(value)(v.narrow(dim, start, length) for v in value)
    return value.narrow(dim, start, length)


class SpanRun:
    """One band's run of a span, paused at each sync point until the partials of all the
    group's bands are combined (`resume`). `pending` names the sync point it waits at and
    `partial` is this band's part; `output` is set once the span has run to its end."""

    def __init__(self, program: Any, env: Env) -> None:
        self.program = program
        self.env = env
        self.pending: str | None = None
        self.partial: torch.Tensor | None = None
        self.output: torch.Tensor | None = None
        self._pos = 0
        self._advance()

    def _advance(self) -> None:
        steps, env, free = self.program._steps, self.env, self.program._free_after
        while self._pos < len(steps):
            name, kind, fn = steps[self._pos]
            for done in free[self._pos - 1] if self._pos else ():
                env.pop(done, None)
            self._pos += 1
            if kind == "sync":
                self.pending, self.partial = name, fn(env)
                return
            if kind == "global":
                env[name] = (fn(env), None)
                continue
            out, start = fn(env)
            env[name] = (out, start)
            rd = self.program.graph.node(name).row_dim
            size = (out[0] if isinstance(out, (tuple, list)) else out).shape[rd]
            self.program.rows_computed[name] = (start, start + size)
        self.pending, self.partial = None, None
        out, start = env[self.program.output_name]
        a, b = self.program.out_rows
        self.output = out[:, :, a - start : b - start]

    def resume(self, combined: torch.Tensor) -> None:
        """Continue past the pending sync point with the combined partials of all bands."""
        if self.pending is None:
            raise ManipleError("this span run waits at no sync point; it has finished")
        node = self.program.graph.node(self.pending)
        assert node.sync is not None
        dtype = self.env[INPUT_KEY][0].dtype
        device = self.partial.device if self.partial is not None else "cpu"
        value = finish(combined.to(device), node.sync, dtype)
        self.env[self.pending] = (value, None)
        self._advance()


def combine_runs(runs: list[SpanRun]) -> None:
    """Resume every run of one group, all waiting at the same sync point, with their
    combined partials: the in-process exchange (the tiled verifier and local devices)."""
    names = {r.pending for r in runs}
    if len(names) != 1 or None in names:
        raise ManipleError(f"the bands of one group wait at different sync points: {names}")
    node = runs[0].program.graph.node(runs[0].pending)  # type: ignore[arg-type]
    assert node.sync is not None
    total = combine([r.partial for r in runs], node.sync)  # type: ignore[misc]
    for r in runs:
        r.resume(total)
