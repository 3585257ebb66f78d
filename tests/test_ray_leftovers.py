"""What a killed maniple leaves of its Ray is stopped, and nothing else (ray_leftovers).

Most tests use stand-in processes (plain Pythons that look like Ray's by their command line
or open files), so they need no Ray and run in seconds; the last one kills a real driver
that holds an emulated board, and is marked `ray` and `emulated`. Linux only, as the
module is.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from maniple.devices import ray_leftovers as lo

pytestmark = pytest.mark.skipif(not lo.supported(), reason="needs Linux /proc")

SESSION_NAME = "session_2026-01-01_00-00-00_000001_1"
SLEEP = """import os, signal, time  # a stand-in process
if os.environ.get("IGNORE_TERM"): signal.signal(signal.SIGTERM, signal.SIG_IGN)
f = open(os.environ["OPEN_FILE"], "a") if os.environ.get("OPEN_FILE") else None
time.sleep(120)
"""
SRC = str(Path(lo.__file__).resolve().parents[2])  # the maniple sources, for subprocesses


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; killed and reaped afterwards, whatever happened."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def spawn(
    procs: list[subprocess.Popen[bytes]],
    *args: str,
    title: str = "",
    open_file: Path | None = None,
    ignore_term: bool = False,
) -> lo.Proc:
    """A sleeping Python with `args`, argv[0] `title` (e.g. a Ray worker's 'ray::Worker'),
    `open_file` kept open, SIGTERM ignored if asked; its Proc once it runs."""
    cmd = [sys.executable, "-c", SLEEP, *args]
    if title:
        cmd = ["bash", "-c", f'exec -a "{title}" "$@"', "bash", *cmd]
    env = dict(os.environ, OPEN_FILE=str(open_file or ""), IGNORE_TERM="1" if ignore_term else "")
    p = subprocess.Popen(cmd, env=env)
    procs.append(p)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stat = lo._stat(p.pid)
        cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes()
        ready = open_file is None or _has_open(p.pid, str(open_file))
        if stat and SLEEP.encode() in cmdline and ready:
            time.sleep(0.1)  # past the signal set-up too
            return lo.Proc(p.pid, stat[2])
        time.sleep(0.02)
    raise AssertionError("stand-in process did not start")


def _has_open(pid: int, path: str) -> bool:
    """Whether `pid` holds `path` open; an fd closed while we look (the stand-in is still
    exec-ing) is simply not it."""
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == path:
                return True
        except FileNotFoundError:
            continue
    return False


def dead_driver(procs: list[subprocess.Popen[bytes]]) -> lo.Proc:
    """A process that ran and is gone: a maniple driver that was killed."""
    driver = spawn(procs)
    procs[-1].kill()
    procs[-1].wait()
    return driver


def write_record(directory: Path, driver: lo.Proc, session: Path, ray_dir: Path) -> Path:
    record = lo.SessionRecord(
        driver, lo.boot_id(), os.getuid(), str(session), str(ray_dir), (), time.time()
    )
    directory.mkdir(exist_ok=True)
    path = directory / f"{driver.pid}.json"
    path.write_text(record.to_json())
    return path


def test_a_record_reads_back_and_a_bad_one_says_why(tmp_path: Path) -> None:
    session, ray_dir = tmp_path / SESSION_NAME, tmp_path / "ray"
    record = lo.SessionRecord(
        lo.Proc(1234, 99), "boot", 1000, str(session), str(ray_dir), (lo.Proc(7, 8),), 1.5
    )
    assert lo.SessionRecord.from_json(record.to_json()) == record
    assert (
        lo.SessionRecord.from_json(record.to_json().replace(f"{tmp_path}/", f"{tmp_path}//"))
        == record
    )
    doc = json.loads(record.to_json())
    bad = {
        "version": ({"version": 2}, "version 2"),
        "whole /tmp": ({"session_dir": "/tmp"}, "Ray session"),
        "relative": ({"session_dir": SESSION_NAME}, "absolute"),
        "not ray": ({"ray_dir": "/usr"}, "Ray package"),
        "bool pid": ({"driver": {"pid": True, "start": 1}}, "whole numbers"),
        "init": ({"processes": [{"pid": 1, "start": 1}]}, "never a Ray process"),
        "schema": ({"schema": "other"}, "not a maniple.ray_session"),
    }
    for change, words in bad.values():
        with pytest.raises(ValueError, match=words):
            lo.SessionRecord.from_json(json.dumps({**doc, **change}))


def test_a_dead_drivers_ray_is_stopped_and_nothing_else(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    records, ray_dir = tmp_path / "records", tmp_path / "ray"
    dead, live = tmp_path / SESSION_NAME, tmp_path / SESSION_NAME.replace("_1", "_2")
    for d in (dead, live):
        (d / "logs").mkdir(parents=True)
    driver = dead_driver(procs)
    dead_path = write_record(records, driver, dead, ray_dir)
    raylet = spawn(procs, f"{ray_dir}/core/raylet", f"--session_dir={dead}")
    # its session only among its open files, and deaf to SIGTERM, as Ray's agents are
    agent = spawn(procs, title="ray::Agent", open_file=dead / "logs/a.log", ignore_term=True)
    # not Ray's: a user's `tail -f` of the dead session's log, and another session's worker
    tail = spawn(procs, str(dead / "logs/raylet.out"))
    live_driver = spawn(procs)
    live_path = write_record(records, live_driver, live, ray_dir)
    live_worker = spawn(procs, title="ray::Worker", open_file=live / "logs/w.log")

    t0 = time.monotonic()
    stopped = lo.clean_leftovers(records, grace_s=0.5)

    assert {p.pid for p in stopped} == {raylet.pid, agent.pid}
    assert not lo.alive(raylet) and not lo.alive(agent)  # the agent ignored SIGTERM
    assert time.monotonic() - t0 < 5
    assert not dead_path.exists()
    assert lo.alive(tail) and lo.alive(live_worker) and lo.alive(live_driver)
    assert live_path.exists()


def test_foreign_and_corrupt_files_are_left_alone_with_a_warning(
    tmp_path: Path,
    procs: list[subprocess.Popen[bytes]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = tmp_path / "records"
    driver = dead_driver(procs)
    path = write_record(records, driver, tmp_path / SESSION_NAME, tmp_path / "ray")
    good = json.loads(path.read_text())
    path.unlink()
    files = {
        "notes.txt": "hello",
        "123.json": "{not json",
        "124.json": json.dumps({**good, "session_dir": "/"}),
        "125.json": json.dumps(good),  # driver pid is not 125
        "126.json": json.dumps({**good, "version": 99}),
    }
    for name, text in files.items():
        (records / name).write_text(text)
    (records / ".127.json.tmp").write_text("being written")
    monkeypatch.setattr(os, "kill", lambda *a: pytest.fail(f"signalled {a}"))

    with caplog.at_level(logging.WARNING, logger="maniple.ray_leftovers"):
        assert lo.clean_leftovers(records) == []

    warned = " ".join(r.getMessage() for r in caplog.records)
    for name in files:
        assert name in warned
    assert "delete it" in warned and ".127.json.tmp" not in warned
    assert sorted(p.name for p in records.iterdir()) == sorted([*files, ".127.json.tmp"])


_FAKE_DRIVER = """
import importlib.util, subprocess, sys, time
spec = importlib.util.spec_from_file_location("ray_leftovers", sys.argv[1])
lo = importlib.util.module_from_spec(spec); sys.modules["ray_leftovers"] = lo
spec.loader.exec_module(lo)
session, ray_dir = sys.argv[2], sys.argv[3]
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                          ray_dir + "/core/gcs_server", "--log_dir=" + session + "/logs"])
tracker = lo.track(session, ray_dir)
print(child.pid, flush=True)
if sys.argv[4] == "clean":
    child.kill(); child.wait(); tracker.close(); print("closed", flush=True)
time.sleep(120)
"""


def fake_driver(tmp_path: Path, how: str) -> tuple[subprocess.Popen[str], int, Path]:
    """A driver that starts a stand-in gcs_server and tracks it: (driver, child pid, record)."""
    env = dict(os.environ, **{lo.DIR_VAR: str(tmp_path / "records")})
    args = [lo.__file__, str(tmp_path / SESSION_NAME), str(tmp_path / "ray"), how]
    driver = subprocess.Popen(
        [sys.executable, "-c", _FAKE_DRIVER, *args], env=env, stdout=subprocess.PIPE, text=True
    )
    assert driver.stdout is not None
    return driver, int(driver.stdout.readline()), tmp_path / "records" / f"{driver.pid}.json"


def wait_until(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_the_watcher_stops_what_a_killed_driver_left(tmp_path: Path) -> None:
    driver, child, record = fake_driver(tmp_path, "kill")
    child_proc = lo.Proc(child, lo._stat(child)[2])  # type: ignore[index]
    try:
        assert record.exists()
        driver.kill()
        driver.wait()
        assert wait_until(lambda: not lo.alive(child_proc), 5.0)
        assert wait_until(lambda: not record.exists(), 2.0)
    finally:
        if lo.alive(child_proc):
            os.kill(child, signal.SIGKILL)


def test_a_clean_shutdown_removes_the_record_and_the_watcher_does_nothing(tmp_path: Path) -> None:
    driver, _, record = fake_driver(tmp_path, "clean")
    try:
        assert driver.stdout is not None and driver.stdout.readline().strip() == "closed"
        assert not record.exists()
    finally:
        driver.kill()
        driver.wait()


# -- a real driver with an emulated board -------------------------------------------------

_DRIVER = """
import sys, time
from maniple.devices import ModelSpec, open_device, ray_backend
from maniple.devices.tiny import TINY_INPUT_SHAPE, TINY_NETWORK
spec = ModelSpec(TINY_NETWORK, seed=7, input_shape=TINY_INPUT_SHAPE)
board = open_device("emu:firefly-rk3399", spec, fast_forward=True)
tracker = ray_backend._session.tracker
print(tracker._watcher.pid, flush=True)
time.sleep(300)
"""

_USER_RAY = """
import sys, ray
ray.init(address="local", num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.1")
print(ray._private.worker._global_node.get_session_dir_path(), flush=True)
sys.stdin.read()  # until the test closes it
ray.shutdown()
"""


def readline(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The next line `proc` prints; fails the test after `timeout_s` rather than hang."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    assert ready, f"pid {proc.pid} printed nothing in {timeout_s:g} s"
    return proc.stdout.readline()


def session_pids(session_dir: str) -> set[int]:
    """The live processes that name `session_dir` in their command line or open files (an
    independent count: no ray_leftovers logic)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            texts = [(entry / "cmdline").read_bytes().decode(errors="replace")]
            texts += [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if any(session_dir + "/" in t or t.endswith(session_dir) for t in texts):
            found.add(int(entry.name))
    return found


@pytest.mark.ray
@pytest.mark.emulated
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs Ray")
def test_a_killed_drivers_ray_is_stopped_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = tmp_path / "records"
    monkeypatch.setenv(lo.DIR_VAR, str(records))  # this process: the next maniple start
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))
    )
    user_env = dict(env, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    user = subprocess.Popen(
        [sys.executable, "-c", _USER_RAY],
        env=user_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER], env=env, stdout=subprocess.PIPE, text=True
    )
    assert driver.stdout is not None and user.stdout is not None and user.stdin is not None
    try:
        watcher = int(readline(driver, 120))
        user_session = readline(user, 120).strip()
        assert "/session_" in user_session, "the user's Ray did not start"
        record = lo.read_record(records / f"{driver.pid}.json")
        before, user_before = session_pids(record.session_dir), session_pids(user_session)
        assert len(before) >= 4 and len(user_before) >= 2  # gcs, raylet, agents, worker
        os.kill(watcher, signal.SIGKILL)  # so that only the next start can clean up
        driver.kill()
        driver.wait()
        time.sleep(0.5)
        assert session_pids(record.session_dir), "nothing lingered: nothing to test"

        t0 = time.monotonic()
        lo.clean_leftovers()  # as the next ensure_ray does
        assert wait_until(lambda: not session_pids(record.session_dir), 5.0)
        assert time.monotonic() - t0 < 8
        assert not (records / f"{driver.pid}.json").exists()
        assert user_before <= session_pids(user_session) | {user.pid}  # the user's Ray runs on
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        lo.clean_leftovers(records, grace_s=0.5)
        user.stdin.close()
        user.wait(timeout=30)
