"""CLI command for spatial model parallelism (Legion): `maniple spatial`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from maniple.cli.app import (
    DEFAULT_TIMEOUT_S,
    CompileOpt,
    DilationOpt,
    EmulateOpt,
    InputShapeOpt,
    LinkMbpsOpt,
    MemoryFormatOpt,
    NetworkOpt,
    PrecisionOpt,
    ProfileDbOpt,
    ReprofileOpt,
    TimeoutOpt,
    exec_mode,
)
from maniple.errors import ManipleError, UnknownNameError
from maniple.spatial.plan import SEARCHES, SpatialPlan
from maniple.spread import Spread, check_repeats

_EXPLAIN = "Print the schedule: per group and device, the rows received, run and sent, in bytes."


def register(app: typer.Typer) -> None:
    """Add this file's commands to the main app."""
    from maniple.cli.app import check_writable, console, print_json, progress_bar

    @app.command("spatial")
    def spatial_command(
        network: NetworkOpt,
        emulate: EmulateOpt = None,
        devices: Annotated[
            str | None, typer.Option(help="Real devices, e.g. cpu or cuda:0,cuda:1.")
        ] = None,
        search: Annotated[
            str, typer.Option(help=f"How to choose the fused groups: {', '.join(SEARCHES)}.")
        ] = "legion-wildcard",
        link_mbps: LinkMbpsOpt = 100.0,
        repeats: Annotated[int, typer.Option(help="Timed real-time runs (median).")] = 3,
        dilation: DilationOpt = None,
        input_shape: InputShapeOpt = None,
        profile_db: ProfileDbOpt = None,
        reprofile: ReprofileOpt = False,
        save_plan: Annotated[
            Path | None, typer.Option(help="Write the chosen plan here (JSON) for --plan.")
        ] = None,
        plan_file: Annotated[
            Path | None,
            typer.Option("--plan", help="Run this saved plan (from --save-plan); no profiling."),
        ] = None,
        runtime: Annotated[
            str,
            typer.Option(
                help="How bands move: star (through the coordinator every group), peer (halo "
                "rows device to device) or auto (the one predicted faster)."
            ),
        ] = "auto",
        compress: Annotated[
            str,
            typer.Option(
                help="Lossless encoding of the rows the peer runtime sends: auto (on links "
                "slower than 1 Gbit/s when maps shrink by 10%+), on or off."
            ),
        ] = "auto",
        min_gain: Annotated[
            float,
            typer.Option(
                help="Run a split only when predicted at least this fraction faster than "
                "the fastest device alone (0.03 = 3%); else that device runs alone."
            ),
        ] = 0.03,
        explain: Annotated[bool, typer.Option(help=_EXPLAIN)] = False,
        timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
        json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
        precision: PrecisionOpt = "fp32",
        memory_format: MemoryFormatOpt = "auto",
        compile_mode: CompileOpt = "off",
        testbed: Annotated[
            bool,
            typer.Option(
                help="Run on the testbed that is up (`maniple testbed up`, root): its boards "
                "as Ray nodes behind real shaped links; link byte counters in the JSON."
            ),
        ] = False,
    ) -> None:
        """Split every conv layer's rows across devices (Legion) and measure it.

        Profiles each device (emulated boards in fast-forward) unless the profile store
        already holds the costs of these devices for this network and input, picks the
        fused-layer configuration with SEARCH (or runs a saved --plan), runs it for real
        with all devices at once, and compares with the fastest device alone. The output
        is checked against the single-device output (1e-4 of its scale).
        """
        from maniple.cluster.testbed import attach
        from maniple.spatial.peer_setup import COMPRESS_MODES, RUNTIME_CHOICES
        from maniple.spatial.schedule import lower
        from maniple.spatial.schedule_peer import lower_peer
        from maniple.spatial.session import check_plan_fits
        from maniple.spatial.setup import open_cache, open_devices, prepare
        from maniple.spatial.testbed_session import legion_session
        from maniple.store import StoreFile
        from maniple.zoo import parse_input_shape

        if search not in SEARCHES:
            raise UnknownNameError("search", search, SEARCHES)
        if runtime not in RUNTIME_CHOICES:
            raise UnknownNameError("runtime", runtime, RUNTIME_CHOICES)
        if compress not in COMPRESS_MODES:
            raise UnknownNameError("compress", compress, COMPRESS_MODES)
        if not 0 <= min_gain < 1:
            raise ManipleError(f"--min-gain is a fraction in [0, 1) (0.03 = 3%), got {min_gain!r}")
        if search == "fss" and runtime == "peer":
            raise ManipleError(
                "--search fss measures star groups only; use --runtime star with fss, or "
                "legion-wildcard with --runtime peer"
            )
        check_repeats(repeats, "--repeats")
        saved = _read_plan(plan_file) if plan_file is not None else None
        if save_plan is not None:
            check_writable(save_plan, "--save-plan")
        shape = parse_input_shape(input_shape) if input_shape else None
        setup = prepare(
            network,
            devices=devices,
            emulate=emulate,
            link_mbps=link_mbps,
            dilation=dilation,
            input_shape=shape,
            timeout_s=timeout,
            mode=exec_mode(precision, memory_format, compile_mode),
            testbed=attach() if testbed else None,
        )
        if saved is not None:  # refuse a plan for something else before opening anything
            check_plan_fits(saved, setup.graph, [d.name for d in setup.spec.devices])
        with (
            StoreFile(profile_db) as store,
            open_devices(setup) as handles,
            progress_bar() as bar,
        ):
            tasks: dict[str, Any] = {}

            def progress(what: str, done: int, total: int) -> None:
                if what not in tasks:
                    tasks[what] = bar.add_task(what, total=total)
                bar.update(tasks[what], completed=done)

            cache = open_cache(store, handles, setup.graph, reprofile=reprofile)
            session = legion_session(
                setup.testbed,
                handles,
                setup.graph,
                repeats=repeats,
                progress=progress,
                cache=cache,
                compress=compress,
            )
            result = (
                session.measure_plan(saved)
                if saved
                else session.measure(search, "star" if search == "fss" else runtime, min_gain)
            )
            store_path = store.path
        if save_plan is not None:
            try:
                save_plan.write_text(result.plan.to_json() + "\n")
            except OSError as exc:
                raise ManipleError(
                    f"--save-plan {str(save_plan)!r} could not be written ({exc.strerror}); "
                    "give a path on a disk with room"
                ) from None
        schedule = None
        if explain:
            lowering = lower_peer if result.plan.runtime == "peer" else lower
            schedule = lowering(result.plan, setup.graph)
        if json_out:
            doc = result.to_json()
            doc["profile_store"] = str(store_path)
            if schedule is not None:
                doc["schedule"] = schedule.to_dict()
            print_json(doc)
            return
        console.print(str(result.plan), highlight=False, markup=False)
        if schedule is not None:
            console.print(str(schedule), highlight=False, markup=False)
        console.print(_table(result, setup.graph.name))
        console.print(_profiling_note(result, saved is not None, store_path), highlight=False)
        if save_plan is not None:
            console.print(f"saved the plan to {save_plan}", highlight=False)


def _read_plan(path: Path) -> SpatialPlan:
    """The saved plan at `path`, validated; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ManipleError(
            f"--plan {str(path)!r} is not a plan (not UTF-8 text); pass a file written by "
            "`maniple spatial --save-plan`"
        ) from None
    except OSError as exc:
        raise ManipleError(
            f"cannot read --plan {str(path)!r}: {exc.strerror}; pass a file written by "
            "`maniple spatial --save-plan`"
        ) from None
    try:
        return SpatialPlan.from_json(text)
    except ManipleError as exc:
        raise ManipleError(f"--plan {str(path)!r} is not a usable plan: {exc}") from None


def _profiling_note(result: Any, from_file: bool, store: Path) -> str:
    if from_file:
        return "ran the saved plan: profiled nothing"
    if result.reused:
        return (
            f"profiled nothing: reused the cached profiles ({', '.join(result.reused)}) from "
            f"{store} (--reprofile measures again)"
        )
    return f"profiled these devices and kept the costs in {store} for the next run"


def _table(result: Any, name: str) -> Table:
    info = result.to_json()
    table = Table(title=f"{name}: {result.search} on {', '.join(result.plan.devices)}")
    for col in ("measure", "value"):
        table.add_column(col)
    rows = [
        ("chosen", result.choice or f"{result.plan.runtime} runtime"),
        ("runtime", result.plan.runtime),
        ("fused groups", str(len(result.plan.flc))),
        ("predicted", _ms(info["predicted_ms"])),
        ("measured latency", str(Spread.of(result.latencies_ms))),
        ("  of which devices (real-time clock)", _ms(info["device_ms"])),
        ("  of which coordinator, calls, tail", _ms(info["coordinator_ms"])),
        ("devices, fast-forward clock", _ms(info["fast_forward_ms"])),
        (f"one device ({result.single_device})", _single(result)),
        ("speedup", f"{result.speedup:.2f}x ({result.speedup_verdict})"),
        ("max relative error", f"{result.max_rel_error:.1e} (tolerance {result.tolerance:.0e})"),
        *_precision_rows(result),
        ("bytes through the coordinator", f"{result.bytes_through_coordinator:,}"),
        ("bytes device to device", f"{result.bytes_between_devices:,}"),
        ("wire / raw bytes", f"{result.compression_ratio:.3f}"),
        ("profiling", f"{result.profile} (board time)"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    return table


def _precision_rows(result: Any) -> list[tuple[str, str]]:
    """The precision and the error against strict fp32, where a device is not fp32."""
    if result.error_vs_fp32 is None:
        return []
    modes = ", ".join(sorted(set(result.precision.values())))
    return [("precision", modes), ("error against strict fp32", f"{result.error_vs_fp32:.1e}")]


def _single(result: Any) -> str:
    if result.single_latencies_ms:
        return str(Spread.of(result.single_latencies_ms))
    return _ms(result.single_device_ms)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
