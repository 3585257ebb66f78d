"""The profile store: every measurement maniple takes, kept in one SQLite file.

Profiling is slow (minutes per device and network), so measurements are kept and reused:
a second run plans at once, an interrupted run resumes where it stopped. Rows are keyed by
the device's identity (name, kind, host), never by name alone, so that two machines'
"cuda:0" do not overwrite each other. The file carries a schema version; a file of another
version, another program's SQLite database or a file that is not SQLite at all is refused
with a message saying what it is and what to do, and is never modified.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from maniple.errors import ManipleError
from maniple.profile.perf_table import PerfEntry, PerfTable

SCHEMA_NAME = "maniple.profile_store"
SCHEMA_VERSION = 1
MATRICES = ("S", "E", "R", "group")
"""Kinds of rows in the generic `costs` table (Legion's Set/Run/Get matrices, whole groups)."""

_SQLITE_MAGIC = b"SQLite format 3\x00"

_TABLES = f"""
BEGIN;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE batch_entries (
    device TEXT NOT NULL, kind TEXT NOT NULL, host TEXT NOT NULL, network TEXT NOT NULL,
    batch INTEGER NOT NULL CHECK (batch > 0),
    exec_ms REAL NOT NULL CHECK (exec_ms >= 0), io_ms REAL NOT NULL CHECK (io_ms >= 0),
    repeats INTEGER NOT NULL, measured_at REAL NOT NULL,
    PRIMARY KEY (device, kind, host, network, batch)
);
CREATE TABLE device_limits (
    device TEXT NOT NULL, kind TEXT NOT NULL, host TEXT NOT NULL, network TEXT NOT NULL,
    max_batch INTEGER NOT NULL CHECK (max_batch >= 0), recorded_at REAL NOT NULL,
    PRIMARY KEY (device, kind, host, network)
);
CREATE TABLE costs (
    device TEXT NOT NULL, kind TEXT NOT NULL, host TEXT NOT NULL, network TEXT NOT NULL,
    input_shape TEXT NOT NULL, matrix TEXT NOT NULL CHECK (matrix IN ('S', 'E', 'R', 'group')),
    first_unit INTEGER NOT NULL, last_unit INTEGER NOT NULL, band_rows INTEGER NOT NULL,
    ms REAL NOT NULL CHECK (ms >= 0), repeats INTEGER NOT NULL, measured_at REAL NOT NULL,
    PRIMARY KEY (device, kind, host, network, input_shape, matrix, first_unit, last_unit, band_rows)
);
INSERT INTO meta VALUES ('schema', '{SCHEMA_NAME}'), ('schema_version', '{SCHEMA_VERSION}');
COMMIT;
"""


@dataclass(frozen=True, order=True)
class DeviceKey:
    """Who measured: the device's name ("cuda:0"), its kind ("cuda", "cpu", "emulated:firefly")
    and the host it sits on. All three key every row of the store."""

    name: str
    kind: str = "unknown"
    host: str = "localhost"

    def __str__(self) -> str:
        return f"{self.name} ({self.kind} on {self.host})"


def default_store_path() -> Path:
    """`profiles.sqlite` in the user's cache directory (e.g. ~/.cache/maniple/)."""
    return Path(platformdirs.user_cache_dir("maniple")) / "profiles.sqlite"


class ProfileStore:
    """A versioned SQLite file of batch measurements, device limits and cost-matrix cells.

    Every write commits at once, in its own transaction, so a profiling run that crashes
    or is interrupted keeps everything it already measured.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        _check_existing(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0)
            if not _table_names(self._db):
                self._db.executescript(_TABLES)  # one transaction: all tables and meta, or none
        except sqlite3.DatabaseError as exc:
            raise _corrupt(self.path, exc) from None

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the file (the store is unusable afterwards)."""
        self._db.close()

    def __enter__(self) -> ProfileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed on success, rolled back on error."""
        try:
            with self._db:
                yield self._db
        except sqlite3.DatabaseError as exc:
            raise _corrupt(self.path, exc) from None

    # -- batch tables -------------------------------------------------------------------

    def put_batch_entry(
        self,
        device: DeviceKey,
        network: str,
        batch: int,
        exec_ms: float,
        io_ms: float,
        repeats: int = 1,
        measured_at: float | None = None,
    ) -> None:
        """Record (or replace) the time of `batch` images of `network` on `device`."""
        entry = PerfEntry(batch, exec_ms, io_ms)
        PerfTable(network, {device.name: (entry,)})  # validates network, batch and times
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO batch_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*_key(device), network, batch, float(exec_ms), float(io_ms), int(repeats),
                 time.time() if measured_at is None else measured_at),
            )  # fmt: skip

    def put_table(self, table: PerfTable, kind: str = "unknown", host: str = "localhost") -> int:
        """Import a whole table (e.g. the study's JSON) in one transaction; the table's own
        kinds and hosts win over `kind` and `host`. Returns the number of entries written."""
        count = 0
        now = time.time()
        with self._write() as db:
            for name, rows in table.entries.items():
                key = DeviceKey(name, table.kinds.get(name, kind), table.hosts.get(name, host))
                for e in rows:
                    db.execute(
                        "INSERT OR REPLACE INTO batch_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (*_key(key), table.network, e.batch, e.exec_ms, e.io_ms, 1, now),
                    )
                    count += 1
                if name in table.max_batch:
                    db.execute(
                        "INSERT OR REPLACE INTO device_limits VALUES (?, ?, ?, ?, ?, ?)",
                        (*_key(key), table.network, table.max_batch[name], now),
                    )
        return count

    def networks(self) -> list[str]:
        """Networks that have batch entries, sorted."""
        rows = self._query("SELECT DISTINCT network FROM batch_entries ORDER BY network")
        return [r[0] for r in rows]

    def devices(self, network: str) -> list[DeviceKey]:
        """Devices with batch entries for `network`, sorted by name, kind, host."""
        rows = self._query(
            "SELECT DISTINCT device, kind, host FROM batch_entries WHERE network = ? "
            "ORDER BY device, kind, host",
            (network,),
        )
        return [DeviceKey(*r) for r in rows]

    def resolve(self, network: str, device: DeviceKey | str) -> DeviceKey:
        """The stored identity for `device`; a bare name must match exactly one identity."""
        if isinstance(device, DeviceKey):
            return device
        known = self.devices(network)
        hits = [k for k in known if k.name == device]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            names = sorted({k.name for k in known})
            raise ManipleError(
                f"no batch entries for device {device!r} and network {network!r} in {self.path}"
                + (f"; devices there: {', '.join(names)}" if names else "; profile it first")
            )
        raise ManipleError(
            f"device name {device!r} is measured on several machines for {network!r}: "
            f"{', '.join(str(k) for k in hits)}; say which one (kind and host)"
        )

    def entries(self, device: DeviceKey, network: str) -> tuple[PerfEntry, ...]:
        """Entries of one device and network, by batch size."""
        rows = self._query(
            "SELECT batch, exec_ms, io_ms FROM batch_entries "
            "WHERE device = ? AND kind = ? AND host = ? AND network = ? ORDER BY batch",
            (*_key(device), network),
        )
        return tuple(PerfEntry(*r) for r in rows)

    def perf_table(
        self, network: str, devices: Sequence[DeviceKey | str] | None = None
    ) -> PerfTable:
        """The stored table of `network` for `devices` (all measured devices when None).

        Where a device name occurs on several hosts, names in the table become
        "name@host" so that they stay apart.
        """
        keys = [self.resolve(network, d) for d in devices] if devices else self.devices(network)
        if not keys:
            have = self.networks()
            raise ManipleError(
                f"no batch table for network {network!r} in {self.path}"
                + (f"; networks there: {', '.join(have)}" if have else "; the store is empty")
                + ". Profile it first, or import a table with `maniple table import`."
            )
        names = [k.name for k in keys]
        entries, max_batch, kinds, hosts = {}, {}, {}, {}
        for key in keys:
            label = key.name if names.count(key.name) == 1 else f"{key.name}@{key.host}"
            rows = self.entries(key, network)
            if not rows:
                raise ManipleError(
                    f"no batch entries for {key} and network {network!r} in {self.path}; "
                    "profile it first"
                )
            entries[label], kinds[label], hosts[label] = rows, key.kind, key.host
            limit = self.limit(key, network)
            if limit is not None:
                max_batch[label] = limit
        return PerfTable(
            network, entries, max_batch, kinds, hosts, source=f"maniple profile store {self.path}"
        )

    def largest_batch_measured(self, device: DeviceKey, network: str) -> int:
        """The largest batch size stored for `device` and `network`; 0 when none (profiling
        resumes after it, as the study's profiler does)."""
        rows = self._query(
            "SELECT MAX(batch) FROM batch_entries "
            "WHERE device = ? AND kind = ? AND host = ? AND network = ?",
            (*_key(device), network),
        )
        return rows[0][0] or 0

    def delete_entries(
        self, network: str, device: DeviceKey | None = None, batches: Iterable[int] | None = None
    ) -> int:
        """Delete batch entries of `network` (one device's, and only `batches`, when given);
        returns how many rows went. A device's limit goes with all of its entries."""
        where, args = "network = ?", [network]
        if device is not None:
            where += " AND device = ? AND kind = ? AND host = ?"
            args += list(_key(device))
        with self._write() as db:
            if batches is None:
                n = db.execute(f"DELETE FROM batch_entries WHERE {where}", args).rowcount
                db.execute(f"DELETE FROM device_limits WHERE {where}", args)
                return n
            n = 0
            for b in batches:
                n += db.execute(
                    f"DELETE FROM batch_entries WHERE {where} AND batch = ?", [*args, b]
                ).rowcount
            return n

    # -- limits -------------------------------------------------------------------------

    def set_limit(self, device: DeviceKey, network: str, max_batch: int | None) -> None:
        """Record the largest batch `device` can run for `network` (None clears it)."""
        with self._write() as db:
            if max_batch is None:
                db.execute(
                    "DELETE FROM device_limits "
                    "WHERE device = ? AND kind = ? AND host = ? AND network = ?",
                    (*_key(device), network),
                )
                return
            if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 0:
                raise ManipleError(f"max_batch must be an integer >= 0, got {max_batch!r}")
            db.execute(
                "INSERT OR REPLACE INTO device_limits VALUES (?, ?, ?, ?, ?, ?)",
                (*_key(device), network, max_batch, time.time()),
            )

    def limit(self, device: DeviceKey, network: str) -> int | None:
        """The recorded largest batch, or None when no limit was hit."""
        rows = self._query(
            "SELECT max_batch FROM device_limits "
            "WHERE device = ? AND kind = ? AND host = ? AND network = ?",
            (*_key(device), network),
        )
        return rows[0][0] if rows else None

    # -- generic costs (Legion's matrices) ----------------------------------------------

    def put_cost(
        self,
        device: DeviceKey,
        network: str,
        input_shape: str,
        matrix: str,
        first_unit: int,
        last_unit: int,
        band_rows: int,
        ms: float,
        repeats: int = 1,
    ) -> None:
        """Record one cost cell: `matrix` ('S', 'E', 'R' or 'group') for units
        first..last on a band of `band_rows` rows, with input shape text like "1x3x224x224"."""
        _check_matrix(matrix)
        if not isinstance(ms, (int, float)) or not ms >= 0 or ms == float("inf"):
            raise ManipleError(f"cost must be a finite number of ms >= 0, got {ms!r}")
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO costs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*_key(device), network, input_shape, matrix, first_unit, last_unit, band_rows,
                 float(ms), int(repeats), time.time()),
            )  # fmt: skip

    def get_cost(
        self,
        device: DeviceKey,
        network: str,
        input_shape: str,
        matrix: str,
        first_unit: int,
        last_unit: int,
        band_rows: int,
    ) -> float | None:
        """The stored cost cell, or None when it was never measured."""
        _check_matrix(matrix)
        rows = self._query(
            "SELECT ms FROM costs WHERE device = ? AND kind = ? AND host = ? AND network = ? "
            "AND input_shape = ? AND matrix = ? AND first_unit = ? AND last_unit = ? "
            "AND band_rows = ?",
            (*_key(device), network, input_shape, matrix, first_unit, last_unit, band_rows),
        )
        return rows[0][0] if rows else None

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _corrupt(self.path, exc) from None


# -- opening safely ---------------------------------------------------------------------


def _key(device: DeviceKey) -> tuple[str, str, str]:
    if not isinstance(device, DeviceKey):
        raise ManipleError(f"expected a DeviceKey(name, kind, host), got {device!r}")
    return device.name, device.kind, device.host


def _check_matrix(matrix: str) -> None:
    if matrix not in MATRICES:
        raise ManipleError(f"cost matrix must be one of {', '.join(MATRICES)}; got {matrix!r}")


def _table_names(db: sqlite3.Connection) -> list[str]:
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    return [r[0] for r in rows.fetchall()]


def _corrupt(path: Path, exc: Exception) -> ManipleError:
    return ManipleError(
        f"profile store {str(path)!r} is damaged or not a database ({exc}); it was left as it "
        "is: move it away to start a new store, or pass another file with --profile-db"
    )


def _check_existing(path: Path) -> None:
    """Refuse, without touching it, a file that is not a maniple store of this version.

    Read only: the header bytes, then the `meta` table through a read-only connection.
    A missing or empty file is fine (a new store is made there).
    """
    if not path.exists():
        return
    if path.is_dir():
        raise ManipleError(
            f"profile store {str(path)!r} is a directory; pass a file path with --profile-db"
        )
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise ManipleError(f"cannot read profile store {str(path)!r}: {exc.strerror}") from None
    if not head:
        return
    fix = "it was left as it is; pass another file with --profile-db, or move this one away"
    if head != _SQLITE_MAGIC:
        raise ManipleError(
            f"{str(path)!r} is not a maniple profile store (not an SQLite file); {fix}"
        )
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, exc) from None
    try:
        tables = _table_names(db)
        if not tables:
            return
        if "meta" not in tables:
            raise ManipleError(
                f"{str(path)!r} is an SQLite database of another program "
                f"(tables: {', '.join(tables[:8])}), not a maniple profile store; {fix}"
            )
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, exc) from None
    finally:
        db.close()
    if meta.get("schema") != SCHEMA_NAME:
        raise ManipleError(
            f"{str(path)!r} is an SQLite database of another program (its meta table says "
            f"schema {meta.get('schema')!r}), not a maniple profile store; {fix}"
        )
    if meta.get("schema_version") != str(SCHEMA_VERSION):
        raise ManipleError(
            f"profile store {str(path)!r} has schema version {meta.get('schema_version')}, this "
            f"maniple reads version {SCHEMA_VERSION}; {fix} "
            "(or use the maniple version that wrote it)"
        )
