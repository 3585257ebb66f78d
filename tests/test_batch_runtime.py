"""Batch split runtime on local CPU devices (no Ray): the profiling adapter, the runner,
`infer` end to end, `measure-io`, and every kind of bad input the CLI must refuse."""

from __future__ import annotations

import json
import socket
import sqlite3
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from maniple.batch import (
    DeviceBatchRunner,
    DeviceKey,
    DeviceOutOfMemory,
    PerfEntry,
    PerfTable,
    ProfileStore,
    choose_plan,
    ideal_ms,
    is_out_of_memory,
    max_rel_error,
    plan_batch,
    profile_device,
    profile_sizes,
    run_batch_plan,
    table_network,
)
from maniple.batch.measure_io import io_sizes
from maniple.cli import app, main
from maniple.devices import DeviceSpec, LocalHandle, ModelSpec
from maniple.devices.tiny import TINY_INPUT_SHAPE, TINY_NETWORK, tiny_cnn
from maniple.errors import ManipleError

runner = CliRunner()
TINY = ModelSpec(TINY_NETWORK, seed=1, input_shape=TINY_INPUT_SHAPE)
TINY_ARGS = ["--network", TINY_NETWORK, "--input-shape", "3,32,32"]
OOM_LIMIT = 4


class OomNet(nn.Module):
    """A network that "runs out of memory" above OOM_LIMIT images, as a GPU would."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > OOM_LIMIT:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.conv(x).mean((2, 3))


def oom_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return OomNet().eval()


OOM_NETWORK = f"{__name__}:oom_net"


def cpu_handle(name: str, model: ModelSpec = TINY) -> LocalHandle:
    return LocalHandle(DeviceSpec("cpu", threads=1, label=name), model)


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """The real entry point: ManipleError -> one line on stderr, exit status 2."""
    monkeypatch.setattr(sys, "argv", ["maniple", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return int(info.value.code)


# -- the profiling adapter ---------------------------------------------------------------


def test_runner_times_a_cpu_batch_with_no_io() -> None:
    with cpu_handle("cpu") as h:
        exec_ms, io_ms = DeviceBatchRunner(h, TINY_INPUT_SHAPE).run(3)
    assert exec_ms > 0 and io_ms == 0.0


def test_runner_inputs_are_own_tensors_not_views() -> None:
    with cpu_handle("cpu") as h:
        r = DeviceBatchRunner(h, TINY_INPUT_SHAPE, seed=7)
        big, small = r.inputs(8).clone(), r.inputs(3)
    assert small.shape == (3, *TINY_INPUT_SHAPE)
    assert small.untyped_storage().nbytes() == small.numel() * 4  # not a view of the pool
    assert torch.equal(small, big[:3])
    with pytest.raises(ManipleError, match="positive number of images"):
        r.inputs(0)


def test_out_of_memory_is_recognised() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(MemoryError())
    relayed = ManipleError("device 'ray:x/cuda:0': run_batch failed: OutOfMemoryError: boom")
    assert is_out_of_memory(relayed)
    try:
        raise ManipleError("device 'cuda:0': run_batch failed") from RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
        )
    except ManipleError as exc:
        assert is_out_of_memory(exc)
    assert not is_out_of_memory(ManipleError("device 'cpu': shape mismatch"))


def test_out_of_memory_becomes_a_recorded_limit(tmp_path: Path) -> None:
    model = ModelSpec(OOM_NETWORK, input_shape=(3, 8, 8))
    with cpu_handle("gpu-like", model) as h, ProfileStore(tmp_path / "p.sqlite") as store:
        with pytest.raises(DeviceOutOfMemory, match="batch 5"):
            DeviceBatchRunner(h, (3, 8, 8)).run(5)
        key = DeviceKey("gpu-like", "test", "here")
        done = profile_device(h, key, "oom", (3, 8, 8), store, [1, 2, 4, 5, 8], progress=False)
        assert done.limit == OOM_LIMIT and done.stored == (1, 2, 4)
        assert "memory limit" in (done.stopped or "")
        table = store.perf_table("oom")
    assert table.max_batch == {"gpu-like": OOM_LIMIT}
    assert [e.batch for e in table.entries["gpu-like"]] == [1, 2, 4]


def test_profile_resumes_and_respects_a_budget(tmp_path: Path) -> None:
    with cpu_handle("cpu") as h, ProfileStore(tmp_path / "p.sqlite") as store:
        key = DeviceKey("cpu", "test", "here")
        first = profile_device(h, key, "tiny", TINY_INPUT_SHAPE, store, [1, 2], progress=False)
        again = profile_device(
            h, key, "tiny", TINY_INPUT_SHAPE, store, [1, 2, 3, 4, 5], budget_s=1e-9, progress=False
        )
    assert first.measured_now == (1, 2)
    assert again.measured_now == (3,) and "budget" in (again.stopped or "")
    assert again.stored == (1, 2, 3)


def test_profile_sizes_stop_just_above_the_batch() -> None:
    assert profile_sizes(100) == (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127)
    assert profile_sizes(4) == (1, 2, 3, 4)
    assert profile_sizes(1000)[-1] == 129


def test_table_network_names_the_input_shape_when_not_the_zoos() -> None:
    assert table_network(ModelSpec("squeezenet_v1.1"), (3, 224, 224)) == "squeezenet_v1.1"
    assert table_network(ModelSpec("squeezenet_v1.1"), (3, 112, 112)) == (
        "squeezenet_v1.1@3x112x112"
    )
    assert table_network(TINY, TINY_INPUT_SHAPE) == f"{TINY_NETWORK}@3x32x32"


# -- the runner --------------------------------------------------------------------------


def two_cpu_table() -> PerfTable:
    return PerfTable(
        "tiny",
        {
            "cpu-a": (PerfEntry(1, 1.0), PerfEntry(16, 16.0)),
            "cpu-b": (PerfEntry(1, 2.0), PerfEntry(16, 32.0)),
            "cpu-c": (PerfEntry(1, 100.0), PerfEntry(16, 1600.0)),
        },
    )


def test_run_batch_plan_restores_input_order_and_skips_empty_units() -> None:
    plan = plan_batch(two_cpu_table(), 12, "exact")
    assert plan.shares == {"cpu-a": 8, "cpu-b": 4, "cpu-c": 0}
    x = torch.randn(12, *TINY_INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
    handles = [cpu_handle("cpu-a"), cpu_handle("cpu-b")]  # cpu-c gets nothing: not opened
    try:
        run = run_batch_plan(plan, handles, x)
    finally:
        for h in handles:
            h.close()
    reference = tiny_cnn(seed=1)(x)
    assert max_rel_error(run.output, reference) <= 1e-5
    units = {u.device: u for u in run.units}
    assert units["cpu-c"].called is False and units["cpu-c"].end_ms == 0.0
    assert units["cpu-a"].first == 0 and units["cpu-b"].first == 8
    for u in (units["cpu-a"], units["cpu-b"]):
        assert u.called and u.device_ms > 0 and u.end_ms > u.start_ms
        assert u.end_ms <= run.measured_ms <= run.wall_ms + 1.0
    doc = run.to_json()
    assert doc["shares"] == plan.shares and len(doc["units"]) == 3
    json.dumps(doc)


def test_run_batch_plan_refuses_a_mismatched_batch_or_a_missing_device() -> None:
    plan = plan_batch(two_cpu_table(), 12, "exact")
    with cpu_handle("cpu-a") as a:
        with pytest.raises(ManipleError, match="batch of 12 images"):
            run_batch_plan(plan, [a], torch.zeros(5, *TINY_INPUT_SHAPE))
        with pytest.raises(ManipleError, match="cpu-b, which is not open"):
            run_batch_plan(plan, [a], torch.zeros(12, *TINY_INPUT_SHAPE))


def test_max_rel_error_is_relative_to_the_output_scale() -> None:
    ref = torch.tensor([[10.0, -20.0]])
    assert max_rel_error(ref + torch.tensor([[0.0, 0.5]]), ref) == pytest.approx(0.025)
    with pytest.raises(ManipleError, match="differ in shape"):
        max_rel_error(torch.zeros(2, 2), ref)


def test_small_predicted_gains_run_the_best_unit_alone() -> None:
    table = PerfTable(
        "t",
        {
            "gpu": (PerfEntry(1, 1.0), PerfEntry(100, 100.0)),
            "cpu": (PerfEntry(1, 60.0), PerfEntry(100, 6000.0)),
        },
    )
    plan, planned, why = choose_plan(table, 100, "exact", min_gain=0.03)
    assert planned.shares["cpu"] == 1 and plan.shares == {"gpu": 100, "cpu": 0}
    assert plan.planner == "exact" and "below the 3% minimum gain" in (why or "")
    plan, planned, why = choose_plan(table, 100, "exact", min_gain=0.0)
    assert plan == planned and why is None
    plan, _, why = choose_plan(table, 100, "equal")
    assert plan.shares == {"gpu": 50, "cpu": 50} and why is None


def test_ideal_is_the_batch_over_the_summed_throughput() -> None:
    assert ideal_ms(two_cpu_table(), 16) == pytest.approx(16 / (1 + 0.5 + 0.01))


# -- the CLI: infer ----------------------------------------------------------------------


def test_infer_json_on_the_cpu(tmp_path: Path) -> None:
    db = tmp_path / "p.sqlite"
    png = tmp_path / "timeline.png"
    args = ["infer", *TINY_ARGS, "--device", "cpu", "--batch", "6", "--repeats", "1"]
    result = runner.invoke(app, [*args, "--profile-db", str(db), "--json", "--timeline", str(png)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for key in ("planner", "batch", "shares", "makespan_ms", "measured_ms", "single_device_ms",
                "speedup", "max_rel_error", "fraction_of_ideal", "timeline"):  # fmt: skip
        assert key in doc, key
    assert doc["shares"] == {"cpu": 6} and doc["batch"] == 6 and doc["planner"] == "greedy"
    assert doc["max_rel_error"] == 0.0 and doc["outputs_equal"] is True
    assert doc["profile"][0]["measured_now"] == [1, 2, 3, 4, 5, 7]
    assert png.stat().st_size > 1000
    again = runner.invoke(app, [*args, "--profile-db", str(db), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["profile"][0]["measured_now"] == []  # resumed: nothing new


def test_infer_splits_across_two_cpu_workers(tmp_path: Path) -> None:
    cluster = tmp_path / "two.yaml"
    cluster.write_text(
        "devices:\n"
        "  - {kind: cpu, name: cpu-a, threads: 1}\n"
        "  - {kind: cpu, name: cpu-b, threads: 1}\n"
    )
    args = ["infer", *TINY_ARGS, "--cluster", str(cluster), "--batch", "16", "--planner"]
    result = runner.invoke(
        app,
        [*args, "equal", "--repeats", "1", "--profile-db", str(tmp_path / "p.sqlite")],
    )
    assert result.exit_code == 0, result.output
    assert "cpu-a" in result.stdout and "cpu-b" in result.stdout
    assert "speedup over" in result.stdout and "equal" in result.stdout


@pytest.mark.parametrize("batch", ["0", "-3"])
def test_infer_refuses_a_batch_below_one(
    batch: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    db = tmp_path / "p.sqlite"
    code = run_main(
        monkeypatch, "infer", *TINY_ARGS, "-d", "cpu", "--batch", batch, "--profile-db", str(db)
    )
    assert code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--batch must be a positive number of images, got {batch}" in err
    assert not db.exists()  # refused before anything was opened


def test_infer_names_an_absent_device_and_lists_the_present_ones(tmp_path: Path) -> None:
    # Through CliRunner, not main(): main() prints the message as rich markup, and the
    # device grammar in it ("ray:NODE[/cpu|/cuda:N]") is not valid markup (reported).
    db = tmp_path / "p.sqlite"
    args = ["infer", *TINY_ARGS, "--batch", "4", "--profile-db", str(db)]
    result = runner.invoke(app, [*args, "-d", "cpu,cuda:7"])
    assert isinstance(result.exception, ManipleError)
    assert "'cuda:7' is not present" in str(result.exception)
    assert "Present devices: cpu" in str(result.exception)
    result = runner.invoke(app, [*args, "-d", "tpu"])
    assert isinstance(result.exception, ManipleError)
    assert "bad device name 'tpu'" in str(result.exception)
    assert not db.exists()  # refused before the store was opened


def test_infer_records_an_out_of_memory_limit_and_keeps_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    db = tmp_path / "p.sqlite"
    base = ["infer", "--network", OOM_NETWORK, "--input-shape", "3,8,8", "-d", "cpu"]
    base += ["--profile-db", str(db), "--repeats", "1", "--profile-max-batch", "8"]
    assert run_main(monkeypatch, *base, "--batch", "9") == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "ran out of memory at batch 5" in err and "recorded 4 as its limit" in err
    assert "does not fit" in err and "at most 4" in err
    with ProfileStore(db) as store:
        table = store.perf_table(f"{OOM_NETWORK}@3x8x8")
    assert table.max_batch == {"cpu": 4} and [e.batch for e in table.entries["cpu"]] == [1, 2, 3, 4]
    result = runner.invoke(app, [*base, "--batch", "4", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["shares"] == {"cpu": 4}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a database at all" * 40, "not a maniple profile store"),
        ("foreign", "SQLite database of another program"),
    ],
)
def test_infer_refuses_a_corrupt_or_foreign_profile_file_and_leaves_it(
    content: bytes | str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    db = tmp_path / "p.sqlite"
    if content == "foreign":
        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE songs (title TEXT)")
            con.execute("INSERT INTO songs VALUES ('keep me')")
        con.close()
    else:
        db.write_bytes(content)  # type: ignore[arg-type]
    before = db.read_bytes()
    code = run_main(
        monkeypatch, "infer", *TINY_ARGS, "-d", "cpu", "--batch", "4", "--profile-db", str(db)
    )
    assert code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "--profile-db" in err
    assert db.read_bytes() == before


def test_infer_refuses_an_unknown_planner(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    assert run_main(monkeypatch, "infer", *TINY_ARGS, "-d", "cpu", "-b", "4", "--planner", "x") == 2
    assert "unknown planner 'x'" in " ".join(capsys.readouterr().err.split())


# -- the CLI: measure-io -----------------------------------------------------------------


def test_measure_io_prints_and_stores_each_size(tmp_path: Path) -> None:
    db = tmp_path / "p.sqlite"
    args = ["measure-io", *TINY_ARGS, "-d", "cpu", "--batch", "2", "--max-batch", "6"]
    result = runner.invoke(app, [*args, "--inc", "2", "--profile-db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["batch"] for r in doc["results"]] == [2, 4, 6]
    assert doc["results"][0]["input_bytes"] == 2 * 3 * 32 * 32 * 4
    assert doc["results"][0]["output_bytes"] == 2 * 10 * 4
    with ProfileStore(db) as store:
        key = DeviceKey("cpu", doc["kind"], socket.gethostname())
        ms = store.get_cost(key, doc["network"], "4x3x32x32", "S", -1, -1, 32)
    assert ms == 0.0
    table = runner.invoke(app, [*args, "--inc", "2", "--profile-db", str(db)])
    assert table.exit_code == 0 and "to device" in table.stdout


def test_measure_io_sizes_follow_the_seed() -> None:
    assert io_sizes(4) == [4]
    assert io_sizes(1, 10, 4) == [1, 5, 9]
    with pytest.raises(ManipleError, match="--max-batch"):
        io_sizes(8, 4, 2)
    with pytest.raises(ManipleError, match="--batch must be a whole number >= 1, got 0"):
        io_sizes(0)


@pytest.mark.parametrize("command", ["infer", "measure-io"])
def test_help_renders(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--network" in result.stdout
