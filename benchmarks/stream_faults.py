"""Fault runs of streams: one board killed (SIGKILL) at a random frame of each stream.

Why: a stream must survive a lost board. Each run opens the boards (Ray actors on this
host, one Ray for all runs), streams --frames frames with every output checked, and
kills one board's worker process when a random frame (3 .. frames-4) is delivered. It
then checks:

- every frame delivered exactly once, in order, and exact (against the whole network in
  fp32 here): 0 lost, duplicated or wrong;
- no hang: the stream ends within --hang-s (a watchdog interrupts it otherwise);
- no process left: after the boards are closed every worker pid of the run is gone;
- the throughput after the loss (frames delivered after the loss was handled, over the
  time to the last) against a fresh plan on the remaining boards, streamed right after
  on the same boards in the same run: at least 90%.

All randomness comes from --seed and the run's number (`--only K` replays run K).

    python benchmarks/stream_faults.py [--runs 100] [--frames 30] [--seed 0]

Writes docs/results/stream-faults.md and .json (--results); exits 1 if any run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from maniple.devices.ray_backend import ensure_ray, release_ray  # noqa: E402
from maniple.spatial.bench import machine  # noqa: E402
from maniple.spatial.runtimes.stream import FrameRun  # noqa: E402
from maniple.spatial.setup import open_cache, open_devices, prepare  # noqa: E402
from maniple.spatial.stream_run import run_stream  # noqa: E402
from maniple.spatial.stream_session import StreamSession  # noqa: E402
from maniple.store import StoreFile  # noqa: E402

MIN_AFTER = 0.9
log = __import__("functools").partial(print, file=sys.stderr, flush=True)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def one_run(args: argparse.Namespace, k: int, store: StoreFile) -> dict[str, Any]:
    rng = random.Random(f"{args.seed}:{k}")
    kill_at = rng.randint(3, args.frames - 4)
    setup = prepare(
        args.network, emulate=args.boards, link_mbps=args.link_mbps, timeout_s=args.timeout
    )
    row: dict[str, Any] = {"run": k, "kill_at": kill_at, "problems": []}
    pids: list[int] = []
    t_start = time.time()
    with open_devices(setup) as handles:
        session = StreamSession(handles, setup.graph, cache=open_cache(store, handles, setup.graph))
        session.prepare()
        names = [h.name for h in handles]
        pids = [int(h._submit("ping").result(timeout=10)) for h in handles]
        victim = rng.choice(session.plan().devices)
        vpid = pids[names.index(victim)]
        row["victim"] = victim

        def kill(run: FrameRun) -> None:
            if run.index == kill_at:
                os.kill(vpid, signal.SIGKILL)

        hung = threading.Event()
        main = threading.main_thread().ident

        def fire() -> None:
            hung.set()
            signal.pthread_kill(main, signal.SIGINT)  # type: ignore[arg-type]

        watchdog = threading.Timer(args.hang_s, fire)
        watchdog.start()
        try:
            result = run_stream(
                session, args.frames, check_all=True, single_frames=1, on_frame=kill
            )
        finally:
            watchdog.cancel()
        if hung.is_set() or result.interrupted:
            row["problems"].append(f"hang: not done within {args.hang_s} s")
        got = [f.index for f in result.frames]
        if got != list(range(args.frames)):
            missing = sorted(set(range(args.frames)) - set(got))
            row["problems"].append(f"frames {got[:5]}... missing {missing}")
        if result.checked != args.frames or not result.max_rel_error <= result.tolerance:
            row["problems"].append(
                f"checked {result.checked}, max error {result.max_rel_error:.3g}"
            )
        lost = [e for e in result.events if e.kind == "lost"]
        on_victim = [f.index for f in result.frames if f.index > kill_at and victim in f.devices]
        # killed when it had taken its last frame: nothing to recover, nothing to compare
        row["idle_when_killed"] = not lost and not on_victim
        if [e.devices for e in lost] != [(victim,)] and not row["idle_when_killed"]:
            row["problems"].append(
                f"lost events {[e.devices for e in lost]}, victim {victim}, frames on it "
                f"after the kill {on_victim}"
            )
        after = result.throughput_after(("lost",))
        remaining = [h for h in handles if h.name != victim]
        cache = open_cache(store, remaining, setup.graph)
        fresh_session = StreamSession(remaining, setup.graph, cache=cache)
        fresh = run_stream(fresh_session, args.frames, single_frames=1)
        row.update(
            frames=len(got),
            recomputed=sum(f.attempts > 1 for f in result.frames),
            throughput_fps=result.throughput_fps,
            after_loss_fps=after,
            fresh_fps=fresh.throughput_fps,
            after_vs_fresh=(after / fresh.throughput_fps) if after else None,
            max_rel_error=result.max_rel_error,
            lanes_before=[list(ln.devices) for ln in result.plan.lanes],
            lanes_after=[list(ln.devices) for ln in result.final_plan.lanes],
        )
        if not row["idle_when_killed"] and (
            row["after_vs_fresh"] is None or row["after_vs_fresh"] < MIN_AFTER
        ):
            row["problems"].append(
                f"throughput after the loss {after} frames/s against a fresh plan's "
                f"{fresh.throughput_fps:.2f} (needs {MIN_AFTER:.0%})"
            )
    deadline = time.time() + 15
    while time.time() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.2)
    left = [p for p in pids if not _gone(p)]
    if left:
        row["problems"].append(f"processes left: {left}")
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    row["wall_s"] = round(time.time() - t_start, 1)
    row["passed"] = not row["problems"]
    return row


def render(doc: dict[str, Any]) -> str:
    rows, a = doc["rows"], doc["args"]
    ok = [r for r in rows if r["passed"]]
    ratios = [
        r["after_vs_fresh"]
        for r in rows
        if r.get("after_vs_fresh") is not None and not r.get("idle_when_killed")
    ]
    m = doc["machine"]
    lines = [
        "# Streams with a board killed mid-stream",
        "",
        f"`python benchmarks/stream_faults.py --runs {a['runs']} --frames {a['frames']} "
        f"--network {a['network']} --boards {a['boards']} --seed {a['seed']}`: "
        f"{len(rows)} streams of {a['frames']} frames, {doc['wall_s'] / 60:.1f} min.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch {m['torch']}.",
        "",
        "Each stream kills one board's worker process (SIGKILL) when a random frame is "
        "delivered; every frame's output is checked against the whole network run here; "
        "a fresh plan on the remaining boards then streams the same number of frames on "
        "the same boards, for the throughput comparison.",
        "",
        "| check | result |",
        "|---|---|",
        f"| streams passed | {len(ok)} of {len(rows)} |",
        f"| frames lost, duplicated or out of order | "
        f"{sum(a['frames'] - r.get('frames', 0) for r in rows)} |",
        f"| frames wrong | {sum(1 for r in rows if any('error' in p for p in r['problems']))} |",
        f"| hangs | {sum(1 for r in rows if any(p.startswith('hang') for p in r['problems']))} |",
        f"| runs with processes left | "
        f"{sum(1 for r in rows if any('processes left' in p for p in r['problems']))} |",
        f"| boards killed after their last frame (nothing to recover; not in the ratio) | "
        f"{sum(1 for r in rows if r.get('idle_when_killed'))} |",
        f"| frames run again (in flight on the lost board) | "
        f"{sum(r.get('recomputed', 0) for r in rows)} |",
    ]
    if ratios:
        lines += [
            f"| throughput after the loss / fresh plan: min / median / max | "
            f"{min(ratios):.2f} / {statistics.median(ratios):.2f} / {max(ratios):.2f} |",
            f"| runs at least {MIN_AFTER:.0%} | {sum(r >= MIN_AFTER for r in ratios)} of "
            f"{len(ratios)} |",
        ]
    bad = [r for r in rows if not r["passed"]]
    if bad:
        lines += ["", f"## Failures ({len(bad)})", ""]
        for r in bad:
            lines.append(
                f"- run {r['run']} (kill {r.get('victim')} at frame {r['kill_at']}): "
                + "; ".join(r["problems"])
                + f"  \n  replay: `python benchmarks/stream_faults.py --seed {a['seed']} "
                f"--only {r['run']}`"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", type=int, default=None, help="replay this run only")
    ap.add_argument("--network", default="squeezenet_v1.1")
    ap.add_argument("--boards", default="3xfirefly-rk3399+1xodroid-xu4")
    ap.add_argument("--link-mbps", type=float, default=100.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--hang-s", type=float, default=180.0)
    ap.add_argument("--results", type=Path, default=ROOT / "docs" / "results")
    args = ap.parse_args()
    session = ensure_ray()
    started = time.time()
    rows = []
    tmp = tempfile.TemporaryDirectory()
    store = StoreFile(Path(tmp.name) / "profiles.sqlite")  # profiles shared by the runs
    try:
        for k in [args.only] if args.only is not None else range(args.runs):
            row = one_run(args, k, store)
            rows.append(row)
            log(
                f"run {k}: {'ok' if row['passed'] else 'FAILED'} kill {row.get('victim')} at "
                f"{row['kill_at']}, after/fresh {row.get('after_vs_fresh')}, "
                f"{row['wall_s']} s {row['problems']}"
            )
    finally:
        store.close()
        tmp.cleanup()
        release_ray(session)
    doc = {
        "machine": machine(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_s": round(time.time() - started, 1),
        "rows": rows,
    }
    if args.only is None:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "stream-faults.json").write_text(json.dumps(doc, indent=1) + "\n")
        (args.results / "stream-faults.md").write_text(render(doc))
    else:
        print(json.dumps(doc, indent=1))
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
