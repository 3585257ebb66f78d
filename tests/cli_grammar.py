"""The CLI's argument grammar, read from the typer app itself, and Hypothesis strategies
that draw command lines from it, for tests/test_cli_fuzz.py.

Why read, not listed: every command and option is walked from the live app (the group
tree, each parameter's flags, type, bounds, choices, required-ness), so an option added
tomorrow is fuzzed tomorrow with values of its type, without touching this file. What
the app cannot say, namely which strings are *valid* for a free `str` option such as
`--network` or `--planner`, comes from the hint table below (`Values`); hints only make
the fuzzer go deeper, an option without one is still drawn (by its type alone).

Why the sandbox: every run gets the same small set of sample files (valid tables, plans
and cluster files, junk, empty and binary files, paths that do not exist, directories,
paths that cannot be written) so that path options see boundary values too, and runs
write nothing outside it (the working directory is the sandbox's).
"""

from __future__ import annotations

import enum
import shutil
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from hypothesis import strategies as st

TINY = "maniple.devices.tiny:tiny_cnn"
"""A seeded 2-conv CNN shipped with maniple (importable by Ray workers too); no input
shape of its own, so it needs --input-shape (3,32,32 is its size)."""
NEEDS_SHAPE = frozenset({TINY, "zoo_fixture_nets:tiny_net"})
HUGE_INTS = (str(10**12), str(2**63))
WRONG_INTS = ("1.5", "abc", "", "1e3", "0x10", " ", "١٢", "--1")
BOUNDARY_FLOATS = ("0", "-0.0", "-1", "nan", "inf", "-inf", "1e308", "1e-300", "1e309")
WRONG_FLOATS = ("abc", "", "1,5", "one", "0x1p-2x")
ODD_STRINGS = ("", " ", "é", "设备", "🙂", "\u202eevil", "[/]", "[bold]x", "-", "x" * 3000)

# -- grammar ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One parameter of one command, as the parser sees it.

    kind: flag (takes no value), int, float, bool, path, choice (`choices`) or str."""

    name: str
    opts: tuple[str, ...]
    secondary_opts: tuple[str, ...]
    kind: str
    is_argument: bool
    required: bool
    multiple: bool
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def long(self) -> str:
        """The option's long name (`--batch`), or the argument's name."""
        longs = [o for o in self.opts if o.startswith("--")]
        return longs[0] if longs else self.opts[0]


@dataclass(frozen=True)
class Command:
    """A leaf command: its path under `maniple` and its parameters."""

    path: tuple[str, ...]
    params: tuple[Param, ...]

    @property
    def name(self) -> str:
        return " ".join(self.path)

    def option(self, long: str) -> Param | None:
        """The parameter whose long name is `long`, if the command has one."""
        return next((p for p in self.params if p.long == long), None)


def _unwrap(annotation: Any) -> Any:
    """int | None -> int; list[str] -> str; Annotated[X, ...] -> X."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else str
    if origin in (list, tuple, set, frozenset):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return _unwrap(args[0]) if args else str
    return annotation


def _kind_of_annotation(annotation: Any) -> tuple[str, tuple[str, ...]]:
    base = _unwrap(annotation)
    if typing.get_origin(base) is typing.Literal:
        return "choice", tuple(str(a) for a in typing.get_args(base))
    if isinstance(base, type):
        if issubclass(base, bool):
            return "bool", ()
        if issubclass(base, enum.Enum):
            return "choice", tuple(str(m.value) for m in base)
        if issubclass(base, int):
            return "int", ()
        if issubclass(base, float):
            return "float", ()
        if issubclass(base, PurePath):
            return "path", ()
    return "str", ()


_CLICK_TYPE_NAMES = {
    "integer": "int",
    "integer range": "int",
    "float": "float",
    "float range": "float",
    "boolean": "bool",
    "path": "path",
    "filename": "path",
    "file": "path",
    "choice": "choice",
}


def _param(p: Any) -> Param:
    """A `Param` from a click parameter (classic click: `p.type`) or a typer one (typer
    with its own parser: `p.type_descriptor`), whichever this typer gives."""
    choices: tuple[str, ...] = ()
    low, high = getattr(p, "min", None), getattr(p, "max", None)
    ptype = getattr(p, "type", None)
    if ptype is not None and hasattr(ptype, "name"):
        kind = _CLICK_TYPE_NAMES.get(str(ptype.name), "str")
        choices = tuple(str(c) for c in getattr(ptype, "choices", ()) or ())
        low = getattr(ptype, "min", low)
        high = getattr(ptype, "max", high)
    else:
        descriptor = p.type_descriptor
        kind, choices = _kind_of_annotation(descriptor.annotation)
        found = getattr(descriptor, "choices", None)
        if found:
            kind, choices = "choice", tuple(str(c) for c in found)
    is_argument = getattr(p, "param_type_name", "") == "argument" or not p.opts[0].startswith("-")
    if not is_argument and (getattr(p, "is_flag", False) or getattr(p, "count", False)):
        kind = "flag"
    return Param(
        name=p.name,
        opts=tuple(p.opts),
        secondary_opts=tuple(getattr(p, "secondary_opts", ()) or ()),
        kind=kind,
        is_argument=is_argument,
        required=bool(p.required),
        multiple=bool(getattr(p, "multiple", False)) or (is_argument and p.nargs == -1),
        minimum=low,
        maximum=high,
        choices=choices,
    )


def read_grammar(root: Any, path: tuple[str, ...] = ()) -> list[Command]:
    """Every leaf command under the click/typer group `root` (hidden ones left out),
    found by walking `.commands` (duck-typed: this typer's parser is not click's)."""
    found: list[Command] = []
    for name, sub in sorted(getattr(root, "commands", {}).items()):
        if getattr(sub, "hidden", False):
            continue
        if getattr(sub, "commands", None) is not None:
            found += read_grammar(sub, (*path, name))
            continue
        params = tuple(_param(p) for p in sub.params if not getattr(p, "hidden", False) and p.opts)
        found.append(Command((*path, name), params))
    return found


# -- the sandbox -------------------------------------------------------------------------


@dataclass
class Sandbox:
    """Sample files for path options (under `base`, restored before every run), the
    profile store every run uses, and the folder runs work in."""

    root: Path
    base: Path = field(init=False)
    work: Path = field(init=False)
    store: Path = field(init=False)
    files: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.base = self.root / "files"
        self.work = self.root / "work"
        self.store = self.base / "store" / "profiles.sqlite"

    @classmethod
    def create(cls, root: Path) -> Sandbox:
        """Write the sample files under `root` (a fresh temporary folder)."""
        box = cls(root)
        box.work.mkdir(parents=True, exist_ok=True)
        box.store.parent.mkdir(parents=True, exist_ok=True)
        b, f = box.base, box.files
        f["missing"] = b / "no-such-folder" / "x.json"
        f["missing-file"] = b / "no-such-file.json"
        f["dir"] = b / "a-folder"
        f["dir"].mkdir()
        (b / "plain.txt").write_text("plain\n")
        f["under-a-file"] = b / "plain.txt" / "x.png"
        f["long-name"] = b / ("n" * 300)
        f["unicode"] = b / "é 设备 🙂.json"
        f["empty"] = b / "empty.json"
        f["empty"].write_text("")
        f["junk"] = b / "junk.json"
        f["junk"].write_text("not json {\n")
        f["binary"] = b / "binary.bin"
        f["binary"].write_bytes(bytes(range(256)) * 4)
        f["json-object"] = b / "object.json"
        f["json-object"].write_text('{"network": 1, "devices": null}\n')
        f["json-list"] = b / "list.json"
        f["json-list"].write_text("[]\n")
        f["json-nan"] = b / "nan.json"
        f["json-nan"].write_text('{"version": 1, "network": "x", "entries": NaN}\n')
        f["fake-sqlite"] = b / "fake.sqlite"
        f["fake-sqlite"].write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
        f["yaml-junk"] = b / "junk.yaml"
        f["yaml-junk"].write_text("devices: [cpu\n  - : :\n")
        f["yaml-cpu"] = b / "cpu.yaml"
        f["yaml-cpu"].write_text("version: 1\ndevices:\n  - cpu\n  - {kind: cpu, threads: 1}\n")
        f["yaml-empty-devices"] = b / "none.yaml"
        f["yaml-empty-devices"].write_text("version: 1\ndevices: []\n")
        f["yaml-emu"] = b / "emu.yaml"
        f["yaml-emu"].write_text(
            "version: 1\ndevices:\n  - kind: emulated\n    preset: firefly-rk3399\n"
            "    count: 2\n    link: {mbps: 100}\n"
        )
        f["readonly-dir"] = b / "read-only"
        f["readonly-dir"].mkdir()
        f["in-readonly"] = f["readonly-dir"] / "x.png"
        f["out-png"] = b / "out" / "timeline.png"
        f["out-png"].parent.mkdir()
        f["out-json"] = b / "out" / "plan.json"
        f["out-dir"] = b / "out" / "results"
        f["new-store"] = b / "out" / "new.sqlite"
        if Path("/dev/full").exists():
            f["dev-full"] = Path("/dev/full")  # every write fails: ENOSPC
        if Path("/proc/self").is_dir():
            f["in-proc"] = Path("/proc/maniple-fuzz/x.png")  # cannot be created, even by root
        box._write_tables()
        box.seal()
        return box

    def _write_tables(self) -> None:
        """A valid perf table file, a folder of them and a store holding it (the public
        API writes them, so they follow the format wherever it goes)."""
        from maniple.batch import PerfEntry, PerfTable, ProfileStore

        table = PerfTable(
            "toy",
            {
                "slow": (PerfEntry(1, 4.0, 0.5), PerfEntry(8, 32.0, 1.0)),
                "fast": (PerfEntry(1, 1.0, 0.0), PerfEntry(8, 7.0, 0.2)),
            },
        )
        self.files["table"] = self.base / "toy.json"
        table.save(self.files["table"])
        self.files["tables-dir"] = self.base / "tables"
        self.files["tables-dir"].mkdir()
        shutil.copy(self.files["table"], self.files["tables-dir"] / "toy.json")
        with ProfileStore(self.store) as store:
            store.put_table(table)
        self.files["store"] = self.base / "copy.sqlite"
        shutil.copy(self.store, self.files["store"])

    def add(self, name: str, path: Path) -> None:
        """Keep `path` (a file under `base`) among the samples, restored like the rest."""
        if path.is_file() and path.stat().st_size > 0:
            self.files[name] = path
            self.seal()

    def seal(self) -> None:
        """Snapshot the sample files as they are now: what `reset` restores."""
        pristine = self.root / "pristine"
        self.unlock()
        shutil.rmtree(pristine, ignore_errors=True)
        shutil.copytree(self.base, pristine, symlinks=True)
        self._lock()

    def reset(self) -> None:
        """Restore the sample files and the profile store: every run starts from the same
        state, so a failing command line reproduces on its own."""
        self.unlock()
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.copytree(self.root / "pristine", self.base, symlinks=True)
        self._lock()

    def _lock(self) -> None:
        self.files["readonly-dir"].chmod(0o555)  # effective for non-root users only

    def unlock(self) -> None:
        """Writable again (so that it can be removed); also before pytest cleans up."""
        for folder in (self.base, self.root / "pristine"):
            target = folder / "read-only"
            if target.is_dir():
                target.chmod(0o755)

    def env(self) -> dict[str, str]:
        """The environment every run gets: its own profile store, crash-log folder and
        folder for the records of private Ray instances."""
        return {
            "MANIPLE_PROFILE_DB": str(self.store),
            "MANIPLE_CACHE_DIR": str(self.root / "cache"),
            "MANIPLE_RAY_SESSIONS": str(self.root / "ray-sessions"),
        }

    def paths(self, *names: str) -> list[str]:
        return [str(self.files[n]) for n in names if n in self.files]


# -- values -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """What a fuzz run may draw and how it runs.

    ray: Ray-starting commands, options and values (emulated boards, ray: devices) are
    drawn; in_process: runs go through the entry point in this process (fast; no Ray);
    big: sizes that allocate for real (large input shapes) are drawn."""

    name: str
    ray: bool
    in_process: bool
    big: bool


DEFAULT = Profile("default", ray=False, in_process=True, big=False)
SLOW = Profile("slow", ray=True, in_process=False, big=True)

RAY_COMMANDS = frozenset({("demo",), ("bench", "legion"), ("bench", "stream")})
"""Commands that always start Ray (emulated boards): slow profile only."""
RAY_OPTIONS = frozenset({"--emulate", "--ray"})
"""Options whose values start Ray or reach a Ray cluster: slow profile only."""
ALWAYS_GIVEN = {
    ("bench", "legion"): ("--networks", "--sets", "--repeats", "--out"),
    ("bench", "stream"): ("--networks", "--sets", "--frames-per-board", "--out"),
    ("demo",): ("--network", "--boards"),
}
"""Options whose defaults cost an hour (`bench legion`: 14 board sets x 3 networks) or
many minutes: every drawn line gives them, so the run stays within its time limit."""
OUTPUT_PATHS = frozenset({"--timeline", "--save-plan", "--output", "--out"})


def _choices(module: str, attr: str) -> tuple[str, ...]:
    """A tuple of names the library exports (planners, searches, ...); () if it moved."""
    try:
        found = getattr(__import__(module, fromlist=[attr]), attr)
    except (ImportError, AttributeError):
        return ()
    return tuple(str(x) for x in found)


class Values:
    """Token strategies per parameter: valid values (from the hints or the type),
    boundary values and wrong-typed ones, mixed about 6:3:1."""

    def __init__(self, box: Sandbox, profile: Profile) -> None:
        self.box = box
        self.profile = profile

    # valid values, by option; commands with the same option name mean different things
    def valid(self, cmd: Command, p: Param) -> list[str]:
        table_cmd = cmd.path[0] in ("plan-batch", "table")
        ray = self.profile.ray
        hint = self._hint(cmd, p, table_cmd, ray)
        if hint:
            return hint
        if p.choices:
            return list(p.choices)
        if p.kind == "int":
            low = int(p.minimum) if p.minimum is not None else 1
            high = int(p.maximum) if p.maximum is not None else low + 2
            return [str(v) for v in range(low, min(high, low + 2) + 1)]
        if p.kind == "float":
            return ["1.0", "0.5", "2"]
        if p.kind == "path":
            return self.box.paths("out-json" if p.long in OUTPUT_PATHS else "table")
        if p.kind == "bool":
            return ["true", "false"]
        return ["x"]

    def _hint(self, cmd: Command, p: Param, table_cmd: bool, ray: bool) -> list[str]:
        o, k, box = p.long, p.kind, self.box
        if o in ("--network", "network") and k == "str":
            if table_cmd:
                return ["toy"]
            if cmd.option("--input-shape") is None:  # a zoo net at its own size: a small one
                return ["squeezenet_v1.1"]
            return [TINY, TINY, "zoo_fixture_nets:tiny_net"]
        if o == "--networks":
            return ["squeezenet_v1.1"]
        if o == "--input-shape":
            return ["3,32,32", "3,16,16", "3,24,40"]
        if o in ("--device", "--devices") and k == "str":
            if table_cmd:
                return ["slow", "fast", "fa", "slow,fast"]
            boards = ["emu:custom:60", "emu:firefly-rk3399@1000"]
            if not ray or cmd.path[0] not in ("probe", "infer", "measure-io"):
                boards = []
            return ["cpu", "cpu", "cpu,cpu", *boards]
        if o == "--emulate":
            return ["1xfirefly-rk3399", "2xcustom:60@1000", "custom:60+1xodroid-xu4"]
        if o == "--sets":
            return ["1F", "1F+1O"]
        if o == "--ray":
            return ["local"]
        if o == "--planner":
            return list(_choices("maniple.batch.planners", "PLANNERS")) or ["greedy"]
        if o == "--search":
            return list(_choices("maniple.spatial.plan", "SEARCHES")) or ["legion"]
        if o == "--runtime":
            return list(_choices("maniple.spatial.peer_setup", "RUNTIME_CHOICES")) or ["auto"]
        if o == "--runtimes":
            return ["star", "star,peer"]
        if o == "--compress":
            return list(_choices("maniple.spatial.peer_setup", "COMPRESS_MODES")) or ["auto"]
        if o == "--dtype":
            return ["float32", "float16"]
        if o == "--format":
            return ["json", "csv"]
        if o == "--set":
            return ["1=2.5", "4=9,0.5", "16=30.5,1"]
        if o == "--drop":
            return ["1", "8"]
        if o in ("--kind", "--host"):
            return ["cpu", "localhost", "board-a"]
        if o in ("--tables", "path"):
            return box.paths("table", "tables-dir", "store")
        if o == "--plan":
            return box.paths("plan")
        if o == "--cluster":
            return box.paths("yaml-cpu", *(["yaml-emu"] if ray else []))
        if o == "--profile-db":
            return box.paths("store", "new-store")
        if o == "--timeline":
            return box.paths("out-png")
        if o in ("--save-plan", "--output"):
            return box.paths("out-json")
        if o == "--out":
            return box.paths("out-dir")
        if k == "int":  # counts that multiply the work: small
            small = {"--batch": 4, "--devices": 4, "--max-batch": 4, "--profile-max-batch": 8}
            if o in small:
                return [str(v) for v in range(1, small[o] + 1)]
            if o in ("--repeats", "--trials", "--profile-repeats", "--boards", "--threads"):
                return ["1", "2"]
            if o == "--inc":
                return ["0", "1", "2"]
            if o == "--frames":
                return ["1", "3", "8"]
            if o == "--frames-per-board":
                return ["1", "2"]
            if o == "--seed":
                return ["0", "1", "7"]
        if k == "float":
            if o == "--min-gain":
                return ["0", "0.03", "0.5"]
            if o == "--link-mbps":
                return ["10", "100", "1000"]
            if o == "--dilation":
                return ["1", "2"]
            if o == "--timeout":
                return ["30", "5"]
            if o == "--fps":
                return ["50", "1000"]
            if o == "--profile-budget":
                return ["0.2", "1"]
        return []

    def boundary(self, cmd: Command, p: Param) -> list[str]:
        o, k, box = p.long, p.kind, self.box
        if k == "int":
            return ["0", "-1", *HUGE_INTS]
        if k == "float":
            return list(BOUNDARY_FLOATS)
        if k == "path":
            names = ["missing", "missing-file", "dir", "under-a-file", "long-name", "unicode"]
            names += ["readonly-dir", "in-readonly", "dev-full", "in-proc"]
            if o not in OUTPUT_PATHS:
                names += ["empty", "junk", "binary", "json-object", "json-list", "json-nan"]
                names += ["fake-sqlite", "yaml-junk", "yaml-empty-devices", "table", "store"]
            return [*box.paths(*names), "", "-"]
        if o == "--input-shape":
            shapes = ["3,1,1", "3,2,2", "0,32,32", "3,0,32", "-3,32,32", "3,32,32,32", "3,32"]
            shapes += ["", "3,,32", " 3, 32 ,32 ", "3x32x32", "1,32,32", "nan,32,32", "3,1e1,8"]
            shapes += ["3,100000,100000", f"3,{2**31},1", f"{10**12},{10**12},{10**12}"]
            return shapes + (["3,2048,2048", "64,1024,1024"] if self.profile.big else [])
        if o in ("--network", "network", "--networks") and cmd.path[0] not in ("plan-batch",):
            nets = ["vgg16", "nosuch", "math:pi", "os:getcwd", "torch.nn:Identity"]
            nets += ["torch.nn:Conv2d", "torch.nn:Flatten", "zoo_fixture_nets:not_a_module"]
            nets += ["zoo_fixture_nets:needs_args", "no_such_pkg_xyz:build", ":", "a:b:c"]
            nets += [f"{TINY[:-9]}:", "squeezenet_v1.1", "vgg-16,yolov2,"]
            return nets + list(ODD_STRINGS)
        if o in ("--device", "--devices"):
            devs = ["CPU", "cuda:0", "cuda:99", "gpu0", "mps", "xpu:0", "igpu", "cpu:0", "meta"]
            devs += [",", "cpu,", "tpu", "cuda:-1", "cpu," * 50]
            if self.profile.ray:
                devs += ["emu:firefly-rk3399", "emu:custom:0", "emu:custom:-1", "emu:nosuch"]
                devs += ["emu:custom:nan", "emu:firefly-rk3399@0", "ray:nowhere", "ray:head"]
            return devs + list(ODD_STRINGS)
        if o in ("--emulate", "--sets"):
            # no mid-sized counts: 50 boards would be 50 real worker processes on this host
            unit = "xfirefly-rk3399" if o == "--emulate" else "F"
            return [f"0{unit}", f"-1{unit}", f"{10**12}{unit}", "custom:0", "custom:nan"]
        if o == "--ray":
            return ["auto", "127.0.0.1:1", "nohost:99999", ""]
        if o == "--set":
            return ["64=nan", "0=1", "-1=1", "1=inf", "x=1", "1=", "=", "1=1,2,3", f"{10**12}=1"]
        return list(ODD_STRINGS)

    def sweep(self, cmd: Command, p: Param) -> list[str]:
        """The few boundary values every parameter is tried with, one at a time."""
        if p.kind == "int":
            return ["0", "-1", str(10**12)]
        if p.kind == "float":
            return ["nan", "0", "-1"]
        if p.kind == "path":
            names = ("dir", "dev-full") if p.long in OUTPUT_PATHS else ("dir", "binary")
            return self.box.paths(*names)
        if p.long == "--input-shape":
            return ["3,1,1", "3,100000,100000"]
        return ["", "[/]"]

    def wrong(self, cmd: Command, p: Param) -> list[str]:
        if p.kind == "int":
            return list(WRONG_INTS)
        if p.kind == "float":
            return list(WRONG_FLOATS)
        if p.kind == "bool":
            return ["maybe", "", "2"]
        if p.choices or p.kind == "str":
            valid = self.valid(cmd, p)
            return [v.upper() for v in valid[:2]] + [v[:-1] for v in valid[:2] if v] + ["?"]
        return ["\x7f", "~nobody/x"]

    def value(self, cmd: Command, p: Param) -> st.SearchStrategy[str]:
        """One value token for `p`: valid six times in ten, boundary three, wrong one."""
        pools = [self.valid(cmd, p), self.boundary(cmd, p), self.wrong(cmd, p)]
        pools = [pool or ["x"] for pool in pools]
        return st.sampled_from((0,) * 6 + (1,) * 3 + (2,)).flatmap(
            lambda i: st.sampled_from(pools[i])
        )


# -- command lines ----------------------------------------------------------------------

JUNK_TOKENS = ("--no-such-option", "stray-argument", "--help", "--", "-", "--json=1", "-Z")


def fuzzable(cmd: Command, profile: Profile) -> list[Param]:
    """The parameters this profile draws (Ray options only where Ray may start)."""
    return [p for p in cmd.params if profile.ray or p.long not in RAY_OPTIONS]


def _tokens(p: Param, value: str, form: int) -> list[str]:
    """The option's tokens: `--opt value`, `-o value`, `--opt=value` or `-ovalue`."""
    if p.is_argument:
        return [value]
    shorts = [o for o in p.opts if not o.startswith("--")]
    if form == 1 and shorts:
        return [shorts[0], value]
    if form == 2:
        return [f"{p.long}={value}"]
    if form == 3 and shorts and value:
        return [f"{shorts[0]}{value}"]
    return [p.long, value]


def argv_strategy(cmd: Command, values: Values) -> st.SearchStrategy[list[str]]:
    """Command lines for `cmd`: the command path, each required parameter (nine times in
    ten), a subset of the optional ones, in any order, sometimes a junk token."""
    params = fuzzable(cmd, values.profile)
    shape = cmd.option("--input-shape")

    @st.composite
    def line(draw: st.DrawFn) -> list[str]:
        chosen: list[Param] = []
        always = ALWAYS_GIVEN.get(cmd.path, ())
        for p in params:
            odds = 9 if p.required else (5 if p.long == "--json" else 3)
            odds = 10 if p.long in always else odds
            if draw(st.integers(0, 9)) < odds:
                chosen.append(p)
        chosen = draw(st.permutations(chosen))
        parts: list[list[str]] = []
        picked: dict[str, str] = {}
        for p in chosen:
            if p.kind == "flag":
                flags = [p.long, *p.secondary_opts, *[o for o in p.opts if o != p.long]]
                parts.append([draw(st.sampled_from(flags))])
                continue
            for _ in range(draw(st.integers(1, 3)) if p.multiple else 1):
                value = draw(values.value(cmd, p))
                picked.setdefault(p.long, value)
                parts.append(_tokens(p, value, draw(st.sampled_from((0, 0, 0, 1, 2, 3)))))
        net = picked.get("--network", picked.get("network"))
        if shape is not None and shape not in chosen and net in NEEDS_SHAPE:
            if draw(st.integers(0, 9)) < 8:  # the tiny nets need a shape to get anywhere
                parts.append(["--input-shape", draw(st.sampled_from(values.valid(cmd, shape)))])
        if draw(st.integers(0, 99)) < 8:
            parts.insert(draw(st.integers(0, len(parts))), [draw(st.sampled_from(JUNK_TOKENS))])
        return [*cmd.path, *(t for part in parts for t in part)]

    return line()


def minimal_valid(
    cmd: Command, values: Values, override: tuple[Param, str] | None = None
) -> list[str]:
    """The command's cheapest valid line, with --json where it has one: each required
    parameter with its first valid value (and the tiny net's input shape, one local
    device, one repeat); `override` sets one parameter to a given value."""
    chosen: dict[str, tuple[Param, str]] = {}
    always = ALWAYS_GIVEN.get(cmd.path, ())
    for p in fuzzable(cmd, values.profile):
        if p.required or p.long in always:
            chosen[p.long] = (p, values.valid(cmd, p)[0])

    def give(long: str, value: str) -> None:
        p = cmd.option(long)
        if p is not None and long not in chosen:
            chosen[long] = (p, value)

    network = chosen.get("--network", chosen.get("network", (None, "")))[1]
    if network in NEEDS_SHAPE:
        give("--input-shape", "3,32,32")
    if cmd.path[0] == "spatial" and "--emulate" not in chosen:
        give("--devices", "cpu")
    if cmd.path == ("infer",):
        give("--device", "cpu")
    give("--repeats", "1")
    if override is not None:
        chosen[override[0].long] = override
    argv = list(cmd.path)
    for p, value in chosen.values():
        argv += [p.long] if p.kind == "flag" else _tokens(p, value, 0)
    if cmd.option("--json") is not None:
        argv.append("--json")
    return argv


def sweep_lines(cmd: Command, values: Values) -> list[list[str]]:
    """The minimal valid line with one parameter at a time set to each of its sweep
    values (0, -1, 10**12, NaN, a folder, /dev/full, ...): every limit and every path
    check is tried on every run, not left to chance."""
    lines = []
    for p in fuzzable(cmd, values.profile):
        if p.kind != "flag":
            lines += [minimal_valid(cmd, values, (p, v)) for v in values.sweep(cmd, p)]
    return lines
