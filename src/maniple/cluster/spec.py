"""Cluster specs: which devices a run uses, and the YAML file that keeps them.

Why both: a file is what a user keeps for a real cluster (nodes, links, thread counts);
the shorthands (`--devices cpu,cuda:0`, `--emulate 3xfirefly-rk3399+2xodroid-xu4`,
`--ray auto`, in cluster.shorthand) are what one types for a quick run. Both give the same
frozen ClusterSpec, numbered and named by `finish_spec`, and every error names the file,
the line and the field (or the shorthand item).

File format (version 1):

    version: 1                  # optional
    ray: local                  # optional: local (default), auto, or HOST:PORT
    dilation: 2                 # optional: time dilation of emulated boards
    fast_forward: false         # optional: emulated boards skip their sleeps
    timeout_s: 30               # optional: how long a silent remote worker is tolerated
    devices:
      - cpu                     # any device name is accepted as a plain string
      - {kind: cuda, index: 0}
      - kind: emulated          # or emu
        preset: firefly-rk3399  # firefly-rk3399, odroid-xu4, or custom (+ vgg16_ms)
        count: 3
        link: {mbps: 100, latency_ms: 0.5, uplink_mbps: 1000}
      - kind: ray
        node: 10.0.0.5          # IP, node id, custom resource, label, or head
        device: cuda:0          # default cpu
        threads: 4
        precision: bf16         # optional, any device but an emulated board: fp32 (the
                                # default), tf32, bf16 or fp16; --precision sets the rest
        name: board-a           # optional display name
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maniple.cluster.checks import (
    check_bool,
    check_dilation,
    check_index,
    check_name,
    check_positive_int,
    check_positive_number,
    check_precision,
    check_ray_address,
    check_ray_target,
    check_timeout,
)
from maniple.cluster.yamlio import line_of, load_yaml
from maniple.devices.handles import DEFAULT_TIMEOUT_S
from maniple.devices.link import LinkSpec
from maniple.devices.names import DeviceSpec, parse_device
from maniple.devices.presets import PRESETS, board
from maniple.errors import ManipleError, unknown_name_message
from maniple.precision import ExecMode

FILE_VERSION = 1
_TOP_KEYS = ("version", "devices", "ray", "dilation", "fast_forward", "timeout_s")
_KIND_KEYS: dict[str, tuple[str, ...]] = {
    "cpu": ("threads", "precision"),
    "cuda": ("index", "threads", "precision"),
    "xpu": ("index", "threads", "precision"),
    "igpu": ("threads", "precision"),
    "mps": ("precision",),
    "emulated": ("preset", "vgg16_ms", "count", "link"),
    "ray": ("node", "device", "threads", "precision"),
}
_KIND_ALIASES = {"emu": "emulated", "gpu": "cuda"}
_LINK_KEYS = ("mbps", "latency_ms", "uplink_mbps")


@dataclass(frozen=True)
class ClusterSpec:
    """The devices of a run and how to reach them.

    ray_all_nodes: `--ray` was given with no devices: one worker per live Ray node
    (its CPU, and each of its GPUs) is added when the cluster is opened.
    """

    devices: tuple[DeviceSpec, ...]
    ray_address: str | None = None
    dilation: float | None = None
    fast_forward: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    ray_all_nodes: bool = False
    source: str = "<command line>"

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.devices]

    @property
    def needs_ray(self) -> bool:
        return self.ray_all_nodes or any(not d.is_local for d in self.devices)

    def with_mode(self, mode: ExecMode) -> ClusterSpec:
        """Every device under the run's `mode` (see DeviceSpec.with_mode)."""
        return dataclasses.replace(self, devices=tuple(d.with_mode(mode) for d in self.devices))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FILE_VERSION,
            "devices": self.names,
            "precision": {d.name: d.precision for d in self.devices if d.precision},
            "ray": self.ray_address,
            "dilation": self.dilation,
            "fast_forward": self.fast_forward,
            "timeout_s": self.timeout_s,
            "ray_all_nodes": self.ray_all_nodes,
        }


# -- files ------------------------------------------------------------------------------------
def load_cluster(path: str | Path) -> ClusterSpec:
    """Read a cluster YAML file (format in this module's docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManipleError(f"cannot read cluster file {str(path)!r}: {exc.strerror}") from None
    return parse_cluster_text(text, source=str(path))


class _At:
    """Builds `file:line: field: message` errors."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, container: Any, key: str | int | None, field: str, msg: str) -> ManipleError:
        line = line_of(container, key)
        where = f"{self.source}:{line}" if line is not None else self.source
        return ManipleError(f"{where}: {field}: {msg}")


def parse_cluster_text(text: str, source: str = "<string>") -> ClusterSpec:
    """Parse the text of a cluster file; `source` names it in errors."""
    at = _At(source)
    data = load_yaml(text, source)
    if not isinstance(data, dict):
        raise ManipleError(f"{source}: a cluster file is a mapping with a 'devices' list")
    for key in data:
        if key not in _TOP_KEYS:
            raise at.error(data, key, key, unknown_name_message("key", key, _TOP_KEYS))
    version = data.get("version", FILE_VERSION)
    if version != FILE_VERSION:
        raise at.error(
            data, "version", "version", f"is {version!r}; this maniple reads {FILE_VERSION}"
        )
    items = data.get("devices")
    if not isinstance(items, list) or not items:
        raise at.error(
            data,
            "devices" if "devices" in data else None,
            "devices",
            "must be a non-empty list of devices",
        )
    specs: list[DeviceSpec] = []
    lines: list[int | None] = []
    for i, item in enumerate(items):
        new = _device_entry(at, items, i, item)
        specs += new
        lines += [line_of(items, i)] * len(new)

    def opt(key: str, check: Any) -> Any:
        if key not in data:
            return None
        try:
            return check(data[key], key)
        except ManipleError as exc:
            raise at.error(data, key, key, str(exc)) from None

    ray = opt("ray", check_ray_address)
    fast = opt("fast_forward", check_bool)
    timeout = opt("timeout_s", check_timeout)
    spec = ClusterSpec(
        tuple(specs),
        ray_address=ray,
        dilation=opt("dilation", check_dilation),
        fast_forward=bool(fast),
        timeout_s=DEFAULT_TIMEOUT_S if timeout is None else timeout,
        source=source,
    )
    return finish_spec(spec, where=(source, lines))


def _device_entry(at: _At, items: list[Any], i: int, item: Any) -> list[DeviceSpec]:
    field = f"devices[{i}]"
    if isinstance(item, str):
        try:
            return [parse_device(item)]
        except ManipleError as exc:
            raise at.error(items, i, field, str(exc)) from None
    if not isinstance(item, dict):
        raise at.error(items, i, field, f"must be a device name or a mapping, got {item!r}")
    if "kind" not in item:
        raise at.error(item, None, f"{field}.kind", f"missing; one of {', '.join(_KIND_KEYS)}")
    kind = _KIND_ALIASES.get(str(item["kind"]), str(item["kind"]))
    if kind not in _KIND_KEYS:
        raise at.error(
            item, "kind", f"{field}.kind", unknown_name_message("device kind", kind, _KIND_KEYS)
        )
    allowed = ("kind", "name", *_KIND_KEYS[kind])
    for key in item:
        if key not in allowed:
            raise at.error(
                item,
                key,
                f"{field}.{key}",
                unknown_name_message(f"key for kind {kind}", key, allowed),
            )

    def get(key: str, check: Any, default: Any = None) -> Any:
        if key not in item:
            return default
        try:
            return check(item[key], f"{field}.{key}")
        except ManipleError as exc:
            raise at.error(item, key, f"{field}.{key}", str(exc)) from None

    label = get("name", check_name)
    threads = get("threads", check_positive_int)
    own = {"threads": threads, "label": label, "precision": get("precision", check_precision)}
    try:
        if kind in ("cpu", "mps"):
            specs = [DeviceSpec(kind, **own)]
        elif kind in ("cuda", "xpu"):
            specs = [DeviceSpec(kind, index=get("index", check_index, 0), **own)]
        elif kind == "igpu":
            specs = [DeviceSpec("xpu", index=0, **own)]
        elif kind == "ray":
            if "node" not in item:
                raise at.error(
                    item,
                    None,
                    f"{field}.node",
                    "missing: the Ray node (IP, node id, custom resource, label, or head)",
                )
            node = get("node", check_name)
            target = get("device", check_ray_target, "cpu")
            specs = [DeviceSpec("ray", node=node, target=target, **own)]
        else:
            specs = _emulated_entry(at, item, field, get, label)
    except ManipleError as exc:
        if str(exc).startswith(at.source):
            raise
        raise at.error(items, i, field, str(exc)) from None
    return specs


def _emulated_entry(
    at: _At, item: dict, field: str, get: Any, label: str | None
) -> list[DeviceSpec]:
    if "preset" not in item:
        raise at.error(
            item,
            None,
            f"{field}.preset",
            f"missing; one of {', '.join(PRESETS)}, custom (with vgg16_ms)",
        )
    preset = get("preset", check_name)
    count = get("count", check_positive_int, 1)
    link = LinkSpec()
    if "link" in item:
        raw = item["link"]
        if not isinstance(raw, dict):
            raise at.error(item, "link", f"{field}.link", "must be a mapping like {mbps: 100}")
        for key in raw:
            if key not in _LINK_KEYS:
                raise at.error(
                    raw,
                    key,
                    f"{field}.link.{key}",
                    unknown_name_message("link key", key, _LINK_KEYS),
                )
        values = {}
        for key in raw:
            try:
                values[key] = check_positive_number(
                    raw[key], f"{field}.link.{key}", zero_ok=key == "latency_ms"
                )
            except ManipleError as exc:
                raise at.error(raw, key, f"{field}.link.{key}", str(exc)) from None
        link = LinkSpec(**values)
    vgg16_ms = get("vgg16_ms", check_positive_number)
    try:
        spec = board(preset, link, vgg16_ms)
    except ManipleError as exc:
        key = "vgg16_ms" if "vgg16_ms" in str(exc) and "vgg16_ms" in item else "preset"
        raise at.error(item, key, f"{field}.{key}", str(exc)) from None
    if label is not None and count > 1:
        return [DeviceSpec("emu", index=k, board=spec, label=f"{label}#{k}") for k in range(count)]
    return [DeviceSpec("emu", board=spec, label=label)] * count


# -- naming -----------------------------------------------------------------------------------
def finish_spec(spec: ClusterSpec, where: tuple[str, list[int | None]] | None) -> ClusterSpec:
    """Number repeated emulated boards #0.., then insist on unique names (files and
    shorthands alike; `where` is the file and each device's line, None for shorthands)."""
    groups: dict[str, int] = {}
    for d in spec.devices:
        if d.is_emulated and d.index is None and d.label is None:
            groups[d.canonical] = groups.get(d.canonical, 0) + 1
    seen: dict[str, int] = {}
    numbered: list[DeviceSpec] = []
    for d in spec.devices:
        if d.is_emulated and d.index is None and d.label is None and groups[d.canonical] > 1:
            k = seen.get(d.canonical, 0)
            seen[d.canonical] = k + 1
            d = dataclasses.replace(d, index=k)
        numbered.append(d)
    first: dict[str, int] = {}
    for i, d in enumerate(numbered):
        if d.name in first:
            if where is not None:
                source, lines = where
                raise ManipleError(
                    f"{source}:{lines[i]}: devices: {d.name!r} is listed twice (first at line "
                    f"{lines[first[d.name]]}); give one of them a 'name'"
                )
            raise ManipleError(f"device {d.name!r} is listed twice; each device may appear once")
        first[d.name] = i
    return dataclasses.replace(spec, devices=tuple(numbered))
