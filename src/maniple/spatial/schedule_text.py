"""A schedule's serial forms, at the level of plain documents: JSON fields and the text table.

`Schedule.to_dict` is the one interchange form. This module reads such a document field by
field (`fields`: every type checked, errors naming the field's path), renders it as an
aligned text table (`render`), and parses that table back into the same document
(`read`), so that `Schedule.parse(str(s)) == s`. Working on documents, not on the
`Schedule` class, keeps this module below `schedule` in the import order.

Text grammar (tokens split on spaces; a name with spaces or quotes is a JSON string):

    spatial schedule SCHEMA
    network: NAME
    devices: NAME ...
    bytes per element: N
    input: CxHxW
    maps: uK CxHxW ...                      (several lines; units in order)
    sync: uK NODE BYTES B                   (one line per sync point, in unit order)
    step group units device in out receive send
    I G FIRST[..LAST] DEVICE LO:HI LO:HI [from SRC MAP[LO:HI] BYTES B]... [to DST ...]...
    tail: DEVICE runs the tail on uK[LO:HI]
    link SRC -> DST: BYTES B                (totals; ignored when read)

MAP is `input` (the network input) or `uK` (unit K's output); `-` marks an empty cell.
"""

from __future__ import annotations

import json
import re
from typing import Any

import maniple.jsonio as jsonio
from maniple.errors import ManipleError

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')
_BARE = re.compile(r'[^\s"]+')
_MAP = re.compile(r"(input|u(\d+))\[(\d+):(\d+)\]")
_MAPS_PER_LINE = 6


# -- JSON fields ----------------------------------------------------------------------------


def fields(doc: Any, schema: str) -> dict[str, Any]:
    """The schedule document's values as plain tuples, each field's type checked.

    Steps come back as dicts with `group`, `device`, `run` (first, last, out_rows,
    in_rows), `receive` and `send` (transfers as (source, dest, unit, rows, bytes)
    tuples); the tail as (device, unit, rows).
    """
    jsonio.check_schema(doc, schema)

    def get(obj: Any, name: str, where: str) -> Any:
        if not isinstance(obj, dict):
            raise ManipleError(f"{schema}: {where or 'document'} must be an object, got {obj!r}")
        path = f"{where}.{name}" if where else name
        if name not in obj:
            raise ManipleError(f"{schema}: missing field {path!r}")
        return obj[name], path

    def one(kind: Any, obj: Any, name: str, where: str = "") -> Any:
        value, path = get(obj, name, where)
        return kind(value, path, schema)

    def shape(value: Any, path: str) -> tuple[int, int, int]:
        items = jsonio.as_list(value, path, schema)
        if len(items) != 3:
            raise ManipleError(f"{schema}: field {path!r} must be [C, H, W], got {value!r}")
        c, h, w = (jsonio.as_int(v, path, schema) for v in items)
        return (c, h, w)

    def transfers(obj: Any, name: str, where: str) -> tuple[tuple[Any, ...], ...]:
        out = []
        for j, t in enumerate(one(jsonio.as_list, obj, name, where)):
            at = f"{where}.{name}[{j}]"
            out.append(
                (
                    one(jsonio.as_str, t, "source", at),
                    one(jsonio.as_str, t, "dest", at),
                    one(jsonio.as_int, t, "unit", at),
                    one(jsonio.as_pair, t, "rows", at),
                    one(jsonio.as_int, t, "bytes", at),
                )
            )
        return tuple(out)

    steps = []
    for i, raw in enumerate(one(jsonio.as_list, doc, "steps")):
        at = f"steps[{i}]"
        run, run_at = get(raw, "run", at)
        steps.append(
            {
                "group": one(jsonio.as_int, raw, "group", at),
                "device": one(jsonio.as_str, raw, "device", at),
                "run": (
                    one(jsonio.as_int, run, "first", run_at),
                    one(jsonio.as_int, run, "last", run_at),
                    one(jsonio.as_pair, run, "out_rows", run_at),
                    one(jsonio.as_pair, run, "in_rows", run_at),
                ),
                "receive": transfers(raw, "receive", at),
                "send": transfers(raw, "send", at),
            }
        )
    tail, _ = get(doc, "tail", "")
    syncs = []
    for i, p in enumerate(jsonio.as_list(doc.get("syncs", []), "syncs", schema)):
        at = f"syncs[{i}]"
        syncs.append(
            (
                one(jsonio.as_int, p, "unit", at),
                one(jsonio.as_str, p, "node", at),
                one(jsonio.as_int, p, "bytes", at),
            )
        )
    return {
        "syncs": tuple(syncs),
        "network": one(jsonio.as_str, doc, "network"),
        "devices": tuple(
            jsonio.as_str(d, "devices", schema) for d in one(jsonio.as_list, doc, "devices")
        ),
        "input_shape": shape(get(doc, "input_shape", "")[0], "input_shape"),
        "unit_shapes": tuple(
            shape(s, "unit_shapes") for s in one(jsonio.as_list, doc, "unit_shapes")
        ),
        "bytes_per_element": one(jsonio.as_int, doc, "bytes_per_element"),
        "steps": tuple(steps),
        "tail": (
            one(jsonio.as_str, tail, "device", "tail"),
            one(jsonio.as_int, tail, "unit", "tail"),
            one(jsonio.as_pair, tail, "rows", "tail"),
        ),
    }


# -- text -----------------------------------------------------------------------------------


def _name(text: str) -> str:
    return text if _BARE.fullmatch(text) else json.dumps(text)


def _map(unit: int, rows: list[int]) -> str:
    return f"{'input' if unit == -1 else f'u{unit}'}[{rows[0]}:{rows[1]}]"


def _shape(shape: list[int]) -> str:
    return "x".join(str(v) for v in shape)


def render(doc: dict[str, Any], links: dict[tuple[str, str], int]) -> str:
    """The aligned text form of a `Schedule.to_dict` document; `links`: bytes per link."""
    maps = [f"u{k} {_shape(s)}" for k, s in enumerate(doc["unit_shapes"])]
    lines = [
        f"spatial schedule {doc['schema']}",
        f"network: {_name(doc['network'])}",
        f"devices: {' '.join(_name(d) for d in doc['devices'])}",
        f"bytes per element: {doc['bytes_per_element']}",
        f"input: {_shape(doc['input_shape'])}",
        *(
            "maps: " + "  ".join(maps[i : i + _MAPS_PER_LINE])
            for i in range(0, len(maps), _MAPS_PER_LINE)
        ),
        *(f"sync: u{p['unit']} {_name(p['node'])} {p['bytes']:,} B" for p in doc.get("syncs", [])),
    ]
    header = ["step", "group", "units", "device", "in", "out", "receive", "send"]
    rows = []
    for i, s in enumerate(doc["steps"]):
        run = s["run"]
        first, last = run["first"], run["last"]
        moves = []
        for key, word, peer in (("receive", "from", "source"), ("send", "to", "dest")):
            cell = " ".join(
                f"{word} {_name(t[peer])} {_map(t['unit'], t['rows'])} {t['bytes']:,} B"
                for t in s[key]
            )
            moves.append(cell or "-")
        rows.append(
            [
                str(i),
                str(s["group"]),
                str(first) if first == last else f"{first}..{last}",
                _name(s["device"]),
                "{}:{}".format(*run["in_rows"]),
                "{}:{}".format(*run["out_rows"]),
                *moves,
            ]
        )
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    for r in [header, *rows]:
        cells = [v.rjust(w) if c < 2 else v.ljust(w) for c, (v, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
    tail = doc["tail"]
    lines.append(
        f"tail: {_name(tail['device'])} runs the tail on {_map(tail['unit'], tail['rows'])}"
    )
    lines += [f"link {_name(a)} -> {_name(b)}: {n:,} B" for (a, b), n in sorted(links.items())]
    return "\n".join(lines)


class _Reader:
    """Token-level reading of one line, errors naming the line and what was expected."""

    def __init__(self, number: int, line: str) -> None:
        self.number, self.line = number, line
        self.tokens = _TOKEN.findall(line)

    def fail(self, expected: str) -> ManipleError:
        return ManipleError(
            f"schedule text, line {self.number}: {self.line.strip()!r}; expected {expected} "
            "(write it as str(schedule) does)"
        )

    def name(self, token: str) -> str:
        if not token.startswith('"'):
            return token
        try:
            return str(json.loads(token))
        except json.JSONDecodeError:
            raise self.fail("a name, bare or as a JSON string") from None

    def int(self, token: str, what: str) -> int:
        try:
            return int(token.replace(",", ""))
        except ValueError:
            raise self.fail(what) from None

    def rows(self, token: str) -> list[int]:
        lo, sep, hi = token.partition(":")
        if not sep:
            raise self.fail("rows as LO:HI")
        return [self.int(lo, "rows as LO:HI"), self.int(hi, "rows as LO:HI")]

    def map(self, token: str) -> tuple[int, list[int]]:
        m = _MAP.fullmatch(token)
        if m is None:
            raise self.fail("a map's rows as input[LO:HI] or uK[LO:HI]")
        unit = -1 if m.group(1) == "input" else int(m.group(2))
        return unit, [int(m.group(3)), int(m.group(4))]

    def shape(self, token: str) -> list[int]:
        parts = token.split("x")
        if len(parts) != 3:
            raise self.fail("a shape as CxHxW")
        return [self.int(p, "a shape as CxHxW") for p in parts]


def _step(r: _Reader, index: int) -> dict[str, Any]:
    """One step line of the table as a `to_dict` step."""
    t = r.tokens
    if len(t) < 8 or r.int(t[0], "the step number") != index:
        raise r.fail(f"step {index}: number, group, units, device, in, out, receive, send")
    first, _, last = t[2].partition("..")
    device = r.name(t[3])
    step: dict[str, Any] = {
        "group": r.int(t[1], "the group number"),
        "device": device,
        "run": {
            "first": r.int(first, "units as FIRST..LAST"),
            "last": r.int(last or first, "units as FIRST..LAST"),
            "out_rows": r.rows(t[5]),
            "in_rows": r.rows(t[4]),
        },
        "receive": [],
        "send": [],
    }
    k = 6
    while k < len(t):
        word = t[k]
        if word == "-":
            k += 1
            continue
        if word not in ("from", "to") or k + 4 >= len(t) or t[k + 4] != "B":
            raise r.fail(
                "transfers as 'from SRC MAP[LO:HI] BYTES B' or 'to DST MAP[LO:HI] BYTES B'"
            )
        peer = r.name(t[k + 1])
        unit, rows = r.map(t[k + 2])
        source, dest = (peer, device) if word == "from" else (device, peer)
        move = {"source": source, "dest": dest, "unit": unit, "rows": rows}
        move["bytes"] = r.int(t[k + 3], "the bytes moved")
        step["receive" if word == "from" else "send"].append(move)
        k += 5
    return step


def read(text: str, schema: str) -> dict[str, Any]:
    """Parse `render`'s output back into the `to_dict` document it came from."""
    doc: dict[str, Any] = {"schema": None, "unit_shapes": [], "steps": [], "syncs": []}
    in_table = False
    for number, line in enumerate(text.splitlines(), start=1):
        r = _Reader(number, line)
        t = r.tokens
        if not t or t[0] == "link":
            continue
        if t[:2] == ["spatial", "schedule"] and len(t) == 3:
            doc["schema"] = t[2]
        elif t[0] == "network:" and len(t) == 2:
            doc["network"] = r.name(t[1])
        elif t[0] == "devices:":
            doc["devices"] = [r.name(d) for d in t[1:]]
        elif t[:3] == ["bytes", "per", "element:"] and len(t) == 4:
            doc["bytes_per_element"] = r.int(t[3], "bytes per element")
        elif t[0] == "input:" and len(t) == 2:
            doc["input_shape"] = r.shape(t[1])
        elif t[0] == "maps:" and len(t) % 2 == 1:
            for k in range(1, len(t), 2):
                if t[k] != f"u{len(doc['unit_shapes'])}":
                    raise r.fail(f"unit u{len(doc['unit_shapes'])} next")
                doc["unit_shapes"].append(r.shape(t[k + 1]))
        elif t[0] == "sync:" and len(t) == 5 and t[4] == "B" and t[1].startswith("u"):
            unit = r.int(t[1][1:], "sync point unit")
            nbytes = r.int(t[3].replace(",", ""), "sync point bytes")
            doc["syncs"].append({"unit": unit, "node": r.name(t[2]), "bytes": nbytes})
        elif t[:2] == ["step", "group"]:
            in_table = True
        elif t[0] == "tail:" and len(t) == 7 and t[2:6] == ["runs", "the", "tail", "on"]:
            unit, rows = r.map(t[6])
            doc["tail"] = {"device": r.name(t[1]), "unit": unit, "rows": rows}
            in_table = False
        elif in_table:
            doc["steps"].append(_step(r, len(doc["steps"])))
        else:
            raise r.fail("a header line (network:, devices:, ...), the table or the tail")
    if doc["schema"] != schema:
        raise ManipleError(
            f"schedule text: first line must be 'spatial schedule {schema}'; got schema "
            f"{doc['schema']!r} (written by another version of maniple? lower the plan again)"
        )
    return doc
