"""Spatial profiles cached in the profile store: reused when nothing changed, measured again
when the devices, the link, the input or the network change, or with --reprofile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from maniple import zoo
from maniple.cli import app
from maniple.devices import DeviceSpec, LocalHandle
from maniple.graph import capture
from maniple.spatial.cache import CostCache, ProfileKey, network_fingerprint
from maniple.spatial.costs import ProfilingSpent
from maniple.spatial.profiler import SpeedProbe
from maniple.spatial.session import LegionSession
from maniple.store import DeviceKey, StoreFile

SHAPE = (3, 64, 64)
BOARD = DeviceKey("emu:firefly-rk3399", "emulated firefly link=100Mbps", "h")


@pytest.fixture(scope="module")
def graph():
    return capture(zoo.build("resnet-18"), SHAPE, "resnet-18")


def _key(graph, devices=(BOARD,), **kw) -> ProfileKey:
    return ProfileKey.of(graph, list(devices), **kw)


def test_every_field_of_the_key_changes_the_digest(graph) -> None:
    base = _key(graph).digest()
    other_link = DeviceKey(BOARD.name, "emulated firefly link=50Mbps", "h")
    bigger = capture(zoo.build("resnet-18"), (3, 96, 96), "resnet-18")
    assert _key(graph, (other_link,)).digest() != base
    assert _key(graph, (BOARD, DeviceKey("emu:odroid-xu4", "k", "h"))).digest() != base
    assert _key(bigger).digest() != base
    assert _key(graph, profile_repeats=3).digest() != base
    assert _key(graph).digest([0.5, 0.5]) != _key(graph).digest([0.6, 0.4])
    assert _key(graph).digest() == base  # and nothing else does


def test_fingerprint_sees_structure_not_weights(graph) -> None:
    again = capture(zoo.build("resnet-18", seed=7), SHAPE, "resnet-18")
    other = capture(zoo.build("resnet-34"), SHAPE, "resnet-18")  # same name, other network
    assert network_fingerprint(again) == network_fingerprint(graph)
    assert network_fingerprint(other) != network_fingerprint(graph)


def test_speeds_and_fss_round_trip(tmp_path: Path, graph) -> None:
    with StoreFile(tmp_path / "p.sqlite") as store:
        cache = CostCache(store, _key(graph))
        assert cache.speeds() is None and cache.reused == []
        probe = SpeedProbe((BOARD.name,), (12.5,), (1.0,), ProfilingSpent(3, 0, 0.5))
        cache.put_speeds(probe)
        n = len(graph.units)
        T = np.triu(np.arange(1.0, n * n + 1).reshape(n, n)) + np.tril(np.full((n, n), np.inf), -1)
        cache.put_fss(T, ProfilingSpent(9, 100, 1.5), [1.0])
        again = CostCache(store, _key(graph))
        assert again.speeds() == probe
        T2, spent = again.fss([1.0])
        assert np.array_equal(T2, T) and spent == ProfilingSpent(9, 100, 1.5)
        assert again.fss([0.9]) is None  # other weights: another profile
        assert again.reused == ["speeds", "fss"]
        assert CostCache(store, _key(graph), reprofile=True).speeds() is None
        other = CostCache(store, _key(graph, (DeviceKey("x", "k", "h"),)))
        other.put_speeds(probe)  # a probe of other devices under this key is not reused
        assert other.speeds() is None and other.reused == []


@pytest.fixture(scope="module")
def handles():
    model = zoo.build("resnet-18")
    hs = [
        LocalHandle(DeviceSpec("cpu", threads=1, label=f"cpu{i}"), model, input_shape=SHAPE)
        for i in range(2)
    ]
    yield hs
    for h in hs:
        h.close()


def test_a_second_session_profiles_nothing_and_plans_the_same(
    tmp_path: Path, graph, handles
) -> None:
    from maniple.spatial.setup import open_cache

    with StoreFile(tmp_path / "p.sqlite") as store:
        first = LegionSession(handles, graph, repeats=1, cache=open_cache(store, handles, graph))
        plan = first.plan("legion")
        fss = first.plan("fss")
        assert first.profiled == ["speeds", "costs", "fss"] and first.reused == ()
        second = LegionSession(handles, graph, repeats=1, cache=open_cache(store, handles, graph))
        assert second.plan("legion") == plan and second.plan("fss") == fss
        assert second.profiled == [] and second.reused == ("speeds", "costs", "fss")
        fresh = LegionSession(
            handles, graph, repeats=1, cache=open_cache(store, handles, graph, reprofile=True)
        )
        fresh.plan("legion")
        assert fresh.profiled == ["speeds", "costs"] and fresh.reused == ()


def _spatial(*args: str) -> dict:
    result = CliRunner().invoke(app, ["spatial", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.emulated
def test_cli_reuses_cached_costs_until_something_changes(tmp_path: Path) -> None:
    db = str(tmp_path / "p.sqlite")
    common = ["--network", "squeezenet_v1.1", "--input-shape", "3,64,64", "--repeats", "1"]
    boards = ["--emulate", "2xcustom:40", "--profile-db", db, "--search", "legion"]
    first = _spatial(*common, *boards)
    assert first["profiled_now"] == ["speeds", "costs"] and first["reused_profiles"] == []
    second = _spatial(*common, *boards)
    assert second["profiled_now"] == [] and second["reused_profiles"] == ["speeds", "costs"]
    assert second["flc"] == first["flc"] and second["bands"] == first["bands"]
    assert _spatial(*common, *boards, "--link-mbps", "50")["profiled_now"] == ["speeds", "costs"]
    assert _spatial(*common, *boards, "--reprofile")["profiled_now"] == ["speeds", "costs"]
    other = ["--network", "squeezenet_v1.1", "--input-shape", "3,72,72", "--repeats", "1"]
    assert _spatial(*other, *boards)["profiled_now"] == ["speeds", "costs"]


@pytest.mark.emulated
def test_cli_saved_plan_runs_without_profiling_and_is_refused_elsewhere(
    tmp_path: Path,
) -> None:
    plan = tmp_path / "net.plan"
    common = ["--network", "squeezenet_v1.1", "--input-shape", "3,64,64", "--repeats", "1"]
    db = ["--profile-db", str(tmp_path / "p.sqlite")]
    two = ["--emulate", "2xcustom:40"]
    made = _spatial(*common, "--emulate", "2xcustom:40", *db, "--save-plan", str(plan))
    ran = _spatial(*common, "--emulate", "2xcustom:40", *db, "--plan", str(plan), "--explain")
    assert ran["profiled_now"] == [] and ran["flc"] == made["flc"]
    assert ran["schedule"]["schema"].startswith("maniple.spatial_schedule/")
    for args, why in [
        (["--network", "resnet-18", "--input-shape", "3,64,64", *two], "is for network"),
        ([*common[:4], "--emulate", "2xcustom:30"], "is for devices"),
        (["--network", "squeezenet_v1.1", "--input-shape", "3,96,96", *two], "input shape"),
    ]:
        result = CliRunner().invoke(app, ["spatial", *args, *db, "--plan", str(plan)])
        assert result.exit_code != 0 and why in str(result.exception), result.output
