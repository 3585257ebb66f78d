"""Start the testbed's Ray nodes: the head in the coordinator's namespace, one node per board.

Why `ray start` inside each namespace: a Ray node advertises, binds and moves objects on
the addresses of the namespace it runs in, so a board's node reaches the others only over
its own shaped veth. Each board's node holds a custom resource named after the board, so
its actor is placed there and nowhere else; the head holds the coordinator's.

Environment of every node: Ray's token authentication on (RAY_AUTH_MODE=token; the token
in ~/.ray/auth_token is this user's, shared by all of them), usage statistics off, and
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER removed, since a value of 0 (maniple's single-node
setting) would refuse a node that joins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from maniple.cluster.testbed import names
from maniple.cluster.testbed.plan import (
    BOARD_OBJECT_STORE,
    GCS_PORT,
    HEAD_OBJECT_STORE,
    BoardNode,
    TestbedPlan,
)
from maniple.cluster.testbed.procs import stop
from maniple.cluster.testbed.shell import in_ns, namespace_pids, run
from maniple.errors import ManipleError

START_TIMEOUT_S = 180.0
START_RETRIES = 1
_CHECK = """
import json, logging, os, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level=logging.ERROR)
nodes = [{"ip": n["NodeManagerAddress"], "resources": sorted(n["Resources"])}
         for n in ray.nodes() if n.get("Alive")]
ray.shutdown()
sys.stdout.write(json.dumps(nodes))
"""


def ray_env() -> dict[str, str]:
    """The environment of the testbed's Ray processes (see the module docstring)."""
    env = dict(os.environ)
    for var in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS"):
        env.pop(var, None)
    env.update({"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"})
    return env


def _ray_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ray.scripts.scripts", *args]


def head_command(plan: TestbedPlan) -> list[str]:
    """`ray start --head` of the coordinator, inside its namespace."""
    resources = json.dumps({names.COORDINATOR_RESOURCE: 1})
    return in_ns(
        names.COORDINATOR_NS,
        _ray_cli(
            "start",
            "--head",
            f"--node-ip-address={plan.coordinator_address}",
            f"--port={GCS_PORT}",
            f"--temp-dir={names.ray_temp_dir()}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--num-cpus={max(2, os.cpu_count() or 1)}",
            "--num-gpus=0",
            f"--object-store-memory={HEAD_OBJECT_STORE}",
            f"--resources={resources}",
        ),
    )


def board_command(plan: TestbedPlan, board: BoardNode) -> list[str]:
    """`ray start --address` of one board, inside its namespace (one CPU: its actor asks
    for a hundredth of one; the rest is room for Ray's own workers)."""
    resources = json.dumps({board.resource: 1})
    return in_ns(
        board.namespace,
        _ray_cli(
            "start",
            f"--address={plan.gcs_address}",
            f"--node-ip-address={board.address}",
            "--disable-usage-stats",
            "--num-cpus=1",
            "--num-gpus=0",
            f"--object-store-memory={BOARD_OBJECT_STORE}",
            f"--resources={resources}",
        ),
    )


def start(plan: TestbedPlan, timeout_s: float = START_TIMEOUT_S) -> None:
    """Start the head, then the boards' nodes one after another (about 3 s each here;
    started together, they wait on each other and some raylets time out), each failed one
    once more; then check that they all joined."""
    env = ray_env()
    run(head_command(plan), env=env, timeout_s=timeout_s)
    todo, failed = list(plan.boards), []
    for _ in range(1 + START_RETRIES):
        failed = []
        for board in todo:
            failed += _start_boards(plan, [board], env, timeout_s)
        for b, _why in failed:  # what a failed start left, before it is tried again
            stop(namespace_pids(b.namespace))
        todo = [b for b, _why in failed]
        if not todo:
            break
    if failed:
        why = "; ".join(f"{b.name}: {w}" for b, w in failed)
        raise ManipleError(f"the Ray node of board {why}; the testbed is removed")
    check_joined(plan, alive_nodes(plan))


def _start_boards(
    plan: TestbedPlan, boards: list[BoardNode], env: dict[str, str], timeout_s: float
) -> list[tuple[BoardNode, str]]:
    """`ray start` for `boards` at once; the boards that failed, with why."""
    procs = [
        (b, subprocess.Popen(
            board_command(plan, b), env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
        for b in boards
    ]  # fmt: skip
    deadline = time.monotonic() + timeout_s
    failed = []
    for b, proc in procs:
        try:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            failed.append((b, f"no answer within {timeout_s:g} s"))
            continue
        if proc.returncode != 0:
            last = [line for line in (out or "").splitlines() if line.strip()][-1:]
            failed.append((b, f"exit {proc.returncode} ({last[0] if last else 'no message'})"))
    return failed


def alive_nodes(plan: TestbedPlan) -> list[dict[str, Any]]:
    """The live Ray nodes of the testbed (IP and resource names), asked from inside the
    coordinator's namespace."""
    done = run(
        in_ns(names.COORDINATOR_NS, [sys.executable, "-I", "-c", _CHECK, plan.gcs_address]),
        env=ray_env(),
        timeout_s=60.0,
    )
    try:
        nodes = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise ManipleError(
            f"could not list the testbed's Ray nodes at {plan.gcs_address}: "
            f"{done.stderr.strip().splitlines()[-1:] or done.stdout[-200:]}"
        ) from None
    return nodes if isinstance(nodes, list) else []


def check_joined(plan: TestbedPlan, nodes: list[dict[str, Any]]) -> None:
    """Raise naming the boards whose node is not alive with its address and resource."""
    have = {(n.get("ip"), r) for n in nodes for r in n.get("resources", [])}
    missing = [b.name for b in plan.boards if (b.address, b.resource) not in have]
    if (plan.coordinator_address, names.COORDINATOR_RESOURCE) not in have:
        missing.insert(0, "the coordinator (head node)")
    if missing:
        raise ManipleError(
            f"the testbed's Ray cluster lacks {', '.join(missing)} ({len(nodes)} nodes alive); "
            "the testbed is removed: try `maniple testbed up` again"
        )
