"""Ray devices on two Ray nodes of this machine, all on 127.0.0.1.

Marked `ray`. The module starts a private head (through maniple) and a second node with
`ray start --address=127.0.0.1:PORT --resources=...` in its own process group, and stops
that group (and the head) afterwards, even when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from maniple.cluster import open_cluster, parse_cluster_text, parse_shorthand
from maniple.devices import ModelSpec, open_device
from maniple.devices.tiny import TINY_INPUT_SHAPE, TINY_NETWORK, tiny_cnn
from maniple.errors import ManipleError

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

TINY = ModelSpec(TINY_NETWORK, seed=7, input_shape=TINY_INPUT_SHAPE)
NODE2 = "maniple_test_node2"

# `ray start` resolves 127.0.0.1 to the machine's outward address unless Ray's loopback-only
# mode is on, and in that mode it refuses to join a cluster. This launcher keeps loopback
# mode for every process the node starts (the environment variable) and lets the CLI
# itself pass its multi-node guard, with its own address fixed to 127.0.0.1.
_LAUNCH = """
import sys
from ray._private import ray_constants, services
ray_constants.ENABLE_RAY_CLUSTER = True
services.get_node_ip_address = lambda address=None: "127.0.0.1"
from ray.scripts.scripts import main
sys.argv = ["ray", "start", *sys.argv[1:]]
main()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """{'head': node id, 'node2': node id}: the local head and a second node with resource
    NODE2, both registered on 127.0.0.1."""
    from maniple.devices.ray_backend import ensure_ray, release_ray

    session = ensure_ray()
    log = Path(tmp_path_factory.mktemp("ray")) / "node2.log"
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    cmd = [
        sys.executable,
        "-c",
        _LAUNCH,
        f"--address={session.address}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--resources=" + json.dumps({NODE2: 1}),
        "--block",
        "--disable-usage-stats",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            nodes = [n for n in ray.nodes() if n["Alive"]]
            if len(nodes) >= 2:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"second Ray node did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
        ids = {("node2" if NODE2 in n["Resources"] else "head"): n["NodeID"] for n in nodes}
        yield ids
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        release_ray(session)


def test_token_auth_is_on(two_nodes: dict[str, str]) -> None:
    from ray._raylet import AuthenticationMode, get_authentication_mode

    assert get_authentication_mode() == AuthenticationMode.TOKEN
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")


def test_a_batch_split_over_two_nodes(two_nodes: dict[str, str]) -> None:
    spec = parse_cluster_text(
        f"""
devices:
  - {{kind: ray, node: head, threads: 1, name: on-head}}
  - {{kind: ray, node: {NODE2}, threads: 1, name: on-node2}}
""",
        "two.yaml",
    )
    x = torch.randn(6, *TINY_INPUT_SHAPE)
    with open_cluster(spec, TINY) as cluster:
        head, node2 = cluster["on-head"], cluster["on-node2"]
        calls = [head.submit_batch(x[:4]), node2.submit_batch(x[4:])]
        (y_head, t_head), (y_node2, t_node2) = (c.result() for c in calls)
        assert head.info().node_id == two_nodes["head"]
        assert node2.info().node_id == two_nodes["node2"]
        assert t_head.pid == head.info().pid and t_node2.pid == node2.info().pid
        assert t_head.pid != t_node2.pid and t_head.device == "on-head"
        assert node2.info().node_ip == "127.0.0.1"
    y = torch.cat([y_head, y_node2])
    torch.testing.assert_close(y, tiny_cnn(seed=7)(x), rtol=1e-5, atol=1e-5)


def test_killing_a_nodes_worker_mid_run_names_the_device(two_nodes: dict[str, str]) -> None:
    shape = (3, 256, 256)
    spec = ModelSpec(TINY_NETWORK, input_shape=shape)
    x = torch.randn(32, *shape)
    with open_device(f"ray:{NODE2}", spec, threads=1, timeout_s=30.0) as device:
        pid = device.info().pid
        calls = [device.submit_batch(x) for _ in range(6)]  # seconds of work queued
        time.sleep(0.5)
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ManipleError, match=f"ray:{NODE2}/cpu.*died"):
            for call in calls:
                call.result()
        assert time.perf_counter() - t0 < 30.0


def test_node_selectors(two_nodes: dict[str, str]) -> None:
    from maniple.devices.ray_backend import find_node

    assert find_node("head") == two_nodes["head"]
    assert find_node(NODE2) == two_nodes["node2"]
    assert find_node(two_nodes["node2"][:12]) == two_nodes["node2"]
    with pytest.raises(ManipleError, match="matches 2 nodes"):
        find_node("127.0.0.1")
    with pytest.raises(ManipleError, match="no live Ray node matches 'nowhere'"):
        find_node("nowhere")
    with pytest.raises(ManipleError, match="no live Ray node"):
        open_device("ray:nowhere", TINY)


def test_ray_with_no_devices_uses_every_node(two_nodes: dict[str, str]) -> None:
    with open_cluster(parse_shorthand(ray="local"), TINY) as cluster:
        assert len(cluster) == 2
        nodes = {d.info().node_id for d in cluster}
        assert nodes == set(two_nodes.values())


def test_transfer_to_a_real_node_times_the_bytes(two_nodes: dict[str, str]) -> None:
    with open_device(f"ray:{NODE2}", threads=1) as device:
        small = device.transfer(1000)
        big = device.transfer(20_000_000)
    for timing in (small, big):
        assert timing.board_ms is None and timing.overhead_ms == 0.0
        assert timing.device_ms == timing.link_ms > 0.0
    assert big.device_ms > small.device_ms
