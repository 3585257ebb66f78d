"""Ray processes left by a maniple that died: recorded when its private Ray starts, stopped
by a watcher as soon as it dies, else by the next maniple start (`clean_leftovers`).

Why: a driver killed with SIGKILL cannot shut its Ray down. Ray ties what the driver starts
(gcs_server, raylet, monitor, log_monitor, dashboard) to it with PR_SET_PDEATHSIG and the
workers follow the raylet within seconds, but the raylet's agents (DashboardAgent,
RuntimeEnvAgent) wait about a minute on the dead GCS before they exit. So each private Ray
gets a record, `<driver pid>.json` in `sessions_dir()`, and a watcher (this file run as a
script: stdlib only, no torch or Ray) holding a pipe from the driver: end of file means the
driver is gone, and a record still there means it did not shut Ray down.

Only a dead maniple's own processes are signalled: the record's driver must be gone (no
live process with its pid and start time), and each process alive with the start time seen,
this user's, started after the driver, a Ray process (titled `ray::…` or run from the Ray
package) and tied to the record's session directory, unique to that Ray (in its command line
or among its open files). A Ray the user started has no record; a live maniple's record a
live driver; a file that does not read as a record is left alone with a warning. Linux only
(it reads /proc); elsewhere nothing is recorded.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SCHEMA = "maniple.ray_session"
VERSION = 1
DIR_VAR = "MANIPLE_RAY_SESSIONS"  # overrides the record directory (tests, several users)
GRACE_S = 2.0  # SIGTERM to SIGKILL; Ray's agents ignore SIGTERM while the GCS is gone
MAX_RECORD_BYTES = 1 << 16
_PROC = Path("/proc")
_SESSION_NAME = re.compile(r"session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_\d+")
_RECORD_NAME = re.compile(r"[1-9]\d*\.json")

log = logging.getLogger("maniple.ray_leftovers")


@dataclass(frozen=True)
class Proc:
    """A process by pid and start time (clock ticks after boot), which no reused pid shares."""

    pid: int
    start: int


@dataclass(frozen=True)
class SessionRecord:
    """What a maniple driver started: its private Ray's session directory and processes."""

    driver: Proc
    boot_id: str
    uid: int
    session_dir: str
    ray_dir: str  # the Ray package the processes run from
    processes: tuple[Proc, ...]
    created_at: float

    def to_json(self) -> str:
        body = asdict(self)
        return json.dumps({"schema": SCHEMA, "version": VERSION, **body}, indent=1)

    @staticmethod
    def from_json(text: str) -> SessionRecord:
        """The record in `text`; ValueError saying what is wrong for anything else."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} record")
        if data.get("version") != VERSION:
            raise ValueError(
                f"record version {data.get('version')!r}, this maniple reads {VERSION}"
            )
        session_dir = _abs_path(data, "session_dir", _SESSION_NAME.fullmatch, "Ray session")
        ray_dir = _abs_path(data, "ray_dir", lambda name: name == "ray", "Ray package")
        for key, kind in (("boot_id", str), ("uid", int), ("created_at", (int, float))):
            if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
                raise ValueError(f"{key} {data.get(key)!r} is not a {kind}")
        procs = data.get("processes")
        if not isinstance(procs, list):
            raise ValueError("processes is not a list")
        return SessionRecord(
            driver=_proc_from(data.get("driver")),
            boot_id=data["boot_id"],
            uid=data["uid"],
            session_dir=session_dir,
            ray_dir=ray_dir,
            processes=tuple(_proc_from(p) for p in procs),
            created_at=float(data["created_at"]),
        )


def _abs_path(data: dict[str, Any], key: str, name_ok: Any, what: str) -> str:
    """`data[key]`, normalised, if it is an absolute path whose last part `name_ok` takes."""
    value = data.get(key)
    if not (isinstance(value, str) and os.path.isabs(value) and name_ok(os.path.basename(value))):
        raise ValueError(f"{key} {value!r} is not the absolute path of a {what} directory")
    return os.path.normpath(value)


def _proc_from(value: Any) -> Proc:
    if not isinstance(value, dict) or set(value) != {"pid", "start"}:
        raise ValueError(f"process {value!r} is not {{'pid': ..., 'start': ...}}")
    pid, start = value["pid"], value["start"]
    for v in (pid, start):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"process {value!r}: pid and start must be whole numbers >= 0")
    if pid <= 1:
        raise ValueError(f"process {value!r}: pid {pid} is never a Ray process")
    return Proc(pid, start)


def supported() -> bool:
    """Whether processes can be told apart here (a Linux /proc with boot ids)."""
    return sys.platform.startswith("linux") and (_PROC / "sys/kernel/random/boot_id").exists()


def sessions_dir() -> Path:
    """$MANIPLE_RAY_SESSIONS, else `ray-sessions` in the user's cache directory (beside the
    profile store, e.g. ~/.cache/maniple/ray-sessions)."""
    env = os.environ.get(DIR_VAR)
    if env:
        return Path(env)
    import platformdirs  # here, not at the top: the watcher runs with the stdlib only

    return Path(platformdirs.user_cache_dir("maniple")) / "ray-sessions"


def boot_id() -> str:
    return (_PROC / "sys/kernel/random/boot_id").read_text().strip()


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of `pid`, None where there is no such process."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the name may hold spaces and ')'
    return fields[0], int(fields[1]), int(fields[19])


def alive(proc: Proc) -> bool:
    """Whether `proc` still runs: same pid, same start time, not a zombie."""
    st = _stat(proc.pid)
    return st is not None and st[0] not in "ZX" and st[2] == proc.start


def descendants(pid: int) -> list[Proc]:
    """The live processes below `pid` (children, their children, …), by the /proc tree."""
    children: dict[int, list[Proc]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) and st[0] not in "ZX":
            children.setdefault(st[1], []).append(Proc(int(entry.name), st[2]))
    found, todo = [], [pid]
    while todo:
        found += (more := children.get(todo.pop(), []))
        todo += [p.pid for p in more]
    return found


def _mentions(text: str, path: str) -> bool:
    """Whether `text` names `path` itself or something inside it (not `path` + '1')."""
    start = text.find(path)
    while start >= 0:
        end = start + len(path)
        if end == len(text) or not (text[end].isalnum() or text[end] in "_-."):
            return True
        start = text.find(path, start + 1)
    return False


def belongs(proc: Proc, record: SessionRecord) -> bool:
    """Whether `proc` is a live Ray process of `record`'s session (see the module doc)."""
    if not alive(proc) or proc.start < record.driver.start:
        return False
    base = _PROC / str(proc.pid)
    try:
        if base.stat().st_uid != record.uid:
            return False
        args = base.joinpath("cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    if not (args[0].startswith("ray::") or any(a.startswith(record.ray_dir + "/") for a in args)):
        return False
    if any(_mentions(a, record.session_dir) for a in args):
        return True
    try:
        return any(
            _mentions(os.readlink(fd), record.session_dir) for fd in base.joinpath("fd").iterdir()
        )
    except OSError:
        return False


def session_processes(record: SessionRecord) -> list[Proc]:
    """The record's processes still alive and its session's, with those its raylet started
    after the record was written (found by the session directory)."""
    found = {p.pid: p for p in record.processes if belongs(p, record)}
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and int(entry.name) not in found:
            st = _stat(int(entry.name))
            if st is not None and belongs(p := Proc(int(entry.name), st[2]), record):
                found[p.pid] = p
    found.pop(record.driver.pid, None)
    return sorted(found.values(), key=lambda p: p.pid)


def stop(procs: Iterable[Proc], grace_s: float = GRACE_S) -> list[Proc]:
    """SIGTERM, then SIGKILL to those left after `grace_s`; each is checked to be the same
    process (pid and start time) right before it is signalled. Returns those signalled."""
    signalled, left = [], list(procs)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 1.0)):
        left = [p for p in left if alive(p)]
        for p in left:
            try:
                os.kill(p.pid, sig)
            except OSError:
                continue
            if sig == signal.SIGTERM:
                signalled.append(p)
        deadline = time.monotonic() + wait_s
        while any(alive(p) for p in left) and time.monotonic() < deadline:
            time.sleep(0.05)
    return signalled


def read_record(path: Path) -> SessionRecord:
    """The record at `path`; ValueError saying why it is not one of ours."""
    st = path.lstat()
    if not path.is_file() or path.is_symlink():
        raise ValueError("not a regular file")
    if st.st_uid != os.getuid():
        raise ValueError(f"owned by uid {st.st_uid}, not this user ({os.getuid()})")
    if st.st_size > MAX_RECORD_BYTES:
        raise ValueError(f"{st.st_size} bytes, more than a record's {MAX_RECORD_BYTES}")
    record = SessionRecord.from_json(path.read_text())
    if path.name != f"{record.driver.pid}.json":
        raise ValueError(f"named {path.name!r} but records driver pid {record.driver.pid}")
    if record.uid != os.getuid():
        raise ValueError(f"records uid {record.uid}, not this user ({os.getuid()})")
    return record


def clean_record(path: Path, grace_s: float = GRACE_S) -> list[Proc]:
    """Stop what the record at `path` left, if its driver is dead, and delete the record.
    A record that does not read as ours is left as it is, with a warning."""
    try:
        record = read_record(path)
    except FileNotFoundError:
        return []  # removed meanwhile: a clean shutdown or another cleaner
    except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
        fix = "It is not a Ray session record of this maniple; delete it if none is running"
        log.warning("ignoring %s: %s. %s", path, exc, fix)
        return []
    if record.boot_id == boot_id() and alive(record.driver):
        return []  # a live maniple's Ray
    stopped = stop(session_processes(record), grace_s) if record.boot_id == boot_id() else []
    if stopped:
        pids = " ".join(str(p.pid) for p in stopped)
        log.info("stopped Ray processes %s, left by maniple pid %d", pids, record.driver.pid)
    path.unlink(missing_ok=True)
    return stopped


def clean_leftovers(directory: Path | None = None, grace_s: float = GRACE_S) -> list[Proc]:
    """Stop the Ray processes of every record in `directory` (default `sessions_dir()`)
    whose driver is dead; returns the processes signalled. Never raises."""
    if not supported():
        return []
    directory = sessions_dir() if directory is None else directory
    stopped: list[Proc] = []
    try:
        paths = sorted(directory.iterdir())
    except OSError:
        return []  # no directory yet: nothing recorded
    for path in paths:
        if path.name.startswith("."):
            continue  # a record being written
        if not _RECORD_NAME.fullmatch(path.name):
            log.warning("ignoring %s: not a Ray session record (<pid>.json)", path)
            continue
        try:
            stopped += clean_record(path, grace_s)
        except Exception as exc:  # noqa: BLE001 - a failed cleanup must not stop maniple
            log.warning("could not clean the Ray session of %s: %s", path, exc)
    return stopped


class Tracker:
    """The record and watcher of one private Ray; `close()` at a clean shutdown."""

    def __init__(self, path: Path, watcher: subprocess.Popen[bytes] | None, fd: int | None):
        self.path, self._watcher, self._fd = path, watcher, fd
        # a forked child must not keep the pipe open, or the driver's death goes unseen
        os.register_at_fork(after_in_child=self._drop_pipe)

    def _drop_pipe(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Delete the record, then let the watcher go: it finds no record, so it just exits."""
        self.path.unlink(missing_ok=True)
        self._drop_pipe()
        if self._watcher is not None:
            try:
                self._watcher.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                pass  # reaped at the next subprocess start
            self._watcher = None


def track(session_dir: str, ray_dir: str, *, watcher: bool = True) -> Tracker | None:
    """Record this driver's private Ray (its processes now: all below this process) and
    start its watcher. None where unsupported or the record cannot be written (a warning):
    Ray runs on without it."""
    if not supported():
        return None
    me = Proc(os.getpid(), (_stat(os.getpid()) or ("", 0, 0))[2])
    record = SessionRecord(
        driver=me,
        boot_id=boot_id(),
        uid=os.getuid(),
        session_dir=os.path.normpath(session_dir),
        ray_dir=os.path.normpath(ray_dir),
        processes=tuple(descendants(me.pid)),
        created_at=time.time(),
    )
    directory = sessions_dir()
    path = directory / f"{me.pid}.json"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = directory / f".{me.pid}.json.tmp"
        tmp.write_text(record.to_json())
        os.replace(tmp, path)
    except OSError as exc:
        why = "if this maniple is killed, its Ray's agents linger for a minute"
        log.warning("cannot record the Ray session in %s (%s); %s", directory, exc, why)
        return None
    return Tracker(path, *(_start_watcher(path) if watcher else (None, None)))


def _start_watcher(path: Path) -> tuple[subprocess.Popen[bytes] | None, int | None]:
    """Start the watcher of `path`: it, and the write end of its pipe, which we hold."""
    read_fd, write_fd = os.pipe()  # not inherited by the processes Ray starts (O_CLOEXEC)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", str(Path(__file__).resolve()), "watch", str(read_fd), str(path)],
            pass_fds=(read_fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # else a caller reading maniple's output waits on it
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches the driver, not it
        )
    except OSError as exc:
        os.close(write_fd)
        log.warning("cannot start the Ray session watcher (%s); a maniple start cleans up", exc)
        return None, None
    finally:
        os.close(read_fd)
    return proc, write_fd


def watch(read_fd: int, path: Path, grace_s: float = GRACE_S) -> None:
    """Wait for the driver's end of the pipe to close, then clean up what it left."""
    while os.read(read_fd, 4096):
        pass
    try:
        record = read_record(path)
    except (OSError, ValueError):
        return  # removed at a clean shutdown (or not ours): nothing to do
    deadline = time.monotonic() + 10.0  # the pipe closes just before the process is gone
    while alive(record.driver) and time.monotonic() < deadline:
        time.sleep(0.05)
    clean_record(path, grace_s)


if __name__ == "__main__":  # the watcher: ray_leftovers.py watch READ_FD RECORD
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(int(sys.argv[2]), Path(sys.argv[3]))
