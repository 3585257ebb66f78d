"""CLI command for streams of frames: `maniple stream`."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from maniple.cli.app import (
    DEFAULT_TIMEOUT_S,
    DilationOpt,
    EmulateOpt,
    InputShapeOpt,
    LinkMbpsOpt,
    NetworkOpt,
    ProfileDbOpt,
    ReprofileOpt,
    TimeoutOpt,
)
from maniple.errors import ManipleError, UnknownNameError

RUNTIMES = ("auto", "star", "peer")
MAX_FRAMES = 100_000
MIN_FPS = 0.01


def register(app: typer.Typer) -> None:
    """Add this file's commands to the main app."""
    from maniple.cli.app import console, err_console, print_json, progress_bar

    @app.command("stream")
    def stream_command(
        network: NetworkOpt,
        emulate: EmulateOpt = None,
        devices: Annotated[
            str | None, typer.Option(help="Real devices, e.g. cpu or cuda:0.")
        ] = None,
        frames: Annotated[int, typer.Option(help="Frames to stream.")] = 30,
        fps: Annotated[
            float | None,
            typer.Option(
                help="Frames arrive at this rate (frames/s); the plan is then the lowest "
                "latency that keeps up. Default: as fast as they are taken, the plan the "
                "highest throughput."
            ),
        ] = None,
        runtime: Annotated[
            str,
            typer.Option(
                help="How lanes that split a frame move bands: star, peer or auto (each "
                "lane's faster prediction)."
            ),
        ] = "auto",
        check_all: Annotated[
            bool,
            typer.Option(help="Check every frame's output against one device (default: 1 in 10)."),
        ] = False,
        link_mbps: LinkMbpsOpt = 100.0,
        dilation: DilationOpt = None,
        input_shape: InputShapeOpt = None,
        profile_db: ProfileDbOpt = None,
        reprofile: ReprofileOpt = False,
        timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
        seed: Annotated[int, typer.Option(help="Seed of the synthetic frames.")] = 0,
        json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Stream frames through the devices, pipelined, and measure throughput and latency.

        Profiles the devices (or reads the profile store), plans lanes for throughput (a
        lane is one device taking whole frames, or several splitting each frame), runs
        FRAMES synthetic frames with each frame's tail on this host while the boards
        compute the next ones, and compares with the best single device streaming alone,
        measured in the same run. A board that slows down is re-balanced; a board that
        dies or stays silent for --timeout seconds is dropped and its frames run again
        on the others. Ctrl-C stops at once with a summary of the frames done.
        """
        from maniple.spatial.setup import open_cache, open_devices, prepare
        from maniple.spatial.stream_run import run_stream
        from maniple.spatial.stream_session import StreamSession
        from maniple.store import StoreFile
        from maniple.zoo import parse_input_shape

        if runtime not in RUNTIMES:
            raise UnknownNameError("runtime", runtime, RUNTIMES)
        if not 1 <= frames <= MAX_FRAMES:
            raise ManipleError(
                f"--frames {frames}: give 1 to {MAX_FRAMES} frames (a longer stream: run "
                "several, or stream from Python with StreamSession.outputs)"
            )
        if fps is not None and not (math.isfinite(fps) and fps >= MIN_FPS):
            raise ManipleError(
                f"--fps {fps!r}: give a frame rate of at least {MIN_FPS} frames/s, or leave "
                "--fps out to take frames as fast as the devices do"
            )
        shape = parse_input_shape(input_shape) if input_shape else None
        setup = prepare(
            network,
            devices=devices,
            emulate=emulate,
            link_mbps=link_mbps,
            dilation=dilation,
            input_shape=shape,
            timeout_s=timeout,
        )
        with StoreFile(profile_db) as store, open_devices(setup) as handles:
            with progress_bar() as bar:
                tasks: dict[str, Any] = {}

                def progress(what: str, done: int, total: int) -> None:
                    if what not in tasks:
                        tasks[what] = bar.add_task(what, total=total)
                    bar.update(tasks[what], completed=done)

                cache = open_cache(store, handles, setup.graph, reprofile=reprofile)
                session = StreamSession(
                    handles, setup.graph, cache=cache, fps=fps, runtime=runtime, progress=progress
                )
                session.prepare()
                result = run_stream(
                    session,
                    frames,
                    check_all=check_all,
                    seed=seed,
                    on_frame=lambda f: progress("frames", f.index + 1, frames),
                )
            # the summary first (after Ctrl-C too), then the boards are closed
            if json_out:
                print_json(result.to_dict())
            else:
                _print(console, result)
            if result.interrupted:
                err_console.print(
                    f"interrupted after {len(result.frames)} of {frames} frames; stopping the "
                    "devices",
                    highlight=False,
                )
        if result.interrupted:
            raise typer.Exit(130)


def _print(console: Any, result: Any) -> None:
    """The human summary: the plan, then throughput and latency beside the single device."""
    lat, one = result.latency, result.single_latency
    console.print(str(result.final_plan), highlight=False, markup=False)
    lines = [
        f"{result.network}: {len(result.frames)} frames at {result.throughput_fps:.2f} frames/s, "
        f"latency p50 {lat.p50:.1f} / p95 {lat.p95:.1f} / p99 {lat.p99:.1f} ms",
        f"{result.single_device} alone: {result.single_fps:.2f} frames/s, "
        f"latency p50 {one.p50:.1f} ms -> {result.speedup:.2f}x its throughput",
        f"outputs: {result.checked} frames checked against one device, max relative error "
        f"{result.max_rel_error:.2g} (tolerance {result.tolerance:g})",
    ]
    for e in result.events[1:]:
        lines.append(f"at frame {e.frame} ({e.at_ms:.0f} ms): {e.kind}: {e.detail}")
    after = result.throughput_after()
    if after is not None:
        lines.append(f"after the last change: {after:.2f} frames/s")
    for line in lines:
        console.print(line, highlight=False, markup=False)
