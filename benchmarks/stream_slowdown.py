"""A board slowed to half speed mid-stream: how soon the stream re-balances, and how well.

Two ways to slow a board, each --repeats times:

- `emulated`: the board's clock runs at half speed from a frame on
  (`DeviceHandle.set_slowdown(2)`);
- `sigstop`: its worker process is stopped and continued (SIGSTOP/SIGCONT) in a duty
  cycle, stopped for one frame's dilated time out of every two, which roughly halves it.

Each run streams --frames frames with the board slowed when frame --slow-at is
delivered, and reports:

- how many of the slowed board's own frames (and of the stream's) passed from the
  slowdown to the re-balancing plan (the session re-plans after 3 drifted frames of a
  board, so 4 of its frames at best);
- the throughput after the re-balancing against a fresh plan made for the new speeds:
  the same boards, the board slowed from the start (so its profile sees it slow),
  streaming the same number of frames right after, in the same run: at least 90%.

    python benchmarks/stream_slowdown.py [--repeats 3] [--frames 40]

Writes docs/results/stream-slowdown.md and .json (--results).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from maniple.devices.handles import DeviceHandle  # noqa: E402
from maniple.devices.ray_backend import ensure_ray, release_ray  # noqa: E402
from maniple.spatial.bench import machine  # noqa: E402
from maniple.spatial.runtimes.stream import FrameRun  # noqa: E402
from maniple.spatial.setup import open_cache, open_devices, prepare  # noqa: E402
from maniple.spatial.stream_run import run_stream  # noqa: E402
from maniple.spatial.stream_session import StreamSession  # noqa: E402
from maniple.store import StoreFile  # noqa: E402

MIN_AFTER = 0.9
WITHIN_FRAMES = 5
log = __import__("functools").partial(print, file=sys.stderr, flush=True)


class DutyCycle:
    """SIGSTOP/SIGCONT a process: stopped `stop_s` out of every 2 x `stop_s`."""

    def __init__(self, pid: int, stop_s: float) -> None:
        self.pid, self.stop_s = pid, stop_s
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._halt.is_set():
            os.kill(self.pid, signal.SIGSTOP)
            self._halt.wait(self.stop_s)
            os.kill(self.pid, signal.SIGCONT)
            self._halt.wait(self.stop_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        self._thread.join()
        os.kill(self.pid, signal.SIGCONT)


@contextmanager
def slowed(how: str, handle: DeviceHandle, frame_ms: float) -> Iterator[list[Any]]:
    """A list whose first call slows `handle` (`how`); undone on exit."""
    active: list[Any] = []

    def go() -> None:
        if how == "emulated":
            handle.set_slowdown(2.0)
        else:
            pid = int(handle._submit("ping").result(timeout=10))
            cycle = DutyCycle(pid, frame_ms * handle.dilation / 1e3)
            cycle.start()
            active.append(cycle)

    try:
        yield [go]
    finally:
        for cycle in active:
            cycle.stop()
        if how == "emulated":
            handle.set_slowdown(1.0)


def one_run(args: argparse.Namespace, how: str, k: int, store: StoreFile) -> dict[str, Any]:
    setup = prepare(args.network, emulate=args.boards, link_mbps=args.link_mbps)
    row: dict[str, Any] = {"how": how, "repeat": k, "problems": []}
    with open_devices(setup) as handles:
        cache = open_cache(store, handles, setup.graph)
        session = StreamSession(handles, setup.graph, cache=cache, fps=args.fps)
        session.prepare()
        victim = session.plan().lanes[0].devices[0]
        row["victim"] = victim
        row["lanes_before"] = [list(ln.devices) for ln in session.plan().lanes]
        handle = session.handles[victim]
        frame_ms = session.times_ms[victim]
        state: dict[str, Any] = {}
        with slowed(how, handle, frame_ms) as (go,):

            def hook(run: FrameRun) -> None:
                if run.index == args.slow_at:
                    go()
                    state["at"] = run.index

            result = run_stream(session, args.frames, single_frames=1, on_frame=hook)
        rebalance = [
            e
            for e in result.events[1:]
            if e.kind == "plan" and victim in e.detail and e.frame > args.slow_at
        ]
        if not rebalance:
            row["problems"].append("never re-balanced")
        else:
            ev = rebalance[0]
            own = [f for f in result.frames if victim in f.devices]
            row["rebalanced_at_frame"] = ev.frame
            row["stream_frames_to_rebalance"] = ev.frame - 1 - args.slow_at
            row["own_frames_to_rebalance"] = sum(
                1 for f in own if args.slow_at < f.index < ev.frame
            )
            row["detail"] = ev.detail
            row["after_fps"] = result.throughput_after(("plan",))
            after = [f.latency_ms for f in result.frames if f.index >= ev.frame]
            row["after_p50_ms"] = statistics.median(after) if after else None
        # the fresh plan for the new speeds: the board slow from the start, profiled so
        with slowed(how, handle, frame_ms) as (go,):
            go()
            fresh_session = StreamSession(handles, setup.graph, fps=args.fps)
            fresh = run_stream(fresh_session, args.frames, single_frames=1)
        row["fresh_fps"] = fresh.throughput_fps
        row["fresh_p50_ms"] = fresh.latency.p50
        row["fresh_lanes"] = [list(ln.devices) for ln in fresh.plan.lanes]
        row["lanes_after"] = [list(ln.devices) for ln in result.final_plan.lanes]
        row["slowness_seen"] = session.slowness.get(victim)
        if row.get("after_fps"):
            row["after_vs_fresh"] = row["after_fps"] / fresh.throughput_fps
            if row["after_vs_fresh"] < MIN_AFTER:
                row["problems"].append(f"after/fresh {row['after_vs_fresh']:.2f}")
        if row.get("own_frames_to_rebalance", 99) > WITHIN_FRAMES:
            row["problems"].append(f"re-balanced after {row.get('own_frames_to_rebalance')}")
    row["passed"] = not row["problems"]
    return row


def render(doc: dict[str, Any]) -> str:
    a, m = doc["args"], doc["machine"]
    lines = [
        "# A board slowed to half speed mid-stream",
        "",
        f"`python benchmarks/stream_slowdown.py --repeats {a['repeats']} --frames "
        f"{a['frames']} --slow-at {a['slow_at']} --network {a['network']} --boards "
        f"{a['boards']}"
        + (f" --fps {a['fps']:g} --name {a['name']}" if a["fps"] else "")
        + f"` ({doc['wall_s'] / 60:.1f} min).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch {m['torch']}.",
        "",
        "The board is slowed when frame --slow-at is delivered; 'own frames' counts the "
        "slowed board's frames between the slowdown and the re-balancing plan; the fresh "
        "plan streams the same boards with the board slowed from the start, in the same run.",
        "",
        f"Frames arrive {'at ' + str(a['fps']) + ' frames/s' if a['fps'] else 'as fast as taken'}"
        "; lanes before the slowdown: "
        + (
            " ".join(
                "+".join(d.split("#")[-1] for d in ln) for ln in doc["rows"][0]["lanes_before"]
            )
            if doc["rows"] and "lanes_before" in doc["rows"][0]
            else "–"
        )
        + " (board numbers).",
        "",
        "| how | repeat | board | own frames | stream frames | seen slower | after frames/s |"
        " fresh frames/s | after / fresh | after p50 ms | fresh p50 ms | passed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:

        def f(key: str, nd: int = 2, r: dict[str, Any] = r) -> str:
            v = r.get(key)
            return "–" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))

        lines.append(
            f"| {r['how']} | {r['repeat']} | {r.get('victim', '–').split(':')[-1]} | "
            f"{f('own_frames_to_rebalance')} | {f('stream_frames_to_rebalance')} | "
            f"{f('slowness_seen')}x | {f('after_fps')} | {f('fresh_fps')} | "
            f"{f('after_vs_fresh')} | {f('after_p50_ms', 0)} | {f('fresh_p50_ms', 0)} | "
            f"{'yes' if r['passed'] else 'no: ' + '; '.join(r['problems'])} |"
        )
    for how in ("emulated", "sigstop"):
        ratios = [
            r["after_vs_fresh"] for r in doc["rows"] if r["how"] == how and "after_vs_fresh" in r
        ]
        if ratios:
            lines.append("")
            lines.append(
                f"{how}: after / fresh min {min(ratios):.2f}, median "
                f"{statistics.median(ratios):.2f}, max {max(ratios):.2f}"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--slow-at", type=int, default=8)
    ap.add_argument("--network", default="squeezenet_v1.1")
    ap.add_argument("--boards", default="4xfirefly-rk3399")
    ap.add_argument("--link-mbps", type=float, default=100.0)
    ap.add_argument("--how", default="emulated,sigstop")
    ap.add_argument(
        "--fps", type=float, default=None, help="frames arrive at this rate (latency-first plans)"
    )
    ap.add_argument("--results", type=Path, default=ROOT / "docs" / "results")
    ap.add_argument("--name", default="stream-slowdown", help="file name of the results")
    args = ap.parse_args()
    session = ensure_ray()
    started = time.time()
    rows = []
    tmp = tempfile.TemporaryDirectory()
    store = StoreFile(Path(tmp.name) / "profiles.sqlite")
    try:
        for how in args.how.split(","):
            for k in range(args.repeats):
                row = one_run(args, how, k, store)
                rows.append(row)
                log(f"{how} {k}: {row}")
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
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.results / f"{args.name}.md").write_text(render(doc))
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
