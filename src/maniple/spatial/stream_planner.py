"""Choosing lanes for a stream of frames: which devices run frames alone, which split them.

Pure: the caller predicts each candidate lane (period and latency) and this module only
chooses, so it can be tested exhaustively against `brute_force_stream`, the reference
that tries every set of disjoint candidate lanes.

The objectives (see `plan_stream`) compare choices on frame time first or latency first,
with a relative slack of `REL_TOL` on frame time: predictions are not exact to 1e-9, and
without the slack a choice a rounding error faster would beat a much lower latency.

The search is exact. For a latency limit L, a bitmask dynamic programme over device
subsets gives the highest rate (sum of 1/period) reachable with lanes of latency <= L;
that rate only grows with L, so a binary search over the candidates' distinct latencies
finds the least L that reaches the rate the objective needs. A second programme, by
number of lanes, then takes the fewest lanes reaching it at that L. Each programme visits
every (subset, lane inside it) pair once: well under a second for 8 devices and all 255
subsets as candidates.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from maniple.errors import ManipleError
from maniple.spatial.stream_plan import StreamLane, StreamPlan

REL_TOL = 1e-9
"""Relative slack: frame times within it of the best tie, and a rate within it of the
target meets it."""


@dataclass(frozen=True)
class _Cand:
    """A candidate lane as the search sees it: its devices as a bitmask, its rate."""

    lane: StreamLane
    mask: int
    rate: float  # frames per ms: 1 / period_ms
    latency_ms: float


def plan_stream(
    network: str,
    devices: Sequence[str],
    lanes: Mapping[frozenset[str], StreamLane],
    coordinator_ms: float,
    *,
    fps: float | None = None,
) -> StreamPlan:
    """The best set of disjoint candidate lanes for a stream of `network`'s frames.

    lanes: every lane the caller could predict, keyed by its device set; a device set
        absent from it is never used as a lane (devices may be left out altogether).
    fps None (objective 'throughput'): the lowest frame_ms; among choices within REL_TOL
        of it, the lowest latency; then the fewest lanes; then the exact lowest frame_ms. Once
        the coordinator caps the stream, every choice reaching the cap ties on frame_ms,
        so the lowest latency wins.
    fps F (objective 'fps'): among choices reaching F frames/s (1000/frame_ms >=
        F * (1 - REL_TOL)), the lowest latency; then the lowest frame_ms (within
        REL_TOL); then the fewest lanes; then the exact lowest frame_ms. When none reaches F,
        the throughput choice, with a note saying how fast the devices can go.
    Ties left after all that go to the choice the search meets first (deterministic).
    """
    names, cands = _check_inputs(network, devices, lanes, coordinator_ms, fps)
    chosen = _search(cands, len(names), coordinator_ms, fps)
    if chosen is not None:
        return _make_plan(network, names, chosen, coordinator_ms, fps)
    fastest = _search(cands, len(names), coordinator_ms, None)
    assert fastest is not None  # the throughput objective always has a choice
    return _missed(_make_plan(network, names, fastest, coordinator_ms, None), fps)


def brute_force_stream(
    network: str,
    devices: Sequence[str],
    lanes: Mapping[frozenset[str], StreamLane],
    coordinator_ms: float,
    *,
    fps: float | None = None,
) -> StreamPlan:
    """The reference for `plan_stream`, same arguments and objectives: every set of
    disjoint candidate lanes (every partition of every subset of the devices into
    candidates) is built as a StreamPlan and compared on that plan's own properties.
    Exponential in the devices; for tests, kept here so it stays next to what it checks."""
    names, cands = _check_inputs(network, devices, lanes, coordinator_ms, fps)
    choices = [
        _make_plan(network, names, chosen, coordinator_ms, fps)
        for chosen in _disjoint_sets(cands, len(names))
    ]
    if fps is not None:
        feasible = [p for p in choices if p.fps >= fps * (1 - REL_TOL)]
        if feasible:
            low = min(p.latency_ms for p in feasible)
            at_low = [p for p in feasible if p.latency_ms == low]
            fastest = min(p.frame_ms for p in at_low)
            fast = [p for p in at_low if p.frame_ms <= fastest * (1 + REL_TOL)]
            return min(fast, key=lambda p: (len(p.lanes), p.frame_ms))
    fastest = min(p.frame_ms for p in choices)
    fast = [p for p in choices if p.frame_ms <= fastest * (1 + REL_TOL)]
    low = min(p.latency_ms for p in fast)
    best = min((p for p in fast if p.latency_ms == low), key=lambda p: (len(p.lanes), p.frame_ms))
    if fps is None:
        return best
    return _missed(best, fps)


# -- the search --------------------------------------------------------------------------------
def _search(
    cands: list[_Cand], n: int, coordinator_ms: float, fps: float | None
) -> list[_Cand] | None:
    """The candidates chosen under the objective; None when `fps` cannot be reached."""

    def frame(rate: float) -> float:
        return max(1.0 / rate, coordinator_ms) if rate > 0 else math.inf

    full = (1 << n) - 1
    by_low = _by_lowest_device(cands, n)

    def top_rate(limit: float) -> float:
        return _max_rates(by_low, full, limit, None)[0][full]

    reaches: Callable[[float], bool]
    if fps is None:
        fastest = frame(top_rate(math.inf))

        def reaches(rate: float) -> bool:
            return frame(rate) <= fastest * (1 + REL_TOL)

    else:

        def reaches(rate: float) -> bool:
            return 1000.0 / frame(rate) >= fps * (1 - REL_TOL)

        if not reaches(top_rate(math.inf)):
            return None

    limits = sorted({c.latency_ms for c in cands})
    lo, hi = 0, len(limits) - 1  # reaches() holds at limits[hi], where every lane is allowed
    while lo < hi:
        mid = (lo + hi) // 2
        if reaches(top_rate(limits[mid])):
            hi = mid
        else:
            lo = mid + 1
    limit = limits[lo]
    settles = reaches
    if fps is not None:  # then the lowest frame_ms at that latency, within the slack
        best_here = frame(top_rate(limit))

        def settles(rate: float) -> bool:
            return reaches(rate) and frame(rate) <= best_here * (1 + REL_TOL)

    return _fewest_lanes(by_low, full, n, limit, settles)


def _by_lowest_device(cands: list[_Cand], n: int) -> list[list[_Cand]]:
    """Candidates grouped by their lowest device bit: a subset's lowest device is either
    skipped or in exactly one lane, so only lanes holding it need trying."""
    groups: list[list[_Cand]] = [[] for _ in range(n)]
    for c in cands:
        groups[(c.mask & -c.mask).bit_length() - 1].append(c)
    return groups


def _max_rates(
    by_low: list[list[_Cand]], full: int, limit: float, prev: list[float] | None
) -> tuple[list[float], list[_Cand | None]]:
    """best[mask]: the highest rate of disjoint lanes of latency <= `limit` inside `mask`,
    with the lane taken for mask's lowest device (None: skipped) to rebuild the choice.

    prev None: any number of lanes. prev given (the table for at most k-1 lanes): at most
    k lanes, since each lane taken adds one to what `prev` allowed.
    """
    best = [0.0] * (full + 1)
    took: list[_Cand | None] = [None] * (full + 1)
    for mask in range(1, full + 1):
        low = mask & -mask
        rest = best if prev is None else prev
        value, pick = best[mask ^ low], None
        for c in by_low[low.bit_length() - 1]:
            if c.latency_ms <= limit and c.mask & ~mask == 0:
                here = c.rate + rest[mask ^ c.mask]
                if here > value:
                    value, pick = here, c
        best[mask], took[mask] = value, pick
    return best, took


def _fewest_lanes(
    by_low: list[list[_Cand]],
    full: int,
    n: int,
    limit: float,
    settles: Callable[[float], bool],
) -> list[_Cand]:
    """The fewest lanes of latency <= `limit` whose rate `settles`, and the fastest of
    those; the caller has checked that some number of lanes up to n settles."""
    tables: list[tuple[list[float], list[_Cand | None]]] = [([0.0] * (full + 1), [])]
    for _ in range(n):
        tables.append(_max_rates(by_low, full, limit, tables[-1][0]))
        if settles(tables[-1][0][full]):
            break
    else:
        raise AssertionError("no number of lanes reaches the rate found")  # unreachable
    chosen: list[_Cand] = []
    mask, k = full, len(tables) - 1
    while mask and k > 0:  # at k == 0 the rest of the devices are left out
        c = tables[k][1][mask]
        if c is None:
            mask ^= mask & -mask
        else:
            chosen.append(c)
            mask ^= c.mask
            k -= 1
    return chosen


def _disjoint_sets(cands: list[_Cand], n: int) -> Iterator[list[_Cand]]:
    """Every non-empty set of disjoint candidates, each once: device by device, either
    leave it out (or already used) or give it a lane whose lowest device it is."""
    by_low = _by_lowest_device(cands, n)

    def walk(i: int, used: int, taken: list[_Cand]) -> Iterator[list[_Cand]]:
        if i == n:
            if taken:
                yield list(taken)
            return
        yield from walk(i + 1, used, taken)
        if used >> i & 1:
            return
        for c in by_low[i]:
            if c.mask & used == 0:
                taken.append(c)
                yield from walk(i + 1, used | c.mask, taken)
                taken.pop()

    yield from walk(0, 0, [])


# -- inputs and results ------------------------------------------------------------------------
def _check_inputs(
    network: str,
    devices: Sequence[str],
    lanes: Mapping[frozenset[str], StreamLane],
    coordinator_ms: float,
    fps: float | None,
) -> tuple[tuple[str, ...], list[_Cand]]:
    """The devices as a tuple and the candidates as bitmasks, once every input is sound."""
    where = f"plan_stream for {network!r}"
    if isinstance(devices, str) or not devices:
        raise ManipleError(f"{where}: needs at least one device; got {devices!r}")
    names = tuple(devices)
    if len(names) > 20:
        raise ManipleError(
            f"{where}: {len(names)} devices; the search covers every subset, so at most 20 "
            "(plan the stream over fewer devices)"
        )
    if len(set(names)) != len(names):
        twice = sorted({d for d in names if names.count(d) > 1})
        raise ManipleError(f"{where}: device(s) {twice} named twice in {list(names)}")
    bit = {d: 1 << i for i, d in enumerate(names)}
    if not _finite(coordinator_ms) or coordinator_ms < 0:
        raise ManipleError(
            f"{where}: coordinator_ms is {coordinator_ms!r}; must be a finite number of "
            "ms >= 0 (0 when the coordinator's work per frame is negligible)"
        )
    if fps is not None and (not _finite(fps) or fps <= 0):
        raise ManipleError(
            f"{where}: fps is {fps!r}; must be a finite number of frames/s > 0 "
            "(or None to ask for the most frames/s)"
        )
    if not lanes:
        raise ManipleError(
            f"{where}: no candidate lanes; give at least one (e.g. each device alone)"
        )
    cands: list[_Cand] = []
    for key, lane in lanes.items():
        name = f"{where}: candidate lane {sorted(key) if isinstance(key, frozenset) else key!r}"
        if not isinstance(lane, StreamLane):
            raise ManipleError(f"{name}: must be a StreamLane; got {lane!r}")
        lane.validate(name)
        if key != frozenset(lane.devices):
            raise ManipleError(
                f"{name}: its key must be frozenset(lane.devices) = "
                f"{sorted(lane.devices)}; key the lane by its own devices"
            )
        mask = 0
        for d in lane.devices:
            if d not in bit:
                raise ManipleError(
                    f"{name}: device {d!r} is not one of the devices given; valid: "
                    f"{', '.join(names)}"
                )
            mask |= bit[d]
        cands.append(_Cand(lane, mask, 1.0 / lane.period_ms, lane.latency_ms))
    return names, cands


def _finite(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _make_plan(
    network: str,
    names: tuple[str, ...],
    chosen: list[_Cand],
    coordinator_ms: float,
    fps: float | None,
) -> StreamPlan:
    """The plan of the chosen lanes: lanes in the order of their first device among
    `names`, the unused devices left out in that order."""
    position = {d: i for i, d in enumerate(names)}
    lanes = sorted((c.lane for c in chosen), key=lambda ln: min(position[d] for d in ln.devices))
    used = {d for lane in lanes for d in lane.devices}
    return StreamPlan(
        network=network,
        lanes=tuple(lanes),
        coordinator_ms=float(coordinator_ms),
        objective="throughput" if fps is None else "fps",
        target_fps=None if fps is None else float(fps),
        left_out=tuple(d for d in names if d not in used),
    ).validate()


def _missed(best: StreamPlan, fps: float | None) -> StreamPlan:
    """The throughput plan `best`, reported against the unreachable `fps` with what the
    devices can do and what would help (more devices help only while the lanes, not the
    coordinator, set the pace)."""
    assert fps is not None
    if best.bottleneck == "coordinator":
        note = (
            f"at most {best.fps:.2f} frames/s against --fps {fps:g}: the coordinator's "
            f"{best.coordinator_ms:.2f} ms per frame caps the stream; lower --fps or "
            "shorten the coordinator's work per frame"
        )
    else:
        note = (
            f"at most {best.fps:.2f} frames/s with these devices against --fps {fps:g}; "
            "lower --fps or add devices"
        )
    return dataclasses.replace(best, objective="fps", target_fps=float(fps), note=note).validate()
