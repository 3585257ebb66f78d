"""Compare a `maniple bench legion` run with a reference run: same plans, latencies within 5%?

Why: a change that should not change behaviour (a restructuring, a new runtime that the
star still serves) is checked by running the benchmark again on a few sets and comparing
with the published page, row by row: for every search, the fused groups chosen and the
median latency. Writes a markdown page and exits 1 when a plan differs or a latency is off
by more than the tolerance.

    python benchmarks/compare_legion.py NEW/legion.json docs/results/legion.json \
        --out docs/results/legion-check.md [--tolerance 0.05]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from maniple.spatial.bench import BENCH_SCHEMA, SEARCHES


def _load(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict) or doc.get("schema") != BENCH_SCHEMA:
        raise SystemExit(f"{path} is not a legion.json of `maniple bench legion` ({BENCH_SCHEMA})")
    return doc


def compare(new: dict[str, Any], ref: dict[str, Any], tolerance: float) -> tuple[list[str], bool]:
    """Markdown lines and whether every row agrees."""
    ref_rows = {(r["network"], r["set"]): r for r in ref["rows"]}
    lines = [
        "| network | boards | search | plan (groups) | same plan | reference (ms) "
        "| this run (ms) | difference | one board: reference / this run (ms) |",
        "|---|---|---|---|---|---:|---:|---:|---:|",
    ]
    ok = True
    for row in new["rows"]:
        old = ref_rows.get((row["network"], row["set"]))
        if old is None:
            continue
        for s in SEARCHES:
            a, b = old["results"][s], row["results"][s]
            same = a["flc"] == b["flc"]
            diff = b["latency_ms"] / a["latency_ms"] - 1
            ok &= same and abs(diff) <= tolerance
            lines.append(
                f"| {row['network']} | {row['set']} | {s} | {b['flc']} | "
                f"{'yes' if same else 'NO (was ' + str(a['flc']) + ')'} | "
                f"{a['latency_ms']:.1f} | {b['latency_ms']:.1f} | {diff * 100:+.1f}% | "
                f"{old['single_device_ms']:.1f} / {row['single_device_ms']:.1f} |"
            )
    return lines, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("new", type=Path)
    parser.add_argument("reference", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args()
    new, ref = _load(args.new), _load(args.reference)
    table, ok = compare(new, ref, args.tolerance)
    m = new["machine"]
    page = [
        "# Legion benchmark against the published run",
        "",
        f"This run: `{new['command']}` on {m['host']}, {m['cores']} cores, Python "
        f"{m['python']}, torch {m['torch']} ({new['elapsed_s'] / 60:.1f} min); "
        f"its page: `{args.new.parent}/legion.md`.  ",
        f"Reference: `{args.reference}` (`{ref['command']}`).  ",
        f"Compared by: `python benchmarks/compare_legion.py {args.new} {args.reference} "
        f"--out {args.out} --tolerance {args.tolerance:g}`.",
        "",
        f"Verdict: {'same plans, latencies within' if ok else 'DIFFERS: a plan or latency off by'}"
        f" {args.tolerance * 100:g}%.",
        "",
        *table,
        "",
    ]
    args.out.write_text("\n".join(page))
    print(f"wrote {args.out}: {'ok' if ok else 'differs'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
