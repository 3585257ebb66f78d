"""Schedules: plans lowered into steps, checked by replay, read back from text and JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maniple import zoo
from maniple.errors import ManipleError
from maniple.graph import LayerGraph, capture, halo
from maniple.spatial.bands import group_bands, output_bands, step_rows
from maniple.spatial.costs import LegionCosts
from maniple.spatial.plan import SpatialPlan
from maniple.spatial.planners import plan_spatial
from maniple.spatial.schedule import COORDINATOR, Schedule, Step, Transfer, lower

SMALL = {"inception_v3": (3, 139, 139)}
"""Input shapes small enough to capture quickly (inception needs at least 75 rows)."""
NAMES = ("emu:firefly-rk3399#0", "cpu", "ray:10.0.0.7/cuda:1", "board a", 'odd"name', "gpu0")
_GRAPHS: dict[str, LayerGraph] = {}


def graph_of(name: str) -> LayerGraph:
    """Each zoo network captured once per test session (building VGG takes seconds)."""
    if name not in _GRAPHS:
        shape = SMALL.get(name, (3, 96, 96))
        _GRAPHS[name] = capture(zoo.build(name), shape, name)
    return _GRAPHS[name]


def heights_of(graph: LayerGraph) -> tuple[int, ...]:
    return tuple(u.out_shape[2] for u in graph.units)


def random_flc(n: int, cuts: list[bool]) -> tuple[tuple[int, int], ...]:
    """Groups ending after every unit k whose cut is set (and after the last unit)."""
    groups, first = [], 0
    for k in range(n):
        if k == n - 1 or cuts[k % len(cuts)]:
            groups.append((first, k))
            first = k + 1
    return tuple(groups)


def planned(graph: LayerGraph, weights: tuple[float, ...], search: str, seed: int) -> SpatialPlan:
    """A plan from Legion's planners over random cost tables profiled with `weights`."""
    rng = np.random.default_rng(seed)
    d, n = len(weights), len(graph.units)
    costs = LegionCosts(
        devices=NAMES[:d],
        n_units=n,
        S=rng.uniform(0, 5, (d, n)),
        E=rng.uniform(0, 20, (d, n)),
        R=rng.uniform(0, 5, (d, n)),
        A=np.ones((d, n, n)),
        A_in=np.ones((d, n, n)),
        weights=weights,
    )
    return plan_spatial(costs, search, heights_of(graph), network=graph.name)


def check_lowering(plan: SpatialPlan, graph: LayerGraph, s: Schedule) -> None:
    """The schedule is the plan, row for row, with the halo math's input rows."""
    assert s.groups == plan.flc and s.devices == plan.devices
    steps = iter(s.steps)
    for g, ((first, last), bands) in enumerate(zip(plan.flc, plan.bands)):
        for device, band in zip(plan.devices, bands):
            if band[1] <= band[0]:
                continue
            step = next(steps)
            rows = halo(graph, first, last, band).input_rows
            c_in, _, w_in = (
                graph.input_shape if first == 0 else graph.units[first - 1].out_shape[1:]
            )
            c_out, _, w_out = graph.units[last].out_shape[1:]
            assert (step.group, step.device, step.units) == (g, device, (first, last))
            assert (step.run.in_rows, step.run.out_rows) == (rows, band)
            assert step.receive == (
                Transfer(
                    COORDINATOR, device, first - 1, rows, c_in * (rows[1] - rows[0]) * w_in * 4
                ),
            )
            assert step.send == (
                Transfer(device, COORDINATOR, last, band, c_out * (band[1] - band[0]) * w_out * 4),
            )
            assert s.input_rows(g, device) == rows
    assert next(steps, None) is None
    assert s.tail.device == COORDINATOR and s.tail.rows == (0, graph.units[-1].out_shape[2])
    moved = sum(t.bytes for st_ in s.steps for t in (*st_.receive, *st_.send))
    assert sum(s.bytes_by_link().values()) == moved


@pytest.mark.parametrize("network", zoo.names())
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    weights=st.lists(st.floats(0.05, 20.0), min_size=1, max_size=6),
    cuts=st.lists(st.booleans(), min_size=1, max_size=12),
    how=st.sampled_from(["cuts", "legion", "layerwise", "one-group"]),
    seed=st.integers(0, 2**16),
)
def test_every_random_plan_lowers_validates_and_round_trips(
    network: str, weights: list[float], cuts: list[bool], how: str, seed: int
) -> None:
    graph = graph_of(network)
    heights, w = heights_of(graph), tuple(weights)
    if how == "cuts":
        flc = random_flc(len(heights), cuts)
        bands = group_bands(flc, heights, w)
        plan = SpatialPlan(network, "legion", NAMES[: len(w)], heights, flc, bands, None, None)
    else:
        plan = planned(graph, w, how, seed)
    s = lower(plan, graph)
    assert s.validate(graph) is s
    check_lowering(plan, graph, s)
    text = str(s)
    assert Schedule.parse(text) == s, text
    assert Schedule.from_json(s.to_json()) == s
    assert Schedule.from_dict(s.to_dict()) == s


# --- hand-made and hand-broken schedules ---------------------------------------------------

DEVICES = ("emu:firefly-rk3399#0", "emu:firefly-rk3399#1")


@pytest.fixture(scope="module")
def resnet() -> LayerGraph:
    return graph_of("resnet-18")


def two_group_plan(graph: LayerGraph) -> SpatialPlan:
    heights, flc = heights_of(graph), ((0, 3), (4, len(graph.units) - 1))
    bands = group_bands(flc, heights, (1.0, 1.0))
    return SpatialPlan(graph.name, "legion", DEVICES, heights, flc, bands, None, None)


def replace_step(s: Schedule, i: int, **change: Any) -> Schedule:
    steps = list(s.steps)
    steps[i] = dataclasses.replace(steps[i], **change)
    return dataclasses.replace(s, steps=tuple(steps))


def test_str_is_a_readable_aligned_table(resnet: LayerGraph) -> None:
    s = lower(two_group_plan(resnet), resnet)
    text = str(s)
    lines = text.splitlines()
    assert lines[0] == "spatial schedule maniple.spatial_schedule/1"
    assert "network: resnet-18" in lines and "bytes per element: 4" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("step"))
    table = lines[header : header + 1 + len(s.steps)]
    for column in ("device", "in", "out", "receive", "send"):
        at = table[0].index(f"  {column}") + 2
        assert all(row[at - 1] == " " and row[at] != " " for row in table[1:]), column
    assert "from coordinator input[0:" in table[1] and "to coordinator u3[0:" in table[1]
    assert lines[header + 1 + len(s.steps)] == "tail: coordinator runs the tail on u9[0:3]"
    assert any(line.startswith("link coordinator -> emu:firefly-rk3399#0:") for line in lines)


def test_helpers(resnet: LayerGraph) -> None:
    s = lower(two_group_plan(resnet), resnet)
    assert [st_.device for st_ in s.group_steps(1)] == list(DEVICES)
    band = s.group_steps(1)[1].run.out_rows
    assert s.input_rows(1, DEVICES[1]) == step_rows(resnet, 4, 9, band)
    assert output_bands(resnet, 4, 9, (1.0, 1.0)) == two_group_plan(resnet).bands[1]
    with pytest.raises(ManipleError, match="has no step in group 5"):
        s.input_rows(5, DEVICES[0])
    links = s.bytes_by_link()
    assert set(links) == {(COORDINATOR, d) for d in DEVICES} | {(d, COORDINATOR) for d in DEVICES}


def test_a_receive_of_rows_nobody_produced_names_the_step(resnet: LayerGraph) -> None:
    s = lower(two_group_plan(resnet), resnet)
    lost = s.steps[1].run.out_rows  # group 0's second band never reaches the coordinator
    broken = replace_step(s, 1, send=())
    i, step = next((i, t) for i, t in enumerate(s.steps) if i > 1 and t.run.in_rows[1] > lost[0])
    lo, hi = step.receive[0].rows
    gap = (max(lo, lost[0]), min(hi, lost[1]))
    with pytest.raises(ManipleError) as err:
        broken.validate()
    assert str(err.value) == (
        f"step {i} (group 1, device {step.device}): receives rows {lo}:{hi} of unit 3's output "
        f"from 'coordinator', but no earlier step produced rows {gap[0]}:{gap[1]}; compute or "
        "send them to 'coordinator' first"
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: replace_step(s, 0, device="ghost"),
            r"step 0 \(group 0, device ghost\): device 'ghost' is not one of the schedule's",
        ),
        (
            lambda s: replace_step(
                s, 1, receive=(dataclasses.replace(s.steps[1].receive[0], bytes=123),)
            ),
            r"step 1 \(group 0, device emu:firefly-rk3399#1\): receives rows \d+:\d+ of the "
            r"network input as 123 bytes, but \d+ rows x 3 channels x 96 columns x 4 bytes",
        ),
        (
            lambda s: replace_step(s, 2, send=(dataclasses.replace(s.steps[2].send[0], bytes=0),)),
            r"step 2 .*sends rows 0:2 of unit 9's output as 0 bytes",
        ),
        (
            lambda s: replace_step(
                s, 0, receive=(dataclasses.replace(s.steps[0].receive[0], source="ghost"),)
            ),
            r"step 0 .*receives 'ghost' -> 'emu:firefly-rk3399#0'",
        ),
        (
            lambda s: replace_step(s, 1, run=dataclasses.replace(s.steps[1].run, out_rows=(9, 16))),
            r"step 1 .*computes rows 9:16 of unit 3's output, but the group's bands so far end",
        ),
        (
            lambda s: dataclasses.replace(s, steps=s.steps[:1] + s.steps[2:]),
            r"step 0 .*the steps of group 0 cover rows 0:12 of unit 3's output of 24 rows",
        ),
        (
            lambda s: replace_step(s, 1, run=dataclasses.replace(s.steps[1].run, in_rows=(0, 96))),
            r"step 1 .*runs units 0..3 on rows 0:96 of the network input, but rows 0:\d+ never",
        ),
        (
            lambda s: dataclasses.replace(s, steps=s.steps[:2]),
            "the last group ends at unit 3, but the network has units 0..9",
        ),
        (
            lambda s: replace_step(s, 2, group=2),
            r"step 2 .*group 2 runs units 4..9; after group 0 comes group 1, from unit 4 to at",
        ),
        (
            lambda s: dataclasses.replace(s, tail=dataclasses.replace(s.tail, device="ghost")),
            "schedule tail: 'ghost' runs the tail",
        ),
        (lambda s: dataclasses.replace(s, devices=(*DEVICES, DEVICES[0])), "must be unique"),
        (lambda s: dataclasses.replace(s, bytes_per_element=0), "bytes_per_element is 0"),
    ],
)
def test_broken_schedules_fail_validate_naming_the_step(
    resnet: LayerGraph, edit: Callable[[Schedule], Schedule], message: str
) -> None:
    s = lower(two_group_plan(resnet), resnet)
    with pytest.raises(ManipleError, match=message):
        edit(s).validate()


def test_validate_with_the_graph_checks_the_halo_rows(resnet: LayerGraph) -> None:
    s = lower(two_group_plan(resnet), resnet)
    step = s.steps[0]
    lo, hi = step.run.in_rows
    assert hi < 96  # the first band of the first group needs only the top of the input
    wider = (lo, hi + 1)
    moved = dataclasses.replace(step.receive[0], rows=wider, bytes=3 * (hi + 1 - lo) * 96 * 4)
    broken = replace_step(s, 0, receive=(moved,), run=dataclasses.replace(step.run, in_rows=wider))
    broken.validate()  # rows that were produced: sound as a schedule
    with pytest.raises(ManipleError, match=rf"step 0 .*need rows {lo}:{hi} \(halo math\)"):
        broken.validate(resnet)
    with pytest.raises(ManipleError, match="lower the plan on the graph it runs on"):
        s.validate(graph_of("vgg-16"))


def test_device_to_device_transfers_are_schedules_too(resnet: LayerGraph) -> None:
    """What a peer runtime lowers to: group 1 reads group 0's rows from the devices that
    computed them; the coordinator gets only the last group's bands."""
    s = lower(two_group_plan(resnet), resnet)
    (a0, a1), (b0, b1) = s.group_steps(0), s.group_steps(1)
    peer_steps = [dataclasses.replace(a0, send=()), dataclasses.replace(a1, send=())]
    for step in (b0, b1):
        lo, hi = step.run.in_rows
        parts = []
        for src in (a0, a1):
            plo, phi = max(lo, src.run.out_rows[0]), min(hi, src.run.out_rows[1])
            if phi > plo and src.device != step.device:
                parts.append(
                    Transfer(src.device, step.device, 3, (plo, phi), s.rows_bytes(3, (plo, phi)))
                )
        peer_steps.append(dataclasses.replace(step, receive=tuple(parts)))
    peer = dataclasses.replace(s, steps=tuple(peer_steps)).validate(resnet)
    assert (DEVICES[0], DEVICES[1]) in peer.bytes_by_link()
    assert Schedule.parse(str(peer)) == peer
    assert Schedule.from_json(peer.to_json()) == peer
    assert "from emu:firefly-rk3399#1 u3[" in str(peer)


def test_parse_errors_name_the_line(resnet: LayerGraph) -> None:
    text = str(lower(two_group_plan(resnet), resnet))
    lines = text.splitlines()
    step_line = next(i for i, line in enumerate(lines) if line.lstrip().startswith("1 "))
    bad = "\n".join(lines[:step_line] + [lines[step_line].replace(" B", " KB", 1)])
    with pytest.raises(ManipleError, match=f"schedule text, line {step_line + 1}: .*transfers"):
        Schedule.parse(bad)
    with pytest.raises(ManipleError, match="first line must be 'spatial schedule maniple"):
        Schedule.parse(text.replace("spatial_schedule/1", "spatial_schedule/0", 1))
    with pytest.raises(ManipleError, match="line 2: .*a header line"):
        Schedule.parse(lines[0] + "\nwhat is this")
    dropped = "\n".join(line for line in lines if not line.startswith("tail:"))
    with pytest.raises(ManipleError, match="missing field 'tail'"):
        Schedule.parse(dropped)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(schema="maniple.spatial_plan/1"), "field 'schema' is"),
        (lambda d: d.pop("steps"), "missing field 'steps'"),
        (lambda d: d["steps"][0]["run"].pop("in_rows"), r"missing field 'steps\[0\].run.in_rows'"),
        (lambda d: d["steps"][1]["receive"][0].update(bytes="x"), r"steps\[1\].receive\[0\].bytes"),
        (lambda d: d.update(input_shape=[3, 96]), "must be \\[C, H, W\\]"),
        (lambda d: d["steps"][2].update(device="ghost"), "device 'ghost' is not one of"),
    ],
)
def test_json_errors_name_the_field(
    resnet: LayerGraph, edit: Callable[[dict[str, Any]], object], message: str
) -> None:
    doc = json.loads(lower(two_group_plan(resnet), resnet).to_json())
    assert doc["schema"] == "maniple.spatial_schedule/1"
    edit(doc)
    with pytest.raises(ManipleError, match=message):
        Schedule.from_json(json.dumps(doc))


def test_lower_refuses_a_plan_for_another_input(resnet: LayerGraph) -> None:
    plan = two_group_plan(resnet)
    other = capture(zoo.build("resnet-18"), (3, 64, 64), "resnet-18")
    with pytest.raises(ManipleError, match="plan and capture for the same network and input"):
        lower(plan, other)


def test_step_units_and_devices_sitting_out(resnet: LayerGraph) -> None:
    """A group with fewer rows than devices gives the slowest no step at all."""
    heights = heights_of(resnet)
    flc = ((0, len(heights) - 1),)
    weights = (1.0, 2.0, 3.0, 4.0)
    plan = SpatialPlan(
        "resnet-18",
        "one-group",
        NAMES[:4],
        heights,
        flc,
        group_bands(flc, heights, weights),
        None,
        None,
    )
    s = lower(plan, resnet)
    assert heights[-1] == 3 and len(s.steps) == 3
    assert [st_.device for st_ in s.steps] == list(NAMES[1:4])
    assert isinstance(s.steps[0], Step) and s.steps[0].units == (0, len(heights) - 1)


def test_names_with_spaces_and_quotes_round_trip(resnet: LayerGraph) -> None:
    heights = heights_of(resnet)
    flc = ((0, 1), (2, len(heights) - 1))
    plan = SpatialPlan(
        "my net", "legion", NAMES, heights, flc, group_bands(flc, heights, (1.0,) * 6), None, None
    )
    s = lower(plan, resnet)
    text = str(s)
    assert 'network: "my net"' in text and '"board a"' in text and '"odd\\"name"' in text
    assert Schedule.parse(text) == s
