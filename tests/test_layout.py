"""The package's shape: a shared base under one wing per study, stage order inside each wing.

Walks every module's imports (with `ast`, function-level imports included, nothing is
imported) and fails on any import cycle, on any import that goes up a layer (the base
importing a wing, a wing importing the other wing or the CLI, a wing's stage importing a
later stage), and on any source file over 400 lines. A new module must be placed in
`BASE` or `WING_STAGES` below: the test names it until it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "maniple"
MAX_LINES = 400

BASE = {
    "maniple.errors": 0,
    "maniple.jsonio": 0,
    "maniple.precision": 0,
    "maniple.spread": 0,
    "maniple.zoo": 1,
    "maniple.graph": 2,
    "maniple.tiling": 3,
    "maniple.devices": 4,
    "maniple.cluster": 5,
    "maniple.store": 6,
}
"""Base packages (and top-level modules) with their rank: each imports only lower ranks
(or itself)."""

WING_STAGES = {
    "maniple.batch": [
        [
            "perf_entries",
            "perf_table",
            "errors",
            "store",
            "profiler",
            "device_runner",
            "profile_cluster",
        ],
        ["measure_io"],
        ["plan", "planners"],
        ["run", "baseline", "infer", "compare"],
        ["report", "timeline"],
    ],
    "maniple.spatial": [
        ["costs"],
        [
            "flc",
            "plan_checks",
            "plan",
            "planners",
            "bands",
            "peer_costs",
            "stream_plan",
            "stream_planner",
            "stream_costs",
        ],
        ["schedule", "schedule_checks", "schedule_text", "schedule_peer"],
        ["profiler", "cache"],
        ["runtimes"],
        [
            "measured",
            "peer_setup",
            "session",
            "setup",
            "testbed_session",
            "stream_session",
            "stream_run",
        ],
        ["bench", "bench_peer", "figures", "bench_stream"],
    ],
}
"""Each wing's modules in stage order (costs -> planners -> plan/schedule -> runtimes ->
report); a module imports from its own stage (without cycles) or earlier ones, and from
the base. A sub-package (e.g. `runtimes`) is one stage as a whole."""

TOP = ("maniple", "maniple.cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """maniple modules `name` imports anywhere in its file. `from pkg import sub` of a
    submodule counts as importing the submodule (the idiom's intent), not pkg's exports."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{a.name}" for a in node.names} & known
            if len(submodules) < len(node.names):  # names from the package itself
                found.add(target)
            found.update(submodules)
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _place(module: str) -> tuple[str, int] | None:
    """('base', rank), (wing, stage), ('top', 0), or None for a module nobody placed."""
    if module in TOP or module.startswith("maniple.cli."):
        return ("top", 0)
    for base, rank in BASE.items():
        if module == base or module.startswith(base + "."):
            return ("base", rank)
    for wing, stages in WING_STAGES.items():
        if module == wing:
            return (wing, len(stages))  # the wing's exports sit above its stages
        if module.startswith(wing + "."):
            first = module[len(wing) + 1 :].split(".")[0]
            for stage, names in enumerate(stages):
                if first in names:
                    return (wing, stage)
    return None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _upward(module: str, target: str) -> str | None:
    """Why `module` may not import `target`, or None when it may."""
    here, there = _place(module), _place(target)
    assert here is not None and there is not None
    if here[0] == "top":
        return None
    if there[0] == "top":
        return "imports the CLI / the package's public exports"
    if here[0] == "base":
        if there[0] != "base":
            return f"base module imports the {there[0]} wing"
        same = module.split(".")[:2] == target.split(".")[:2]
        return None if same or there[1] <= here[1] else "imports a higher base package"
    if there[0] == "base":
        return None
    if there[0] != here[0]:
        return f"the {here[0]} wing imports the {there[0]} wing"
    return None if there[1] <= here[1] else "imports a later stage of its wing"


def test_every_module_is_placed() -> None:
    unplaced = sorted(m for m in _modules() if _place(m) is None)
    assert not unplaced, f"place these modules in BASE or WING_STAGES: {unplaced}"


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_upward_imports() -> None:
    bad = [
        f"{module} -> {target}: {why}"
        for module, targets in sorted(_graph().items())
        for target in sorted(targets)
        if _place(module) and _place(target) and (why := _upward(module, target))
    ]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_source_files_are_small() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines (split them by job): {long}"


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_cycle_finder(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert _cycles(graph) == expected


def test_layer_rules() -> None:
    assert _upward("maniple.graph.halo", "maniple.tiling.span") == ("imports a higher base package")
    assert _upward("maniple.devices.worker", "maniple.spatial.plan") is not None
    assert _upward("maniple.spatial.plan", "maniple.spatial.session") is not None
    assert _upward("maniple.spatial.session", "maniple.spatial.plan") is None
    assert _upward("maniple.batch.run", "maniple.spatial.plan") is not None
    assert _upward("maniple.cli.spatial", "maniple.spatial.session") is None
