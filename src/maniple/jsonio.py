"""Reading versioned JSON documents field by field, with errors that name the field.

Plans and cost tables cross process and disk boundaries as JSON. A file edited by hand or
written by another version must fail with a message naming the document, the field and
what was expected, never with a KeyError or a numpy broadcasting error deep inside.
"""

from __future__ import annotations

import json
import math
from typing import Any

from maniple.errors import ManipleError


def load_document(text: str | bytes, schema: str) -> dict[str, Any]:
    """Parse `text` as a JSON object whose "schema" is exactly `schema` (e.g. "maniple.x/1")."""
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManipleError(f"{schema}: not valid JSON ({exc})") from None
    return check_schema(doc, schema)


def check_schema(doc: Any, schema: str) -> dict[str, Any]:
    """`doc` itself, once it is a dict whose "schema" field is exactly `schema`."""
    if not isinstance(doc, dict):
        raise ManipleError(f"{schema}: expected a JSON object, got {type(doc).__name__}")
    found = doc.get("schema")
    if found != schema:
        raise ManipleError(
            f"{schema}: field 'schema' is {found!r}, expected {schema!r} "
            "(written by another version of maniple? re-create it with this one)"
        )
    return doc


def field(doc: dict[str, Any], name: str, schema: str) -> Any:
    """The value of a required field."""
    if name not in doc:
        raise ManipleError(f"{schema}: missing field {name!r}")
    return doc[name]


def as_str(value: Any, name: str, schema: str) -> str:
    if not isinstance(value, str):
        raise ManipleError(f"{schema}: field {name!r} must be a string, got {value!r}")
    return value


def as_int(value: Any, name: str, schema: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManipleError(f"{schema}: field {name!r} must be an integer, got {value!r}")
    return value


def as_float(value: Any, name: str, schema: str) -> float:
    """A finite number (JSON has no NaN or infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ManipleError(f"{schema}: field {name!r} must be a finite number, got {value!r}")
    return float(value)


def as_list(value: Any, name: str, schema: str) -> list[Any]:
    if not isinstance(value, list):
        raise ManipleError(f"{schema}: field {name!r} must be a list, got {value!r}")
    return value


def as_pair(value: Any, name: str, schema: str) -> tuple[int, int]:
    """A [first, second] pair of integers."""
    if (
        not isinstance(value, list)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
    ):
        raise ManipleError(f"{schema}: field {name!r} must be a pair of integers, got {value!r}")
    return (value[0], value[1])
