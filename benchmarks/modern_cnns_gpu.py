"""Split torchvision's and timm's modern edge CNNs by rows and check them exactly (GPU).

Run on a machine with torchvision and timm (the GPU machine of docs/results):

    PYTHONPATH=src python3 benchmarks/modern_cnns_gpu.py --out DIR [--device cuda:0]

For each network (random weights, eval mode, 3x224x224) it captures the layer graph, runs
`verify_split` (random cuts and ratios over 6 devices, band by band on the device, strict
fp32) and records the largest error relative to the output's scale, the spatial share of
the MACs, the sync points and where the spatial part stops. It writes DIR/modern-cnns.json
and DIR/modern-cnns.md (the table docs/results/modern-cnns-gpu.md holds). Only
maniple.graph and maniple.tiling are imported, so the machine needs torch, torchvision
and timm and nothing else of maniple's dependencies.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ACCEPTANCE = [
    ("torchvision", "efficientnet_b0"),
    ("torchvision", "mobilenet_v3_large"),
    ("torchvision", "regnet_y_400mf"),
    ("torchvision", "convnext_tiny"),
    ("torchvision", "shufflenet_v2_x1_0"),
    ("timm", "efficientnet_b0"),
    ("timm", "mobilenetv3_large_100"),
    ("timm", "ghostnet_100"),
]
MORE = [
    ("torchvision", "efficientnet_v2_s"),
    ("timm", "repvgg_a2"),
    ("timm", "cspdarknet53"),
    ("timm", "regnety_016"),
    ("timm", "convnext_tiny"),
    ("timm", "resnest50d"),
]
TOLERANCE = 1e-4
SPATIAL_SHARE = 0.9


def build(source: str, name: str) -> torch.nn.Module:
    """The network with random weights, in eval mode."""
    if source == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, weights=None).eval()
    import timm

    return timm.create_model(name, pretrained=False).eval()


def check(source: str, name: str, device: str, trials: int, devices: int) -> dict[str, Any]:
    from maniple.graph import capture
    from maniple.tiling.verify import verify_split

    row: dict[str, Any] = {"source": source, "network": name}
    t0 = time.perf_counter()
    try:
        torch.manual_seed(0)
        graph = capture(build(source, name), (3, 224, 224), f"{source}/{name}")
        result = verify_split(graph, trials=trials, devices=devices, device=device)
    except Exception as exc:  # one network's failure is its row, not the run's end
        row.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
        return row
    stop = graph.spatial_stop
    row.update(
        ok=bool(result.ok and graph.spatial_macs_fraction >= SPATIAL_SHARE),
        exact=bool(result.ok),
        max_rel_error=result.max_rel_error,
        spatial_macs_fraction=graph.spatial_macs_fraction,
        units=len(graph.units),
        sync_points=len(graph.sync_points),
        stops_at=None if stop is None else f"{stop.kind} ({stop.module_path})",
        gmacs=graph.macs / 1e9,
        seconds=time.perf_counter() - t0,
    )
    return row


def render(doc: dict[str, Any]) -> str:
    lines = [
        "# Modern edge CNNs split by rows, checked exactly on the GPU",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Machine: {doc['machine']}; torch {doc['torch']}, torchvision {doc['torchvision']}, "
        f"timm {doc['timm']}; device {doc['device']}.",
        "",
        f"Each network: random weights, eval mode, input 3x224x224; {doc['trials']} random "
        f"splits (random cuts, random ratios over {doc['devices']} devices), every band run "
        "separately on the GPU in strict fp32 and stitched; error = max |split - whole| / "
        f"max |whole| (tolerance {TOLERANCE:g}); spatial share = MACs in the spatial part "
        f"over all MACs (at least {SPATIAL_SHARE}).",
        "",
        "| source | network | exact | max rel. error | spatial share | units | sync points "
        "| spatial part stops at | GMACs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        if "error" in r:
            lines.append(f"| {r['source']} | {r['network']} | failed: {r['error']} | | | | | | |")
            continue
        lines.append(
            f"| {r['source']} | {r['network']} | {'yes' if r['exact'] else 'NO'} | "
            f"{r['max_rel_error']:.1e} | {r['spatial_macs_fraction']:.4f} | {r['units']} | "
            f"{r['sync_points']} | {r['stops_at']} | {r['gmacs']:.2f} |"
        )
    n_ok = sum(1 for r in doc["rows"][: len(ACCEPTANCE)] if r.get("ok"))
    lines += [
        "",
        f"The eight networks of the acceptance (first eight rows): {n_ok} of "
        f"{len(ACCEPTANCE)} exact with a spatial share of at least {SPATIAL_SHARE}. The "
        "rows after them are further families tried the same way.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--devices", type=int, default=6)
    parser.add_argument("--only-acceptance", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    nets = ACCEPTANCE if args.only_acceptance else ACCEPTANCE + MORE
    rows = []
    for source, name in nets:
        row = check(source, name, args.device, args.trials, args.devices)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    versions = {}
    for mod in ("torchvision", "timm"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = "absent"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    doc = {
        "command": "PYTHONPATH=src python3 benchmarks/modern_cnns_gpu.py --out DIR",
        "machine": f"{platform.node()} ({gpu})",
        "torch": torch.__version__,
        **versions,
        "device": args.device,
        "trials": args.trials,
        "devices": args.devices,
        "rows": rows,
    }
    (args.out / "modern-cnns.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.out / "modern-cnns.md").write_text(render(doc))
    return 0 if all(r.get("ok") for r in rows[: len(ACCEPTANCE)]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
