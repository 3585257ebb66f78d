"""A run's view of the testbed that is up: where each board's node is, how its link is
shaped, and the links' byte counters.

Why apart from the lifecycle: a run (`maniple spatial --testbed`) only reads the record
and joins the coordinator's namespace; it never creates or removes anything, and it
needs the record's facts in the form the devices take them (a node selector and a
ShapedLink per board, the GCS address).
"""

from __future__ import annotations

from dataclasses import dataclass

from maniple.cluster.testbed.counters import LinkCount, difference, read_counters
from maniple.cluster.testbed.enter import enter_coordinator
from maniple.cluster.testbed.lifecycle import current_plan
from maniple.cluster.testbed.plan import TestbedPlan
from maniple.cluster.testbed.shell import require_testbed_host
from maniple.devices.shaped_link import ShapedLink
from maniple.errors import ManipleError


@dataclass(frozen=True)
class Testbed:
    """The testbed a run uses: its plan, and what the devices need from it."""

    __test__ = False  # not a pytest test class

    plan: TestbedPlan

    @property
    def address(self) -> str:
        """The GCS address of the head node (Ray's `address`)."""
        return self.plan.gcs_address

    @property
    def board_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.plan.boards)

    def nodes(self) -> dict[str, str]:
        """Board name -> the custom resource of its Ray node (a node selector)."""
        return {b.name: b.resource for b in self.plan.boards}

    def links(self) -> dict[str, ShapedLink]:
        """Board name -> its link as shaped (the same for every board)."""
        link = self.plan.board_shaping.link()
        return {b.name: link for b in self.plan.boards}

    def counters(self) -> dict[str, LinkCount]:
        return read_counters(self.plan)

    def since(self, before: dict[str, LinkCount]) -> dict[str, LinkCount]:
        """What each link counted since `before` (a `counters()` reading)."""
        return difference(self.counters(), before)

    def check_run(
        self, boards: str | None, link_mbps: float | None, dilation: float | None
    ) -> None:
        """Refuse run options that disagree with the testbed (it fixes boards, links and
        dilation when it comes up)."""
        p = self.plan
        if boards is not None and boards.replace(" ", "") != p.boards_text.replace(" ", ""):
            raise ManipleError(
                f"--emulate {boards!r}, but the testbed's boards are {p.boards_text!r}; leave "
                "--emulate out (the testbed's boards are used) or bring up a testbed for them"
            )
        if link_mbps is not None and abs(link_mbps - p.link_mbps) > 1e-9:
            raise ManipleError(
                f"--link-mbps {link_mbps:g}, but the testbed's links are shaped for "
                f"{p.link_mbps:g} Mbit/s; use {p.link_mbps:g}, or `maniple testbed down` and "
                f"`up --link-mbps {link_mbps:g}`"
            )
        if dilation is not None and abs(dilation - p.dilation) > 1e-9:
            raise ManipleError(
                f"--dilation {dilation:g}, but the testbed's links are shaped for dilation "
                f"{p.dilation:g} (compute and links must dilate alike); leave --dilation out, "
                f"or bring the testbed up with --dilation {dilation:g}"
            )


def attach() -> Testbed:
    """The testbed that is up, with this process moved into its coordinator's namespace
    (before it connects to Ray)."""
    require_testbed_host()
    testbed = Testbed(current_plan())
    enter_coordinator()
    return testbed
