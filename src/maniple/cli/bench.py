"""CLI benchmarks that reproduce the seed studies: `bench legion` (results in docs/results/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maniple.cli.app import DEFAULT_TIMEOUT_S, TimeoutOpt
from maniple.errors import ManipleError
from maniple.spread import check_repeats

bench_app = typer.Typer(
    help="Benchmarks that reproduce the seed studies; results in docs/results/."
)


def register(app: typer.Typer) -> None:
    """Add `bench` and its commands to the main app."""
    from maniple.cli.app import check_writable_dir, console

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
        runtimes: Annotated[
            str,
            typer.Option(help="Runtimes to measure: star, or star,peer (both side by side)."),
        ] = "star",
        timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Reproduce Legion's results on emulated boards: speedup of FSS, Legion and
        Legion+Wild Card for Firefly, Odroid and mixed sets, and profiling time."""
        from maniple.spatial.bench import DEFAULT_SETS, run_legion_bench

        chosen = [s.strip() for s in sets.split(",")] if sets else list(DEFAULT_SETS)
        wanted = [r.strip() for r in runtimes.split(",") if r.strip()]
        bad = [r for r in wanted if r not in ("star", "peer")]
        if bad or "star" not in wanted:
            raise ManipleError(
                f"--runtimes {runtimes!r}: give star or star,peer (the star is the baseline "
                "every row is compared with)"
            )
        nets = [n.strip() for n in networks.split(",") if n.strip()]
        check_repeats(repeats, "--repeats")
        check_writable_dir(out, "--out")
        path = run_legion_bench(
            nets, chosen, repeats, link_mbps, out, console, wanted, timeout_s=timeout
        )
        console.print(f"wrote {path}")

    @bench_app.command("stream")
    def bench_stream_command(
        networks: Annotated[
            str, typer.Option(help="Comma-separated networks.")
        ] = "vgg-16,yolov2,resnet-50",
        sets: Annotated[
            str | None,
            typer.Option(help="Board sets, e.g. 1F,6F,3F+3O (default: the study's 14)."),
        ] = None,
        frames_per_board: Annotated[
            int, typer.Option(help="Frames streamed per board of the set (at least 2 in all).")
        ] = 4,
        link_mbps: Annotated[float, typer.Option(help="Board link, Mbit/s.")] = 100.0,
        out: Annotated[Path, typer.Option(help="Where stream.md and stream.json go.")] = Path(
            "docs/results"
        ),
        timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Stream frames on emulated board sets: throughput, latency p50/p95/p99 and the
        speedup over the best board's own stream, beside Legion's single-image latency."""
        from maniple.spatial.bench_stream import DEFAULT_SETS, run_stream_bench

        chosen = [s.strip() for s in sets.split(",")] if sets else list(DEFAULT_SETS)
        nets = [n.strip() for n in networks.split(",") if n.strip()]
        if not nets:
            raise ManipleError("--networks names no network; give e.g. vgg-16,yolov2")
        if not 1 <= frames_per_board <= 100:
            raise ManipleError(
                f"--frames-per-board {frames_per_board}: give 1 to 100 frames per board"
            )
        check_writable_dir(out, "--out")
        path = run_stream_bench(
            nets, chosen, frames_per_board, link_mbps, out, console, timeout_s=timeout
        )
        console.print(f"wrote {path}")
