"""The peer runtime against Legion's star on emulated boards, for the issue's acceptance sets.

For each network and board set, one session (profiles from the store when it has them)
measures in the same run: the fastest board alone, the star with Legion + Wild Card, the
peer runtime with Legion + Wild Card over the peer predictor, and `auto` (the runtime
predicted faster). It also runs the chosen peer plan once with compression off and checks
that the output is bit for bit the one with compression on. Every latency is the median
of real-time runs with all boards working at once; speedups are over the fastest board
alone measured in the same session.

    python benchmarks/peer_check.py [--sets vgg-16:6F,...] [--repeats 3]

Writes docs/results/peer/peer-check.json and peer-check.md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from maniple.spatial.bench import KINDS, parse_set
from maniple.spatial.peer_setup import run_plan
from maniple.spatial.session import LegionSession
from maniple.spatial.setup import open_cache, open_devices, prepare
from maniple.store import StoreFile

DEFAULT = "vgg-16:6F,yolov2:6F,resnet-50:6F,vgg-16:3F+3O"
OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "peer"


def _emulate(set_name: str) -> str:
    return "+".join(f"{n}x{KINDS[k]}" for k, n in parse_set(set_name).items())


def _machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }


def check(network: str, set_name: str, repeats: int, dilation: float | None) -> dict[str, object]:
    setup = prepare(network, emulate=_emulate(set_name), link_mbps=100.0, dilation=dilation)
    with StoreFile(None) as store, open_devices(setup) as handles:
        session = LegionSession(
            handles,
            setup.graph,
            repeats=repeats,
            cache=open_cache(store, handles, setup.graph, reprofile=True),
        )
        row: dict[str, object] = {
            "network": network,
            "set": set_name,
            "dilation": handles[0].dilation,
        }
        for runtime in ("star", "peer", "auto"):
            r = session.measure("legion-wildcard", runtime, min_gain=0.0)
            row[runtime] = r.to_json()
            print(
                f"{network} {set_name} {runtime}: {r.latency_ms:.1f} ms "
                f"(x{r.speedup:.2f} over {r.single_device} {r.single_device_ms:.1f} ms), "
                f"predicted {r.plan.predicted_ms or 0:.1f}, "
                f"fast-forward {r.fast_forward_ms or 0:.1f}, "
                f"{r.choice}, "
                f"runs {[round(v, 1) for v in r.latencies_ms]}",
                flush=True,
            )
        peer = session.plan("legion-wildcard", "peer")
        links, compress = session.peer()
        outputs = [
            run_plan(peer, session.by_name, setup.graph, session.x, compress=c).output
            for c in (True, False)
        ]
        row["peer_links"] = {"step_ms": links.step_ms, "compress": compress}
        row["compressed_output_identical"] = bool(torch.equal(*outputs))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=DEFAULT, help="network:set pairs, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="real-time runs (median)")
    parser.add_argument(
        "--dilation",
        type=float,
        default=None,
        help="time dilation of the boards (default: the host's; 4 keeps six boards that "
        "compute at once under the peer runtime from overrunning on 2 cores)",
    )
    args = parser.parse_args()
    started, rows = time.time(), []
    for pair in args.sets.split(","):
        network, set_name = pair.split(":")
        rows.append(check(network, set_name, args.repeats, args.dilation))
        _write(rows, args, time.time() - started)


def _write(rows: list[dict[str, object]], args: argparse.Namespace, seconds: float) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": f"python benchmarks/peer_check.py --sets {args.sets} --repeats {args.repeats}",
        "machine": _machine(),
        "minutes": seconds / 60,
        "rows": rows,
    }
    (OUT / "peer-check.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    m = doc["machine"]
    lines = [
        "# Peer runtime vs Legion's star (emulated boards, 100 Mbps)",
        "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {m['host']}, {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"torch {m['torch']}; {doc['minutes']:.1f} min.",
        "",
        "Latencies are medians of real-time runs (min-max in brackets), all boards at once; "
        "speedups over the fastest board alone, measured in the same session. Search: "
        "Legion + Wild Card on each runtime's own predictor; `auto` takes the runtime "
        "predicted faster.",
        "",
        "| network | boards | dilation | one board (ms) | star (ms) | peer (ms) | star x "
        "| peer x | auto x "
        "| peer predicted (ms) | peer fast-forward (ms) | coordinator bytes star / peer "
        "| wire/raw | compressed = plain |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in rows:
        s, p, a = r["star"], r["peer"], r["auto"]
        lines.append(
            f"| {r['network']} | {r['set']} | {r['dilation']:g} | {p['single_device_ms']:.1f} | "
            f"{_spread(s)} | {_spread(p)} | {s['speedup']:.2f} | {p['speedup']:.2f} | "
            f"{a['speedup']:.2f} ({a['runtime']}) | {_num(p['predicted_ms'])} | "
            f"{_num(p['fast_forward_ms'])} | {s['bytes_through_coordinator']:,} / "
            f"{p['bytes_through_coordinator']:,} | {p['compression_ratio']:.3f} | "
            f"{r['compressed_output_identical']} |"
        )
    (OUT / "peer-check.md").write_text("\n".join(lines) + "\n")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _spread(result: dict) -> str:
    runs = result["latencies_ms"]
    return f"{statistics.median(runs):.1f} [{min(runs):.0f}-{max(runs):.0f}]"


if __name__ == "__main__":
    main()
