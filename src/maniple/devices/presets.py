"""Edge-board presets: published latencies of the Legion study's boards.

Why these numbers: Legion (ICCD 2021) ran on Firefly-RK3399 boards with TVM; TVM's own
arm_cpu benchmark gives RK3399 batch-1 latencies for the reference networks below. Those
are what an emulated board must reproduce. The Odroid-XU4 has no such table at hand, so it
is *assumed* to run at 0.65x the Firefly's speed (every latency / 0.65): an assumption,
stated wherever the preset is shown. A custom board is given by its VGG-16 latency and
scales the Firefly's table by the same ratio.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from maniple.devices.link import LinkSpec
from maniple.errors import ManipleError, UnknownNameError

# Firefly-RK3399, TVM arm_cpu benchmark, batch 1, 224x224, milliseconds.
FIREFLY_MS: dict[str, float] = {
    "vgg-16": 970.0,
    "resnet-18": 169.0,
    "mobilenet": 82.0,
    "squeezenet_v1.1": 44.0,
}
REFERENCE_NETWORKS: tuple[str, ...] = tuple(FIREFLY_MS)
ODROID_SPEED_VS_FIREFLY = 0.65


@dataclass(frozen=True)
class BoardPreset:
    """A named board: its VGG-16 latency (the scale of its whole table) and where it comes from."""

    name: str
    vgg16_ms: float
    description: str
    source: str


PRESETS: dict[str, BoardPreset] = {
    "firefly-rk3399": BoardPreset(
        "firefly-rk3399",
        FIREFLY_MS["vgg-16"],
        "Firefly-RK3399 running TVM: VGG-16 970 ms, ResNet-18 169 ms, MobileNet 82 ms, "
        "SqueezeNet 1.1 44 ms",
        "TVM arm_cpu benchmark (RK3399), as used by the Legion study",
    ),
    "odroid-xu4": BoardPreset(
        "odroid-xu4",
        FIREFLY_MS["vgg-16"] / ODROID_SPEED_VS_FIREFLY,
        "Odroid-XU4, ASSUMED to run at 0.65x the Firefly's speed (VGG-16 ~1492 ms)",
        "assumption: 0.65x Firefly-RK3399 (no published table at hand)",
    ),
}


@dataclass(frozen=True)
class BoardSpec:
    """One emulated board: its preset (or 'custom'), VGG-16 latency, and link.

    The board's latency for a reference network is the Firefly table scaled by
    `vgg16_ms / 970`; for any other network the calibration's geometric-mean factor is used.
    """

    preset: str
    vgg16_ms: float
    link: LinkSpec = field(default_factory=LinkSpec)

    def __post_init__(self) -> None:
        if not self.vgg16_ms > 0:
            raise ManipleError(
                f"board VGG-16 latency must be > 0 ms, got {self.vgg16_ms!r}; "
                "e.g. emu:custom:500 is a board twice as fast as a Firefly-RK3399"
            )

    @property
    def slowdown_vs_firefly(self) -> float:
        """How many times slower than a Firefly-RK3399 this board is (Odroid: 1/0.65)."""
        return self.vgg16_ms / FIREFLY_MS["vgg-16"]

    def reference_ms(self, network: str) -> float | None:
        """This board's published (or scaled) latency for `network`, or None if not tabled."""
        ms = FIREFLY_MS.get(network)
        return None if ms is None else ms * self.slowdown_vs_firefly

    def describe(self) -> str:
        base = PRESETS[self.preset].description if self.preset in PRESETS else "custom board"
        return (
            f"{base}; VGG-16 {self.vgg16_ms:.0f} ms; link {self.link.mbps:g} Mbps, "
            f"{self.link.latency_ms:g} ms latency, uplink {self.link.uplink_mbps:g} Mbps shared"
        )


def board(name: str, link: LinkSpec | None = None, vgg16_ms: float | None = None) -> BoardSpec:
    """The BoardSpec for preset `name` ('custom' needs `vgg16_ms`)."""
    link = link or LinkSpec()
    if name == "custom":
        if vgg16_ms is None:
            raise ManipleError(
                "a custom board needs its VGG-16 latency in ms: emu:custom:500 "
                "(or `vgg16_ms: 500` in a cluster file)"
            )
        return BoardSpec("custom", float(vgg16_ms), link)
    if name not in PRESETS:
        raise UnknownNameError("board preset", name, [*PRESETS, "custom"])
    if vgg16_ms is not None:
        raise ManipleError(
            f"board preset {name!r} has a fixed VGG-16 latency; use 'custom' to set vgg16_ms"
        )
    return BoardSpec(name, PRESETS[name].vgg16_ms, link)
