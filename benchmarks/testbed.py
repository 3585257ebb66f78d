"""Emulated links against real ones: the same plans on emulated boards whose links are a
model (sleeps) and on the testbed (`maniple testbed`), where the bytes cross veths shaped
with tc to link / dilation; what the links counted; and `testbed up`/`down` in a row.

For each board set, VGG-16 is planned and measured on emulated links for the star and
the peer runtime (`maniple spatial --emulate ... --save-plan`), then a testbed of the same
boards comes up and runs the same plans (`maniple spatial --testbed --plan`), reading the
veth byte counters around every timed run. The testbed's idle traffic (Ray's heartbeats
and resource reports) is measured over a quiet window first, so the report can show the
links both as counted and less that background. Last, `testbed up` / `down` runs
`--cycles` times in a row, each followed by a check that no namespace, veth, bridge, Ray
process, Ray directory or record is left.

    sudo python benchmarks/testbed.py [--sets 3F,6F] [--repeats 3] [--dilation 4]
                                      [--cycles 20] [--network vgg-16]

Writes docs/results/testbed.json and testbed.md, with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "docs" / "results"
BOARDS = {"3F": "3xfirefly-rk3399", "6F": "6xfirefly-rk3399"}
RUNTIMES = ("star", "peer")
IDLE_S = 10.0


def maniple(*args: str, timeout: float = 1800) -> dict[str, Any]:
    """`maniple ARGS --json` in a fresh process; its document (stderr shown on failure)."""
    code = "import sys; from maniple.cli.main import main; main(sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", code, *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise SystemExit(f"maniple {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout)


def _machine() -> dict[str, Any]:
    import torch

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }


def _run_summary(doc: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "latency_ms", "latencies_ms", "single_device", "single_device_ms",
        "single_device_latencies_ms", "device_ms", "coordinator_ms", "overrun_ms",
        "max_rel_error", "runtime", "flc", "bands", "bytes_through_coordinator",
        "bytes_between_devices", "compression_ratio", "predicted_ms",
    )  # fmt: skip
    out = {k: doc.get(k) for k in keys}
    out["calls"] = sum(1 for group in doc["bands"] for a, b in group if b > a)
    if "testbed" in doc:
        out["testbed"] = doc["testbed"]
    return out


def _idle_rates(seconds: float) -> dict[str, float]:
    """Bytes per second of TCP payload each link carries with nothing running."""
    before = maniple("testbed", "status")["links"]
    time.sleep(seconds)
    after = maniple("testbed", "status")["links"]
    return {k: (after[k]["payload_bytes"] - before[k]["payload_bytes"]) / seconds for k in after}


def measure_set(name: str, args: argparse.Namespace, plans: Path) -> dict[str, Any]:
    boards = BOARDS[name]
    row: dict[str, Any] = {"set": name, "boards": boards, "emulated": {}, "testbed": {}}
    for runtime in RUNTIMES:
        plan = plans / f"{name}-{runtime}.plan"
        print(f"[{name}] emulated links, {runtime}", flush=True)
        doc = maniple(
            "spatial", "--network", args.network, "--emulate", boards,
            "--dilation", str(args.dilation), "--runtime", runtime, "--min-gain", "0",
            "--repeats", str(args.repeats), "--save-plan", str(plan),
        )  # fmt: skip
        row["emulated"][runtime] = _run_summary(doc)
    t0 = time.perf_counter()
    maniple("testbed", "up", "--boards", boards, "--dilation", str(args.dilation))
    row["up_s"] = time.perf_counter() - t0
    try:
        row["idle_bytes_per_s"] = _idle_rates(IDLE_S)
        for runtime in RUNTIMES:
            print(f"[{name}] real links, {runtime}", flush=True)
            doc = maniple(
                "spatial", "--network", args.network, "--testbed",
                "--plan", str(plans / f"{name}-{runtime}.plan"), "--repeats", str(args.repeats),
            )  # fmt: skip
            row["testbed"][runtime] = _run_summary(doc)
    finally:
        maniple("testbed", "down")
    return row


def leftovers() -> dict[str, Any]:
    """Everything a testbed could leave, looked for without maniple's own bookkeeping."""
    netns = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True)
    spaces = [n["name"] for n in json.loads(netns.stdout or "[]") if "maniple" in n["name"]]
    links = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout
    ray_dir = Path(tempfile.gettempdir()) / "maniple-testbed-ray"
    procs = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(ray_dir).encode() in (entry / "cmdline").read_bytes():
                    procs.append(int(entry.name))
            except OSError:
                continue
    record = Path(maniple("testbed", "status")["record_path"])
    return {
        "namespaces": spaces,
        "root_links": [x["ifname"] for x in json.loads(links) if "maniple" in x["ifname"]],
        "ray_processes": procs,
        "ray_dir": ray_dir.exists(),
        "record": record.exists(),
    }


def cycles(n: int, boards: str, dilation: float) -> dict[str, Any]:
    ups, downs, dirty = [], [], []
    for i in range(n):
        t0 = time.perf_counter()
        maniple("testbed", "up", "--boards", boards, "--dilation", str(dilation))
        t1 = time.perf_counter()
        maniple("testbed", "down")
        ups.append(t1 - t0)
        downs.append(time.perf_counter() - t1)
        left = leftovers()
        if any(left.values()):
            dirty.append({"cycle": i, **left})
        print(f"cycle {i + 1}/{n}: up {ups[-1]:.1f} s, down {downs[-1]:.1f} s, left {left}")
    return {"boards": boards, "cycles": n, "up_s": ups, "down_s": downs, "dirty": dirty}


# -- the report --------------------------------------------------------------------------------


def _pct(a: float, b: float) -> str:
    return f"{100 * (a / b - 1):+.1f}%"


def _spread(run: dict[str, Any]) -> str:
    ms = run["latencies_ms"]
    return f"{run['latency_ms']:.1f} [{min(ms):.0f}-{max(ms):.0f}]"


def byte_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Per runtime and link: median over the timed runs of what the veth carried (TCP
    payload), what the run should carry there, and the veth less the idle background."""
    out = []
    idle = row["idle_bytes_per_s"]
    for runtime, run in row["testbed"].items():
        runs = run["testbed"]["runs"]
        for link in runs[0]["links"]:
            seen = statistics.median(r["links"][link]["payload_bytes"] for r in runs)
            quiet = statistics.median(
                r["links"][link]["payload_bytes"] - idle[link] * r["wall_s"] for r in runs
            )
            wire = statistics.median(r["links"][link]["wire_bytes"] for r in runs)
            raw = statistics.median(r["links"][link]["schedule_bytes"] for r in runs)
            out.append({"runtime": runtime, "link": link, "veth": seen, "veth_less_idle": quiet,
                        "wire": wire, "schedule": raw, "calls": run["calls"]})  # fmt: skip
    return out


def write(doc: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "testbed.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    m = doc["machine"]
    lines = [
        "# Emulated links against real links (the testbed)",
        "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {m['host']}, {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python "
        f"{m['python']}, torch {m['torch']}; {doc['minutes']:.1f} min.",
        "",
        f"{doc['network']}, Firefly-RK3399 boards at 100 Mbit/s, time dilation "
        f"{doc['dilation']:g} (testbed veths shaped with tc tbf to 100 / {doc['dilation']:g} "
        "Mbit/s each way, the coordinator's to 1000 / D). Each plan was chosen on emulated "
        "links (Legion + Wild Card for the runtime, `--min-gain 0`) and the same plan then ran "
        "on the testbed. Latencies are medians of real-time runs; on the testbed the least "
        "time the bytes took on the shaped wire is divided by the dilation like the boards' "
        "own time, every other real millisecond counts whole "
        "(`maniple.devices.shaped_link`).",
        "",
        "## Latency",
        "",
        "| boards | runtime | emulated links (ms) | real links (ms) | real vs emulated | "
        "within 10% | boards' part, emulated / real (ms) | one board, emulated / real (ms) "
        "| overrun (ms) |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in doc["sets"]:
        for rt in RUNTIMES:
            e, t = row["emulated"][rt], row["testbed"][rt]
            ok = abs(t["latency_ms"] / e["latency_ms"] - 1) <= 0.10
            lines.append(
                f"| {row['set']} | {rt} | {_spread(e)} | {_spread(t)} | "
                f"{_pct(t['latency_ms'], e['latency_ms'])} | {'yes' if ok else 'no'} | "
                f"{e['device_ms']:.1f} / {t['device_ms']:.1f} | {e['single_device_ms']:.1f} / "
                f"{t['single_device_ms']:.1f} | {t['overrun_ms']:.1f} |"
            )
    lines += [
        "",
        "## Bytes on the veths",
        "",
        "TCP payload each veth carried during a timed run (frames less 66 bytes of headers "
        "per packet), against the bytes the run moves over that link: the input bands "
        "scattered plus the bands gathered for the coordinator, and for a board every piece "
        "it sent or received, as the devices counted them on the wire (the peer runtime "
        "encodes its pieces; `schedule` is the same before encoding). `less idle` takes off "
        "the link's idle traffic (measured over "
        f"{IDLE_S:g} s with nothing running) for the run's wall time.",
        "",
        "| boards | runtime | link | calls | veth (B) | expected (B) | veth / expected | "
        "less idle / expected | within 5% | beyond the data, per call (B) | schedule (B) |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in doc["sets"]:
        for b in byte_rows(row):
            quiet = b["veth_less_idle"] / b["wire"]
            lines.append(
                f"| {row['set']} | {b['runtime']} | {b['link']} | {b['calls']} | "
                f"{b['veth']:,.0f} | {b['wire']:,.0f} | {b['veth'] / b['wire']:.3f} | "
                f"{quiet:.3f} | {'yes' if abs(quiet - 1) <= 0.05 else 'no'} | "
                f"{(b['veth_less_idle'] - b['wire']) / b['calls']:,.0f} | {b['schedule']:,.0f} |"
            )
    c = doc["cycles"]
    lines += [
        "",
        "## Up and down in a row",
        "",
        f"`maniple testbed up --boards {c['boards']}` then `down`, {c['cycles']} times; after "
        "each, looked for by name and not through maniple's record: network namespaces, "
        "interfaces in the root namespace, processes naming the testbed's Ray directory, "
        "that directory, and the record.",
        "",
        f"- up: median {statistics.median(c['up_s']):.1f} s (max {max(c['up_s']):.1f} s); "
        f"down: median {statistics.median(c['down_s']):.1f} s (max {max(c['down_s']):.1f} s)",
        f"- cycles that left anything: {len(c['dirty'])} of {c['cycles']}"
        + (f" ({c['dirty']})" if c["dirty"] else ""),
        "",
    ]
    if doc.get("notes"):
        lines += ["## Notes", "", *doc["notes"], ""]
    (OUT / "testbed.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="3F,6F")
    parser.add_argument("--network", default="vgg-16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dilation", type=float, default=4.0)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--cycle-boards", default="6xfirefly-rk3399")
    parser.add_argument("--notes", type=Path, help="Markdown lines to append under Notes.")
    parser.add_argument(
        "--redraw", action="store_true", help="Write testbed.md again from testbed.json."
    )
    args = parser.parse_args()
    if args.redraw:
        doc = json.loads((OUT / "testbed.json").read_text())
        if args.notes:
            doc["notes"] = args.notes.read_text().splitlines()
            (OUT / "testbed.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
        write(doc)
        return
    if os.geteuid() != 0:
        raise SystemExit("the testbed needs root: sudo python benchmarks/testbed.py")
    if any(leftovers().values()):
        raise SystemExit("a testbed (or its leftovers) is here; `maniple testbed down` first")
    started = time.time()
    doc: dict[str, Any] = {
        "command": "python benchmarks/testbed.py " + " ".join(sys.argv[1:]),
        "machine": _machine(),
        "network": args.network,
        "dilation": args.dilation,
        "sets": [],
    }
    with tempfile.TemporaryDirectory(prefix="maniple-testbed-plans-") as plans:
        for name in args.sets.split(","):
            doc["sets"].append(measure_set(name.strip(), args, Path(plans)))
            doc["minutes"] = (time.time() - started) / 60
    doc["cycles"] = cycles(args.cycles, args.cycle_boards, args.dilation)
    doc["minutes"] = (time.time() - started) / 60
    if args.notes:
        doc["notes"] = args.notes.read_text().splitlines()
    write(doc)
    print(f"wrote {OUT / 'testbed.md'}")


if __name__ == "__main__":
    main()
