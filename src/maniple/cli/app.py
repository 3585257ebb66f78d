"""The `maniple` app and what every command shares: the console, the JSON printer and
the progress bar. Commands live one file per group beside this one; `maniple.cli.main`
puts them together."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from maniple.errors import ManipleError

app = typer.Typer(
    help="Run one network's inference on devices that differ in speed, faster than any alone.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def print_json(data: Any) -> None:
    """Machine-readable output: strict JSON on stdout, nothing else.

    Strict: NaN and Infinity are not JSON, and parsers that follow the standard refuse
    them, so a non-finite number is an error here rather than a bare token in the output."""
    try:
        text = json.dumps(data, indent=2, allow_nan=False)
    except ValueError as exc:
        raise ManipleError(
            f"the result holds a non-finite number ({exc}); it cannot be written as JSON. "
            "This is a bug: please report it with the command you ran"
        ) from None
    sys.stdout.write(text + "\n")


def progress_bar() -> Progress:
    """The bar long commands show on the terminal (gone when done, never on stdout's JSON)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=True,
        console=err_console,
    )


def split_names(values: list[str] | None) -> list[str] | None:
    """`--device a,b --device c` -> [a, b, c]; None when no device was named."""
    names = [n.strip() for v in values or [] for n in v.split(",") if n.strip()]
    return names or None


ProfileDbOpt = Annotated[
    Path | None,
    typer.Option(
        "--profile-db",
        help="Profile store (SQLite file); default: profiles.sqlite in the user's cache dir.",
    ),
]
"""The `--profile-db` option every command that keeps measurements shares."""
