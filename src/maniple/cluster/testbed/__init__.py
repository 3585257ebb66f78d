"""A testbed of real links: emulated boards as Ray nodes in network namespaces, each behind
a veth that `tc tbf` shapes to its link / the time dilation (Linux, root, iproute2).

`up` makes it from a plan (plan.py: names, addresses, shaping), `down` removes it, with
or without its state record (state.py), `status` shows what exists; a run uses it through
`attach` (placement, shaped links, byte counters). See `maniple testbed --help`.
"""

from maniple.cluster.testbed.attach import Testbed, attach
from maniple.cluster.testbed.counters import LinkCount, read_counters
from maniple.cluster.testbed.lifecycle import down, leftovers, status, up
from maniple.cluster.testbed.plan import TestbedPlan, plan_testbed
from maniple.cluster.testbed.shell import missing_requirements, require_testbed_host
from maniple.cluster.testbed.state import TestbedState

__all__ = [
    "LinkCount",
    "Testbed",
    "TestbedPlan",
    "TestbedState",
    "attach",
    "down",
    "leftovers",
    "missing_requirements",
    "plan_testbed",
    "read_counters",
    "require_testbed_host",
    "status",
    "up",
]
