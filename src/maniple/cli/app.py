"""The `maniple` app and what every command shares: the console, the JSON printer and
the progress bar. Commands live one file per group beside this one; `maniple.cli.main`
puts them together."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from maniple.cli.boundary import EXIT_CODES_HELP
from maniple.errors import ManipleError

app = typer.Typer(
    help="Run one network's inference on devices that differ in speed, faster than any alone.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
_document: TextIO | None = None  # the real stdout while a --json command runs


def set_document_stream(stream: TextIO | None) -> None:
    """Where `print_json` writes (the boundary's saved stdout); None: sys.stdout."""
    global _document
    _document = stream


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
    out = _document if _document is not None else sys.stdout
    out.write(text + "\n")
    out.flush()


def check_writable(path: Path, option: str) -> None:
    """Fail before any work when the file `path` cannot be written, so that a finished
    run is never lost to a bad output path."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir() or not parent.is_dir():
        raise ManipleError(
            f"{option} {str(path)!r}: {'is a directory' if path.is_dir() else 'no such folder'}"
            "; give a file path in an existing folder"
        )
    if not os.access(path if path.exists() else parent, os.W_OK):
        raise ManipleError(
            f"{option} {str(path)!r} cannot be written (permission denied); "
            "give a path you can write to"
        )


def check_writable_dir(path: Path, option: str) -> None:
    """Fail before any work when the folder `path` cannot be made or written (it is made
    now: the work would make it anyway)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        writable = os.access(path, os.W_OK)
    except OSError as exc:
        raise ManipleError(
            f"{option} {str(path)!r} cannot be made ({exc.strerror}); give a folder you can "
            "write to"
        ) from None
    if not writable:
        raise ManipleError(f"{option} {str(path)!r} is read-only; give a folder you can write to")


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

NetworkOpt = Annotated[str, typer.Option(help="Zoo name or package.module:callable.")]
EmulateOpt = Annotated[
    str | None,
    typer.Option(help="Emulated boards, e.g. 3xfirefly-rk3399+2xodroid-xu4."),
]
LinkMbpsOpt = Annotated[
    float | None, typer.Option(help="Bandwidth of every emulated board's link, Mbit/s.")
]
DilationOpt = Annotated[
    float | None,
    typer.Option(help="Time dilation for emulated boards (default: the host's)."),
]
InputShapeOpt = Annotated[str | None, typer.Option(help="C,H,W input; needed for module specs.")]
ReprofileOpt = Annotated[
    bool,
    typer.Option(help="Profile again even where the store holds costs for these devices."),
]
"""Options `maniple spatial` and `maniple stream` share: the network and the boards."""

TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        help="Seconds a device may stay silent (dead, stopped or hung) before the run stops "
        "with an error naming it.",
    ),
]
"""The `--timeout` option of every command that waits for devices."""

PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        help="fp32 (strict, the default), tf32, bf16 or fp16, for every device whose "
        "cluster entry names no precision of its own; emulated boards stay fp32.",
    ),
]
MemoryFormatOpt = Annotated[
    str,
    typer.Option(
        "--memory-format",
        help="auto (channels-last on a GPU below fp32), contiguous or channels-last.",
    ),
]
CompileOpt = Annotated[
    str,
    typer.Option(
        "--compile",
        help="off, default or max-autotune-no-cudagraphs (torch.compile), or cuda-graphs; "
        "GPUs only, built once per shape, the build time reported and never timed.",
    ),
]


def exec_mode(precision: str, memory_format: str, compile_mode: str) -> Any:
    """The run's ExecMode from the three options (a bad value names the valid ones)."""
    from maniple.precision import ExecMode, parse_precision

    return ExecMode(parse_precision(precision), memory_format, compile_mode)


DEFAULT_TIMEOUT_S = 30.0
