"""`maniple`'s entry point: every command group registered on the app, run inside the one
error boundary (`maniple.cli.boundary`): errors as one line, exit codes a script can
trust, and under `--json` nothing but the document on stdout."""

from __future__ import annotations

import logging
import os
import sys

import typer

from maniple.cli import batch, bench, demo, devices, graph, spatial, stream, table, testbed
from maniple.cli.app import app, err_console, set_document_stream
from maniple.cli.boundary import run_guarded

for _group in (table, devices, batch, graph, spatial, stream, bench, testbed, demo):
    _group.register(app)


def _say(line: str) -> None:
    err_console.print(line, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app on `argv` (default: the command line) and exit with the
    boundary's code (0 done, 1 check failed, 2 user error, 3 bug, 130 interrupted)."""
    args = sys.argv[1:] if argv is None else argv
    sys.exit(run_guarded(typer.main.get_command(app), args, _say, set_document_stream))


def console() -> None:
    """The `maniple` command: `main`, except that after Ctrl-C, once the command has closed
    its devices and Ray and printed its summary, the process ends at once. Why: tearing
    down an interpreter that has loaded torch and Ray takes over a second here, and a user
    who pressed Ctrl-C waits for the prompt. Only the command's own process does this;
    `main()` called from Python always returns through SystemExit."""
    try:
        main()
    except SystemExit as exc:
        if exc.code == 130:
            sys.stdout.flush()
            sys.stderr.flush()
            logging.shutdown()
            os._exit(130)
        raise


if __name__ == "__main__":
    main()
