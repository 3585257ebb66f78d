"""Every precision on a GPU, compiled and not: a worker's output equals plain PyTorch's at
the same precision, chunked uploads equal one upload, spans split exactly, and a CPU + GPU
split equals the GPU alone within the precision's tolerance (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

from maniple.batch.baseline import torch_baseline
from maniple.devices import ModelSpec
from maniple.devices.model_exec import chunk_sizes
from maniple.devices.names import parse_device
from maniple.devices.worker import Worker
from maniple.precision import PRECISIONS, ExecMode
from maniple.tiling import SpanProgram, graph_of
from maniple.tiling.verify import relative_error

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

SHAPE = (3, 64, 64)
NET = "resnet-18"


def _plain(precision: str, x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """The model as a PyTorch user runs it at `precision` on cuda:0."""
    mode = ExecMode(precision)
    module = ModelSpec(NET, input_shape=SHAPE).build().module.eval().cuda().to(mode.dtype)
    xd = x.cuda().to(mode.dtype)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
        xd = xd.contiguous(memory_format=torch.channels_last)
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    with torch.inference_mode():
        return module(xd).float().cpu()


@pytest.mark.parametrize("compile_mode", ["off", "default", "cuda-graphs"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_worker_equals_plain_pytorch_at_its_precision(precision: str, compile_mode: str) -> None:
    mode = ExecMode(precision, compile=compile_mode)
    worker = Worker(parse_device("cuda:0").with_mode(mode), ModelSpec(NET, input_shape=SHAPE))
    x = torch.randn(260, *SHAPE, generator=torch.Generator().manual_seed(1))  # bf16: 2 chunks
    y, timing = worker.run_batch(x.pin_memory())
    assert y.dtype == mode.dtype
    ref = _plain(precision, x, mode.channels_last("cuda"))
    assert relative_error(y.float(), ref) <= mode.tolerance
    built = worker.build_times()
    if compile_mode == "off":
        assert built == {}
    else:  # built before the timed call, once per chunk shape
        n = 130 if precision in ("bf16", "fp16") else 260
        assert set(built) == {f"{n}x{SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]}"}
        assert timing.compute_ms < sum(built.values())


def test_chunked_upload_equals_one_upload() -> None:
    assert chunk_sizes(256) == [128, 128]
    assert chunk_sizes(257) == [129, 128]
    assert chunk_sizes(200) == [200]
    assert chunk_sizes(256, 64, 4) == [64, 64, 64, 64]
    spec = parse_device("cuda:0").with_mode(ExecMode("bf16"))
    worker = Worker(spec, ModelSpec(NET, input_shape=SHAPE))
    assert worker._exec.chunk_shapes((256, *SHAPE)) == [(128, *SHAPE)]
    x = torch.randn(256, *SHAPE)
    chunked, _ = worker.run_batch(x.pin_memory())
    pageable, _ = worker.run_batch(x)
    whole, _ = worker.run_batch(x[:128])
    assert torch.equal(chunked, pageable)
    assert relative_error(chunked[:128].float(), whole.float()) <= 2e-2


@pytest.mark.parametrize("precision", PRECISIONS)
def test_spans_split_exactly_at_each_precision(precision: str) -> None:
    mode = ExecMode(precision)
    worker = Worker(parse_device("cuda:0").with_mode(mode), ModelSpec(NET, input_shape=SHAPE))
    graph = graph_of(ModelSpec(NET, input_shape=SHAPE).build().module, SHAPE)
    last, rows = len(graph.units) - 1, graph.units[-1].out_shape[2]
    x = torch.randn(1, *SHAPE)
    whole, _ = worker.run_span(0, last, (0, rows), x)
    bands = []
    for band in ((0, rows // 2), (rows // 2, rows)):
        lo, hi = SpanProgram(graph, SHAPE, 0, last, out_rows=band).input_rows
        bands.append(worker.run_span(0, last, band, x[:, :, lo:hi])[0])
    split = torch.cat(bands, dim=2)
    assert relative_error(split.float(), whole.float()) <= mode.tolerance


@pytest.mark.parametrize("precision", PRECISIONS)
def test_baseline_times_plain_pytorch(precision: str) -> None:
    x = torch.randn(8, *SHAPE)
    base = torch_baseline(ModelSpec(NET, input_shape=SHAPE), "cuda:0", ExecMode(precision), x)
    assert len(base.runs_ms) == 3 and base.median_ms > 0
    assert base.to_json()["mode"]["precision"] == precision


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_and_gpu_split_equals_the_gpu_alone(precision: str, tmp_path) -> None:
    from maniple.batch.infer import InferOptions, infer
    from maniple.batch.store import ProfileStore
    from maniple.cluster import parse_shorthand

    options = InferOptions(
        NET, 16, planner="equal", repeats=1, input_shape=SHAPE, sizes=(1, 8, 16),
        mode=ExecMode(precision), baseline="torch",
    )  # fmt: skip
    with ProfileStore(tmp_path / "p.sqlite") as store:
        result = infer(parse_shorthand("cpu,cuda:0", None), store, options, progress=False)
    assert result.ok, result.max_rel_error
    assert result.tolerance == ExecMode(precision).tolerance
    assert (result.error_vs_fp32 is None) == (precision == "fp32")
    assert result.torch_baseline is not None and result.torch_baseline.device == "cuda:0"
