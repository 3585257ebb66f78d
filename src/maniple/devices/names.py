"""Device names the way users write them, parsed into a frozen `DeviceSpec`.

Grammar (one device):

    cpu                      this process, on the host CPU
    cuda | cuda:N | gpuN     NVIDIA GPU N (gpu0/gpu1 are the batch-split seed's names)
    igpu | xpu | xpu:N       Intel GPU through torch.xpu, where present (igpu = xpu:0)
    mps                      Apple GPU
    emu:PRESET[@MBPS][#K]    an emulated edge board (PRESET: firefly-rk3399, odroid-xu4),
                             optional link bandwidth in Mbit/s, optional instance number K
    emu:custom:MS[@MBPS][#K] an emulated board that runs VGG-16 in MS milliseconds
    ray:NODE[/cpu|/cuda:N]   a worker on a Ray node, by IP, node id, node name, custom
                             resource or label value; 'head' is the head node
    LOCAL#K                  worker K of a local device (cpu#1, cuda:0#1, gpu0#1, ...):
                             several workers on one device, each its own thread and model,
                             told apart by name (e.g. a peer split on a single GPU)

Why a parser of our own: names appear on the command line, in YAML cluster files and in
reports, and must mean the same thing everywhere; errors list what is valid.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import platform
import re
from dataclasses import dataclass

from maniple.devices.link import LinkSpec
from maniple.devices.presets import PRESETS, BoardSpec, board
from maniple.errors import ManipleError
from maniple.precision import ExecMode, parse_precision

LOCAL_KINDS = ("cpu", "cuda", "xpu", "mps")
KINDS = (*LOCAL_KINDS, "emu", "ray")

GRAMMAR = (
    "cpu, cuda:N (or gpuN), igpu / xpu:N, mps, emu:firefly-rk3399, emu:odroid-xu4, "
    "emu:custom:VGG16_MS (each emu name may end in @MBPS and #K), ray:NODE, ray:NODE/cpu, "
    "ray:NODE/cuda:N; a local device may end in #K (cuda:0#1) for a second worker on it"
)


@dataclass(frozen=True)
class DeviceSpec:
    """Where work runs. Frozen and picklable: it is sent to worker processes.

    kind:    one of cpu, cuda, xpu, mps, emu, ray
    index:   GPU index (cuda/xpu), or instance number of an emulated board (#K)
    board:   the emulated board (emu only)
    node:    the Ray node selector (ray only)
    target:  the torch device on the Ray node, 'cpu' or 'cuda:N' (ray only)
    threads: intra-op threads the worker uses (None: torch's default; emu: always 1)
    label:   a display name that replaces the canonical one (from a cluster file)
    precision: this device's own precision (a cluster file's `precision:` key), which the
             run's `--precision` does not override; None: the run's
    mode:    how the worker computes (precision, memory format, compiled), resolved for a
             run by `with_mode`; None: `precision` (or fp32) with the defaults
    """

    kind: str
    index: int | None = None
    board: BoardSpec | None = None
    node: str | None = None
    target: str | None = None
    threads: int | None = None
    label: str | None = None
    precision: str | None = None
    mode: ExecMode | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ManipleError(f"unknown device kind {self.kind!r}; valid: {', '.join(KINDS)}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ManipleError(
                f"threads for {self.canonical} must be a whole number >= 1, got {self.threads!r}"
            )
        if self.kind == "emu" and self.board is None:
            raise ManipleError("an emulated device needs a board (emu:firefly-rk3399, ...)")
        if self.precision is not None:
            object.__setattr__(
                self, "precision", parse_precision(self.precision, f"precision of {self.canonical}")
            )

    @property
    def canonical(self) -> str:
        """The name `parse_device` reads back to this spec (without threads or label)."""
        if self.kind in ("cuda", "xpu"):
            return f"{self.kind}:{self.index or 0}"
        if self.kind == "emu":
            assert self.board is not None
            b = self.board
            text = f"emu:custom:{b.vgg16_ms:g}" if b.preset == "custom" else f"emu:{b.preset}"
            if b.link != LinkSpec():
                text += f"@{b.link.mbps:g}"
            if self.index is not None:
                text += f"#{self.index}"
            return text
        if self.kind == "ray":
            return f"ray:{self.node}/{self.target}"
        return self.kind

    @property
    def exec_mode(self) -> ExecMode:
        """How this device computes: `mode`, else its own precision with the defaults."""
        if self.mode is not None:
            return self.mode
        return ExecMode(self.precision or "fp32")

    def with_mode(self, run: ExecMode) -> DeviceSpec:
        """This device under a run's mode: the run's memory format and compile setting,
        and the run's precision unless the device names its own. An emulated board always
        computes strict fp32 eager: its speed is calibrated that way."""
        if self.kind == "emu":  # a board's speed is calibrated in fp32: it stays there
            return self
        mode = dataclasses.replace(run, precision=self.precision or run.precision)
        return dataclasses.replace(self, mode=mode)

    @property
    def name(self) -> str:
        """The name shown in reports and used to look a device up in a cluster."""
        return self.label or self.canonical

    @property
    def torch_device(self) -> str:
        """The torch device string the worker computes on."""
        if self.kind in ("cuda", "xpu"):
            return f"{self.kind}:{self.index or 0}"
        if self.kind == "emu":
            return "cpu"
        if self.kind == "ray":
            assert self.target is not None
            return self.target
        return self.kind

    @property
    def is_local(self) -> bool:
        return self.kind in LOCAL_KINDS

    @property
    def is_emulated(self) -> bool:
        return self.kind == "emu"

    @property
    def is_ray(self) -> bool:
        return self.kind == "ray"

    def __str__(self) -> str:
        return self.name


_GPU = re.compile(r"^(cuda|gpu|xpu)(?::?(\d+))?$")
_EMU = re.compile(
    r"^emu:(?P<board>[a-z0-9][a-z0-9-]*)(?::(?P<ms>[0-9.]+))?"
    r"(?:@(?P<mbps>[0-9.]+))?(?:#(?P<k>\d+))?$"
)
_RAY = re.compile(r"^ray:(?P<node>[^/\s]+)(?:/(?P<target>cpu|cuda(?::\d+)?))?$")
_INSTANCE = re.compile(r"^(?P<device>[^#]+)#(?P<k>\d+)$")


def _bad(text: str, why: str) -> ManipleError:
    return ManipleError(f"bad device name {text!r}: {why}. Valid forms: {GRAMMAR}")


def parse_device(text: str | DeviceSpec, *, threads: int | None = None) -> DeviceSpec:
    """Parse one device name (see the module docstring); syntax only, presence is not checked.

    >>> parse_device("gpu1").name
    'cuda:1'
    """
    if isinstance(text, DeviceSpec):
        return text
    if not isinstance(text, str):
        raise ManipleError(f"a device name must be a string, got {text!r}")
    raw = text
    text = text.strip().lower()
    if "#" in text and not text.startswith(("emu:", "ray:")):
        return _instance(raw, text, threads)
    if text in ("cpu", "mps"):
        return DeviceSpec(text, threads=threads)
    if text == "igpu":
        return DeviceSpec("xpu", index=0, threads=threads)
    if m := _GPU.match(text):
        kind = "xpu" if m.group(1) == "xpu" else "cuda"
        if m.group(1) == "gpu" and m.group(2) is None:
            kind = "cuda"
        if m.group(1) in ("cuda", "xpu") and m.group(2) is not None and ":" not in text:
            raise _bad(raw, f"write {m.group(1)}:{m.group(2)}")
        return DeviceSpec(kind, index=int(m.group(2) or 0), threads=threads)
    if text.startswith("emu:"):
        m = _EMU.match(text)
        if not m:
            raise _bad(raw, "an emulated board is emu:PRESET or emu:custom:MS, then @MBPS, #K")
        name, ms, mbps, k = m.group("board"), m.group("ms"), m.group("mbps"), m.group("k")
        if name != "custom" and ms is not None:
            raise _bad(raw, f"only emu:custom takes a VGG-16 latency, not preset {name!r}")
        try:
            link = LinkSpec(mbps=float(mbps)) if mbps is not None else LinkSpec()
            spec = board(name, link, float(ms) if ms is not None else None)
        except ValueError:
            raise _bad(raw, "numbers must be plain decimals like 100 or 2.5") from None
        return DeviceSpec("emu", index=int(k) if k is not None else None, board=spec)
    if text.startswith("ray:"):
        m = _RAY.match(raw.strip())
        if not m:
            raise _bad(raw, "a Ray device is ray:NODE, ray:NODE/cpu or ray:NODE/cuda:N")
        target = m.group("target") or "cpu"
        if target == "cuda":
            target = "cuda:0"
        return DeviceSpec("ray", node=m.group("node"), target=target, threads=threads)
    raise _bad(raw, "not a device name maniple knows")


def _instance(raw: str, text: str, threads: int | None) -> DeviceSpec:
    """`LOCAL#K`: worker K of a local device. Its name is the device's canonical name and
    `#K` (a label: the torch device is the same), so two workers on one GPU are two devices
    to every planner, runtime and report, and the name reads back to the same spec."""
    m = _INSTANCE.match(text)
    if not m:
        raise _bad(raw, "a second worker on a local device is NAME#K, K a whole number (cuda:0#1)")
    try:
        spec = parse_device(m.group("device"), threads=threads)
    except ManipleError:
        raise _bad(raw, f"{m.group('device')!r} before #K is not a device name") from None
    if not spec.is_local:
        raise _bad(raw, "only a local device (cpu, cuda:N, xpu:N, mps) takes #K here")
    return dataclasses.replace(spec, label=f"{spec.canonical}#{int(m.group('k'))}")


@dataclass(frozen=True)
class DeviceInfo:
    """One line of `maniple devices`: a device that can be used here and what it is."""

    name: str
    kind: str
    description: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "description": self.description}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_description() -> str:
    return f"{_cpu_model()}, {os.cpu_count()} logical cores"


def _xpu_count() -> int:
    import torch

    xpu = getattr(torch, "xpu", None)
    try:
        return xpu.device_count() if xpu is not None and xpu.is_available() else 0
    except Exception:  # an xpu build without a driver raises on query
        return 0


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[DeviceInfo]:
    """The devices usable on this machine: cpu, each cuda:N, xpu:N, mps, and the
    emulated presets (which need Ray; said so when Ray is not installed)."""
    import torch

    out = [DeviceInfo("cpu", "cpu", cpu_description())]
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        props = torch.cuda.get_device_properties(i)
        out.append(
            DeviceInfo(f"cuda:{i}", "cuda", f"{props.name}, {props.total_memory / 2**30:.1f} GiB")
        )
    for i in range(_xpu_count()):
        alias = " (igpu)" if i == 0 else ""
        out.append(DeviceInfo(f"xpu:{i}", "xpu", f"{torch.xpu.get_device_name(i)}{alias}"))
    if _mps_available():
        out.append(DeviceInfo("mps", "mps", "Apple GPU (Metal)"))
    ray_note = "" if importlib.util.find_spec("ray") else " [needs Ray: pip install ray]"
    for preset in PRESETS.values():
        out.append(DeviceInfo(f"emu:{preset.name}", "emu", preset.description + ray_note))
    return out


def check_present(spec: DeviceSpec) -> DeviceSpec:
    """Raise ManipleError naming the device and listing the present ones if a local
    device is absent. Emulated boards need Ray; Ray nodes are checked when opened."""
    if spec.kind == "cpu":
        return spec
    present = [d.name for d in available_devices()]
    extra = "; also accepted: emu:custom:VGG16_MS, ray:NODE, ray:NODE/cuda:N"
    if spec.kind == "emu":
        if importlib.util.find_spec("ray") is None:
            raise ManipleError(
                f"device {spec.name!r} is an emulated board, which runs in a Ray worker "
                "process, but Ray is not installed; pip install ray"
            )
        return spec
    if spec.kind == "ray":
        if importlib.util.find_spec("ray") is None:
            raise ManipleError(f"device {spec.name!r} needs Ray, which is not installed")
        return spec
    if spec.torch_device not in present and not (spec.kind == "mps" and "mps" in present):
        raise ManipleError(
            f"device {spec.name!r} is not present on this machine. "
            f"Present devices: {', '.join(present)}{extra}"
        )
    return spec


def resolve_device(text: str | DeviceSpec, *, threads: int | None = None) -> DeviceSpec:
    """parse_device + check_present: the spec of a device that exists here."""
    return check_present(parse_device(text, threads=threads))
