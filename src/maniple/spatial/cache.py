"""Spatial profiles kept in the profile store, so that a second run on the same boards
profiles nothing.

Profiling a set of boards (the speed probe, Legion's single-unit tables, FSS's group
costs) takes seconds to minutes of board time, and its result depends only on what the
devices are, what network runs on which input shape, and the band weights. Each result is
kept as a versioned JSON document in the profile store under a key made of exactly
those: every device's identity (`DeviceKey`: name, kind with board preset and link, host),
the network's name and structure, the input shape, the element type and the profiling
repeats; the cost tables also under the band weights. A changed link, board set, input
shape or network gives another key, and so is profiled again. Documents are read back
through the same validating readers as any file (`LegionCosts.from_json`), never unpickled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

import maniple.jsonio as jsonio
from maniple.errors import ManipleError
from maniple.graph import LayerGraph
from maniple.spatial.costs import LegionCosts, ProfilingSpent
from maniple.spatial.profiler import SpeedProbe
from maniple.store import DeviceKey, StoreFile

KEY_SCHEMA = "maniple.spatial_profile_key/1"
SPEEDS_SCHEMA = "maniple.speed_probe/1"
FSS_SCHEMA = "maniple.fss_costs/1"
SPEEDS, COSTS, FSS = "spatial.speeds", "spatial.costs", "spatial.fss"
Value = TypeVar("Value")
Fitted = TypeVar("Fitted", SpeedProbe, LegionCosts)


def network_fingerprint(graph: LayerGraph) -> str:
    """A short hash of the network's structure (node names, kinds, output shapes, MACs):
    two different models that share a name do not share costs. Weight values are left
    out on purpose, as they do not change how long a layer takes."""
    parts = [(n.name, n.kind, n.out_shape, n.macs) for n in graph.nodes]
    text = json.dumps([graph.name, list(graph.input_shape), parts], default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ProfileKey:
    """What a spatial profile was measured for; `digest()` is its key in the store."""

    network: str
    fingerprint: str
    input_shape: tuple[int, ...]
    devices: tuple[DeviceKey, ...]
    dtype: str = "float32"
    profile_repeats: int = 1
    n_units: int = 0

    @classmethod
    def of(
        cls,
        graph: LayerGraph,
        devices: Sequence[DeviceKey],
        *,
        dtype: str = "float32",
        profile_repeats: int = 1,
    ) -> ProfileKey:
        return cls(
            graph.name,
            network_fingerprint(graph),
            tuple(int(s) for s in graph.input_shape),
            tuple(devices),
            dtype,
            int(profile_repeats),
            len(graph.units),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": KEY_SCHEMA,
            "network": self.network,
            "fingerprint": self.fingerprint,
            "input_shape": list(self.input_shape),
            "devices": [[d.name, d.kind, d.host] for d in self.devices],
            "dtype": self.dtype,
            "profile_repeats": self.profile_repeats,
            "n_units": self.n_units,
        }

    def digest(self, weights: Sequence[float] | None = None) -> str:
        """The store key: a hash of every field (and of the band weights, for tables that
        were profiled with them; weights are rounded to 12 digits, as JSON keeps them)."""
        doc = self.to_dict()
        if weights is not None:
            doc["weights"] = [round(float(w), 12) for w in weights]
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class CostCache:
    """Reads and writes the three spatial profiles of one `ProfileKey` in a store.

    `reprofile=True` never reads (every profile is measured again) but still writes, so
    the next run reuses the new measurements. `reused` lists what was read from the
    store, for the run's report.
    """

    def __init__(self, store: StoreFile, key: ProfileKey, *, reprofile: bool = False) -> None:
        self.store, self.key, self.reprofile = store, key, reprofile
        self.reused: list[str] = []

    def _load(
        self,
        kind: str,
        weights: Sequence[float] | None,
        reader: Callable[[dict[str, Any]], Value],
    ) -> Value | None:
        """The stored profile of `kind`, read by `reader` from its document's body and
        counted as reused; None (measure again, and overwrite) when there is none, under
        --reprofile, or when it does not read back (e.g. written by another version)."""
        if self.reprofile:
            return None
        doc = self.store.get_document(kind, self.key.digest(weights))
        if doc is None or not isinstance(doc.get("body"), dict):
            return None
        try:
            value = reader(doc["body"])
        except (ManipleError, TypeError, ValueError):
            return None
        self.reused.append(kind.removeprefix("spatial."))
        return value

    def _fits(self, profile: Fitted) -> Fitted:
        """`profile` when it names exactly the key's devices, in order (else it is not
        this key's profile: measure again)."""
        names = tuple(d.name for d in self.key.devices)
        if tuple(profile.devices) != names:
            raise ManipleError(f"stored profile is for {profile.devices}, not {names}")
        return profile

    def _put(self, kind: str, body: dict[str, Any], weights: Sequence[float] | None) -> None:
        self.store.put_document(
            kind, self.key.digest(weights), {"key": self.key.to_dict(), "body": body}
        )

    # -- the speed probe ------------------------------------------------------------------
    def speeds(self) -> SpeedProbe | None:
        return self._load(SPEEDS, None, lambda body: self._fits(_speeds_from(body)))

    def put_speeds(self, probe: SpeedProbe) -> None:
        body = {
            "schema": SPEEDS_SCHEMA,
            "devices": list(probe.devices),
            "spatial_ms": list(probe.spatial_ms),
            "weights": list(probe.weights),
            "spent": probe.spent.to_dict(),
        }
        self._put(SPEEDS, body, None)

    # -- Legion's single-unit tables --------------------------------------------------------
    def costs(self, weights: Sequence[float]) -> LegionCosts | None:
        return self._load(
            COSTS, weights, lambda body: self._fits(LegionCosts.from_json(json.dumps(body)))
        )

    def put_costs(self, costs: LegionCosts) -> None:
        self._put(COSTS, json.loads(costs.to_json()), costs.weights)

    # -- FSS's measured group costs -----------------------------------------------------------
    def fss(self, weights: Sequence[float]) -> tuple[np.ndarray, ProfilingSpent] | None:
        return self._load(FSS, weights, lambda body: _fss_from(body, self.key.n_units))

    def put_fss(self, T: np.ndarray, spent: ProfilingSpent, weights: Sequence[float]) -> None:
        rows = [[None if not np.isfinite(v) else float(v) for v in row] for row in T]
        self._put(FSS, {"schema": FSS_SCHEMA, "T": rows, "spent": spent.to_dict()}, weights)


def _fss_from(body: dict[str, Any], n_units: int) -> tuple[np.ndarray, ProfilingSpent]:
    jsonio.check_schema(body, FSS_SCHEMA)
    rows = jsonio.as_list(jsonio.field(body, "T", FSS_SCHEMA), "T", FSS_SCHEMA)
    T = np.array(
        [[np.inf if v is None else float(v) for v in row] for row in rows], dtype=np.float64
    )
    if T.shape != (n_units, n_units):
        raise ManipleError(f"{FSS_SCHEMA}: T must be {n_units}x{n_units}; got shape {T.shape}")
    return T, ProfilingSpent.from_dict(jsonio.field(body, "spent", FSS_SCHEMA), FSS_SCHEMA)


def _speeds_from(body: dict[str, Any]) -> SpeedProbe:
    s = SPEEDS_SCHEMA
    jsonio.check_schema(body, s)

    def floats(name: str) -> tuple[float, ...]:
        values = jsonio.as_list(jsonio.field(body, name, s), name, s)
        return tuple(jsonio.as_float(v, name, s) for v in values)

    devices = tuple(
        jsonio.as_str(d, "devices", s)
        for d in jsonio.as_list(jsonio.field(body, "devices", s), "devices", s)
    )
    spatial_ms, weights = floats("spatial_ms"), floats("weights")
    if not (len(devices) == len(spatial_ms) == len(weights)):
        raise ManipleError(f"{s}: devices, spatial_ms and weights differ in length")
    return SpeedProbe(
        devices, spatial_ms, weights, ProfilingSpent.from_dict(jsonio.field(body, "spent", s), s)
    )
