"""Summarise benchmarks/multi_gpu.sh's JSON files as markdown (throughput over one GPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(path: Path) -> dict | None:
    try:
        text = path.read_text()
        return json.loads(text[text.index("{") :])
    except (OSError, ValueError):
        return None


def main(out: Path) -> None:
    machine = (out / "machine.txt").read_text().strip().replace("\n", "; ")
    print("# Multi-GPU runs\n")
    print(f"Machine: {machine}. Command: `bash benchmarks/multi_gpu.sh`.\n")
    print("## Batch split (`maniple infer --planner exact`), throughput over one GPU\n")
    print(
        "| network | batch | devices | shares | measured ms | one GPU ms | throughput x | "
        "max rel. error |"
    )
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for f in sorted(out.glob("infer-*.json")):
        d = load(f)
        if d is None:
            print(f"| {f.stem} | | failed, see {f.stem}.err | | | | | |")
            continue
        net, batch = d.get("network"), d.get("batch")
        one = load(out / f"infer-{net}-{batch}-cuda_0.json")
        one_ms = one["measured_ms"] if one else float("nan")
        shares = " ".join(f"{k}:{v}" for k, v in d["shares"].items())
        print(
            f"| {net} | {batch} | {','.join(d['shares'])} | {shares} | "
            f"{d['measured_ms']:.1f} | {one_ms:.1f} | {one_ms / d['measured_ms']:.2f} | "
            f"{d.get('max_rel_error', float('nan')):.1e} |"
        )
    print("\n## Spatial split (`maniple spatial --search legion`), 1024x1024, batch 1\n")
    print("| network | devices | groups | latency ms | one device ms | speedup | max rel. error |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for f in sorted(out.glob("spatial-*.json")):
        d = load(f)
        if d is None:
            print(f"| {f.stem} | failed, see {f.stem}.err | | | | | |")
            continue
        print(
            f"| {d['network']} | {','.join(d['devices'])} | {len(d['flc'])} | "
            f"{d['latency_ms']:.1f} | {d['single_device_ms']:.1f} ({d['single_device']}) | "
            f"{d['speedup']:.2f} | {d['max_rel_error']:.1e} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
