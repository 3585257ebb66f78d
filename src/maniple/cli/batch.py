"""CLI commands that run a batch split on devices: `infer` and `measure-io`.

A thin layer: options are checked and turned into the runtime's calls
(`maniple.batch.infer`, `maniple.batch.measure_io`); the numbers are worded by
`maniple.report`. Cheap checks (batch, planner, device names, the profile file) come
before anything is opened or profiled, so a typo costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from maniple.cli.app import (
    DEFAULT_TIMEOUT_S,
    CompileOpt,
    MemoryFormatOpt,
    PrecisionOpt,
    ProfileDbOpt,
    TimeoutOpt,
    exec_mode,
)
from maniple.errors import ManipleError
from maniple.spread import check_repeats

if TYPE_CHECKING:
    from maniple.cluster import ClusterSpec

NetworkOpt = Annotated[
    str,
    typer.Option(
        "--network",
        "-n",
        help="A zoo network (see `maniple models`) or `package.module:callable`.",
    ),
]
DeviceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--device",
        "-d",
        help="Devices, comma-separated or repeated: cpu, cuda:N (gpuN), xpu:N, mps, "
        "emu:PRESET, emu:custom:VGG16_MS, ray:NODE or ray:NODE/cuda:N.",
    ),
]
EmulateOpt = Annotated[
    str | None,
    typer.Option(
        "--emulate",
        help="Emulated boards to add, e.g. 3xfirefly-rk3399+custom:500 (needs Ray).",
    ),
]
ClusterOpt = Annotated[
    Path | None, typer.Option("--cluster", help="A cluster YAML file (instead of --device).")
]
InputShapeOpt = Annotated[
    str | None,
    typer.Option("--input-shape", help="C,H,W of one image; required for module specs."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _cluster_spec(
    device: list[str] | None,
    emulate: str | None,
    cluster: Path | None,
    dilation: float | None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ClusterSpec:
    """The run's devices from the shorthands or a file; every local device checked present
    (an unknown or absent one fails here, listing the present ones)."""
    import dataclasses

    from maniple.cli.app import split_names
    from maniple.cluster import load_cluster, parse_shorthand
    from maniple.cluster.checks import check_timeout
    from maniple.devices import check_present

    names = ",".join(split_names(device) or [])
    if cluster is not None:
        if names or emulate:
            raise ManipleError("give either --cluster FILE or --device/--emulate, not both")
        spec = load_cluster(cluster)
        if dilation is not None:
            spec = dataclasses.replace(spec, dilation=dilation)
        if timeout_s != DEFAULT_TIMEOUT_S:  # the file's timeout_s unless --timeout is given
            spec = dataclasses.replace(spec, timeout_s=check_timeout(timeout_s, "--timeout"))
    else:
        spec = parse_shorthand(names or None, emulate, dilation=dilation, timeout_s=timeout_s)
    for d in spec.devices:
        check_present(d)
    return spec


def _sizes(text: str) -> list[int]:
    """`--profile-sizes 1,8,64`: positive whole numbers, at least one."""
    try:
        sizes = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        sizes = []
    if not sizes or sizes[0] < 1:
        raise ManipleError(
            f"--profile-sizes takes positive batch sizes, comma-separated, got {text!r}; "
            "e.g. --profile-sizes 1,8,64,256"
        )
    return sizes


def _shape(text: str | None) -> tuple[int, int, int] | None:
    from maniple.zoo import parse_input_shape

    return parse_input_shape(text) if text else None


def register(app: typer.Typer) -> None:
    """Add this file's commands to the main app."""
    from maniple.cli.app import check_writable, console, err_console, print_json

    @app.command("infer")
    def infer_command(
        network: NetworkOpt,
        batch: Annotated[int, typer.Option("--batch", "-b", help="Images in the batch.")],
        device: DeviceOpt = None,
        emulate: EmulateOpt = None,
        cluster: ClusterOpt = None,
        planner: Annotated[
            str, typer.Option(help="greedy (the study's), exact (min makespan), equal, single.")
        ] = "greedy",
        repeats: Annotated[int, typer.Option(help="Timed runs of the split (median).")] = 3,
        profile_db: ProfileDbOpt = None,
        json_out: JsonOpt = False,
        timeline: Annotated[
            Path | None, typer.Option("--timeline", help="Write a timeline PNG here.")
        ] = None,
        check: Annotated[
            bool,
            typer.Option(
                help="Exit 1 if the split's output differs from one unit's by more than the "
                "precision's tolerance (1e-4 fp32, 1e-3 tf32, 2e-2 bf16/fp16)."
            ),
        ] = True,
        input_shape: InputShapeOpt = None,
        seed: Annotated[int, typer.Option(help="Seed of the weights and the input.")] = 0,
        dilation: Annotated[
            float | None, typer.Option(help="Time dilation of emulated boards (>= 1).")
        ] = None,
        profile_max_batch: Annotated[
            int | None,
            typer.Option(
                help="Profile sizes up to this only (default: up to the first seed size >= "
                "--batch); larger sizes are extrapolated per image."
            ),
        ] = None,
        profile_budget: Annotated[
            float | None,
            typer.Option(help="Seconds of profiling per device; the rest is extrapolated."),
        ] = None,
        profile_repeats: Annotated[int, typer.Option(help="Timed runs per profiled size.")] = 3,
        min_gain: Annotated[
            float,
            typer.Option(
                help="Run the best unit alone unless the split is predicted this much "
                "faster (0.03 = 3%)."
            ),
        ] = 0.03,
        timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
        precision: PrecisionOpt = "fp32",
        memory_format: MemoryFormatOpt = "auto",
        compile_mode: CompileOpt = "off",
        baseline: Annotated[
            str | None,
            typer.Option(
                "--baseline",
                help="torch: also time plain PyTorch on the best single GPU at the same "
                "precision, input pinned on the host, and print it beside the split.",
            ),
        ] = None,
        profile_sizes: Annotated[
            str | None,
            typer.Option(
                "--profile-sizes",
                help="Batch sizes to profile, comma-separated (e.g. 1,8,64,256: fewer "
                "shapes to compile with --compile); default: the study's sizes.",
            ),
        ] = None,
    ) -> None:
        """Profile each device, split a batch across them, run it, and compare with the
        best single device alone on the same batch (and, with --baseline torch, with plain
        PyTorch)."""
        from maniple.batch.infer import InferOptions, infer
        from maniple.batch.perf_table import SEED_BATCHES
        from maniple.batch.report import summary_lines, unit_table
        from maniple.batch.store import ProfileStore
        from maniple.batch.timeline import plot_timeline

        sizes = None
        if profile_max_batch is not None:
            if profile_max_batch < 1:
                raise ManipleError(
                    f"--profile-max-batch must be >= 1, got {profile_max_batch}; e.g. 33"
                )
            sizes = [s for s in SEED_BATCHES if s <= profile_max_batch] or [1]
        if profile_sizes is not None:
            if sizes is not None:
                raise ManipleError("give --profile-sizes or --profile-max-batch, not both")
            sizes = _sizes(profile_sizes)
        options = InferOptions(
            network=network,
            batch=batch,
            planner=planner,
            repeats=repeats,
            seed=seed,
            input_shape=_shape(input_shape),
            sizes=sizes,
            profile_repeats=profile_repeats,
            profile_budget_s=profile_budget,
            min_gain=min_gain,
            mode=exec_mode(precision, memory_format, compile_mode),
            baseline=baseline,
        ).validate()
        if timeline is not None:
            check_writable(timeline, "--timeline")
        spec = _cluster_spec(device, emulate, cluster, dilation, timeout)
        with ProfileStore(profile_db) as store:
            result = infer(spec, store, options, console=err_console)
        # The result first, the figure second: a figure that fails never costs the report.
        if json_out:
            print_json(result.to_json())
        else:
            console.print(unit_table(result))
            for line in summary_lines(result):
                console.print(line, highlight=False, markup=False, soft_wrap=True)
        figure_failed = False
        if timeline is not None:
            try:
                plot_timeline(result.run, timeline, result.single)
                err_console.print(f"timeline written to {timeline}", highlight=False)
            except (OSError, ValueError, RuntimeError) as exc:
                figure_failed = True
                err_console.print(
                    f"[bold red]error:[/] the timeline could not be written to {timeline} "
                    f"({type(exc).__name__}: {exc}); the result above is complete",
                    highlight=False,
                )
        if check and not result.ok:
            err_console.print(
                f"[bold red]check failed:[/] the split's output differs from "
                f"{result.single_device}'s by {result.max_rel_error:.1e} of its scale "
                f"(tolerance {result.tolerance:.0e})",
                highlight=False,
            )
            raise typer.Exit(1)
        if figure_failed:
            raise typer.Exit(2)

    @app.command("measure-io")
    def measure_io_command(
        network: NetworkOpt,
        device: Annotated[str, typer.Option("--device", "-d", help="One device.")],
        batch: Annotated[int, typer.Option("--batch", "-b", help="(First) batch size.")] = 1,
        max_batch: Annotated[
            int | None, typer.Option("--max-batch", help="Largest batch size with --inc.")
        ] = None,
        inc: Annotated[
            int, typer.Option("--inc", help="Step between batch sizes (0: --batch only).")
        ] = 0,
        repeats: Annotated[int, typer.Option(help="Timed copies per size (median).")] = 5,
        input_shape: InputShapeOpt = None,
        profile_db: ProfileDbOpt = None,
        json_out: JsonOpt = False,
        timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Time moving a batch to a device and its output back, per batch size (the
        study's measure_io.py); results are kept in the profile store."""
        from maniple.batch.infer import model_input_shape
        from maniple.batch.measure_io import io_sizes, measure_io, output_shape, store_io
        from maniple.batch.profile_cluster import table_network
        from maniple.batch.report import io_table
        from maniple.batch.store import ProfileStore
        from maniple.cluster.checks import check_timeout
        from maniple.devices import ModelSpec, open_device, resolve_device
        from maniple.store import device_key

        sizes = io_sizes(batch, max_batch, inc)
        timeout_s = check_timeout(timeout, "--timeout")
        check_repeats(repeats, "--repeats")
        spec = resolve_device(device)
        model = ModelSpec(network, input_shape=_shape(input_shape))
        shape = model_input_shape(model)
        from maniple.devices.host_limits import check_input_shape

        check_input_shape(shape, max(sizes))  # the largest batch must fit this host
        with ProfileStore(profile_db) as store:
            out_shape = output_shape(model, shape)
            with open_device(spec, fast_forward=True, timeout_s=timeout_s) as handle:
                results = measure_io(handle, sizes, shape, out_shape, repeats=repeats)
                key = device_key(handle)
            name = table_network(model, shape)
            store_io(store, key, name, shape, results, repeats)
            where = store.path
        if json_out:
            print_json(
                {
                    "network": name,
                    "device": spec.name,
                    "kind": key.kind,
                    "results": [m.to_json() for m in results],
                }
            )
            return
        console.print(io_table(spec.name, name, results))
        console.print(f"stored in {where}", highlight=False)
