"""How the output rows of one op depend on its input rows.

Spatial splitting only works because most CNN ops are *row-local*: output row r depends
on a bounded window of input rows. A `RowMap` states that window for one op, so the halo
math can walk a span of ops backwards and the band executor can pad only at the true
borders of the feature map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RowMapKind = Literal["identity", "window", "upsample", "unshuffle", "shuffle"]


@dataclass(frozen=True)
class RowMap:
    """Row dependence of one op along the height axis (dim 2 of NCHW).

    - ``identity``: output row r needs input row r (activations, batch norm, add, cat).
    - ``window``: a sliding window (conv, pooling) with kernel, stride, padding, dilation;
      `pad_value` is what the op pads with at the borders (0 for conv, -inf for max pool).
    - ``upsample``: nearest upsampling by an integer factor: row r needs row r // factor.
    - ``unshuffle``: space-to-depth by factor: row r needs rows r*f .. r*f+f-1.
    - ``shuffle``: depth-to-space by factor: row r needs row r // f.
    """

    kind: RowMapKind = "identity"
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    factor: int = 1

    def needed(self, out_rows: tuple[int, int]) -> tuple[int, int]:
        """Input rows [lo, hi) that output rows [a, b) need, *before* clamping to the map.

        For a window op the range may start below 0 or end past the input's height: those
        rows are the op's own padding and exist only at the true borders.
        """
        a, b = out_rows
        if self.kind == "identity":
            return a, b
        if self.kind == "window":
            lo = a * self.stride - self.padding
            hi = (b - 1) * self.stride - self.padding + self.dilation * (self.kernel - 1) + 1
            return lo, hi
        if self.kind in ("upsample", "shuffle"):
            return a // self.factor, (b - 1) // self.factor + 1
        if self.kind == "unshuffle":
            return a * self.factor, b * self.factor
        raise AssertionError(f"unhandled row map kind {self.kind!r}")

    def needed_clamped(
        self, out_rows: tuple[int, int], in_height: int
    ) -> tuple[tuple[int, int], tuple[int, int]]:
        """((lo, hi) clamped to [0, in_height), (pad_top, pad_bottom)) for output rows."""
        lo, hi = self.needed(out_rows)
        first, last = lo, hi - 1
        if self.kind == "window" and (lo < 0 or hi > in_height):
            first, last = self._real_taps(out_rows, in_height)
        else:
            first, last = max(0, first), min(in_height - 1, last)
        # Rows between the unclamped edge and the first real row read are padding (or,
        # with dilation, rows no tap reads): the band executor fills them with pad values.
        return (first, last + 1), (first - lo, hi - (last + 1))

    def _real_taps(self, out_rows: tuple[int, int], in_height: int) -> tuple[int, int]:
        """First and last input rows inside the map that a window actually reads.

        With dilation, the row just inside a border may fall between taps; the hull of the
        rows really read is then narrower than the clamped window range.
        """
        a, b = out_rows
        s, p, d, k = self.stride, self.padding, self.dilation, self.kernel
        first = last = None
        for r in range(a, b):
            taps = [r * s - p + d * t for t in range(k)]
            inside = [v for v in taps if 0 <= v < in_height]
            if inside:
                first = inside[0] if first is None else min(first, inside[0])
                if r * s - p >= 0:
                    break
        for r in range(b - 1, a - 1, -1):
            taps = [r * s - p + d * t for t in range(k)]
            inside = [v for v in taps if 0 <= v < in_height]
            if inside:
                last = inside[-1] if last is None else max(last, inside[-1])
                if r * s - p + d * (k - 1) < in_height:
                    break
        if first is None or last is None:
            raise ValueError(f"output rows {out_rows} read no input row of {in_height}")
        return first, last
