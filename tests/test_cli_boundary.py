"""The CLI's error boundary (#15): one line per failure, exit codes a script can trust,
stdout holding only the document under --json, results kept when a figure fails, the
same module-spec lookup in every command, --timeout everywhere, honest 1.00x."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer

from maniple.cli.boundary import EXIT_BUG, EXIT_USER_ERROR, run_guarded
from maniple.errors import ManipleError
from maniple.spread import SAME_PLAN, WITHIN_NOISE, Spread, speedup_verdict

NOISY_NET = textwrap.dedent(
    """
    import os
    import torch.nn as nn

    def build():
        print("(raylet) WARNING: a library line on Python's stdout")
        os.write(1, b"(raylet) WARNING: a line written to fd 1 by C code\\n")
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(4, 4, 3, padding=1))
    """
)


def strict_json(text: str) -> object:
    """json.loads that refuses NaN and Infinity, as strict parsers do."""

    def refuse(token: str) -> object:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def maniple(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    """Run the real entry point in a fresh process (console-script conditions: the
    working directory is not on sys.path)."""
    code = "import sys; from maniple.cli import main; main(sys.argv[1:])"
    full_env = {**os.environ, **(env or {})}
    full_env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def test_json_stdout_holds_only_the_document(tmp_path: Path) -> None:
    (tmp_path / "noisy_net.py").write_text(NOISY_NET)
    done = maniple("inspect", "noisy_net:build", "--input-shape", "3,16,16", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = strict_json(done.stdout)
    assert isinstance(doc, dict) and doc["network"] == "noisy_net:build"
    assert "(raylet) WARNING" in done.stderr and "Traceback" not in done.stderr


def test_a_user_error_under_json_leaves_stdout_empty(tmp_path: Path) -> None:
    done = maniple("inspect", "no-such-net", "--json", cwd=tmp_path)
    assert done.returncode == EXIT_USER_ERROR
    assert done.stdout == ""
    assert done.stderr.startswith("error: unknown model 'no-such-net'")
    assert "Traceback" not in done.stderr


def test_a_bug_is_one_line_and_a_log_with_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MANIPLE_CACHE_DIR", str(tmp_path))
    app = typer.Typer()

    @app.command()
    def broken() -> None:
        raise RuntimeError("kaboom")

    said: list[str] = []
    code = run_guarded(typer.main.get_command(app), [], said.append, lambda _stream: None)
    assert code == EXIT_BUG and len(said) == 1
    assert "unexpected RuntimeError: kaboom" in said[0] and "a bug in maniple" in said[0]
    logs = list((tmp_path / "logs").glob("maniple-*.log"))
    assert len(logs) == 1 and str(logs[0]) in said[0]
    assert "Traceback" in logs[0].read_text() and "kaboom" in logs[0].read_text()


def test_user_errors_usage_errors_exits_and_interrupts() -> None:
    app = typer.Typer()

    @app.command()
    def command(n: int, fail: int = 0, interrupt: bool = False) -> None:
        if interrupt:
            raise KeyboardInterrupt
        if fail:
            raise typer.Exit(fail)
        raise ManipleError(f"--n {n} is too large (limit 3); give 3 or less")

    cmd = typer.main.get_command(app)
    said: list[str] = []

    def run(*args: str) -> int:
        return run_guarded(cmd, list(args), said.append, lambda _s: None)

    assert run("9") == EXIT_USER_ERROR
    assert said == ["[bold red]error:[/] --n 9 is too large (limit 3); give 3 or less"]
    assert run("x") == EXIT_USER_ERROR  # a usage error, from the command-line library
    assert run("--help") == 0
    assert run("1", "--fail", "1") == 1
    said.clear()
    assert run("1", "--interrupt") == 130 and "interrupted" in said[0]


CWD_NET = textwrap.dedent(
    """
    import torch.nn as nn

    def build():
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 8 * 8, 5))
    """
)


def test_infer_finds_a_module_spec_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "cwd_net.py").write_text(CWD_NET)
    args = ["--input-shape", "3,8,8", "--batch", "4", "--device", "cpu", "--repeats", "2"]
    done = maniple(
        "infer",
        "--network",
        "cwd_net:build",
        *args,
        "--profile-db",
        str(tmp_path / "p.sqlite"),
        "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    doc = strict_json(done.stdout)
    assert isinstance(doc, dict)
    # one device: the plan is the baseline itself, so the speedup is exactly 1.00x
    assert doc["speedup"] == 1.0 and doc["speedup_verdict"] == SAME_PLAN
    assert set(doc["runs_spread_ms"]) == {"min", "median", "max"}


def test_an_unwritable_timeline_is_refused_before_any_work(tmp_path: Path) -> None:
    target = tmp_path / "no-such-folder" / "timeline.png"
    done = maniple(
        "infer", "--network", "resnet-18", "--batch", "2", "-d", "cpu", "--timeline",
        str(target), cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == EXIT_USER_ERROR
    assert "--timeline" in done.stderr and "no such folder" in done.stderr
    assert "profiling" not in done.stderr and "Traceback" not in done.stderr


def test_a_failing_timeline_keeps_the_result(tmp_path: Path) -> None:
    (tmp_path / "cwd_net.py").write_text(CWD_NET)
    done = maniple(
        "infer", "--network", "cwd_net:build", "--input-shape", "3,8,8", "--batch", "2",
        "-d", "cpu", "--repeats", "1", "--profile-db", str(tmp_path / "p.sqlite"),
        "--timeline", str(tmp_path / "timeline.not-a-format"), "--json", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == EXIT_USER_ERROR, done.stderr
    doc = strict_json(done.stdout)  # the whole result came out first
    assert isinstance(doc, dict) and doc["batch"] == 2
    assert "the timeline could not be written" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e9"])
def test_timeout_is_checked(tmp_path: Path, value: str) -> None:
    done = maniple(
        "infer", "--network", "resnet-18", "--batch", "2", "-d", "cpu", "--timeout", value,
        cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == EXIT_USER_ERROR
    assert "--timeout must be a number of seconds" in done.stderr


def test_every_command_that_waits_for_devices_has_timeout() -> None:
    from maniple.cli import app

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    waiting = {"infer", "measure-io", "spatial", "probe", "demo"}
    for name in waiting:
        assert "timeout" in {p.name for p in commands[name].params}, name
    legion = commands["bench"].commands["legion"]
    assert "timeout" in {p.name for p in legion.params}


def test_speedup_verdicts() -> None:
    assert speedup_verdict([10.0, 11.0, 12.0], [5.0, 5.5, 6.0]) == "faster"
    assert speedup_verdict([10.0, 11.0, 12.0], [11.5, 13.0, 14.0]) == WITHIN_NOISE
    assert speedup_verdict([10.0, 11.0, 12.0], [13.0, 14.0]) == "slower"
    assert speedup_verdict([10.0], [30.0], same_plan=True) == SAME_PLAN
    assert str(Spread.of([3.0, 1.0, 2.0])) == "1.0/2.0/3.0 ms (min/median/max)"


@pytest.mark.emulated
def test_json_stays_alone_on_stdout_with_ray_boards(tmp_path: Path) -> None:
    """Ray and its workers start with fd 1 pointing at stderr: their lines never reach the
    document, whatever Ray decides to print."""
    pytest.importorskip("ray")
    (tmp_path / "noisy_net.py").write_text(NOISY_NET)
    done = maniple(
        "spatial", "--network", "noisy_net:build", "--input-shape", "3,32,32",
        "--emulate", "2xcustom:40", "--repeats", "1", "--search", "legion", "--min-gain", "0",
        "--profile-db", str(tmp_path / "p.sqlite"), "--timeout", "20", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = strict_json(done.stdout)
    assert isinstance(doc, dict) and doc["network"] == "noisy_net:build"
    assert "(raylet) WARNING" in done.stderr and "Traceback" not in done.stderr
