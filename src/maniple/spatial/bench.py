"""`maniple bench legion`: reproduce the Legion study on emulated edge boards.

For each network and each board set, one `LegionSession` measures FSS, Legion and
Legion + Wild Card on the same profile, against the fastest board alone. The boards are
opened once per network (the largest set) and each set uses a subset of them, so a run
does not pay for starting workers 14 times; they are warmed up first so that the first
set does not meet boards still settling (the set-up is `maniple.spatial.setup`'s, as for
`maniple spatial`). Profiles are measured afresh, never read from the store: profiling
time is one of the results. Everything lands in `docs/results/`:
legion.json (every number), legion.md (tables) and two figures in the style of the
study's result1/result2.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from maniple.errors import ManipleError
from maniple.spatial.bench_peer import peer_section

DEFAULT_SETS = (
    "1F", "2F", "3F", "4F", "5F", "6F",
    "1O", "2O", "3O",
    "1F+1O", "2F+1O", "2F+2O", "3F+2O", "3F+3O",
)  # fmt: skip
KINDS = {"F": "firefly-rk3399", "O": "odroid-xu4"}
BENCH_SCHEMA = "maniple.legion_bench/1"
SEARCHES = ("fss", "legion", "legion-wildcard")


def parse_set(text: str) -> dict[str, int]:
    """'3F+2O' -> {'F': 3, 'O': 2}."""
    counts: dict[str, int] = {}
    for part in text.upper().split("+"):
        part = part.strip()
        if len(part) < 2 or part[-1] not in KINDS or not part[:-1].isdigit():
            raise ManipleError(
                f"board set {text!r}: each part is a count and F (Firefly-RK3399) or O "
                "(Odroid-XU4), joined by '+', e.g. 3F+2O"
            )
        counts[part[-1]] = counts.get(part[-1], 0) + int(part[:-1])
    return counts


def machine() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": __import__("os").cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }


def run_legion_bench(
    networks: Sequence[str],
    sets: Sequence[str],
    repeats: int,
    link_mbps: float,
    out: Path,
    console: Console,
    runtimes: Sequence[str] = ("star",),
    timeout_s: float | None = None,
) -> Path:
    """Run the reproduction; write legion.json, legion.md and figures under `out`. With
    'peer' in `runtimes`, each set also runs the peer runtime (maniple.spatial.bench_peer).
    `timeout_s` bounds how long a silent board is waited for (None: the default)."""
    from maniple.spatial.bench_peer import measure_peer
    from maniple.spatial.session import LegionSession
    from maniple.spatial.setup import open_devices, prepare

    parsed = {s: parse_set(s) for s in sets}
    need = {k: max(c.get(k, 0) for c in parsed.values()) for k in KINDS}
    emulate = "+".join(f"{n}x{KINDS[k]}" for k, n in need.items() if n)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    started = time.time()
    for network in networks:
        setup = prepare(network, emulate=emulate, link_mbps=link_mbps, timeout_s=timeout_s)
        graph = setup.graph
        console.print(f"[bold]{network}[/]: opening {emulate} and warming the boards up ...")
        with open_devices(setup) as cluster:
            by_kind = {k: [h for h in cluster if KINDS[k] in h.name] for k in KINDS}
            for set_name, counts in parsed.items():
                handles = [h for k, n in counts.items() for h in by_kind[k][:n]]
                t0 = time.time()
                session = LegionSession(handles, graph, repeats=repeats)
                alone = None
                if len(handles) == 1:
                    # Nothing to split: every search is the whole model on the one board.
                    alone = session.measure("single")
                    results = {s: alone for s in SEARCHES}
                else:
                    # the study's plans, run whatever their prediction (min_gain None)
                    results = {s: session.measure(s, min_gain=None) for s in SEARCHES}
                peer = measure_peer(session, alone) if "peer" in runtimes else None
                row = {
                    "network": network,
                    "set": set_name,
                    "boards": [h.name for h in handles],
                    "single_device": results["fss"].single_device,
                    "single_device_ms": results["fss"].single_device_ms,
                    "results": {s: r.to_json() for s, r in results.items()},
                    "dilation": handles[0].dilation,
                    "wall_s": time.time() - t0,
                }
                if peer is not None:
                    row["peer"] = peer
                rows.append(row)
                console.print(
                    f"  {set_name:6s} single {row['single_device_ms']:7.1f} ms | "
                    + " | ".join(
                        f"{s} {r.latency_ms:7.1f} ms ({r.speedup:.2f}x, "
                        f"prof {r.profile.seconds:.1f} s)"
                        for s, r in results.items()
                    )
                    + f" | {row['wall_s']:.0f} s"
                )
                if peer is not None:
                    wc = peer["legion-wildcard"]
                    console.print(
                        f"         peer legion-wildcard {wc['latency_ms']:7.1f} "
                        f"ms ({wc['speedup']:.2f}x), auto "
                        f"{peer['auto']['speedup']:.2f}x ({peer['auto']['runtime']})"
                    )
                _write(out, rows, networks, sets, link_mbps, repeats, started, runtimes)
    return _write(out, rows, networks, sets, link_mbps, repeats, started, runtimes)


def _write(
    out: Path,
    rows: list[dict[str, Any]],
    networks: Sequence[str],
    sets: Sequence[str],
    link_mbps: float,
    repeats: int,
    started: float,
    runtimes: Sequence[str] = ("star",),
) -> Path:
    """Write what is done so far (a long run that stops still leaves its results)."""
    doc = {
        "schema": BENCH_SCHEMA,
        "command": "maniple bench legion "
        + f"--networks {','.join(networks)} --sets {','.join(sets)} "
        + f"--repeats {repeats} --link-mbps {link_mbps:g}"
        + ("" if tuple(runtimes) == ("star",) else f" --runtimes {','.join(runtimes)}"),
        "machine": machine(),
        "elapsed_s": time.time() - started,
        "rows": rows,
    }
    (out / "legion.json").write_text(json.dumps(doc, indent=1))
    return _draw(doc, out)


def _draw(doc: dict[str, Any], out: Path) -> Path:
    """The page and the two figures under `out`, from a legion.json document: the page
    first, so that a figure that fails never costs the results."""
    from maniple.spatial.figures import profiling_figure, speedup_figure

    path = out / "legion.md"
    path.write_text(render_markdown(doc))
    try:
        speedup_figure(doc["rows"], out / "legion-speedup.png")
        profiling_figure(doc["rows"], out / "legion-profiling.png")
    except (OSError, ValueError, RuntimeError) as exc:
        raise ManipleError(
            f"the figures could not be drawn in {out} ({type(exc).__name__}: {exc}); the "
            f"results are kept in {out / 'legion.json'} and {path}. Redraw them with "
            f"`python -m maniple.spatial.bench {out / 'legion.json'}`"
        ) from exc
    return path


def _pct(a: float, b: float) -> str:
    return f"{(a / b - 1) * 100:+.1f}%"


def render_markdown(doc: dict[str, Any]) -> str:
    """The results page: speedups, Wild Card vs FSS, profiling, prediction error, clocks."""
    rows = doc["rows"]
    m = doc["machine"]
    lines = [
        "# Legion on emulated edge boards",
        "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {m['host']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}; "
        f"{doc['elapsed_s'] / 60:.1f} min.",
        "",
        "Boards are emulated (DESIGN.md, 'Emulated edge boards'): Firefly-RK3399 presets from "
        "TVM's published arm_cpu numbers; Odroid-XU4 is *assumed* to run at 0.65x a Firefly. "
        "Links 100 Mbps per board unless the command says otherwise, 1 Gbps coordinator "
        "uplink. Latencies are medians of real-time runs with all boards working at once; "
        "coordinator and Ray overhead are counted undivided by the time dilation. "
        "Profiling is board time measured in fast-forward.",
        "",
        "## Speedup over one board of the fastest kind",
        "",
        "| network | boards | one board (ms) | FSS (ms) | Legion (ms) | Legion+WC (ms) "
        "| FSS x | Legion x | Legion+WC x | Legion+WC vs FSS | max rel. error |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        res = r["results"]
        lat = {s: res[s]["latency_ms"] for s in SEARCHES}
        err = max(res[s]["max_rel_error"] for s in SEARCHES)
        lines.append(
            f"| {r['network']} | {r['set']} | {r['single_device_ms']:.1f} | "
            + " | ".join(f"{lat[s]:.1f}" for s in SEARCHES)
            + " | "
            + " | ".join(f"{res[s]['speedup']:.2f}" for s in SEARCHES)
            + f" | {_pct(lat['legion-wildcard'], lat['fss'])} | {err:.1e} |"
        )
    within = [
        r["results"]["legion-wildcard"]["latency_ms"] <= 1.05 * r["results"]["fss"]["latency_ms"]
        for r in rows
    ]
    lines += [
        "",
        f"Legion+Wild Card within 5% of FSS's latency: {sum(within)} of {len(within)} "
        "configurations.",
        "",
        "## Profiling: FSS vs Legion (board seconds)",
        "",
        "| network | boards | FSS runs | FSS (s) | Legion runs | Legion (s) | FSS / Legion |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if len(r["boards"]) == 1:
            continue  # one board: nothing was profiled
        f, lg = r["results"]["fss"], r["results"]["legion"]
        ratio = f["profile_seconds"] / lg["profile_seconds"] if lg["profile_seconds"] else 0
        lines.append(
            f"| {r['network']} | {r['set']} | {f['profile_runs']} | {f['profile_seconds']:.1f} | "
            f"{lg['profile_runs']} | {lg['profile_seconds']:.2f} | {ratio:.1f}x |"
        )
    lines += [
        "",
        "## Predicted vs measured latency (Legion's cost predictor)",
        "",
        "| network | boards | search | predicted (ms) | measured (ms) | error |",
        "|---|---|---|---:|---:|---:|",
    ]
    errors = []
    for r in rows:
        for s in SEARCHES:
            res = r["results"][s]
            if res["predicted_ms"] is None:
                continue
            e = abs(res["predicted_ms"] - res["latency_ms"]) / res["latency_ms"]
            errors.append(e)
            lines.append(
                f"| {r['network']} | {r['set']} | {s} | {res['predicted_ms']:.1f} | "
                f"{res['latency_ms']:.1f} | {e * 100:.1f}% |"
            )
    if errors:
        lines += ["", f"Mean absolute percentage error: {statistics.mean(errors) * 100:.1f}%."]
    clocks = [
        abs(r["results"][s]["fast_forward_ms"] - r["results"][s]["device_ms"])
        / r["results"][s]["device_ms"]
        for r in rows
        for s in SEARCHES
        if r["results"][s]["fast_forward_ms"] and r["results"][s]["device_ms"]
    ]
    if clocks:
        lines += [
            "",
            "## Two clocks on the same work",
            "",
            "Each plan also ran once with the boards in fast-forward (board and link time "
            "added up, no sleeping) beside its real-time runs. Compared here is the boards' "
            "share of the latency on both clocks (per group, the slowest board's own time); "
            "the rest of the real-time latency is coordinator work, Ray calls and the tail, "
            "counted undivided. "
            f"Mean difference {statistics.mean(clocks) * 100:.1f}%, largest "
            f"{max(clocks) * 100:.1f}%; within 5%: {sum(c <= 0.05 for c in clocks)} of "
            f"{len(clocks)} plans.",
            "",
            "| network | boards | search | boards, real time (ms) | boards, fast-forward (ms) "
            "| coordinator etc. (ms) |",
            "|---|---|---|---:|---:|---:|",
        ]
        for r in rows:
            for s in SEARCHES:
                res = r["results"][s]
                lines.append(
                    f"| {r['network']} | {r['set']} | {s} | {res['device_ms']:.1f} | "
                    f"{res['fast_forward_ms']:.1f} | {res['coordinator_ms']:.1f} |"
                )
    lines += _time_breakdown(rows)
    lines += peer_section(rows)
    lines += ["", "Figures: `legion-speedup.png`, `legion-profiling.png`.", ""]
    return "\n".join(lines)


def _time_breakdown(rows: list[dict[str, Any]]) -> list[str]:
    """Where FSS's latency goes on each network's largest set (the first listed of equal
    size, the all-Firefly one in the study's order): boards vs coordinator.

    The boards' share is the slowest board's own time per group (compute and link); the
    rest is real host time on the coordinator (Ray calls, stitching, the tail), which is
    what separates a measured speedup from what the boards alone would allow.
    """
    largest: dict[str, dict[str, Any]] = {}
    for r in rows:
        if len(r["boards"]) > 1 and len(r["boards"]) > len(
            largest.get(r["network"], {}).get("boards", [])
        ):
            largest[r["network"]] = r
    if not largest:
        return []
    lines = [
        "",
        "## Where the time goes (FSS's plan, largest set of each network)",
        "",
        "Boards: per group the slowest board's own time (compute + link). Coordinator: the "
        "rest of the measured latency, real host time (Ray calls, stitching, the tail). "
        "'one board / boards' is the speedup the boards' share alone would give; the one-board "
        "time itself carries one group's coordinator cost and the tail.",
        "",
        "| network | boards | groups | one board (ms) | latency (ms) | boards (ms) "
        "| coordinator (ms) | speedup | one board / boards |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for network, r in largest.items():
        f = r["results"]["fss"]
        groups = len(f["flc"])
        lines.append(
            f"| {network} | {r['set']} | {groups} | {r['single_device_ms']:.1f} | "
            f"{f['latency_ms']:.1f} | {f['device_ms']:.1f} | {f['coordinator_ms']:.1f} | "
            f"{f['speedup']:.2f} | "
            f"{r['single_device_ms'] / f['device_ms']:.2f} |"
        )
    return lines


def rerender(json_path: Path) -> Path:
    """Write legion.md and the figures again from a legion.json (no boards needed)."""
    doc = json.loads(json_path.read_text())
    if not isinstance(doc, dict) or doc.get("schema") != BENCH_SCHEMA:
        raise ManipleError(
            f"{json_path} is not a legion.json written by `maniple bench legion` "
            f"(schema {BENCH_SCHEMA})"
        )
    return _draw(doc, json_path.parent)


if __name__ == "__main__":
    # python -m maniple.spatial.bench docs/results/legion.json
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m maniple.spatial.bench PATH/legion.json")
    print(f"wrote {rerender(Path(sys.argv[1]))}")
