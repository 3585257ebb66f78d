"""Fuzz every CLI command over its own argument grammar (issue #15, hardening).

Why: a user must never see a traceback, a script must be able to trust the exit code,
and under `--json` stdout must hold the one strict-JSON document and nothing else. The
command lines come from the live typer app (`cli_grammar.read_grammar`), so new commands
and options are fuzzed without editing this file; values are valid, boundary (0, -1,
10**12, NaN, inf, empty, unicode, missing / folder / unwritable paths, junk files) and
wrong-typed.

A run fails on: exit 3 (a bug, by the CLI's own contract), any exit code outside
0 / 1 / 2, a 'Traceback' on stdout or stderr, a run over the per-run time limit (a hang),
and under `--json` on exit 0 a stdout that is not one strict JSON document (NaN and
Infinity refused). Every example runs even after a failure; failures are grouped by
cause (exception type and innermost maniple frame, or the hung frame) and reported
together, each with its shortest command line, so one run lists every distinct bug.

Two profiles:
- default: in this process through the real entry point (`maniple.cli.main.main`), fd 1
  and 2 captured, tiny networks, small counts, no Ray (commands and options that start
  Ray are left to the slow profile); a fixed, derandomized set of examples, within about
  two minutes on two cores. A memory cap (RLIMIT_AS) turns a huge allocation into an
  error instead of the OOM killer, and a watchdog interrupts a run past its limit.
- slow (`-m slow`): each run in a fresh process (`python -c 'from maniple.cli.main
  import main; main()'`), more examples, emulated boards and Ray, bigger inputs; the
  processes a run leaves (Ray's among them) are found by session and by a per-run
  RAY_TMPDIR marker and killed by pid.

Knobs (environment): MANIPLE_FUZZ_SCALE=K multiplies every example count;
MANIPLE_FUZZ_FULL=1 runs every example even when failures pile up (by default a
command's remaining examples are skipped once it has failed and spent its time budget);
MANIPLE_FUZZ_REPORT=FILE appends every finding as a JSON line.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import typer
from hypothesis import HealthCheck, Phase, example, given, settings

import maniple
from cli_grammar import (
    DEFAULT,
    RAY_COMMANDS,
    SLOW,
    Command,
    Profile,
    Sandbox,
    Values,
    argv_strategy,
    minimal_valid,
    read_grammar,
    sweep_lines,
)
from maniple.cli.main import app, main

GRAMMAR = read_grammar(typer.main.get_command(app))
SRC = Path(maniple.__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
EXIT_OK, EXIT_CHECK_FAILED, EXIT_USER_ERROR, EXIT_BUG = 0, 1, 2, 3

DEFAULT_EXAMPLES = 30
DEFAULT_EXAMPLES_BY_COMMAND = {"models": 0, "devices": 10}
"""Generated examples per command (each also runs its explicit minimal valid line).
`models` builds all eleven zoo networks (10-30 s a run): only `models --json` here."""
SLOW_EXAMPLES = 16
SLOW_EXAMPLES_BY_COMMAND = {"models": 3, "devices": 6, "demo": 2, "bench legion": 3}
DEFAULT_TIMEOUT_S = 20.0
TIMEOUT_S_BY_COMMAND = {"models": 120.0}
SLOW_TIMEOUT_S = 180.0
SLOW_TIMEOUT_S_BY_COMMAND = {"demo": 1200.0, "bench legion": 600.0, "spatial": 300.0}
BUDGET_S = {"default": 12.0, "slow": 600.0}
"""A command's time budget: past it, once it has failed, its other examples are skipped
(the test fails anyway; this keeps a broken CLI from taking the suite's whole time)."""
MEMORY_HEADROOM = 6 << 30
"""Address space a run may take beyond what this process holds."""


def strict_json(text: str) -> object:
    """json.loads that refuses NaN and Infinity, as strict parsers do."""

    def refuse(token: str) -> object:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


# -- running one command line ------------------------------------------------------------


@dataclass
class Outcome:
    """What one run did: exit code, both streams, time; the stack where it hung."""

    code: int
    stdout: str
    stderr: str
    seconds: float
    hung: bool = False
    stack: str = ""
    stack_innermost_first: bool = False
    started_ray: bool = False
    crash_log: str = ""


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    return exc.code if isinstance(exc.code, int) else 1


class InProcessRunner:
    """Runs `maniple.cli.main.main(argv)` here, as the console script would: fd 1 and 2
    point at files (the boundary's `--json` guard works on fds), sys.stdout/stderr write
    to them, the working directory is the sandbox's; torch's thread count, the
    environment and the memory limit are put back after every run."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        self._takes_argv = bool(inspect.signature(main).parameters)

    def run(self, argv: list[str], timeout: float) -> Outcome:
        self.box.reset()
        env, cwd, threads = dict(os.environ), os.getcwd(), torch.get_num_threads()
        limits = resource.getrlimit(resource.RLIMIT_AS)
        logs = Path(tempfile.mkdtemp(prefix="logs-", dir=self.box.root))
        os.environ.update({**self.box.env(), "MANIPLE_CACHE_DIR": str(logs)})
        work = Path(tempfile.mkdtemp(prefix="run-", dir=self.box.work))
        os.chdir(work)
        self._cap_memory(limits)
        try:
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                code, seconds, watchdog = self._captured(argv, timeout, out, err)
                out.seek(0)
                err.seek(0)
                stdout = out.read().decode("utf-8", "replace")
                stderr = err.read().decode("utf-8", "replace")
        finally:
            resource.setrlimit(resource.RLIMIT_AS, limits)
            os.chdir(cwd)
            shutil.rmtree(work, ignore_errors=True)
            os.environ.clear()
            os.environ.update(env)
            torch.set_num_threads(threads)
        started_ray = _stop_ray_here()
        log = _read_logs(logs)
        return Outcome(
            code, stdout, stderr, seconds, watchdog.fired, watchdog.stack, False, started_ray, log
        )

    @staticmethod
    def _cap_memory(limits: tuple[int, int]) -> None:
        try:
            status = Path("/proc/self/status").read_text()
            vm = int(re.search(r"VmSize:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]
        except (OSError, AttributeError):
            return
        soft = vm + MEMORY_HEADROOM
        hard = limits[1]
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

    def _captured(
        self, argv: list[str], timeout: float, out: object, err: object
    ) -> tuple[int, float, _Watchdog]:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)  # type: ignore[attr-defined]
        os.dup2(err.fileno(), 2)  # type: ignore[attr-defined]
        streams = sys.stdout, sys.stderr
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        old_argv = sys.argv
        sys.argv = ["maniple", *argv]
        watchdog = _Watchdog(timeout)
        start = time.monotonic()
        code = EXIT_OK
        try:
            with watchdog:
                try:
                    main(argv) if self._takes_argv else main()
                except SystemExit as exc:
                    code = _exit_code(exc)
                except KeyboardInterrupt:
                    code = 130
                except BaseException:  # noqa: BLE001 - past the boundary: report it as a bug
                    traceback.print_exc()
                    code = EXIT_BUG
        finally:
            seconds = time.monotonic() - start
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            sys.stdout, sys.stderr = streams
            sys.argv = old_argv
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        return code, seconds, watchdog


class _Watchdog:
    """Interrupts the main thread (SIGINT, so KeyboardInterrupt) when a run passes its
    limit, after taking the main thread's stack: where it hung."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.fired = False
        self.stack = ""
        self._active = False
        self._lock = threading.Lock()
        self._main = threading.main_thread().ident
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        with self._lock:
            if not self._active:
                return
            frame = sys._current_frames().get(self._main)  # noqa: SLF001
            self.stack = "".join(traceback.format_stack(frame)) if frame else ""
            self.fired = True
            # a real SIGINT, not _thread.interrupt_main(): it also breaks a blocking call
            signal.pthread_kill(self._main, signal.SIGINT)  # type: ignore[arg-type]

    def __enter__(self) -> _Watchdog:
        self._active = True
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._active = False
        self._timer.cancel()
        if self.fired:  # a KeyboardInterrupt still on its way: take it here
            for _ in range(20):
                try:
                    time.sleep(0.01)
                except KeyboardInterrupt:
                    break


def _read_logs(folder: Path) -> str:
    """The crash logs one run wrote (each run has its own folder: log names are only
    unique per process and second), then the folder is removed."""
    text = "".join(p.read_text(errors="replace") for p in sorted(folder.rglob("*.log")))
    shutil.rmtree(folder, ignore_errors=True)
    return text


def _stop_ray_here() -> bool:
    """Whether the run left Ray running in this process (then stopped): the default
    profile must not start Ray, so such a command or option belongs in the slow one."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    ray.shutdown()
    return True


CHILD_MEMORY = 8 << 30
"""Address space of a fresh-process run and of each process it starts (Ray's too): a
huge allocation fails there instead of taking the host's memory."""
_CHILD = (
    "import faulthandler, resource, signal, sys; "
    "faulthandler.register(signal.SIGUSR1, all_threads=False); "
    f"resource.setrlimit(resource.RLIMIT_AS, ({CHILD_MEMORY}, resource.RLIM_INFINITY)); "
    "from maniple.cli.main import main; main(sys.argv[1:])"
)


class SubprocessRunner:
    """Runs each command line in a fresh Python (Ray may start there); on a hang, the
    child's stack is dumped (SIGUSR1, faulthandler) before it is killed; afterwards the
    processes it left are killed by pid."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box

    def run(self, argv: list[str], timeout: float) -> Outcome:
        self.box.reset()
        marker = tempfile.mkdtemp(prefix="mfz", dir="/tmp")  # short: Ray's socket paths
        logs = Path(tempfile.mkdtemp(prefix="logs-", dir=self.box.root))
        work = Path(tempfile.mkdtemp(prefix="run-", dir=self.box.work))
        path = os.pathsep.join(p for p in (str(SRC), str(TESTS), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, **self.box.env(), "RAY_TMPDIR": marker, "PYTHONPATH": path}
        env["MANIPLE_CACHE_DIR"] = str(logs)
        start = time.monotonic()
        hung, stack = False, ""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD, *argv],
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            try:
                code = child.wait(timeout)
            except subprocess.TimeoutExpired:
                hung = True
                child.send_signal(signal.SIGUSR1)
                time.sleep(2.0)
                code = -9
            finally:  # also when the test itself is stopped (pytest-timeout, Ctrl-C)
                seconds = time.monotonic() - start
                _kill_leftovers(child.pid, marker)
                child.wait()
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode("utf-8", "replace")
            stderr = err.read().decode("utf-8", "replace")
        shutil.rmtree(marker, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        if hung:
            stack = stderr[stderr.rfind("Stack (most recent call first)") :]
        return Outcome(code, stdout, stderr, seconds, hung, stack, True, False, _read_logs(logs))


def _kill_leftovers(session: int, marker: str) -> None:
    """SIGKILL, by pid, every process of the child's session or carrying its marker
    (RAY_TMPDIR in its environment or command line): the child and what it started.
    Scanned again until none is left (a raylet may start a worker while we kill)."""
    for _ in range(10):
        if not _kill_round(session, marker.encode()):
            return
        time.sleep(0.5)


def _kill_round(session: int, needle: bytes) -> int:
    """One scan of /proc: SIGKILL the live (not zombie) processes that are the run's;
    how many."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state, _, _, sid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:4]
            ours = int(sid) == session
            if not ours:
                blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
                ours = needle in blob
        except (OSError, ValueError):
            continue
        if ours and state != "Z":
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


# -- judging one run ---------------------------------------------------------------------

_USAGE_ERRORS = frozenset(
    {"UsageError", "BadParameter", "MissingParameter", "NoSuchOption", "BadOptionUsage"}
    | {"BadArgumentUsage", "NoArgsIsHelpError"}
)
_FRAME = re.compile(r'File "[^"]*?[/\\](maniple[/\\][^"]+\.py)", line \d+,? in (\S+)')


@dataclass(frozen=True)
class Verdict:
    """Why a run failed: `key` groups runs failing for one cause."""

    key: tuple[str, ...]
    title: str
    detail: str


def _frames(text: str, innermost_first: bool = False) -> list[str]:
    """maniple's frames in `text` as path:function, outermost first."""
    frames = [f"{path.replace(os.sep, '/')}:{func}" for path, func in _FRAME.findall(text)]
    return frames[::-1] if innermost_first else frames


def _where(text: str, innermost_first: bool = False) -> str:
    """The innermost maniple frame: where an exception came from."""
    frames = _frames(text, innermost_first)
    return frames[-1] if frames else "(no maniple frame)"


def _hung_in(text: str, innermost_first: bool) -> str:
    """The outermost maniple frame below the CLI: the step that never ended (the
    innermost one is wherever the endless loop happened to be)."""
    frames = [f for f in _frames(text, innermost_first) if not f.startswith("maniple/cli/")]
    return frames[0] if frames else _where(text, innermost_first)


_UNEXPECTED = re.compile(r"unexpected ([\w.]+)")
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Iteration))\b")


def _exception_type(stderr: str, text: str) -> str:
    """The exception's type: from the boundary's one line, else the traceback's last
    `SomethingError: ...` line (a message may span lines)."""
    found = _UNEXPECTED.search(stderr)
    if found:
        return found.group(1)
    types_ = [m.group(1) for ln in text.splitlines() if (m := _EXC_LINE.match(ln))]
    return types_[-1] if types_ else "(unknown exception)"


def judge(argv: list[str], out: Outcome) -> Verdict | None:
    """The first broken promise of this run, or None."""
    cmd = " ".join(t for t in argv[:2] if not t.startswith("-"))
    if out.hung:
        step = _hung_in(out.stack, out.stack_innermost_first)
        at = _where(out.stack, out.stack_innermost_first)
        title = f"hang: over the time limit in {step} (at {at})"
        return Verdict(("hang", step), title, out.stack)
    if out.started_ray:
        return Verdict(
            ("harness", "ray", cmd),
            f"{cmd} started Ray in-process: route this option/value to the slow profile",
            out.stderr,
        )
    both = out.stdout + out.stderr
    if out.code == EXIT_BUG:
        log = out.crash_log or out.stderr
        exc_type = _exception_type(out.stderr, log)
        if exc_type.startswith(("typer.", "click.")) or exc_type in _USAGE_ERRORS:
            return Verdict(
                ("exit 3", "usage error"),
                "a typer/click usage error exits 3 (a bug) instead of 2",
                log,
            )
        where = _where(log)
        return Verdict(("exit 3", exc_type, where), f"exit 3: {exc_type} in {where}", log)
    if "Traceback (most recent call last)" in both:
        exc_type = _exception_type("", both)
        return Verdict(
            ("traceback", exc_type, _where(both)),
            f"a traceback is shown (exit {out.code}): {exc_type} in {_where(both)}",
            both,
        )
    if out.code not in (EXIT_OK, EXIT_CHECK_FAILED, EXIT_USER_ERROR):
        return Verdict(
            ("exit code", str(out.code), cmd), f"{cmd}: undocumented exit {out.code}", both
        )
    if out.code == EXIT_USER_ERROR and not out.stderr.strip():
        return Verdict(("silent", cmd), f"{cmd}: exit 2 with nothing on stderr", both)
    json_mode = "--json" in argv and "--help" not in argv
    if json_mode and out.code == EXIT_OK:
        problem = _json_problem(out.stdout)
        if problem:
            return Verdict(("json", problem, cmd), f"{cmd} --json: {problem}", out.stdout)
    if json_mode and out.code == EXIT_USER_ERROR and out.stdout.strip():
        return Verdict(
            ("json", "stdout on error", cmd),
            f"{cmd} --json: stdout not empty on exit 2",
            out.stdout,
        )
    return None


def _json_problem(stdout: str) -> str:
    if not stdout.strip():
        return "no document on stdout"
    try:
        strict_json(stdout)
        return ""
    except ValueError as exc:
        try:
            _, end = json.JSONDecoder().raw_decode(stdout.lstrip())
            if stdout.lstrip()[end:].strip():
                return "stdout holds more than the document"
        except ValueError:
            pass
        return "not strict JSON" if "non-standard" in str(exc) else "stdout is not JSON"


@dataclass
class Finding:
    """Every run failing for one cause: the shortest command line, how many, where."""

    verdict: Verdict
    argv: list[str]
    code: int
    seconds: float
    count: int = 1
    commands: set[str] = field(default_factory=set)


class Findings:
    """Failures grouped by cause, each kept with its shortest command line."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, ...], Finding] = {}

    def __bool__(self) -> bool:
        return bool(self.by_key)

    def add(self, cmd: Command, argv: list[str], out: Outcome, verdict: Verdict) -> None:
        found = self.by_key.get(verdict.key)
        if found is None:
            self.by_key[verdict.key] = Finding(verdict, argv, out.code, out.seconds, 1, {cmd.name})
            return
        found.count += 1
        found.commands.add(cmd.name)
        if len(shlex.join(argv)) < len(shlex.join(found.argv)):
            found.argv, found.code, found.verdict = argv, out.code, verdict

    def report(self) -> str:
        parts = []
        for f in self.by_key.values():
            tail = "\n".join("      " + ln for ln in f.verdict.detail.strip().splitlines()[-8:])
            parts.append(
                f"- {f.verdict.title}  [{f.count} run(s); {', '.join(sorted(f.commands))}]\n"
                f"    maniple {shlex.join(f.argv)}    (exit {f.code}, {f.seconds:.1f}s)\n{tail}"
            )
        return f"{len(parts)} distinct failure(s):\n" + "\n".join(parts)

    def write(self, path: str, profile: Profile) -> None:
        with open(path, "a", encoding="utf-8") as f:
            for item in self.by_key.values():
                row = {
                    "profile": profile.name,
                    "key": list(item.verdict.key),
                    "title": item.verdict.title,
                    "argv": ["maniple", *item.argv],
                    "exit": item.code,
                    "count": item.count,
                    "commands": sorted(item.commands),
                    "tail": item.verdict.detail.strip().splitlines()[-12:],
                }
                f.write(json.dumps(row) + "\n")


# -- the tests ---------------------------------------------------------------------------


def _sandbox(root: Path) -> Sandbox:
    """The sample files, plus a plan saved by a real `spatial --save-plan` run."""
    box = Sandbox.create(root)
    plan = box.base / "saved-plan.json"
    InProcessRunner(box).run(
        ["spatial", "--devices", "cpu", "--network", "maniple.devices.tiny:tiny_cnn"]
        + ["--input-shape", "3,32,32", "--repeats", "1", "--save-plan", str(plan)],
        60.0,
    )
    box.add("plan", plan)
    return box


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = _sandbox(tmp_path_factory.mktemp("cli-fuzz"))
    yield box
    box.unlock()  # let pytest clean it up


def _examples(cmd: Command, profile: Profile) -> int:
    scale = float(os.environ.get("MANIPLE_FUZZ_SCALE", "1"))
    if profile is DEFAULT:
        count = DEFAULT_EXAMPLES_BY_COMMAND.get(cmd.name, DEFAULT_EXAMPLES)
    else:
        count = SLOW_EXAMPLES_BY_COMMAND.get(cmd.name, SLOW_EXAMPLES)
    return round(count * scale)


def _timeout(cmd: Command, profile: Profile) -> float:
    if profile is DEFAULT:
        return TIMEOUT_S_BY_COMMAND.get(cmd.name, DEFAULT_TIMEOUT_S)
    return SLOW_TIMEOUT_S_BY_COMMAND.get(cmd.name, SLOW_TIMEOUT_S)


def fuzz(cmd: Command, profile: Profile, box: Sandbox) -> None:
    """Run `cmd`'s examples under `profile`; fail with every distinct failure found."""
    values = Values(box, profile)
    runner = InProcessRunner(box) if profile.in_process else SubprocessRunner(box)
    findings = Findings()
    timeout = _timeout(cmd, profile)
    full = bool(os.environ.get("MANIPLE_FUZZ_FULL"))
    started = time.monotonic()
    skipped = []

    count = _examples(cmd, profile)

    @settings(
        max_examples=max(count, 1),
        derandomize=True,
        database=None,
        deadline=None,
        phases=(Phase.explicit, Phase.generate) if count else (Phase.explicit,),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @example(minimal_valid(cmd, values))
    @given(argv_strategy(cmd, values))
    def explore(argv: list[str]) -> None:
        if findings and not full and time.monotonic() - started > BUDGET_S[profile.name]:
            skipped.append(argv)
            return
        out = runner.run(argv, timeout)
        verdict = judge(argv, out)
        if verdict is not None:
            findings.add(cmd, argv, out, verdict)

    if profile.in_process:  # each parameter at its boundaries, one at a time
        for line in reversed(sweep_lines(cmd, values)):
            explore = example(line)(explore)
    explore()
    if os.environ.get("MANIPLE_FUZZ_REPORT"):
        findings.write(os.environ["MANIPLE_FUZZ_REPORT"], profile)
    note = f"\n({len(skipped)} example(s) skipped past the time budget)" if skipped else ""
    assert not findings, findings.report() + note


def test_the_grammar_is_read_from_the_app() -> None:
    """The walk finds the nested groups' commands and every option a kind; a value pool
    exists for every parameter (so a new option is fuzzed the day it is added)."""
    names = {c.name for c in GRAMMAR}
    assert {"infer", "spatial", "verify", "table show", "bench legion"} <= names
    infer = next(c for c in GRAMMAR if c.name == "infer")
    assert infer.option("--batch").kind == "int" and infer.option("--batch").required
    assert infer.option("--json").kind == "flag" and infer.option("--device").multiple
    assert infer.option("--check").secondary_opts == ("--no-check",)
    values = Values(Sandbox(Path("/nonexistent")), DEFAULT)
    for cmd in GRAMMAR:
        for p in cmd.params:
            assert p.kind in ("flag", "int", "float", "bool", "path", "choice", "str"), p
            if p.kind != "flag" and p.kind != "path":
                assert values.valid(cmd, p) and values.boundary(cmd, p), (cmd.name, p.long)


def _ids(cmd: Command) -> str:
    return cmd.name.replace(" ", "-")


@pytest.mark.parametrize("cmd", [c for c in GRAMMAR if c.path not in RAY_COMMANDS], ids=_ids)
def test_cli_fuzz(cmd: Command, sandbox: Sandbox) -> None:
    """Default profile: in-process, no Ray, tiny networks and small counts."""
    fuzz(cmd, DEFAULT, sandbox)


def _slow_param(cmd: Command) -> object:
    """The command as a slow test: marked slow (and emulated where it may start boards),
    with a test time limit that fits all its runs at their own limits."""
    limit = (_examples(cmd, SLOW) + 1) * (_timeout(cmd, SLOW) + 15) + 120
    marks = [pytest.mark.slow, pytest.mark.timeout(limit)]
    if cmd.path in RAY_COMMANDS or cmd.option("--emulate") or cmd.option("--device"):
        marks.append(pytest.mark.emulated)
    return pytest.param(cmd, marks=marks, id=_ids(cmd))


@pytest.mark.parametrize("cmd", [_slow_param(c) for c in GRAMMAR])
def test_cli_fuzz_slow(cmd: Command, sandbox: Sandbox) -> None:
    """Slow profile: a fresh process per run, emulated boards and Ray, bigger inputs."""
    pytest.importorskip("ray", reason="the slow CLI fuzz starts emulated boards on Ray")
    fuzz(cmd, SLOW, sandbox)


def _out(code: int, stdout: str = "", stderr: str = "", **more: object) -> Outcome:
    return Outcome(code, stdout, stderr, 0.1, **more)  # type: ignore[arg-type]


def test_the_judge_names_each_broken_promise() -> None:
    """The fuzz is only as good as its judge: each promise, broken once, is caught and
    grouped by its cause; kept promises pass."""
    crash = (
        "Traceback (most recent call last):\n"
        '  File "/x/src/maniple/cli/app.py", line 3, in command\n'
        '  File "/x/src/maniple/batch/store.py", line 9, in put\n'
        "ValueError: bad\n"
    )
    bug = judge(["infer"], _out(3, stderr="error: unexpected ValueError: bad", crash_log=crash))
    assert bug is not None and bug.key == ("exit 3", "ValueError", "maniple/batch/store.py:put")
    usage = judge(["x"], _out(3, stderr="error: unexpected NoSuchOption: --x"))
    assert usage is not None and usage.key == ("exit 3", "usage error")
    shown = judge(["probe"], _out(2, stderr=crash))
    assert shown is not None and shown.key[0] == "traceback"
    assert judge(["probe"], _out(7, stderr="x")).key[0] == "exit code"  # type: ignore[union-attr]
    for stdout, problem in [
        ("", "no document on stdout"),
        ('{"a": NaN}', "not strict JSON"),
        ('{"a": 1}\nprofiling cpu', "stdout holds more than the document"),
        ("a table", "stdout is not JSON"),
    ]:
        verdict = judge(["models", "--json"], _out(0, stdout))
        assert verdict is not None and verdict.key == ("json", problem, "models"), stdout
    assert judge(["models", "--json"], _out(2, "{}", "error: x")).key[1] == "stdout on error"  # type: ignore[union-attr]
    stack = (
        '  File "/x/maniple/cli/graph.py", line 1, in cmd\n'
        '  File "/x/maniple/tiling/verify.py", line 2, in verify_split\n'
        '  File "/x/maniple/tiling/span.py", line 3, in run\n'
    )
    hang = judge(["verify"], _out(130, hung=True, stack=stack))
    assert hang is not None and hang.key == ("hang", "maniple/tiling/verify.py:verify_split")
    assert judge(["models", "--json"], _out(0, '{"models": []}\n')) is None
    assert judge(["models", "--json", "--help"], _out(0, "")) is None
    assert judge(["probe"], _out(2, stderr="error: device 'x' is not present")) is None
    assert judge(["verify", "n"], _out(1, "NOT exact")) is None


def test_a_run_past_its_limit_is_a_hang(tmp_path: Path, sandbox: Sandbox) -> None:
    """The watchdog stops an in-process run that never ends and says where it was."""
    (tmp_path / "fuzz_sleeper.py").write_text("import time\n\ndef build():\n    time.sleep(60)\n")
    sys.path.insert(0, str(tmp_path))
    try:
        out = InProcessRunner(sandbox).run(
            ["inspect", "fuzz_sleeper:build", "--input-shape", "3,8,8"], timeout=1.0
        )
    finally:
        sys.path.remove(str(tmp_path))
    assert out.hung and out.seconds < 30 and "fuzz_sleeper.py" in out.stack
    verdict = judge(["inspect", "fuzz_sleeper:build"], out)
    assert verdict is not None and verdict.key[0] == "hang"
