"""Compare `maniple bench legion` runs of two code versions on one machine: same plans,
same latencies?

Why: a change that should not change behaviour (a restructuring, a new runtime that
leaves the star as it was) is checked by running the benchmark with the code before and
after it, alternately, on the same machine, and comparing row by row: for every search,
the fused groups each run chose and the median latency. The run-to-run spread of one
version on the same sets is shown beside the difference, since on a shared 2-core host it
is often larger than 5%.

    python benchmarks/compare_legion.py --before A1/legion.json A2/legion.json \
        --after B1/legion.json B2/legion.json --out docs/results/legion-check/README.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from maniple.spatial.bench import BENCH_SCHEMA, SEARCHES


def _load(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict) or doc.get("schema") != BENCH_SCHEMA:
        raise SystemExit(f"{path} is not a legion.json of `maniple bench legion` ({BENCH_SCHEMA})")
    return doc


def _rows(docs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for doc in docs:
        for row in doc["rows"]:
            rows.setdefault((row["network"], row["set"]), []).append(row)
    return rows


def _spread(values: list[float]) -> str:
    return f"{(max(values) / min(values) - 1) * 100:.1f}%" if len(values) > 1 else "-"


def compare(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    """One table row per (network, set, search) present in both, then a summary."""
    a_rows, b_rows = _rows(before), _rows(after)
    lines = [
        "| network | boards | search | plans before | plans after | before (ms) | after (ms) "
        "| after / before | spread before | spread after |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    same = flipped = 0
    ratios: list[float] = []
    spreads: list[float] = []
    for key, b_runs in b_rows.items():
        a_runs = a_rows.get(key)
        if not a_runs:
            continue
        for s in SEARCHES:
            a_lat = [r["results"][s]["latency_ms"] for r in a_runs]
            b_lat = [r["results"][s]["latency_ms"] for r in b_runs]
            ratio = statistics.median(b_lat) / statistics.median(a_lat) - 1
            plans = [str(r["results"][s]["flc"]) for r in [*a_runs, *b_runs]]
            same += len(set(plans)) == 1
            flipped += len({str(r["results"][s]["flc"]) for r in a_runs}) > 1
            ratios.append(abs(ratio))
            spreads += [max(v) / min(v) - 1 for v in (a_lat, b_lat) if len(v) > 1]
            lines.append(
                f"| {key[0]} | {key[1]} | {s} | "
                + " ".join(str(r["results"][s]["flc"]) for r in a_runs)
                + " | "
                + " ".join(str(r["results"][s]["flc"]) for r in b_runs)
                + f" | {' / '.join(f'{v:.1f}' for v in a_lat)} | "
                f"{' / '.join(f'{v:.1f}' for v in b_lat)} | {ratio * 100:+.1f}% | "
                f"{_spread(a_lat)} | {_spread(b_lat)} |"
            )
    n = len(ratios)
    lines += [
        "",
        f"Plans: the same in every run of both versions in {same} of {n} rows; in {flipped} "
        "of the others the code before already chose differently from one run to the next "
        "(near-ties in the costs measured). Latency: after / before within "
        f"{max(ratios, default=0) * 100:.1f}% everywhere; one version's own run-to-run "
        f"spread up to {max(spreads, default=0) * 100:.1f}%.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, nargs="+", required=True)
    parser.add_argument("--after", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="Legion benchmark before and after a change")
    args = parser.parse_args()
    before, after = [_load(p) for p in args.before], [_load(p) for p in args.after]
    m = after[0]["machine"]
    page = [
        f"# {args.title}",
        "",
        f"Machine: {m['host']}, {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"torch {m['torch']}. Runs alternated before / after; each run is "
        f"`{after[0]['command']}`.",
        "",
        "Compared by: `python benchmarks/compare_legion.py --before "
        + " ".join(str(p) for p in args.before)
        + " --after "
        + " ".join(str(p) for p in args.after)
        + f" --out {args.out}`.",
        "",
        "Latencies are each run's median of its real-time runs; 'after / before' compares "
        "the medians over runs; 'spread' is the largest over the smallest latency of one "
        "version's runs, the noise floor of this host.",
        "",
        *compare(before, after),
        "",
    ]
    args.out.write_text("\n".join(page))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
