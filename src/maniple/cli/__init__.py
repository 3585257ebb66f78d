"""The command line: a thin layer over the same API a Python user calls (`maniple --help`).

`app` is the typer app with every command group registered; `main` runs it with errors as
one line."""

from maniple.cli.main import app, main

__all__ = ["app", "main"]
