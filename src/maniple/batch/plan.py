"""`BatchPlan`: how many images of a batch each device runs, and what that should cost.

A frozen value that crosses process and disk boundaries as versioned JSON: the planner
writes it, the runtime runs it, the report compares its predictions with measured times.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from maniple.errors import ManipleError

SCHEMA = "maniple.batch_plan/1"


@dataclass(frozen=True)
class BatchPlan:
    """A split of `batch` images of `network` across devices.

    `shares` and `predicted_ms` are keyed by device name in device order; a device may get
    zero images (then its predicted time is 0). `makespan_ms` is the largest predicted time,
    when the last device finishes. `best_single_*` is the fastest one device alone on the
    whole batch (infinite where none can hold it) and `predicted_speedup` their ratio.
    The dicts are copies taken at construction; treat them as read-only.
    """

    planner: str
    network: str
    batch: int
    shares: Mapping[str, int]
    predicted_ms: Mapping[str, float]
    makespan_ms: float
    best_single_device: str
    best_single_ms: float
    predicted_speedup: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "shares", dict(self.shares))
        object.__setattr__(self, "predicted_ms", dict(self.predicted_ms))

    @property
    def devices_used(self) -> tuple[str, ...]:
        """Devices that get at least one image."""
        return tuple(d for d, n in self.shares.items() if n > 0)

    def validate(self, devices: Mapping[str, Any] | None = None) -> BatchPlan:
        """Raise `ManipleError` naming the first inconsistent step; return self when sound.

        `devices` (e.g. a PerfTable's `entries`) adds a check that every device is known.
        """
        where = f"batch plan ({self.planner}, {self.network})"
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ManipleError(
                f"{where}: step 'batch': batch must be a positive number of images, "
                f"got {self.batch!r}"
            )
        if not self.shares:
            raise ManipleError(f"{where}: step 'shares': no devices; a plan needs at least one")
        for dev, n in self.shares.items():
            if isinstance(n, bool) or not isinstance(n, int):
                raise ManipleError(
                    f"{where}: step 'shares': device {dev!r} gets {n!r}, "
                    "not a whole number of images"
                )
            if n < 0:
                raise ManipleError(
                    f"{where}: step 'shares': device {dev!r} gets a negative share ({n} images)"
                )
        total = sum(self.shares.values())
        if total != self.batch:
            raise ManipleError(
                f"{where}: step 'shares': shares sum to {total} images, but the batch is "
                f"{self.batch}; every image must go to exactly one device"
            )
        if devices is not None:
            for dev in [*self.shares, self.best_single_device]:
                if dev not in devices:
                    raise ManipleError(
                        f"{where}: step 'devices': unknown device {dev!r}; "
                        f"known devices: {', '.join(devices)}"
                    )
        if list(self.predicted_ms) != list(self.shares):
            raise ManipleError(
                f"{where}: step 'predicted_ms': devices {list(self.predicted_ms)} do not match "
                f"the shares' devices {list(self.shares)}"
            )
        for dev, ms in self.predicted_ms.items():
            if not isinstance(ms, (int, float)) or not (ms >= 0) or math.isinf(ms):
                raise ManipleError(
                    f"{where}: step 'predicted_ms': device {dev!r} has time {ms!r}; "
                    "expected a finite number of ms >= 0"
                )
            if self.shares[dev] == 0 and ms != 0:
                raise ManipleError(
                    f"{where}: step 'predicted_ms': device {dev!r} gets no images but {ms} ms"
                )
        top = max(self.predicted_ms.values())
        if not math.isclose(self.makespan_ms, top, rel_tol=1e-9, abs_tol=1e-9):
            raise ManipleError(
                f"{where}: step 'makespan_ms': {self.makespan_ms} ms, but the slowest device's "
                f"predicted time is {top} ms"
            )
        return self

    # -- JSON ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Versioned JSON document; infinite times (no single device fits) become null."""
        return {
            "schema": SCHEMA,
            "planner": self.planner,
            "network": self.network,
            "batch": self.batch,
            "shares": dict(self.shares),
            "predicted_ms": dict(self.predicted_ms),
            "makespan_ms": self.makespan_ms,
            "best_single_device": self.best_single_device,
            "best_single_ms": _finite_or_none(self.best_single_ms),
            "predicted_speedup": _finite_or_none(self.predicted_speedup),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> BatchPlan:
        """Read and validate a document written by `to_json` (dict or text)."""
        if isinstance(data, (str, bytes)):
            try:
                data = json.loads(data)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ManipleError(f"batch plan: not valid JSON ({exc})") from None
        if not isinstance(data, Mapping):
            raise ManipleError(f"batch plan: expected a JSON object, got {type(data).__name__}")
        if data.get("schema") != SCHEMA:
            raise ManipleError(
                f"batch plan: field 'schema' is {data.get('schema')!r}, "
                f"this maniple reads {SCHEMA!r} "
                "(written by another version? plan again with this one)"
            )
        for key in ("planner", "network", "batch", "shares", "predicted_ms", "makespan_ms",
                    "best_single_device"):  # fmt: skip
            if key not in data:
                raise ManipleError(f"batch plan: missing field {key!r}")
        for key in ("shares", "predicted_ms"):
            if not isinstance(data[key], dict):
                raise ManipleError(
                    f"batch plan: field {key!r} must be an object, got {data[key]!r}"
                )
        for key in ("planner", "network", "best_single_device"):
            if not isinstance(data[key], str):
                raise ManipleError(f"batch plan: field {key!r} must be a string, got {data[key]!r}")
        for key in ("makespan_ms", "best_single_ms", "predicted_speedup"):
            value = data.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise ManipleError(f"batch plan: field {key!r} must be a number, got {value!r}")
        if data["makespan_ms"] is None:
            raise ManipleError("batch plan: field 'makespan_ms' must be a number, got None")
        plan = cls(
            planner=data["planner"],
            network=data["network"],
            batch=data["batch"],
            shares=data["shares"],
            predicted_ms=data["predicted_ms"],
            makespan_ms=float(data["makespan_ms"]),
            best_single_device=data["best_single_device"],
            best_single_ms=_none_to_inf(data.get("best_single_ms")),
            predicted_speedup=_none_to_inf(data.get("predicted_speedup")),
        )
        return plan.validate()

    # -- display ------------------------------------------------------------------------

    def __str__(self) -> str:
        width = max(len("device"), *(len(d) for d in self.shares))
        lines = [
            f"batch plan: {self.network}, {self.batch} images, planner {self.planner}",
            f"{'device':<{width}}  {'images':>6}  {'predicted ms':>12}",
        ]
        for dev, n in self.shares.items():
            lines.append(f"{dev:<{width}}  {n:>6d}  {self.predicted_ms[dev]:>12.1f}")
        single = (
            f"{self.best_single_ms:.1f} ms"
            if math.isfinite(self.best_single_ms)
            else "cannot hold it"
        )
        lines.append(
            f"makespan {self.makespan_ms:.1f} ms; best single device {self.best_single_device} "
            f"{single}; predicted speedup {self.predicted_speedup:.2f}x"
        )
        return "\n".join(lines)


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _none_to_inf(x: float | None) -> float:
    return math.inf if x is None else float(x)
