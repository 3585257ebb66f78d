"""A spatial plan lowered for the peer runtime: halo rows go device to device.

Under Legion's star every band goes back to the coordinator at the end of every group and
out again, halo included, so the coordinator's link carries the whole map twice per
group. Here each device keeps its output band between groups and receives only the rows
it lacks from the devices that hold them (`maniple.spatial.bands.peer_sources`): its
neighbours, or further ones where bands are thin. The coordinator scatters the network
input once (group 0) and gathers the last group's bands for the tail; it is otherwise off
the data path. The result is an ordinary `Schedule` (same validation, text and JSON), whose
device-to-device transfers are listed on the step that waits for them.
"""

from __future__ import annotations

from maniple.graph import LayerGraph
from maniple.spatial.bands import band_bytes, check_plan_on, peer_sources, step_rows
from maniple.spatial.plan import SpatialPlan
from maniple.spatial.schedule import (
    COORDINATOR,
    Run,
    Schedule,
    Step,
    Tail,
    Transfer,
    sync_points,
)

Shape = tuple[int, int, int]


def lower_peer(plan: SpatialPlan, graph: LayerGraph, *, bytes_per_element: int = 4) -> Schedule:
    """The peer schedule of `plan` on `graph` (see the module docstring). Devices with an
    empty band sit a group out; the rows they held before are still asked of them."""
    heights = check_plan_on(plan, graph)
    shapes: tuple[Shape, ...] = (
        tuple(graph.input_shape),  # type: ignore[assignment]
        *(tuple(u.out_shape[1:]) for u in graph.units),
    )
    bpe, steps, last_group = bytes_per_element, [], len(plan.flc) - 1
    for g, ((first, last), bands) in enumerate(zip(plan.flc, plan.bands, strict=True)):
        for d, (device, band) in enumerate(zip(plan.devices, bands, strict=True)):
            if band[1] <= band[0]:
                continue
            rows = step_rows(graph, first, last, band)
            if g == 0:
                receive = (
                    Transfer(COORDINATOR, device, -1, rows, band_bytes(shapes[0], rows, bpe)),
                )
            else:
                _, others = peer_sources(plan.bands[g - 1], rows, d)
                receive = tuple(
                    Transfer(
                        plan.devices[e], device, first - 1, r, band_bytes(shapes[first], r, bpe)
                    )
                    for e, r in others
                )
            send = ()
            if g == last_group:
                send = (
                    Transfer(device, COORDINATOR, last, band, band_bytes(shapes[-1], band, bpe)),
                )
            steps.append(Step(g, device, Run(first, last, band, rows), receive, send))
    tail = Tail(COORDINATOR, len(heights) - 1, (0, heights[-1]))
    return Schedule(
        plan.network,
        plan.devices,
        shapes[0],
        shapes[1:],
        bpe,
        tuple(steps),
        tail,
        sync_points(graph),
    ).validate()


def coordinator_bytes(schedule: Schedule) -> int:
    """Bytes the schedule moves to or from the coordinator (uncompressed)."""
    return sum(b for (src, dst), b in schedule.bytes_by_link().items() if COORDINATOR in (src, dst))


def device_bytes(schedule: Schedule) -> int:
    """Bytes the schedule moves from one device to another (uncompressed)."""
    return sum(
        b for (src, dst), b in schedule.bytes_by_link().items() if COORDINATOR not in (src, dst)
    )
