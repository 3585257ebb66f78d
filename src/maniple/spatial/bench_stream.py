"""`maniple bench stream`: throughput and latency of streams on the study's board sets.

For each network the largest set's boards are opened once (as `bench legion` does) and
each set streams on a subset of them: the best board alone first, then the planned
stream, both measured in the same session (`stream_run.run_stream`). A set of one board
has nothing to plan: its row is the board alone. Next to each row stands the
single-image latency of the same set from docs/results/legion.json (Legion + Wild Card,
star runtime), where that file has it. The fault and slow-board runs
(benchmarks/stream_faults.py, benchmarks/stream_slowdown.py) write their own results;
stream.md links them. Profiles are measured afresh (a private store per run).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from maniple.spatial.bench import DEFAULT_SETS, KINDS, machine, parse_set

STREAM_SCHEMA = "maniple.stream_bench/1"
DEFAULT_NETWORKS = ("vgg-16", "yolov2", "resnet-50")
__all__ = ["DEFAULT_NETWORKS", "DEFAULT_SETS", "render_stream_markdown", "run_stream_bench"]


def _legion_latencies(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """(network, set) -> single-image latency and speedup from an earlier bench legion."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    found = {}
    for row in doc.get("rows", []):
        wc = row.get("results", {}).get("legion-wildcard", {})
        if "latency_ms" in wc:
            found[(row["network"], row["set"])] = {
                "latency_ms": wc["latency_ms"],
                "speedup": wc.get("speedup", math.nan),
                "single_ms": row.get("single_device_ms", math.nan),
            }
    return found


def run_stream_bench(
    networks: Sequence[str],
    sets: Sequence[str],
    frames_per_board: int,
    link_mbps: float,
    out: Path,
    console: Console,
    *,
    timeout_s: float | None = None,
    runtime: str = "star",
) -> Path:
    """Stream every network on every set; write stream.json and stream.md under `out`."""
    from maniple.spatial.setup import open_cache, open_devices, prepare
    from maniple.spatial.stream_run import run_stream
    from maniple.spatial.stream_session import StreamSession
    from maniple.store import StoreFile

    parsed = {s: parse_set(s) for s in sets}
    need = {k: max(c.get(k, 0) for c in parsed.values()) for k in KINDS}
    emulate = "+".join(f"{n}x{KINDS[k]}" for k, n in need.items() if n)
    out.mkdir(parents=True, exist_ok=True)
    legion = _legion_latencies(out / "legion.json")
    rows: list[dict[str, Any]] = []
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp, StoreFile(Path(tmp) / "p.sqlite") as store:
        for network in networks:
            setup = prepare(network, emulate=emulate, link_mbps=link_mbps, timeout_s=timeout_s)
            console.print(f"[bold]{network}[/]: opening {emulate} and warming the boards up ...")
            with open_devices(setup) as cluster:
                by_kind = {k: [h for h in cluster if KINDS[k] in h.name] for k in KINDS}
                for set_name, counts in parsed.items():
                    handles = [h for k, n in counts.items() for h in by_kind[k][:n]]
                    t0 = time.time()
                    cache = open_cache(store, handles, setup.graph)
                    session = StreamSession(handles, setup.graph, cache=cache, runtime=runtime)
                    n = max(2, frames_per_board * len(handles))
                    result = run_stream(session, n, single_frames=min(3, n))
                    doc = result.to_dict()
                    doc.pop("frame_runs")
                    row = {
                        "network": network,
                        "set": set_name,
                        "boards": [h.name for h in handles],
                        "stream": doc,
                        "lanes": [list(ln.devices) for ln in result.plan.lanes],
                        "single_image": legion.get((network, set_name)),
                        "wall_s": round(time.time() - t0, 1),
                    }
                    rows.append(row)
                    lat = result.latency
                    console.print(
                        f"  {set_name:6s} {result.throughput_fps:6.2f} frames/s "
                        f"({result.speedup:.2f}x {result.single_fps:.2f}) p50 {lat.p50:7.0f} "
                        f"p99 {lat.p99:7.0f} ms, {len(result.plan.lanes)} lanes, "
                        f"{row['wall_s']:.0f} s"
                    )
                    _write(out, rows, networks, sets, link_mbps, frames_per_board, started)
    return _write(out, rows, networks, sets, link_mbps, frames_per_board, started)


def _write(
    out: Path,
    rows: list[dict[str, Any]],
    networks: Sequence[str],
    sets: Sequence[str],
    link_mbps: float,
    frames_per_board: int,
    started: float,
) -> Path:
    doc = {
        "schema": STREAM_SCHEMA,
        "machine": machine(),
        "networks": list(networks),
        "sets": list(sets),
        "link_mbps": link_mbps,
        "frames_per_board": frames_per_board,
        "wall_s": round(time.time() - started, 1),
        "rows": rows,
    }
    (out / "stream.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    path = out / "stream.md"
    path.write_text(render_stream_markdown(doc))
    return path


def _f(v: Any, nd: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def rerender(json_path: Path) -> Path:
    """stream.md again from its stream.json (after a change to the page's layout)."""
    doc = json.loads(json_path.read_text())
    path = json_path.with_suffix(".md")
    path.write_text(render_stream_markdown(doc))
    return path


def render_stream_markdown(doc: dict[str, Any]) -> str:
    """stream.md from stream.json."""
    m = doc["machine"]
    lines = [
        "# Streams of frames on the study's board sets",
        "",
        f"`maniple bench stream --frames-per-board {doc['frames_per_board']}` "
        f"({doc['wall_s'] / 60:.0f} min), emulated boards, links {doc['link_mbps']:g} Mbit/s.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, torch {m['torch']}.",
        "",
        "Each row streams frames (as fast as they are taken) through the lanes the "
        "throughput planner chose, and before that the best board alone streams a few "
        "frames; the speedup is the ratio of the two throughputs, measured in the same "
        "session. Latency is per frame, arrival to in-order delivery, on the counted clock "
        "(boards' own time divided by the dilation, the coordinator's work whole). The "
        "single-image columns are Legion + Wild Card's latency for the same set from "
        "legion.md (an earlier run), for comparison.",
        "",
    ]
    for network in doc["networks"]:
        rows = [r for r in doc["rows"] if r["network"] == network]
        if not rows:
            continue
        lines += [
            f"## {network}",
            "",
            "| set | lanes | frames/s | x one board | p50 ms | p95 ms | p99 ms | p99/p50 | "
            "one board frames/s | one image ms (Legion) | x (Legion) | max error (frames) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            s, lat, one = r["stream"], r["stream"]["latency"], r["single_image"] or {}
            ratio = (lat["p99_ms"] / lat["p50_ms"]) if lat["p50_ms"] else None
            lanes = " ".join(
                "+".join(d.split(":")[-1] for d in ln) if len(ln) > 1 else "1" for ln in r["lanes"]
            )
            lines.append(
                f"| {r['set']} | {len(r['lanes'])} ({lanes}) | {_f(s['throughput_fps'])} | "
                f"{_f(s['speedup'])} | {_f(lat['p50_ms'], 0)} | {_f(lat['p95_ms'], 0)} | "
                f"{_f(lat['p99_ms'], 0)} | {_f(ratio)} | {_f(s['single_fps'])} | "
                f"{_f(one.get('latency_ms'), 0)} | {_f(one.get('speedup'))} | "
                f"{s['max_rel_error']:.1g} ({s['checked_frames']}) |"
            )
        lines.append("")
    lines += [
        "## Faults and slow boards",
        "",
        "See [stream-faults.md](stream-faults.md) (benchmarks/stream_faults.py: a board killed "
        "at a random frame, 100 streams) and [stream-slowdown.md](stream-slowdown.md) "
        "(benchmarks/stream_slowdown.py: a board slowed to half speed mid-stream; lanes of one "
        "board each) and [stream-slowdown-fps5.md](stream-slowdown-fps5.md) (the same at 5 "
        "frames/s, where the plan is one lane splitting every frame, so bands move).",
        "",
    ]
    return "\n".join(lines)
