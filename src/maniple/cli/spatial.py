"""CLI commands for spatial model parallelism (Legion): `spatial` and `bench legion`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from maniple.errors import ManipleError
from maniple.spatial.plan import SEARCHES

bench_app = typer.Typer(
    help="Benchmarks that reproduce the seed studies; results in docs/results/."
)


def register(app: typer.Typer) -> None:
    """Add this file's commands to the main app."""
    from maniple.cli.app import console, print_json, progress_bar

    app.add_typer(bench_app, name="bench")

    @app.command("spatial")
    def spatial_command(
        network: Annotated[str, typer.Option(help="Zoo name or package.module:callable.")],
        emulate: Annotated[
            str | None,
            typer.Option(help="Emulated boards, e.g. 3xfirefly-rk3399+2xodroid-xu4."),
        ] = None,
        devices: Annotated[
            str | None, typer.Option(help="Real devices, e.g. cpu or cuda:0,cuda:1.")
        ] = None,
        search: Annotated[
            str, typer.Option(help=f"How to choose the fused groups: {', '.join(SEARCHES)}.")
        ] = "legion-wildcard",
        link_mbps: Annotated[
            float | None, typer.Option(help="Bandwidth of every emulated board's link, Mbit/s.")
        ] = 100.0,
        repeats: Annotated[int, typer.Option(help="Timed real-time runs (median).")] = 3,
        dilation: Annotated[
            float | None,
            typer.Option(help="Time dilation for emulated boards (default: the host's)."),
        ] = None,
        input_shape: Annotated[
            str | None, typer.Option(help="C,H,W input; needed for module specs.")
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Split every conv layer's rows across devices (Legion) and measure it.

        Profiles each device (emulated boards in fast-forward), picks the fused-layer
        configuration with SEARCH, runs it for real with all devices at once, and compares
        with the fastest device alone. The output is checked against the single-device
        output (1e-4 of its scale).
        """
        from maniple.cluster import open_cluster, parse_shorthand, with_link
        from maniple.devices import ModelSpec
        from maniple.graph import capture
        from maniple.spatial.session import LegionSession, warm_up
        from maniple.zoo import parse_input_shape, resolve

        if search not in SEARCHES:
            from maniple.errors import UnknownNameError

            raise UnknownNameError("search", search, SEARCHES)
        if repeats < 1:
            raise ManipleError(f"--repeats must be at least 1, got {repeats}")
        shape = parse_input_shape(input_shape) if input_shape else None
        module, shape, name = resolve(network, shape)
        graph = capture(module, shape, name)
        spec = with_link(parse_shorthand(devices, emulate, None, dilation=dilation), link_mbps)
        model = ModelSpec(network, input_shape=shape).with_weights(module)
        with open_cluster(spec, model, input_shape=shape) as cluster, progress_bar() as bar:
            tasks: dict[str, Any] = {}

            def progress(what: str, done: int, total: int) -> None:
                if what not in tasks:
                    tasks[what] = bar.add_task(what, total=total)
                bar.update(tasks[what], completed=done)

            session = LegionSession(list(cluster), graph, repeats=repeats, progress=progress)
            # Fresh boards run slower than settled ones: warm them before anything is timed.
            warm_up(session.handles, graph, session.x)
            result = session.measure(search)
        if json_out:
            print_json(result.to_json())
            return
        console.print(str(result.plan))
        info = result.to_json()
        table = Table(title=f"{name}: {search} on {', '.join(result.plan.devices)}")
        for col in ("measure", "value"):
            table.add_column(col)
        rows = [
            ("fused groups", str(len(result.plan.flc))),
            ("predicted", _ms(info["predicted_ms"])),
            ("measured latency", _ms(info["latency_ms"])),
            ("  of which devices (real-time clock)", _ms(info["device_ms"])),
            ("  of which coordinator, calls, tail", _ms(info["coordinator_ms"])),
            ("devices, fast-forward clock", _ms(info["fast_forward_ms"])),
            (f"one device ({result.single_device})", _ms(info["single_device_ms"])),
            ("speedup", f"{result.speedup:.2f}x"),
            ("max relative error", f"{result.max_rel_error:.1e}"),
            ("profiling", f"{result.profile} (board time)"),
        ]
        for k, v in rows:
            table.add_row(k, v)
        console.print(table)

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


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
