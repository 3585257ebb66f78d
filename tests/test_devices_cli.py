"""`maniple devices` and `maniple probe` (the emulated probe runs Ray: marked `emulated`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from maniple.cli import app

runner = CliRunner()


def _maniple(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    code = "from maniple.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout
    )


def test_devices_json_lists_cpu_and_presets() -> None:
    result = runner.invoke(app, ["devices", "--json"])
    assert result.exit_code == 0, result.output
    devices = json.loads(result.stdout)
    names = [d["name"] for d in devices]
    assert names[0] == "cpu" and "emu:firefly-rk3399" in names and "emu:odroid-xu4" in names
    assert all(set(d) == {"name", "kind", "description"} for d in devices)


def test_devices_table_says_the_odroid_is_an_assumption() -> None:
    result = runner.invoke(app, ["devices"])
    assert result.exit_code == 0, result.output
    assert "ASSUMED" in result.stdout and "emu:custom" in result.stdout


def test_probe_on_the_cpu() -> None:
    args = ["probe", "--device", "cpu", "--network", "maniple.devices.tiny:tiny_cnn"]
    result = runner.invoke(app, [*args, "--input-shape", "3,32,32", "--batch", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["device"] == "cpu" and data["batch"] == 2 and not data["emulated"]
    assert data["latency_ms"] > 0 and len(data["runs_ms"]) == 3


def test_probe_of_an_absent_device_is_one_clear_line() -> None:
    done = _maniple("probe", "--device", "cuda:99", "--network", "vgg-16")
    assert done.returncode == 2
    assert (
        "device 'cuda:99' is not present" in done.stderr and "Present devices: cpu" in done.stderr
    )
    assert "Traceback" not in done.stderr


def _probe_firefly() -> dict:
    pytest.importorskip("ray")
    pytest.importorskip("maniple.zoo")
    done = _maniple("probe", "--device", "emu:firefly-rk3399", "--network", "vgg-16", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.emulated
def test_probe_of_an_emulated_firefly() -> None:
    data = _probe_firefly()
    assert data["emulated"] and data["dilation"] == 2.0 and data["reference_ms"] == 970.0
    assert data["latency_ms"] > 0 and data["board_ms"] > 0 and data["cpu_ms"] > 0


@pytest.mark.slow
@pytest.mark.emulated
def test_probe_of_an_emulated_firefly_is_near_its_preset() -> None:
    """A timing threshold (the host's speed drifts from its calibration by several %, see
    devices/calibration.py): run with `pytest -m slow`; benchmarks/emulation_check.py
    reports the same figure."""
    data = _probe_firefly()
    assert abs(data["latency_ms"] - 970.0) <= 97.0, data
