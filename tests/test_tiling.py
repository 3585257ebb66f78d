"""Tiled execution: split, run band by band, stitch equals the unsplit model."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maniple import zoo
from maniple.errors import ManipleError
from maniple.graph import LayerGraph, capture, halo
from maniple.tiling import SpanProgram, TiledModel, split_rows, stitch
from maniple.tiling.verify import random_flc, relative_error, verify_split

from nets import OddOps

_graphs: dict[str, LayerGraph] = {}


def graph(name: str) -> LayerGraph:
    if name not in _graphs:
        _graphs[name] = capture(zoo.build(name), zoo.input_shape(name), name)
    return _graphs[name]


@pytest.mark.parametrize("name", zoo.names())
def test_fixed_seeds_every_zoo_network(name: str) -> None:
    """A fixed seed set that always runs in CI: 2 random splits, 2-8 devices."""
    for seed in (1, 2):
        devices = 2 + (seed * 3 + len(name)) % 7
        result = verify_split(graph(name), trials=1, devices=devices, seed=seed)
        assert result.max_rel_error <= 1e-4, result.to_json()["worst"]


@pytest.mark.parametrize("name", ["resnet-18", "squeezenet_v1.1", "mobilenet", "vgg-16"])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), devices=st.integers(2, 8))
def test_random_splits_hypothesis(name: str, seed: int, devices: int) -> None:
    g = graph(name)
    rng = random.Random(seed)
    _, flc = random_flc(len(g.units), rng)
    ratios = [rng.uniform(0.0, 1.0) for _ in range(devices)]
    ratios[0] += 0.01
    x = torch.randn(1, *g.input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        split = TiledModel(g).run_spatial(x, flc, ratios)
        assert relative_error(split, g.spatial_module(x)) <= 1e-4


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), devices=st.integers(1, 5))
def test_odd_ops_split_exactly(seed: int, devices: int) -> None:
    g = _graphs.setdefault("odd", capture(OddOps(), (3, 61, 47), "odd"))
    assert verify_split(g, trials=1, devices=devices, seed=seed).ok


@pytest.mark.parametrize("name", ["resnet-50", "inception_v3", "squeezenet_v1.0"])
def test_single_band_is_bit_for_bit(name: str) -> None:
    g = graph(name)
    x = torch.randn(1, *g.input_shape)
    with torch.no_grad():
        whole = TiledModel(g).run_spatial(x, [(0, len(g.units) - 1)], [1.0])
        assert torch.equal(whole, g.spatial_module(x))


@pytest.mark.parametrize("name", ["resnet-50", "inception_v3", "densenet-121", "yolov2"])
def test_work_matches_the_halo_math(name: str) -> None:
    """Each node computes exactly the rows the halo math predicts, no more."""
    g = graph(name)
    first, last = 2, min(len(g.units) - 1, 6)
    h = g.units[last].out_shape[2]
    band = (h // 3, h // 3 + max(1, h // 4))
    prog = SpanProgram(g, None, first, last, band)
    plan = halo(g, first, last, band)
    x = torch.randn(1, *g.units[first].in_shape[1:])
    lo, hi = prog.input_rows
    with torch.no_grad():
        out = prog(x[:, :, lo:hi])
    assert out.shape[2] == band[1] - band[0]
    assert prog.rows_computed == {name: nb.out_rows for name, nb in plan.nodes}


def test_float16_splits_close() -> None:
    g = capture(OddOps(), (3, 61, 47), "odd16")
    result = verify_split(g, trials=3, devices=3, seed=5, dtype=torch.float16, tolerance=1e-2)
    assert result.ok, result.max_rel_error


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_splits_exactly(dtype: torch.dtype) -> None:
    g = capture(zoo.build("resnet-50"), (3, 224, 224), "resnet-50")
    tol = 1e-4 if dtype == torch.float32 else 1e-2
    assert verify_split(g, trials=3, devices=4, dtype=dtype, device="cuda", tolerance=tol).ok


def test_program_takes_only_the_halo_rows() -> None:
    g = graph("vgg-16")
    prog = SpanProgram(g, None, 0, 2, (10, 20))
    assert prog.input_rows == (18, 42)
    with pytest.raises(ManipleError, match="needs input rows"):
        prog(torch.zeros(1, 3, 224, 224))


def test_program_from_module_reuses_the_capture() -> None:
    model = zoo.build("squeezenet_v1.1")
    a = SpanProgram(model, (3, 224, 224), 0, 1, (0, 10))
    b = SpanProgram(model, (3, 224, 224), 2, 3, (5, 9))
    assert a.graph is b.graph


def test_tiled_model_caches_programs() -> None:
    tm = TiledModel(graph("vgg-16"))
    assert tm.program(0, 3, (0, 50)) is tm.program(0, 3, (0, 50))


@given(rows=st.integers(1, 300), ratios=st.lists(st.floats(0, 10), min_size=1, max_size=8))
def test_split_rows_covers_every_row_once(rows: int, ratios: list[float]) -> None:
    positive = sum(r > 0 for r in ratios)
    if positive == 0 or positive > rows:
        with pytest.raises(ManipleError):
            split_rows(rows, ratios)
        return
    bands = split_rows(rows, ratios)
    assert bands[0][0] == 0 and bands[-1][1] == rows
    assert all(a[1] == b[0] for a, b in zip(bands, bands[1:]))
    assert all((b - a == 0) == (r == 0) for (a, b), r in zip(bands, ratios))


@pytest.mark.parametrize(
    ("rows", "ratios", "message"),
    [(10, [0, 0], "positive"), (10, [-1, 2], "negative"), (3, [1, 1, 1, 1], "only 3 rows")],
)
def test_split_rows_errors(rows: int, ratios: list[float], message: str) -> None:
    with pytest.raises(ManipleError, match=message):
        split_rows(rows, ratios)


def test_span_outside_spatial_part_is_clear() -> None:
    with pytest.raises(ManipleError, match="outside the spatial part"):
        SpanProgram(graph("vgg-16"), None, 0, 18, (0, 1))


def test_bad_flc_is_clear() -> None:
    tm = TiledModel(graph("vgg-16"))
    x = torch.zeros(1, 3, 224, 224)
    with pytest.raises(ManipleError, match="should start at unit 3"):
        tm.run_spatial(x, [(0, 2), (4, 17)], [1.0])
    with pytest.raises(ManipleError, match="last group must end"):
        tm.run_spatial(x, [(0, 2)], [1.0])


def test_more_devices_than_rows_go_to_the_fastest() -> None:
    """VGG-16 ends at 7 rows: with 8 devices the slowest sits the last groups out."""
    tm = TiledModel(graph("vgg-16"))
    bands = tm.group_bands((17, 17), [1, 1, 1, 1, 1, 1, 1, 0.5])
    assert bands[-1] == (7, 7) and all(b - a == 1 for a, b in bands[:-1])


def test_stitch_skips_empty_bands() -> None:
    a, empty = torch.ones(1, 2, 3, 4), torch.ones(1, 2, 0, 4)
    assert stitch([a, empty, a]).shape == (1, 2, 6, 4)


@pytest.mark.parametrize(
    "name",
    ["efficientnet-b0", "mobilenet-v3-large", "regnety-400mf", "convnext-tiny", "shufflenet-v2"],
)
def test_modern_zoo_networks_split_exactly_over_six_devices(name: str) -> None:
    """Sync points, LayerNorm on NHWC, channel shuffles: random cuts, six devices."""
    result = verify_split(graph(name), trials=3, devices=6, seed=7)
    assert result.ok, result.to_json()["worst"]
