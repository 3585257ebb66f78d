"""Legion end to end on a set of devices: measure, plan with any search, run, compare.

A `LegionSession` holds one network on one set of open devices and caches what several
searches share (device speeds, single-unit costs, FSS's measured group costs), so a
benchmark can compare every search on the same profile. Profiling runs with emulated
boards in fast-forward (board time added up, no sleeping); every latency reported comes
from a real-time run in which the boards really work at once.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from maniple.devices.handles import DeviceHandle
from maniple.errors import ManipleError, UnknownNameError
from maniple.graph import LayerGraph
from maniple.precision import loosest_tolerance
from maniple.spatial.cache import CostCache
from maniple.spatial.costs import LegionCosts, ProfilingSpent
from maniple.spatial.flc import choose_faster
from maniple.spatial.measured import (
    SpatialResult,
    check_plan_fits,
    fast_forward,
    output_error,
    reference_input,
)
from maniple.spatial.peer_costs import PeerLinks, peer_wildcard, plan_peer
from maniple.spatial.peer_setup import RUNTIME_CHOICES, peer_links, run_plan
from maniple.spatial.plan import SEARCHES, SpatialPlan
from maniple.spatial.planners import plan_from_measured, plan_single, plan_spatial, wildcard_plans
from maniple.spatial.profiler import (
    SpeedProbe,
    check_devices,
    measure_groups,
    measure_speeds,
    profile_units,
)
from maniple.spatial.runtimes.result import SpatialRun
from maniple.tiling.verify import relative_error

Progress = Callable[[str, int, int], None]


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
        compress: str = "auto",
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
            self.reference = graph.module(self.x)  # strict fp32, on this host
        self.modes = {h.name: h.spec.exec_mode for h in handles}
        self.strict = all(m.precision == "fp32" for m in self.modes.values())
        self.tolerance = loosest_tolerance(self.modes.values())
        self._single_output: torch.Tensor | None = None
        self._speeds: SpeedProbe | None = None
        self._costs: LegionCosts | None = None
        self._fss: tuple[np.ndarray, ProfilingSpent] | None = None
        self._single: tuple[str, float, float] | None = None
        self._single_runs_ms: tuple[float, ...] = ()
        self._runs: dict[tuple[Any, ...], list[SpatialRun]] = {}
        self.compress = compress
        self._peer: tuple[PeerLinks, bool] | None = None

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
        key = (plan.runtime, plan.devices, plan.flc, plan.bands)
        if key not in self._runs:
            runs = []
            for r in range(self.repeats + 1):
                result = run_plan(
                    plan, self.by_name, self.graph, self.x, compress=self._compress(plan)
                )
                if r > 0:
                    runs.append(result)
            self._runs[key] = runs
        return self._runs[key]

    def fast_forward_ms(self, plan: SpatialPlan) -> float:
        """The same plan's latency on the other clock: boards in fast-forward, board time."""
        with fast_forward(self.handles):
            run = run_plan(
                plan,
                self.by_name,
                self.graph,
                self.x,
                compress=self._compress(plan),
                run_tail=False,
            )
        return run.device_ms

    def _compress(self, plan: SpatialPlan) -> bool:
        """Whether a plan's pieces are encoded (the peer runtime, as `--compress` says)."""
        return plan.runtime == "peer" and len(plan.devices) > 1 and self.peer()[1]

    def single(self, best: str | None = None) -> tuple[str, float, float]:
        """(fastest device, its measured real-time latency alone, its max relative error);
        the fastest is the speed probe's, unless `best` names it (a saved plan run without
        profiling: the device with the largest share of its rows)."""
        if self._single is None:
            if best is None:
                speeds = self.speeds()
                best = speeds.devices[int(np.argmin(speeds.spatial_ms))]
            plan = plan_single(self.graph.name, best, self.unit_heights)
            runs = self.run(plan)
            err = max(relative_error(r.output, self.reference) for r in runs)
            self._single_output = None if self.strict else runs[0].output
            self._single = (best, statistics.median(r.latency_ms for r in runs), err)
            self._single_runs_ms = tuple(r.latency_ms for r in runs)
        return self._single

    # -- searches ---------------------------------------------------------------------------
    def peer(self) -> tuple[PeerLinks, bool]:
        """The peer predictor's links and overhead, and whether pieces are encoded."""
        if self._peer is None:
            weights = self.speeds().weights
            self._peer = peer_links(self.handles, self.graph, self.x, weights, self.compress)
        return self._peer

    def plan(self, search: str, runtime: str = "star") -> SpatialPlan:
        """The plan a search picks for a runtime (`auto`: the one predicted faster); no Wild
        Card real runs (see `measure`)."""
        if search not in SEARCHES:
            raise UnknownNameError("search", search, SEARCHES)
        if runtime not in RUNTIME_CHOICES:
            raise UnknownNameError("runtime", runtime, RUNTIME_CHOICES)
        heights, weights = self.unit_heights, self.speeds().weights
        name = self.graph.name
        if search == "single":
            best, _, _ = self.single()
            return plan_single(name, best, heights)
        if runtime == "auto":
            if search == "fss":
                return self.plan(search, "star")
            plans = [self.plan(search, r) for r in ("star", "peer")]
            return min(plans, key=lambda p: p.predicted_ms or 0.0)
        if search == "fss":
            if runtime == "peer":
                raise ManipleError(
                    "fss measures star groups only; use --runtime star with --search fss, "
                    "or legion-wildcard with the peer runtime"
                )
            T, spent = self.fss_costs()
            devices = [h.name for h in self.handles]
            return plan_from_measured(
                T, devices, heights, weights, name, self.speeds().spent + spent
            )
        costs = self._costs_with_probe()
        if runtime == "peer":
            return plan_peer(costs, self.graph, self.peer()[0], search, name)
        if search == "legion-wildcard":
            return wildcard_plans(costs, heights, network=name)[0]
        return plan_spatial(costs, search, heights, network=name)

    def _wildcard(self, runtime: str) -> list[SpatialPlan]:
        costs = self._costs_with_probe()
        if runtime == "auto":
            runtime = self.plan("legion-wildcard", "auto").runtime
        if runtime == "peer":
            pair = peer_wildcard(costs, self.graph, self.peer()[0], self.graph.name)
        else:
            pair = wildcard_plans(costs, self.unit_heights, network=self.graph.name)
        return [p for p in pair if p is not None]

    def measure(
        self, search: str, runtime: str = "star", min_gain: float | None = 0.0
    ) -> SpatialResult:
        """Plan with `search` for `runtime`, run it for real, and compare with the fastest
        device alone. A split not predicted faster than that device by `min_gain` (a
        fraction) is not run: the device runs alone, and `choice` says why. `min_gain` None
        runs the split whatever its prediction (the study's reproduction measures them all)."""
        best, single_ms, _ = self.single()
        candidates: list[dict[str, Any]] = []
        if search == "legion-wildcard":
            measured = [(p, self.run(p)) for p in self._wildcard(runtime)]
            for p, runs in measured:
                candidates.append(
                    {
                        "flc": [list(g) for g in p.flc],
                        "runtime": p.runtime,
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
            plan = self.plan(search, runtime)
            runs = self.run(plan)
        choice = f"{plan.runtime} runtime, {search}"
        predicted = plan.predicted_ms
        # The Wild Card ran its candidates for real: judge them by what they measured
        # against the device alone, measured in this session, not by the predictions.
        split_ms, alone, how = (
            (statistics.median(r.latency_ms for r in runs), single_ms, "measured")
            if candidates
            else (predicted, None, "predicted")
        )
        if (
            min_gain is not None
            and search != "single"
            and split_ms is not None
            and split_ms * (1 + min_gain)
            > (alone := alone if alone is not None else self._alone_predicted(plan.runtime))
        ):
            choice = (
                f"{best} alone: the {plan.runtime} split {how} {split_ms:.1f} ms "
                f"against {alone:.1f} ms for {best} (the split must gain {min_gain:.0%}); "
                "--min-gain 0 and --search single compare them"
            )
            plan = replace(plan_single(self.graph.name, best, self.unit_heights), spent=plan.spent)
            runs = self.run(plan)
        return replace(self._result(search, plan, runs, best, single_ms, candidates), choice=choice)

    def _alone_predicted(self, runtime: str) -> float:
        """The fastest device's predicted time alone, with the real overheads the split is
        predicted with for one group (star: dispatch; peer: scatter and gather)."""
        links = self.peer()[0] if runtime == "peer" else None
        extra = links.scatter_ms + links.gather_ms if links else self.costs().dispatch_ms
        return float(min(self.speeds().spatial_ms)) + extra

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
        self.single(best)  # cached; at bf16/fp16 the split is held to its output
        outputs, what = [r.output for r in runs], f"{search} on {self.graph.name}"
        err, vs_fp32 = output_error(
            outputs, self.reference, self._single_output, self.tolerance, what
        )
        return SpatialResult(
            network=self.graph.name,
            search=search,
            plan=plan,
            latencies_ms=tuple(r.latency_ms for r in runs),
            single_device=best,
            single_device_ms=single_ms,
            single_latencies_ms=self._single_runs_ms,
            max_rel_error=err,
            tolerance=self.tolerance,
            error_vs_fp32=vs_fp32,
            precision={d: m.describe() for d, m in self.modes.items()},
            profile=plan.spent,
            fast_forward_ms=self.fast_forward_ms(plan),
            device_ms=statistics.median(r.device_ms for r in runs),
            candidates=tuple(candidates),
            overrun_ms=max(r.overrun_ms for r in runs),
            reused=self.reused,
            profiled=tuple(self.profiled),
            bytes_through_coordinator=int(
                statistics.median(r.bytes_through_coordinator for r in runs)
            ),
            bytes_between_devices=int(statistics.median(r.bytes_between_devices for r in runs)),
            compression_ratio=statistics.median(r.compression_ratio for r in runs),
        )
