"""`StreamPlan`: how a stream of frames is spread over lanes of devices.

A lane is a set of devices that runs one frame at a time: one device alone, or several
splitting each frame spatially under a `SpatialPlan`. Lanes run concurrently on disjoint
devices and each frame goes to whichever lane is free, so the lanes together take
frames at the sum of their rates. The coordinator also spends `coordinator_ms` on every
frame (the network's tail, gathering, ...) one frame after another, so the stream can go
no faster than one frame per `coordinator_ms`:

    frame_ms = max(1 / sum(1 / period_i), coordinator_ms)

The plan holds only what the planner (`maniple.spatial.stream_planner`) chose and what it
was asked for; every figure reported (fps, latency, bottleneck) is derived from it, so a
plan read back from JSON reports the same numbers as the one written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import maniple.jsonio as jsonio
from maniple.errors import ManipleError, UnknownNameError
from maniple.spatial.plan import SpatialPlan, _table

STREAM_FORMAT = "maniple-stream-plan"
STREAM_VERSION = 1
OBJECTIVES = ("throughput", "fps")
"""`throughput`: the most frames/s (then the lowest latency); `fps`: the lowest latency
that still reaches `target_fps` frames/s."""

_WHERE = f"{STREAM_FORMAT}/{STREAM_VERSION}"


def lanes_ms(periods_ms: Sequence[float]) -> float:
    """Time between frames of lanes running side by side: 1 / sum of their rates (inf for
    no lanes, so an empty choice never looks fast)."""
    if not periods_ms:
        return math.inf
    return 1.0 / sum(1.0 / p for p in periods_ms)


def stream_frame_ms(periods_ms: Sequence[float], coordinator_ms: float) -> float:
    """The stream's time per frame: the lanes' joint period, capped below by the
    coordinator's serial work per frame. The planner and the plan both use this, so they
    can never disagree about a choice's speed."""
    return max(lanes_ms(periods_ms), coordinator_ms)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _devices_text(devices: Sequence[str]) -> str:
    return "+".join(str(d) for d in devices)


@dataclass(frozen=True)
class StreamLane:
    """Devices that take one frame at a time, with the planner's predictions for them.

    period_ms: time between two frames the lane can take (for a spatial split, the
        slowest stage of its schedule; for one device, its whole-network time).
    latency_ms: one frame's time through the lane, input to output.
    plan: the spatial plan the lane runs; for one device, a `single` plan on it.
    """

    devices: tuple[str, ...]
    period_ms: float
    latency_ms: float
    plan: SpatialPlan

    def __post_init__(self) -> None:
        """Lists to tuples, so lanes built from JSON-like data compare and hash."""
        if isinstance(self.devices, list):
            object.__setattr__(self, "devices", tuple(self.devices))

    @property
    def rate_per_s(self) -> float:
        """Frames per second the lane takes when it alone is fed."""
        return 1000.0 / self.period_ms

    def validate(self, where: str = "stream lane") -> StreamLane:
        """Raise ManipleError prefixed by `where` on the first bad field; return the lane.

        The planner checks every candidate with this before searching, so a NaN period
        fails here with the lane's name instead of silently losing every comparison.
        """
        devices = self.devices
        if not isinstance(devices, tuple) or not devices:
            raise ManipleError(f"{where}: needs at least one device; got {devices!r}")
        if any(not isinstance(d, str) or not d for d in devices):
            raise ManipleError(
                f"{where}: device names must be non-empty strings; got {list(devices)}"
            )
        if len(set(devices)) != len(devices):
            raise ManipleError(f"{where}: a device is named twice; got {list(devices)}")
        for name in ("period_ms", "latency_ms"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value <= 0:
                raise ManipleError(
                    f"{where}: {name} is {value!r}; must be a finite number of ms > 0 "
                    "(predict or measure the lane again)"
                )
        if not isinstance(self.plan, SpatialPlan):
            raise ManipleError(f"{where}: plan must be a SpatialPlan; got {self.plan!r}")
        if set(self.plan.devices) != set(devices):
            raise ManipleError(
                f"{where}: its plan runs on {list(self.plan.devices)}, not on the lane's "
                f"devices {list(devices)}; give the lane the plan made for its devices"
            )
        try:
            self.plan.validate()
        except ManipleError as exc:
            raise ManipleError(f"{where}: {exc}") from None
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "devices": list(self.devices),
            "period_ms": self.period_ms,
            "latency_ms": self.latency_ms,
            "plan": self.plan.to_dict(),
        }

    @classmethod
    def from_dict(cls, doc: Any, where: str = _WHERE) -> StreamLane:
        """One lane of `StreamPlan.to_dict`; field errors name `where` (the lane)."""
        if not isinstance(doc, dict):
            raise ManipleError(f"{where}: expected a JSON object, got {type(doc).__name__}")

        def get(name: str) -> Any:
            return jsonio.field(doc, name, where)

        return cls(
            devices=tuple(
                jsonio.as_str(d, "devices", where)
                for d in jsonio.as_list(get("devices"), "devices", where)
            ),
            period_ms=jsonio.as_float(get("period_ms"), "period_ms", where),
            latency_ms=jsonio.as_float(get("latency_ms"), "latency_ms", where),
            plan=SpatialPlan.from_dict(get("plan")),
        )


@dataclass(frozen=True)
class StreamPlan:
    """One network's stream: the lanes chosen, the coordinator's work, what was asked.

    objective: 'throughput' or 'fps' (then `target_fps` is the frames/s asked for).
    left_out: devices the planner was given but put in no lane (they would not help the
        objective, or had no candidate lane).
    note: why the plan falls short of what was asked (e.g. an unreachable --fps); empty
        when it does not.
    """

    network: str
    lanes: tuple[StreamLane, ...]
    coordinator_ms: float
    objective: str
    target_fps: float | None
    left_out: tuple[str, ...]
    note: str = ""

    def __post_init__(self) -> None:
        """Lists to tuples (so plans compare and hash); other values are left for
        `validate` to report."""
        for name in ("lanes", "left_out"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    @property
    def devices(self) -> tuple[str, ...]:
        """Every device in a lane, lane by lane."""
        return tuple(d for lane in self.lanes for d in lane.devices)

    @property
    def lanes_ms(self) -> float:
        """The lanes' joint period, before the coordinator's cap."""
        return lanes_ms([lane.period_ms for lane in self.lanes])

    @property
    def frame_ms(self) -> float:
        return stream_frame_ms([lane.period_ms for lane in self.lanes], self.coordinator_ms)

    @property
    def fps(self) -> float:
        return 1000.0 / self.frame_ms

    @property
    def latency_ms(self) -> float:
        """A frame's worst latency: that of the slowest lane it may land on."""
        return max(lane.latency_ms for lane in self.lanes)

    @property
    def bottleneck(self) -> str:
        """'coordinator' when its serial work per frame sets the pace (more lanes would not
        help), else 'lanes'."""
        return "coordinator" if self.coordinator_ms >= self.lanes_ms else "lanes"

    def validate(self) -> StreamPlan:
        """Raise ManipleError naming the first bad field or lane; return the plan."""
        if not isinstance(self.network, str) or not self.network:
            raise ManipleError(
                f"stream plan: network must be a non-empty name; got {self.network!r}"
            )
        where = f"stream plan for {self.network!r}"
        if not isinstance(self.lanes, tuple) or not self.lanes:
            raise ManipleError(
                f"{where}: needs at least one lane; got {self.lanes!r} (give the planner "
                "at least one candidate lane)"
            )
        seen: dict[str, int] = {}
        for i, lane in enumerate(self.lanes):
            if not isinstance(lane, StreamLane):
                raise ManipleError(f"{where}: lane {i} must be a StreamLane; got {lane!r}")
            name = f"{where}: lane {i} ({_devices_text(lane.devices)})"
            lane.validate(name)
            if lane.plan.network != self.network:
                raise ManipleError(
                    f"{name}: its plan is for network {lane.plan.network!r}, not "
                    f"{self.network!r}; plan the lane for this network"
                )
            for d in lane.devices:
                if d in seen:
                    raise ManipleError(
                        f"{name}: device {d!r} is already in lane {seen[d]}; lanes must "
                        "use disjoint devices"
                    )
                seen[d] = i
        if not isinstance(self.left_out, tuple) or any(
            not isinstance(d, str) for d in self.left_out
        ):
            raise ManipleError(f"{where}: left_out must list device names; got {self.left_out!r}")
        if len(set(self.left_out)) != len(self.left_out):
            raise ManipleError(f"{where}: left_out names a device twice: {list(self.left_out)}")
        for d in self.left_out:
            if d in seen:
                raise ManipleError(
                    f"{where}: device {d!r} is both in lane {seen[d]} and left out; "
                    "remove it from left_out"
                )
        c = self.coordinator_ms
        if not _is_number(c) or not math.isfinite(c) or c < 0:
            raise ManipleError(
                f"{where}: coordinator_ms is {c!r}; must be a finite number of ms >= 0"
            )
        if self.objective not in OBJECTIVES:
            raise UnknownNameError("stream objective", str(self.objective), OBJECTIVES)
        self._validate_target(where)
        if not isinstance(self.note, str):
            raise ManipleError(f"{where}: note must be a string; got {self.note!r}")
        return self

    def _validate_target(self, where: str) -> None:
        """'fps' needs the target it was planned for; 'throughput' has none, so a stray
        target would be reported as if it had been asked for."""
        target = self.target_fps
        if self.objective == "throughput":
            if target is not None:
                raise ManipleError(
                    f"{where}: objective 'throughput' takes no target_fps; got {target!r} "
                    "(use objective 'fps' to aim at a frame rate)"
                )
            return
        if target is None or not _is_number(target) or not math.isfinite(target) or target <= 0:
            raise ManipleError(
                f"{where}: objective 'fps' needs target_fps > 0 frames/s; got {target!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; each lane's plan as `SpatialPlan.to_dict()`."""
        return {
            "format": STREAM_FORMAT,
            "version": STREAM_VERSION,
            "network": self.network,
            "lanes": [lane.to_dict() for lane in self.lanes],
            "coordinator_ms": self.coordinator_ms,
            "objective": self.objective,
            "target_fps": self.target_fps,
            "left_out": list(self.left_out),
            "note": self.note,
        }

    def to_json(self) -> str:
        """Versioned JSON (format `maniple-stream-plan`, version 1)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes) -> StreamPlan:
        """Read `to_json`'s output; checks every field, then `validate()`."""
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ManipleError(f"{_WHERE}: not valid JSON ({exc})") from None
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Any) -> StreamPlan:
        """Read `to_dict`'s output; a file of another format or version is refused with
        what this maniple reads, rather than misread."""
        if not isinstance(doc, dict):
            raise ManipleError(f"{_WHERE}: expected a JSON object, got {type(doc).__name__}")
        if doc.get("format") != STREAM_FORMAT:
            raise ManipleError(
                f"{_WHERE}: field 'format' is {doc.get('format')!r}, expected "
                f"{STREAM_FORMAT!r} (is this a stream plan file?)"
            )
        version = doc.get("version")
        if version != STREAM_VERSION:
            raise ManipleError(
                f"{_WHERE}: version {version!r} is not supported; this maniple reads "
                f"version {STREAM_VERSION} (re-create the plan with this maniple)"
            )

        def get(name: str) -> Any:
            return jsonio.field(doc, name, _WHERE)

        target = get("target_fps")
        plan = cls(
            network=jsonio.as_str(get("network"), "network", _WHERE),
            lanes=tuple(
                StreamLane.from_dict(lane, f"{_WHERE}: lane {i}")
                for i, lane in enumerate(jsonio.as_list(get("lanes"), "lanes", _WHERE))
            ),
            coordinator_ms=jsonio.as_float(get("coordinator_ms"), "coordinator_ms", _WHERE),
            objective=jsonio.as_str(get("objective"), "objective", _WHERE),
            target_fps=None if target is None else jsonio.as_float(target, "target_fps", _WHERE),
            left_out=tuple(
                jsonio.as_str(d, "left_out", _WHERE)
                for d in jsonio.as_list(get("left_out"), "left_out", _WHERE)
            ),
            note=jsonio.as_str(doc.get("note", ""), "note", _WHERE),
        )
        return plan.validate()

    def __str__(self) -> str:
        """A table of lanes, then the stream's pace, latency and what limits it."""
        header = ["lane", "devices", "period ms", "rate frames/s", "latency ms"]
        rows = [
            [
                str(i),
                _devices_text(lane.devices),
                f"{lane.period_ms:.2f}",
                f"{lane.rate_per_s:.2f}",
                f"{lane.latency_ms:.2f}",
            ]
            for i, lane in enumerate(self.lanes)
        ]
        if self.objective == "fps":
            asked = f"objective fps (target {self.target_fps:g} frames/s)"
        else:
            asked = f"objective {self.objective}"
        left = ", ".join(self.left_out) if self.left_out else "none"
        tail = (
            f"\nframe {self.frame_ms:.2f} ms ({self.fps:.2f} frames/s), latency "
            f"{self.latency_ms:.2f} ms, bottleneck {self.bottleneck} (coordinator "
            f"{self.coordinator_ms:.2f} ms/frame), {asked}, left out: {left}"
        )
        if self.note:
            tail += f"\nnote: {self.note}"
        head = f"stream plan: {self.network}, {len(self.lanes)} lane(s)\n"
        return head + _table(header, rows, right={0, 2, 3, 4}) + tail
