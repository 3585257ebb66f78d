"""Make and remove a testbed's network: namespaces, the bridge, one veth per host, tc shapers.

Why this shape: each Ray node sits in its own network namespace, so it binds and talks
only on its own veth (Ray's servers listen on every address of their namespace), and
traffic between any two of them crosses exactly two shaped veths and one bridge, as on a
switch. Nothing is added to the root namespace, and IPv6 is off inside, so the byte
counters carry the testbed's TCP traffic and nothing else.
"""

from __future__ import annotations

from maniple.cluster.testbed import names
from maniple.cluster.testbed.plan import Shaping, TestbedPlan
from maniple.cluster.testbed.shell import ip, namespaces, run, tc

_NO_IPV6 = (
    "net.ipv6.conf.all.disable_ipv6=1",
    "net.ipv6.conf.default.disable_ipv6=1",
)


def _new_namespace(ns: str) -> None:
    ip("netns", "add", ns)
    run(["ip", "netns", "exec", ns, "sysctl", "-qw", *_NO_IPV6])
    ip("link", "set", "lo", "up", ns=ns)


def _attach(ns: str, port: str, address: str, prefix_len: int, shaping: Shaping) -> None:
    """A veth from namespace `ns` (its end `eth0` with `address`) to the bridge (its end
    `port`), shaped at both ends."""
    sw = names.SWITCH_NS
    ip("link", "add", port, "mtu", "1500", "type", "veth", "peer", "name", names.HOST_IF,
       "netns", ns, ns=sw)  # fmt: skip
    ip("link", "set", port, "master", names.BRIDGE, "up", ns=sw)
    ip("addr", "add", f"{address}/{prefix_len}", "dev", names.HOST_IF, ns=ns)
    ip("link", "set", names.HOST_IF, "up", ns=ns)
    tc("qdisc", "add", "dev", names.HOST_IF, "root", *shaping.tc_args(), ns=ns)
    tc("qdisc", "add", "dev", port, "root", *shaping.tc_args(), ns=sw)


def build(plan: TestbedPlan) -> None:
    """Make the plan's network; the caller removes it (`remove`) if this fails midway."""
    _new_namespace(names.SWITCH_NS)
    ip("link", "add", names.BRIDGE, "type", "bridge", ns=names.SWITCH_NS)
    ip("link", "set", names.BRIDGE, "up", ns=names.SWITCH_NS)
    _new_namespace(names.COORDINATOR_NS)
    _attach(
        names.COORDINATOR_NS,
        names.COORDINATOR_PORT,
        plan.coordinator_address,
        plan.prefix_len,
        plan.uplink_shaping,
    )
    for b in plan.boards:
        _new_namespace(b.namespace)
        _attach(b.namespace, b.port, b.address, plan.prefix_len, plan.board_shaping)


def ours() -> list[str]:
    """Every testbed namespace present now, whoever made it (found by the prefix)."""
    return [ns for ns in namespaces() if names.is_ours(ns)]


def remove(spaces: list[str] | None = None) -> list[str]:
    """Delete the testbed namespaces `spaces` (default: every one present), which takes
    their veths, the bridge and the shapers with them; returns those deleted. Only names
    with the testbed's prefix are ever deleted. Processes must be stopped first."""
    present = set(ours())
    todo = [ns for ns in (spaces if spaces is not None else sorted(present)) if ns in present]
    for ns in todo:
        if names.is_ours(ns):
            ip("netns", "delete", ns)
    return todo
