"""CLI commands about devices: `devices` (what can run here) and `probe` (one device's latency)."""

from __future__ import annotations

import typer

from maniple.cli.app import DEFAULT_TIMEOUT_S, TimeoutOpt, console, print_json

_DEVICE_FORMS = (
    "cpu, cuda:N (gpuN), igpu / xpu:N, mps, emu:firefly-rk3399, emu:odroid-xu4, "
    "emu:custom:VGG16_MS (a board that runs VGG-16 in that many ms), each emu name "
    "optionally ending in @MBPS (link) and #K (instance), ray:NODE, ray:NODE/cuda:N"
)


def register(app: typer.Typer) -> None:
    """Add this file's commands to the main app."""

    @app.command("devices")
    def devices_command(
        as_json: bool = typer.Option(False, "--json", help="Print a JSON list for scripts."),
    ) -> None:
        """List the devices usable here: the CPU, each GPU, and the emulated edge boards.

        Emulated boards run in Ray worker processes on this host. The Odroid-XU4 preset is an
        ASSUMPTION: 0.65x the Firefly-RK3399's speed (no published table at hand).
        """
        from maniple.devices import available_devices

        infos = available_devices()
        if as_json:
            print_json([d.to_dict() for d in infos])
            return
        from rich.table import Table

        table = Table(title="Devices on this machine")
        for column in ("name", "kind", "description"):
            table.add_column(column)
        for d in infos:
            table.add_row(d.name, d.kind, d.description)
        console.print(table)
        console.print(f"Device names: {_DEVICE_FORMS}", highlight=False, markup=False)

    @app.command("probe")
    def probe_command(
        device: str = typer.Option(..., "--device", "-d", help=f"The device: {_DEVICE_FORMS}."),
        network: str = typer.Option(
            ..., "--network", "-n", help="A zoo name (vgg-16, ...) or package.module:factory."
        ),
        batch: int = typer.Option(1, "--batch", "-b", min=1, help="Images per run."),
        repeats: int = typer.Option(
            3, "--repeats", "-r", min=1, help="Timed runs (after 1 warm-up)."
        ),
        seed: int = typer.Option(0, "--seed", help="Weight seed of the network."),
        threads: int | None = typer.Option(None, "--threads", min=1, help="Intra-op threads."),
        input_shape: str | None = typer.Option(
            None, "--input-shape", help="C,H,W, for a network that does not define its input."
        ),
        dilation: float | None = typer.Option(
            None, "--dilation", min=1.0, help="Time dilation of an emulated board (default 2)."
        ),
        fast_forward: bool = typer.Option(
            False, "--fast-forward", help="Emulated board: report board time without sleeping."
        ),
        ray_address: str | None = typer.Option(
            None, "--ray", help="Ray cluster for ray: devices: auto or HOST:PORT (default: local)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
        timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Run the whole network on one device and report its latency.

        For an emulated board the latency is board time: the dilated real time divided by the
        dilation (shown), next to the board's published number. Ray's per-call overhead is
        real host time and shown apart. Odroid-XU4 = 0.65x Firefly-RK3399 is an assumption.
        """
        from maniple.cluster.checks import check_timeout
        from maniple.devices import probe

        shape = None
        if input_shape is not None:
            from maniple.zoo import parse_input_shape

            shape = parse_input_shape(input_shape)
        result = probe(
            device,
            network,
            batch=batch,
            repeats=repeats,
            seed=seed,
            threads=threads,
            dilation=dilation,
            fast_forward=fast_forward,
            ray_address=ray_address,
            input_shape=shape,
            timeout_s=check_timeout(timeout, "--timeout"),
        )
        if as_json:
            print_json(result.to_dict())
            return
        kind = "board time" if result.emulated else "wall time"
        runs = ", ".join(f"{ms:.1f}" for ms in result.runs_ms)
        console.print(
            f"{result.device}  {result.network}  batch {result.batch}: "
            f"{result.latency_ms:.1f} ms ({kind}, median of {result.repeats}: {runs})",
            highlight=False,
            markup=False,
        )
        if result.emulated:
            mode = "fast-forward, no sleeps" if fast_forward else f"dilation {result.dilation:g}x"
            ref = f"; published {result.reference_ms:.0f} ms" if result.reference_ms else ""
            console.print(
                f"  emulated: {mode}, host CPU {result.cpu_ms:.1f} ms per run{ref}; "
                f"overrun {result.overrun_ms:.1f} ms",
                highlight=False,
                markup=False,
            )
        console.print(
            f"  call overhead {result.overhead_ms:.1f} ms (real host time, not in the latency)",
            highlight=False,
        )
