"""The peer runtime's part of `maniple bench legion --runtimes star,peer`.

Beside each star row the bench measures, on the same boards and profile, Legion and
Legion + Wild Card over the peer predictor and `auto` (the runtime predicted faster).
This module measures that and renders its section of legion.md: both runtimes side by
side with the study's own values (read by eye from its figures), the peer predictor's
error, and whether every chosen plan held at least 0.98x of one board.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

PEER_SEARCHES = ("legion", "legion-wildcard")
STUDY_VALUES = (
    Path(__file__).resolve().parents[3].parent
    / "shared"
    / "data"
    / "legion-figures"
    / "study-values-read-by-eye.json"
)


def measure_peer(session: Any, alone: Any | None) -> dict[str, Any]:
    """The peer searches and `auto` on one session (or the one board's result `alone`)."""
    if alone is not None:
        return {s: alone.to_json() for s in (*PEER_SEARCHES, "auto")}
    out = {s: session.measure(s, "peer").to_json() for s in PEER_SEARCHES}
    out["auto"] = session.measure("legion-wildcard", "auto").to_json()
    return out


def study_speedups() -> dict[str, dict[str, list[float]]]:
    """The study's speedups per network and set ([FSS, Legion, Legion+WC]); {} if absent."""
    try:
        return json.loads(STUDY_VALUES.read_text())["speedup"]
    except (OSError, ValueError, KeyError):
        return {}


def peer_section(rows: list[dict[str, Any]]) -> list[str]:
    """legion.md's section on the peer runtime (empty when the bench ran the star only)."""
    rows = [r for r in rows if "peer" in r]
    if not rows:
        return []
    study = study_speedups()
    lines = [
        "",
        "## Star vs peer runtime (halo rows device to device)",
        "",
        "Both runtimes on the same boards and profile, Legion + Wild Card on each runtime's "
        "own predictor; `auto` takes the runtime predicted faster. 'study' is the study's "
        "Legion + Wild Card speedup, read by eye from its figure (approximate, +-0.05; "
        "`../shared/data/legion-figures/study-values-read-by-eye.json`).",
        "",
        "| network | boards | one board (ms) | star (ms) | peer (ms) | study x | star x "
        "| peer x | auto x | coordinator MB star / peer | wire/raw |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    chosen, errors = [], []
    for r in rows:
        star, peer, auto = (
            r["results"]["legion-wildcard"],
            r["peer"]["legion-wildcard"],
            r["peer"]["auto"],
        )
        s = study.get(r["network"], {}).get(r["set"])
        lines.append(
            f"| {r['network']} | {r['set']} | {r['single_device_ms']:.1f} | "
            f"{star['latency_ms']:.1f} | {peer['latency_ms']:.1f} | "
            f"{'-' if s is None else f'{s[2]:.2f}'} | {star['speedup']:.2f} | "
            f"{peer['speedup']:.2f} | {auto['speedup']:.2f} ({auto['runtime']}) | "
            f"{star['bytes_through_coordinator'] / 1e6:.2f} / "
            f"{peer['bytes_through_coordinator'] / 1e6:.2f} | {peer['compression_ratio']:.3f} |"
        )
        chosen += [
            star["speedup"],
            auto["speedup"],
            *(r["peer"][k]["speedup"] for k in PEER_SEARCHES),
        ]
        for k in PEER_SEARCHES:
            p = r["peer"][k]
            if p["predicted_ms"] is not None and p["runtime"] == "peer" and len(r["boards"]) > 1:
                errors.append(abs(p["predicted_ms"] - p["latency_ms"]) / p["latency_ms"])
    lines += [
        "",
        f"Chosen plans at least 0.98x of one board: {sum(x >= 0.98 for x in chosen)} of "
        f"{len(chosen)} (lowest {min(chosen):.2f}x).",
    ]
    if errors:
        lines.append(
            f"Peer predictor: mean absolute percentage error {statistics.mean(errors) * 100:.1f}% "
            f"over {len(errors)} plans (largest {max(errors) * 100:.1f}%)."
        )
    return lines
