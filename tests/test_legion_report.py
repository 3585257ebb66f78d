"""The Legion results page renders from legion.json alone (no boards), section by section."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from maniple.errors import ManipleError
from maniple.spatial.bench import SEARCHES, render_markdown, rerender


def result(latency: float, single: float, flc: list[list[int]], prof: float) -> dict[str, Any]:
    return {
        "latency_ms": latency,
        "predicted_ms": latency * 0.95,
        "speedup": single / latency,
        "max_rel_error": 1e-6,
        "profile_seconds": prof,
        "profile_runs": 100,
        "fast_forward_ms": latency - 50.0,
        "device_ms": latency - 49.0,
        "coordinator_ms": 49.0,
        "flc": flc,
    }


def row(network: str, set_name: str, boards: int, single: float, fss: float) -> dict[str, Any]:
    flc = [[0, 3], [4, 7]] if boards > 1 else [[0, 7]]
    results = {
        "fss": result(fss, single, flc, 100.0),
        "legion": result(fss * 1.04, single, flc, 3.0),
        "legion-wildcard": result(fss * 1.02, single, flc, 3.5),
    }
    return {
        "network": network,
        "set": set_name,
        "boards": [f"emu:firefly-rk3399#{i}" for i in range(boards)],
        "single_device_ms": single,
        "results": results,
    }


def doc(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema": "maniple.legion_bench/1",
        "command": "maniple bench legion --networks vgg-16",
        "machine": {"host": "test", "cores": 2, "python": "3.11", "torch": "2.13"},
        "elapsed_s": 60.0,
        "rows": rows,
    }


ROWS = [
    row("vgg-16", "1F", 1, 1000.0, 1000.0),
    row("vgg-16", "6F", 6, 1000.0, 420.0),
    row("vgg-16", "3F+3O", 6, 1000.0, 470.0),
]


def test_every_section_is_rendered() -> None:
    text = render_markdown(doc(ROWS))
    for heading in (
        "## Speedup over one board of the fastest kind",
        "## Profiling: FSS vs Legion (board seconds)",
        "## Predicted vs measured latency",
        "## Two clocks on the same work",
        "## Where the time goes",
    ):
        assert heading in text
    assert "within 5% of FSS's latency: 3 of 3" in text
    assert "| vgg-16 | 6F | 100 | 100.0 | 100 | 3.00 | 33.3x |" in text


def test_time_breakdown_takes_the_first_largest_set() -> None:
    text = render_markdown(doc(ROWS))
    section = text[text.index("## Where the time goes") :]
    # 6F and 3F+3O both have six boards: the first listed (all Fireflys) is shown.
    assert "| vgg-16 | 6F | 2 | 1000.0 | 420.0 | 371.0 | 49.0 | 2.38 | 2.70 |" in section
    assert "3F+3O" not in section


def test_rerender_writes_page_and_figures(tmp_path: Path) -> None:
    path = tmp_path / "legion.json"
    path.write_text(json.dumps(doc(ROWS)))
    md = rerender(path)
    assert md.read_text().startswith("# Legion on emulated edge boards")
    for name in ("legion-speedup.png", "legion-profiling.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_rerender_refuses_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "legion.json"
    path.write_text(json.dumps({"schema": "something/1"}))
    with pytest.raises(ManipleError, match="maniple.legion_bench/1"):
        rerender(path)


def test_searches_are_the_three_compared() -> None:
    assert SEARCHES == ("fss", "legion", "legion-wildcard")


def load_merge_script():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "merge_legion.py"
    spec = importlib.util.spec_from_file_location("merge_legion", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_merge_joins_runs_per_network_and_refuses_mixing(tmp_path: Path) -> None:
    merge_legion = load_merge_script()
    a = doc([row("vgg-16", "6F", 6, 1000.0, 420.0), row("vgg-19", "6F", 6, 1100.0, 500.0)])
    b = doc([row("yolov2", "2F", 2, 1600.0, 900.0), row("vgg-16", "2F", 2, 1000.0, 650.0)])
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    with pytest.raises(ManipleError, match="vgg-16 is in inputs 1 and 2"):
        merge_legion.merge([merge_legion.read(str(pa)), merge_legion.read(str(pb))])
    merged = merge_legion.merge(
        [merge_legion.read(f"{pa}@vgg-19"), merge_legion.read(f"{pb}@vgg-16,yolov2")]
    )
    assert [(r["network"], r["set"]) for r in merged["rows"]] == [
        ("vgg-19", "6F"),
        ("yolov2", "2F"),
        ("vgg-16", "2F"),
    ]
    assert merged["command"].count("maniple bench legion") == 2
    other = dict(b, machine={**b["machine"], "host": "elsewhere"})
    with pytest.raises(ManipleError, match="one machine only"):
        merge_legion.merge([a, other])
    with pytest.raises(ManipleError, match="no rows of"):
        merge_legion.read(f"{pa}@yolov2")
    out = tmp_path / "out"
    merge_legion.main([f"{pa}@vgg-16", f"{pb}@yolov2", "--out", str(out)])
    assert "## Where the time goes" in (out / "legion.md").read_text()
