"""`maniple demo`: the main job on the embedded default, in a few minutes, with no set-up.

It shows the three things a user judges maniple by, on this machine alone: the split
output is exactly one device's output (`verify`), a batch split across units of different
speed beats the fastest unit (`infer` on emulated units), and Legion's spatial split makes
one image faster on emulated edge boards (`spatial`). Emulated boards run as local Ray
workers on 127.0.0.1; nothing has to be started by hand.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from maniple.cli.app import DEFAULT_TIMEOUT_S, TimeoutOpt


def register(app: typer.Typer) -> None:
    """Add `demo` to the main app."""
    from maniple.cli.app import console

    @app.command("demo")
    def demo_command(
        boards: Annotated[
            int, typer.Option(help="Emulated Firefly-RK3399 boards for the spatial split.")
        ] = 3,
        network: Annotated[str, typer.Option(help="Network for the spatial split.")] = "vgg-16",
        timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Run the embedded default: exact splits, a batch split and a Legion split."""
        from maniple.batch.infer import InferOptions, infer
        from maniple.batch.store import ProfileStore
        from maniple.cluster import parse_shorthand
        from maniple.graph import capture
        from maniple.spatial.session import LegionSession
        from maniple.spatial.setup import open_devices, prepare
        from maniple.tiling.verify import verify_split
        from maniple.zoo import build, input_shape

        console.rule("1. Does a split give exactly one device's output?")
        for name in ("resnet-50", "inception_v3", "yolov2"):
            result = verify_split(capture(build(name), input_shape(name), name), 2, 4)
            verdict = "exact" if result.ok else "NOT exact"
            console.print(
                f"{name:14s} 2 random fused splits over 4 devices: largest error "
                f"{result.max_rel_error:.1e} of the output's scale -> {verdict}"
            )

        console.rule("2. Batch split over three units of speed 4:2:1 (emulated)")
        spec = parse_shorthand(
            None, "custom:1940@1000+custom:3880@1000+custom:7760@1000", timeout_s=timeout
        )
        with tempfile.TemporaryDirectory() as tmp:
            store = ProfileStore(Path(tmp) / "demo.sqlite")
            options = InferOptions(
                "resnet-18", 112, planner="exact", repeats=1, input_shape=(3, 64, 64)
            )
            batch = infer(spec, store, options, console=console).to_json()
            store.close()
        console.print(
            f"shares {batch['shares']}: {batch['measured_ms']:.0f} ms measured vs "
            f"{batch['single_device_ms']:.0f} ms on the fastest unit alone -> "
            f"{batch['speedup']:.2f}x, error {batch['max_rel_error']:.1e}"
        )

        console.rule(f"3. Legion: {network} on {boards} emulated Firefly-RK3399 boards, 100 Mbps")
        setup = prepare(
            network, emulate=f"{boards}xfirefly-rk3399", link_mbps=100.0, timeout_s=timeout
        )
        with open_devices(setup) as handles:
            result = LegionSession(handles, setup.graph, repeats=1).measure("legion-wildcard")
        console.print(str(result.plan))
        console.print(
            f"measured {result.latency_ms:.0f} ms vs {result.single_device_ms:.0f} ms on one "
            f"board -> {result.speedup:.2f}x; profiling {result.profile}; error "
            f"{result.max_rel_error:.1e}"
        )
        console.rule("done")
        console.print(
            "Next: `maniple infer --help`, `maniple spatial --help`, `maniple bench legion`."
        )
