"""Stopping a testbed's processes: by namespace, gently first, never this process.

Why apart: `down` stops every process in the testbed's namespaces before it deletes them
(a namespace whose name is deleted lives on while a process holds it), and `up` stops
what a board's failed start left before it tries that board again. Both must spare the
process that asks (a driver in the coordinator's namespace may call `down`) and its
parents.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from maniple.cluster.testbed import names

TERM_GRACE_S = 4.0  # Ray's head ignores SIGTERM for a few seconds while it shuts down
KILL_GRACE_S = 3.0


def protected() -> set[int]:
    """This process and its ancestors: never signalled (a driver may call `down`)."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat[stat.rfind(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in "ZX"


def stop(pids: list[int]) -> list[int]:
    """SIGTERM, then SIGKILL to those left after TERM_GRACE_S; the pids signalled."""
    keep = protected()
    todo = [p for p in dict.fromkeys(pids) if p not in keep]
    for sig, grace in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        todo = [p for p in todo if alive(p)]
        for p in todo:
            try:
                os.kill(p, sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while any(alive(p) for p in todo) and time.monotonic() < deadline:
            time.sleep(0.05)
    return [p for p in dict.fromkeys(pids) if p not in keep]


def escaped_ray_processes() -> list[int]:
    """Processes outside the namespaces that still name the testbed's Ray directory in
    their command line (none, unless a namespace was deleted under a live process)."""
    mark = str(names.ray_temp_dir()).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if mark in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
