"""The calibration record of emulated boards: host CPU ms per reference network, cached.

What the boards' clocks read (see `maniple.devices.calibration` for why and how it is
measured). Kept apart from the measuring code so that a board's clock needs nothing but
this file and the presets: measuring starts worker processes, reading does not.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import platform
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maniple.devices.presets import FIREFLY_MS, REFERENCE_NETWORKS
from maniple.errors import ManipleError

CALIBRATION_VERSION = 8
CACHE_FILE = f"emulation-calibration-v{CALIBRATION_VERSION}.json"


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


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"version": CALIBRATION_VERSION, "entries": {}}
    if not isinstance(data, dict) or data.get("version") != CALIBRATION_VERSION:
        return {"version": CALIBRATION_VERSION, "entries": {}}
    if not isinstance(data.get("entries"), dict):
        data["entries"] = {}
    return data
