"""Layer graph: units, tail, features and MACs of the zoo, and clear errors for bad models."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from maniple import zoo
from maniple.cli import app
from maniple.errors import ManipleError
from maniple.graph import NoSpatialPartError, TraceError, UnsupportedOpError, capture

from nets import OddOps, RollNet, TailOnly, Untraceable

EXPECTED_UNITS = {"vgg-16": 18, "resnet-50": 18, "resnet-18": 10}


@pytest.fixture(scope="module")
def graphs() -> dict:
    return {name: capture(zoo.build(name), zoo.input_shape(name), name) for name in zoo.names()}


def test_every_zoo_network_has_units_and_a_consistent_tail(graphs: dict) -> None:
    for name, g in graphs.items():
        assert len(g.units) >= 5, name
        for prev, unit in zip(g.units, g.units[1:]):
            assert unit.input == prev.output
        assert g.units[0].input == "x"
        in_units = {n for u in g.units for n in u.nodes}
        assert not in_units & {n.name for n in g.tail}


@pytest.mark.parametrize(("name", "count"), sorted(EXPECTED_UNITS.items()))
def test_unit_counts(graphs: dict, name: str, count: int) -> None:
    assert len(graphs[name].units) == count


def test_vgg16_units_are_13_convs_and_5_pools(graphs: dict) -> None:
    kinds = [u.kind for u in graphs["vgg-16"].units]
    assert kinds.count("conv") == 13 and kinds.count("max_pool") == 5
    assert [(u.kernel, u.padding, u.stride) for u in graphs["vgg-16"].units[:3]] == [
        (3, 1, 1),
        (3, 1, 1),
        (2, 0, 2),
    ]


def test_resnet50_is_stem_pool_and_16_blocks(graphs: dict) -> None:
    kinds = [u.kind for u in graphs["resnet-50"].units]
    assert kinds[:2] == ["conv", "max_pool"] and kinds[2:] == ["block"] * 16
    assert [n.kind for n in graphs["resnet-50"].tail] == ["adaptiveavgpool2d", "flatten", "linear"]


@pytest.mark.parametrize(("name", "gmacs"), [("vgg-16", 15.5), ("resnet-50", 4.1)])
def test_macs_match_published(graphs: dict, name: str, gmacs: float) -> None:
    assert graphs[name].macs / 1e9 == pytest.approx(gmacs, rel=0.02)


def test_yolov2_has_no_tail(graphs: dict) -> None:
    g = graphs["yolov2"]
    assert g.tail == [] and g.units[-1].out_shape == (1, 125, 13, 13)


def test_spatial_and_tail_modules_compose_to_the_model(graphs: dict) -> None:
    g = graphs["resnet-18"]
    x = torch.randn(1, *g.input_shape)
    with torch.no_grad():
        assert torch.equal(g.tail_module(g.spatial_module(x)), g.module(x))


def test_custom_ops_are_row_local() -> None:
    g = capture(OddOps(), (3, 61, 47))
    assert g.tail == []
    assert {"upsample", "shuffle", "unshuffle", "avg_pool", "max_pool"} <= {u.kind for u in g.units}


def test_untraceable_module_says_why_and_what_to_do() -> None:
    with pytest.raises(TraceError, match="control flow"):
        capture(Untraceable(), (3, 8, 8))


def test_unknown_op_names_node_and_module() -> None:
    with pytest.raises(UnsupportedOpError, match=r"node 'roll'.*function 'roll'.*register_op"):
        capture(RollNet(), (3, 8, 8))


def test_no_spatial_part_is_a_clear_error() -> None:
    with pytest.raises(NoSpatialPartError, match="no spatial part"):
        capture(TailOnly(), (3, 8, 8))


def test_bad_input_shape() -> None:
    with pytest.raises(ManipleError, match="positive"):
        capture(OddOps(), (3, 0, 8))


runner = CliRunner()


def test_cli_models_lists_the_zoo() -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    models = json.loads(result.output)["models"]
    assert len(models) == len(zoo.names()) >= 16 and {m["name"] for m in models} == set(zoo.names())


@pytest.mark.parametrize(("name", "count"), sorted(EXPECTED_UNITS.items()))
def test_cli_inspect_json(name: str, count: int) -> None:
    result = runner.invoke(app, ["inspect", name, "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert len(info["units"]) == count and info["input_shape"] == list(zoo.input_shape(name))
    assert set(info["units"][0]) >= {
        "index",
        "name",
        "kind",
        "kernel",
        "stride",
        "padding",
        "out_shape",
        "flops",
    }
    assert "tail" in info


def test_cli_inspect_module_spec() -> None:
    result = runner.invoke(app, ["inspect", "nets:odd_ops", "--input-shape", "3,40,40", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["input_shape"] == [3, 40, 40]


MODERN = (
    "efficientnet-b0",
    "mobilenet-v3-large",
    "regnety-400mf",
    "convnext-tiny",
    "shufflenet-v2",
)


def test_nine_tenths_of_every_zoo_network_splits_by_rows(graphs: dict) -> None:
    for name, g in graphs.items():
        assert g.spatial_macs_fraction >= 0.9, (name, g.spatial_macs_fraction)
    expected_syncs = {"efficientnet-b0": 16, "mobilenet-v3-large": 8, "regnety-400mf": 16}
    for name in MODERN:
        assert len(graphs[name].sync_points) == expected_syncs.get(name, 0), name
        stop = graphs[name].spatial_stop
        assert stop is not None and stop.kind in ("adaptiveavgpool2d", "mean"), (name, stop)


def test_inspect_json_names_sync_points_and_the_stop() -> None:
    result = runner.invoke(app, ["inspect", "efficientnet-b0", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["spatial_macs_fraction"] >= 0.9 and len(info["sync_points"]) == 16
    assert {"name", "kind", "module", "unit"} <= set(info["sync_points"][0])
    assert info["spatial_stop"]["kind"] == "adaptiveavgpool2d"
