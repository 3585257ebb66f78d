"""Legion's cost predictor: group costs from single-unit profiling only.

Measuring every possible fused group i..j on the devices (FSS) takes O(n^2) runs; Legion
instead measures each unit alone (S: send its input band, E: run it, R: receive its output
band) and scales by alpha, the growth of a band when fused through later units, which the
halo math gives for free. The predicted cost of group i..j is the slowest device's

    T[i, j] = max_d ( S[d,i]*A_in[d,i,j] + sum_{k=i..j} E[d,k]*A[d,k,j] + R[d,j] ) + C

C is the coordinator's own cost of one group (handing out the bands, gathering and
stitching the results: Ray calls and host work, real time), measured on the same
single-unit runs. Without it every cut looks free on the coordinator's side and the
optimizer cuts more often than pays: on six emulated boards a group costs the coordinator
~10-15 ms, as much as the link time of a small group.

This module holds those tables (`LegionCosts`) and evaluates the formula. It does no
profiling itself; `maniple.profile` fills the tables.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import maniple.jsonio as jsonio
from maniple.errors import ManipleError

COSTS_SCHEMA = "maniple.legion_costs/1"
_DIAGONAL_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ProfilingSpent:
    """What profiling cost: runs on devices, bytes moved, and seconds (board time on
    emulated boards). Carried with the costs and the plan so that Legion's saving over FSS
    can be reported from the plan alone."""

    runs: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        for name in ("runs", "bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ManipleError(f"ProfilingSpent.{name} must be an integer >= 0; got {value!r}")
        if not (isinstance(self.seconds, (int, float)) and math.isfinite(self.seconds)) or (
            self.seconds < 0
        ):
            raise ManipleError(
                f"ProfilingSpent.seconds must be finite and >= 0; got {self.seconds!r}"
            )

    def __add__(self, other: ProfilingSpent) -> ProfilingSpent:
        """Spending adds up across profiling sweeps (e.g. Legion's plus the Wild Card's)."""
        return ProfilingSpent(
            self.runs + other.runs, self.bytes + other.bytes, self.seconds + other.seconds
        )

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "bytes": self.bytes, "seconds": float(self.seconds)}

    @classmethod
    def from_dict(cls, value: Any, schema: str) -> ProfilingSpent:
        """Read the dict written by `to_dict`; `schema` names the enclosing document in errors."""
        if not isinstance(value, dict):
            raise ManipleError(f"{schema}: field 'spent' must be an object, got {value!r}")
        return cls(
            runs=jsonio.as_int(jsonio.field(value, "runs", schema), "spent.runs", schema),
            bytes=jsonio.as_int(jsonio.field(value, "bytes", schema), "spent.bytes", schema),
            seconds=jsonio.as_float(
                jsonio.field(value, "seconds", schema), "spent.seconds", schema
            ),
        )

    def __str__(self) -> str:
        return f"{self.runs} runs, {self.bytes / 1e6:.2f} MB, {self.seconds:.2f} s"


@dataclass(frozen=True, eq=False)
class LegionCosts:
    """Per-device, per-unit cost tables for one network split with fixed band weights.

    S[d,k]: ms to send unit k's input band (unfused) to device d.
    E[d,k]: ms for device d to run unit k alone on its band.
    R[d,k]: ms to receive unit k's output band from device d.
    A[d,k,j] (k <= j): rows of unit k's output device d needs when its band of unit j's
        output is computed through the fused group, over rows it needs unfused; A[d,k,k]=1,
        or 0 where device d sits unit k out (a map with fewer rows than devices: its costs
        were then measured on one row, and a group ending at k gives it no work).
    A_in[d,i,j] (i <= j): the same for unit i's *input* rows, which is what the send of
        group i..j carries; A_in[d,i,i]=1 (or 0, as for A).
    weights: the band weights the tables were profiled with, one per device: every band
        measured (and every alpha) follows from them, so the tables predict plans only
        for bands split by these same weights, and planners take them from here.
    dispatch_ms: the coordinator's cost of one group, C above (0 where not measured).
    sync_ms: per unit, what its sync points add to any group that runs it split (each one
        more round through the coordinator: the partials up, their combination down, and
        C again); empty for a network without sync points.
    Entries below the diagonal of A and A_in are ignored (stored as 0). Arrays are copied
    and made read-only, so a LegionCosts never changes after it is built.
    """

    devices: tuple[str, ...]
    n_units: int
    S: np.ndarray
    E: np.ndarray
    R: np.ndarray
    A: np.ndarray
    A_in: np.ndarray
    weights: tuple[float, ...]
    spent: ProfilingSpent = field(default_factory=ProfilingSpent)
    dispatch_ms: float = 0.0
    sync_ms: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        sync = tuple(float(v) for v in self.sync_ms)
        if sync and (
            len(sync) != self.n_units or not all(math.isfinite(v) and v >= 0 for v in sync)
        ):
            raise ManipleError(
                f"LegionCosts: sync_ms needs one finite ms >= 0 per unit ({self.n_units}); "
                f"got {list(self.sync_ms)}"
            )
        object.__setattr__(self, "sync_ms", sync)
        if not (
            isinstance(self.dispatch_ms, (int, float))
            and not isinstance(self.dispatch_ms, bool)
            and math.isfinite(self.dispatch_ms)
            and self.dispatch_ms >= 0
        ):
            raise ManipleError(
                f"LegionCosts: dispatch_ms must be finite and >= 0 ms; got {self.dispatch_ms!r}"
            )
        object.__setattr__(self, "dispatch_ms", float(self.dispatch_ms))
        devices = tuple(self.devices)
        _check_devices(devices)
        n = self.n_units
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ManipleError(f"LegionCosts: n_units must be an integer >= 1; got {n!r}")
        object.__setattr__(self, "devices", devices)
        object.__setattr__(self, "weights", _checked_weights(self.weights, devices))
        upper = np.triu(np.ones((n, n), dtype=bool))
        for name in ("S", "E", "R"):
            object.__setattr__(self, name, self._checked(name, (len(devices), n), None))
        for name in ("A", "A_in"):
            object.__setattr__(self, name, self._checked(name, (len(devices), n, n), upper))
            _check_unit_diagonal(name, getattr(self, name), devices)

    def _checked(self, name: str, shape: tuple[int, ...], upper: np.ndarray | None) -> np.ndarray:
        """A read-only float64 copy of table `name`, after checking shape and values."""
        try:
            array = np.array(getattr(self, name), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ManipleError(f"LegionCosts: {name} is not a numeric array ({exc})") from None
        if array.shape != shape:
            raise ManipleError(
                f"LegionCosts: {name} has shape {array.shape}, expected {shape} "
                f"(devices={shape[0]}, units={shape[1]})"
            )
        if upper is not None:
            array = np.where(upper, array, 0.0)
        bad = ~(np.isfinite(array) & (array >= 0))
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ManipleError(
                f"LegionCosts: {name}{list(index)} (device {self.devices[index[0]]!r}, "
                f"unit {index[1]}) is {array[index]!r}; entries must be finite and >= 0"
            )
        array.setflags(write=False)
        return array

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LegionCosts):
            return NotImplemented
        return (
            self.devices == other.devices
            and self.n_units == other.n_units
            and self.spent == other.spent
            and self.dispatch_ms == other.dispatch_ms
            and self.sync_ms == other.sync_ms
            and self.weights == other.weights
            and all(
                np.array_equal(getattr(self, name), getattr(other, name))
                for name in ("S", "E", "R", "A", "A_in")
            )
        )

    __hash__ = None  # type: ignore[assignment]  # arrays are not hashable

    def to_json(self) -> str:
        """Versioned JSON (`maniple.legion_costs/1`); arrays as nested lists."""
        doc = {
            "schema": COSTS_SCHEMA,
            "devices": list(self.devices),
            "n_units": self.n_units,
            **{name: getattr(self, name).tolist() for name in ("S", "E", "R", "A", "A_in")},
            "weights": list(self.weights),
            "spent": self.spent.to_dict(),
            "dispatch_ms": self.dispatch_ms,
            "sync_ms": list(self.sync_ms),
        }
        return json.dumps(doc)

    @classmethod
    def from_json(cls, text: str | bytes) -> LegionCosts:
        """Read `to_json`'s output; every field is checked, errors name it."""
        schema = COSTS_SCHEMA
        doc = jsonio.load_document(text, schema)
        devices = jsonio.as_list(jsonio.field(doc, "devices", schema), "devices", schema)
        tables = {}
        for name in ("S", "E", "R", "A", "A_in"):
            tables[name] = jsonio.as_list(jsonio.field(doc, name, schema), name, schema)
        if "weights" not in doc:
            raise ManipleError(
                f"{schema}: missing field 'weights': these cost tables were written before "
                "the band weights were kept with them, so it is unknown which bands they "
                "were measured on; profile the devices again to rewrite them"
            )
        weights = jsonio.as_list(doc["weights"], "weights", schema)
        return cls(
            devices=tuple(jsonio.as_str(d, "devices", schema) for d in devices),
            n_units=jsonio.as_int(jsonio.field(doc, "n_units", schema), "n_units", schema),
            weights=tuple(jsonio.as_float(w, "weights", schema) for w in weights),
            spent=ProfilingSpent.from_dict(jsonio.field(doc, "spent", schema), schema),
            dispatch_ms=(
                jsonio.as_float(doc["dispatch_ms"], "dispatch_ms", schema)
                if "dispatch_ms" in doc  # absent in files written before it was measured
                else 0.0
            ),
            sync_ms=tuple(
                jsonio.as_float(v, "sync_ms", schema)
                for v in jsonio.as_list(doc.get("sync_ms", []), "sync_ms", schema)
            ),
            **tables,
        )


def group_device_ms(costs: LegionCosts, i: int, j: int) -> np.ndarray:
    """Predicted ms of group i..j on each device (send + run + receive); the group's cost
    is the max plus the coordinator's `dispatch_ms`, and the argmax is the device that holds
    the others up."""
    _check_group(costs.n_units, i, j)
    send = costs.S[:, i] * costs.A_in[:, i, j]
    run = (costs.E[:, i : j + 1] * costs.A[:, i : j + 1, j]).sum(axis=1)
    sync = sum(costs.sync_ms[i : j + 1]) if costs.sync_ms else 0.0
    return send + run + costs.R[:, j] + sync


def predict_group(costs: LegionCosts, i: int, j: int) -> float:
    """Predicted cost T[i, j] of fusing units i..j into one group, in ms."""
    return float(group_device_ms(costs, i, j).max()) + costs.dispatch_ms


def predict_all(costs: LegionCosts) -> np.ndarray:
    """The whole cost matrix T (n x n): T[i, j] for i <= j, +inf below the diagonal.

    Vectorised: the run term sum_{k=i..j} E[d,k]*A[d,k,j] is a reversed cumulative sum
    over k of the upper-triangular products, so all O(n^2) groups cost O(D*n^2) work.
    """
    n = costs.n_units
    upper = np.triu(np.ones((n, n), dtype=bool))
    products = np.where(upper, costs.E[:, :, None] * costs.A, 0.0)  # [d, k, j], k <= j
    run = np.flip(np.cumsum(np.flip(products, axis=1), axis=1), axis=1)  # sum over k >= i
    per_device = costs.S[:, :, None] * costs.A_in + run + costs.R[:, None, :]
    T = per_device.max(axis=0) + costs.dispatch_ms
    if costs.sync_ms:  # sync rounds of units i..j: a prefix-sum difference
        c = np.concatenate([[0.0], np.cumsum(costs.sync_ms)])
        T = T + (c[None, 1:] - c[:-1, None])
    return np.where(upper, T, np.inf)


def _check_group(n: int, i: int, j: int) -> None:
    if not (0 <= i <= j < n):
        raise ManipleError(f"group {i}..{j} is not a group of units 0..{n - 1} (need 0 <= i <= j)")


def _check_devices(devices: tuple[str, ...]) -> None:
    if len(devices) == 0:
        raise ManipleError("LegionCosts: needs at least one device; got none")
    for d in devices:
        if not isinstance(d, str) or not d:
            raise ManipleError(f"LegionCosts: device names must be non-empty strings; got {d!r}")
    if len(set(devices)) != len(devices):
        raise ManipleError(f"LegionCosts: device names must be unique; got {list(devices)}")


def _checked_weights(weights: object, devices: tuple[str, ...]) -> tuple[float, ...]:
    """The band weights as a tuple of floats: one per device, finite, >= 0, not all 0."""
    try:
        values = tuple(weights)  # type: ignore[call-overload]
    except TypeError:
        raise ManipleError(
            f"LegionCosts: weights must be a sequence of one number per device; got {weights!r}"
        ) from None
    if len(values) != len(devices):
        raise ManipleError(
            f"LegionCosts: {len(values)} weights for {len(devices)} devices "
            f"({', '.join(devices)}); give the one weight per device the bands were split by"
        )
    for d, w in zip(devices, values, strict=True):
        if isinstance(w, bool) or not isinstance(w, (int, float, np.floating, np.integer)):
            raise ManipleError(f"LegionCosts: weight of device {d!r} is {w!r}; must be a number")
        if not (math.isfinite(w) and w >= 0):
            raise ManipleError(
                f"LegionCosts: weight of device {d!r} is {w!r}; weights must be finite and >= 0"
            )
    if sum(values) <= 0:
        raise ManipleError(
            f"LegionCosts: weights {list(values)} sum to 0; at least one device needs a "
            "positive weight"
        )
    return tuple(float(w) for w in values)


def _check_unit_diagonal(name: str, array: np.ndarray, devices: tuple[str, ...]) -> None:
    """Alpha of a group of one unit is 1 by definition (0 for a device that sits the unit
    out); anything else is a bug upstream."""
    diagonal = np.diagonal(array, axis1=1, axis2=2)
    bad = (np.abs(diagonal - 1.0) > _DIAGONAL_TOLERANCE) & (np.abs(diagonal) > _DIAGONAL_TOLERANCE)
    if bad.any():
        d, k = (int(x) for x in np.argwhere(bad)[0])
        raise ManipleError(
            f"LegionCosts: {name}[{d}, {k}, {k}] (device {devices[d]!r}) is "
            f"{diagonal[d, k]!r}; alpha of a unit fused with nothing must be 1 "
            "(or 0 for a device that sits it out)"
        )
