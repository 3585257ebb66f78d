"""A board's real link on the testbed (`maniple testbed`), and how its time is counted.

Why this exists: on the testbed an emulated board's bytes really move, through Ray, over a
veth that `tc tbf` shapes to `mbps / D` (D the time dilation), so that compute and links
dilate alike and the host keeps up. The runtimes count the boards' own time divided by D
and every other real millisecond undivided (Ray's dispatch, the host's copies). A real
transfer sits in the undivided part, so left alone it would count D times its length.

What is divided out, and why it never flatters: the least time the bytes could take on
the shaped link is fixed by the shaping itself. tbf lets through at most `burst` bytes at
once and then `rate` bytes per second, counting each frame whole (Ethernet header and
IPv4/TCP headers on every 1448 bytes of payload). So a wait that must hold a transfer of N
payload bytes holds at least `wire_ms(N)` of shaped wire time; that much is a link's
time and is counted divided by D, like a board's own time. The rest of the wait (Ray's
round trips, a TCP window that is not full, a slower sender) stays real and undivided:
at worst the count is pessimistic, never faster than the link allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from maniple.errors import ManipleError

MTU = 1500
ETHERNET_HEADER = 14
TCP_PAYLOAD_PER_FRAME = MTU - 20 - 32  # IPv4 20, TCP 20 + timestamps 12
HEADER_BYTES_PER_PACKET = ETHERNET_HEADER + 20 + 32
"""What a TCP/IPv4 packet with timestamps carries on a veth besides its payload: a byte
counter's packets times this, taken from its bytes, is the payload the packets carried."""


@dataclass(frozen=True)
class ShapedLink:
    """One board's link as the testbed shaped it: `mbps` is the link it stands for, the
    veth runs at `mbps / dilation` with a `burst_bytes` bucket, both directions."""

    mbps: float
    dilation: float
    burst_bytes: int

    def __post_init__(self) -> None:
        if not (self.mbps > 0 and self.dilation >= 1 and self.burst_bytes >= 0):
            raise ManipleError(
                f"a shaped link needs mbps > 0, dilation >= 1 and burst >= 0 bytes; got "
                f"{self.mbps!r} Mbit/s, dilation {self.dilation!r}, burst {self.burst_bytes!r}"
            )

    @property
    def rate_mbps(self) -> float:
        """The rate tc holds the veth to, Mbit/s."""
        return self.mbps / self.dilation

    def wire_ms(self, payload_bytes: int) -> float:
        """Real ms that `payload_bytes` take on the shaped link at least (one direction)."""
        if payload_bytes <= 0:
            return 0.0
        frames = payload_bytes * (MTU + ETHERNET_HEADER) / TCP_PAYLOAD_PER_FRAME
        return max(0.0, frames - self.burst_bytes) * 8.0 / (self.rate_mbps * 1e6) * 1e3

    def counted_ms(self, real_ms: float, wire_ms: float, fast_forward: bool) -> float:
        """What a real wait of `real_ms` that holds `wire_ms` of shaped wire time counts:
        the wire part divided by the dilation (dropped in fast-forward, where the board's
        clock already counts its link by the model), the rest whole. A wait shorter than
        its wire time (it cannot be) counts as all wire."""
        real_ms = max(0.0, real_ms)
        wire = min(max(0.0, wire_ms), real_ms)
        kept = 0.0 if fast_forward else wire / self.dilation
        return real_ms - wire + kept

    def to_dict(self) -> dict[str, float]:
        return {
            "mbps": self.mbps,
            "dilation": self.dilation,
            "rate_mbps": self.rate_mbps,
            "burst_bytes": self.burst_bytes,
        }


def payload_bytes(nbytes: int, packets: int) -> int:
    """The TCP payload that `packets` packets of `nbytes` bytes in all carried (a veth
    counts frames whole); an estimate that holds for TCP/IPv4 with timestamps, which is
    all the testbed carries (its veths have no IPv6)."""
    return max(0, int(nbytes) - HEADER_BYTES_PER_PACKET * int(packets))
