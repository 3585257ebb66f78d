"""CPU + CUDA GPU batch split against the GPU alone (the issue's H100/H200 acceptance).

Run on a CUDA machine from the repository root (Ray is not needed, and not imported):

    python benchmarks/batch_gpu.py --out $OUT [--repeats 7] [--cpu-budget 20]

For ResNet-50 and VGG-16 at batch 100 and 256: profile `cpu` and `cuda:0` into a fresh
store, plan with `exact` under `maniple infer`'s rules (a split predicted less than 3%
faster than the best unit alone runs that unit alone), then run the split and `cuda:0`
alone in this process, `repeats` times each, interleaved, after a warm-up, and report
the median ratio, the shares, and whether the outputs are equal. Where the rule replaced
the planner's split, that split is run too, so the page shows what the rule saved.

Bounded: the GPU is profiled at the study's sizes plus a few just below each batch; the
CPU only at the study's sizes up to --cpu-max-batch and for at most --cpu-budget seconds
per network, its larger sizes extrapolated per image (the planner never gives a CPU
that is ~50x slower than the GPU more than a handful of images). Fp32 throughout: TF32
is turned off, so that CPU and GPU rows are comparable to 1e-4. Writes batch-gpu.json
and batch-gpu.md to --out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from maniple.batch import (
    SEED_BATCHES,
    ProfileStore,
    choose_plan,
    max_rel_error,
    median_run,
    plan_batch,
    profile_cluster,
    random_batch,
    run_interleaved,
    strict_fp32,
)
from maniple.batch.infer import DEFAULT_MIN_GAIN, TOLERANCE
from maniple.cluster import ClusterSpec, open_cluster
from maniple.devices import DeviceSpec, ModelSpec
from maniple.devices.names import cpu_description
from maniple.errors import ManipleError

REPO = Path(__file__).resolve().parents[1]
NETWORKS = ("resnet-50", "vgg-16")
BATCHES = (100, 256)
ALLOWED_SLOWDOWN = 1.02


def gpu_sizes(batches: tuple[int, ...]) -> list[int]:
    """The study's sizes, plus each batch and a few sizes just below it: the GPU's share
    of a split is the batch less a few images, where its time must be measured, not
    extrapolated past 129."""
    extra = {b - d for b in batches for d in (0, 1, 2, 4, 8) if b - d > 0}
    return sorted(set(SEED_BATCHES) | extra)


def environment(dry_run: bool) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "gpu": "none: DRY RUN on the CPU" if dry_run else torch.cuda.get_device_name(0),
        "cpu": cpu_description(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "python": platform.python_version(),
        "tf32": False,
    }


def bench_network(
    network: str, args: argparse.Namespace, store: ProfileStore
) -> list[dict[str, Any]]:
    """Profile, plan and run one network at every batch; one result dict per batch."""
    model = ModelSpec(network)
    from maniple.zoo import input_shape

    shape = tuple(input_shape(network))
    gpu = DeviceSpec("cuda", index=0)
    if args.dry_run_on_cpu:  # the whole path without a GPU: a second CPU worker plays it
        gpu = DeviceSpec("cpu", threads=1, label="cuda:0")
    spec = ClusterSpec((DeviceSpec("cpu", threads=args.cpu_threads), gpu))
    cpu_sizes = [s for s in SEED_BATCHES if s <= args.cpu_max_batch]
    rows = []
    t0 = time.perf_counter()
    with open_cluster(spec, model) as devices:
        table, profiles = profile_cluster(
            devices,
            model,
            shape,  # type: ignore[arg-type]
            store,
            {"cpu": cpu_sizes, "cuda:0": gpu_sizes(tuple(args.batches))},
            budget_s={"cpu": args.cpu_budget, "cuda:0": None},
            progress=not args.quiet,
        )
        profile_s = time.perf_counter() - t0
        for batch in args.batches:
            plan, planned, fallback = choose_plan(table, batch, "exact", args.min_gain)
            alone = plan_batch(table, batch, "single", devices=["cuda:0"])
            plans = {"split": plan, "cuda:0 alone": alone}
            if fallback:
                plans["exact split, no minimum gain"] = planned
            x = random_batch(batch, shape)  # type: ignore[arg-type]
            runs = run_interleaved(plans, devices, x, repeats=args.repeats, warmup=1)
            ref = median_run(runs["cuda:0 alone"])
            row: dict[str, Any] = {
                "network": network,
                "batch": batch,
                "planned_shares": dict(planned.shares),
                "planned_predicted_speedup": planned.predicted_speedup,
                "fallback": fallback,
                "alone_ms": ref.measured_ms,
                "alone_runs_ms": [r.measured_ms for r in runs["cuda:0 alone"]],
                "runs": {},
            }
            for label, plan_run in plans.items():
                med = median_run(runs[label])
                row["runs"][label] = {
                    "shares": dict(plan_run.shares),
                    "predicted_ms": plan_run.makespan_ms,
                    "measured_ms": med.measured_ms,
                    "runs_ms": [r.measured_ms for r in runs[label]],
                    "ratio_to_alone": med.measured_ms / ref.measured_ms,
                    "max_rel_error": max_rel_error(med.output, ref.output),
                }
            split = row["runs"]["split"]
            row["ratio"] = split["ratio_to_alone"]
            errors = [r["max_rel_error"] for r in row["runs"].values()]
            row["outputs_equal"] = max(errors) <= TOLERANCE
            row["ok"] = row["ratio"] <= ALLOWED_SLOWDOWN and row["outputs_equal"]
            rows.append(row)
            if not args.quiet:
                print(
                    f"{network} batch {batch}: split {split['shares']} "
                    f"{split['measured_ms']:.1f} ms vs cuda:0 alone {ref.measured_ms:.1f} ms "
                    f"(ratio {row['ratio']:.3f}); planner wanted {planned.shares}",
                    flush=True,
                )
    for row in rows:
        row["profile_s"] = profile_s
        row["profile"] = [p.to_json() for p in profiles]
        row["table"] = table.to_json()
    return rows


def markdown(env: dict[str, Any], rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# Batch split: CPU + CUDA GPU against the GPU alone",
        "",
        f"Measured {env['date']} on {env['host']}: {env['gpu']}; {env['cpu']}; torch "
        f"{env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}; fp32 (TF32 off).",
        "",
        "Command: `python benchmarks/batch_gpu.py " + " ".join(sys.argv[1:]) + "`",
        "",
        f"Each split and `cuda:0` alone ran {args.repeats} times, interleaved, after a warm-up, "
        "in one process; medians. Ratio = split / alone (acceptance: at most "
        f"{ALLOWED_SLOWDOWN:.2f}). The CPU ({args.cpu_threads} threads) was profiled at sizes "
        f"up to {args.cpu_max_batch} for at most {args.cpu_budget:g} s per network and "
        "extrapolated per image above that; the GPU at the study's sizes and just below each "
        f"batch. Planner `exact`; a split predicted less than {args.min_gain:.0%} faster than "
        "the GPU alone runs the GPU alone (the `maniple infer` rule).",
        "",
        "| network | batch | planner's split (cpu / gpu) | predicted speedup | ran | split ms "
        "| alone ms | ratio | max rel. error | ok |",
        "|---|---:|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        split = r["runs"]["split"]
        planned = " / ".join(str(n) for n in r["planned_shares"].values())
        ran = " / ".join(str(n) for n in split["shares"].values())
        lines.append(
            f"| {r['network']} | {r['batch']} | {planned} | {r['planned_predicted_speedup']:.3f}x "
            f"| {ran} | {split['measured_ms']:.1f} | {r['alone_ms']:.1f} | {r['ratio']:.3f} "
            f"| {split['max_rel_error']:.1e} | {'yes' if r['ok'] else 'NO'} |"
        )
    raw = [r for r in rows if "exact split, no minimum gain" in r["runs"]]
    if raw:
        lines += [
            "",
            "Where the rule ran the GPU alone, the planner's own split was run as well:",
            "",
            "| network | batch | split (cpu / gpu) | predicted ms | measured ms | ratio to alone "
            "| max rel. error |",
            "|---|---:|---|---:|---:|---:|---:|",
        ]
        for r in raw:
            x = r["runs"]["exact split, no minimum gain"]
            lines.append(
                f"| {r['network']} | {r['batch']} | "
                f"{' / '.join(str(n) for n in x['shares'].values())} | {x['predicted_ms']:.1f} "
                f"| {x['measured_ms']:.1f} | {x['ratio_to_alone']:.3f} "
                f"| {x['max_rel_error']:.1e} |"
            )
    seen = set()
    lines += ["", "Profiling:"]
    for r in rows:
        if r["network"] in seen:
            continue
        seen.add(r["network"])
        parts = [
            f"{p['device']}: {len(p['measured_now'])} sizes"
            + (f" ({p['stopped']})" if p["stopped"] else "")
            for p in r["profile"]
        ]
        lines.append(f"- {r['network']}: {r['profile_s']:.1f} s; " + "; ".join(parts))
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results")
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cpu-budget", type=float, default=20.0, help="seconds per network")
    parser.add_argument("--cpu-max-batch", type=int, default=16)
    parser.add_argument("--cpu-threads", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--min-gain", type=float, default=DEFAULT_MIN_GAIN)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--dry-run-on-cpu",
        action="store_true",
        help="check the script where no GPU is: a CPU worker stands in for cuda:0 "
        "(the numbers mean nothing)",
    )
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",")]
    if not torch.cuda.is_available() and not args.dry_run_on_cpu:
        print("batch_gpu.py needs a CUDA GPU; none is visible here", file=sys.stderr)
        return 2
    strict_fp32()
    args.out.mkdir(parents=True, exist_ok=True)
    db = args.out / "batch-gpu.profiles.sqlite"
    if db.exists():
        db.unlink()  # this run's measurements only
    env = environment(args.dry_run_on_cpu)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    try:
        with ProfileStore(db) as store:
            for network in args.networks.split(","):
                rows += bench_network(network.strip(), args, store)
    except ManipleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    env["seconds"] = time.perf_counter() - t0
    env["ray_imported"] = "ray" in sys.modules
    (args.out / "batch-gpu.json").write_text(
        json.dumps({"environment": env, "results": rows}, indent=2) + "\n"
    )
    (args.out / "batch-gpu.md").write_text(markdown(env, rows, args))
    print((args.out / "batch-gpu.md").read_text())
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
