"""The plan of a testbed: which boards, which namespaces and addresses, how links are shaped.

Why a plan apart from doing it: everything `testbed up` will create is decided here, from
the boards' shorthand and the link settings, as plain data with no side effects. The same
data is the state record `down` reads, the test of the naming and address rules needs no
root, and the runs that use the testbed take their boards, addresses and link rates from
it rather than guessing.

Topology: a bridge in a switch namespace; the coordinator (Ray's head node and the driver)
in a namespace of its own and each board in its own, each with one veth to the bridge.
Each board's veth is shaped in both directions (egress of both ends) with `tc tbf` to
link_mbps / D, the coordinator's to its uplink / D, so that links dilate with compute.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from maniple.cluster.shorthand import parse_shorthand, with_link
from maniple.cluster.testbed import names
from maniple.devices.link import DEFAULT_UPLINK_MBPS
from maniple.devices.shaped_link import ETHERNET_HEADER, MTU, ShapedLink
from maniple.errors import ManipleError

MAX_BOARDS = 32
SUBNET_CANDIDATES = tuple(f"10.213.{n}.0/24" for n in range(256))
"""Private /24s a testbed may take, the first one free of the root namespace's addresses
and routes (the namespaces are isolated, but an overlap would confuse whoever reads
`ip route`)."""
COORDINATOR_HOST = 1
FIRST_BOARD_HOST = 10
GCS_PORT = 6379  # inside the coordinator's namespace, where nothing else listens
BURST_S = 0.004  # tbf bucket: 4 ms of the rate (at least 4 frames)
QUEUE_S = 0.25  # tbf queue: 250 ms of the rate, at least 1 MiB
MIN_QUEUE_BYTES = 2**20
"""Deep enough for any one step's transfer: a shallower queue at a board's downlink (where
the coordinator's faster link or two senders meet the board's rate) drops packets, and
TCP's retransmissions then cost the link time and bytes that a switch port does not."""
HEAD_OBJECT_STORE = 512 * 2**20
BOARD_OBJECT_STORE = 256 * 2**20


@dataclass(frozen=True)
class Shaping:
    """`tc qdisc add dev X root tbf rate R burst B limit L` for one link, both ends."""

    mbps: float  # the link it stands for
    dilation: float

    @property
    def rate_bits(self) -> int:
        return max(8000, round(self.mbps / self.dilation * 1e6))

    @property
    def burst_bytes(self) -> int:
        return max(4 * (MTU + ETHERNET_HEADER), round(self.rate_bits / 8 * BURST_S))

    @property
    def limit_bytes(self) -> int:
        return max(MIN_QUEUE_BYTES, round(self.rate_bits / 8 * QUEUE_S))

    def tc_args(self) -> list[str]:
        """The qdisc's arguments after `root`."""
        return [
            "tbf",
            "rate",
            f"{self.rate_bits}bit",
            "burst",
            str(self.burst_bytes),
            "limit",
            str(self.limit_bytes),
        ]

    def link(self) -> ShapedLink:
        return ShapedLink(self.mbps, self.dilation, self.burst_bytes)


@dataclass(frozen=True)
class BoardNode:
    """One board: its device name, where it lives and how its Ray node is found."""

    index: int
    name: str
    namespace: str
    address: str
    port: str  # its veth end on the bridge

    @property
    def resource(self) -> str:
        return names.board_resource(self.index, self.name)


@dataclass(frozen=True)
class TestbedPlan:
    """Everything a testbed is; see the module docstring."""

    __test__ = False  # not a pytest test class, despite the name

    boards_text: str
    boards: tuple[BoardNode, ...]
    subnet: str
    coordinator_address: str
    link_mbps: float
    uplink_mbps: float
    dilation: float

    @property
    def board_shaping(self) -> Shaping:
        return Shaping(self.link_mbps, self.dilation)

    @property
    def uplink_shaping(self) -> Shaping:
        return Shaping(self.uplink_mbps, self.dilation)

    @property
    def gcs_address(self) -> str:
        return f"{self.coordinator_address}:{GCS_PORT}"

    @property
    def prefix_len(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace, in the order they are made (switch first)."""
        return (names.SWITCH_NS, names.COORDINATOR_NS, *(b.namespace for b in self.boards))

    def board(self, name: str) -> BoardNode:
        for b in self.boards:
            if b.name == name:
                return b
        raise ManipleError(
            f"the testbed has no board {name!r}; it has {', '.join(b.name for b in self.boards)}"
        )


def plan_testbed(
    boards: str,
    *,
    link_mbps: float = 100.0,
    dilation: float,
    uplink_mbps: float = DEFAULT_UPLINK_MBPS,
    taken: Iterable[str] = (),
) -> TestbedPlan:
    """The plan for `boards` (the `--emulate` shorthand, e.g. 6xfirefly-rk3399), with the
    first /24 of SUBNET_CANDIDATES that overlaps none of `taken` (networks or addresses
    in use in the root namespace, e.g. '192.0.2.0/24')."""
    if not (link_mbps > 0 and uplink_mbps > 0):
        raise ManipleError(
            f"--link-mbps must be > 0 Mbit/s, got {link_mbps:g} (uplink {uplink_mbps:g}); "
            "e.g. 100 for the Legion study's boards"
        )
    if not dilation >= 1:
        raise ManipleError(f"--dilation must be >= 1 (1 = real time), got {dilation:g}")
    spec = with_link(parse_shorthand(emulate=boards, dilation=dilation), link_mbps)
    if len(spec.devices) > MAX_BOARDS:
        raise ManipleError(
            f"--boards {boards!r} names {len(spec.devices)} boards; a testbed holds at most "
            f"{MAX_BOARDS} (one network namespace and Ray node each); name fewer"
        )
    subnet = pick_subnet(taken)
    hosts = list(ipaddress.ip_network(subnet).hosts())
    nodes = tuple(
        BoardNode(
            i,
            d.name,
            names.board_ns(i),
            str(hosts[FIRST_BOARD_HOST - 1 + i]),
            names.board_port(i),
        )
        for i, d in enumerate(spec.devices)
    )
    return TestbedPlan(
        boards_text=boards,
        boards=nodes,
        subnet=subnet,
        coordinator_address=str(hosts[COORDINATOR_HOST - 1]),
        link_mbps=float(link_mbps),
        uplink_mbps=float(uplink_mbps),
        dilation=float(dilation),
    )


def pick_subnet(taken: Iterable[str]) -> str:
    """The first candidate /24 that overlaps no network or address in `taken`."""
    used = []
    for item in taken:
        try:
            used.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            continue  # 'default' and the like: no address range
    for candidate in SUBNET_CANDIDATES:
        net = ipaddress.ip_network(candidate)
        if not any(net.overlaps(u) for u in used if u.version == 4 and u.prefixlen > 0):
            return candidate
    raise ManipleError(
        f"every candidate testbed network ({SUBNET_CANDIDATES[0]} to {SUBNET_CANDIDATES[-1]}) "
        "overlaps an address or route of this machine; free one of them"
    )
