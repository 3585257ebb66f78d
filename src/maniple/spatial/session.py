"""Legion end to end on a set of devices: measure, plan with any search, run, compare.

A `LegionSession` holds one network on one set of open devices and caches what several
searches share (device speeds, single-unit costs, FSS's measured group costs), so a
benchmark can compare every search on the same profile. Profiling runs with emulated
boards in fast-forward (board time added up, no sleeping); every latency reported comes
from a real-time run in which the boards really work at once.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from maniple.devices.handles import DeviceHandle
from maniple.errors import ManipleError, UnknownNameError
from maniple.graph import LayerGraph
from maniple.spatial.cache import CostCache
from maniple.spatial.costs import LegionCosts, ProfilingSpent
from maniple.spatial.flc import choose_faster
from maniple.spatial.plan import SEARCHES, SpatialPlan
from maniple.spatial.planners import plan_from_measured, plan_single, plan_spatial, wildcard_plans
from maniple.spatial.profiler import (
    SpeedProbe,
    check_devices,
    measure_groups,
    measure_speeds,
    profile_units,
)
from maniple.spatial.runtimes.star import SpatialRun, run_spatial_plan
from maniple.tiling.verify import relative_error

Progress = Callable[[str, int, int], None]


@contextmanager
def fast_forward(handles: Sequence[DeviceHandle], on: bool = True) -> Iterator[None]:
    """Emulated boards skip their sleeps inside the block (profiling); others are unaffected."""
    for h in handles:
        h.set_fast_forward(on)
    try:
        yield
    finally:
        for h in handles:
            h.set_fast_forward(not on)


def reference_input(graph: LayerGraph, seed: int = 0) -> torch.Tensor:
    """The seeded image every spatial run measures and checks with (batch 1)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, *graph.input_shape, generator=gen)


@dataclass(frozen=True)
class SpatialResult:
    """One search's plan, measured: what `maniple spatial --json` prints."""

    network: str
    search: str
    plan: SpatialPlan
    latencies_ms: tuple[float, ...]
    single_device: str
    single_device_ms: float
    max_rel_error: float
    profile: ProfilingSpent
    fast_forward_ms: float | None = None
    device_ms: float | None = None
    candidates: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    overrun_ms: float = 0.0
    reused: tuple[str, ...] = ()
    """Profiles read from the store instead of measured (speeds, costs, fss)."""
    profiled: tuple[str, ...] = ()
    """Profiles measured by this run (speeds, costs, fss); empty when nothing was."""

    @property
    def latency_ms(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def speedup(self) -> float:
        return self.single_device_ms / self.latency_ms

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "search": self.search,
            "devices": list(self.plan.devices),
            "flc": [list(g) for g in self.plan.flc],
            "bands": [[list(b) for b in group] for group in self.plan.bands],
            "predicted_ms": self.plan.predicted_ms,
            "latency_ms": self.latency_ms,
            "latencies_ms": list(self.latencies_ms),
            "fast_forward_ms": self.fast_forward_ms,
            "device_ms": self.device_ms,
            "coordinator_ms": None if self.device_ms is None else self.latency_ms - self.device_ms,
            "single_device": self.single_device,
            "single_device_ms": self.single_device_ms,
            "speedup": self.speedup,
            "max_rel_error": self.max_rel_error,
            "profile_seconds": self.profile.seconds,
            "profile_runs": self.profile.runs,
            "profile_bytes": self.profile.bytes,
            "overrun_ms": self.overrun_ms,
            "candidates": list(self.candidates),
            "reused_profiles": list(self.reused),
            "profiled_now": list(self.profiled),
        }


class LegionSession:
    """One network on one set of open devices; see the module docstring."""

    def __init__(
        self,
        handles: Sequence[DeviceHandle],
        graph: LayerGraph,
        x: torch.Tensor | None = None,
        *,
        repeats: int = 3,
        profile_repeats: int = 1,
        progress: Progress | None = None,
        cache: CostCache | None = None,
    ) -> None:
        check_devices(handles)
        most_rows = max(u.out_shape[2] for u in graph.units)
        if len(handles) > most_rows:
            raise ManipleError(
                f"{len(handles)} devices but the largest feature map of {graph.name!r} has "
                f"{most_rows} rows, so some devices would never get work; use at most "
                f"{most_rows} devices, or a larger input (--input-shape)"
            )
        self.handles = list(handles)
        self.by_name = {h.name: h for h in handles}
        self.graph = graph
        self.x = x if x is not None else reference_input(graph)
        self.cache = cache
        self.profiled: list[str] = []  # what this session measured (not read from a cache)
        self.repeats = repeats
        self.profile_repeats = profile_repeats
        self.progress = progress
        with torch.no_grad():
            self.reference = graph.module(self.x)
        self._speeds: SpeedProbe | None = None
        self._costs: LegionCosts | None = None
        self._fss: tuple[np.ndarray, ProfilingSpent] | None = None
        self._single: tuple[str, float, float] | None = None
        self._runs: dict[tuple[Any, ...], list[SpatialRun]] = {}

    @property
    def unit_heights(self) -> tuple[int, ...]:
        return tuple(u.out_shape[2] for u in self.graph.units)

    # -- profiling (fast-forward) ---------------------------------------------------------
    def speeds(self) -> SpeedProbe:
        if self._speeds is None:
            self._speeds = self._profile(
                "speeds",
                lambda c: c.speeds(),
                lambda: measure_speeds(self.handles, self.graph, self.x),
                lambda c, probe: c.put_speeds(probe),
                fast=True,
            )
        return self._speeds

    def costs(self) -> LegionCosts:
        if self._costs is None:
            weights = self.speeds().weights
            self._costs = self._profile(
                "costs",
                lambda c: c.costs(weights),
                lambda: self._sweep(profile_units),
                lambda c, costs: c.put_costs(costs),
            )
        return self._costs

    def _profile(
        self,
        name: str,
        read: Callable[[CostCache], Any],
        measure: Callable[[], Any],
        keep: Callable[[CostCache, Any], None],
        *,
        fast: bool = False,
    ) -> Any:
        """A profile read from the cache, or else measured (boards in fast-forward when
        `fast`; sweeps switch it themselves), noted in `profiled` and kept in the cache."""
        found = read(self.cache) if self.cache else None
        if found is not None:
            return found
        if fast:
            with fast_forward(self.handles):
                found = measure()
        else:
            found = measure()
        self.profiled.append(name)
        if self.cache:
            keep(self.cache, found)
        return found

    @property
    def reused(self) -> tuple[str, ...]:
        """What this session read from the profile store instead of measuring."""
        return tuple(self.cache.reused) if self.cache else ()

    def _costs_with_probe(self) -> LegionCosts:
        """Legion's cost tables with the speed probe counted in their profiling."""
        costs = self.costs()
        return replace(costs, spent=self.speeds().spent + costs.spent)

    def fss_costs(self) -> tuple[np.ndarray, ProfilingSpent]:
        if self._fss is None:
            weights = self.speeds().weights
            self._fss = self._profile(
                "fss",
                lambda c: c.fss(weights),
                lambda: self._sweep(measure_groups),
                lambda c, fss: c.put_fss(*fss, weights),
            )
        return self._fss

    def _sweep(self, profiler: Callable[..., Any]) -> Any:
        """Run a profiling sweep over the band weights with the boards in fast-forward."""
        weights = self.speeds().weights
        with fast_forward(self.handles):
            return profiler(
                self.handles,
                self.graph,
                self.x,
                weights,
                repeats=self.profile_repeats,
                progress=self.progress,
            )

    # -- running (real time) ----------------------------------------------------------------
    def run(self, plan: SpatialPlan) -> list[SpatialRun]:
        """`repeats` real-time runs of `plan` after one untimed warm-up run.

        Runs are kept per (devices, groups, bands): searches that pick the same plan (Legion
        and the Wild Card's base) share one measurement instead of drawing two samples.
        """
        key = (plan.devices, plan.flc, plan.bands)
        if key not in self._runs:
            runs = []
            for r in range(self.repeats + 1):
                result = run_spatial_plan(plan, self.by_name, self.graph, self.x)
                if r > 0:
                    runs.append(result)
            self._runs[key] = runs
        return self._runs[key]

    def fast_forward_ms(self, plan: SpatialPlan) -> float:
        """The same plan's latency on the other clock: boards in fast-forward, board time."""
        with fast_forward(self.handles):
            run = run_spatial_plan(plan, self.by_name, self.graph, self.x, run_tail=False)
        return run.device_ms

    def single(self, best: str | None = None) -> tuple[str, float, float]:
        """(fastest device, its measured real-time latency alone, its max relative error).

        The fastest device is the speed probe's, unless `best` names it (a saved plan run
        without profiling: the device with the largest share of its rows)."""
        if self._single is None:
            if best is None:
                speeds = self.speeds()
                best = speeds.devices[int(np.argmin(speeds.spatial_ms))]
            plan = plan_single(self.graph.name, best, self.unit_heights)
            runs = self.run(plan)
            err = max(relative_error(r.output, self.reference) for r in runs)
            self._single = (best, statistics.median(r.latency_ms for r in runs), err)
        return self._single

    # -- searches ---------------------------------------------------------------------------
    def plan(self, search: str) -> SpatialPlan:
        """The plan a search picks (no Wild Card real runs; see `measure`)."""
        if search not in SEARCHES:
            raise UnknownNameError("search", search, SEARCHES)
        heights, weights = self.unit_heights, self.speeds().weights
        name = self.graph.name
        if search == "single":
            best, _, _ = self.single()
            return plan_single(name, best, heights)
        if search == "fss":
            T, spent = self.fss_costs()
            devices = [h.name for h in self.handles]
            return plan_from_measured(
                T, devices, heights, weights, name, self.speeds().spent + spent
            )
        costs = self._costs_with_probe()
        if search == "legion-wildcard":
            return wildcard_plans(costs, heights, network=name)[0]
        return plan_spatial(costs, search, heights, network=name)

    def measure(self, search: str) -> SpatialResult:
        """Plan with `search`, run it for real, and compare with the fastest device alone."""
        best, single_ms, _ = self.single()
        candidates: list[dict[str, Any]] = []
        if search == "legion-wildcard":
            costs = self._costs_with_probe()
            base, merged = wildcard_plans(costs, self.unit_heights, network=self.graph.name)
            measured = [(base, self.run(base))]
            if merged is not None:
                measured.append((merged, self.run(merged)))
            for p, runs in measured:
                candidates.append(
                    {
                        "flc": [list(g) for g in p.flc],
                        "predicted_ms": p.predicted_ms,
                        "latency_ms": statistics.median(r.latency_ms for r in runs),
                    }
                )
            chosen = choose_faster(
                [(p.flc, c["latency_ms"]) for (p, _), c in zip(measured, candidates)]
            )
            plan, runs = next((p, r) for p, r in measured if p.flc == chosen)
            extra = sum(c["latency_ms"] for c in candidates) * (self.repeats + 1) / 1e3
            spent = plan.spent + ProfilingSpent(len(measured) * (self.repeats + 1), 0, extra)
            plan = replace(plan, spent=spent)
        else:
            plan = self.plan(search)
            runs = self.run(plan)
        return self._result(search, plan, runs, best, single_ms, candidates)

    def measure_plan(self, plan: SpatialPlan) -> SpatialResult:
        """Run a given (e.g. saved) plan for real, without profiling, against the device
        with the largest share of its rows alone; the plan must fit this network and these
        devices (`check_plan_fits`)."""
        check_plan_fits(plan, self.graph, [h.name for h in self.handles])
        shares = [
            sum(b - a for a, b in (g[d] for g in plan.bands)) for d in range(len(plan.devices))
        ]
        best, single_ms, _ = self.single(plan.devices[shares.index(max(shares))])
        return self._result(plan.search, plan, self.run(plan), best, single_ms, [])

    def _result(
        self,
        search: str,
        plan: SpatialPlan,
        runs: list[SpatialRun],
        best: str,
        single_ms: float,
        candidates: list[dict[str, Any]],
    ) -> SpatialResult:
        """The measured result of `plan`, after checking its output against one device's."""
        err = max(relative_error(r.output, self.reference) for r in runs)
        if err > 1e-4:
            raise ManipleError(
                f"{search} on {self.graph.name}: split output differs from the single-device "
                f"output by {err:.2e} of its scale (limit 1e-4); this is a bug, please report it"
            )
        return SpatialResult(
            network=self.graph.name,
            search=search,
            plan=plan,
            latencies_ms=tuple(r.latency_ms for r in runs),
            single_device=best,
            single_device_ms=single_ms,
            max_rel_error=err,
            profile=plan.spent,
            fast_forward_ms=self.fast_forward_ms(plan),
            device_ms=statistics.median(r.device_ms for r in runs),
            candidates=tuple(candidates),
            overrun_ms=max(r.overrun_ms for r in runs),
            reused=self.reused,
            profiled=tuple(self.profiled),
        )


def check_plan_fits(plan: SpatialPlan, graph: LayerGraph, devices: Sequence[str]) -> None:
    """Refuse, with the reason, a plan made for another network, input or device set."""
    plan.validate()
    if plan.network != graph.name:
        raise ManipleError(
            f"the plan is for network {plan.network!r}, not {graph.name!r}; make a plan for "
            f"{graph.name!r} with --save-plan, or run {plan.network!r}"
        )
    heights = tuple(u.out_shape[2] for u in graph.units)
    if plan.unit_heights != heights:
        raise ManipleError(
            f"the plan's units have {list(plan.unit_heights)} output rows but {graph.name!r} "
            f"at input {tuple(graph.input_shape)} has {list(heights)}: it was made for another "
            "input shape or model version; pass the --input-shape it was made for, or plan again"
        )
    if tuple(plan.devices) != tuple(devices):
        raise ManipleError(
            f"the plan is for devices {list(plan.devices)} but the devices open are "
            f"{list(devices)}; open the same devices in the same order, or plan again"
        )
