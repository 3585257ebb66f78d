"""The peer runtime with two workers sharing one GPU (issue #18, what one GPU allows).

Why on one GPU: the issue's measurement (`maniple spatial --devices cuda:0,cuda:1 --runtime
peer`: latency over one GPU, peak memory per GPU) needs two GPUs, and only a single-GPU
machine was lent. Two workers on one GPU (`--devices cuda:0#0,cuda:0#1`) still run the
peer runtime's whole path for real (two models, two threads, halo rows handed worker to
worker, the coordinator off the path) and its output and byte counts can be checked at
the issue's input sizes; its latency cannot show a speedup (both workers share one GPU)
and its peak memory is the two workers' together. What this measures, per network, input
size and precision:

- single: the whole network on worker cuda:0#0 alone (plan `single`);
- star:   a fixed split over both workers, every group's bands through the coordinator;
- peer:   the same split on the peer runtime (only halo rows move, worker to worker).

The split is fixed, not planned: equal bands (the workers are equally fast) and fused
groups cut where the spatial part's MACs cross each quarter (`mac_groups`), so star and
peer run exactly the same plan and no profiling sweep spends the device time. Each mode
runs once untimed, then `--repeats` times; latency is the runtime's (min/median/max), with
the wall clock around the call beside it; output error is max |y - y_single| / max
|y_single| against the single worker at the same precision, held to
`maniple.precision.TOLERANCES`; peak memory is `torch.cuda.max_memory_allocated`, reset
before each mode's runs (`resident` is what was allocated before them: both models).

    python benchmarks/gpu_peer_one_gpu.py --out $OUT [--sizes 2048,4096] [--budget-s 240]

Writes gpu-peer-one-gpu.json to --out after every configuration (a run cut short keeps
what it did); `benchmarks/gpu_peer_one_gpu_md.py` turns it into the results page.
`--dry-run` runs everything on two CPU workers at a small input, to check the script.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from maniple.devices.handles import DeviceHandle
from maniple.graph import LayerGraph
from maniple.precision import TOLERANCES, ExecMode
from maniple.spatial.costs import ProfilingSpent
from maniple.spatial.measured import reference_input
from maniple.spatial.peer_setup import run_plan
from maniple.spatial.plan import SpatialPlan
from maniple.spatial.planners import plan_single, plan_with_matrix
from maniple.spatial.setup import SpatialSetup, open_devices, prepare, warm_up
from maniple.tiling.verify import relative_error
from maniple.zoo.init import RESIDUAL_BN, init_parameters

SEG_NETWORK = "gpu_peer_one_gpu:seg_fcn"
NETWORKS = {"vgg-16": "vgg-16", "resnet-50": "resnet-50", "seg-fcn": SEG_NETWORK}
"""Display name -> what `maniple.zoo.resolve` takes. The zoo has no segmentation network,
so `seg_fcn` below stands in for one."""
MODES = ("single", "star", "peer")
GROUPS = 4


class _Residual(nn.Module):
    """conv-bn-relu-conv-bn plus the identity, then relu; `dilation` widens the window."""

    def __init__(self, ch: int, dilation: int = 1) -> None:
        super().__init__()
        pad = dilation
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=pad, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=pad, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        setattr(self.bn2, RESIDUAL_BN, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class SegFCN(nn.Module):
    """A DeepLab-style fully convolutional segmenter: an output stride 8 residual encoder,
    a dilated context stage (dilation 2 and 4), a per-pixel classifier over `classes`, and
    nearest upsampling back to the input's resolution. Every op splits by rows and there
    are no long skips, so each block boundary is a cut point where halo rows can move."""

    def __init__(self, classes: int = 21, width: int = 64) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            _down(3, w // 2),
            _Residual(w // 2),
            _down(w // 2, w),
            _Residual(w),
            _down(w, 2 * w),
            _Residual(2 * w),
            _Residual(2 * w, dilation=2),
            _Residual(2 * w, dilation=4),
        )
        self.head = nn.Sequential(
            nn.Conv2d(2 * w, w, 3, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.Conv2d(w, classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.head(self.encoder(x)), scale_factor=8, mode="nearest")


def seg_fcn(seed: int = 0) -> nn.Module:
    """SegFCN with weights drawn from `seed` by the zoo's initialiser (activations O(1)
    through depth, so relative errors mean the same as for the zoo networks)."""
    model = SegFCN()
    init_parameters(model, torch.Generator().manual_seed(seed))
    return model.eval()


def mac_groups(graph: LayerGraph, groups: int = GROUPS) -> tuple[tuple[int, int], ...]:
    """Fused groups of units cut where the cumulative MACs cross each 1/`groups` (at most
    `groups` groups; fewer where one unit holds several shares)."""
    macs = [float(u.macs) for u in graph.units]
    total, acc, cuts = sum(macs) or 1.0, 0.0, []
    for k, m in enumerate(macs[:-1]):
        acc += m
        if acc >= total * (len(cuts) + 1) / groups and len(cuts) < groups - 1:
            cuts.append(k)
    firsts = [0, *(c + 1 for c in cuts)]
    lasts = [*cuts, len(macs) - 1]
    return tuple(zip(firsts, lasts, strict=True))


def split_plan(
    graph: LayerGraph, devices: tuple[str, ...], runtime: str, flc: Any = None
) -> SpatialPlan:
    """Equal bands over `devices` in the groups `flc` (default `mac_groups`), for `runtime`;
    nothing predicted (the plan is run, not chosen)."""
    flc = flc if flc is not None else mac_groups(graph)
    n = len(graph.units)
    heights = tuple(u.out_shape[2] for u in graph.units)
    return plan_with_matrix(  # a Legion-shaped plan (groups, bands), but chosen here
        graph.name,
        "legion",
        devices,
        heights,
        [1.0] * len(devices),
        flc,
        np.zeros((n, n)),
        ProfilingSpent(),
        runtime=runtime,
    )


def mode_plans(graph: LayerGraph, devices: tuple[str, ...]) -> dict[str, SpatialPlan]:
    """The single, star and peer plans of one configuration (star and peer: the same)."""
    heights = tuple(u.out_shape[2] for u in graph.units)
    return {
        "single": plan_single(graph.name, devices[0], heights),
        "star": split_plan(graph, devices, "star"),
        "peer": split_plan(graph, devices, "peer"),
    }


def _cuda(handles: list[DeviceHandle]) -> bool:
    return any(h.spec.torch_device.startswith("cuda") for h in handles)


def warm_one_by_one(handles: list[DeviceHandle], graph: LayerGraph, x: torch.Tensor) -> None:
    """`warm_up` each worker in turn, not all at once. Why: a worker's first span captures
    its module's graph with torch.fx, which patches `nn.Module.__call__` for the whole
    process while it traces, so another worker's forward at that moment fails ("module is
    not installed as a submodule"); `open_devices`' warm-up runs them at once and hits it
    now and then. Once each worker holds its graph, nothing traces again."""
    for h in handles:
        warm_up([h], graph, x)


def run_mode(
    plan: SpatialPlan,
    handles: list[DeviceHandle],
    graph: LayerGraph,
    x: torch.Tensor,
    repeats: int,
) -> tuple[dict[str, Any], torch.Tensor]:
    """One untimed run of `plan`, then `repeats` timed; (its row, its last output)."""
    by_name = {h.name: h for h in handles}
    cuda = _cuda(handles)
    run_plan(plan, by_name, graph, x)  # builds every band program
    if cuda:
        torch.cuda.synchronize()
        resident = torch.cuda.memory_allocated(0)
        torch.cuda.reset_peak_memory_stats(0)
    latency, wall, run = [], [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        run = run_plan(plan, by_name, graph, x)
        wall.append((time.perf_counter() - t0) * 1e3)
        latency.append(run.latency_ms)
    assert run is not None
    row = {
        "groups": len(plan.flc),
        "flc": [list(g) for g in plan.flc],
        "latency_ms": latency,
        "wall_ms": wall,
        "median_ms": statistics.median(latency),
        "bytes_through_coordinator": run.bytes_through_coordinator,
        "bytes_between_devices": run.bytes_between_devices,
        "gpu_resident_bytes": resident if cuda else None,
        "gpu_peak_bytes": torch.cuda.max_memory_allocated(0) if cuda else None,
    }
    return row, run.output


def run_config(
    name: str, setup: SpatialSetup, precision: str, repeats: int
) -> list[dict[str, Any]]:
    """single, star and peer for one network, input size and precision: their rows."""
    mode = ExecMode(precision)
    spec = setup.spec.with_mode(mode)
    setup = dataclasses.replace(setup, spec=spec)
    devices = tuple(d.name for d in spec.devices)
    x = reference_input(setup.graph)
    rows, single_out = [], None
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with open_devices(setup, warm=False) as handles:
        warm_one_by_one(handles, setup.graph, x)
        for label, plan in mode_plans(setup.graph, devices).items():
            row, out = run_mode(plan, handles, setup.graph, x, repeats)
            single_out = out if label == "single" else single_out
            assert single_out is not None
            err = relative_error(out.float(), single_out.float())
            row.update(
                network=name,
                input=list(setup.input_shape),
                precision=precision,
                mode=label,
                devices=list(plan.devices),
                error_vs_single=err,
                tolerance=TOLERANCES[precision],
                ok=bool(err <= TOLERANCES[precision]),
            )
            rows.append(row)
            print(
                f"{name} {setup.input_shape[1]} {precision} {label}: "
                f"{row['median_ms']:.1f} ms, err {err:.1e}, coord "
                f"{row['bytes_through_coordinator'] / 2**20:.1f} MiB",
                flush=True,
            )
    return rows


def machine() -> dict[str, Any]:
    """What ran: the GPU (nvidia-smi and torch), the host's cores, the versions."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
        try:
            info["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["nvidia_smi"] = None
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "out"))
    parser.add_argument("--sizes", default="2048,4096")
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=240.0)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # SEG_NETWORK's module
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    devices = "cpu#0,cpu#1" if args.dry_run else "cuda:0#0,cuda:0#1"
    sizes = [96] if args.dry_run else [int(s) for s in args.sizes.split(",")]
    doc: dict[str, Any] = {
        "command": "python benchmarks/gpu_peer_one_gpu.py " + " ".join(argv or sys.argv[1:]),
        "devices": devices,
        "machine": machine(),
        "groups": GROUPS,
        "repeats": args.repeats,
        "rows": [],
        "skipped": [],
    }
    t0 = time.perf_counter()
    for size in sizes:
        for name in args.networks.split(","):
            if time.perf_counter() - t0 > args.budget_s:
                doc["skipped"].append({"network": name, "size": size, "why": "time budget"})
                continue
            setup = prepare(
                NETWORKS[name], devices=devices, input_shape=(3, size, size), timeout_s=300
            )
            for precision in args.precisions.split(","):
                start = time.perf_counter()
                try:
                    doc["rows"] += run_config(name, setup, precision, args.repeats)
                except Exception as exc:  # noqa: BLE001 - record it, go on to the next
                    print(f"{name} {size} {precision}: FAILED {exc!r}", flush=True)
                    doc["skipped"].append(
                        {"network": name, "size": size, "precision": precision, "why": repr(exc)}
                    )
                doc.setdefault("config_s", []).append(
                    [name, size, precision, round(time.perf_counter() - start, 1)]
                )
                (out / "gpu-peer-one-gpu.json").write_text(json.dumps(doc, indent=1))
    doc["total_s"] = round(time.perf_counter() - t0, 1)
    (out / "gpu-peer-one-gpu.json").write_text(json.dumps(doc, indent=1))
    bad = [r for r in doc["rows"] if not r["ok"]]
    print(f"{len(doc['rows'])} rows, {len(bad)} beyond tolerance, {doc['total_s']} s")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
