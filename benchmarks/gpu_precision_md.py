"""docs/results/gpu-precision.md from the JSON documents benchmarks/gpu_precision.py wrote
(one per device call; their parts are merged, later files winning), and the merged JSON.

    python benchmarks/gpu_precision_md.py RUN1/gpu-precision.json RUN2/gpu-precision.json \
        [--chunks RUN/upload-chunks.json] --out docs/results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

WITHIN, AT_LEAST = 1.05, 0.99


def _e(v: float | None) -> str:
    return "-" if v is None else f"{v:.1e}"


def single_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "## maniple on one GPU against plain PyTorch (batch 256, input on the host)",
        "",
        "`maniple infer --device cuda:0 --planner single --batch 256 --precision P "
        "[--memory-format channels-last] [--compile default] --baseline torch`, run in-process "
        "by the script. Plain PyTorch: the model cast (channels-last, `torch.compile` when "
        "maniple's is), the input pinned on the host, `.to('cuda', non_blocking=True)`, one "
        "forward, `.cpu()`; timed by the wall clock after warm-up. Medians of the repeats; "
        f"goal: maniple / torch at most {WITHIN:.2f}. Compile time is kept out of both.",
        "",
        "| network | mode | maniple ms (min-max) | plain PyTorch ms (min-max) | ratio | compile s "
        "(maniple / torch) | error vs fp32 | within 5% |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        m, t = sorted(r["maniple_runs_ms"]), sorted(r["torch_runs_ms"])
        built = sum(sum(v.values()) for v in (r["build_ms"] or {}).values()) / 1e3
        comp = f"{built:.1f} / {r['torch_build_ms'] / 1e3:.1f}" if built else "-"
        out.append(
            f"| {r['network']} | {r['mode']} | {r['maniple_ms']:.1f} ({m[0]:.1f}-{m[-1]:.1f}) "
            f"| {r['torch_ms']:.1f} ({t[0]:.1f}-{t[-1]:.1f}) | {r['ratio']:.3f} | {comp} "
            f"| {_e(r['error_vs_fp32'])} | {'yes' if r['ok'] else 'NO'} |"
        )
    return out


def cpu_gpu_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "## CPU + GPU against the GPU alone, every precision (batch 256)",
        "",
        "`maniple infer --device cpu,cuda:0 --planner exact --precision P`: profiled (the CPU "
        "for at most 10 s), planned, and run interleaved with `cuda:0` alone; a split "
        "predicted less than 3% faster than the GPU alone runs the GPU alone. Goal: at least "
        f"{AT_LEAST:.2f}x, outputs within the precision's tolerance.",
        "",
        "| network | precision | planner's split (cpu / gpu) | ran | split ms | GPU alone ms "
        "| speedup | max rel. error (tol.) | error vs fp32 | ok |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        planned = " / ".join(str(n) for n in r["planned_shares"].values())
        ran = " / ".join(str(n) for n in r["shares"].values())
        out.append(
            f"| {r['network']} | {r['precision']} | {planned} | {ran} | {r['split_ms']:.1f} "
            f"| {r['gpu_alone_ms']:.1f} | {r['speedup']:.3f}x ({r['verdict']}) "
            f"| {_e(r['max_rel_error'])} ({r['tolerance']:.0e}) | {_e(r['error_vs_fp32'])} "
            f"| {'yes' if r['ok'] else 'NO'} |"
        )
    return out


def exact_lines(rows: list[dict[str, Any]]) -> list[str]:
    precisions = list(dict.fromkeys(r["precision"] for r in rows))
    out = [
        "## Every zoo network split at every precision",
        "",
        "Spatial: 4 bands, 2 random fused configurations (`maniple verify NET --device cuda:0 "
        "--precision P`), against the unsplit network on the GPU at P. Batch: 2 images on the "
        "CPU and 2 on the GPU at P, concatenated, against the GPU alone. Each cell: spatial / "
        "batch error (of the output's scale); tolerances 1e-4 fp32, 1e-3 tf32, 2e-2 bf16 and "
        "fp16. The unsplit error against strict fp32 is in the JSON (`spatial_error_vs_fp32`).",
        "",
        "| network | " + " | ".join(precisions) + " | all within |",
        "|---|" + "---:|" * len(precisions) + "---|",
    ]
    by_net: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_net.setdefault(r["network"], {})[r["precision"]] = r
    for net, cells in by_net.items():
        text = [
            f"{_e(cells[p]['spatial_error'])} / {_e(cells[p]['batch_error'])}"
            if p in cells
            else "-"
            for p in precisions
        ]
        ok = all(c["ok"] for c in cells.values())
        out.append(f"| {net} | " + " | ".join(text) + f" | {'yes' if ok else 'NO'} |")
    bad = [r for r in rows if not r["ok"]]
    out.append("")
    if not bad:
        out.append(f"All {len(rows)} network x precision cases are within their tolerance.")
        return out
    worst = max(max(r["spatial_error"], r["batch_error"]) for r in bad)
    out.append(
        f"Outside the tolerance: {len(bad)} of {len(rows)} cases, all at "
        f"{', '.join(sorted({r['precision'] for r in bad}))} (worst {worst:.1e}): "
        + ", ".join(f"{r['network']} ({r['precision']})" for r in bad)
        + ". At tf32 the batch split pairs a CPU, which has no TF32 and computes fp32, with "
        "a GPU in TF32, so its error is TF32's own error against fp32 (~1e-3); the spatial "
        "split's bands have other shapes than the whole map, so cuDNN picks other TF32 "
        "algorithms for them, which round differently."
    )
    return out


def spatial_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "## Spatial run at bf16: VGG-16 at 1024x1024 on cuda:0",
        "",
        "`maniple spatial --network vgg-16 --devices cuda:0 --precision P --input-shape "
        "3,1024,1024 --json` (one device: its plan is the device alone, reported with the "
        "same fields as a split).",
        "",
        "| precision | rc | latency ms | max rel. error (tol.) | error vs fp32 | runtime |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        res = r.get("result")
        if not res:
            out.append(
                f"| {r['precision']} | {r['rc']} | - | - | - | {r.get('stderr', '')[-80:]} |"
            )
            continue
        out.append(
            f"| {r['precision']} | {r['rc']} | {res['latency_ms']:.1f} "
            f"| {_e(res['max_rel_error'])} ({res['tolerance']:.0e}) "
            f"| {_e(res.get('error_vs_fp32'))} | {res['runtime']} |"
        )
    return out


def chunk_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "## Upload chunks (how `model_exec` was tuned)",
        "",
        "`python benchmarks/upload_chunks.py`: one worker's `run_batch` of 256 pinned images cut "
        "into 1, 2 or 4 upload chunks, beside plain PyTorch; medians of 7. Hence: fp32 uploads "
        "whole, bf16/fp16 in two chunks of at least 128.",
        "",
        "| network | mode | plain PyTorch ms | 1 chunk | 2 chunks | 4 chunks |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['network']} | {r['mode']} | {r['torch_ms']:.1f} | {r['chunks_1_ms']:.1f} "
            f"| {r['chunks_2_ms']:.1f} | {r['chunks_4_ms']:.1f} |"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--chunks", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    args = ap.parse_args()
    doc: dict[str, Any] = {"environments": []}
    for path in args.runs:
        part = json.loads(path.read_text())
        doc["environments"].append(part.pop("environment"))
        doc.update(part)
    if args.chunks:
        doc["upload_chunks"] = json.loads(args.chunks.read_text())
    env = doc["environments"][-1]
    lines = [
        "# GPUs at full speed: precision, channels-last, compiled workers",
        "",
        f"Measured {', '.join(e['date'] for e in doc['environments'])} on {env['gpu']}, "
        f"{env['cores']} cores ({env['cpu']}); torch {env['torch']}, CUDA {env['cuda']}, cuDNN "
        f"{env['cudnn']}, Python {env['python']}. Commands: "
        + "; ".join(f"`{e['command']}`" for e in doc["environments"])
        + " (through `benchmarks/gpu_precision.sh`); this page by "
        "`python benchmarks/gpu_precision_md.py`.",
        "",
    ]
    lines += [
        "Not run: the two-GPU batch split at bf16 (the acceptance's last line); `status` "
        "lent only the one-GPU kind in this session.",
        "",
    ]
    for key, fn in (
        ("single", single_lines),
        ("cpu_gpu", cpu_gpu_lines),
        ("exact", exact_lines),
        ("spatial", spatial_lines),
        ("upload_chunks", chunk_lines),
    ):
        if doc.get(key):
            lines += [*fn(doc[key]), ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu-precision.md").write_text("\n".join(lines))
    (args.out / "gpu-precision.json").write_text(json.dumps(doc, indent=2))
    print(f"wrote {args.out / 'gpu-precision.md'}")


if __name__ == "__main__":
    main()
