"""Value checks for cluster specs: one rule per field, shared by files and shorthands.

Why a module of its own: a cluster file's `ray: auto` and the shorthand `--ray auto` (and
likewise the dilation and the timeout) must be checked by the same rule, so both parsers
(cluster.spec for files, cluster.shorthand for the command line) import these. Each check
takes the value and the field's name (for messages that name it) and returns the value
normalised, or raises a ManipleError saying what was expected.
"""

from __future__ import annotations

import math
import re
from typing import Any

from maniple.errors import ManipleError
from maniple.precision import parse_precision


def check_name(value: Any, field: str) -> str:
    if not isinstance(value, str | int) or not str(value).strip():
        raise ManipleError(f"must be a non-empty string, got {value!r}")
    return str(value).strip()


def check_precision(value: Any, field: str) -> str:
    return parse_precision(str(value), "")


def check_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ManipleError(f"must be true or false, got {value!r}")
    return value


def check_positive_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ManipleError(f"must be a whole number >= 1, got {value!r}")
    return value


def check_index(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ManipleError(f"must be a whole number >= 0, got {value!r}")
    return value


def check_positive_number(value: Any, field: str, zero_ok: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ManipleError(f"must be a number, got {value!r}")
    if value < 0 or (value == 0 and not zero_ok):
        raise ManipleError(f"must be {'>= 0' if zero_ok else '> 0'}, got {value!r}")
    return float(value)


def check_ray_target(value: Any, field: str) -> str:
    text = str(value).strip().lower()
    if text == "cuda":
        text = "cuda:0"
    if text != "cpu" and not re.fullmatch(r"cuda:\d+", text):
        raise ManipleError(f"must be cpu or cuda:N, got {value!r}")
    return text


def check_ray_address(value: Any, field: str) -> str:
    text = str(value).strip()
    if text in ("local", "auto") or re.fullmatch(r"(ray://)?[\w.\-]+:\d{1,5}", text):
        return text
    raise ManipleError(
        f"{field} must be local, auto, or HOST:PORT of a Ray cluster's GCS, got {value!r}"
    )


def check_dilation(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 1
    ):
        raise ManipleError(
            f"{field} must be a finite number >= 1 (1 = real time), got {value!r}; e.g. 4"
        )
    return float(value)


MAX_TIMEOUT_S = 86400.0  # a day: beyond it a silent device is a hang, not a slow board


def check_timeout(value: Any, field: str) -> float:
    """A timeout in seconds: finite, > 0 and at most a day."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= MAX_TIMEOUT_S
    ):
        raise ManipleError(
            f"{field} must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], got {value!r}; e.g. 30"
        )
    return float(value)
