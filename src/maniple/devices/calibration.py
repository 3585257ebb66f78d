"""Calibration of emulated boards against this host, measured once and cached as JSON.

Why: an emulated board's time for a piece of work is its *host CPU time on one thread*
times a factor. For each reference network the factor is `board_ms / host_ms`, where
host_ms is that network's batch-1 forward on this host with one intra-op thread, timed
with time.thread_time (CPU time of the computing thread, which does not grow when other
processes contend for the cores). A network without a published board number uses the
geometric mean of the reference factors.

The measurement runs in fresh one-thread `Worker` actors on this node: the same kind of
process, thread and code path an emulated board computes in (a plain subprocess runs
the same network ~7% slower here, so calibrating there would make boards look fast).
It is cached in the user cache dir (or $MANIPLE_CACHE_DIR) as versioned JSON keyed by
host and torch version; a file lock keeps two processes from measuring at once.
`python -m maniple.devices.calibration --force` measures again.

Each host time is the fastest of 10 runs (after 2 warm-ups) in a worker, and the median
of that over 3 fresh workers. The fastest run, because other processes on the host can
only make a run slower (they pollute caches and memory bandwidth even though
thread_time leaves out the time they run), so a board measured under load looks slower,
never faster, than the board it emulates; boards likewise take each piece of work's
fastest run (see emulated.py). The median over workers, because processes differ in a
network's speed by a few % (VGG-16) to 25% (MobileNet: memory placement), and a board
is a typical process, not the luckiest one. The workers run with the same malloc
settings as the boards (ray_backend.STEADY_MALLOC_ENV).

Known limit: the host's speed drifts (boost clocks, other processes on a shared
machine); VGG-16 on one thread here has measured anywhere from 164 to 176 ms at quiet
times, so emulated times carry a few % of that drift. Re-measure when the host changes.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import statistics
import sys

from maniple.devices.calibration_record import (
    CACHE_FILE,
    Calibration,
    cache_dir,
    host_key,
    locked,
    read_cache,
)
from maniple.devices.emulated import DEFAULT_DILATION, BoardClock
from maniple.devices.presets import REFERENCE_NETWORKS, BoardSpec
from maniple.errors import ManipleError

_WARMUP = 2
_REPEATS = 10
_PROCESSES = 3


def _measure_in_workers(processes: int = _PROCESSES) -> Calibration:
    """Each reference network, batch 1, in `processes` fresh one-thread Worker actors on
    this node, one after another: the fastest run in each worker, then the median over
    the workers."""
    import torch

    import maniple.zoo as zoo
    from maniple.devices.model_spec import ModelSpec
    from maniple.devices.names import DeviceSpec
    from maniple.devices.ray_backend import (
        STEADY_MALLOC_ENV,
        RayHandle,
        ensure_ray,
        release_ray,
        this_node_id,
    )

    session = ensure_ray()
    try:
        node = this_node_id()
        fastest: dict[str, list[float]] = {name: [] for name in REFERENCE_NETWORKS}
        for p in range(processes):
            spec = DeviceSpec("ray", node=node, target="cpu", threads=1, label=f"calibration-{p}")
            handle = RayHandle(spec, threads=1, timeout_s=120.0, env=STEADY_MALLOC_ENV)
            try:
                for name in REFERENCE_NETWORKS:
                    handle.load(ModelSpec(name, seed=0))
                    gen = torch.Generator().manual_seed(0)
                    x = torch.randn((1, *zoo.input_shape(name)), generator=gen)
                    runs = [handle.run_batch(x)[1].cpu_ms for _ in range(_WARMUP + _REPEATS)]
                    fastest[name].append(min(runs[_WARMUP:]))
            finally:
                handle.close()
    finally:
        release_ray(session)
    return Calibration(
        host=host_key(),
        host_ms={name: float(statistics.median(ms)) for name, ms in fastest.items()},
        measured_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        repeats=_REPEATS * processes,
    )


def load_calibration(*, force: bool = False) -> Calibration:
    """The calibration for this host: from the cache, else measured once (a few seconds)
    in a subprocess and cached. `force` re-measures."""
    path = cache_dir() / CACHE_FILE
    key = host_key()
    with locked(path.with_suffix(".lock")):
        data = read_cache(path)
        record = data["entries"].get(key)
        if record is not None and not force:
            try:
                return Calibration.from_dict(record)
            except ManipleError:
                pass  # a corrupt entry is measured again
        calibration = _measure_in_workers()
        data["entries"][key] = calibration.to_dict()
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
        return calibration


def board_clock(
    board: BoardSpec, *, dilation: float | None = None, fast_forward: bool = False
) -> BoardClock:
    """The clock for `board` on this host, calibrating first if this host has no cached
    calibration (under a minute, once)."""
    return BoardClock(
        board,
        load_calibration(),
        DEFAULT_DILATION if dilation is None else float(dilation),
        fast_forward,
    )


def main() -> None:
    """`python -m maniple.devices.calibration [--force]`: print this host's calibration."""
    sys.stdout.write(
        json.dumps(load_calibration(force="--force" in sys.argv).to_dict(), indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
