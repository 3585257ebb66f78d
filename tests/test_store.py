"""ProfileStore (versioned SQLite, refuses foreign files untouched) and the batch profiler."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from rich.console import Console

from maniple.batch import (
    DeviceKey,
    DeviceOutOfMemory,
    PerfEntry,
    PerfTable,
    ProfileStore,
    default_store_path,
    profile_batch_table,
)
from maniple.errors import ManipleError

GPU = DeviceKey("cuda:0", "cuda", "hostA")
CPU = DeviceKey("cpu", "cpu", "hostA")


@pytest.fixture
def store(tmp_path: Path) -> ProfileStore:
    with ProfileStore(tmp_path / "p.sqlite") as s:
        yield s


def test_default_path_is_in_the_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MANIPLE_PROFILE_DB", raising=False)
    path = default_store_path()
    assert path.name == "profiles.sqlite" and "maniple" in str(path)


def test_default_path_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MANIPLE_PROFILE_DB", "/somewhere/p.sqlite")
    assert default_store_path() == Path("/somewhere/p.sqlite")


def test_new_store_has_a_versioned_schema(tmp_path: Path) -> None:
    ProfileStore(tmp_path / "sub" / "p.sqlite").close()
    db = sqlite3.connect(tmp_path / "sub" / "p.sqlite")
    meta = dict(db.execute("SELECT key, value FROM meta"))
    assert meta == {"schema": "maniple.profile_store", "schema_version": "2"}
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "batch_entries", "device_limits", "costs"} <= tables


def test_batch_entries_and_tables(store: ProfileStore) -> None:
    store.put_batch_entry(GPU, "vgg-16", 4, 40.0, 4.0, repeats=3)
    store.put_batch_entry(GPU, "vgg-16", 1, 12.0, 2.0)
    store.put_batch_entry(GPU, "vgg-16", 4, 44.0, 4.0)  # replaces
    store.put_batch_entry(CPU, "vgg-16", 2, 100.0, 0.0)
    store.put_batch_entry(CPU, "resnet-50", 2, 50.0, 0.0)
    assert store.networks() == ["resnet-50", "vgg-16"]
    assert store.devices("vgg-16") == [CPU, GPU]
    assert store.largest_batch_measured(GPU, "vgg-16") == 4
    assert store.largest_batch_measured(GPU, "resnet-50") == 0
    t = store.perf_table("vgg-16")
    assert t.entries["cuda:0"] == (PerfEntry(1, 12.0, 2.0), PerfEntry(4, 44.0, 4.0))
    assert t.kinds == {"cpu": "cpu", "cuda:0": "cuda"} and t.hosts["cpu"] == "hostA"
    assert store.perf_table("vgg-16", ["cuda:0"]).devices == ("cuda:0",)
    with pytest.raises(ManipleError, match="no batch table for network 'yolo'"):
        store.perf_table("yolo")
    with pytest.raises(ManipleError, match="no batch entries for device 'tpu'"):
        store.perf_table("vgg-16", ["tpu"])
    with pytest.raises(ManipleError, match="exec_ms"):
        store.put_batch_entry(GPU, "vgg-16", 8, -1.0, 0.0)


def test_same_name_on_two_hosts_stays_apart(store: ProfileStore) -> None:
    other = DeviceKey("cuda:0", "cuda", "hostB")
    store.put_batch_entry(GPU, "n", 1, 1.0, 0.0)
    store.put_batch_entry(other, "n", 1, 2.0, 0.0)
    assert store.perf_table("n").devices == ("cuda:0@hostA", "cuda:0@hostB")
    with pytest.raises(ManipleError, match="several machines"):
        store.resolve("n", "cuda:0")


def test_limits_and_deletes(store: ProfileStore) -> None:
    for b in (1, 2, 4):
        store.put_batch_entry(GPU, "n", b, float(b), 0.0)
    store.set_limit(GPU, "n", 6)
    assert store.limit(GPU, "n") == 6
    assert store.perf_table("n").max_batch == {"cuda:0": 6}
    assert store.delete_entries("n", GPU, [2, 3]) == 1
    assert [e.batch for e in store.entries(GPU, "n")] == [1, 4]
    store.set_limit(GPU, "n", None)
    assert store.limit(GPU, "n") is None
    assert store.delete_entries("n", GPU) == 2
    assert store.networks() == []


def test_costs(store: ProfileStore) -> None:
    assert store.get_cost(GPU, "vgg-16", "1x3x224x224", "E", 0, 0, 56) is None
    store.put_cost(GPU, "vgg-16", "1x3x224x224", "E", 0, 0, 56, 1.5)
    store.put_cost(GPU, "vgg-16", "1x3x224x224", "group", 0, 3, 56, 9.0)
    assert store.get_cost(GPU, "vgg-16", "1x3x224x224", "E", 0, 0, 56) == 1.5
    assert store.get_cost(GPU, "vgg-16", "1x3x224x224", "group", 0, 3, 56) == 9.0
    with pytest.raises(ManipleError, match="one of S, E, R, group"):
        store.put_cost(GPU, "vgg-16", "1x3x224x224", "X", 0, 0, 56, 1.0)


def test_put_table_imports_a_whole_table(store: ProfileStore) -> None:
    t = PerfTable("n", {"a": (PerfEntry(1, 1.0, 0.5), PerfEntry(2, 2.0, 0.5))}, max_batch={"a": 2})
    assert store.put_table(t, kind="tvm", host="kcc") == 2
    back = store.perf_table("n")
    assert back.entries == t.entries and back.max_batch == {"a": 2}
    assert back.kinds == {"a": "tvm"} and back.hosts == {"a": "kcc"}


def test_reopening_keeps_everything(tmp_path: Path) -> None:
    with ProfileStore(tmp_path / "p.sqlite") as s:
        s.put_batch_entry(GPU, "n", 1, 1.0, 0.0)
    with ProfileStore(tmp_path / "p.sqlite") as s:
        assert s.largest_batch_measured(GPU, "n") == 1


def _refused(path: Path, message: str) -> None:
    before = path.read_bytes()
    with pytest.raises(ManipleError, match=message) as info:
        ProfileStore(path)
    assert "--profile-db" in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_refuses_junk_without_touching_it(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"\x00\x01 this is not a database at all" * 50)
    _refused(path, "not an SQLite file")


def test_refuses_another_programs_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE photos (id INTEGER, name TEXT)")
    db.execute("INSERT INTO photos VALUES (1, 'cat')")
    db.commit()
    db.close()
    _refused(path, "another program .*photos")


def test_refuses_a_foreign_meta_table(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('schema', 'someone.else')")
    db.commit()
    db.close()
    _refused(path, "another program")


def test_refuses_another_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    with ProfileStore(path) as s:
        s.put_batch_entry(GPU, "n", 1, 1.0, 0.0)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    _refused(path, "schema version 99, this maniple reads version 2")


def test_a_version_1_store_is_upgraded_in_place_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    with ProfileStore(path) as s:
        s.put_batch_entry(GPU, "n", 4, 2.0, 0.5)
    db = sqlite3.connect(path)  # make it what version 1 wrote: no documents table
    db.execute("DROP TABLE documents")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with ProfileStore(path) as s:
        assert [e.batch for e in s.entries(GPU, "n")] == [4]
        s.put_document("spatial.costs", "k", {"a": 1})
        assert s.get_document("spatial.costs", "k") == {"a": 1}
    meta = dict(sqlite3.connect(path).execute("SELECT key, value FROM meta"))
    assert meta["schema_version"] == "2"


def test_documents_round_trip_replace_and_refuse_nan(tmp_path: Path) -> None:
    with ProfileStore(tmp_path / "p.sqlite") as s:
        assert s.get_document("k", "x") is None
        s.put_document("k", "x", {"v": [1, 2.5, None]})
        s.put_document("k", "x", {"v": 3})
        assert s.get_document("k", "x") == {"v": 3}
        with pytest.raises(ValueError):
            s.put_document("k", "y", {"v": float("nan")})  # strict JSON only
        assert s.delete_documents("k") == 1


def test_a_damaged_document_is_reported_not_evaluated(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    with ProfileStore(path) as s:
        s.put_document("k", "x", {"v": 1})
    db = sqlite3.connect(path)
    db.execute("UPDATE documents SET doc = '[1, 2' WHERE key = 'x'")
    db.commit()
    db.close()
    with ProfileStore(path) as s, pytest.raises(ManipleError, match="damaged"):
        s.get_document("k", "x")


def test_refuses_a_damaged_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 2000)
    _refused(path, "damaged or not a database")


def test_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ManipleError, match="is a directory"):
        ProfileStore(tmp_path)


def test_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    path.touch()
    with ProfileStore(path) as s:
        s.put_batch_entry(GPU, "n", 1, 1.0, 0.0)
        assert s.networks() == ["n"]


# -- the profiler ---------------------------------------------------------------------


class FakeRunner:
    """exec = 10 ms/image + noise pattern, io = 1 ms/image; out of memory above `oom_at`."""

    def __init__(self, oom_at: int | None = None, crash_at: int | None = None) -> None:
        self.oom_at, self.crash_at = oom_at, crash_at
        self.calls: list[int] = []

    def run(self, batch: int) -> tuple[float, float]:
        self.calls.append(batch)
        if self.crash_at is not None and batch >= self.crash_at:
            raise RuntimeError("power cut")
        if self.oom_at is not None and batch >= self.oom_at:
            raise DeviceOutOfMemory("cuda:0", batch, "CUDA out of memory")
        noise = [0.0, 5.0, -1.0][self.calls.count(batch) % 3]
        return 10.0 * batch + noise, 1.0 * batch


def quiet() -> Console:
    return Console(quiet=True)


def test_profiles_with_warmup_and_median(store: ProfileStore) -> None:
    runner = FakeRunner()
    t = profile_batch_table(runner, GPU, "n", store, batches=(1, 2, 4), warmup=2, repeats=3)
    assert runner.calls == [1] * 5 + [2] * 5 + [4] * 5
    assert [e.batch for e in t.entries["cuda:0"]] == [1, 2, 4]
    # warmups see noise 5, -1; timed runs 0, 5, -1 -> median 0
    assert t.entries["cuda:0"][2] == PerfEntry(4, 40.0, 4.0)


def test_resumes_after_the_largest_measured(store: ProfileStore) -> None:
    with pytest.raises(RuntimeError, match="power cut"):
        profile_batch_table(FakeRunner(crash_at=4), GPU, "n", store, (1, 2, 4, 8), progress=False)
    assert store.largest_batch_measured(GPU, "n") == 2  # nothing measured before the crash lost
    runner = FakeRunner()
    t = profile_batch_table(runner, GPU, "n", store, (1, 2, 4, 8), warmup=0, repeats=1)
    assert runner.calls == [4, 8]
    assert [e.batch for e in t.entries["cuda:0"]] == [1, 2, 4, 8]


def test_out_of_memory_is_recorded_as_the_limit(store: ProfileStore) -> None:
    out = Console(record=True, width=200)
    runner = FakeRunner(oom_at=16)
    t = profile_batch_table(runner, GPU, "n", store, (1, 8, 16, 32), repeats=1, console=out)
    assert store.limit(GPU, "n") == 15
    assert t.max_batch == {"cuda:0": 15}
    assert t.estimate_ms("cuda:0", 16) == float("inf")
    assert 32 not in runner.calls
    text = out.export_text()
    assert "ran out of memory at batch 16" in text and "recorded 15 as its limit" in text
    again = FakeRunner()
    profile_batch_table(again, GPU, "n", store, (1, 8, 16, 32), console=out)
    assert again.calls == []  # nothing left under the limit


def test_out_of_memory_at_the_first_size_is_a_clear_error(store: ProfileStore) -> None:
    with pytest.raises(ManipleError, match="could not run even batch 1"):
        profile_batch_table(FakeRunner(oom_at=1), GPU, "n", store, (1, 2), console=quiet())
    assert store.limit(GPU, "n") == 0


def test_bad_profiler_arguments(store: ProfileStore) -> None:
    with pytest.raises(ManipleError, match="repeats >= 1"):
        profile_batch_table(FakeRunner(), GPU, "n", store, repeats=0)
    with pytest.raises(ManipleError, match="positive integers"):
        profile_batch_table(FakeRunner(), GPU, "n", store, batches=(0, 1))
