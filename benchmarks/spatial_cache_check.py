"""Show that a second `maniple spatial` on the same boards profiles nothing, and that a
changed link, board set or input shape profiles again; a saved plan runs without
profiling and is refused for another network or other devices.

Runs `maniple spatial` (as a user would, in a fresh process each time) against one
profile store made for the check, and writes what each run profiled and reused, with its
latency and wall time, to docs/results/spatial-cache.md.

    python benchmarks/spatial_cache_check.py [--network vgg-16] [--boards 3xfirefly-rk3399]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "spatial-cache.md"


def spatial(args: list[str]) -> tuple[int, dict | str, float]:
    """(exit code, the JSON document or the error line, wall seconds) of one run."""
    t0 = time.time()
    cmd = [sys.executable, "-c", "from maniple.cli import main; main()", "spatial", *args]
    env = {**os.environ, "COLUMNS": "2000"}  # the error on one line, as a terminal shows it
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.time() - t0
    if done.returncode != 0:
        return done.returncode, done.stderr.strip().splitlines()[-1].replace("|", "/"), wall
    return 0, json.loads(done.stdout), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="vgg-16")
    parser.add_argument("--boards", default="3xfirefly-rk3399")
    parser.add_argument("--out", type=Path, default=OUT)
    a = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="maniple-cache-check-"))
    db, plan = ["--profile-db", str(tmp / "profiles.sqlite")], tmp / "saved.plan"
    base = ["--network", a.network, "--emulate", a.boards, "--repeats", "2", *db]
    fewer = f"{int(a.boards.split('x')[0]) - 1}x{a.boards.split('x', 1)[1]}"
    runs = [
        ("first run", [*base, "--save-plan", str(plan)]),
        ("second run, nothing changed", base),
        ("link 50 Mbps instead of 100", [*base, "--link-mbps", "50"]),
        (f"board set {fewer}", [*base[:2], "--emulate", fewer, *base[4:]]),
        ("input 3x192x192", [*base, "--input-shape", "3,192,192"]),
        ("--reprofile", [*base, "--reprofile"]),
        ("--plan (the first run's)", [*base, "--plan", str(plan)]),
        ("--plan for another network", ["--network", "vgg-19", *base[2:], "--plan", str(plan)]),
        (f"--plan on {fewer}", [*base[:2], "--emulate", fewer, *base[4:], "--plan", str(plan)]),
    ]
    lines = [
        "# Cached spatial profiles",
        "",
        f"Command: `python benchmarks/spatial_cache_check.py --network {a.network} "
        f"--boards {a.boards}`  ",
        f"Machine: {platform.node()}, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}.",
        "",
        "Each row is one `maniple spatial ... --json` in a fresh process, all on one new "
        "profile store, in this order. 'profiled' is what the run measured, 'reused' what "
        "it read from the store; wall time includes starting the boards.",
        "",
        "| run | exit | profiled | reused | groups | latency (ms) | speedup | wall (s) |",
        "|---|---:|---|---|---|---:|---:|---:|",
    ]
    for name, args in runs:
        code, doc, wall = spatial([*args, "--json"])
        if code:
            lines.append(f"| {name} | {code} | refused: {doc} | | | | | {wall:.0f} |")
        else:
            assert isinstance(doc, dict)
            lines.append(
                f"| {name} | 0 | {', '.join(doc['profiled_now']) or 'nothing'} | "
                f"{', '.join(doc['reused_profiles']) or '-'} | {doc['flc']} | "
                f"{doc['latency_ms']:.1f} | {doc['speedup']:.2f} | {wall:.0f} |"
            )
        print(lines[-1], flush=True)
    a.out.write_text("\n".join([*lines, ""]))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
