"""Profiling one device's batch table: time each seed batch size, keep it in the store.

Mirrors the study's profiler: batch sizes in increasing order, resuming after the largest
size already stored, stopping at the first size the device cannot hold. Unlike the study it
warms up, repeats and takes the median (one run is noisy on a shared host), records the
memory limit instead of silently stopping, and writes each size as soon as it is measured
so that an interrupted run loses nothing.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from maniple.batch.errors import DeviceOutOfMemory
from maniple.batch.perf_table import SEED_BATCHES, PerfTable
from maniple.batch.store import DeviceKey, ProfileStore
from maniple.errors import ManipleError


class BatchRunner(Protocol):
    """Runs the network on one device; all the profiler needs from a device."""

    def run(self, batch: int) -> tuple[float, float]:
        """Time one inference of `batch` images: (exec_ms, io_ms), io being host<->device
        transfers. Raises `DeviceOutOfMemory` when the device cannot hold the batch."""
        ...


def profile_batch_table(
    runner: BatchRunner,
    device_id: DeviceKey,
    network: str,
    store: ProfileStore,
    batches: Sequence[int] = SEED_BATCHES,
    warmup: int = 1,
    repeats: int = 3,
    progress: bool = True,
    console: Console | None = None,
) -> PerfTable:
    """Measure the batch sizes of `batches` not yet in `store` and return the device's table.

    Sizes up to the largest already stored are skipped (resume), as are sizes above a
    recorded memory limit. At the first `DeviceOutOfMemory` the size below it is recorded
    as the device's limit and profiling stops, saying so. Each size gets `warmup` untimed
    runs and the median of `repeats` timed runs (exec and io separately).
    """
    if warmup < 0 or repeats < 1:
        raise ManipleError(
            f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}"
        )
    sizes = sorted(set(batches))
    if not sizes or sizes[0] < 1:
        raise ManipleError(f"batch sizes to profile must be positive integers, got {list(batches)}")
    out = console or Console(stderr=True)
    done = store.largest_batch_measured(device_id, network)
    limit = store.limit(device_id, network)
    todo = [b for b in sizes if b > done and (limit is None or b <= limit)]
    if done and progress:
        out.print(f"{device_id}, {network}: sizes up to {done} already measured; resuming")
    if limit is not None and any(b > limit for b in sizes) and progress:
        out.print(f"{device_id}, {network}: skipping sizes above its recorded limit {limit}")

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("batch {task.fields[batch]}"),
        TimeElapsedColumn(),
        console=out,
        disable=not progress,
        transient=False,
    )
    with bar:
        task = bar.add_task(f"{device_id.name} {network}", total=len(todo), batch="-")
        for b in todo:
            bar.update(task, batch=b)
            try:
                exec_ms, io_ms = _measure(runner, b, warmup, repeats)
            except DeviceOutOfMemory as exc:
                store.set_limit(device_id, network, b - 1)
                out.print(
                    f"[yellow]{device_id} ran out of memory at batch {b} for {network}; "
                    f"recorded {b - 1} as its limit and stopped profiling it[/]"
                    + (f" ({exc.detail})" if exc.detail else "")
                )
                break
            store.put_batch_entry(device_id, network, b, exec_ms, io_ms, repeats=repeats)
            bar.advance(task)
    if store.largest_batch_measured(device_id, network) == 0:
        raise ManipleError(
            f"{device_id} could not run even batch {sizes[0]} of {network} (out of memory); "
            "nothing to plan with on it: leave it out of --device, or free memory on it"
        )
    return store.perf_table(network, [device_id])


def _measure(runner: BatchRunner, batch: int, warmup: int, repeats: int) -> tuple[float, float]:
    """Median (exec_ms, io_ms) of `repeats` runs after `warmup` untimed ones."""
    for _ in range(warmup):
        runner.run(batch)
    runs = [runner.run(batch) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
