"""The batch wing's rows of the profile store: performance tables and device limits.

`ProfileStore` is the store file (`maniple.store.StoreFile`: schema, versions, safe
opening, cost cells, documents) with the batch study's tables on top: every batch size
measured on every device, and the largest batch a device could run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from maniple.batch.perf_entries import PerfEntry
from maniple.batch.perf_table import PerfTable
from maniple.errors import ManipleError
from maniple.store.file import StoreFile, _key
from maniple.store.keys import DeviceKey


class ProfileStore(StoreFile):
    """The profile store with the batch study's rows; see the module docstring.

    Every write commits at once, in its own transaction, so a profiling run that crashes
    or is interrupted keeps everything it already measured.
    """

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
