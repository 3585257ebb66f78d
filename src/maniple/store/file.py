"""The profile store's file: one versioned SQLite file that every measurement lands in.

Profiling is slow (minutes per device and network), so measurements are kept and reused:
a second run plans at once, an interrupted run resumes where it stopped. Rows are keyed by
the device's identity (name, kind, host), never by name alone, so that two machines'
"cuda:0" do not overwrite each other. The file carries a schema version; a file of another
version, another program's SQLite database or a file that is not SQLite at all is refused
with a message saying what it is and what to do, and is never modified.

This base class owns the file, its schema and the rows both wings share: cost cells and
versioned JSON documents (the spatial wing's cached cost tables). The batch wing's rows
(performance tables, device limits) are in `maniple.batch.store.ProfileStore`, a subclass.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import platformdirs

from maniple.errors import ManipleError
from maniple.store.keys import DeviceKey

SCHEMA_NAME = "maniple.profile_store"
SCHEMA_VERSION = 2
READABLE_VERSIONS = ("1", "2")
"""Version 1 files are upgraded in place on open (version 2 adds the `documents` table)."""
MATRICES = ("S", "E", "R", "group")
"""Kinds of rows in the generic `costs` table (Legion's Set/Run/Get matrices, whole groups)."""

_SQLITE_MAGIC = b"SQLite format 3\x00"

_DOCUMENTS = """
CREATE TABLE documents (
    kind TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL, stored_at REAL NOT NULL,
    PRIMARY KEY (kind, key)
);
"""

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
{_DOCUMENTS}
INSERT INTO meta VALUES ('schema', '{SCHEMA_NAME}'), ('schema_version', '{SCHEMA_VERSION}');
COMMIT;
"""

_UPGRADE_FROM_1 = f"""
BEGIN;
{_DOCUMENTS}
UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version';
COMMIT;
"""


def default_store_path() -> Path:
    """$MANIPLE_PROFILE_DB, else `profiles.sqlite` in the user's cache directory (e.g.
    ~/.cache/maniple/): where every command keeps its measurements unless --profile-db
    says otherwise."""
    env = os.environ.get("MANIPLE_PROFILE_DB")
    if env:
        return Path(env)
    return Path(platformdirs.user_cache_dir("maniple")) / "profiles.sqlite"


class StoreFile:
    """A versioned SQLite file: its lifecycle, transactions, cost cells and documents.

    Every write commits at once, in its own transaction, so a profiling run that crashes
    or is interrupted keeps everything it already measured.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        _check_existing(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0)
            tables = _table_names(self._db)
            if not tables:
                self._db.executescript(_TABLES)  # one transaction: all tables and meta, or none
            elif "documents" not in tables:
                self._db.executescript(_UPGRADE_FROM_1)  # a version 1 file, checked above
        except sqlite3.DatabaseError as exc:
            raise _corrupt(self.path, exc) from None

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the file (the store is unusable afterwards)."""
        self._db.close()

    def __enter__(self) -> StoreFile:  # noqa: PYI034
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

    # -- documents (versioned JSON, e.g. cached cost tables) -----------------------------

    def put_document(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        """Store (or replace) JSON document `doc` under (kind, key); one transaction."""
        text = json.dumps(doc, allow_nan=False)
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?)",
                (kind, key, text, time.time()),
            )

    def get_document(self, kind: str, key: str) -> dict[str, Any] | None:
        """The document stored under (kind, key), or None. A row that is not a JSON object
        is reported as damage, never evaluated."""
        rows = self._query("SELECT doc FROM documents WHERE kind = ? AND key = ?", (kind, key))
        if not rows:
            return None
        try:
            doc = json.loads(rows[0][0])
        except json.JSONDecodeError as exc:
            raise _corrupt(self.path, exc) from None
        if not isinstance(doc, dict):
            raise _corrupt(self.path, ValueError(f"document {kind}/{key} is not an object"))
        return doc

    def delete_documents(self, kind: str) -> int:
        """Delete every document of `kind`; returns how many went."""
        with self._write() as db:
            return db.execute("DELETE FROM documents WHERE kind = ?", (kind,)).rowcount

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
    try:
        exists = path.exists()
    except OSError as exc:  # e.g. a name too long for the file system
        raise ManipleError(
            f"profile store {str(path)[:120]!r}: {exc.strerror}; pass a usable file path "
            "with --profile-db"
        ) from None
    if not exists:
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
    if meta.get("schema_version") not in READABLE_VERSIONS:
        raise ManipleError(
            f"profile store {str(path)!r} has schema version {meta.get('schema_version')}, this "
            f"maniple reads version {SCHEMA_VERSION}; {fix} "
            "(or use the maniple version that wrote it)"
        )
