"""CLI commands about a network itself: `models`, `inspect`, `verify`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from maniple.errors import ManipleError

NetworkArg = Annotated[
    str,
    typer.Argument(
        help="A zoo name (see `maniple models`) or `package.module:callable` returning a module."
    ),
]
InputShapeOpt = Annotated[
    str | None,
    typer.Option(
        "--input-shape",
        help="C,H,W of one input image; required for module specs, overrides a zoo network's.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _load_graph(network: str, input_shape: str | None, seed: int = 0):  # noqa: ANN202
    """The network's layer graph, after checking from its shapes alone that the forward
    pass capture runs here fits in this host's memory (a huge --input-shape is refused
    in milliseconds, not found out by the allocator)."""
    from maniple.devices.host_limits import check_forward
    from maniple.graph import capture
    from maniple.graph.memory import estimate_for_capture
    from maniple.zoo import parse_input_shape, resolve

    shape = parse_input_shape(input_shape) if input_shape else None
    module, shape, name = resolve(network, shape, seed=seed)
    check_forward(estimate_for_capture(module, shape, name))
    return capture(module, shape, name)


MAX_VERIFY_DEVICES = 256
MAX_VERIFY_TRIALS = 1000


def _check_verify_counts(devices: int, trials: int) -> None:
    """Bound `verify`'s work before it starts: every trial runs every device's band of
    every group one after another here, so the work grows with devices x trials (a
    count of 10**12 would run for ever before printing anything)."""
    for option, value, most, example in (
        ("--devices", devices, MAX_VERIFY_DEVICES, 6),
        ("--trials", trials, MAX_VERIFY_TRIALS, 20),
    ):
        if not 1 <= value <= most:
            raise ManipleError(
                f"{option} {value}: verify takes 1 to {most} (each one is run here, band by "
                f"band, one after another); use e.g. {option} {example}"
            )


def _verify_device(text: str) -> str:
    """The torch device `verify` runs on: a present device of this process, by name."""
    from maniple.devices import resolve_device

    spec = resolve_device(text)  # bad names and absent GPUs are ManipleErrors
    if not spec.is_local:
        raise ManipleError(
            f"--device {text!r}: verify runs the bands in this process; use cpu or cuda:N"
        )
    return spec.torch_device


def register(app: typer.Typer) -> None:
    """Add this file's commands to the main app."""
    from maniple.cli.app import console, print_json

    @app.command("models")
    def models_command(json_out: JsonOpt = False) -> None:
        """List the zoo networks: input shape, GMACs, GFLOPs, parameters, units."""
        from maniple.graph import capture
        from maniple.zoo import build, input_shape, names

        rows = []
        for name in names():
            graph = capture(build(name), input_shape(name), name)
            rows.append(
                {
                    "name": name,
                    "input_shape": list(input_shape(name)),
                    "gmacs": round(graph.macs / 1e9, 3),
                    "gflops": round(2 * graph.macs / 1e9, 3),
                    "params": graph.params,
                    "units": len(graph.units),
                }
            )
        if json_out:
            print_json({"models": rows})
            return
        table = Table(title="maniple model zoo (random weights)")
        for col in ("name", "input (C,H,W)", "GMACs", "GFLOPs", "params (M)", "units"):
            table.add_column(col, justify="left" if col == "name" else "right")
        for r in rows:
            table.add_row(
                r["name"],
                ",".join(map(str, r["input_shape"])),
                f"{r['gmacs']:.2f}",
                f"{r['gflops']:.2f}",
                f"{r['params'] / 1e6:.1f}",
                str(r["units"]),
            )
        console.print(table)

    @app.command("inspect")
    def inspect_command(
        network: NetworkArg,
        input_shape: InputShapeOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Show a network's units (what fused groups are made of), its sync points, where
        the spatial part stops, and its tail."""
        from maniple.graph.describe import describe_graph, stop_note

        graph = _load_graph(network, input_shape)
        info = describe_graph(graph)
        if json_out:
            print_json(info)
            return
        shape = ",".join(map(str, info["input_shape"]))
        table = Table(
            title=f"{info['network']}: input {shape}, {info['macs'] / 1e9:.2f} GMACs, "
            f"{len(info['units'])} units"
        )
        for col in ("#", "unit", "kind", "features", "output (N,C,H,W)", "MMACs"):
            table.add_column(col, justify="right" if col in ("#", "MMACs") else "left")
        for u in info["units"]:
            table.add_row(
                str(u["index"]),
                u["name"],
                u["kind"],
                u["features"],
                "x".join(map(str, u["out_shape"])),
                f"{u['macs'] / 1e6:.1f}",
            )
        console.print(table)
        syncs = info["sync_points"]
        if syncs:
            console.print(
                f"{len(syncs)} sync point(s), where each device reduces its own rows and all "
                f"combine a few numbers per channel: "
                + ", ".join(f"{p['name']} (unit {p['unit']})" for p in syncs),
                markup=False,
            )
        console.print(stop_note(graph), markup=False)
        tail = ", ".join(f"{t['kind']} ({t['module']})" for t in info["tail"]) or "(none)"
        console.print(f"tail, run whole on one device: {tail}", markup=False)

    @app.command("verify")
    def verify_command(
        network: NetworkArg,
        devices: Annotated[int, typer.Option(help="Devices to split each map across.")] = 4,
        trials: Annotated[int, typer.Option(help="Random fused configurations to try.")] = 5,
        seed: Annotated[int, typer.Option(help="Seed for configurations, ratios, input.")] = 0,
        precision: Annotated[
            str | None,
            typer.Option(help="fp32 (strict, the default), tf32, bf16 or fp16."),
        ] = None,
        dtype: Annotated[
            str | None, typer.Option(help="float32 or float16 (older spelling of --precision).")
        ] = None,
        device: Annotated[str, typer.Option(help="Where to run the bands: cpu or cuda:N.")] = "cpu",
        input_shape: InputShapeOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Check that NETWORK splits exactly: random groups and ratios, band by band.

        Exits 1 when any trial's error exceeds the precision's tolerance (of the output's
        scale: 1e-4 fp32, 1e-3 tf32, 2e-2 bf16 and fp16); the unsplit output's error
        against strict fp32 is printed beside it.
        """
        from maniple.precision import parse_precision
        from maniple.tiling.verify import verify_split

        if dtype is not None and dtype not in ("float32", "float16"):
            raise ManipleError(f"--dtype must be one of float32, float16, got {dtype!r}")
        if dtype is not None and precision is not None:
            raise ManipleError("give --precision or --dtype, not both")
        chosen = parse_precision(precision or dtype or "fp32")
        _check_verify_counts(devices, trials)
        where = _verify_device(device)
        graph = _load_graph(network, input_shape, seed=0)
        result = verify_split(graph, trials, devices, seed, device=where, precision=chosen)
        tol = result.tolerance
        if json_out:
            print_json(result.to_json())
        else:
            table = Table(title=f"{result.network}: {trials} random splits over {devices} devices")
            for col in ("trial", "groups", "ratios", "max rel. error"):
                table.add_column(col)
            for i, t in enumerate(result.trials):
                table.add_row(
                    str(i),
                    " ".join(f"{a}-{b}" for a, b in t.flc),
                    " ".join(f"{r:.2f}" for r in t.ratios),
                    f"{t.max_rel_error:.2e}",
                )
            console.print(table)
            worst = result.worst
            verdict = "[green]exact[/]" if result.ok else "[red]NOT exact[/]"
            console.print(
                f"{verdict}: largest error {result.max_rel_error:.2e} (tolerance {tol:.0e}); "
                f"worst case cuts {list(worst.cuts)} ratios {list(worst.ratios)}"
            )
            if result.error_vs_fp32 is not None:
                console.print(
                    f"{result.precision} against strict fp32 (unsplit): "
                    f"{result.error_vs_fp32:.2e} of the output's scale"
                )
        if not result.ok:
            raise typer.Exit(1)
