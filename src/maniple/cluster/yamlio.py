"""YAML that remembers line numbers, so that cluster-file errors can name the line.

Why not plain yaml.safe_load: it forgets where each value came from, and an error such as
"devices[3].preset: unknown board" is much easier to fix with "cluster.yaml:14:" in
front of it. Only safe YAML (no Python tags) is accepted.
"""

from __future__ import annotations

from typing import Any

import yaml

from maniple.errors import ManipleError


class LineDict(dict):  # type: ignore[type-arg]
    """A mapping from YAML with the 1-based line of itself and of each key."""

    line: int = 0
    key_lines: dict[str, int]


class LineList(list):  # type: ignore[type-arg]
    """A sequence from YAML with the 1-based line of itself and of each item."""

    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


class _LineError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise _LineError(key_node.start_mark.line + 1, f"keys must be strings, got {key!r}")
        if key in out:
            raise _LineError(key_node.start_mark.line + 1, f"key {key!r} is given twice")
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_yaml(text: str, source: str) -> Any:
    """Parse `text`; YAML syntax errors name `source` and the line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ManipleError(f"{where}: not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ManipleError(f"{source}: not valid YAML: {exc}") from None
    except _LineError as exc:
        raise ManipleError(f"{source}:{exc.line}: {exc}") from None


def line_of(container: Any, key: str | int | None = None) -> int | None:
    """The line of `container[key]` (or of the container), if known."""
    if isinstance(container, LineDict):
        return container.key_lines.get(key, container.line) if key is not None else container.line
    if isinstance(container, LineList):
        if isinstance(key, int) and 0 <= key < len(container.item_lines):
            return container.item_lines[key]
        return container.line
    return None
