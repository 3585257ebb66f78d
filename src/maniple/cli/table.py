"""CLI commands for the batch performance tables: `plan-batch` and `table ...`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from maniple.batch.perf_table import PerfTable
from maniple.cli.app import console, err_console, print_json, split_names
from maniple.errors import ManipleError, UnknownNameError

# -- batch split: plan-batch and the `table` commands (issue 5) --------------------------

_PROFILE_DB_HELP = (
    "Profile store (SQLite file) to use; default: profiles.sqlite in the user's cache directory."
)
table_app = typer.Typer(
    help="Show, export, edit or import batch performance tables kept in the profile store.",
    no_args_is_help=True,
)


def _batch_tables(
    tables: Path | None, network: str | None, profile_db: Path | None
) -> list[PerfTable]:
    """The tables `plan-batch` and `table show` work on: from JSON file(s), a store file
    given as --tables, or the profile store."""
    from maniple.batch.perf_table import load_tables
    from maniple.batch.store import ProfileStore

    if tables is not None and tables.is_file():
        with tables.open("rb") as f:
            if f.read(16) == b"SQLite format 3\x00":  # a profile store given as --tables
                profile_db, tables = tables, None
    if tables is None:
        with ProfileStore(profile_db) as store:
            names = [network] if network else store.networks()
            if not names:
                raise ManipleError(
                    f"the profile store {store.path} holds no batch tables; profile a device "
                    "first, import a table with `maniple table import`, or pass --tables"
                )
            return [store.perf_table(n) for n in names]
    found = load_tables(tables)
    if network is None:
        return list(found.values())
    if network not in found:
        raise UnknownNameError("network", network, found)
    return [found[network]]


def register(app: typer.Typer) -> None:
    """Add this file's commands to the main app."""
    app.add_typer(table_app, name="table")

    @app.command("plan-batch")
    def plan_batch_command(
        batch: int = typer.Option(
            ..., "--batch", "-b", help="Number of images in the batch to split."
        ),
        tables: Path | None = typer.Option(
            None,
            "--tables",
            help="A perf table JSON file (the KCC 2020 study's or maniple's own), a directory of "
            "them, or a profile store file. Default: the profile store (--profile-db).",
        ),
        network: str | None = typer.Option(
            None,
            "--network",
            help="Network to plan; default: every network in --tables / the store.",
        ),
        planner: str = typer.Option(
            "greedy",
            "--planner",
            help="greedy (the study's search), exact (minimum makespan), equal, or single.",
        ),
        device: list[str] | None = typer.Option(
            None,
            "--device",
            "-d",
            help="Plan on these devices only (a name or a unique part of one; comma-separated or "
            "repeated). Default: every device in the table.",
        ),
        profile_db: Path | None = typer.Option(None, "--profile-db", help=_PROFILE_DB_HELP),
        json_out: bool = typer.Option(
            False, "--json", help="Print JSON: one plan object, or a list when several networks."
        ),
    ) -> None:
        """Plan a batch split from performance tables, without running anything."""
        from maniple.batch.planners import plan_batch

        plans = [
            plan_batch(t, batch, planner, split_names(device))
            for t in _batch_tables(tables, network, profile_db)
        ]
        if json_out:
            docs = [p.to_json() for p in plans]
            print_json(docs[0] if len(docs) == 1 else docs)
            return
        for i, p in enumerate(plans):
            if i:
                console.print()
            console.print(str(p), highlight=False, markup=False, soft_wrap=True)

    @table_app.command("show")
    def table_show_command(
        network: str | None = typer.Option(
            None, "--network", help="Network to show; default: all."
        ),
        device: list[str] | None = typer.Option(
            None, "--device", "-d", help="Show only these devices (comma-separated or repeated)."
        ),
        tables: Path | None = typer.Option(
            None, "--tables", help="Show a JSON table file or directory instead of the store."
        ),
        profile_db: Path | None = typer.Option(None, "--profile-db", help=_PROFILE_DB_HELP),
    ) -> None:
        """Print batch tables as the study's print_table.py does.

        A row per batch size, exec and I/O time (ms for the whole batch) per device.
        """
        from rich.table import Table

        for t in _batch_tables(tables, network, profile_db):
            t = t.select(split_names(device))
            grid = Table(title=f"{t.network} (ms for the whole batch)", title_justify="left")
            grid.add_column("batch", justify="right")
            for d in t.devices:
                grid.add_column(f"{d}\nexec", justify="right")
                grid.add_column("io", justify="right")
            by_batch = {d: {e.batch: e for e in t.entries[d]} for d in t.devices}
            for b in sorted({b for rows in by_batch.values() for b in rows}):
                cells = [str(b)]
                for d in t.devices:
                    e = by_batch[d].get(b)
                    cells += [f"{e.exec_ms:.3f}", f"{e.io_ms:.3f}"] if e else ["-", "-"]
                grid.add_row(*cells)
            console.print(grid)
            for d, n in t.max_batch.items():
                console.print(
                    f"{d}: memory limit, largest batch {n}", highlight=False, markup=False
                )

    @table_app.command("export")
    def table_export_command(
        network: str | None = typer.Option(
            None, "--network", help="Network to export (needed when the store holds several)."
        ),
        fmt: str = typer.Option(
            "json", "--format", help="json (maniple's versioned format) or csv."
        ),
        output: Path | None = typer.Option(
            None, "--output", "-o", help="File to write; default: standard output."
        ),
        device: list[str] | None = typer.Option(
            None, "--device", "-d", help="Export only these devices (comma-separated or repeated)."
        ),
        profile_db: Path | None = typer.Option(None, "--profile-db", help=_PROFILE_DB_HELP),
    ) -> None:
        """Export one network's table from the store as JSON or CSV."""
        if fmt not in ("json", "csv"):
            raise UnknownNameError("format", fmt, ["json", "csv"])
        found = _batch_tables(None, network, profile_db)
        if len(found) > 1:
            raise ManipleError(
                f"the store holds several networks ({', '.join(t.network for t in found)}); "
                "pick one with --network"
            )
        t = found[0].select(split_names(device))
        text = json.dumps(t.to_json(), indent=2) + "\n" if fmt == "json" else t.to_csv()
        if output is None:
            sys.stdout.write(text)
        else:
            try:
                output.write_text(text)
            except OSError as exc:
                raise ManipleError(
                    f"--output {str(output)!r} could not be written ({exc.strerror}); give a "
                    "file path you can write, on a disk with room"
                ) from None
            err_console.print(f"wrote {t.network} table to {output}", highlight=False)

    _MAX_BATCH = 2**31 - 1  # what the store's integer column and every planner take

    def _parse_set(value: str) -> tuple[int, float, float]:
        """`BATCH=EXEC_MS[,IO_MS]` -> (batch, exec_ms, io_ms)."""
        try:
            batch_text, times = value.split("=", 1)
            parts = [float(x) for x in times.split(",")]
            if len(parts) not in (1, 2):
                raise ValueError
            return int(batch_text), parts[0], parts[1] if len(parts) == 2 else 0.0
        except ValueError:
            raise ManipleError(
                f"--set {value!r}: expected BATCH=EXEC_MS or BATCH=EXEC_MS,IO_MS, "
                "e.g. --set 64=812.5,3.1"
            ) from None

    @table_app.command("edit")
    def table_edit_command(
        network: str = typer.Option(..., "--network", help="Network whose table to edit."),
        device: str = typer.Option(..., "--device", "-d", help="Device whose entries to edit."),
        set_: list[str] | None = typer.Option(
            None,
            "--set",
            help="Set an entry: BATCH=EXEC_MS[,IO_MS] (ms for the whole batch); repeatable.",
        ),
        drop: list[int] | None = typer.Option(
            None, "--drop", help="Drop the entry of BATCH; repeatable."
        ),
        kind: str | None = typer.Option(
            None,
            "--kind",
            help="Device kind, for a device not yet in the store (default 'unknown').",
        ),
        host: str | None = typer.Option(
            None,
            "--host",
            help="Device host, for a device not yet in the store (default 'localhost').",
        ),
        profile_db: Path | None = typer.Option(None, "--profile-db", help=_PROFILE_DB_HELP),
    ) -> None:
        """Set or drop entries of one device's table in the store."""
        from maniple.batch.store import ProfileStore
        from maniple.store import DeviceKey

        if not set_ and not drop:
            raise ManipleError(
                "nothing to do: give --set BATCH=EXEC_MS[,IO_MS] and/or --drop BATCH"
            )
        sets = [_parse_set(v) for v in set_ or []]
        for b in [*(d for d in drop or []), *(b for b, _, _ in sets)]:
            if not 1 <= b <= _MAX_BATCH:
                raise ManipleError(
                    f"batch {b} is out of range: a table's batch sizes are 1 to {_MAX_BATCH:,}"
                )
        with ProfileStore(profile_db) as store:
            if kind is not None or host is not None:
                key = DeviceKey(device, kind or "unknown", host or "localhost")
            elif any(k.name == device for k in store.devices(network)):
                key = store.resolve(network, device)
            else:
                key = DeviceKey(device)
            dropped = store.delete_entries(network, key, drop) if drop else 0
            for b, exec_ms, io_ms in sets:
                store.put_batch_entry(key, network, b, exec_ms, io_ms, repeats=0)
            err_console.print(
                f"{key}, {network}: set {len(sets)} entries, dropped {dropped} in {store.path}",
                highlight=False,
            )

    @table_app.command("import")
    def table_import_command(
        path: Path = typer.Argument(..., help="A perf table JSON file or a directory of them."),
        kind: str = typer.Option(
            "unknown", "--kind", help="Device kind for devices the file does not describe."
        ),
        host: str = typer.Option(
            "localhost", "--host", help="Host for devices the file does not describe."
        ),
        profile_db: Path | None = typer.Option(None, "--profile-db", help=_PROFILE_DB_HELP),
    ) -> None:
        """Copy JSON tables (e.g. the KCC 2020 study's) into the profile store."""
        from maniple.batch.perf_table import load_tables
        from maniple.batch.store import ProfileStore

        found = load_tables(path)
        with ProfileStore(profile_db) as store:
            for t in found.values():
                n = store.put_table(t, kind=kind, host=host)
                err_console.print(
                    f"imported {n} entries of {t.network} into {store.path}", highlight=False
                )

    # -- devices and probe (issue 4) ----------------------------------------------------------
