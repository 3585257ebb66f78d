"""PerfTable: reading the study's files as they are, our JSON and CSV, and the estimates."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maniple.batch import SEED_BATCHES, PerfEntry, PerfTable, load_table, load_tables
from maniple.errors import ManipleError, UnknownNameError

STUDY = Path(__file__).resolve().parents[2] / "shared" / "data" / "kcc2020-perf-tables"
NETWORKS = [
    "densenet-121",
    "inception_v3",
    "mobilenet",
    "resnet-18",
    "resnet-34",
    "resnet-50",
    "squeezenet_v1.0",
    "squeezenet_v1.1",
    "vgg-16",
    "vgg-19",
]
needs_study = pytest.mark.skipif(not STUDY.is_dir(), reason="study tables not present")


def small_table(**kw: object) -> PerfTable:
    entries = {
        "a": (PerfEntry(4, 40.0, 4.0), PerfEntry(1, 12.0, 2.0), PerfEntry(8, 64.0, 8.0)),
        "b": (PerfEntry(2, 10.0, 0.0),),
    }
    return PerfTable("net", entries, **kw)  # type: ignore[arg-type]


def test_seed_batches_are_the_studys() -> None:
    study = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129]
    assert list(SEED_BATCHES) == study


@needs_study
def test_reads_all_ten_study_files_as_they_are() -> None:
    tables = load_tables(STUDY)
    assert sorted(tables) == NETWORKS
    for name, table in tables.items():
        raw = json.loads((STUDY / f"{name}.json").read_text())
        assert table.network == raw["network"]
        assert table.devices == tuple(raw["devices"])  # names and order unchanged
        assert table.unit == "ms"
        for dev, rows in raw["devices"].items():
            assert [e.batch for e in table.entries[dev]] == [r["batch"] for r in rows]
            assert table.entries[dev][0].exec_ms == rows[0]["exec_ms"]
            assert table.entries[dev][0].io_ms == rows[0]["io_ms"]
        assert table.max_batch == {}


def test_entries_are_sorted_and_copied() -> None:
    t = small_table()
    assert [e.batch for e in t.entries["a"]] == [1, 4, 8]
    assert t.devices == ("a", "b")


def test_estimate_at_measured_sizes_is_the_measurement() -> None:
    t = small_table()
    assert t.estimate_ms("a", 4) == 44.0
    assert t.estimate_parts("a", 1) == (12.0, 2.0)


def test_estimate_interpolates_per_image_time() -> None:
    t = small_table()
    # per-image exec: 10 at 4, 8 at 8 -> 9 at 6; per-image io: 1 at 4 and 8 -> 1
    assert t.estimate_parts("a", 6) == pytest.approx((54.0, 6.0))
    # between 1 (12/img) and 4 (10/img): at 2 -> 12 - 2/3
    assert t.estimate_parts("a", 2)[0] == pytest.approx(2 * (12 - 2 / 3))


def test_estimate_extrapolates_linearly_past_the_largest_and_below_the_smallest() -> None:
    t = small_table()
    assert t.estimate_ms("a", 100) == pytest.approx(100 * 9.0)
    assert t.estimate_ms("b", 1) == pytest.approx(5.0)
    assert t.estimate_ms("b", 7) == pytest.approx(35.0)


def test_estimate_zero_batch_and_limits() -> None:
    t = small_table(max_batch={"a": 6})
    assert t.estimate_ms("a", 0) == 0.0
    assert t.estimate_ms("a", 6) < math.inf
    assert t.estimate_ms("a", 7) == math.inf
    assert t.limit("a") == 6 and t.limit("b") is None
    with pytest.raises(ManipleError, match="got -1"):
        t.estimate_ms("a", -1)


def test_unknown_and_partial_device_names() -> None:
    t = PerfTable(
        "n", {"[GPU] GeForce GTX 1050 Ti": (PerfEntry(1, 1.0),), "cpu": (PerfEntry(1, 2.0),)}
    )
    assert t.resolve_device("1050 ti") == "[GPU] GeForce GTX 1050 Ti"
    with pytest.raises(UnknownNameError, match="unknown device 'tpu'"):
        t.estimate_ms("tpu", 1)
    with pytest.raises(ManipleError, match="twice"):
        t.select(["cpu", "cpu"])
    assert t.select(["cpu"]).devices == ("cpu",)


def test_our_json_round_trip(tmp_path: Path) -> None:
    t = small_table(max_batch={"a": 6}, kinds={"a": "cuda"}, hosts={"a": "node1"}, source="x")
    doc = t.to_json()
    assert doc["schema"] == "maniple.perf_table/1"
    assert PerfTable.from_json(doc) == t
    assert PerfTable.from_json(json.dumps(doc)) == t
    t.save(tmp_path / "t.json")
    assert load_table(tmp_path / "t.json") == t
    assert load_tables(tmp_path) == {"net": t}


@needs_study
def test_study_table_round_trips_through_our_format() -> None:
    t = load_table(STUDY / "vgg-16.json")
    assert PerfTable.from_json(t.to_json()) == t


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema="maniple.perf_table/9"), "field 'schema'"),
        (lambda d: d.pop("network"), "field 'network'"),
        (lambda d: d.update(unit="seconds"), "field 'unit'"),
        (lambda d: d.update(devices=[]), "field 'devices'"),
        (lambda d: d["devices"]["a"]["entries"][0].update(exec_ms=-1), "exec_ms"),
        (lambda d: d["devices"]["a"]["entries"][0].update(batch=0), "batch must be a positive"),
        (lambda d: d["devices"]["a"]["entries"][0].pop("batch"), "missing field 'batch'"),
        (lambda d: d["devices"]["a"]["entries"].append(d["devices"]["a"]["entries"][0]), "twice"),
        (lambda d: d["devices"]["a"].update(max_batch=-3), "max_batch"),
        (lambda d: d["devices"]["a"].update(kind=3), r"devices\['a'\].kind"),
    ],
)
def test_bad_json_names_the_field(mutate, message: str) -> None:  # noqa: ANN001
    doc = small_table().to_json()
    mutate(doc)
    with pytest.raises(ManipleError, match=message):
        PerfTable.from_json(doc)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ManipleError, match="does not exist"):
        load_tables(tmp_path / "missing")
    with pytest.raises(ManipleError, match="no \\*.json"):
        load_tables(tmp_path)
    (tmp_path / "x.json").write_text("{nope")
    with pytest.raises(ManipleError, match="not valid JSON"):
        load_table(tmp_path / "x.json")


def test_csv_export() -> None:
    t = small_table(max_batch={"a": 6}, kinds={"a": "cuda"})
    rows = list(csv.DictReader(io.StringIO(t.to_csv())))
    assert len(rows) == 4
    assert rows[0] == {
        "network": "net",
        "device": "a",
        "kind": "cuda",
        "host": "",
        "max_batch": "6",
        "batch": "1",
        "exec_ms": "12.0",
        "io_ms": "2.0",
        "total_ms": "14.0",
    }


entry_lists = st.dictionaries(
    st.integers(1, 200),
    st.tuples(st.floats(0, 1e4), st.floats(0, 100)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(entry_lists, st.integers(0, 300))
def test_estimate_properties(rows: dict[int, tuple[float, float]], batch: int) -> None:
    t = PerfTable("n", {"d": tuple(PerfEntry(b, e, i) for b, (e, i) in rows.items())})
    ms = t.estimate_ms("d", batch)
    assert ms >= 0 and math.isfinite(ms)
    if batch in rows:
        assert ms == sum(rows[batch])
    per_image = [sum(v) / b for b, v in rows.items()]
    if batch:  # per-image estimate lies within the measured per-image range
        assert min(per_image) * batch * (1 - 1e-9) - 1e-9 <= ms
        assert ms <= max(per_image) * batch * (1 + 1e-9) + 1e-9
