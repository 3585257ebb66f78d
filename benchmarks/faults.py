"""Fault injection: kill (SIGKILL) or stop (SIGSTOP) one emulated board mid-run, N times.

Why: a board that dies or freezes must end a run with one clear line naming it, soon
(within --timeout + 5 s), leaving no Ray process behind and the profile store intact. Each
run starts one `maniple spatial` (star or peer runtime) or `maniple infer` on emulated
boards (Ray actors on this host), waits for a chosen moment (start-up, profiling or the
timed runs) and signals one `ray::Worker` process picked at random, then checks:

- exit 2 with exactly one `error: ...` line on stderr naming a device (the victim, where
  the message gives its pid) and no Traceback; or exit 0 (the fault came after the work
  that needed that board, or was recovered);
- the exit within --timeout + 5 s of the fault (past --grace more it is a hang: killed);
- no process of this run left after the exit (every process it started carries a tag in
  its environment, see fault_procs.py); a stopped or lingering one is SIGCONT+SIGKILLed
  and counted as a failure;
- the shared profile store (one SQLite file for all runs): `PRAGMA integrity_check` ok and
  every row present before the run still there after.

Moments come from fault-free calibration runs of each command (first worker, first
compute, last profile write, last compute), scaled by each run's time to its first worker.
All randomness comes from --seed and the run's number: `--only K` replays run K.

    python benchmarks/faults.py [--runs 100] [--seed 0] [--timeout 30] [--only K]

Writes docs/results/faults.md and faults.json (--results); exits 1 if any run failed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from fault_procs import Fault, Seen, hang_stack, store_rows, watch_run

ROOT = Path(__file__).resolve().parents[1]
MANIPLE = [  # the code under --src, whatever the installed `maniple` entry point runs
    sys.executable,
    "-c",
    "import sys; sys.argv[0] = 'maniple'; from maniple.cli import main; main()",
]
VARIANTS = ("spatial-star", "spatial-peer", "infer")
SIGNALS = {"KILL": signal.SIGKILL, "STOP": signal.SIGSTOP}
MOMENTS = ("startup", "profiling", "timed")
COMBOS = [(v, s, m) for v in VARIANTS for s in SIGNALS for m in MOMENTS]
log = functools.partial(print, file=sys.stderr, flush=True)  # progress: one line a run
DEVICE_RE = re.compile(r"emu:[A-Za-z0-9_.:@-]+#\d+")


def maniple_args(variant: str, network: str, profile: bool, k: int) -> list[str]:
    """The command of `variant`; with `profile` it must profile (a spatial --reprofile;
    infer, which resumes from the store, gets boards of a speed never stored: custom:MS)."""
    if variant == "infer":
        boards = f"2xcustom:{900 + k}" if profile else "2xfirefly-rk3399"
        return ["infer", "--network", network, "--batch", "8", "--emulate", boards]
    runtime = variant.split("-")[1]
    args = ["spatial", "--network", network, "--emulate", "3xfirefly-rk3399", "--runtime", runtime]
    return args + (["--reprofile"] if profile else [])


@dataclass
class Plan:
    """What run k does: derived from (seed, k) alone so that --only k repeats it."""

    k: int
    variant: str
    signal: str
    moment: str
    frac: float  # where in the moment's window, 0..1
    pick: float  # which of the workers present, 0..1


def plan_of(seed: int, k: int) -> Plan:
    """Every block of len(COMBOS) runs covers each (command, signal, moment) once."""
    block = random.Random(f"{seed}:block:{(k - 1) // len(COMBOS)}").sample(COMBOS, len(COMBOS))
    rng = random.Random(f"{seed}:run:{k}")
    return Plan(k, *block[(k - 1) % len(COMBOS)], frac=rng.random(), pick=rng.random())


def run_cmd(
    argv: list[str],
    opts: argparse.Namespace,
    db: Path,
    work: Path,
    plan: Plan | None = None,
    windows: dict[str, float] | None = None,
) -> Seen:
    """One maniple command under watch, `plan`'s fault placed by `windows`: from the first
    worker at start-up, else from the first compute (reusing the store, it profiles none)."""
    fault = None
    if plan and windows:
        base = "anchor" if plan.moment == "startup" else "compute0"
        delay, ref = plan.frac * windows[plan.moment], windows["first_worker"]
        fault = Fault(SIGNALS[plan.signal], base, delay, plan.pick, ref)
    env = {**os.environ, "COLUMNS": "1000", "PYTHONPATH": opts.src, "PYTHONFAULTHANDLER": "1"}
    after = opts.timeout + 5 + opts.grace
    return watch_run(argv, env, db, work, fault, after, opts.run_limit, opts.settle)


def calibrate(
    variant: str, db: Path, opts: argparse.Namespace, work: Path, extra: list[str]
) -> dict[str, float]:
    """Fault-free runs of `variant`: time to the first worker (it scales the rest: load
    varies), start-up (first worker to first compute), profiling (first compute to last
    store write, made to profile) and the timed runs (first to last compute, reusing)."""

    def run(profile: bool) -> Seen:
        argv = MANIPLE + maniple_args(variant, opts.network, profile, 0) + extra
        seen = run_cmd(argv, opts, db, work)
        if seen.rc != 0 or seen.anchor is None or seen.compute0 is None:
            sys.exit(f"calibration of {variant} failed (exit {seen.rc}): {seen.stderr[-2000:]}")
        return seen

    prof = run(True)
    reuse = run(False)
    if reuse.writes:  # it profiled (nothing stored yet for these boards): once more
        reuse = run(False)
    assert prof.compute0 is not None and reuse.compute0 is not None and reuse.anchor is not None
    last_write = max((t for t in prof.writes if t > prof.compute0), default=None)
    span = (prof.last_compute or prof.compute0) - prof.compute0
    return {
        "first_worker": round(reuse.anchor, 2),
        "startup": round(reuse.compute0 - reuse.anchor, 2),
        "profiling": round(last_write - prof.compute0 if last_write else span / 2, 2),
        "timed": round((reuse.last_compute or reuse.compute0) - reuse.compute0, 2),
    }


def judge(
    plan: Plan,
    seen: Seen,
    opts: argparse.Namespace,
    before: dict[str, set[tuple]],
    after: tuple[str, dict[str, set[tuple]]],
) -> dict:
    """One run's record: its outcome and every reason it failed (none: passed)."""
    reasons: list[str] = []
    dt = None if seen.fault_t is None else round(seen.t_exit - seen.fault_t, 2)
    lines = seen.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    if seen.killed:
        outcome = "hang"
        reasons.append(f"hang: no exit {dt:.0f} s after the fault; the harness killed it")
        reasons.append("its stack, innermost first: " + " | ".join(hang_stack(seen.stderr)))
    elif seen.fault_t is None:
        outcome = "no fault (finished first)" if seen.rc == 0 else f"exit {seen.rc}, no fault"
        if seen.rc != 0:
            reasons.append(f"exit {seen.rc} before any fault was injected")
    elif seen.rc == 2:
        outcome = "error (exit 2)"
    elif seen.rc == 0:
        outcome = "completed (exit 0)"
    else:
        outcome = f"exit {seen.rc}"
        reasons.append(f"exit code {seen.rc} (expected 2, or 0)")
    if dt is not None and not seen.killed and dt > opts.timeout + 5:
        reasons.append(f"slow: exited {dt:.1f} s after the fault (bound {opts.timeout + 5:g} s)")
    if "Traceback" in seen.stderr and not seen.killed:
        reasons.append("a Traceback on stderr")
    if seen.rc == 2 and len(errors) != 1:
        reasons.append(f"{len(errors)} 'error:' lines on stderr (expected 1)")
    named = DEVICE_RE.findall(errors[0]) if errors else []
    pids = [int(p) for p in re.findall(r"pid (\d+)", errors[0])] if errors else []
    if seen.rc == 2 and errors and not named:
        reasons.append("the error names no device")
    victim = seen.victim
    if seen.rc == 2 and victim and pids and victim.pid not in pids:
        reasons.append(
            f"the error names pid {pids[0]}, not the {plan.signal}ed worker (pid {victim.pid})"
        )
    if seen.rc == 0 and seen.fault_t is not None:
        try:
            json.loads(seen.stdout)
        except ValueError:
            reasons.append("exit 0 but stdout is not JSON")
    if seen.leftovers:
        stopped = [p for p in seen.leftovers if victim and p.key == victim.key]
        reasons.append(
            f"{len(seen.leftovers)} process(es) left behind"
            + (" (the stopped worker among them)" if stopped else "")
            + ": "
            + "; ".join(p.brief() for p in seen.leftovers[:6])
        )
    if seen.unreaped:
        reasons.append(f"{len(seen.unreaped)} process(es) would not die even after SIGKILL")
    verdict, rows = after
    if verdict != "ok":
        reasons.append(f"profile store: integrity_check says {verdict!r}")
    lost = {t: len(r - rows.get(t, set())) for t, r in before.items() if r - rows.get(t, set())}
    if lost:
        reasons.append(f"profile store lost rows: {lost}")
    # fmt: off
    return {
        "run": plan.k, "command": plan.variant, "signal": plan.signal, "moment": plan.moment,
        "frac": round(plan.frac, 3), "outcome": outcome, "passed": not reasons, "reasons":
        reasons, "rc": seen.rc, "fault_at_s": seen.fault_t and round(seen.fault_t, 2),
        "exit_at_s": round(seen.t_exit, 2), "fault_to_exit_s": dt, "fault_to_error_s":
        None if seen.error_t is None or dt is None else round(seen.error_t - seen.fault_t, 2),
        "victim": victim.cmd if victim else None, "victim_pid": victim.pid if victim else None,
        "workers_at_fault": seen.workers_at_fault, "error": errors[0][:500] if errors else None,
        "error_names": sorted(set(named)), "error_pids": pids, "victim_matched":
        bool(victim and victim.pid in pids) if pids else None,
        "foreign_ray_processes": seen.foreign, "stderr_tail": lines[-6:] if reasons else [],
    }
    # fmt: on


def machine(src: str) -> dict[str, object]:
    """The host and versions the results belong to (the commit where `src` is this
    checkout's own)."""
    cpus = re.findall(r"^model name\s*: (.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True)
    return {
        "cpu": cpus[0] if cpus else "unknown",
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": version("torch"),
        "ray": version("ray"),
        "maniple": head.stdout.strip() + (" + uncommitted src/" if dirty.stdout else "")
        if src == str(ROOT / "src")
        else f"the tree at {src}",
    }


def stats(values: list[float]) -> dict[str, float | int | None]:
    """min/median/max of the fault-to-exit times (None where there are none)."""
    mid = round(statistics.median(values), 2) if values else None
    return {"n": len(values), "min": min(values, default=None), "median": mid,
            "max": max(values, default=None)}  # fmt: skip


def replay(opts: argparse.Namespace, k: int) -> str:
    """The command that repeats run k alone (results apart, not over the summary)."""
    return (
        f"python benchmarks/faults.py --seed {opts.seed} --only {k} --timeout {opts.timeout:g}"
        f" --network {opts.network} --results /tmp/faults-replay"
        + (f" --input-shape {opts.input_shape}" if opts.input_shape else "")
        + ("" if opts.src == str(ROOT / "src") else f" --src {opts.src}")
    )


def table(head: list[str], rows: list[list[object]]) -> list[str]:
    """A Markdown table."""
    cells = [head, ["---"] * len(head), *rows]
    return ["| " + " | ".join(str(c) for c in row) + " |" for row in cells] + [""]


def write_report(opts: argparse.Namespace, doc: dict) -> None:
    """faults.json (strict JSON) and faults.md, the summary a person reads."""
    prefix = Path(opts.results)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    m, fails = doc["machine"], doc["failures"]
    passed = "passed to maniple" if doc["timeout_passed"] else "not an option of this maniple"
    md = [
        "# Fault injection: a board killed or stopped mid-run",
        "",
        f"`{doc['command']}`: {len(doc['runs'])} runs, seed {opts.seed}, `--timeout "
        f"{opts.timeout:g}` ({passed}), network {opts.network}.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch {m['torch']}, "
        f"Ray {m['ray']}; maniple {m['maniple']}.",
        "",
        "Each run signals one emulated board's `ray::Worker` process at a moment placed "
        "from fault-free calibration runs, then checks the exit status and stderr, the time "
        "from the fault to the exit (bound: timeout + 5 s), the processes the run left "
        "(tagged through their environment) and the shared profile store "
        "(`benchmarks/faults.py`).",
        "",
        *table(["outcome", "runs", "passed"], [[k, *v] for k, v in doc["counts"].items()]),
        *table(["command / signal / moment", "runs", "passed"],
               [[k, *v] for k, v in doc["by_combination"].items()]),
        "Fault to exit (s), runs that exited by themselves after a fault:",
        "",
        *table(["signal", "n", "min", "median", "max"],
               [[k, *v.values()] for k, v in doc["fault_to_exit_s"].items()]),
        f"Calibrated windows (s): `{json.dumps(doc['windows'])}`",
        "",
        f"## Failures ({len(fails)})",
        "",
    ]  # fmt: skip
    for f in fails:
        md.append(
            f"- run {f['run']} (`{f['maniple']}`, SIG{f['signal']} at {f['moment']}, victim "
            f"`{f['victim']}`): {'; '.join(f['reasons'])}  \n  replay: `{f['replay']}`"
        )
    prefix.with_suffix(".md").write_text("\n".join(md + ([] if fails else ["none"])) + "\n")


def summary(
    opts: argparse.Namespace, records: list[dict], extra: dict[str, list[str]], windows: dict
) -> dict:
    """The summary document: the machine, the command, counts, fault-to-exit times."""
    counts: dict[str, list[int]] = {}
    combos: dict[str, list[int]] = {}
    for r in records:
        for tally, key in (
            (counts, r["outcome"]),
            (combos, f"{r['command']} / SIG{r['signal']} / {r['moment']}"),
        ):
            tally.setdefault(key, [0, 0])
            tally[key][0] += 1
            tally[key][1] += r["passed"]
    counts["all"] = [len(records), sum(r["passed"] for r in records)]
    timed = [r for r in records if r["fault_to_exit_s"] is not None and r["outcome"] != "hang"]
    times = {"all": stats([r["fault_to_exit_s"] for r in timed])} | {
        s: stats([r["fault_to_exit_s"] for r in timed if r["signal"] == s]) for s in SIGNALS
    }
    # fmt: off
    return {
        "command": "python benchmarks/faults.py " + shlex.join(sys.argv[1:]),
        "machine": machine(opts.src), "seed": opts.seed, "timeout_s": opts.timeout,
        "timeout_passed": all("--timeout" in e for e in extra.values()),
        "network": opts.network, "src": opts.src, "windows": windows, "counts": counts,
        "by_combination": dict(sorted(combos.items())), "fault_to_exit_s": times,
        "failures": [r for r in records if not r["passed"]], "runs": records,
    }
    # fmt: on


def main() -> int:
    """Calibrate, run the faults, check each, write the summary; 1 if any run failed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", type=int, help="replay run K alone (numbered from 1)")
    ap.add_argument("--timeout", type=float, default=30.0, help="maniple's (where it has it)")
    ap.add_argument("--grace", type=float, default=20.0, help="past the bound: a hang")
    ap.add_argument("--settle", type=float, default=5.0, help="for processes to go")
    ap.add_argument("--run-limit", type=float, default=400.0, help="a run with no fault")
    ap.add_argument("--network", default="squeezenet_v1.1")
    ap.add_argument("--input-shape", help="C,H,W, for a module-spec network")
    ap.add_argument("--src", default=str(ROOT / "src"), help="the maniple source tree to test")
    ap.add_argument("--results", default=str(ROOT / "docs" / "results" / "faults"))
    opts = ap.parse_args()
    ks = [opts.only] if opts.only else list(range(1, opts.runs + 1))
    plans = [plan_of(opts.seed, k) for k in ks]
    work = Path(tempfile.mkdtemp(prefix="maniple-faults-"))
    db = work / "profiles.sqlite"
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": opts.src}
    extra = {}
    for v in VARIANTS:  # --timeout passed where the command has it (it is being added)
        helps = subprocess.run(MANIPLE + [v.split("-")[0], "--help"], capture_output=True,
                               text=True, env=env).stdout  # fmt: skip
        has = re.search(r"(?<![\w-])--timeout\b", helps)
        extra[v] = ["--json", "--profile-db", str(db)] + (
            ["--timeout", f"{opts.timeout:g}"] if has else [])  # fmt: skip
        if opts.input_shape:
            extra[v] += ["--input-shape", opts.input_shape]
    windows = {}
    for v in sorted({p.variant for p in plans}, key=VARIANTS.index):
        windows[v] = calibrate(v, db, opts, work, extra[v])
        log(f"calibrated {v}: {windows[v]}")
    records = []
    for plan in plans:
        before = store_rows(db)[1]
        argv = (
            MANIPLE
            + maniple_args(plan.variant, opts.network, plan.moment == "profiling", plan.k)
            + extra[plan.variant]
        )
        seen = run_cmd(argv, opts, db, work, plan, windows[plan.variant])
        rec = judge(plan, seen, opts, before, store_rows(db))
        rec["maniple"] = shlex.join(["maniple", *argv[len(MANIPLE) :]])
        rec["replay"] = replay(opts, plan.k)
        records.append(rec)
        write_report(opts, summary(opts, records, extra, windows))  # a stopped run keeps it
        log(
            f"[{plan.k:3d}/{ks[-1]}] {plan.variant:12s} SIG{plan.signal} {plan.moment:9s} "
            f"{(rec['victim'] or '-')[:22]:22s} fault@{rec['fault_at_s'] or 0:5.1f}s -> "
            f"{rec['outcome']}, error/exit {rec['fault_to_error_s']}/{rec['fault_to_exit_s']}"
            " s after: " + ("ok" if rec["passed"] else "FAIL: " + "; ".join(rec["reasons"]))
        )
    n_ok = sum(r["passed"] for r in records)
    log(f"{n_ok}/{len(records)} passed; summary in {opts.results}.md/.json")
    return 0 if n_ok == len(records) else 1


if __name__ == "__main__":
    sys.exit(main())
