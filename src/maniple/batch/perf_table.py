"""Batch performance tables: how long each device takes for a batch of B images.

The KCC 2020 study profiles every device at a few batch sizes (powers of two and their
neighbours, where efficiency tends to jump) and estimates every other size from those. A
`PerfTable` holds one network's measurements for several devices, estimates any batch size
the way the study does, and reads and writes the study's JSON files, our own versioned
JSON and CSV. It is a plain value: planners take it, never a device. A device's rows
(`PerfEntry`, their checks and the interpolation between sizes) live in perf_entries.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maniple.batch.perf_entries import PerfEntry, checked_entries, entries_from_json, interpolate
from maniple.errors import ManipleError, UnknownNameError

SCHEMA = "maniple.perf_table/1"
"""Version tag of our own JSON format; bump it when the layout changes."""

SEED_BATCHES: tuple[int, ...] = (
    1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129,
)  # fmt: skip
"""The study's batch sizes: 2^n and its neighbours, where per-image time changes most."""

UNIT = "ms"
"""Every time in a table is milliseconds for the whole batch (not per image)."""

_UNITS_ACCEPTED = {"ms", "milliseconds for the whole batch"}  # ours, the study's


@dataclass(frozen=True)
class PerfTable:
    """One network's batch measurements on several devices.

    `entries` maps a device name to its entries sorted by batch size (the dict's order is the
    device order used everywhere). `max_batch` holds the largest batch a device can run where
    profiling hit its memory limit; `kinds` and `hosts` say which device a name stands for
    (e.g. "cuda", "node-3"), so that tables from different machines are not mixed up.
    """

    network: str
    entries: Mapping[str, tuple[PerfEntry, ...]]
    max_batch: Mapping[str, int] = field(default_factory=dict)
    kinds: Mapping[str, str] = field(default_factory=dict)
    hosts: Mapping[str, str] = field(default_factory=dict)
    unit: str = UNIT
    source: str = ""

    def __post_init__(self) -> None:
        where = f"perf table {self.network!r}"
        if not isinstance(self.network, str) or not self.network:
            raise ManipleError(
                f"perf table: field 'network' must be a non-empty name, got {self.network!r}"
            )
        if self.unit not in _UNITS_ACCEPTED:
            raise ManipleError(
                f"{where}: field 'unit' is {self.unit!r}; maniple reads times in "
                f"milliseconds for the whole batch ({sorted(_UNITS_ACCEPTED)})"
            )
        if not self.entries:
            raise ManipleError(
                f"{where}: field 'devices' is empty; a table needs at least one device"
            )
        entries = {name: checked_entries(where, name, rows) for name, rows in self.entries.items()}
        for label, mapping in (
            ("max_batch", self.max_batch),
            ("kind", self.kinds),
            ("host", self.hosts),
        ):
            for name in mapping:
                if name not in entries:
                    raise ManipleError(
                        f"{where}: {label} given for device {name!r}, which has no entries "
                        f"(devices: {', '.join(entries)})"
                    )
        for name, limit in self.max_batch.items():
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ManipleError(
                    f"{where}: max_batch of device {name!r} must be an integer >= 0, got {limit!r}"
                )
        object.__setattr__(self, "entries", entries)
        object.__setattr__(self, "max_batch", dict(self.max_batch))
        object.__setattr__(self, "kinds", dict(self.kinds))
        object.__setattr__(self, "hosts", dict(self.hosts))
        object.__setattr__(self, "unit", UNIT)

    # -- looking things up -------------------------------------------------------------

    @property
    def devices(self) -> tuple[str, ...]:
        """Device names in table order."""
        return tuple(self.entries)

    def resolve_device(self, name: str) -> str:
        """The table's name for `name`: an exact match, else the one name containing it
        (case-insensitive), so `--device "1050 Ti"` finds "[GPU] GeForce GTX 1050 Ti"."""
        if name in self.entries:
            return name
        hits = [d for d in self.entries if name.lower() in d.lower()]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise ManipleError(
                f"device {name!r} matches several devices of table {self.network!r}: "
                f"{', '.join(hits)}; give more of the name"
            )
        raise UnknownNameError("device", name, self.entries)

    def limit(self, device: str) -> int | None:
        """Largest batch `device` can run, or None where profiling found no limit."""
        return self.max_batch.get(self.resolve_device(device))

    def select(self, devices: Sequence[str] | None) -> PerfTable:
        """The same table restricted to `devices` (in that order); None keeps all."""
        if devices is None:
            return self
        names = [self.resolve_device(d) for d in devices]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ManipleError(f"device {dup[0]!r} given twice; name each device once")
        return PerfTable(
            network=self.network,
            entries={n: self.entries[n] for n in names},
            max_batch={n: v for n, v in self.max_batch.items() if n in names},
            kinds={n: v for n, v in self.kinds.items() if n in names},
            hosts={n: v for n, v in self.hosts.items() if n in names},
            source=self.source,
        )

    # -- estimates ---------------------------------------------------------------------

    def estimate_parts(self, device: str, batch: int) -> tuple[float, float]:
        """(exec_ms, io_ms) predicted for `batch` images on `device`, as the study does.

        Per-image time is interpolated linearly between the neighbouring measured batch
        sizes and multiplied by `batch`; past the largest measured size the per-image time
        of that size is kept (linear extrapolation), below the smallest the smallest's.
        A measured size returns its measurement. Beyond `max_batch` the device cannot run
        the batch at all: infinite time.
        """
        name = self.resolve_device(device)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
            raise ManipleError(f"batch must be a whole number of images >= 0, got {batch!r}")
        if batch == 0:
            return 0.0, 0.0
        limit = self.max_batch.get(name)
        if limit is not None and batch > limit:
            return math.inf, math.inf
        return interpolate(self.entries[name], batch)

    def estimate_ms(self, device: str, batch: int) -> float:
        """Predicted time (exec + io, ms) for `batch` images on `device`; 0 for no images,
        infinite past the device's memory limit."""
        exec_ms, io_ms = self.estimate_parts(device, batch)
        return exec_ms + io_ms

    # -- our own JSON ------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Our versioned JSON document (a dict ready for `json.dumps`)."""
        devices: dict[str, Any] = {}
        for name, rows in self.entries.items():
            dev: dict[str, Any] = {}
            if name in self.kinds:
                dev["kind"] = self.kinds[name]
            if name in self.hosts:
                dev["host"] = self.hosts[name]
            if name in self.max_batch:
                dev["max_batch"] = self.max_batch[name]
            dev["entries"] = [
                {"batch": e.batch, "exec_ms": e.exec_ms, "io_ms": e.io_ms} for e in rows
            ]
            devices[name] = dev
        return {
            "schema": SCHEMA,
            "network": self.network,
            "unit": UNIT,
            "source": self.source,
            "devices": devices,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> PerfTable:
        """Read our versioned JSON (a dict or its text), or the study's format.

        The study's files (`{network, unit, source, devices: {name: [entry, ...]}}`, no
        "schema" field) are read as they are, device names unchanged.
        """
        doc = _parse(data)
        if "schema" not in doc:
            return cls.from_study_json(doc)
        if doc["schema"] != SCHEMA:
            raise ManipleError(
                f"perf table: field 'schema' is {doc['schema']!r}, this maniple reads {SCHEMA!r} "
                "(written by another version? re-export it with this one)"
            )
        network = _req_str(doc, "network", "perf table")
        where = f"perf table {network!r}"
        devices = doc.get("devices")
        if not isinstance(devices, dict):
            raise ManipleError(f"{where}: field 'devices' must be an object, got {devices!r}")
        entries, max_batch, kinds, hosts = {}, {}, {}, {}
        for name, dev in devices.items():
            if not isinstance(dev, dict):
                raise ManipleError(
                    f"{where}: field devices[{name!r}] must be an object, got {dev!r}"
                )
            entries[name] = entries_from_json(where, name, dev.get("entries"))
            if "max_batch" in dev and dev["max_batch"] is not None:
                max_batch[name] = dev["max_batch"]
            for key, out in (("kind", kinds), ("host", hosts)):
                if key in dev:
                    if not isinstance(dev[key], str):
                        raise ManipleError(
                            f"{where}: field devices[{name!r}].{key} must be a string, "
                            f"got {dev[key]!r}"
                        )
                    out[name] = dev[key]
        return cls(
            network=network,
            entries=entries,
            max_batch=max_batch,
            kinds=kinds,
            hosts=hosts,
            unit=doc.get("unit", UNIT),
            source=doc.get("source", "") or "",
        )

    @classmethod
    def from_study_json(cls, data: Mapping[str, Any] | str) -> PerfTable:
        """Read one of the KCC 2020 study's files exactly as published."""
        doc = _parse(data)
        network = _req_str(doc, "network", "perf table (study format)")
        where = f"perf table {network!r} (study format)"
        devices = doc.get("devices")
        if not isinstance(devices, dict):
            raise ManipleError(f"{where}: field 'devices' must be an object, got {devices!r}")
        entries = {name: entries_from_json(where, name, rows) for name, rows in devices.items()}
        return cls(
            network=network,
            entries=entries,
            unit=doc.get("unit", UNIT),
            source=str(doc.get("source", "")),
        )

    def save(self, path: str | Path) -> None:
        """Write our versioned JSON to `path`."""
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    # -- CSV ---------------------------------------------------------------------------

    def to_csv(self) -> str:
        """One row per measurement, for spreadsheets: network, device, kind, host,
        max_batch, batch, exec_ms, io_ms, total_ms."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        header = ["network", "device", "kind", "host", "max_batch", "batch", "exec_ms", "io_ms"]
        writer.writerow([*header, "total_ms"])
        for name, rows in self.entries.items():
            for e in rows:
                writer.writerow(
                    [
                        self.network,
                        name,
                        self.kinds.get(name, ""),
                        self.hosts.get(name, ""),
                        self.max_batch.get(name, ""),
                        e.batch,
                        repr(e.exec_ms),
                        repr(e.io_ms),
                        repr(e.total_ms),
                    ]
                )
        return out.getvalue()


def load_table(path: str | Path) -> PerfTable:
    """Read one table file, in our JSON format or the study's."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManipleError(f"cannot read perf table {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ManipleError(
            f"{path}: not a perf table (not UTF-8 text; a profile store is imported with "
            "--profile-db, a table is a JSON file from `maniple table export`)"
        ) from None
    try:
        return PerfTable.from_json(text)
    except ManipleError as exc:
        raise ManipleError(f"{path}: {exc}") from None


def load_tables(path: str | Path) -> dict[str, PerfTable]:
    """Tables by network from one file or from every *.json file of a directory."""
    path = Path(path)
    if not path.exists():
        raise ManipleError(
            f"perf table path {str(path)!r} does not exist; pass a JSON file or a directory of them"
        )
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise ManipleError(f"directory {str(path)!r} holds no *.json perf tables")
    tables: dict[str, PerfTable] = {}
    for f in files:
        table = load_table(f)
        if table.network in tables:
            raise ManipleError(f"{f}: network {table.network!r} appears in two files of {path}")
        tables[table.network] = table
    return tables


# -- validation helpers ----------------------------------------------------------------


def _parse(data: Mapping[str, Any] | str) -> Mapping[str, Any]:
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ManipleError(f"perf table: not valid JSON ({exc})") from None
    if not isinstance(data, Mapping):
        raise ManipleError(f"perf table: expected a JSON object, got {type(data).__name__}")
    return data


def _req_str(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise ManipleError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
    return value
