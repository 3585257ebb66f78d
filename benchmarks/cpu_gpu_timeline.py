"""CPU + GPU of one host running one batch at the same time, as a timeline.

Why: the batch-split study (KCC 2020) only pays off if the CPU and the GPU really compute
concurrently; each local device has a thread of its own in maniple, and this shows it.
The batch is split in proportion to each unit's measured speed (so both finish about
together), both halves are submitted at once, and each unit's busy interval is written
as JSON and drawn as a PNG. Without CUDA it says so and exits 0.

    python benchmarks/cpu_gpu_timeline.py [--network resnet-18] [--batch 64] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="resnet-18")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to show (run this on a machine with one)")
        return 0

    from maniple.devices import ModelSpec, open_device

    model = ModelSpec(args.network, seed=0)
    cpu_threads = max(1, (os.cpu_count() or 2) - 1)  # leave a core to drive the GPU
    cpu = open_device("cpu", model, threads=cpu_threads)
    gpu = open_device("cuda:0", model)
    try:
        shape = cpu.worker._input_shape  # noqa: SLF001 - the model's own input shape
        assert shape is not None
        x = torch.randn(args.batch, *shape, generator=torch.Generator().manual_seed(0))
        # Per-image time of each unit alone (after a warm-up), then a proportional split.
        per_image = {}
        for handle in (cpu, gpu):
            probe = x[:4]
            handle.run_batch(probe)
            per_image[handle.name] = handle.run_batch(probe)[1].wall_ms / len(probe)
        cpu_share = per_image["cuda:0"] / (per_image["cuda:0"] + per_image["cpu"])
        n_cpu = min(args.batch - 1, max(1, round(args.batch * cpu_share)))
        parts = {"cpu": x[:n_cpu], "cuda:0": x[n_cpu:]}
        for handle in (cpu, gpu):  # warm up at the split sizes
            handle.run_batch(parts[handle.name])
        calls = {h.name: h.submit_batch(parts[h.name]) for h in (cpu, gpu)}
        results = {name: call.result() for name, call in calls.items()}
        y = torch.cat([results["cpu"][0], results["cuda:0"][0]])
        whole, _ = cpu.run_batch(x)
    finally:
        cpu.close()
        gpu.close()

    t0 = min(t.start_s for _, t in results.values())
    rows = [
        {
            "device": name,
            "images": len(parts[name]),
            "start_ms": (t.start_s - t0) * 1e3,
            "end_ms": (t.end_s - t0) * 1e3,
            "wall_ms": t.wall_ms,
        }
        for name, (_, t) in results.items()
    ]
    overlap = min(r["end_ms"] for r in rows) - max(r["start_ms"] for r in rows)
    shorter = min(r["end_ms"] - r["start_ms"] for r in rows)
    scale = whole.abs().max().item()
    report = {
        "network": args.network,
        "batch": args.batch,
        "gpu": torch.cuda.get_device_name(0),
        "cpu_threads": cpu_threads,
        "per_image_alone_ms": per_image,
        "units": rows,
        "overlap_ms": overlap,
        "overlap_of_shorter": overlap / shorter if shorter > 0 else 0.0,
        "max_abs_error_vs_cpu_whole": (y - whole).abs().max().item(),
        "output_scale": scale,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_gpu_timeline.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(rows, args, args.out / "cpu_gpu_timeline.png")
    print(json.dumps(report, indent=2))
    return 0 if report["overlap_of_shorter"] > 0.5 else 1


def _plot(rows: list[dict], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.2))
    for i, r in enumerate(rows):
        ax.barh(i, r["end_ms"] - r["start_ms"], left=r["start_ms"], height=0.5)
        ax.text(r["end_ms"], i, f"  {r['images']} images", va="center")
    ax.set_yticks(range(len(rows)), [r["device"] for r in rows])
    ax.set_xlabel("ms since the batch was submitted")
    ax.set_title(f"{args.network}, batch {args.batch}: CPU and GPU busy at the same time")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
