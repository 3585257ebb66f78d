"""GPUs at full speed: maniple against plain PyTorch at the same precision, CPU + GPU against
the GPU alone at every precision, every zoo network split at every precision, and a
spatial run at bf16 (the GPU-precision issue's acceptance). Writes gpu-precision.json and
gpu-precision.md to --out.

Run on a CUDA machine from the repository root (Ray is not needed, and not imported):

    python benchmarks/gpu_precision.py --out $OUT [--parts single,cpu-gpu,exact,spatial]

Parts (each writes its own JSON as it finishes, so a run cut short keeps what it did):
- single:  ResNet-50 and VGG-16 at batch 256 on cuda:0 alone (`maniple infer --planner
  single --baseline torch`) in fp32, bf16 channels-last and bf16 compiled; maniple's
  single device beside plain PyTorch (input pinned on the host, copied non-blocking),
  both measured in the same process, `--repeats` each after warm-up. Goal: within 5%.
- cpu-gpu: the same networks on cpu + cuda:0, planner exact, at fp32, tf32, bf16 and
  fp16: the split (or the GPU alone, where the minimum-gain rule says so) against the GPU
  alone. Goal: at least 0.99x.
- exact:   every zoo network at every precision: a spatial split (4 bands, random fused
  groups, `maniple verify`) against the unsplit network on cuda:0, and a batch split
  (half the images on the CPU, half on the GPU, concatenated) against the GPU alone, each
  within the precision's tolerance; the error against strict fp32 beside it.
- spatial: `maniple spatial --network vgg-16 --devices cuda:0 --input-shape 3,1024,1024`
  at bf16 (and fp32 for comparison), its JSON kept.
`--dry-run` runs every part on the CPU with a small network, to check the script.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from maniple.batch.infer import InferOptions, infer
from maniple.batch.store import ProfileStore
from maniple.cluster import ClusterSpec, parse_shorthand
from maniple.devices import ModelSpec
from maniple.devices.names import DeviceSpec, cpu_description, parse_device
from maniple.devices.worker import Worker
from maniple.precision import PRECISIONS, ExecMode
from maniple.tiling.verify import relative_error, verify_split
from maniple.zoo import names as zoo_names

NETWORKS = ("resnet-50", "vgg-16")
SINGLE_MODES = {
    "fp32": ExecMode("fp32"),
    "bf16 channels-last": ExecMode("bf16", "channels-last"),
    "bf16 channels-last compiled": ExecMode("bf16", "channels-last", "default"),
}
WITHIN = 1.05
AT_LEAST = 0.99


def environment(dry: bool) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "gpu": "none: DRY RUN on the CPU" if dry else torch.cuda.get_device_name(0),
        "cpu": cpu_description(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "python": platform.python_version(),
        "command": "python benchmarks/gpu_precision.py " + " ".join(sys.argv[1:]),
    }


def part_single(args: argparse.Namespace, store: ProfileStore) -> list[dict[str, Any]]:
    rows = []
    for net in args.networks:
        for label, mode in SINGLE_MODES.items():
            t0 = time.perf_counter()
            options = InferOptions(
                net, args.batch, planner="single", repeats=args.repeats, sizes=(args.batch,),
                mode=mode, baseline="torch", input_shape=args.shape,
            )  # fmt: skip
            r = infer(parse_shorthand(args.gpu, None), store, options, progress=False)
            base = r.torch_baseline
            assert base is not None
            row = {
                "network": net,
                "mode": label,
                "maniple_ms": r.single.measured_ms,
                "maniple_wall_ms": r.single.wall_ms,
                "maniple_runs_ms": [x.measured_ms for x in r.single_runs],
                "torch_ms": base.median_ms,
                "torch_runs_ms": list(base.runs_ms),
                "ratio": r.single.measured_ms / base.median_ms,
                "build_ms": r.build_ms,
                "torch_build_ms": base.build_ms,
                "error_vs_fp32": r.error_vs_fp32,
                "seconds": time.perf_counter() - t0,
            }
            row["ok"] = row["ratio"] <= WITHIN
            rows.append(row)
            say(f"single {net} {label}: maniple {row['maniple_ms']:.1f} ms, torch "
                f"{row['torch_ms']:.1f} ms, ratio {row['ratio']:.3f}")  # fmt: skip
    return rows


def part_cpu_gpu(args: argparse.Namespace, store: ProfileStore) -> list[dict[str, Any]]:
    rows = []
    extra = {args.batch - d for d in (0, 1, 2, 4, 8) if args.batch - d > 0}
    sizes = sorted({1, 2, 4, 8, 16, 32, 64, 128} | extra)
    sizes = [s for s in sizes if s <= args.batch]
    for net in args.networks:
        for precision in PRECISIONS:
            t0 = time.perf_counter()
            options = InferOptions(
                net, args.batch, planner="exact", repeats=args.repeats, sizes=sizes,
                profile_budget_s={"cpu": args.cpu_budget},  # type: ignore[arg-type]
                mode=ExecMode(precision), input_shape=args.shape,
            )  # fmt: skip
            gpu = parse_device(args.gpu)
            if args.dry_run:  # a second CPU worker plays the GPU
                gpu = DeviceSpec("cpu", threads=1, label="gpu-stand-in")
            pair = ClusterSpec((DeviceSpec("cpu"), gpu))
            r = infer(pair, store, options, progress=False)
            row = {
                "network": net,
                "precision": precision,
                "shares": dict(r.plan.shares),
                "planned_shares": dict(r.planned.shares),
                "fallback": r.fallback,
                "split_ms": r.run.measured_ms,
                "gpu_alone_ms": r.single.measured_ms,
                "single_device": r.single_device,
                "speedup": r.speedup,
                "verdict": r.speedup_verdict,
                "max_rel_error": r.max_rel_error,
                "tolerance": r.tolerance,
                "error_vs_fp32": r.error_vs_fp32,
                "seconds": time.perf_counter() - t0,
            }
            row["ok"] = row["speedup"] >= AT_LEAST and r.ok
            rows.append(row)
            say(f"cpu-gpu {net} {precision}: {row['shares']} speedup {row['speedup']:.3f}")
    return rows


def part_exact(args: argparse.Namespace) -> list[dict[str, Any]]:
    from maniple.graph import capture
    from maniple.zoo import resolve

    rows = []
    for net in args.exact_networks:
        module, shape, name = resolve(net, args.shape)
        graph = capture(module, shape, name)
        for precision in PRECISIONS:
            mode = ExecMode(precision)
            spatial = verify_split(graph, 2, 4, 0, device=args.gpu, precision=precision)
            cpu = Worker(parse_device("cpu").with_mode(mode), ModelSpec(net, input_shape=shape))
            gpu = Worker(parse_device(args.gpu).with_mode(mode), ModelSpec(net, input_shape=shape))
            x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(0))
            alone = gpu.run_batch(x)[0].float()
            split = torch.cat([cpu.run_batch(x[:2])[0], gpu.run_batch(x[2:])[0]]).float()
            del cpu, gpu
            batch_err = relative_error(split, alone)
            row = {
                "network": net,
                "precision": precision,
                "tolerance": mode.tolerance,
                "spatial_error": spatial.max_rel_error,
                "spatial_error_vs_fp32": spatial.error_vs_fp32,
                "batch_error": batch_err,
                "ok": spatial.ok and batch_err <= mode.tolerance,
            }
            rows.append(row)
            say(f"exact {net} {precision}: spatial {row['spatial_error']:.1e}, batch "
                f"{batch_err:.1e} (tol {mode.tolerance:.0e})")  # fmt: skip
        graph.module.to("cpu", torch.float32)
    return rows


def part_spatial(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for precision in ("bf16", "fp32"):
        cmd = [
            sys.executable, "-c", "from maniple.cli import main; main()", "spatial",
            "--network", args.spatial_network, "--devices", args.gpu, "--precision", precision,
            "--input-shape", args.spatial_shape, "--profile-db", str(args.store),
            "--json",
        ]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        row: dict[str, Any] = {"precision": precision, "rc": proc.returncode,
                               "seconds": time.perf_counter() - t0}  # fmt: skip
        try:
            row["result"] = json.loads(proc.stdout)
        except ValueError:
            row["stderr"] = proc.stderr[-2000:]
        rows.append(row)
        say(f"spatial {precision}: rc {proc.returncode}")
    return rows


def say(text: str) -> None:
    print(text, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    ap.add_argument("--parts", default="single,cpu-gpu,exact,spatial")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--cpu-budget", type=float, default=10.0)
    ap.add_argument("--store", type=Path, default=None, help="Profile store (default: in --out).")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    args.gpu, args.shape, args.networks = "cuda:0", None, NETWORKS
    args.exact_networks = tuple(zoo_names())
    args.spatial_network, args.spatial_shape = "vgg-16", "3,1024,1024"
    if args.dry_run:  # the whole path on the CPU, small
        args.gpu, args.shape, args.networks, args.batch = "cpu", (3, 32, 32), ("resnet-18",), 4
        args.exact_networks, args.repeats = ("resnet-18", "mobilenet-v3-large"), 2
        args.spatial_network, args.spatial_shape = "resnet-18", "3,64,64"
        SINGLE_MODES.pop("bf16 channels-last compiled")
    args.out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"environment": environment(args.dry_run)}
    path = args.out / "gpu-precision.json"
    if path.exists():  # parts run in separate calls add to one document
        doc = {**json.loads(path.read_text()), "environment": doc["environment"]}
    args.store = args.store or args.out / "gpu-precision-profiles.sqlite"
    with ProfileStore(args.store) as store:
        for part in args.parts.split(","):
            if part == "single":
                doc["single"] = part_single(args, store)
            elif part == "cpu-gpu":
                doc["cpu_gpu"] = part_cpu_gpu(args, store)
            elif part == "exact":
                doc["exact"] = part_exact(args)
            elif part == "spatial":
                doc["spatial"] = part_spatial(args)
            else:
                raise SystemExit(f"unknown part {part!r}; valid: single, cpu-gpu, exact, spatial")
            path.write_text(json.dumps(doc, indent=2))
    say(f"wrote {path}")


if __name__ == "__main__":
    main()
