"""`maniple`'s entry point: every command group registered on the app, errors as one line.

`ManipleError`s are printed as one clear line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import sys

from rich.markup import escape

from maniple.cli import batch, bench, demo, devices, graph, spatial, table
from maniple.cli.app import app, err_console
from maniple.errors import ManipleError

for _group in (table, devices, batch, graph, spatial, bench, demo):
    _group.register(app)


def main() -> None:
    """Entry point: run the app, turning ManipleError into a clear message and exit 2."""
    try:
        app()
    except ManipleError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
