"""`infer`: profile, plan, run and check a batch split end to end (what `maniple infer` does).

Why one function: the CLI, the benchmarks and a Python user want the same sequence with
the same honesty rules: every device profiled (or its stored table reused), the plan
run for real `repeats` times interleaved with the best single unit alone on the same
batch (so the speedup compares like with like), medians reported, and the split's output
compared with the single unit's.

One policy sits on top of the planner: a split predicted to gain less than `min_gain`
(default 3%) over the best single unit is not worth its unmodelled costs (a CPU busy
beside a GPU slows the GPU's own host thread; every extra unit adds a call), so the best
single unit runs alone instead, and the result says so. `equal` and `single` are
baselines and are always run as planned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from rich.console import Console

from maniple.batch.baseline import REFERENCE_IMAGES, TorchBaseline, fp32_reference, torch_baseline
from maniple.batch.perf_table import PerfTable
from maniple.batch.plan import BatchPlan
from maniple.batch.planners import PLANNERS, plan_batch
from maniple.batch.profile_cluster import DeviceProfile, profile_sizes, profiled_cluster
from maniple.batch.run import BatchRun, max_rel_error, median_run, run_interleaved
from maniple.batch.store import ProfileStore
from maniple.cluster import ClusterSpec
from maniple.devices import ModelSpec
from maniple.devices.names import DeviceSpec
from maniple.errors import ManipleError, UnknownNameError
from maniple.precision import (
    DEFAULT_MODE,
    ExecMode,
    check_tf32_agree,
    loosest_tolerance,
    set_tf32,
    tf32_enabled,
)
from maniple.spread import check_repeats, speedup_verdict, spread_json

DEFAULT_MIN_GAIN = 0.03
TOLERANCE = 1e-4  # max abs error relative to the output's scale (fp32), see DESIGN.md
BASELINES = (None, "torch")


@dataclass(frozen=True)
class InferOptions:
    """What to run and how carefully. `sizes` None: the seed's sizes up to the first one
    at or above the batch (see profile_sizes)."""

    network: str
    batch: int
    planner: str = "greedy"
    repeats: int = 3
    warmup: int = 1
    seed: int = 0
    input_shape: tuple[int, int, int] | None = None
    sizes: Sequence[int] | None = None
    profile_repeats: int = 3
    profile_budget_s: float | None = None
    min_gain: float = DEFAULT_MIN_GAIN
    mode: ExecMode = DEFAULT_MODE
    baseline: str | None = None

    def validate(self) -> InferOptions:
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ManipleError(
                f"--batch must be a positive number of images, got {self.batch!r}; e.g. --batch 100"
            )
        if self.planner not in PLANNERS:
            raise UnknownNameError("planner", self.planner, PLANNERS)
        check_repeats(self.repeats, "--repeats")
        check_repeats(self.profile_repeats, "--profile-repeats")
        if self.warmup < 0:
            raise ManipleError(f"warm-up runs must be >= 0, got {self.warmup}")
        if self.baseline not in BASELINES:
            raise UnknownNameError("baseline", str(self.baseline), [b for b in BASELINES if b])
        if not 0 <= self.min_gain < 1:
            raise ManipleError(
                f"--min-gain is a fraction in [0, 1) (0.03 = 3%), got {self.min_gain!r}"
            )
        return self


@dataclass(frozen=True)
class InferResult:
    """Everything `infer` measured. `plan` is what ran; `planned` is what the planner gave
    (they differ only when `fallback` says why). Runs are the timed repeats; `run` and
    `single` are their medians (by measured makespan)."""

    options: InferOptions
    table: PerfTable
    profiles: tuple[DeviceProfile, ...]
    planned: BatchPlan
    plan: BatchPlan
    fallback: str | None
    runs: tuple[BatchRun, ...]
    single_runs: tuple[BatchRun, ...]
    max_rel_error: float
    tolerance: float = TOLERANCE
    modes: dict[str, ExecMode] | None = None
    error_vs_fp32: float | None = None
    build_ms: dict[str, dict[str, float]] | None = None
    torch_baseline: TorchBaseline | None = None

    @property
    def run(self) -> BatchRun:
        return median_run(self.runs)

    @property
    def single(self) -> BatchRun:
        return median_run(self.single_runs)

    @property
    def single_device(self) -> str:
        return self.single.plan.best_single_device

    @property
    def same_as_single(self) -> bool:
        """Whether the plan that ran is the baseline itself (all images on the best unit)."""
        shares = {d: n for d, n in self.plan.shares.items() if n}
        return shares == {d: n for d, n in self.single.plan.shares.items() if n}

    @property
    def speedup(self) -> float:
        """Measured: the best single unit alone over the split, same batch, same process;
        exactly 1.0 when the plan is that unit alone (any other figure would be noise)."""
        if self.same_as_single:
            return 1.0
        return self.single.measured_ms / self.run.measured_ms

    @property
    def speedup_verdict(self) -> str:
        """'same plan', 'within noise', 'faster' or 'slower' (maniple.spread)."""
        return speedup_verdict(
            [r.measured_ms for r in self.single_runs],
            [r.measured_ms for r in self.runs],
            same_plan=self.same_as_single,
        )

    @property
    def ideal_ms(self) -> float:
        """The batch over the units' summed throughput, each unit's throughput taken from
        its table at the whole batch, its own I/O included (perfect balance, nothing
        spent on splitting)."""
        return ideal_ms(self.table, self.options.batch)

    @property
    def fraction_of_ideal(self) -> float:
        return self.ideal_ms / self.run.measured_ms

    @property
    def ok(self) -> bool:
        return self.max_rel_error <= self.tolerance

    def to_json(self) -> dict[str, Any]:
        run, single = self.run, self.single
        return {
            "network": self.table.network,
            "planner": self.plan.planner,
            "batch": self.plan.batch,
            "shares": dict(self.plan.shares),
            "predicted_ms": dict(self.plan.predicted_ms),
            "makespan_ms": self.plan.makespan_ms,
            "measured_ms": run.measured_ms,
            "measured_by_device_ms": run.measured_by_device,
            "runs_ms": [r.measured_ms for r in self.runs],
            "wall_ms": run.wall_ms,
            "single_device": self.single_device,
            "single_device_predicted_ms": single.plan.makespan_ms,
            "single_device_ms": single.measured_ms,
            "single_runs_ms": [r.measured_ms for r in self.single_runs],
            "speedup": self.speedup,
            "speedup_verdict": self.speedup_verdict,
            "runs_spread_ms": spread_json([r.measured_ms for r in self.runs]),
            "single_runs_spread_ms": spread_json([r.measured_ms for r in self.single_runs]),
            "predicted_speedup": self.plan.predicted_speedup,
            "ideal_ms": self.ideal_ms,
            "fraction_of_ideal": self.fraction_of_ideal,
            "max_rel_error": self.max_rel_error,
            "tolerance": self.tolerance,
            "outputs_equal": self.ok,
            "precision": {d: m.to_json() for d, m in (self.modes or {}).items()},
            "error_vs_fp32": self.error_vs_fp32,
            "error_vs_fp32_images": REFERENCE_IMAGES if self.error_vs_fp32 is not None else 0,
            "build_ms": self.build_ms or {},
            "torch_baseline": self.torch_baseline.to_json() if self.torch_baseline else None,
            "speedup_over_torch": (
                self.torch_baseline.median_ms / self.run.measured_ms
                if self.torch_baseline
                else None
            ),
            "fallback": self.fallback,
            "tf32": tf32_enabled(),
            "planned_shares": dict(self.planned.shares),
            "repeats": self.options.repeats,
            "devices": {
                d: {"kind": self.table.kinds.get(d), "host": self.table.hosts.get(d)}
                for d in self.table.devices
            },
            "profile": [p.to_json() for p in self.profiles],
            "timeline": [u.to_json() for u in run.units],
        }


def ideal_ms(table: PerfTable, batch: int) -> float:
    """`batch` over the summed throughput of the table's devices at `batch` images each."""
    times = [table.estimate_ms(d, batch) for d in table.devices]
    rates = [batch / ms for ms in times if 0 < ms < math.inf]
    if not rates:
        raise ManipleError(f"no device of the {table.network} table can hold {batch} images")
    return batch / sum(rates)


def choose_plan(
    table: PerfTable, batch: int, planner: str, min_gain: float = DEFAULT_MIN_GAIN
) -> tuple[BatchPlan, BatchPlan, str | None]:
    """(plan to run, plan the planner gave, why they differ or None); see the module
    docstring for the minimum-gain rule."""
    planned = plan_batch(table, batch, planner)
    if planner in ("equal", "single") or len(planned.devices_used) < 2:
        return planned, planned, None
    if planned.predicted_speedup >= 1.0 + min_gain:
        return planned, planned, None
    single = plan_batch(table, batch, "single")
    why = (
        f"the {planner} split is predicted only {planned.predicted_speedup:.3f}x faster than "
        f"{single.best_single_device} alone (below the {min_gain:.0%} minimum gain), so "
        f"{single.best_single_device} runs the whole batch; --min-gain 0 runs the split"
    )
    return replace(single, planner=planner), planned, why


def random_batch(batch: int, input_shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    """The run's input: `batch` images from a seeded generator (the same in every run)."""
    return torch.randn((batch, *input_shape), generator=torch.Generator().manual_seed(seed))


def model_input_shape(model: ModelSpec) -> tuple[int, int, int]:
    """The (C, H, W) of one input: given, the zoo's, or from building the model here."""
    if model.input_shape is not None:
        return model.input_shape
    import maniple.zoo as zoo

    if model.network in zoo.names():
        return tuple(zoo.input_shape(model.network))  # type: ignore[return-value]
    return model.build().input_shape


def infer(
    cluster: ClusterSpec,
    store: ProfileStore,
    options: InferOptions,
    *,
    progress: bool = True,
    console: Console | None = None,
) -> InferResult:
    """Open the devices of `cluster`, profile what the store lacks, plan, run and check.
    Every device computes in `options.mode` (unless its cluster entry names its own
    precision); the split is checked against the single unit at the loosest tolerance of
    the precisions that ran, and its error against fp32 is reported beside it."""
    options.validate()
    cluster = cluster.with_mode(options.mode)
    model = ModelSpec(options.network, seed=options.seed, input_shape=options.input_shape)
    shape = model_input_shape(model)
    sizes = options.sizes if options.sizes is not None else profile_sizes(options.batch)
    from maniple.devices.host_limits import check_infer  # limits before any device opens

    check_infer(cluster.devices, model, shape, options.batch, sizes, cluster.ray_address)
    modes = {d.name: d.exec_mode for d in cluster.devices}
    local_gpus = [d for d in cluster.devices if d.is_local and d.kind == "cuda"]
    if local_gpus:
        set_tf32(check_tf32_agree((d.name, d.exec_mode) for d in local_gpus))
    x = random_batch(options.batch, shape, options.seed)
    if local_gpus and torch.cuda.is_available():
        x = x.pin_memory()  # so a GPU's uploads are asynchronous and overlap its compute
    with profiled_cluster(
        cluster,
        model,
        shape,
        store,
        sizes,
        repeats=options.profile_repeats,
        budget_s=options.profile_budget_s,
        progress=progress,
        console=console,
    ) as (devices, table, profiles):
        plan, planned, fallback = choose_plan(
            table, options.batch, options.planner, options.min_gain
        )
        single = plan_batch(table, options.batch, "single")
        runs = run_interleaved(
            {"split": plan, "single": single},
            devices,
            x,
            repeats=options.repeats,
            warmup=options.warmup,
        )
        build_ms = {h.name: h.build_times() for h in devices}
        baseline = None
        if options.baseline == "torch":
            where = baseline_device(cluster, single.best_single_device, table, options.batch)
            baseline = torch_baseline(
                model, where.torch_device, where.exec_mode, x,
                repeats=options.repeats, warmup=options.warmup,
            )  # fmt: skip
    split_runs, single_runs = runs["split"], runs["single"]
    used = set(plan.devices_used) | set(single.devices_used)
    tolerance = loosest_tolerance(modes[d] for d in used)
    error = max_rel_error(median_run(split_runs).output, median_run(single_runs).output)
    vs_fp32 = None
    if any(not modes[d].is_default for d in used):
        ref_device = "cuda" if local_gpus and torch.cuda.is_available() else "cpu"
        reference = fp32_reference(model, x[:REFERENCE_IMAGES], ref_device)
        vs_fp32 = max_rel_error(median_run(split_runs).output[:REFERENCE_IMAGES], reference)
    return InferResult(
        options,
        table,
        profiles,
        planned,
        plan,
        fallback,
        tuple(split_runs),
        tuple(single_runs),
        error,
        tolerance,
        {d: modes[d] for d in table.devices if d in modes},
        vs_fp32,
        {d: b for d, b in build_ms.items() if b},
        baseline,
    )


def baseline_device(cluster: ClusterSpec, best: str, table: PerfTable, batch: int) -> DeviceSpec:
    """Where plain PyTorch runs: the best single unit if it is a device of this process,
    else the fastest local GPU of the run, else its local CPU (plain PyTorch cannot run on a
    remote worker from here)."""
    local = [d for d in cluster.devices if d.is_local]
    by_name = {d.name: d for d in local}
    if best in by_name:
        return by_name[best]
    gpus = [d for d in local if d.kind == "cuda"]
    pool = gpus or local
    if not pool:
        raise ManipleError(
            "--baseline torch runs plain PyTorch on a device of this process, but every "
            "device of this run is remote or emulated; add cpu or cuda:N to --devices"
        )
    return min(pool, key=lambda d: table.estimate_ms(d.name, batch))
