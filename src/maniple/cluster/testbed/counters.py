"""Per-link byte counters of a testbed, read from the bridge's ports (`ip -s -j link`).

Why the bridge's ports: every host's only link is its veth to the bridge, so the port's
counters are that link's whole traffic, read in one call from one namespace, and the
port is the one place that sees both directions of it (rx: what the host sent, tx: what
it was sent). A run reads them before and after and keeps the difference.

What they count: whole frames (Ethernet, IP and TCP headers) of everything on the link,
Ray's own messages included. The TCP payload is estimated by taking 66 bytes per packet
off (maniple.devices.shaped_link.payload_bytes): ACKs then count nothing, and a full
segment its 1448 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from maniple.cluster.testbed import names
from maniple.cluster.testbed.plan import TestbedPlan
from maniple.cluster.testbed.shell import ip_json
from maniple.devices.shaped_link import payload_bytes
from maniple.errors import ManipleError

COORDINATOR_LINK = "coordinator"


@dataclass(frozen=True)
class LinkCount:
    """One link's counters: bytes and packets the host sent and received on it."""

    sent_bytes: int
    received_bytes: int
    sent_packets: int
    received_packets: int

    def __sub__(self, before: LinkCount) -> LinkCount:
        return LinkCount(
            self.sent_bytes - before.sent_bytes,
            self.received_bytes - before.received_bytes,
            self.sent_packets - before.sent_packets,
            self.received_packets - before.received_packets,
        )

    @property
    def total_bytes(self) -> int:
        return self.sent_bytes + self.received_bytes

    @property
    def sent_payload(self) -> int:
        return payload_bytes(self.sent_bytes, self.sent_packets)

    @property
    def received_payload(self) -> int:
        return payload_bytes(self.received_bytes, self.received_packets)

    @property
    def payload(self) -> int:
        """Both directions' estimated TCP payload."""
        return self.sent_payload + self.received_payload

    def to_dict(self) -> dict[str, int]:
        return {
            "sent_bytes": self.sent_bytes,
            "received_bytes": self.received_bytes,
            "sent_packets": self.sent_packets,
            "received_packets": self.received_packets,
            "payload_bytes": self.payload,
        }


def link_ports(plan: TestbedPlan) -> dict[str, str]:
    """Link name (the coordinator's, or a board's device name) -> its port on the bridge."""
    return {
        COORDINATOR_LINK: names.COORDINATOR_PORT,
        **{b.name: b.port for b in plan.boards},
    }


def read_counters(plan: TestbedPlan) -> dict[str, LinkCount]:
    """Every link's counters now, by link name."""
    ports = {
        entry.get("ifname"): entry for entry in ip_json("-s", "link", "show", ns=names.SWITCH_NS)
    }
    out = {}
    for link, port in link_ports(plan).items():
        entry = ports.get(port)
        if entry is None:
            raise ManipleError(
                f"the testbed's bridge has no port {port!r} (link {link}); is the testbed up? "
                "`maniple testbed status` shows what exists"
            )
        out[link] = _count(entry)
    return out


def _count(entry: dict[str, Any]) -> LinkCount:
    stats = entry.get("stats64") or entry.get("stats") or {}
    rx, tx = stats.get("rx", {}), stats.get("tx", {})
    # the port's rx is what the host behind it sent, its tx what the host received
    return LinkCount(
        int(rx.get("bytes", 0)),
        int(tx.get("bytes", 0)),
        int(rx.get("packets", 0)),
        int(tx.get("packets", 0)),
    )


def difference(after: dict[str, LinkCount], before: dict[str, LinkCount]) -> dict[str, LinkCount]:
    """Per link, what was counted between two readings."""
    return {k: after[k] - before[k] for k in after if k in before}
