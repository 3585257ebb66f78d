"""Sync points on emulated boards: squeeze-and-excitation networks split by rows.

    python benchmarks/sync_points.py [--boards 4xfirefly-rk3399] [--out docs/results]

For each network and input (EfficientNet-B0 and MobileNet-v3-Large, at 224 and 448) it
profiles the boards once (Legion's single-unit sweep, sync points included), then in one
session measures: the fastest board alone, and Legion's plan for the star and the peer
runtime run for real even where the planner predicts them slower than that board (the
CLI would then run the board alone). Each plan's output is checked against one device.
Writes OUT/sync-points.md and OUT/sync-points.json with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from maniple.spatial.session import LegionSession
from maniple.spatial.setup import open_cache, open_devices, prepare
from maniple.store import StoreFile
from maniple.tiling.verify import relative_error

CASES = [
    ("efficientnet-b0", 224),
    ("mobilenet-v3-large", 224),
    ("efficientnet-b0", 448),
    ("mobilenet-v3-large", 448),
]


def measure(network: str, size: int, boards: str, repeats: int) -> dict:
    setup = prepare(network, emulate=boards, input_shape=(3, size, size))
    row: dict = {"network": network, "input": size, "sync_points": len(setup.graph.sync_points)}
    with StoreFile(None) as store, open_devices(setup) as handles:
        session = LegionSession(
            handles, setup.graph, repeats=repeats, cache=open_cache(store, handles, setup.graph)
        )
        best, _, _ = session.single()
        row["single_device"] = best
        single = session.run(session.plan("single"))
        row["single_ms"] = [r.latency_ms for r in single]
        reference = session.reference  # one device's output, computed here
        for runtime in ("star", "peer"):
            plan = session.plan("legion", runtime)
            runs = session.run(plan)
            row[runtime] = {
                "groups": len(plan.flc),
                "predicted_ms": plan.predicted_ms,
                "latency_ms": [r.latency_ms for r in runs],
                "max_rel_error": max(relative_error(r.output, reference) for r in runs),
            }
    return row


def render(doc: dict) -> str:
    def spread(v: list[float]) -> str:
        return f"{min(v):.0f}/{statistics.median(v):.0f}/{max(v):.0f}"

    lines = [
        "# Sync points on emulated boards",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Machine: {doc['machine']}. Boards: {doc['boards']}, 100 Mbps links, time dilation "
        "as `maniple spatial` picks it; latencies min/median/max over "
        f"{doc['repeats']} runs, ms, all measured in one session per row.",
        "",
        "Legion's plan is run for real on both runtimes even where it is predicted slower "
        "than the board alone (`maniple spatial` would then run the board alone and report "
        "1.00x). Error: max |split - one device| / max |one device|.",
        "",
        "| network | input | sync points | one board (ms) | star: groups, predicted, "
        "measured | peer: groups, predicted, measured | best split / one board | error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        one = statistics.median(r["single_ms"])
        best = min(statistics.median(r[k]["latency_ms"]) for k in ("star", "peer"))
        err = max(r[k]["max_rel_error"] for k in ("star", "peer"))
        cells = [
            f"{r[k]['groups']}, {r[k]['predicted_ms']:.0f}, {spread(r[k]['latency_ms'])}"
            for k in ("star", "peer")
        ]
        lines.append(
            f"| {r['network']} | {r['input']} | {r['sync_points']} | {spread(r['single_ms'])} "
            f"| {cells[0]} | {cells[1]} | {one / best:.2f}x | {err:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", default="4xfirefly-rk3399")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    args = parser.parse_args()
    rows = []
    for network, size in CASES:
        t0 = time.perf_counter()
        rows.append(measure(network, size, args.boards, args.repeats))
        print(network, size, f"{time.perf_counter() - t0:.0f} s", flush=True)
    doc = {
        "command": "python benchmarks/sync_points.py",
        "machine": f"{platform.node()}, {os.cpu_count()} cores, {platform.processor() or ''} "
        f"torch {torch.__version__}",
        "boards": args.boards,
        "repeats": args.repeats,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sync-points.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.out / "sync-points.md").write_text(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
