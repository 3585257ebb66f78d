"""The checks behind `SpatialPlan.validate`, one per step, each naming what is wrong.

A plan read from disk or built by hand must fail here with a sentence a user can act on,
not later on a device with an index error in the middle of a run.
"""

from __future__ import annotations

import math

from maniple.errors import ManipleError
from maniple.spatial.flc import FLC
from maniple.tiling.bands import Band

_TOTAL_TOLERANCE = 1e-6


def check_devices(where: str, devices: tuple[str, ...], search: str) -> None:
    """Bands are matched to devices by position, so names must be present and distinct."""
    if not isinstance(devices, tuple) or len(devices) == 0:
        raise ManipleError(f"{where}: needs at least one device; got {devices!r}")
    if any(not isinstance(d, str) or not d for d in devices):
        raise ManipleError(f"{where}: device names must be non-empty strings; got {list(devices)}")
    if len(set(devices)) != len(devices):
        raise ManipleError(f"{where}: device names must be unique; got {list(devices)}")
    if search == "single" and len(devices) != 1:
        raise ManipleError(f"{where}: search 'single' runs on one device; got {len(devices)}")


def check_heights(where: str, heights: tuple[int, ...]) -> None:
    """Every unit's output rows: the band checks and the runtime's halo math rely on them."""
    if not isinstance(heights, tuple) or len(heights) == 0:
        raise ManipleError(
            f"{where}: unit_heights must list each unit's output rows; got {heights!r}"
        )
    for k, h in enumerate(heights):
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise ManipleError(f"{where}: unit {k} has {h!r} output rows; must be an integer >= 1")


def check_bands(
    where: str,
    flc: FLC,
    bands: tuple[tuple[Band, ...], ...],
    devices: tuple[str, ...],
    heights: tuple[int, ...],
) -> None:
    """Each group's bands, in device order, must tile its output rows 0..height exactly."""
    if not isinstance(bands, tuple) or len(bands) != len(flc):
        count = len(bands) if isinstance(bands, tuple) else bands
        raise ManipleError(f"{where}: bands given for {count} groups but the FLC has {len(flc)}")
    for g, ((first, last), group) in enumerate(zip(flc, bands, strict=True)):
        name = f"group {g} (units {first}..{last})"
        if not isinstance(group, tuple) or len(group) != len(devices):
            count = len(group) if isinstance(group, tuple) else group
            raise ManipleError(
                f"{where}: {name} has bands for {count} devices but the plan has "
                f"{len(devices)} devices ({', '.join(devices)})"
            )
        row = 0
        for device, band in zip(devices, group, strict=True):
            if not (
                isinstance(band, tuple)
                and len(band) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) for x in band)
            ):
                raise ManipleError(
                    f"{where}: {name}, device {device!r}: band {band!r} is not a "
                    "(start, end) pair of integers"
                )
            start, end = band
            if start != row or end < start:
                raise ManipleError(
                    f"{where}: {name}, device {device!r}: band {start}:{end} should start at "
                    f"row {row} and not end before it; bands must be contiguous in device order"
                )
            row = end
        if row != heights[last]:
            raise ManipleError(
                f"{where}: {name}: bands cover rows 0:{row} but the group's output has "
                f"{heights[last]} rows; bands must cover every row once"
            )


def check_predicted(
    where: str, total: float | None, group_ms: tuple[float, ...] | None, groups: int
) -> None:
    if total is None and group_ms is None:
        return
    if total is None or group_ms is None:
        raise ManipleError(f"{where}: predicted_ms and group_ms must both be given or both None")
    if len(group_ms) != groups:
        raise ManipleError(f"{where}: group_ms has {len(group_ms)} entries for {groups} groups")
    for g, ms in enumerate((*group_ms, total)):
        if (
            isinstance(ms, bool)
            or not isinstance(ms, (int, float))
            or not math.isfinite(ms)
            or ms < 0
        ):
            what = "predicted_ms" if g == groups else f"group_ms[{g}]"
            raise ManipleError(f"{where}: {what} is {ms!r}; must be finite and >= 0")
    if not math.isclose(total, math.fsum(group_ms), rel_tol=_TOTAL_TOLERANCE, abs_tol=1e-9):
        raise ManipleError(
            f"{where}: predicted_ms {total} is not the sum of group_ms ({math.fsum(group_ms)})"
        )
