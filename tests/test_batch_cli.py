"""`maniple plan-batch` and `maniple table show|export|edit|import`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maniple.batch import PerfEntry, PerfTable, ProfileStore
from maniple.cli import app, main

STUDY = Path(__file__).resolve().parents[2] / "shared" / "data" / "kcc2020-perf-tables"
needs_study = pytest.mark.skipif(not STUDY.is_dir(), reason="study tables not present")
runner = CliRunner()


def table_file(tmp_path: Path) -> Path:
    t = PerfTable(
        "toy",
        {"slow": (PerfEntry(1, 4.0), PerfEntry(8, 32.0)), "fast": (PerfEntry(1, 1.0, 0.0),)},
    )
    t.save(tmp_path / "toy.json")
    return tmp_path / "toy.json"


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run the real entry point (which turns ManipleError into exit status 2)."""
    monkeypatch.setattr(sys, "argv", ["maniple", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code


def test_plan_batch_json_from_our_table(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["plan-batch", "--tables", str(table_file(tmp_path)), "--batch", "10", "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["planner"] == "greedy" and doc["batch"] == 10
    assert doc["shares"] == {"slow": 2, "fast": 8} and doc["makespan_ms"] == 8.0


@needs_study
def test_plan_batch_on_the_study_files() -> None:
    result = runner.invoke(
        app,
        [
            "plan-batch",
            "--tables",
            str(STUDY / "vgg-16.json"),
            "--batch",
            "100",
            "--planner",
            "exact",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "[GPU] GeForce GTX 1050 Ti" in result.stdout and "makespan" in result.stdout
    result = runner.invoke(
        app, ["plan-batch", "--tables", str(STUDY), "--batch", "100", "--network", "mobilenet",
              "--json", "--device", "cpu,1050"],
    )  # fmt: skip
    doc = json.loads(result.stdout)
    assert doc["network"] == "mobilenet" and len(doc["shares"]) == 2
    result = runner.invoke(app, ["plan-batch", "--tables", str(STUDY), "--batch", "100", "--json"])
    docs = json.loads(result.stdout)
    assert len(docs) == 10 and all(sum(d["shares"].values()) == 100 for d in docs)


def test_plan_batch_from_a_store(tmp_path: Path) -> None:
    db = tmp_path / "p.sqlite"
    with ProfileStore(db) as store:
        store.put_table(PerfTable.from_json(table_file(tmp_path).read_text()))
    for args in (["--profile-db", str(db), "--network", "toy"], ["--tables", str(db)]):
        result = runner.invoke(
            app, ["plan-batch", "--batch", "5", "--planner", "exact", "--json", *args]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["makespan_ms"] == 4.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "0"], "batch must be a positive number of images, got 0"),
        (["--batch", "5", "--planner", "fastest"], "unknown planner 'fastest'"),
        (["--batch", "5", "--device", "tpu"], "unknown device 'tpu'"),
        (["--batch", "5", "--network", "yolo"], "unknown network 'yolo'"),
    ],
)
def test_plan_batch_errors_are_one_clear_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    code = run_main(monkeypatch, "plan-batch", "--tables", str(table_file(tmp_path)), *args)
    err = capsys.readouterr().err
    assert code == 2 and message in " ".join(err.split())
    assert "Traceback" not in err


def test_foreign_profile_db_is_refused_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("my notes, not a database")
    code = run_main(monkeypatch, "table", "show", "--profile-db", str(junk))
    assert code == 2 and "not an SQLite file" in " ".join(capsys.readouterr().err.split())
    assert junk.read_text() == "my notes, not a database"


def test_table_import_show_edit_export(tmp_path: Path) -> None:
    db = ["--profile-db", str(tmp_path / "p.sqlite")]
    result = runner.invoke(app, ["table", "import", str(table_file(tmp_path)), "--kind", "x", *db])
    assert result.exit_code == 0, result.output

    result = runner.invoke(app, ["table", "show", "--network", "toy", *db], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "toy" in result.stdout and "slow" in result.stdout and "32.000" in result.stdout

    result = runner.invoke(
        app,
        ["table", "edit", "--network", "toy", "--device", "slow", "--set", "4=20.5,1.5",
         "--set", "2=9", "--drop", "8", *db],
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    result = runner.invoke(app, ["table", "export", "--network", "toy", "--format", "json", *db])
    t = PerfTable.from_json(result.stdout)
    assert [(e.batch, e.exec_ms, e.io_ms) for e in t.entries["slow"]] == [
        (1, 4.0, 0.0),
        (2, 9.0, 0.0),
        (4, 20.5, 1.5),
    ]
    assert t.kinds["slow"] == "x"

    out = tmp_path / "toy.csv"
    result = runner.invoke(
        app, ["table", "export", "--network", "toy", "--format", "csv", "-o", str(out), *db]
    )
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[0].startswith("network,device,kind,host")


def test_table_edit_rejects_bad_values(tmp_path: Path) -> None:
    db = ["--profile-db", str(tmp_path / "p.sqlite")]
    result = runner.invoke(
        app, ["table", "edit", "--network", "n", "--device", "d", "--set", "4:20", *db]
    )
    assert "expected BATCH=EXEC_MS" in str(result.exception)
    result = runner.invoke(app, ["table", "edit", "--network", "n", "--device", "d", *db])
    assert "nothing to do" in str(result.exception)


def test_every_command_and_option_has_help() -> None:
    import click
    import typer

    group = typer.main.get_command(app)
    ctx = click.Context(group)
    commands = {"plan-batch": group.get_command(ctx, "plan-batch")}
    table = group.get_command(ctx, "table")
    assert table.help
    for name in ("show", "export", "edit", "import"):
        commands[f"table {name}"] = table.get_command(ctx, name)
    for name, cmd in commands.items():
        assert cmd.help, name
        for param in cmd.params:
            assert getattr(param, "help", None), f"{name} {param.name}"
