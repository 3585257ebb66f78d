"""Run several planners' splits of one batch on the same profiled devices, side by side.

Why: "is exact better than equal here, and by how much?" must be answered on the same
devices, the same table and the same input, with the runs interleaved so that a drift of
the host hits every planner alike. The acceptance test and benchmarks/batch_emulated.py
both ask exactly this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from maniple.batch.infer import ideal_ms, model_input_shape, random_batch
from maniple.batch.perf_table import PerfTable
from maniple.batch.plan import BatchPlan
from maniple.batch.planners import plan_batch
from maniple.batch.profile_cluster import DeviceProfile, profile_sizes, profiled_cluster
from maniple.batch.run import BatchRun, max_rel_error, median_run, run_interleaved
from maniple.batch.store import ProfileStore
from maniple.cluster import ClusterSpec
from maniple.devices import ModelSpec
from maniple.errors import ManipleError


@dataclass(frozen=True)
class PlannerComparison:
    """Each planner's plan and timed runs on one table; outputs checked against the first
    planner's (`max_rel_error` by planner)."""

    table: PerfTable
    profiles: tuple[DeviceProfile, ...]
    plans: Mapping[str, BatchPlan]
    runs: Mapping[str, tuple[BatchRun, ...]]
    max_rel_error: Mapping[str, float]

    @property
    def batch(self) -> int:
        return next(iter(self.plans.values())).batch

    @property
    def ideal_ms(self) -> float:
        return ideal_ms(self.table, self.batch)

    def median(self, planner: str) -> BatchRun:
        if planner not in self.runs:
            raise ManipleError(f"planner {planner!r} was not run; ran: {', '.join(self.runs)}")
        return median_run(self.runs[planner])

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "network": self.table.network,
            "batch": self.batch,
            "ideal_ms": self.ideal_ms,
            "devices": {
                d: {"kind": self.table.kinds.get(d), "host": self.table.hosts.get(d)}
                for d in self.table.devices
            },
            "planners": {},
        }
        for name, plan in self.plans.items():
            run = self.median(name)
            out["planners"][name] = {
                "shares": dict(plan.shares),
                "predicted_ms": plan.makespan_ms,
                "measured_ms": run.measured_ms,
                "runs_ms": [r.measured_ms for r in self.runs[name]],
                "wall_ms": run.wall_ms,
                "fraction_of_ideal": self.ideal_ms / run.measured_ms,
                "max_rel_error": self.max_rel_error[name],
                "units": [u.to_json() for u in run.units],
            }
        return out


def compare_planners(
    cluster: ClusterSpec,
    model: ModelSpec,
    store: ProfileStore,
    batch: int,
    planners: Sequence[str] = ("exact", "equal"),
    *,
    sizes: Sequence[int] | None = None,
    repeats: int = 3,
    warmup: int = 1,
    profile_repeats: int = 3,
    seed: int = 0,
    progress: bool = True,
    console: Console | None = None,
) -> PlannerComparison:
    """Open and profile `cluster` (see profiled_cluster), plan `batch` with each planner,
    run every plan `repeats` times interleaved, and check the outputs agree."""
    if not planners:
        raise ManipleError("give at least one planner to compare, e.g. exact, equal")
    shape = model_input_shape(model)
    with profiled_cluster(
        cluster,
        model,
        shape,
        store,
        sizes if sizes is not None else profile_sizes(batch),
        repeats=profile_repeats,
        progress=progress,
        console=console,
    ) as (devices, table, profiles):
        plans = {p: plan_batch(table, batch, p) for p in planners}
        x = random_batch(batch, shape, seed)
        runs = run_interleaved(plans, devices, x, repeats=repeats, warmup=warmup)
    first = median_run(runs[planners[0]]).output
    errors = {p: max_rel_error(median_run(r).output, first) for p, r in runs.items()}
    return PlannerComparison(table, profiles, plans, {p: tuple(r) for p, r in runs.items()}, errors)
