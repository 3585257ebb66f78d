"""`up`, `down` and `status` of a testbed: the steps in order, and cleanup on every path.

Why in this order: the record is written before anything exists, so whatever a crash
leaves, `down` finds; `down` stops the processes before it deletes their namespaces (a
namespace whose name is deleted lives on while a process holds it), boards before the
head; and `up` that fails at any step runs `down` before it reports the error, so a
failed `up` leaves nothing either.
"""

from __future__ import annotations

import shutil
from typing import Any

from maniple.cluster.testbed import names, network, nodes, state
from maniple.cluster.testbed.counters import read_counters
from maniple.cluster.testbed.plan import TestbedPlan, plan_testbed
from maniple.cluster.testbed.procs import escaped_ray_processes, protected, stop
from maniple.cluster.testbed.shell import (
    missing_requirements,
    namespace_pids,
    require_testbed_host,
    root_networks,
)
from maniple.errors import ManipleError


def default_dilation(boards: str) -> float:
    """The dilation `maniple spatial --emulate BOARDS` picks on this host (its calibration,
    measured once if not cached)."""
    from maniple.cluster.shorthand import parse_shorthand
    from maniple.devices.calibration import load_calibration
    from maniple.devices.emulated import dilation_for

    specs = [d.board for d in parse_shorthand(emulate=boards).devices if d.board is not None]
    return dilation_for(specs, load_calibration())


def up(
    boards: str, *, link_mbps: float = 100.0, dilation: float | None = None
) -> state.TestbedState:
    """Bring a testbed up for `boards` (the `--emulate` shorthand); see the module doc."""
    require_testbed_host()
    found = _existing()
    if found:
        raise ManipleError(
            f"a testbed is already here ({found}); `maniple testbed down` removes it first"
        )
    plan = plan_testbed(
        boards,
        link_mbps=link_mbps,
        dilation=default_dilation(boards) if dilation is None else dilation,
        taken=root_networks(),
    )
    record = state.new_state(plan)
    state.write(record)
    try:
        network.build(plan)
        nodes.start(plan)
        record = state.TestbedState(plan, "up", record.created_at, record.boot_id, record.ray_dir)
        state.write(record)
    except BaseException:
        try:
            down()
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass
        raise
    return record


def _existing() -> str:
    """What of a testbed exists now, in words ('' for nothing)."""
    parts = []
    try:
        if state.read() is not None:
            parts.append(f"record {names.state_path()}")
    except ManipleError as exc:
        parts.append(str(exc))
    spaces = network.ours()
    if spaces:
        parts.append(f"namespaces {', '.join(spaces)}")
    return "; ".join(parts)


def down() -> dict[str, Any]:
    """Remove everything a testbed made, with or without its record; what was removed."""
    require_testbed_host()
    problems = []
    try:
        record = state.read()
    except ManipleError as exc:  # not a record: fall back to the prefix alone
        record, problems = None, [f"{exc}; removed by the prefix instead"]
    spaces = network.ours()
    if record is not None and record.boot_id == state.boot_id():
        spaces = sorted(set(spaces) | {ns for ns in record.plan.namespaces if names.is_ours(ns)})
    # boards first, the head (coordinator) after them, the switch (no processes) last
    order = sorted(spaces, key=lambda ns: (ns == names.COORDINATOR_NS, ns == names.SWITCH_NS))
    boards = [ns for ns in order if ns not in (names.COORDINATOR_NS, names.SWITCH_NS)]
    stopped = stop([p for ns in boards for p in namespace_pids(ns)])
    stopped += stop([p for ns in order if ns not in boards for p in namespace_pids(ns)])
    stopped += stop(escaped_ray_processes())
    removed = network.remove(order)
    ray_dir = names.ray_temp_dir()
    dir_removed = ray_dir.is_dir() and not ray_dir.is_symlink()
    if dir_removed:
        shutil.rmtree(ray_dir, ignore_errors=True)
    record_removed = state.remove()
    return {
        "namespaces_removed": removed,
        "processes_stopped": len(stopped),
        "ray_dir_removed": str(ray_dir) if dir_removed else None,
        "record_removed": record_removed,
        "problems": problems,
        "left": leftovers(),
    }


def leftovers() -> dict[str, Any]:
    """What of any testbed exists now: namespaces, their processes, Ray processes of the
    testbed's directory elsewhere, and the record (all empty after a clean `down`)."""
    spaces = network.ours()
    return {
        "namespaces": spaces,
        "processes": sum(len(namespace_pids(ns)) for ns in spaces)
        + len([p for p in escaped_ray_processes() if p not in protected()]),
        "record": names.state_path().exists(),
    }


def status() -> dict[str, Any]:
    """The record (if any), what exists, and each link's counters while the switch is up."""
    doc: dict[str, Any] = {"record_path": str(names.state_path())}
    try:
        record = state.read()
        doc["record"] = None if record is None else record.to_dict()
    except ManipleError as exc:
        record, doc["record"], doc["record_error"] = None, None, str(exc)
    found = leftovers()
    doc["namespaces"] = {ns: len(namespace_pids(ns)) for ns in found["namespaces"]}
    complete = record is not None and set(record.plan.namespaces) <= set(found["namespaces"])
    doc["up"] = bool(complete and record is not None and record.status == "up")
    doc["links"] = None
    missing = missing_requirements()
    if missing:  # the counters are read inside the switch's namespace
        doc["links_note"] = "link counters need " + "; ".join(missing)
    elif complete and record is not None:
        doc["links"] = {k: v.to_dict() for k, v in read_counters(record.plan).items()}
    doc["leftovers"] = bool(found["namespaces"] or found["processes"]) and not complete
    return doc


def current_plan() -> TestbedPlan:
    """The plan of the testbed that is up; a ManipleError saying how to get one."""
    record = state.read()
    if record is None or record.status != "up":
        raise ManipleError(
            "no testbed is up"
            + ("" if record is None else f" (its record says {record.status!r})")
            + "; start one with `maniple testbed up --boards 3xfirefly-rk3399` (as root)"
        )
    missing = [ns for ns in record.plan.namespaces if ns not in network.ours()]
    if missing:
        raise ManipleError(
            f"the testbed's record names namespaces that are gone ({', '.join(missing)}); "
            "`maniple testbed down` and `up` again"
        )
    return record.plan
