"""What the testbed's pieces are called, in one place, all under one fixed prefix.

Why fixed: `maniple testbed down` must find everything a testbed made even when its state
record is gone (a crash before it was written, a deleted cache), and must never touch
anything it did not make. Every network namespace it creates is named `PREFIX...`, and
every interface, address and Ray process lives inside those namespaces, so the prefix
alone finds all of it: the root namespace gains nothing (no interface, no address, no
route), and deleting the namespaces removes every veth and the bridge with them.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

PREFIX = "maniple-tb-"
COORDINATOR_NS = PREFIX + "coord"
SWITCH_NS = PREFIX + "switch"
BOARD_NS = PREFIX + "board{index}"
_OURS = re.compile(re.escape(PREFIX) + r"(coord|switch|board\d+)")

BRIDGE = "br0"  # in the switch namespace
HOST_IF = "eth0"  # the veth end inside the coordinator's and each board's namespace
COORDINATOR_PORT = "coord"  # the coordinator's veth end on the bridge
BOARD_PORT = "board{index}"  # a board's veth end on the bridge

COORDINATOR_RESOURCE = "maniple-testbed.coordinator"
BOARD_RESOURCE = "maniple-testbed.board{index}.{name}"
"""Ray resource of a board's node: its index and device name (emu:firefly-rk3399#0 as
emu-firefly-rk3399-0: a raylet fails to start on a resource name with ':' or '#'), so that
its actor is placed by name and no other actor lands there by accident."""
_NOT_IN_RESOURCE = re.compile(r"[^A-Za-z0-9_.-]")

STATE_VAR = "MANIPLE_TESTBED_STATE"  # overrides where the state record is kept (tests)
RAY_DIR_NAME = "maniple-testbed-ray"
"""Ray's temp dir for the testbed's nodes, under the system temp dir: short, since Ray puts
its sockets in it and a socket path may hold at most 107 characters."""


def board_ns(index: int) -> str:
    return BOARD_NS.format(index=index)


def board_port(index: int) -> str:
    return BOARD_PORT.format(index=index)


def board_resource(index: int, name: str) -> str:
    return BOARD_RESOURCE.format(index=index, name=_NOT_IN_RESOURCE.sub("-", name))


def is_ours(namespace: str) -> bool:
    """Whether a namespace name is one a testbed makes (the prefix and a known role)."""
    return _OURS.fullmatch(namespace) is not None


def ray_temp_dir() -> Path:
    """Where the testbed's Ray nodes keep their sessions and sockets."""
    return Path(tempfile.gettempdir()) / RAY_DIR_NAME


def state_path() -> Path:
    """$MANIPLE_TESTBED_STATE, else `testbed.json` in the user's cache dir (beside the
    profile store, e.g. ~/.cache/maniple/testbed.json)."""
    env = os.environ.get(STATE_VAR)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("maniple")) / "testbed.json"
