"""Fused-layer configurations (FLCs) and Legion's FLC optimizer.

An FLC partitions units 0..n-1 into contiguous groups, written as (first, last) inclusive
pairs, e.g. ((0, 3), (4, 4), (5, 9)). Inside a group devices exchange nothing; between
groups the coordinator gathers and re-scatters rows. Given a cost T[i, j] for every
possible group (predicted by Legion, measured by FSS), the best FLC is a shortest path
over cut points: an exact O(n^2) dynamic programme, since the total is a sum over groups.

Ties are broken deterministically, so that the same costs always give the same plan:
lowest total, then fewest groups (less coordination for the same predicted time), then
the latest cut points, i.e. the longest last group, then the longest group before it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from maniple.errors import ManipleError

Group = tuple[int, int]
FLC = tuple[Group, ...]
"""Contiguous groups of units as (first, last) inclusive pairs, in order."""

BRUTE_FORCE_MAX_UNITS = 20


def best_flc(T: np.ndarray | Sequence[Sequence[float]]) -> tuple[FLC, float]:
    """The FLC minimising the sum of T over its groups, and that sum (exact).

    best[j] is the cheapest way to cover units 0..j-1; the last group of that cover is
    i..j-1 for some i. Sums are formed left to right, exactly as `flc_total` does, so the
    returned total equals `flc_total(flc, T)` bit for bit.
    """
    costs = check_cost_matrix(T)
    n = costs.shape[0]
    best: list[tuple[float, int]] = [(0.0, 0)] * (n + 1)  # (total, groups) covering 0..j-1
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        chosen = (math.inf, n + 1)
        for i in range(j):  # ascending i: on a tie the longer last group is kept
            candidate = (best[i][0] + float(costs[i, j - 1]), best[i][1] + 1)
            if candidate < chosen:
                chosen, start[j] = candidate, i
        best[j] = chosen
    groups: list[Group] = []
    j = n
    while j > 0:
        groups.append((start[j], j - 1))
        j = start[j]
    return tuple(reversed(groups)), best[n][0]


def brute_force_flc(T: np.ndarray | Sequence[Sequence[float]]) -> tuple[FLC, float]:
    """Best FLC by trying all 2^(n-1) configurations, with the same tie-break as `best_flc`.

    Only for checking the dynamic programme; refuses more than BRUTE_FORCE_MAX_UNITS units.
    """
    costs = check_cost_matrix(T)
    n = costs.shape[0]
    if n > BRUTE_FORCE_MAX_UNITS:
        raise ManipleError(
            f"brute force over {n} units would try 2^{n - 1} configurations; "
            f"use best_flc (exact) or at most {BRUTE_FORCE_MAX_UNITS} units"
        )
    best_key: tuple[float, int, tuple[int, ...]] | None = None
    best: FLC = ()
    for mask in range(1 << (n - 1)):  # bit b set: a cut after unit b
        flc = _flc_from_cuts(n, [b for b in range(n - 1) if mask >> b & 1])
        key = (_sum_groups(flc, costs), len(flc), tuple(first for first, _ in reversed(flc)))
        if best_key is None or key < best_key:
            best_key, best = key, flc
    assert best_key is not None
    return best, best_key[0]


def flc_total(flc: FLC, T: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Sum of T over the groups of `flc`, added left to right."""
    costs = check_cost_matrix(T)
    check_flc(flc, costs.shape[0])
    return _sum_groups(flc, costs)


def _sum_groups(flc: FLC, costs: np.ndarray) -> float:
    total = 0.0
    for first, last in flc:
        total += float(costs[first, last])
    return total


def wildcard_candidate(flc: FLC, T: np.ndarray | Sequence[Sequence[float]]) -> FLC | None:
    """Legion's Wild Card: `flc` with the adjacent pair of groups whose merge looks
    cheapest merged, i.e. the smallest T[merged] - (T[a] + T[b]), leftmost on ties.

    The predictor cannot see everything (e.g. the coordinator's per-group overhead), so the
    runtime runs both FLCs for real and keeps the faster (`choose_faster`). None when there
    is nothing to merge: one group, or every merge has an infinite (infeasible) cost.
    """
    costs = check_cost_matrix(T)
    check_flc(flc, costs.shape[0])
    best_pair, best_delta = None, math.inf
    for g in range(len(flc) - 1):
        (a_first, a_last), (b_first, b_last) = flc[g], flc[g + 1]
        merged = float(costs[a_first, b_last])
        if math.isinf(merged):
            continue
        delta = merged - (float(costs[a_first, a_last]) + float(costs[b_first, b_last]))
        if best_pair is None or delta < best_delta:
            best_pair, best_delta = g, delta
    if best_pair is None:
        return None
    g = best_pair
    return flc[:g] + ((flc[g][0], flc[g + 1][1]),) + flc[g + 2 :]


def fss(T_measured: np.ndarray | Sequence[Sequence[float]]) -> tuple[FLC, float]:
    """FSS (full searching scheme): the same exact search over *measured* group costs.

    The measuring of every group i..j is done by the runtime; this only chooses.
    """
    return best_flc(T_measured)


def choose_faster(candidates: Sequence[tuple[FLC, float]]) -> FLC:
    """The FLC with the lowest measured ms; the earliest on ties, so pass Legion's own FLC
    first and the Wild Card second: the Wild Card must be strictly faster to win."""
    if len(candidates) == 0:
        raise ManipleError("choose_faster needs at least one (flc, measured_ms) candidate")
    for flc, ms in candidates:
        if not (isinstance(ms, (int, float)) and ms >= 0 and not math.isnan(ms)):
            raise ManipleError(f"measured time of FLC {flc} is {ms!r}; it must be a number >= 0")
    best = min(range(len(candidates)), key=lambda c: (candidates[c][1], c))
    return candidates[best][0]


def layerwise(n: int) -> FLC:
    """Every unit its own group: no fusion, no halo, a gather after every unit."""
    _check_n(n)
    return tuple((k, k) for k in range(n))


def one_group(n: int) -> FLC:
    """All units fused into one group, as in DeepThings: one scatter, one gather, most halo."""
    _check_n(n)
    return ((0, n - 1),)


def check_cost_matrix(T: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """T as a float array, after checking it is square, non-empty and has no NaN where
    it is read (on and above the diagonal; +inf there means 'this group cannot run')."""
    try:
        costs = np.asarray(T, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ManipleError(f"cost matrix T is not numeric ({exc})") from None
    if costs.ndim != 2 or costs.shape[0] != costs.shape[1] or costs.shape[0] == 0:
        raise ManipleError(f"cost matrix T must be square n x n with n >= 1; got {costs.shape}")
    upper = np.triu(np.ones(costs.shape, dtype=bool))
    if np.isnan(costs[upper]).any():
        i, j = (int(x) for x in np.argwhere(np.isnan(costs) & upper)[0])
        raise ManipleError(f"cost matrix T[{i}, {j}] is NaN; group costs must be numbers")
    return costs


def check_flc(flc: FLC, n: int) -> None:
    """Raise naming the first bad group unless `flc` covers units 0..n-1 contiguously."""
    if len(flc) == 0:
        raise ManipleError(f"FLC has no groups; it must cover units 0..{n - 1}")
    expected_first = 0
    for g, group in enumerate(flc):
        if not _is_pair_of_ints(group):
            raise ManipleError(f"FLC group {g} is {group!r}; expected a (first, last) pair")
        first, last = group
        if first != expected_first:
            raise ManipleError(
                f"FLC group {g} ({first}..{last}) starts at unit {first}, expected "
                f"{expected_first}; groups must be contiguous and cover units 0..{n - 1}"
            )
        if last < first:
            raise ManipleError(f"FLC group {g} ({first}..{last}) ends before it starts")
        expected_first = last + 1
    if expected_first != n:
        raise ManipleError(
            f"FLC ends at unit {expected_first - 1}, but the network has units 0..{n - 1}; "
            "groups must cover every unit"
        )


def _flc_from_cuts(n: int, cuts: Sequence[int]) -> FLC:
    """Groups from the sorted units after which a cut falls."""
    firsts = [0, *(c + 1 for c in cuts)]
    lasts = [*cuts, n - 1]
    return tuple(zip(firsts, lasts, strict=True))


def _is_pair_of_ints(group: object) -> bool:
    return (
        isinstance(group, (tuple, list))
        and len(group) == 2
        and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in group)
    )


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ManipleError(f"number of units must be an integer >= 1; got {n!r}")
