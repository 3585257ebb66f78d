"""Spread of repeated timings and the honest word for a ratio between two of them.

Why: these machines are noisy, and a median alone turns noise into a "result" (one
device reported 0.52x to 1.19x "speedups" over itself). Every repeated measurement is
shown as min/median/max, and a speedup whose two spreads overlap is labelled as within
the noise rather than as a gain or a loss; a plan that is its own baseline is 1.00x.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SAME_PLAN, WITHIN_NOISE, FASTER, SLOWER = "same plan", "within noise", "faster", "slower"
VERDICTS = (SAME_PLAN, WITHIN_NOISE, FASTER, SLOWER)


@dataclass(frozen=True)
class Spread:
    """min / median / max of repeated timings, in ms."""

    min_ms: float
    median_ms: float
    max_ms: float

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> Spread:
        if not values_ms:
            raise ValueError("a spread needs at least one timing")
        return cls(min(values_ms), statistics.median(values_ms), max(values_ms))

    def overlaps(self, other: Spread) -> bool:
        return self.min_ms <= other.max_ms and other.min_ms <= self.max_ms

    def to_json(self) -> dict[str, float]:
        return {"min": self.min_ms, "median": self.median_ms, "max": self.max_ms}

    def __str__(self) -> str:
        return f"{self.min_ms:.1f}/{self.median_ms:.1f}/{self.max_ms:.1f} ms (min/median/max)"


def speedup_verdict(
    baseline_ms: Sequence[float], candidate_ms: Sequence[float], same_plan: bool = False
) -> str:
    """How the candidate compares with the baseline: 'same plan' (it is the baseline),
    'within noise' (their min..max ranges overlap), else 'faster' or 'slower'."""
    if same_plan:
        return SAME_PLAN
    base, cand = Spread.of(baseline_ms), Spread.of(candidate_ms)
    if base.overlaps(cand):
        return WITHIN_NOISE
    return FASTER if cand.max_ms < base.min_ms else SLOWER


def verdict_note(verdict: str, baseline: str) -> str:
    """The words printed after a speedup for `verdict` against `baseline` (a device)."""
    return {
        SAME_PLAN: f"the plan is {baseline} alone, the baseline itself",
        WITHIN_NOISE: "within the measured noise: the two min..max ranges overlap",
        FASTER: "faster beyond the measured noise",
        SLOWER: "slower beyond the measured noise",
    }[verdict]


def spread_json(values_ms: Sequence[float]) -> dict[str, Any]:
    """{min, median, max} of `values_ms` for a JSON document."""
    return Spread.of(values_ms).to_json()


MAX_REPEATS = 1000
"""More timed runs than this add nothing to a median and can hold a command for hours."""


def check_repeats(value: int, option: str) -> int:
    """A count of timed runs: 1 to MAX_REPEATS; a ManipleError naming `option` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_REPEATS:
        from maniple.errors import ManipleError

        raise ManipleError(
            f"{option} must be a whole number from 1 to {MAX_REPEATS}, got {value!r}; e.g. 3"
        )
    return value
