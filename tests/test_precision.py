"""Precision as a run and device setting, on the CPU: parsing and its errors, the cluster
file's `precision:` key, profiles keyed by precision, a worker at bf16/fp16, a split at
bf16 held to bf16's tolerance with its error against fp32 beside it, and the torch
baseline of `maniple infer --baseline torch`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from maniple.cli import app
from maniple.cli.boundary import EXIT_USER_ERROR, run_guarded
from maniple.cluster.spec import parse_cluster_text
from maniple.devices import ModelSpec
from maniple.devices.model_exec import chunk_sizes
from maniple.devices.names import DeviceSpec, parse_device
from maniple.devices.worker import Worker
from maniple.errors import ManipleError
from maniple.precision import (
    TOLERANCES,
    ExecMode,
    check_tf32_agree,
    loosest_tolerance,
    parse_precision,
)
from maniple.store.keys import device_kind
from maniple.tiling import SpanProgram, graph_of
from maniple.tiling.verify import relative_error

SHAPE = (3, 48, 48)


def test_precisions_parse_and_name_the_valid_ones() -> None:
    assert parse_precision("BF16") == "bf16"
    assert parse_precision("float16") == parse_precision("half") == "fp16"
    with pytest.raises(ManipleError, match="valid: fp32, tf32, bf16, fp16"):
        parse_precision("int8")
    with pytest.raises(ManipleError, match="Valid choices: auto, channels-last, contiguous"):
        ExecMode("fp32", memory_format="nhwc")
    with pytest.raises(ManipleError, match="compile mode"):
        ExecMode("fp32", compile="fast")
    assert ExecMode("bf16").tolerance == 2e-2
    assert loosest_tolerance([ExecMode(), ExecMode("tf32")]) == TOLERANCES["tf32"]


def test_modes_resolve_per_device_type() -> None:
    bf16 = ExecMode("bf16", compile="default")
    assert bf16.channels_last("cuda") and not bf16.channels_last("cpu")
    assert not ExecMode("fp32").channels_last("cuda")
    assert bf16.on("cpu").compile == "off" and bf16.on("cuda").compile == "default"
    assert ExecMode().describe() == "fp32"
    assert bf16.describe() == "bf16 compiled(default)"


def test_a_device_keeps_its_own_precision_and_boards_stay_fp32() -> None:
    run = ExecMode("bf16", compile="default")
    assert DeviceSpec("cpu", precision="fp16").with_mode(run).exec_mode.precision == "fp16"
    assert parse_device("cpu").with_mode(run).exec_mode == run
    board = parse_device("emu:firefly-rk3399")
    assert board.with_mode(run).exec_mode == ExecMode()


def test_tf32_and_fp32_gpus_cannot_share_a_process() -> None:
    assert check_tf32_agree([("cuda:0", ExecMode("tf32")), ("cuda:1", ExecMode("bf16"))])
    assert not check_tf32_agree([("cuda:0", ExecMode("fp32"))])
    with pytest.raises(ManipleError, match="cuda:0 at tf32 and cuda:1 at fp32"):
        check_tf32_agree([("cuda:0", ExecMode("tf32")), ("cuda:1", ExecMode("fp32"))])


def test_cluster_file_precision_key() -> None:
    spec = parse_cluster_text("devices:\n  - {kind: cpu, precision: bf16}\n  - cuda:1\n")
    assert spec.devices[0].precision == "bf16" and spec.devices[1].precision is None
    assert spec.to_dict()["precision"] == {"cpu": "bf16"}
    resolved = spec.with_mode(ExecMode("fp16"))
    assert [d.exec_mode.precision for d in resolved.devices] == ["bf16", "fp16"]
    bad = r":2: devices\[0\].precision: 'int4' is not a precision; valid"
    with pytest.raises(ManipleError, match=bad):
        parse_cluster_text("devices:\n  - {kind: cpu, precision: int4}\n")
    with pytest.raises(ManipleError, match="precision"):  # boards have no such key
        parse_cluster_text("devices:\n  - {kind: emulated, preset: odroid-xu4, precision: bf16}\n")


def test_profiles_are_keyed_by_precision() -> None:
    cpu = parse_device("cpu")
    plain = device_kind(cpu)
    assert device_kind(cpu.with_mode(ExecMode())) == plain  # fp32 keeps the old key
    assert device_kind(cpu.with_mode(ExecMode("bf16"))) == f"{plain} [bf16]"
    assert device_kind(cpu.with_mode(ExecMode("bf16", compile="default"))) == f"{plain} [bf16]"


def test_chunks_are_near_equal_and_bounded() -> None:
    assert chunk_sizes(256) == [128, 128]
    assert chunk_sizes(255) == [255]
    assert sum(chunk_sizes(1001, 64, 4)) == 1001 and len(chunk_sizes(1001, 64, 4)) == 4


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_worker_runs_batches_and_bands_at_its_precision(precision: str) -> None:
    mode = ExecMode(precision)
    model = ModelSpec("resnet-18", input_shape=SHAPE)
    worker = Worker(parse_device("cpu").with_mode(mode), model)
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0))
    y, _ = worker.run_batch(x)
    module = model.build().module.eval()
    with torch.inference_mode():
        ref32 = module(x)
        ref = module.to(mode.dtype)(x.to(mode.dtype))
    assert y.dtype == mode.dtype
    assert relative_error(y, ref) <= mode.tolerance
    assert 0 < relative_error(y, ref32) <= mode.tolerance  # not fp32, but close
    graph = graph_of(model.build().module, SHAPE)  # the same seeded weights, fp32
    last, rows = len(graph.units) - 1, graph.units[-1].out_shape[2]
    whole, _ = worker.run_span(0, last, (0, rows), x)
    bands = []
    for band in ((0, 1), (1, rows)):
        lo, hi = SpanProgram(graph, SHAPE, 0, last, out_rows=band).input_rows
        bands.append(worker.run_span(0, last, band, x[:, :, lo:hi])[0])
    assert relative_error(torch.cat(bands, dim=2), whole) <= mode.tolerance


def _json(result: object) -> dict:
    return json.loads(result.stdout)  # type: ignore[attr-defined]


def test_infer_at_bf16_with_the_torch_baseline(tmp_path: Path) -> None:
    args = ["infer", "--network", "resnet-18", "--batch", "4", "--device", "cpu",
            "--input-shape", "3,32,32", "--precision", "bf16", "--baseline", "torch",
            "--profile-sizes", "1,4", "--repeats", "1", "--profile-db",
            str(tmp_path / "p.sqlite"), "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = _json(result)
    assert doc["tolerance"] == 2e-2 and doc["outputs_equal"]
    assert doc["precision"]["cpu"]["precision"] == "bf16"
    assert 0 < doc["error_vs_fp32"] < 2e-2
    assert doc["torch_baseline"]["device"] == "cpu"
    assert doc["torch_baseline"]["mode"]["precision"] == "bf16"
    assert doc["speedup_over_torch"] > 0


def test_infer_refuses_bad_precision_options(tmp_path: Path) -> None:
    base = ["infer", "--network", "resnet-18", "--batch", "2", "--device", "cpu"]
    for extra, text in (
        (["--precision", "fp8"], "valid: fp32, tf32, bf16, fp16"),
        (["--compile", "turbo"], "unknown compile mode"),
        (["--baseline", "onnx"], "unknown baseline"),
        (["--profile-sizes", "0,4"], "--profile-sizes takes positive batch sizes"),
    ):
        said: list[str] = []
        code = run_guarded(typer.main.get_command(app), [*base, *extra], said.append, print)
        assert code == EXIT_USER_ERROR, (extra, said)
        assert text in " ".join(said), (extra, said)


def test_verify_at_bf16_reports_the_error_against_fp32() -> None:
    args = ["verify", "resnet-18", "--precision", "bf16", "--trials", "1", "--devices", "3",
            "--input-shape", "3,48,48", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = _json(result)
    assert doc["precision"] == "bf16" and doc["tolerance"] == 2e-2 and doc["ok"]
    assert 0 < doc["error_vs_fp32"] < 2e-2
