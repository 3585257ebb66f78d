"""Errors a user can act on, shared by every layer of maniple.

Every message names the bad value, the limit and the fix; unknown names come with the
list of valid ones and the closest match.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ManipleError(Exception):
    """Base of every error maniple raises on purpose; the CLI prints these without a traceback."""


class UnknownNameError(ManipleError, KeyError):
    """A name (model, device, planner, ...) that maniple does not know."""

    def __init__(self, what: str, name: str, valid: Iterable[str]) -> None:
        self.what, self.name, self.valid = what, name, sorted(valid)
        super().__init__(unknown_name_message(what, name, self.valid))

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


def unknown_name_message(what: str, name: str, valid: Iterable[str]) -> str:
    """`unknown model 'vgg16'; did you mean 'vgg-16'? Valid: ...`."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return f"unknown {what} {name!r}{hint} Valid choices: {', '.join(valid)}"
