"""The commands a testbed runs (`ip`, `tc`, `ray start`), and the check that it may run them.

Why one runner: every failure of a system command must reach the user as one ManipleError
naming the command and what it said, and a testbed needs root and iproute2 before it
creates anything, so both are checked first and the error says what is missing and how
to get it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from maniple.errors import ManipleError

TOOLS = ("ip", "tc")
COMMAND_TIMEOUT_S = 30.0


def missing_requirements() -> list[str]:
    """What this machine lacks for a testbed, in words (empty: nothing)."""
    missing = []
    if not sys.platform.startswith("linux"):
        missing.append(f"Linux (network namespaces), not {sys.platform}")
    elif os.geteuid() != 0:
        missing.append(f"root (this is uid {os.geteuid()}): run it with sudo")
    for tool in TOOLS:
        if shutil.which(tool) is None:
            missing.append(f"the `{tool}` command (iproute2: apt-get install iproute2)")
    return missing


def require_testbed_host() -> None:
    """Raise, saying what is needed, unless this is Linux, root, with `ip` and `tc`."""
    missing = missing_requirements()
    if missing:
        raise ManipleError(
            "a testbed makes network namespaces, veths and tc shapers, which needs "
            + "; ".join(missing)
        )


def run(
    args: Sequence[str],
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout_s: float = COMMAND_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run `args`; with `check`, a failure raises a ManipleError naming the command and
    its own words."""
    try:
        done = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            env=None if env is None else dict(env),
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise ManipleError(f"`{args[0]}` is not installed; {_install_hint(args[0])}") from None
    except subprocess.TimeoutExpired:
        raise ManipleError(
            f"`{' '.join(args)}` gave no answer within {timeout_s:g} s; is the machine "
            "overloaded? `maniple testbed down` removes what was made"
        ) from None
    if check and done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise ManipleError(
            f"`{' '.join(args)}` failed (exit {done.returncode}): "
            f"{said[-1] if said else 'no message'}"
        )
    return done


def _install_hint(tool: str) -> str:
    if tool in TOOLS:
        return "install iproute2 (apt-get install iproute2)"
    return f"install {tool}"


def ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    """`ip [-n NS] ARGS`; its stdout."""
    return run(["ip", *(["-n", ns] if ns else []), *args], check=check).stdout


def ip_json(*args: str, ns: str | None = None) -> Any:
    """`ip -j [-n NS] ARGS`, parsed (an empty answer is an empty list)."""
    text = ip("-j", *args, ns=ns)
    try:
        return json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise ManipleError(f"`ip -j {' '.join(args)}` answered no JSON ({exc})") from None


def tc(*args: str, ns: str, check: bool = True) -> str:
    """`tc -n NS ARGS`; its stdout."""
    return run(["tc", "-n", ns, *args], check=check).stdout


def in_ns(ns: str, args: Sequence[str]) -> list[str]:
    """`args` run inside namespace `ns`."""
    return ["ip", "netns", "exec", ns, *args]


def namespaces() -> list[str]:
    """The names of every network namespace `ip netns` knows."""
    if shutil.which("ip") is None:
        return []
    found = ip_json("netns", "list")
    return [n["name"] for n in found if isinstance(n, dict) and "name" in n]


def namespace_pids(ns: str) -> list[int]:
    """The processes running in namespace `ns` (none: an empty list)."""
    out = run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def root_networks() -> list[str]:
    """The IPv4 networks and addresses of the root namespace (to keep clear of)."""
    taken = []
    for entry in ip_json("-4", "addr", "show"):
        for a in entry.get("addr_info", []):
            if "local" in a:
                taken.append(f"{a['local']}/{a.get('prefixlen', 32)}")
    for route in ip_json("-4", "route", "show", "table", "all"):
        dst = route.get("dst")
        if isinstance(dst, str) and dst not in ("default",):
            taken.append(dst)
    return taken
