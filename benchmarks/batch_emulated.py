"""Batch split on three emulated CPU-class units of speed 1:2:4, every planner, for real.

Run from the repository root:

    python benchmarks/batch_emulated.py [--batch 256] [--repeats 3] [--out docs/results]

The same set-up as the live acceptance test (tests/test_batch_live.py), at a larger batch:
`emu:custom` boards with VGG-16 latencies 1940, 3880 and 7760 ms (half, a quarter and an
eighth of a Firefly-RK3399) on a fast local link, ResNet-18 at 64x64. They are profiled
in fast-forward mode (all three at once, as they will run), then each planner's split
runs `repeats` times interleaved; medians are reported beside the prediction, the ideal
(batch over the summed throughput) and the best single unit alone. Writes
batch-emulated.md to --out (and the raw numbers as JSON to --json, if given).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import torch

from maniple.batch import PlannerComparison, ProfileStore, compare_planners
from maniple.cluster import ClusterSpec
from maniple.devices import DeviceSpec, LinkSpec, ModelSpec
from maniple.devices.names import cpu_description
from maniple.devices.presets import BoardSpec

REPO = Path(__file__).resolve().parents[1]
BOARDS_MS = (1940.0, 3880.0, 7760.0)
FAST_LINK = LinkSpec(mbps=10_000, latency_ms=0.05, uplink_mbps=100_000)
PLANNERS = ("exact", "greedy", "equal", "single")


def cluster(boards_ms: tuple[float, ...], dilation: float | None) -> ClusterSpec:
    """The emulated units: custom boards on a 10 Gbit/s link with a 100 Gbit/s uplink."""
    boards = (DeviceSpec("emu", board=BoardSpec("custom", ms, FAST_LINK)) for ms in boards_ms)
    return ClusterSpec(tuple(boards), dilation=dilation)


def markdown(result: PlannerComparison, args: argparse.Namespace, seconds: float) -> str:
    """The results page: machine, command, set-up, and one row per planner."""
    single = result.median("single").measured_ms if "single" in result.runs else None
    timing = next(u.timing for u in result.median(next(iter(result.runs))).units if u.timing)
    dilation = timing.dilation
    lines = [
        "# Batch split on emulated units of speed 1:2:4",
        "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node()}: "
        f"{cpu_description()}, Python {platform.python_version()}, torch {torch.__version__}.",
        "",
        "Command: `python benchmarks/batch_emulated.py " + " ".join(sys.argv[1:]) + "`",
        "",
        f"Network {result.table.network}, batch {result.batch}; units `emu:custom` boards with "
        f"VGG-16 in {', '.join(f'{ms:g}' for ms in args.boards)} ms (speed 4:2:1) on a 10 Gbit/s "
        f"link, dilation {dilation:g}. Tables measured here in fast-forward mode (each size: "
        f"a warm-up and 5 runs); every split run {args.repeats} times, interleaved, after two "
        "warm-ups; medians. Times are the boards' emulated time plus real host and Ray "
        "overhead, undivided.",
        "",
        f"Ideal (batch over the units' summed throughput at the whole batch): "
        f"{result.ideal_ms:.0f} ms.",
        "",
        "| planner | shares | predicted ms | measured ms (runs) | measured / predicted "
        "| of ideal | speedup vs best unit alone | max rel. error |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    largest = {d: result.table.entries[d][-1].batch for d in result.table.devices}
    extrapolated = False
    for name, plan in result.plans.items():
        run = result.median(name)
        runs = ", ".join(f"{r.measured_ms:.0f}" for r in result.runs[name])
        speedup = f"{single / run.measured_ms:.2f}x" if single else "-"
        shares = " / ".join(f"{n}*" if n > largest[d] else str(n) for d, n in plan.shares.items())
        extrapolated |= "*" in shares
        lines.append(
            f"| {name} | {shares} | {plan.makespan_ms:.0f} "
            f"| {run.measured_ms:.0f} ({runs}) | {run.measured_ms / plan.makespan_ms:.3f} "
            f"| {result.ideal_ms / run.measured_ms:.0%} | {speedup} "
            f"| {result.max_rel_error[name]:.1e} |"
        )
    exact, equal = result.median("exact"), result.median("equal")
    if extrapolated:
        lines += [
            "",
            f"\\* a share above the largest profiled size ({max(largest.values())}): its time "
            "is extrapolated per image from that size (the study's rule), which misses "
            "whatever makes larger batches slower or faster per image on this host.",
        ]
    lines += [
        "",
        f"exact is {equal.measured_ms / exact.measured_ms:.2f}x faster than equal. Shares are "
        f"in device order {', '.join(result.table.devices)}; errors are against exact's "
        "output. Profiling: "
        + "; ".join(
            f"{p.device} {len(p.measured_now)} sizes in {p.seconds:.1f} s" for p in result.profiles
        )
        + f". Whole benchmark: {seconds:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--network", default="resnet-18")
    parser.add_argument("--size", type=int, default=64, help="input height = width")
    parser.add_argument("--boards", type=float, nargs=3, default=BOARDS_MS)
    parser.add_argument("--dilation", type=float, default=None, help="default: the devices'")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results")
    parser.add_argument("--profile-db", type=Path, default=None, help="default: a fresh file")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    db = args.profile_db or args.out / "batch-emulated.profiles.sqlite"
    if args.profile_db is None and db.exists():
        db.unlink()  # a fresh table each time: what this run measured, nothing older
    t0 = time.perf_counter()
    with ProfileStore(db) as store:
        result = compare_planners(
            cluster(tuple(args.boards), args.dilation),
            ModelSpec(args.network, input_shape=(3, args.size, args.size)),
            store,
            args.batch,
            PLANNERS,
            repeats=args.repeats,
            warmup=2,
            profile_repeats=5,
        )
    seconds = time.perf_counter() - t0
    if args.profile_db is None:
        db.unlink()
    (args.out / "batch-emulated.md").write_text(markdown(result, args, seconds))
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    print((args.out / "batch-emulated.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
