"""Text reports of a batch split: the per-unit table and the summary lines under it.

Why separate from the runtime: the same numbers go to a terminal (rich), to JSON (the
runtime's `to_json`) and to the markdown files under docs/results; the runtime measures,
this module only words it.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from maniple.batch.baseline import REFERENCE_IMAGES
from maniple.batch.infer import InferResult
from maniple.batch.measure_io import IoMeasurement
from maniple.spread import Spread, verdict_note


def unit_table(result: InferResult) -> Table:
    """One row per unit: its share, predicted and measured time (median run)."""
    run = result.run
    grid = Table(
        title=f"{result.table.network}: batch {result.plan.batch}, planner {result.plan.planner}",
        title_justify="left",
    )
    for col in ("device", "images", "predicted ms", "measured ms", "of which overhead"):
        grid.add_column(col, justify="left" if col == "device" else "right")
    for u in run.units:
        measured = f"{u.elapsed_ms:.1f}" if u.called else "-"
        overhead = f"{u.overhead_ms:.1f}" if u.called else "-"
        grid.add_row(u.device, str(u.images), f"{u.predicted_ms:.1f}", measured, overhead)
    return grid


def summary_lines(result: InferResult) -> list[str]:
    """The makespan, the speedup over the best single unit, the fraction of the ideal,
    the output check, and anything the reader must know to trust the numbers."""
    run, single = result.run, result.single
    split_spread = Spread.of([r.measured_ms for r in result.runs])
    single_spread = Spread.of([r.measured_ms for r in result.single_runs])
    lines = [
        f"makespan: predicted {result.plan.makespan_ms:.1f} ms, measured {run.measured_ms:.1f} ms "
        f"({len(result.runs)} runs: {split_spread})",
        f"best single unit: {result.single_device} alone, predicted "
        f"{single.plan.makespan_ms:.1f} ms, measured {single.measured_ms:.1f} ms "
        f"({len(result.single_runs)} runs: {single_spread})",
        f"speedup over {result.single_device} alone: {result.speedup:.2f}x measured "
        f"({verdict_note(result.speedup_verdict, result.single_device)}), "
        f"{result.plan.predicted_speedup:.2f}x predicted",
        f"ideal (batch over the units' summed throughput): {result.ideal_ms:.1f} ms; "
        f"this run reaches {result.fraction_of_ideal:.0%} of it",
        f"output: max relative error {result.max_rel_error:.1e} against "
        f"{result.single_device} alone (tolerance {result.tolerance:.0e}): "
        + ("equal" if result.ok else "NOT EQUAL"),
    ]
    modes = sorted({m.describe() for m in (result.modes or {}).values()})
    if modes and modes != ["fp32"]:
        lines.append(f"precision: {', '.join(modes)}")
    if result.error_vs_fp32 is not None:
        lines.append(
            f"error against strict fp32 (first {REFERENCE_IMAGES} images): "
            f"{result.error_vs_fp32:.1e} of the output's scale"
        )
    base = result.torch_baseline
    if base is not None:
        where = "pinned on the host" if base.device.startswith("cuda") else "on the host"
        lines.append(
            f"plain PyTorch on {base.device} ({base.mode.describe()}, input {where}): "
            f"{base.median_ms:.1f} ms ({len(base.runs_ms)} runs: "
            f"{Spread.of(list(base.runs_ms))}); speedup over it: split "
            f"{base.median_ms / run.measured_ms:.2f}x, {result.single_device} alone "
            f"{base.median_ms / single.measured_ms:.2f}x"
        )
    for device, shapes in (result.build_ms or {}).items():
        built = ", ".join(f"{shape} {ms / 1e3:.1f} s" for shape, ms in shapes.items())
        lines.append(f"compiled on {device} (not in the timed runs): {built}")
    if result.fallback:
        lines.append(f"note: {result.fallback}")
    if any(u.timing is not None and u.timing.emulated for u in run.units):
        lines.append(
            "note: emulated boards report emulated time (dilated wall time / dilation); "
            "host and Ray overhead are counted undivided"
        )
    for p in result.profiles:
        if p.measured_now:
            sizes = ", ".join(map(str, p.measured_now))
            lines.append(f"profiled {p.device}: sizes {sizes} in {p.seconds:.1f} s")
        if p.stopped:
            lines.append(f"profiling {p.device} stopped early: {p.stopped}")
    return lines


def io_table(device: str, network: str, results: Sequence[IoMeasurement]) -> Table:
    """measure-io's table: per batch size, bytes and ms in each direction."""
    grid = Table(title=f"{network} I/O on {device} (median ms)", title_justify="left")
    for col in ("batch", "input MB", "to device", "output MB", "back", "total"):
        grid.add_column(col, justify="right")
    for m in results:
        grid.add_row(
            str(m.batch),
            f"{m.input_bytes / 1e6:.2f}",
            f"{m.to_device_ms:.3f}",
            f"{m.output_bytes / 1e6:.3f}",
            f"{m.from_device_ms:.3f}",
            f"{m.total_ms:.3f}",
        )
    return grid
