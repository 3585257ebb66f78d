"""The testbed's state record: what `up` made, as versioned JSON, validated when read.

Why a record: `down` must remove everything even after a crash, and a run with `--testbed`
must know the boards, their addresses, resources and link rates. The record is written
before anything is created (status "starting") and completed once every node has joined
(status "up"), so that a crash at any point leaves a record `down` can follow.

Why validated, and JSON, never pickle: the file sits in the user's cache directory and
`down` deletes what it names as root. A record that does not read exactly as one (its
schema and version, every field's type, every namespace under the testbed's prefix, every
address inside its subnet) is refused with the field named, and `down` then falls back to
what it finds by the prefix, which never reaches anything the testbed did not make.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maniple.cluster.testbed import names
from maniple.cluster.testbed.plan import BoardNode, TestbedPlan
from maniple.errors import ManipleError

SCHEMA = "maniple.testbed"
VERSION = 1
STATUSES = ("starting", "up")
MAX_RECORD_BYTES = 1 << 20


@dataclass(frozen=True)
class TestbedState:
    """The record: the plan, its status, and when and on which boot it was made."""

    __test__ = False  # not a pytest test class, despite the name

    plan: TestbedPlan
    status: str
    created_at: float
    boot_id: str
    ray_dir: str

    def to_dict(self) -> dict[str, Any]:
        p = self.plan
        return {
            "schema": SCHEMA,
            "version": VERSION,
            "status": self.status,
            "created_at": self.created_at,
            "boot_id": self.boot_id,
            "ray_dir": self.ray_dir,
            "boards_text": p.boards_text,
            "subnet": p.subnet,
            "coordinator_address": p.coordinator_address,
            "link_mbps": p.link_mbps,
            "uplink_mbps": p.uplink_mbps,
            "dilation": p.dilation,
            "boards": [
                {
                    "index": b.index,
                    "name": b.name,
                    "namespace": b.namespace,
                    "address": b.address,
                    "port": b.port,
                }
                for b in p.boards
            ],  # fmt: skip
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @staticmethod
    def from_json(text: str) -> TestbedState:
        """The record in `text`; a ManipleError naming the field for anything else."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManipleError(f"{SCHEMA}: not valid JSON ({exc})") from None
        return _from_dict(doc)


def _get(doc: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ManipleError(f"{SCHEMA}: field {key!r} is {value!r}, not a {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _from_dict(doc: Any) -> TestbedState:
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ManipleError(f"not a {SCHEMA} record (field 'schema' must be {SCHEMA!r})")
    if doc.get("version") != VERSION:
        raise ManipleError(
            f"{SCHEMA}: version {doc.get('version')!r}, this maniple reads {VERSION}"
        )
    status = _get(doc, "status", str)
    if status not in STATUSES:
        raise ManipleError(f"{SCHEMA}: status {status!r}, expected one of {STATUSES}")
    try:
        subnet = ipaddress.ip_network(_get(doc, "subnet", str))
    except ValueError as exc:
        raise ManipleError(f"{SCHEMA}: field 'subnet': {exc}") from None
    coordinator = _address(_get(doc, "coordinator_address", str), subnet, "coordinator_address")
    ray_dir = _get(doc, "ray_dir", str)
    if not os.path.isabs(ray_dir) or Path(ray_dir).name != names.RAY_DIR_NAME:
        raise ManipleError(
            f"{SCHEMA}: ray_dir {ray_dir!r} is not an absolute path ending in "
            f"{names.RAY_DIR_NAME!r}"
        )
    boards = tuple(_board(b, i, subnet) for i, b in enumerate(_get(doc, "boards", list)))
    numbers = {}
    for key in ("link_mbps", "uplink_mbps", "dilation", "created_at"):
        numbers[key] = float(_get(doc, key, (int, float)))
    if not (numbers["link_mbps"] > 0 and numbers["uplink_mbps"] > 0 and numbers["dilation"] >= 1):
        raise ManipleError(f"{SCHEMA}: link rates must be > 0 and the dilation >= 1: {numbers}")
    plan = TestbedPlan(
        boards_text=_get(doc, "boards_text", str),
        boards=boards,
        subnet=str(subnet),
        coordinator_address=coordinator,
        link_mbps=numbers["link_mbps"],
        uplink_mbps=numbers["uplink_mbps"],
        dilation=numbers["dilation"],
    )
    return TestbedState(plan, status, numbers["created_at"], _get(doc, "boot_id", str), ray_dir)


def _address(value: str, subnet: Any, key: str) -> str:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError as exc:
        raise ManipleError(f"{SCHEMA}: field {key!r}: {exc}") from None
    if addr not in subnet:
        raise ManipleError(f"{SCHEMA}: field {key!r}: {value} is outside the subnet {subnet}")
    return str(addr)


def _board(entry: Any, i: int, subnet: Any) -> BoardNode:
    if not isinstance(entry, dict):
        raise ManipleError(f"{SCHEMA}: boards[{i}] is {entry!r}, not an object")
    index = _get(entry, "index", int)
    expect = {"index": i, "namespace": names.board_ns(i), "port": names.board_port(i)}
    got = {"index": index, "namespace": entry.get("namespace"), "port": entry.get("port")}
    if got != expect:
        raise ManipleError(f"{SCHEMA}: boards[{i}] is {got}, expected {expect}")
    return BoardNode(
        index,
        _get(entry, "name", str),
        expect["namespace"],
        _address(_get(entry, "address", str), subnet, f"boards[{i}].address"),
        expect["port"],
    )


def boot_id() -> str:
    """This boot's id: a record from an earlier boot names nothing that still exists."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def new_state(plan: TestbedPlan, status: str = "starting") -> TestbedState:
    return TestbedState(plan, status, time.time(), boot_id(), str(names.ray_temp_dir()))


def write(state: TestbedState, path: Path | None = None) -> Path:
    """Write the record atomically (a temporary file, then a rename)."""
    path = names.state_path() if path is None else path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(state.to_json() + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read(path: Path | None = None) -> TestbedState | None:
    """The record, None where there is none; a ManipleError saying why for a file that
    is not one (too large, not a regular file, not a valid record)."""
    path = names.state_path() if path is None else path
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if path.is_symlink() or not path.is_file():
        raise ManipleError(f"testbed record {path} is not a regular file")
    if st.st_size > MAX_RECORD_BYTES:
        raise ManipleError(f"testbed record {path} holds {st.st_size} bytes, not a record")
    try:
        return TestbedState.from_json(path.read_text(encoding="utf-8"))
    except ManipleError as exc:
        raise ManipleError(f"testbed record {path}: {exc}") from None


def remove(path: Path | None = None) -> bool:
    """Delete the record; whether there was one."""
    path = names.state_path() if path is None else path
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
