"""The link model of an emulated board: what a transfer of N bytes costs on the wire.

Why a model and not real sockets: emulated boards live on this host, so their bytes cross
loopback in microseconds; the model puts back what a 100 Mbps board link and a shared
coordinator uplink would cost. `transfer_ms = latency + bytes * 8 / bandwidth`, where the
bandwidth is the board's own link or its share of the coordinator's uplink, whichever is
smaller (the caller says how many transfers share the uplink at that moment).
"""

from __future__ import annotations

from dataclasses import dataclass

from maniple.errors import ManipleError

DEFAULT_BOARD_MBPS = 100.0
DEFAULT_UPLINK_MBPS = 1000.0
DEFAULT_LATENCY_MS = 0.5


@dataclass(frozen=True)
class LinkSpec:
    """One board's link: its own bandwidth and one-way latency, and the coordinator's uplink.

    `uplink_mbps` is shared: `concurrent` transfers at once each get `uplink_mbps/concurrent`.
    """

    mbps: float = DEFAULT_BOARD_MBPS
    latency_ms: float = DEFAULT_LATENCY_MS
    uplink_mbps: float = DEFAULT_UPLINK_MBPS

    def __post_init__(self) -> None:
        for field, value in (("mbps", self.mbps), ("uplink_mbps", self.uplink_mbps)):
            if not value > 0:
                raise ManipleError(
                    f"link {field} must be > 0 Mbit/s, got {value!r}; write e.g. 100 for 100 Mbps"
                )
        if not self.latency_ms >= 0:
            raise ManipleError(f"link latency_ms must be >= 0, got {self.latency_ms!r}")

    def transfer_ms(self, nbytes: int, concurrent: int = 1) -> float:
        """Emulated milliseconds to move `nbytes` over this link while `concurrent`
        transfers (this one included) share the coordinator uplink. Zero bytes cost 0."""
        if nbytes < 0:
            raise ManipleError(f"transfer size must be >= 0 bytes, got {nbytes}")
        if concurrent < 1:
            raise ManipleError(f"concurrent transfers must be >= 1, got {concurrent}")
        if nbytes == 0:
            return 0.0
        mbps = min(self.mbps, self.uplink_mbps / concurrent)
        return self.latency_ms + nbytes * 8.0 / (mbps * 1e6) * 1e3

    def to_dict(self) -> dict[str, float]:
        return {"mbps": self.mbps, "latency_ms": self.latency_ms, "uplink_mbps": self.uplink_mbps}

    def wire_ms(self, nbytes: int) -> float:
        """Emulated ms that `nbytes` occupy this board's own link, without latency: what a
        peer transfer costs the sender's uplink or the receiver's downlink."""
        return max(0, int(nbytes)) * 8.0 / (self.mbps * 1e6) * 1e3

    def exchange_ms(self, down_bytes: int, senders_up_ms: float) -> float:
        """Emulated ms until a device has every piece its peers sent it: one latency, then
        the slower of its own downlink (all `down_bytes`) and its busiest sender's uplink
        (`senders_up_ms`), since both links are full duplex and the switch does not add up
        the two. Nothing received costs 0."""
        if down_bytes <= 0:
            return 0.0
        return self.latency_ms + max(self.wire_ms(down_bytes), senders_up_ms)
