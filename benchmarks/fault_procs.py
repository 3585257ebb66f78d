"""Process-tree helpers of the fault-injection run (benchmarks/faults.py), read from /proc,
the loop that runs one command, signals one of its workers and cleans up after it, and
the profile store's state before and after.

Why /proc and not psutil: psutil is not a dependency of maniple (Ray 2.60 no longer pulls
it in), and the emulated boards are Linux processes anyway.

Why a tag in the environment: this host is shared, so other people's Ray processes come
and go during a run. Every process a run starts (the driver, gcs_server, raylet, the
dashboard and runtime-env agents, every `ray::` worker) inherits the driver's environment,
so a variable set only for that run names exactly the processes it started, even after
they are re-parented to init when the driver dies. A child of a tagged process counts too
(a zombie's environment cannot be read). Every process is keyed by (pid, start time) so
that a reused pid is never taken for, or signalled as, one of ours.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

TAG_VAR = "MANIPLE_FAULTS_RUN"
"""The environment variable that marks the processes of one run."""
WORKER_TITLE = "ray::Worker"
"""Ray sets an actor's process title to `ray::Class` (idle) or `ray::Class.method`."""
COMPUTE_METHODS = ("run_span", "run_step", "run_batch", "transfer")
"""Worker methods that do the network's work (profiling or timed), not start-up or control."""
RAY_MARKS = ("ray::", "/ray/", "gcs_server", "raylet", "dashboard", "runtime_env")


@dataclass(frozen=True)
class Proc:
    """One process as /proc shows it at one moment."""

    pid: int
    start: int  # clock ticks since boot: with pid, identifies the process
    ppid: int
    state: str  # R, S, D, T (stopped), Z (zombie), ...
    cmd: str  # the command line, or the title Ray gave it

    @property
    def key(self) -> tuple[int, int]:
        """(pid, start time): unique over the host's uptime."""
        return (self.pid, self.start)

    @property
    def is_worker(self) -> bool:
        """A maniple device's Ray actor (an emulated board)."""
        return self.cmd.startswith(WORKER_TITLE)

    @property
    def method(self) -> str:
        """The actor method running now ('' when idle or not an actor)."""
        head = self.cmd.split()[0] if self.cmd else ""
        return head.split(".", 1)[1] if self.is_worker and "." in head else ""

    @property
    def is_ray(self) -> bool:
        """Looks like a Ray process (a worker, an agent, gcs_server, raylet)."""
        return any(mark in self.cmd for mark in RAY_MARKS)

    def brief(self) -> str:
        """`pid 123 (T) ray::Worker.run_span`, for reports."""
        return f"pid {self.pid} ({self.state}) {self.cmd[:100]}"


def read_proc(pid: int, cmd: bool = True) -> Proc | None:
    """The process `pid` now (without its command line unless `cmd`), or None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes() if cmd else b""
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the name in () may hold spaces
    line = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    if not line:  # kernel threads and zombies: the name from stat
        line = stat[stat.find("(") + 1 : stat.rfind(")")]
    return Proc(pid, int(fields[19]), int(fields[1]), fields[0], line)


def all_procs() -> list[Proc]:
    """Every process on the host now."""
    procs = (read_proc(int(name)) for name in os.listdir("/proc") if name.isdigit())
    return [p for p in procs if p is not None]


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


class TagWatch:
    """Finds the processes of one run (those whose environment holds TAG_VAR=tag).

    Each process's environment is read once (keyed by pid and start time), so scanning
    every 0.1 s stays cheap on a 2-core host."""

    def __init__(self, tag: str) -> None:
        self.needle = f"{TAG_VAR}={tag}".encode()
        self._known: dict[tuple[int, int], bool] = {}

    def scan(self) -> list[Proc]:
        """The run's processes alive (or zombie) now, oldest first."""
        stats = (read_proc(int(n), cmd=False) for n in os.listdir("/proc") if n.isdigit())
        procs = sorted((p for p in stats if p is not None), key=lambda p: p.start)
        ours = {p.pid for p in procs if self._known.get(p.key)}
        for p in procs:
            if p.key not in self._known:
                self._known[p.key] = p.ppid in ours or _environ_has(p.pid, self.needle)
                if self._known[p.key]:
                    ours.add(p.pid)
        mine = (read_proc(p.pid) for p in procs if self._known[p.key])  # now with cmdline
        return [p for p in mine if p is not None and self._known.get(p.key)]


def send(proc: Proc, sig: int) -> bool:
    """Signal `proc` if that very process (same pid and start time) is still there."""
    now = read_proc(proc.pid)
    if now is None or now.start != proc.start:
        return False
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def settle(watch: TagWatch, seconds: float) -> list[Proc]:
    """Wait up to `seconds` for the run's processes to go; those still there (zombies
    included: nobody reaped them) are left behind."""
    deadline = time.monotonic() + seconds
    while True:
        left = watch.scan()
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def reap(watch: TagWatch, procs: list[Proc], seconds: float = 10.0) -> list[Proc]:
    """SIGCONT then SIGKILL each of `procs` (only these, only if still the same process)
    and wait for them to go; returns those that would not (zombies of a live parent)."""
    for p in procs:
        send(p, signal.SIGCONT)
        send(p, signal.SIGKILL)
    deadline = time.monotonic() + seconds
    keys = {p.key for p in procs}
    while True:
        left = [p for p in watch.scan() if p.key in keys and p.state != "Z"]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def new_untagged_ray(before: set[tuple[int, int]], watch: TagWatch) -> list[Proc]:
    """Ray processes that appeared since `before` without this run's tag: other users'
    runs on this shared host (reported, never signalled)."""
    ours = {p.key for p in watch.scan()}
    return [p for p in all_procs() if p.key not in before and p.key not in ours and p.is_ray]


@dataclass
class Seen:
    """What one command did, as watched from outside (times in s from its start)."""

    rc: int | None = None
    killed: bool = False  # by the harness, after a hang
    t_exit: float = 0.0
    anchor: float | None = None  # first ray::Worker process
    compute0: float | None = None  # first compute method on a worker
    last_compute: float | None = None
    writes: list[float] = field(default_factory=list)  # the store file changed
    fault_t: float | None = None
    error_t: float | None = None  # when an `error:` line first showed on stderr
    victim: Proc | None = None
    workers_at_fault: list[int] = field(default_factory=list)  # their pids
    leftovers: list[Proc] = field(default_factory=list)
    unreaped: list[Proc] = field(default_factory=list)
    foreign: int = 0
    stdout: str = ""
    stderr: str = ""


def _db_state(db: Path) -> tuple[tuple[int, int], ...]:
    stats = []
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-journal")):
        try:
            stats.append((p.stat().st_mtime_ns, p.stat().st_size))
        except OSError:
            stats.append((0, 0))
    return tuple(stats)


def _abort(child: subprocess.Popen) -> int:
    os.kill(child.pid, signal.SIGABRT)
    try:
        return child.wait(5)
    except subprocess.TimeoutExpired:
        os.kill(child.pid, signal.SIGKILL)
        return child.wait()


def hang_stack(stderr: str, depth: int = 12) -> list[str]:
    """The hung driver's main-thread stack from faulthandler's dump on SIGABRT:
    `file:line (function)`, innermost first."""
    dump = stderr[stderr.find("Current thread") :] if "Current thread" in stderr else ""
    frames = []
    for line in dump.splitlines()[1:]:
        if not line.strip().startswith("File "):
            break
        m = re.match(r'\s*File "(.*)", line (\d+) in (.*)', line)
        frames.append(f"{m[1].split('site-packages/')[-1]}:{m[2]} ({m[3]})" if m else line)
    return frames[:depth]


@dataclass(frozen=True)
class Fault:
    """Send `sig` to one `ray::Worker` (`pick` in [0, 1) of those alive, oldest first)
    `delay` s after the first worker appeared (`base` 'anchor') or first computed
    ('compute0')."""

    sig: int
    base: str
    delay: float
    pick: float
    first_worker: float  # s from the start to the first worker in calibration: `delay`
    # is scaled by this run's own time to its first worker (load on a shared host)


def watch_run(
    argv: list[str],
    env: dict[str, str],
    db: Path,
    work: Path,
    fault: Fault | None,
    after_fault_s: float,
    limit_s: float,
    settle_s: float,
) -> Seen:
    """Run `argv` (stdout and stderr to files in `work`), watching its processes and the
    store file `db`; inject `fault`; kill it (its process group) `after_fault_s` past the
    fault or `limit_s` after its start; then let its processes go (`settle_s`), and
    SIGCONT+SIGKILL those that stay. Returns what was seen."""
    seen, tag = Seen(), uuid.uuid4().hex
    watch, before = TagWatch(tag), {p.key for p in all_procs()}
    env = {**env, TAG_VAR: tag}
    out, err = work / "stdout.txt", work / "stderr.txt"
    with out.open("w") as fo, err.open("w") as fe:
        child = subprocess.Popen(argv, env=env, stdout=fo, stderr=fe, start_new_session=True)
    t0, db_last = time.monotonic(), _db_state(db)
    try:
        while (rc := child.poll()) is None:
            now = time.monotonic() - t0
            procs = watch.scan()
            workers = [p for p in procs if p.is_worker]
            if workers and seen.anchor is None:
                seen.anchor = now
            if any(p.method in COMPUTE_METHODS for p in workers):
                seen.compute0 = now if seen.compute0 is None else seen.compute0
                seen.last_compute = now
            if seen.error_t is None and "error:" in err.read_text(errors="replace"):
                seen.error_t = now  # apart from the exit: detection vs. tear-down
            if (state := _db_state(db)) != db_last:
                seen.writes.append(now)
                db_last = state
            if fault and seen.fault_t is None and workers:
                base = getattr(seen, fault.base)
                scale = min(max(seen.anchor / fault.first_worker, 0.25), 4.0)
                if base is not None and now >= base + fault.delay * scale:
                    victim = workers[min(int(fault.pick * len(workers)), len(workers) - 1)]
                    if send(victim, fault.sig):
                        seen.fault_t, seen.victim = now, victim
                        seen.workers_at_fault = [p.pid for p in workers]
            limit = limit_s if seen.fault_t is None else seen.fault_t + after_fault_s
            if now > limit:  # a hang: SIGABRT dumps its stacks (PYTHONFAULTHANDLER), then
                # SIGKILL; the driver only, to see what a dead driver leaves behind
                rc, seen.killed = _abort(child), True
                break
            time.sleep(0.1)
    finally:
        if child.poll() is None:  # interrupted: take this run's processes down
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            reap(watch, watch.scan())
    seen.rc, seen.t_exit = rc, time.monotonic() - t0
    seen.leftovers = settle(watch, settle_s)
    seen.unreaped = reap(watch, seen.leftovers) if seen.leftovers else []
    seen.foreign = len(new_untagged_ray(before, watch))
    seen.stdout, seen.stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
    return seen


def store_rows(db: Path) -> tuple[str, dict[str, set[tuple]]]:
    """`PRAGMA integrity_check`'s verdict and each table's primary keys (read only)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            verdict = "; ".join(r[0] for r in con.execute("PRAGMA integrity_check"))
            rows = {}
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                cols = [r[1] for r in con.execute(f"PRAGMA table_info('{table}')") if r[5]]
                sel = ", ".join(f'"{c}"' for c in cols) if cols else "*"
                rows[table] = set(con.execute(f'SELECT {sel} FROM "{table}"'))
            return verdict, rows
        finally:
            con.close()
    except sqlite3.Error as exc:
        return f"cannot read: {exc}", {}
