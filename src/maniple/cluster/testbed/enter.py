"""Move this process into the coordinator's network namespace, where the head node runs.

Why: a Ray driver must share its node's addresses, and the testbed's head node lives in
the coordinator's namespace (Ray's servers listen on every address of their namespace, so
the head is kept out of the root one). `setns(2)` moves the calling thread; the threads
Ray starts afterwards from it inherit the namespace. So this is done once, on the main
thread, before this process connects to any Ray: a process that already talks to Ray has
threads and sockets in the old namespace, and is refused with the way out.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from pathlib import Path

from maniple.cluster.testbed import names
from maniple.errors import ManipleError

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


def _inode(path: Path) -> int:
    return os.stat(path).st_ino


def in_coordinator() -> bool:
    """Whether this thread already runs in the coordinator's namespace."""
    try:
        return _inode(Path("/proc/thread-self/ns/net")) == _inode(NETNS_DIR / names.COORDINATOR_NS)
    except OSError:
        return False


def enter_coordinator() -> None:
    """Join the coordinator's namespace (a no-op when already there); see the module
    docstring for when this is refused."""
    if in_coordinator():
        return
    target = NETNS_DIR / names.COORDINATOR_NS
    if not target.exists():
        raise ManipleError(
            f"no testbed is up (no namespace {names.COORDINATOR_NS}); start one with "
            "`maniple testbed up --boards 3xfirefly-rk3399`"
        )
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        raise ManipleError(
            "this process is already connected to Ray outside the testbed; run the testbed "
            "part in a fresh process (e.g. `maniple spatial ... --testbed`), or inside the "
            f"coordinator's namespace: ip netns exec {names.COORDINATOR_NS} python ..."
        )
    if threading.current_thread() is not threading.main_thread():
        raise ManipleError("joining the testbed's namespace must be done on the main thread")
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(target, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise ManipleError(
                f"cannot join namespace {names.COORDINATOR_NS}: {os.strerror(err)}; this needs root"
            )
    finally:
        os.close(fd)
