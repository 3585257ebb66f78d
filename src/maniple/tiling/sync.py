"""Sync points on bands: each device's partial reduction, their combination, the value.

A sync point (squeeze-and-excitation's global pool) reduces a map over its rows. On a
split, each band reduces only the rows it owns (`maniple.graph.halo` gives every row to
exactly one band), the partials, a few numbers per channel, are combined in device order,
and every band continues with the same value. Partials are summed in float32 (float64 for
float64 maps), whatever the map's precision, and the value is cast back once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from maniple.errors import ManipleError
from maniple.graph.types import SyncInfo


def partial(x_owned: torch.Tensor, info: SyncInfo) -> torch.Tensor:
    """The reduction of the rows a band owns, kept with size 1 in the reduced dims."""
    acc = x_owned.to(torch.float64 if x_owned.dtype == torch.float64 else torch.float32)
    if info.reduce == "max":
        if x_owned.numel() == 0:
            shape = [1 if d in info.dims else s for d, s in enumerate(x_owned.shape)]
            return torch.full(shape, float("-inf"), dtype=acc.dtype, device=acc.device)
        return acc.amax(info.dims, keepdim=True)
    return acc.sum(info.dims, keepdim=True)


def empty_partial(shape: Sequence[int], info: SyncInfo, device: torch.device) -> torch.Tensor:
    """The partial of a band that owns no rows: zeros (or -inf for a max)."""
    shape = [1 if d in info.dims else int(s) for d, s in enumerate(shape)]
    fill = float("-inf") if info.reduce == "max" else 0.0
    return torch.full(shape, fill, dtype=torch.float32, device=device)


def combine(partials: Sequence[torch.Tensor], info: SyncInfo) -> torch.Tensor:
    """All bands' partials combined, in the order given (device order: every device that
    combines them itself gets bit-identical values)."""
    if not partials:
        raise ManipleError("a sync point needs the partial of at least one band; got none")
    shapes = {tuple(p.shape) for p in partials}
    if len(shapes) != 1:
        raise ManipleError(
            f"the partials of one sync point differ in shape: {sorted(shapes)}; every band "
            "must reduce the same channels of the same images"
        )
    out = partials[0].clone()
    for p in partials[1:]:
        p = p.to(device=out.device, dtype=out.dtype)
        out = torch.maximum(out, p) if info.reduce == "max" else out + p
    return out


def finish(combined: torch.Tensor, info: SyncInfo, dtype: torch.dtype) -> torch.Tensor:
    """The sync point's own output from the combined partials: the mean divides by the
    whole map's count; without keepdim the reduced dims go."""
    value = combined / info.count if info.reduce == "mean" else combined
    if not info.keepdim:
        value = value.squeeze(info.dims)
    return value.to(dtype)
