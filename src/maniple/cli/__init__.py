"""The command line: a thin layer over the same API a Python user calls (`maniple --help`)."""

from maniple.cli.main import main

__all__ = ["main"]
