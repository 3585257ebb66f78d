"""Cluster specs from command-line shorthands: `--devices`, `--emulate`, `--ray`, `--link-mbps`.

Why apart from cluster.spec: the shorthands are one-line grammars for a quick run
(`--devices cpu,cuda:0`, `--emulate 3xfirefly-rk3399+2xodroid-xu4`, `--ray auto`), the
YAML file is what a user keeps for a real cluster; both end in the same ClusterSpec and
check values by the same rules (cluster.checks), and errors here name the shorthand item.
"""

from __future__ import annotations

import dataclasses
import re

from maniple.cluster.checks import check_dilation, check_ray_address, check_timeout
from maniple.cluster.spec import ClusterSpec, finish_spec
from maniple.devices.handles import DEFAULT_TIMEOUT_S
from maniple.devices.names import DeviceSpec, parse_device
from maniple.devices.presets import PRESETS
from maniple.errors import ManipleError

_EMU_ITEM = re.compile(r"^(?:(\d+)\s*[x*]\s*)?(.+)$")


def parse_emulate(text: str) -> list[DeviceSpec]:
    """`3xfirefly-rk3399+2xodroid-xu4` (also `custom:500`, `firefly-rk3399@50`, `,` as a
    separator) -> the emulated boards, numbered #0.. where a kind repeats."""
    boards: list[DeviceSpec] = []
    for item in re.split(r"[+,]", text):
        item = item.strip()
        if not item:
            continue
        m = _EMU_ITEM.match(item)
        assert m is not None
        count = int(m.group(1) or 1)
        if count < 1:
            raise ManipleError(f"--emulate item {item!r}: count must be >= 1")
        name = m.group(2).strip()
        if not name.startswith("emu:"):
            name = "emu:" + name
        try:
            spec = parse_device(name)
        except ManipleError as exc:
            raise ManipleError(
                f"--emulate item {item!r}: {exc}. Form: NxPRESET or NxPRESET@MBPS joined by '+', "
                f"PRESET one of {', '.join(PRESETS)} or custom:VGG16_MS"
            ) from None
        if not spec.is_emulated:
            raise ManipleError(f"--emulate item {item!r} is not an emulated board")
        boards += [spec] * count
    if not boards:
        raise ManipleError(f"--emulate {text!r} names no board; e.g. 3xfirefly-rk3399")
    return boards


def parse_shorthand(
    devices: str | None = None,
    emulate: str | None = None,
    ray: str | None = None,
    *,
    dilation: float | None = None,
    fast_forward: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ClusterSpec:
    """The cluster of `--devices a,b --emulate NxPRESET+... --ray auto|local|HOST:PORT`."""
    specs: list[DeviceSpec] = []
    for item in (devices or "").split(","):
        if item.strip():
            try:
                specs.append(parse_device(item.strip()))
            except ManipleError as exc:
                raise ManipleError(f"--devices item {item.strip()!r}: {exc}") from None
    _check_repeats(specs)
    if emulate:
        specs += parse_emulate(emulate)
    if ray is not None:
        ray = check_ray_address(ray, "--ray")
    if not specs and ray is None:
        raise ManipleError(
            "no devices: give --devices (e.g. cpu,cuda:0), --emulate (e.g. "
            "3xfirefly-rk3399) or --ray (auto, or HOST:PORT of a Ray cluster)"
        )
    return finish_spec(
        ClusterSpec(
            tuple(specs),
            ray_address=ray,
            dilation=check_dilation(dilation, "--dilation"),
            fast_forward=fast_forward,
            timeout_s=check_timeout(timeout_s, "--timeout"),
            ray_all_nodes=ray is not None and not specs,
        ),
        where=None,
    )


def _check_repeats(specs: list[DeviceSpec]) -> None:
    """A `--devices` name given twice is refused with the way to mean it: number the
    workers (`cuda:0#0,cuda:0#1`: two workers on one GPU, each with its own model)."""
    seen: set[str] = set()
    for d in specs:
        if d.name in seen and not d.is_emulated:
            hint = f" (two workers on it: {d.canonical}#0,{d.canonical}#1)" if d.is_local else ""
            raise ManipleError(f"device {d.name!r} is listed twice; each may appear once{hint}")
        seen.add(d.name)


def with_link(spec: ClusterSpec, mbps: float | None) -> ClusterSpec:
    """The cluster spec with every emulated board's link set to `mbps` Mbit/s (`--link-mbps`)."""
    if mbps is None:
        return spec
    if not mbps > 0:
        raise ManipleError(
            f"--link-mbps must be > 0 Mbit/s, got {mbps:g}; a link of 0 Mbps carries nothing "
            "(use e.g. 100 for the Legion study's boards)"
        )
    devices = []
    for d in spec.devices:
        if d.is_emulated and d.board is not None:
            board = dataclasses.replace(d.board, link=dataclasses.replace(d.board.link, mbps=mbps))
            d = dataclasses.replace(d, board=board)
        devices.append(d)
    return dataclasses.replace(spec, devices=tuple(devices))
