"""On the testbed: how much of a runtime's real waits is provably shaped wire time.

Why: on the testbed (`maniple testbed`) a board's bytes cross a veth shaped to its link /
D, inside the waits the runtimes count as real, undivided time (Ray's dispatch and
object transfer). Those waits must count the wire time divided by D, like the boards'
own time, and everything else whole (`maniple.devices.shaped_link`). This module says,
for each wait, which link and how many bytes it must have held:

- star: a group's time outside its slowest device's call holds that device's input band
  (sent before the call starts) and its output band (fetched after it ends);
- peer: the gap before a step holds every piece it receives (the coordinator's scatter,
  or its peers' pieces, which it fetches after its last sender ended and before its
  clock starts); a step run in phases (sync points through the coordinator) is left
  uncounted here, its pieces being fetched inside its phases;
- the peer gather holds the band of the step that ended last.

Devices without a shaped link (every run but the testbed's) get nothing, so their
counting is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from maniple.devices.handles import DeviceHandle, StepCall
from maniple.devices.shaped_link import ShapedLink
from maniple.devices.step import Piece, StepOrder
from maniple.spatial.schedule import COORDINATOR, Schedule, Step

StepKey = tuple[int, str]
Wire = tuple[ShapedLink, float]
"""A device's shaped link and the least real ms the wait's bytes spent on it."""


def star_wire(handles: Mapping[str, DeviceHandle], steps: Sequence[Step]) -> list[Wire | None]:
    """Per step of a star group: its device's link and the wire ms of its input band in
    and its output band back (each direction its own tbf); None off the testbed."""
    out: list[Wire | None] = []
    for s in steps:
        link = handles[s.device].shaped_link
        nbytes = (sum(t.bytes for t in s.receive), sum(t.bytes for t in s.send))
        out.append(
            None if link is None else (link, link.wire_ms(nbytes[0]) + link.wire_ms(nbytes[1]))
        )
    return out


def peer_wire(
    schedule: Schedule,
    handles: Mapping[str, DeviceHandle],
    calls: Mapping[StepKey, StepCall],
    orders: Mapping[StepKey, StepOrder],
) -> dict[StepKey, Wire]:
    """Per peer step on a shaped link: the wire ms of what it received (see the module
    docstring); pieces count their wire bytes (after any encoding), read back from the
    senders' calls (small values the coordinator already holds)."""
    if not any(handles[d].shaped_link is not None for d in schedule.devices):
        return {}
    last = len(schedule.groups) - 1
    sent: dict[tuple[int, str, str, tuple[int, int]], int] = {}
    for (g, dev), call in calls.items():
        order = orders[(g, dev)]
        if g < last and order.dests:
            for p, dest, rows in zip(call.values(), order.dests, order.send_rows, strict=True):
                sent[(g, dev, dest, tuple(rows))] = p.wire_bytes
    out: dict[StepKey, Wire] = {}
    for s in schedule.steps:
        link, order = handles[s.device].shaped_link, orders[(s.group, s.device)]
        if link is None or (order.syncs and not order.swap):
            continue
        nbytes = sum(
            t.bytes
            if t.source == COORDINATOR
            else sent.get((s.group - 1, t.source, s.device, tuple(t.rows)), 0)
            for t in s.receive
        )
        out[(s.group, s.device)] = (link, link.wire_ms(nbytes))
    return out


def band_wire(handle: DeviceHandle, band: Sequence[Piece]) -> Wire | None:
    """The link and wire ms of the band a device sent the coordinator (the gather)."""
    link = handle.shaped_link
    return None if link is None else (link, link.wire_ms(sum(p.wire_bytes for p in band)))


def counted(real_ms: float, wire: Wire | None, fast_forward: bool) -> float:
    """A real wait as counted: whole off the testbed, else its wire part divided out."""
    if wire is None:
        return real_ms
    return wire[0].counted_ms(real_ms, wire[1], fast_forward)
