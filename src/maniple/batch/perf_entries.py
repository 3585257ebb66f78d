"""One device's rows of a perf table: the entry type, the checks every row passes, the
rows of a JSON file, and the study's estimate between measured batch sizes.

Why apart from perf_table: a `PerfTable` is about a network's devices (which names, what
limits, which files); everything here works on a single device's sorted entries and knows
nothing of the table around them, so the table's checks, its readers and its estimates all
share one definition of a valid row and one interpolation rule.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from maniple.errors import ManipleError


@dataclass(frozen=True, order=True)
class PerfEntry:
    """One measurement: the whole batch took `exec_ms` to run and `io_ms` to move data."""

    batch: int
    exec_ms: float
    io_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        """What a device spends on this batch: execution plus host<->device transfers."""
        return self.exec_ms + self.io_ms


def interpolate(rows: Sequence[PerfEntry], batch: int) -> tuple[float, float]:
    """(exec_ms, io_ms) for `batch` >= 1 images from `rows` (sorted, non-empty), as the
    study does: a measured size is its measurement; otherwise per-image time is linear
    between the neighbouring sizes, and that of the nearest size beyond either end."""
    sizes = [e.batch for e in rows]
    i = bisect.bisect_left(sizes, batch)
    if i < len(rows) and rows[i].batch == batch:
        return rows[i].exec_ms, rows[i].io_ms
    if i == 0 or i == len(rows):
        edge = rows[0] if i == 0 else rows[-1]
        return edge.exec_ms / edge.batch * batch, edge.io_ms / edge.batch * batch
    lo, hi = rows[i - 1], rows[i]
    w = (batch - lo.batch) / (hi.batch - lo.batch)
    per_exec = lo.exec_ms / lo.batch + w * (hi.exec_ms / hi.batch - lo.exec_ms / lo.batch)
    per_io = lo.io_ms / lo.batch + w * (hi.io_ms / hi.batch - lo.io_ms / lo.batch)
    return per_exec * batch, per_io * batch


def entries_from_json(where: str, name: str, rows: Any) -> tuple[PerfEntry, ...]:
    """A device's `[{batch, exec_ms, io_ms?}, ...]` list (ours and the study's) as entries;
    `where` names the table in errors. Values are checked by `checked_entries`."""
    if not isinstance(rows, list):
        raise ManipleError(f"{where}: entries of device {name!r} must be a list, got {rows!r}")
    out = []
    for i, row in enumerate(rows):
        label = f"{where}: devices[{name!r}][{i}]"
        if not isinstance(row, dict):
            raise ManipleError(f"{label} must be an object with batch, exec_ms, io_ms; got {row!r}")
        for key in ("batch", "exec_ms"):
            if key not in row:
                raise ManipleError(f"{label}: missing field {key!r}")
        out.append(PerfEntry(row["batch"], row["exec_ms"], row.get("io_ms", 0.0)))
    return tuple(out)


def checked_entries(where: str, name: str, rows: Iterable[PerfEntry]) -> tuple[PerfEntry, ...]:
    """Entries sorted by batch, each with a positive batch and finite, non-negative times."""
    if not isinstance(name, str) or not name:
        raise ManipleError(f"{where}: device names must be non-empty strings, got {name!r}")
    checked = []
    for e in rows:
        if isinstance(e.batch, bool) or not isinstance(e.batch, int) or e.batch < 1:
            raise ManipleError(
                f"{where}: device {name!r}: batch must be a positive integer, got {e.batch!r}"
            )
        for key in ("exec_ms", "io_ms"):
            v = getattr(e, key)
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or v < 0
            ):
                raise ManipleError(
                    f"{where}: device {name!r}, batch {e.batch}: {key} must be a finite "
                    f"number >= 0, got {v!r}"
                )
        checked.append(PerfEntry(e.batch, float(e.exec_ms), float(e.io_ms)))
    if not checked:
        raise ManipleError(f"{where}: device {name!r} has no entries; profile it or drop it")
    checked.sort()
    for a, b in zip(checked, checked[1:], strict=False):
        if a.batch == b.batch:
            raise ManipleError(
                f"{where}: device {name!r} has batch {a.batch} twice; keep one entry per batch"
            )
    return tuple(checked)
