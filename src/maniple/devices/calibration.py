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

import contextlib
import datetime as _dt
import fcntl
import json
import math
import os
import platform
import socket
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maniple.devices.presets import FIREFLY_MS, REFERENCE_NETWORKS
from maniple.errors import ManipleError

CALIBRATION_VERSION = 8
_CACHE_FILE = f"emulation-calibration-v{CALIBRATION_VERSION}.json"
_WARMUP = 2
_REPEATS = 10
_PROCESSES = 3


def cache_dir() -> Path:
    """$MANIPLE_CACHE_DIR, else platformdirs' user cache dir for maniple."""
    env = os.environ.get("MANIPLE_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("maniple"))


def host_key() -> str:
    """What a calibration is valid for: host, CPU, core count, torch version."""
    import torch

    from maniple.devices.names import _cpu_model

    return (
        f"{socket.gethostname()}|{platform.machine()}|{_cpu_model()}|"
        f"{os.cpu_count()} cores|torch {torch.__version__}"
    )


@dataclass(frozen=True)
class Calibration:
    """Host single-thread CPU ms per reference network, and the factors derived from them."""

    host: str
    host_ms: dict[str, float]
    measured_at: str
    repeats: int
    version: int = CALIBRATION_VERSION

    def __post_init__(self) -> None:
        missing = [n for n in REFERENCE_NETWORKS if n not in self.host_ms]
        if missing:
            raise ManipleError(f"calibration lacks reference networks {missing}; re-measure it")
        bad = {n: v for n, v in self.host_ms.items() if not (isinstance(v, float) and v > 0)}
        if bad:
            raise ManipleError(f"calibration has non-positive host times {bad}; re-measure it")

    def firefly_factor(self, network: str | None) -> float:
        """Firefly-RK3399 ms per host CPU ms for `network` (geometric mean if not tabled)."""
        if network in FIREFLY_MS:
            return FIREFLY_MS[network] / self.host_ms[network]
        return self.geomean_factor()

    def geomean_factor(self) -> float:
        logs = [math.log(FIREFLY_MS[n] / self.host_ms[n]) for n in REFERENCE_NETWORKS]
        return math.exp(sum(logs) / len(logs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "host": self.host,
            "host_ms": dict(self.host_ms),
            "measured_at": self.measured_at,
            "repeats": self.repeats,
            "firefly_factors": {n: self.firefly_factor(n) for n in REFERENCE_NETWORKS},
            "geomean_factor": self.geomean_factor(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Calibration:
        """Validate and read a calibration record (from the cache file)."""
        version = data.get("version") if isinstance(data, dict) else None
        if version != CALIBRATION_VERSION:
            raise ManipleError(
                f"calibration record has version {version!r}, expected {CALIBRATION_VERSION}"
            )
        try:
            host_ms = {str(k): float(v) for k, v in dict(data["host_ms"]).items()}
            return cls(
                host=str(data["host"]),
                host_ms=host_ms,
                measured_at=str(data["measured_at"]),
                repeats=int(data["repeats"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManipleError(f"malformed calibration record: {exc}") from exc


def _measure_in_workers(processes: int = _PROCESSES) -> Calibration:
    """Each reference network, batch 1, in `processes` fresh one-thread Worker actors on
    this node, one after another: the fastest run in each worker, then the median over
    the workers."""
    import ray
    import torch

    import maniple.zoo as zoo
    from maniple.devices.model_spec import ModelSpec
    from maniple.devices.names import DeviceSpec
    from maniple.devices.ray_backend import STEADY_MALLOC_ENV, RayHandle, ensure_ray, release_ray

    session = ensure_ray()
    try:
        node = ray.get_runtime_context().get_node_id()
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


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"version": CALIBRATION_VERSION, "entries": {}}
    if not isinstance(data, dict) or data.get("version") != CALIBRATION_VERSION:
        return {"version": CALIBRATION_VERSION, "entries": {}}
    if not isinstance(data.get("entries"), dict):
        data["entries"] = {}
    return data


def load_calibration(*, force: bool = False) -> Calibration:
    """The calibration for this host: from the cache, else measured once (a few seconds)
    in a subprocess and cached. `force` re-measures."""
    path = cache_dir() / _CACHE_FILE
    key = host_key()
    with _locked(path.with_suffix(".lock")):
        data = _read_cache(path)
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


def main() -> None:
    """`python -m maniple.devices.calibration [--force]`: print this host's calibration."""
    sys.stdout.write(
        json.dumps(load_calibration(force="--force" in sys.argv).to_dict(), indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
