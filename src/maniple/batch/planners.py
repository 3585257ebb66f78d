"""Batch planners: split B images across devices so that the last one finishes soonest.

Pure functions over a `PerfTable` (no device needed), all using the table's estimates:

- `greedy`: the KCC 2020 study's search. Start with every image on the device fastest
  for the whole batch; repeatedly move a chunk of 2^t images away from the device that
  finishes last (the bottleneck), trying t from large to small and, for each chunk, the
  receiving device whose result is best (ties: the receiver whose own time stays lowest);
  a move is kept only if it improves the plan. It stops after one full sweep (every chunk
  size 2^t <= the bottleneck's share, every receiver) finds no improving move. The study
  instead tried chunks of 1, 2, 4, 8 images, growing after each failed try, and gave up
  after a fixed tolerance of 3 failures (then retried from up to 5 other base devices);
  sweeping every chunk size, largest first, finds its larger moves at once and stops only
  where no single move of this kind helps (a local optimum). "Improves" compares, in
  order: images above memory limits, then the devices' times sorted from slowest down
  (so the makespan never grows, and a move that shortens one of two tied bottlenecks
  still counts). The makespan strictly never increases, so greedy is never worse than
  `single`, and it always terminates (each accepted move strictly lowers that key).
- `exact`: the minimum makespan over all integer splits under the same estimates, by a
  dynamic programme over devices x images (O(devices * B^2)); it assumes nothing about the
  tables (non-monotone times are fine). Among optimal splits it takes the one using the
  fewest devices, then the one giving the fastest devices the most images.
- `equal`: B / n images each, the remainder one each to the fastest devices (what
  DataParallel does); `single`: the whole batch on the best one device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from maniple.batch.perf_table import PerfTable
from maniple.batch.plan import BatchPlan
from maniple.errors import ManipleError, UnknownNameError

Shares = dict[str, int]


def plan_batch(
    table: PerfTable,
    batch: int,
    planner: str = "greedy",
    devices: Sequence[str] | None = None,
) -> BatchPlan:
    """Split `batch` images of `table.network` across `devices` (default: all of the
    table's) with the named planner; the plan's times are the table's estimates."""
    if planner not in PLANNERS:
        raise UnknownNameError("planner", planner, PLANNERS)
    _check_batch(batch)
    table = table.select(devices)
    _check_fits(table, batch, planner)
    shares = PLANNERS[planner](table, batch)
    predicted = {d: table.estimate_ms(d, n) for d, n in shares.items()}
    for d, ms in predicted.items():
        if math.isinf(ms):
            raise ManipleError(
                f"planner {planner!r} gives device {d!r} {shares[d]} images of {table.network}, "
                f"above its memory limit of {table.max_batch[d]}; use planner 'exact' or "
                "'greedy', or a smaller batch"
            )
    makespan = max(predicted.values())
    best = _best_single(table, batch)
    best_ms = table.estimate_ms(best, batch)
    plan = BatchPlan(
        planner=planner,
        network=table.network,
        batch=batch,
        shares=shares,
        predicted_ms=predicted,
        makespan_ms=makespan,
        best_single_device=best,
        best_single_ms=best_ms,
        predicted_speedup=best_ms / makespan if makespan > 0 else 1.0,
    )
    return plan.validate(table.entries)


# -- the planners ------------------------------------------------------------------------


def single_split(table: PerfTable, batch: int) -> Shares:
    """The whole batch on the device that is fastest for it (first in table order on ties)."""
    best = _best_single(table, batch)
    return {d: batch if d == best else 0 for d in table.devices}


def equal_split(table: PerfTable, batch: int) -> Shares:
    """As even as integers allow; the remainder goes one image each to the fastest devices."""
    q, r = divmod(batch, len(table.devices))
    bonus = set(_by_speed(table, batch)[:r])
    return {d: q + (d in bonus) for d in table.devices}


def greedy_split(table: PerfTable, batch: int) -> Shares:
    """The study's greedy offloading search (see the module docstring for the rules)."""
    names = table.devices
    est = _cached_estimate(table)
    start = min(names, key=lambda d: (est(d, batch), names.index(d)))
    shares = {d: batch if d == start else 0 for d in names}

    def key(s: Shares) -> tuple[int, tuple[float, ...]]:
        return _excess(table, s), tuple(sorted((est(d, n) for d, n in s.items()), reverse=True))

    current = key(shares)
    while True:
        loaded = [d for d in names if shares[d] > 0]
        bottleneck = max(loaded, key=lambda d: (est(d, shares[d]), -names.index(d)))
        improved = False
        for t in range(shares[bottleneck].bit_length() - 1, -1, -1):
            chunk = 1 << t
            best: tuple[tuple, Shares] | None = None
            for r in names:
                if r == bottleneck:
                    continue
                trial = dict(shares)
                trial[bottleneck] -= chunk
                trial[r] += chunk
                rank = (key(trial), est(r, trial[r]), names.index(r))
                if best is None or rank < best[0]:
                    best = (rank, trial)
            if best is not None and best[0][0] < current:
                shares, current, improved = best[1], best[0][0], True
                break
        if not improved:
            return shares


def exact_split(table: PerfTable, batch: int) -> Shares:
    """Minimum-makespan split by dynamic programme (see the module docstring)."""
    names = table.devices
    est = _cached_estimate(table)
    cost = {d: np.array([est(d, k) for k in range(batch + 1)], dtype=float) for d in names}

    # best[n]: minimum makespan of n images over the devices seen so far
    best = cost[names[0]].copy()
    for d in names[1:]:
        c = cost[d]
        best = np.array([np.maximum(best[n::-1], c[: n + 1]).min() for n in range(batch + 1)])
    makespan = best[batch]

    # among splits with that makespan: fewest devices used, then most images on the fastest
    order = _by_speed(table, batch)
    used = (np.arange(batch + 1) > 0).astype(float)
    fewest = [np.full(batch + 1, np.inf) for _ in range(len(order) + 1)]
    fewest[-1][0] = 0.0  # fewest[i][n]: fewest devices among order[i:] taking n images
    for i in range(len(order) - 1, -1, -1):
        ok = cost[order[i]] <= makespan
        nxt = fewest[i + 1]
        fewest[i] = np.array(
            [
                np.where(ok[: n + 1], used[: n + 1] + nxt[n::-1], np.inf).min()
                for n in range(batch + 1)
            ]
        )
    shares, left = {}, batch
    for i, d in enumerate(order):
        ok = cost[d] <= makespan
        k = next(
            k for k in range(left, -1, -1)
            if ok[k] and used[k] + fewest[i + 1][left - k] == fewest[i][left]
        )  # fmt: skip
        shares[d], left = k, left - k
    return {d: shares[d] for d in names}


PLANNERS: dict[str, Callable[[PerfTable, int], Shares]] = {
    "greedy": greedy_split,
    "exact": exact_split,
    "equal": equal_split,
    "single": single_split,
}
"""Planner names (as on the command line) and their split functions."""


# -- helpers -----------------------------------------------------------------------------


def _check_batch(batch: int) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise ManipleError(f"batch must be a positive number of images, got {batch!r}")


def _check_fits(table: PerfTable, batch: int, planner: str) -> None:
    """Refuse early when the devices' memory limits together cannot hold the batch."""
    if len(table.max_batch) < len(table.devices):
        return
    room = sum(table.max_batch.values())
    if room < batch:
        limits = ", ".join(f"{d}: {n}" for d, n in table.max_batch.items())
        raise ManipleError(
            f"batch {batch} of {table.network} does not fit on these devices: their memory "
            f"limits hold {room} images together ({limits}); use a batch of at most {room}, "
            "or add devices"
        )


def _cached_estimate(table: PerfTable) -> Callable[[str, int], float]:
    memo: dict[tuple[str, int], float] = {}

    def est(device: str, n: int) -> float:
        if (device, n) not in memo:
            memo[device, n] = table.estimate_ms(device, n)
        return memo[device, n]

    return est


def _best_single(table: PerfTable, batch: int) -> str:
    names = table.devices
    return min(names, key=lambda d: (table.estimate_ms(d, batch), names.index(d)))


def _by_speed(table: PerfTable, batch: int) -> list[str]:
    """Devices fastest first: per-image time at the batch (or at the device's limit, if
    lower), ties in table order."""
    names = table.devices

    def per_image(d: str) -> float:
        n = batch if table.max_batch.get(d) is None else min(batch, table.max_batch[d])
        return table.estimate_ms(d, n) / n if n > 0 else math.inf

    return sorted(names, key=lambda d: (per_image(d), names.index(d)))


def _excess(table: PerfTable, shares: Shares) -> int:
    """Images given to devices beyond their memory limits (0 for a feasible split)."""
    return sum(max(0, n - table.max_batch[d]) for d, n in shares.items() if d in table.max_batch)
