"""A worker that stops answering while it starts (loads its model) is named within its
timeout, not after the whole start-up bound (#15: faults at start-up)."""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest

from maniple.devices import ModelSpec, resolve_device
from maniple.errors import ManipleError

pytestmark = [pytest.mark.ray, pytest.mark.emulated]
pytest.importorskip("ray")

SLOW_NET = textwrap.dedent(
    """
    import os, time
    import torch.nn as nn

    def build():
        with open(os.environ["PID_FILE"], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(20)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    """
)


def test_a_worker_stopped_while_loading_is_named_within_its_timeout(tmp_path: Path) -> None:
    from maniple.devices.ray_backend import RayHandle

    (tmp_path / "slow_net.py").write_text(SLOW_NET)
    pid_file = tmp_path / "pid"
    env = {"PYTHONPATH": str(tmp_path), "PID_FILE": str(pid_file)}
    model = ModelSpec("slow_net:build", input_shape=(3, 8, 8))
    outcome: dict[str, object] = {}

    def open_it() -> None:
        try:
            RayHandle(resolve_device("ray:head"), model, timeout_s=3.0, env=env).close()
            outcome["error"] = None
        except ManipleError as exc:
            outcome["error"] = str(exc)
        outcome["at"] = time.perf_counter()

    thread = threading.Thread(target=open_it)
    thread.start()
    deadline = time.monotonic() + 120
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the worker never started loading"
        time.sleep(0.1)
    pid = int(pid_file.read_text())
    time.sleep(2.0)  # the worker has answered its first ping by now
    os.kill(pid, signal.SIGSTOP)
    stopped = time.perf_counter()
    try:
        thread.join(30)
        assert not thread.is_alive(), "the start was not given up within 30 s"
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    error = outcome["error"]
    assert isinstance(error, str) and "stopped answering" in error and "ray:head" in error
    assert float(outcome["at"]) - stopped < 3.0 + 5.0  # type: ignore[arg-type]
