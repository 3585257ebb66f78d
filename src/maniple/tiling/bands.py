"""Band ratios and stitching: each device's share of a map's rows, in proportion to its speed.

Legion gives every device a contiguous band of rows whose height is proportional to the
device's speed, so that all devices finish a group at about the same time. Rows are
integers and every row must be computed exactly once, so the proportional shares are
rounded by the largest-remainder method, computed in exact rational arithmetic so that
the result never depends on floating-point rounding of the weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import torch

from maniple.errors import ManipleError

Band = tuple[int, int]
"""Half-open row range [first, end) of one device's band."""


def split_rows(rows: int, weights: Sequence[float]) -> tuple[Band, ...]:
    """Split `rows` rows into contiguous half-open bands, one per device, in device order.

    Band sizes are proportional to `weights` by largest remainder (ties go to the earlier
    device), so each band is within one row of its exact share. A device with zero weight
    gets an empty band; a device with positive weight always gets at least one row (it was
    chosen to take part): where largest remainder would give it none, it takes one row from
    the band furthest above its share, which is the only case a band may be more than one
    row from its share.
    """
    quotas = _exact_quotas(rows, weights)
    sizes = [math.floor(q) for q in quotas]
    remainder = rows - sum(sizes)
    by_fraction = sorted(range(len(quotas)), key=lambda d: (-(quotas[d] - sizes[d]), d))
    for d in by_fraction[:remainder]:
        sizes[d] += 1
    _give_every_positive_weight_a_row(sizes, quotas)
    bands: list[Band] = []
    start = 0
    for size in sizes:
        bands.append((start, start + size))
        start += size
    return tuple(bands)


def speed_weights(times_ms: Sequence[float]) -> tuple[float, ...]:
    """Weights proportional to speed (1 / time), normalised to sum to 1.

    A device that takes twice as long gets half the rows, so that, if its time scales with
    its rows, all devices finish together.
    """
    if len(times_ms) == 0:
        raise ManipleError("speed_weights needs at least one device time; got none")
    for d, t in enumerate(times_ms):
        if not (math.isfinite(t) and t > 0):
            raise ManipleError(
                f"device {d} has time {t!r} ms; times must be positive and finite "
                "(leave a device out instead of giving it no time)"
            )
    speeds = [1.0 / t for t in times_ms]
    total = sum(speeds)
    return tuple(s / total for s in speeds)


def _exact_quotas(rows: int, weights: Sequence[float]) -> list[Fraction]:
    """Each device's exact share of `rows` as a fraction, after checking the inputs."""
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise ManipleError(f"rows must be a non-negative integer; got {rows!r}")
    if len(weights) == 0:
        raise ManipleError("split_rows needs at least one device weight; got none")
    for d, w in enumerate(weights):
        if not math.isfinite(w):
            raise ManipleError(f"device {d} has weight {w!r}; weights must be finite")
        if w < 0:
            raise ManipleError(f"device {d} has negative weight {w!r}; weights must be >= 0")
    exact = [Fraction(w) for w in weights]
    total = sum(exact, Fraction(0))
    if total <= 0:
        raise ManipleError(
            f"weights {list(weights)} sum to {float(total)}; at least one device needs a "
            "positive weight"
        )
    positive = sum(1 for w in exact if w > 0)
    if positive > rows:
        raise ManipleError(
            f"{positive} devices with positive weight but only {rows} rows to split; "
            "use fewer devices or a larger input"
        )
    return [rows * w / total for w in exact]


def _give_every_positive_weight_a_row(sizes: list[int], quotas: list[Fraction]) -> None:
    """Move one row at a time to each positive-share device left empty, from the band
    furthest above its share (earliest on ties); needs rows >= positive devices."""
    for d, q in enumerate(quotas):
        if q > 0 and sizes[d] == 0:
            donors = [e for e in range(len(sizes)) if sizes[e] >= 2]
            donor = min(donors, key=lambda e: (-(sizes[e] - quotas[e]), e))
            sizes[donor] -= 1
            sizes[d] = 1


def stitch(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate band outputs along the rows (dim 2), skipping empty bands."""
    parts = [p for p in parts if p.shape[2] > 0]
    if not parts:
        raise ManipleError("nothing to stitch: every band is empty")
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


def split_rows_capped(rows: int, weights: Sequence[float]) -> tuple[Band, ...]:
    """Like `split_rows`, but a map with fewer rows than devices goes to the fastest ones.

    Late layers of a network can have fewer rows than there are devices (VGG-16 ends at 7
    rows); the devices with the smallest weights then sit that group out (empty bands).
    """
    active = [d for d, w in enumerate(weights) if w > 0]
    if 0 < rows < len(active):
        keep = set(sorted(active, key=lambda d: (-weights[d], d))[:rows])
        weights = [w if d in keep else 0.0 for d, w in enumerate(weights)]
    return split_rows(rows, weights)
