"""Legion on the testbed: the same session, with each timed run's link counters recorded.

Why a session of its own: on the testbed every byte a run moves crosses a real veth, whose
counters say what it carried; a run's record keeps, per link, what the counters saw
beside what the schedule moves there (raw) and what the devices themselves counted on
the wire (after encoding), so a report can hold the links against the schedule. The
counters are read between runs, never inside one, so the timings are the session's own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from maniple.cluster.testbed import LinkCount, Testbed
from maniple.cluster.testbed.counters import COORDINATOR_LINK
from maniple.devices.handles import DeviceHandle
from maniple.graph import LayerGraph
from maniple.spatial.measured import SpatialResult
from maniple.spatial.peer_setup import run_plan
from maniple.spatial.plan import SpatialPlan
from maniple.spatial.runtimes.result import SpatialRun
from maniple.spatial.schedule import COORDINATOR
from maniple.spatial.session import LegionSession


def expected_bytes(run: SpatialRun, links: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per link (the coordinator's or a board's), the bytes the run's schedule moves over
    it (`schedule_bytes`, before encoding) and those the devices counted on the wire
    (`wire_bytes`: the peer runtime's own counts, else the schedule's)."""
    moved = run.schedule.bytes_by_link() if run.schedule is not None else {}
    out = {}
    for link in links:
        who = COORDINATOR if link == COORDINATOR_LINK else link
        raw = sum(b for (src, dst), b in moved.items() if who in (src, dst))
        out[link] = {"schedule_bytes": raw, "wire_bytes": _wire(run, who, raw)}
    return out


def _wire(run: SpatialRun, who: str, raw: int) -> int:
    if not run.link_bytes:
        return raw  # the star runtime encodes nothing
    if who == COORDINATOR:
        return sum(
            c["received"].get(COORDINATOR, 0) + c["sent"].get(COORDINATOR, 0)
            for c in run.link_bytes.values()
        )
    counts = run.link_bytes.get(who, {"sent": {}, "received": {}})
    return sum(counts["sent"].values()) + sum(counts["received"].values())


def run_record(run: SpatialRun, seen: Mapping[str, LinkCount], wall_s: float) -> dict[str, Any]:
    """One timed run on the testbed: per link its counters and what it should carry."""
    expected = expected_bytes(run, list(seen))
    return {
        "wall_s": wall_s,
        "latency_ms": run.latency_ms,
        "links": {k: {**seen[k].to_dict(), **expected[k]} for k in seen},
    }


class TestbedSession(LegionSession):
    """A LegionSession on the testbed's devices; see the module docstring."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, testbed: Testbed, handles: Sequence[DeviceHandle], graph: LayerGraph, **kwargs: Any
    ) -> None:
        super().__init__(handles, graph, **kwargs)
        self.testbed = testbed
        self._link_runs: dict[tuple[Any, ...], list[dict[str, Any]]] = {}

    def run(self, plan: SpatialPlan) -> list[SpatialRun]:
        """As LegionSession.run (the same runs, the first untimed), with each timed run's
        link counters read before and after it."""
        key = (plan.runtime, plan.devices, plan.flc, plan.bands)
        if key not in self._runs:
            runs, records = [], []
            for r in range(self.repeats + 1):
                before, t0 = self.testbed.counters(), time.perf_counter()
                result = run_plan(
                    plan, self.by_name, self.graph, self.x, compress=self._compress(plan)
                )
                wall_s = time.perf_counter() - t0
                if r > 0:
                    runs.append(result)
                    records.append(run_record(result, self.testbed.since(before), wall_s))
            self._runs[key], self._link_runs[key] = runs, records
        return self._runs[key]

    def _result(
        self,
        search: str,
        plan: SpatialPlan,
        runs: list[SpatialRun],
        best: str,
        single_ms: float,
        candidates: list[dict[str, Any]],
    ) -> SpatialResult:
        result = super()._result(search, plan, runs, best, single_ms, candidates)
        key = (plan.runtime, plan.devices, plan.flc, plan.bands)
        p = self.testbed.plan
        doc = {
            "subnet": p.subnet,
            "dilation": p.dilation,
            "board_link": p.board_shaping.link().to_dict(),
            "coordinator_link": p.uplink_shaping.link().to_dict(),
            "runs": self._link_runs.get(key, []),
        }
        return replace(result, testbed=doc)


def legion_session(
    testbed: Testbed | None, handles: Sequence[DeviceHandle], graph: LayerGraph, **kwargs: Any
) -> LegionSession:
    """A TestbedSession on `testbed`, or a plain LegionSession off it (None)."""
    if testbed is None:
        return LegionSession(handles, graph, **kwargs)
    return TestbedSession(testbed, handles, graph, **kwargs)
