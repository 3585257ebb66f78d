"""Halo math against brute force: autograd finds which input rows a band really depends on.

For a random span of units and a random band of its output, the gradient of a random
projection of the band with respect to the span's input is non-zero exactly on the rows
that matter; the halo math must name exactly that range (first and last row included).
Small inputs keep it fast; float64 keeps tiny gradients from rounding to zero.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maniple import zoo
from maniple.errors import ManipleError
from maniple.graph import LayerGraph, alpha, capture, halo, input_alpha, rows_needed
from maniple.graph.types import _sub_module

from nets import OddOps

SMALL = {
    "mobilenet": 64,
    "squeezenet_v1.0": 96,
    "squeezenet_v1.1": 64,
    "resnet-18": 64,
    "resnet-34": 64,
    "resnet-50": 64,
    "inception_v3": 139,
    "vgg-16": 32,
    "vgg-19": 32,
    "densenet-121": 64,
    "yolov2": 64,
}
_cache: dict[str, LayerGraph] = {}


def small_graph(name: str) -> LayerGraph:
    if name not in _cache:
        size = SMALL[name]
        model = zoo.build(name).double()
        _cache[name] = capture(model.float(), (3, size, size), name)
        _cache[name].module.double()
    return _cache[name]


def rows_that_matter(g: LayerGraph, first: int, last: int, band: tuple[int, int]) -> list[int]:
    sub = _sub_module(g.module, g.units[first].input, g.units[last].output)
    shape = g.units[first].in_shape
    gen = torch.Generator().manual_seed(first * 1000 + last)
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    y = sub(x)[:, :, band[0] : band[1]]
    (y * torch.randn(y.shape, generator=gen, dtype=torch.float64)).sum().backward()
    assert x.grad is not None
    per_row = x.grad.abs().sum(dim=(0, 1, 3))
    return [int(r) for r in torch.nonzero(per_row).flatten()]


@st.composite
def span_and_band(draw: st.DrawFn, g: LayerGraph) -> tuple[int, int, tuple[int, int]]:
    n = len(g.units)
    first = draw(st.integers(0, n - 1))
    last = draw(st.integers(first, min(n - 1, first + 6)))
    h = g.units[last].out_shape[2]
    a = draw(st.integers(0, h - 1))
    b = draw(st.integers(a + 1, h))
    return first, last, (a, b)


@pytest.mark.parametrize("name", sorted(SMALL))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_halo_is_exactly_the_rows_that_matter(name: str, data: st.DataObject) -> None:
    g = small_graph(name)
    first, last, band = data.draw(span_and_band(g))
    lo, hi = halo(g, first, last, band).input_rows
    rows = rows_that_matter(g, first, last, band)
    assert rows, "no input row affects the band"
    assert (rows[0], rows[-1] + 1) == (lo, hi), (first, last, band)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_halo_on_odd_ops(data: st.DataObject) -> None:
    g = _cache.setdefault("odd", capture(OddOps(), (3, 61, 47), "odd"))
    g.module.double()
    first, last, band = data.draw(span_and_band(g))
    lo, hi = halo(g, first, last, band).input_rows
    rows = rows_that_matter(g, first, last, band)
    assert (rows[0], rows[-1] + 1) == (lo, hi)


def test_every_node_in_a_residual_block_gets_rows() -> None:
    g = small_graph("resnet-18")
    plan = halo(g, 4, 4, (3, 5))  # layer2.0: stride-2 block with a downsample branch
    names = [n for n, _ in plan.nodes]
    assert names == list(g.units[4].nodes)
    add = dict(plan.nodes)["add"] if "add" in names else None
    assert plan.input_rows[0] <= 3 * 2 - 1 and plan.input_rows[1] >= 5 * 2
    assert add is None or add.out_rows == (3, 5)


def test_border_padding_only_at_true_borders() -> None:
    g = small_graph("vgg-16")
    h = g.units[0].out_shape[2]
    top = dict(halo(g, 0, 1, (0, 4)).nodes)
    mid = dict(halo(g, 0, 1, (10, 14)).nodes)
    bottom = dict(halo(g, 0, 1, (h - 4, h)).nodes)
    conv = g.units[0].nodes[0]
    assert top[conv].pad == (1, 0) and mid[conv].pad == (0, 0) and bottom[conv].pad == (0, 1)


def test_alpha_grows_with_fusion_depth() -> None:
    g = small_graph("vgg-16")
    band = (8, 16)
    assert alpha(g, 0, 0, band, band) == 1.0
    a1, a2 = alpha(g, 0, 1, band, band), alpha(g, 0, 2, (4, 8), band)
    assert 1.0 < a1 <= a2
    assert rows_needed(g, 0, 1, band) == (7, 17)
    assert input_alpha(g, 0, 1, band, band) > 1.0


@pytest.mark.parametrize(
    ("band", "message"),
    [((3, 3), "empty"), ((5, 2), "empty"), ((-1, 4), "outside"), ((0, 10_000), "outside")],
)
def test_bad_bands(band: tuple[int, int], message: str) -> None:
    with pytest.raises(ManipleError, match=message):
        halo(small_graph("vgg-16"), 0, 1, band)


def test_span_outside_spatial_part() -> None:
    with pytest.raises(ManipleError, match="outside the spatial part"):
        halo(small_graph("vgg-16"), 3, 99, (0, 1))
