"""Per-step overhead of Ray for the "peer" spatial pattern: plain actor calls or a compiled graph.

Run from the repository root:

    python benchmarks/ray_step_overhead.py [--repeats 20] [--steps 13] [--out docs/results]

Why it exists: the peer spatial runtime keeps one band per device in a Ray actor and each
step (group) sends every actor's edge rows to its neighbours. Whether that costs a driver
round trip per step, or the pieces can go actor to actor (as ObjectRefs, or through a compiled
graph's shared-memory channels), decides which runtime the project keeps. The work per call is
a few microseconds, so what is timed is Ray's overhead.

Six actors in a row hold a 1.6 MB float32 band each. Step 0 takes 100 KB from the driver;
later steps take each neighbour's 57 KB edge piece from the step before and return their own;
the last returns 67 KB to the driver. Variants: `plain-sync` (ray.get every step), `plain-refs`
(all steps submitted up front, ObjectRefs passed to the neighbours' next calls), `compiled`
(one `ray.dag` compiled graph). One Ray session per subprocess: default settings, then
`max_direct_call_object_size` lowered to 1 KiB so pieces go through the object store instead
of being inlined through their owner, the driver. Bytes on the driver's TCP sockets (`ss`) and
on loopback show where pieces travel. Writes ray-step-overhead.json and .md to --out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

DEVICES = 6
BAND_SHAPE = (1, 64, 28, 224)  # 1.6 MB float32, stays in the actor
EDGE_SHAPE = (1, 64, 1, 224)  # 57 KB float32, one row to each neighbour
SCATTER_FLOATS = 25_000  # 100 KB from the driver to each actor, step 0
GATHER_FLOATS = 17_152  # 67 KB back to the driver from each actor, last step
EDGE_BYTES = int(np.prod(EDGE_SHAPE)) * 4
BUFFER_BYTES = 2**17  # compiled-graph channel buffer: an edge piece or a gather fits
SKIP_NOTE = (
    "not timed (pass --compiled-all-configs): in trial runs on this host experimental_compile "
    "took about 215 s with this setting (each channel allocation about 2 s after the first ~35, "
    "against about 40 ms with default settings), then ran at 5 to 7 ms per step"
)
CONFIGS = {"default": {}, "inline-1KiB": {"max_direct_call_object_size": 1024}}


class Band:
    """One device's band; the methods are a step's trivial work on it."""

    def __init__(self, device: int, devices: int) -> None:
        self.up, self.down = device > 0, device < devices - 1
        self.band = np.zeros(BAND_SHAPE, np.float32)

    def reset(self) -> None:
        self.band[...] = 0.0

    def _edges(self):
        out = [self.band[:, :, 1:2].copy()] * self.up + [self.band[:, :, -2:-1].copy()] * self.down
        return out[0] if len(out) == 1 else tuple(out)

    def _take(self, pieces) -> None:
        if self.up:
            self.band[:, :, :1] += pieces[0]
        if self.down:
            self.band[:, :, -1:] += pieces[-1]
        self.band[:, :, 1:2] += 1.0
        self.band[:, :, -2:-1] += 2.0

    def first(self, scatter):
        self.band.reshape(-1)[: scatter.size] += scatter
        return self._edges()

    def step(self, *pieces):
        self._take(pieces)
        return self._edges()

    def last(self, *pieces):
        self._take(pieces)
        return self.band.reshape(-1)[:GATHER_FLOATS].copy()


def split(d: int, n: int, result) -> tuple:
    """(piece for d-1, piece for d+1) of device d's result; None where there is no neighbour."""
    it = iter(result if isinstance(result, list | tuple) else [result])
    return (next(it) if d > 0 else None, next(it) if d < n - 1 else None)


def inputs(d: int, n: int, sent: list[tuple]) -> list:
    """Device d's pieces for this step: from d-1 (its bottom edge), then from d+1 (its top)."""
    return ([sent[d - 1][1]] if d > 0 else []) + ([sent[d + 1][0]] if d < n - 1 else [])


def driver_tcp_bytes() -> int:
    """Bytes sent plus received so far on this process's established TCP sockets (ss)."""
    out = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True, check=False).stdout
    total, mine = 0, False
    for line in out.splitlines():
        if not line[:1].isspace():
            mine = f"pid={os.getpid()}," in line
        elif mine:
            for field in line.split():
                if field.startswith(("bytes_sent:", "bytes_received:")):
                    total += int(field.split(":")[1])
    return total


def loopback_bytes() -> int:
    """Bytes received on lo so far (each loopback byte once), from /proc/net/dev."""
    for line in Path("/proc/net/dev").read_text().splitlines():
        if line.strip().startswith("lo:"):
            return int(line.split(":")[1].split()[0])
    return 0


def log(msg: str, t0: float = time.perf_counter()) -> None:
    """Progress on stderr, seconds since this process started."""
    print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)


def child(config: str, args: argparse.Namespace) -> dict:
    """Time every variant in one fresh Ray session with `config`'s system settings."""
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_CGRAPH_get_timeout"] = "60"
    import ray
    from ray.dag import InputNode, MultiOutputNode

    ray.init(
        address="local",
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        num_cpus=2,
        num_gpus=0,
        object_store_memory=300 * 2**20,
        log_to_driver=False,
        _system_config=CONFIGS[config] or None,
    )
    log(f"{config}: Ray started")
    n, steps = DEVICES, args.steps
    actor_cls = ray.remote(num_cpus=0.01)(Band)
    actors = [actor_cls.remote(d, n) for d in range(n)]
    ks = [int(d > 0) + int(d < n - 1) for d in range(n)]
    rng = np.random.default_rng(0)
    x = [rng.standard_normal(SCATTER_FLOATS).astype(np.float32) for _ in range(n)]
    ray.get([a.reset.remote() for a in actors])

    def plain(sync: bool, keep: list | None = None):
        """One run; sync: ray.get every step's pieces, else pass the refs on untouched."""
        refs = [a.first.options(num_returns=ks[d]).remote(x[d]) for d, a in enumerate(actors)]
        for s in range(1, steps):
            sent = [split(d, n, ray.get(r) if sync else r) for d, r in enumerate(refs)]
            if keep is not None:
                keep.extend(p for pair in sent for p in pair if p is not None)
            refs = [
                (a.last if s == steps - 1 else a.step.options(num_returns=ks[d])).remote(
                    *inputs(d, n, sent)
                )
                for d, a in enumerate(actors)
            ]
        return ray.get(refs)

    def timed(run) -> dict:
        t0 = time.perf_counter()
        check = float(sum(g.astype(np.float64).sum() for g in run()))
        first_s = time.perf_counter() - t0
        log(f"{config}: first run {first_s:.1f} s")
        for _ in range(args.warmup):
            run()
        tcp0, lo0, ms = driver_tcp_bytes(), loopback_bytes(), []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run()
            ms.append((time.perf_counter() - t0) * 1e3)
        tcp, lo = driver_tcp_bytes() - tcp0, loopback_bytes() - lo0
        return {
            "min_ms": min(ms),
            "median_ms": statistics.median(ms),
            "max_ms": max(ms),
            "per_step_median_ms": statistics.median(ms) / steps,
            "driver_tcp_kb_per_run": tcp / args.repeats / 1e3,
            "loopback_kb_per_run": lo / args.repeats / 1e3,
            "first_run_s": first_s,
            "gather_checksum": check,
        }

    results = {"plain-sync": timed(lambda: plain(True))}
    ray.get([a.reset.remote() for a in actors])
    results["plain-refs"] = timed(lambda: plain(False))
    keep: list = []
    plain(False, keep)
    where = ray.experimental.get_object_locations(keep)
    in_store = sum(bool(w["node_ids"]) for w in where.values())
    results["plain-refs"].update(pieces_in_object_store=in_store, pieces=len(keep))
    del keep, where
    ray.get([a.reset.remote() for a in actors])

    cdag = None
    try:
        if config != "default" and not args.compiled_all_configs:
            results["compiled"] = {"skipped": SKIP_NOTE}
            return results
        with InputNode() as inp:
            sent = [
                split(d, n, a.first.options(num_returns=ks[d]).bind(inp[d]))
                for d, a in enumerate(actors)
            ]
            for _ in range(1, steps - 1):
                sent = [
                    split(d, n, a.step.options(num_returns=ks[d]).bind(*inputs(d, n, sent)))
                    for d, a in enumerate(actors)
                ]
            dag = MultiOutputNode([a.last.bind(*inputs(d, n, sent)) for d, a in enumerate(actors)])
        t0 = time.perf_counter()
        cdag = dag.experimental_compile(_buffer_size_bytes=BUFFER_BYTES)
        compile_s = time.perf_counter() - t0
        log(f"{config}: compiled in {compile_s:.1f} s")
        results["compiled"] = {**timed(lambda: ray.get(cdag.execute(*x))), "compile_s": compile_s}
    except Exception as err:  # recorded, the other variants still reported
        results["compiled"] = {
            "error": f"{type(err).__name__}: {err}".strip(),
            "traceback_tail": traceback.format_exc().strip().splitlines()[-6:],
        }
    finally:
        if cdag is not None:
            cdag.teardown()
        ray.shutdown()
        log(f"{config}: Ray shut down")
    return results


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict:
    return {
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "ray": importlib.metadata.version("ray"),
        "numpy": np.__version__,
    }


def conclusion(rows: dict, steps: int) -> str:
    """One plain paragraph from the numbers: fastest per step, and where the pieces travel."""
    ok = {k: v for k, v in rows.items() if "median_ms" in v}
    best = min(ok, key=lambda k: ok[k]["per_step_median_ms"])
    b = ok[best]["per_step_median_ms"]
    others = ", ".join(
        f"{ok[k]['per_step_median_ms']:.2f} ms for {k} ({ok[k]['per_step_median_ms'] / b:.1f}x)"
        for k in ok
        if k != best
    )
    text = [
        f"On this host the fastest variant is {best} at {b:.2f} ms per step "
        f"({ok[best]['median_ms']:.1f} ms per {steps}-step run, median), against {others}."
    ]
    for k, v in rows.items():
        if "error" in v:
            text.append(f"The {k} variant failed: {v['error']}.")
        elif "compile_s" in v:
            plain_ms = min(ok[j]["median_ms"] for j in ok if j.startswith("plain-"))
            runs = (v["compile_s"] + v["first_run_s"]) * 1e3 / (plain_ms - v["median_ms"])
            text.append(
                f"{k} costs {v['compile_s']:.0f} s to compile and {v['first_run_s']:.0f} s for "
                f"its first execution, which its saving over the fastest plain variant pays "
                f"back after about {runs:.0f} runs."
            )
    payload = 2 * (DEVICES - 1) * (steps - 1) * EDGE_BYTES / 1e3
    for key in ("plain-refs", "plain-refs (inline-1KiB)"):
        if key in ok:
            v = ok[key]
            via = "go through" if v["driver_tcp_kb_per_run"] > 0.5 * payload else "stay off"
            text.append(
                f"With {key}, {v['pieces_in_object_store']} of {v['pieces']} edge pieces were "
                f"in the object store and the driver's sockets carried "
                f"{v['driver_tcp_kb_per_run']:.0f} KB per run, "
                f"{v['driver_tcp_kb_per_run'] / payload:.2f}x the {payload:.0f} KB of edge "
                f"pieces exchanged, so the pieces {via} the driver."
            )
    same = len({round(v["gather_checksum"], 3) for v in ok.values()}) == 1
    text.append(
        "Every variant computed the same gathered result."
        if same
        else "The gathered results differ between variants (see the JSON): check the wiring."
    )
    return " ".join(text)


def markdown(report: dict, command: str) -> str:
    m, rows = report["machine"], report["variants"]
    lines = [
        "# Ray per-step overhead, peer spatial pattern",
        "",
        f"Measured {report['measured']} on {m['hostname']}: {m['cpu_model']}, "
        f"{m['cpu_count']} logical cores, Python {m['python']}, Ray {m['ray']}, "
        f"numpy {m['numpy']}.",
        "",
        f"Command: `{command}`",
        "",
        f"{DEVICES} actors in a row, {report['steps']} steps per run, 1.6 MB band per actor; "
        f"57 KB edge pieces between neighbours, 100 KB scatter in, 67 KB gather out per actor. "
        f"{report['repeats']} timed runs after {report['warmup']} warm-up runs. `inline-1KiB`: "
        'Ray started with `_system_config={"max_direct_call_object_size": 1024}`. Driver TCP '
        "and loopback are bytes per run on the driver's sockets and on `lo`.",
        "",
        "| variant | min ms/run | median ms/run | max ms/run | median ms/step "
        "| driver TCP KB/run | loopback KB/run |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k, v in rows.items():
        if "median_ms" not in v:
            why = f"failed: {v['error']}" if "error" in v else "skipped, see below"
            lines.append(f"| {k} | {why.splitlines()[0][:120]} ||||||")
            continue
        lines.append(
            f"| {k} | {v['min_ms']:.1f} | {v['median_ms']:.1f} | {v['max_ms']:.1f} "
            f"| {v['per_step_median_ms']:.2f} | {v['driver_tcp_kb_per_run']:.0f} "
            f"| {v['loopback_kb_per_run']:.0f} |"
        )
    notes = [f"- {k}: {v['skipped']}." for k, v in rows.items() if "skipped" in v] + [
        f"- {k}: experimental_compile {v['compile_s']:.1f} s, first execute "
        f"{v['first_run_s']:.1f} s (untimed)."
        for k, v in rows.items()
        if "compile_s" in v
    ]
    lines += ["", *notes, "", report["conclusion"], ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per variant")
    parser.add_argument("--steps", type=int, default=13, help="steps (groups) per run, >= 2")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per variant")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument(
        "--compiled-all-configs",
        action="store_true",
        help="also time the compiled graph with the lowered inline threshold (slow to compile)",
    )
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--child-json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2 or args.repeats < 1:
        parser.error("--steps must be at least 2 and --repeats at least 1")
    if args.child:
        args.child_json.write_text(json.dumps(child(args.child, args), allow_nan=False))
        return

    passed = sys.argv[1:]
    variants: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config in CONFIGS:
            out = Path(tmp) / f"{config}.json"
            cmd = [sys.executable, __file__, "--child", config, "--child-json", str(out)]
            print(f"[{config}] running", file=sys.stderr, flush=True)
            subprocess.run(cmd + passed, check=True)
            for variant, result in json.loads(out.read_text()).items():
                variants[variant if config == "default" else f"{variant} ({config})"] = result
    report = {
        "measured": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "machine": machine(),
        "steps": args.steps,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "devices": DEVICES,
        "edge_piece_bytes": EDGE_BYTES,
        "variants": variants,
    }
    report["conclusion"] = conclusion(variants, args.steps)
    command = "python benchmarks/ray_step_overhead.py " + " ".join(passed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray-step-overhead.json").write_text(
        json.dumps(report, indent=2, allow_nan=False) + "\n"
    )
    (args.out / "ray-step-overhead.md").write_text(markdown(report, command.strip()))
    print(markdown(report, command.strip()))


if __name__ == "__main__":
    main()
