"""The CLI's one error boundary, and the guard that keeps stdout for the JSON document.

Why one place: a user must never see a traceback they did not ask for, and a script
must be able to trust the exit code and, under `--json`, stdout. So every command runs
inside `run_guarded`:

- exit 0: done; 1: an output check failed; 2: a user error (a `ManipleError`, printed as
  one `error: ...` line, or a usage error); 3: a bug in maniple, printed as one line
  with the path of a log file that holds the traceback; 130: interrupted (Ctrl-C).
- under `--json`, file descriptor 1 points at stderr while the command runs, so whatever
  a library, Ray or a worker process writes to stdout lands on stderr; the document
  alone is written to the real stdout (`maniple.cli.app.print_json`).
"""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from rich.markup import escape

from maniple.errors import ManipleError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USER_ERROR, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 an output check failed; 2 a user error (the message says the "
    "value, the limit and the fix); 3 a bug in maniple (one line and the path of a log with "
    "the traceback); 130 interrupted."
)


def log_dir() -> Path:
    """Where tracebacks of unexpected errors go: $MANIPLE_CACHE_DIR/logs, else the user
    cache dir's logs/ (the same root as the profile store)."""
    env = os.environ.get("MANIPLE_CACHE_DIR")
    if env:
        return Path(env) / "logs"
    import platformdirs

    return Path(platformdirs.user_cache_dir("maniple")) / "logs"


def write_crash_log(exc: BaseException, argv: Sequence[str]) -> Path:
    """Write the command line and `exc`'s traceback to a new log file; its path.

    Falls back to the temp dir when the cache dir cannot be written, so the traceback is
    never lost."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"maniple-{stamp}-{os.getpid()}.log"
    text = f"maniple {' '.join(argv)}\n\n" + "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__)
    )
    for folder in (log_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text)
            return path
        except OSError:
            continue
    raise OSError("no folder to write the crash log to")


@contextmanager
def stdout_for_document(enabled: bool) -> Iterator[TextIO | None]:
    """While enabled, point fd 1 (and so sys.stdout, child processes and C libraries) at
    stderr, and yield a stream on the real stdout for the one document."""
    if not enabled:
        yield None
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    document = os.fdopen(os.dup(saved), "w", encoding="utf-8")
    try:
        yield document
    finally:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 1)
        os.close(saved)
        try:
            document.close()
        except OSError:  # the reader went away (a closed pipe): nothing more to say
            pass


def run_guarded(
    command: Any,
    argv: Sequence[str],
    say: Callable[[str], None],
    set_document: Callable[[TextIO | None], None],
) -> int:
    """Run the click/typer `command` on `argv` inside the boundary; the exit code (see the
    module doc).

    The command runs in standalone mode, so usage errors, --help and `typer.Exit` are
    handled by the command-line library itself (whichever click it carries) and arrive
    here as SystemExit; what escapes it is maniple's own (`ManipleError`) or a bug.
    `say` prints one line on stderr (rich markup allowed); `set_document` tells the JSON
    printer where the document goes."""
    json_mode = "--json" in argv
    with stdout_for_document(json_mode) as document:
        set_document(document)
        try:
            command.main(args=list(argv), prog_name="maniple", standalone_mode=True)
            return EXIT_OK
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if code == EXIT_INTERRUPTED:
                say(_INTERRUPTED)
            return code
        except ManipleError as exc:
            say(f"[bold red]error:[/] {escape(str(exc))}")
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            say(_INTERRUPTED)
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # the reader of stdout went away: nothing left to tell it
            return EXIT_USER_ERROR
        except Exception as exc:  # noqa: BLE001 - the boundary: a bug, reported in one line
            try:
                where = f"the traceback is in {write_crash_log(exc, argv)}"
            except OSError:
                where = "the traceback could not be written to a log"
            say(
                f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(str(exc))} "
                f"— a bug in maniple; {escape(where)}. Please report it with the command "
                "you ran"
            )
            return EXIT_BUG
        finally:
            set_document(None)


_INTERRUPTED = "[bold red]interrupted[/] (Ctrl-C); measurements already stored are kept"
