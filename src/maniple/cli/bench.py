"""CLI benchmarks that reproduce the seed studies: `bench legion` (results in docs/results/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

bench_app = typer.Typer(
    help="Benchmarks that reproduce the seed studies; results in docs/results/."
)


def register(app: typer.Typer) -> None:
    """Add `bench` and its commands to the main app."""
    from maniple.cli.app import console

    app.add_typer(bench_app, name="bench")

    @bench_app.command("legion")
    def bench_legion_command(
        networks: Annotated[
            str, typer.Option(help="Comma-separated networks.")
        ] = "vgg-16,vgg-19,yolov2",
        sets: Annotated[
            str | None,
            typer.Option(help="Board sets, e.g. 1F,2F,1O,2F+1O (default: the study's 14)."),
        ] = None,
        repeats: Annotated[int, typer.Option(help="Timed real-time runs per plan.")] = 2,
        link_mbps: Annotated[float, typer.Option(help="Board link, Mbit/s.")] = 100.0,
        out: Annotated[Path, typer.Option(help="Where legion.md, JSON and PNGs go.")] = Path(
            "docs/results"
        ),
    ) -> None:
        """Reproduce Legion's results on emulated boards: speedup of FSS, Legion and
        Legion+Wild Card for Firefly, Odroid and mixed sets, and profiling time."""
        from maniple.spatial.bench import DEFAULT_SETS, run_legion_bench

        chosen = [s.strip() for s in sets.split(",")] if sets else list(DEFAULT_SETS)
        nets = [n.strip() for n in networks.split(",") if n.strip()]
        path = run_legion_bench(nets, chosen, repeats, link_mbps, out, console)
        console.print(f"wrote {path}")
