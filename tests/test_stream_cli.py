"""`maniple stream` on this host's CPU (no Ray): strict JSON alone on stdout, the human
summary, bad options refused with exit 2; and (slow, emulated) Ctrl-C on a stream of
emulated boards: exit 130 within 2 s with a summary, no process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maniple.cli import app
from maniple.devices.tiny import TINY_NETWORK

runner = CliRunner()
BASE = ["stream", "--network", TINY_NETWORK, "--input-shape", "3,32,32"]


def test_stream_json_is_strict_and_alone_on_stdout(tmp_path: Path) -> None:
    db = str(tmp_path / "p.sqlite")
    args = [*BASE, "--devices", "cpu#0,cpu#1", "--frames", "6", "--check-all", "--json"]
    result = runner.invoke(app, [*args, "--profile-db", db])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert doc["frames"] == 6 and doc["checked_frames"] == 6
    assert doc["max_rel_error"] <= doc["tolerance"]
    assert [f["index"] for f in doc["frame_runs"]] == list(range(6))
    assert doc["throughput_fps"] > 0 and doc["speedup"] > 0


def test_stream_prints_a_summary(tmp_path: Path) -> None:
    db = str(tmp_path / "p.sqlite")
    result = runner.invoke(app, [*BASE, "--devices", "cpu", "--frames", "3", "--profile-db", db])
    assert result.exit_code == 0, result.output
    assert "frames/s" in result.stdout and "checked against one device" in result.stdout


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--frames", "0"], "--frames 0"),
        (["--frames", str(10**7)], "give 1 to"),
        (["--fps", "0"], "--fps"),
        (["--fps", "nan"], "--fps"),
        (["--runtime", "ring"], "runtime"),
    ],
)
def test_bad_options_exit_2_naming_them(extra: list[str], needle: str) -> None:
    from maniple.cli.main import main

    proc = subprocess.run(
        [sys.executable, "-c", "from maniple.cli.main import main; main()", *BASE,
         "--devices", "cpu", *extra],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert main  # the entry point the subprocess runs


@pytest.mark.slow
@pytest.mark.emulated
def test_ctrl_c_stops_an_emulated_stream_within_2_s_leaving_nothing() -> None:
    env = dict(os.environ, MANIPLE_STREAM_TEST="x")
    args = [*BASE, "--emulate", "3xfirefly-rk3399", "--frames", "100000"]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from maniple.cli.main import console; console()", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    env_tag = "MANIPLE_STREAM_TEST=x"
    try:
        time.sleep(75)  # Ray, the boards, profiling: then it streams
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert took < 2.0, took
    assert "interrupted after" in err and "frames/s" in out
    assert "Traceback" not in err
    time.sleep(3)
    left = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _has_env(p, env_tag)]
    assert not left, left


def _has_env(p: Path, tag: str) -> bool:
    try:
        return tag.encode() in (p / "environ").read_bytes()
    except OSError:
        return False
