"""Merge legion.json files of several `maniple bench legion` runs on one machine into one
results page (legion.json, legion.md, figures).

Why: one network's sets take 15-30 minutes, so a run can be split per network (or one
network run again after a disturbed set) and the pages joined. Every row keeps the run it
came from; within a row the single board and all searches were measured together, so
ratios never mix runs. Refuses files from different machines, and a network given twice.

    python benchmarks/merge_legion.py A/legion.json B/legion.json --out docs/results
    python benchmarks/merge_legion.py A/legion.json@vgg-16 B/legion.json@vgg-19,yolov2 ...
(`@` names the networks to take from that file; all of them without it.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from maniple.errors import ManipleError
from maniple.spatial.bench import BENCH_SCHEMA as SCHEMA
from maniple.spatial.bench import DEFAULT_SETS, rerender


def merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One document from several: rows in network order of the inputs, sets in the study's
    order; the commands listed in the order given."""
    if not docs:
        raise ManipleError("give at least one legion.json")
    machine = docs[0]["machine"]
    seen: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    for k, doc in enumerate(docs):
        if doc.get("schema") != SCHEMA:
            raise ManipleError(f"input {k + 1} is not a legion.json ({SCHEMA})")
        if doc["machine"] != machine:
            raise ManipleError(
                f"input {k + 1} ran on {doc['machine']}, input 1 on {machine}: "
                "merge runs of one machine only"
            )
        for network in dict.fromkeys(r["network"] for r in doc["rows"]):
            if network in seen:
                raise ManipleError(
                    f"{network} is in inputs {seen[network] + 1} and {k + 1}; give each "
                    "network once (leave out the run it should not come from)"
                )
            seen[network] = k
        rows += doc["rows"]
    order = {s: i for i, s in enumerate(DEFAULT_SETS)}
    networks = list(seen)
    rows.sort(key=lambda r: (networks.index(r["network"]), order.get(r["set"], len(order))))
    return {
        "schema": SCHEMA,
        "command": "; ".join(
            f"{d['command']} (rows: {', '.join(dict.fromkeys(r['network'] for r in d['rows']))})"
            for d in docs
        ),
        "machine": machine,
        "elapsed_s": sum(d["elapsed_s"] for d in docs),
        "rows": rows,
    }


def read(spec: str) -> dict[str, Any]:
    """PATH or PATH@NET,NET: the document, keeping only the named networks' rows."""
    path, _, nets = spec.partition("@")
    doc = json.loads(Path(path).read_text())
    if nets:
        keep = nets.split(",")
        found = {r["network"] for r in doc.get("rows", [])}
        missing = [n for n in keep if n not in found]
        if missing:
            raise ManipleError(f"{path} has no rows of {missing}; it has {sorted(found)}")
        doc["rows"] = [r for r in doc["rows"] if r["network"] in keep]
    return doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="legion.json files, each PATH[@NET,NET]")
    parser.add_argument("--out", type=Path, required=True, help="folder for the merged page")
    args = parser.parse_args(argv)
    try:
        merged = merge([read(spec) for spec in args.inputs])
    except (OSError, json.JSONDecodeError, ManipleError) as exc:
        sys.exit(f"error: {exc}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "legion.json"
    path.write_text(json.dumps(merged, indent=1))
    print(f"wrote {rerender(path)}")


if __name__ == "__main__":
    main()
