"""Check that a network splits exactly: random fused configurations and ratios, band by band.

This is what `maniple verify` runs. Each trial draws random cut points and random device
ratios, runs the spatial part group by group with every band computed separately, stitches,
and compares with the unsplit spatial part. The error is relative to the output's scale
(max |split - whole| / max |whole|), the measure DESIGN.md judges by.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

import torch

from maniple.errors import ManipleError
from maniple.graph import LayerGraph
from maniple.tiling.tiled import Group, TiledModel

TOLERANCE = 1e-4


@dataclass(frozen=True)
class Trial:
    """One random split: its groups, its device ratios and the error it gave."""

    cuts: tuple[int, ...]
    flc: tuple[Group, ...]
    ratios: tuple[float, ...]
    max_rel_error: float


@dataclass(frozen=True)
class VerifyResult:
    """All trials of one network, the worst one, and whether every trial was within bounds."""

    network: str
    devices: int
    dtype: str
    tolerance: float
    trials: tuple[Trial, ...] = field(default_factory=tuple)
    precision: str = "fp32"
    error_vs_fp32: float | None = None
    """The unsplit output at this precision against strict fp32 (None at fp32)."""

    @property
    def worst(self) -> Trial:
        return max(self.trials, key=lambda t: t.max_rel_error)

    @property
    def max_rel_error(self) -> float:
        return self.worst.max_rel_error

    @property
    def ok(self) -> bool:
        return self.max_rel_error <= self.tolerance

    def to_json(self) -> dict[str, object]:
        worst = self.worst
        return {
            "network": self.network,
            "trials": len(self.trials),
            "devices": self.devices,
            "dtype": self.dtype,
            "precision": self.precision,
            "tolerance": self.tolerance,
            "error_vs_fp32": self.error_vs_fp32,
            "max_rel_error": self.max_rel_error,
            "ok": self.ok,
            "worst": {"cuts": list(worst.cuts), "ratios": list(worst.ratios)},
            "all": [asdict(t) for t in self.trials],
        }


def random_flc(n_units: int, rng: random.Random) -> tuple[tuple[int, ...], tuple[Group, ...]]:
    """Random cut points (each unit boundary cut with probability 1/2) and their groups."""
    cuts = tuple(k for k in range(1, n_units) if rng.random() < 0.5)
    bounds = [0, *cuts, n_units]
    return cuts, tuple((bounds[i], bounds[i + 1] - 1) for i in range(len(bounds) - 1))


class NonFiniteOutputError(ManipleError):
    """An output or its reference holds NaN or Inf: exactness cannot be judged.

    Its own error because a NaN compares false with every bound, so a check written as
    `error > tolerance` would let it pass; and a reference that is not finite means the
    model itself produces such values, which no split can be blamed or cleared for."""


def relative_error(split: torch.Tensor, whole: torch.Tensor) -> float:
    """max |split - whole| / max |whole| (absolute error when the output is all zeros):
    the design's "max abs error <= 1e-4 relative to the output's scale".

    Raises NonFiniteOutputError when either tensor holds NaN or Inf."""
    if split.shape != whole.shape:
        raise ManipleError(
            f"outputs differ in shape: {tuple(split.shape)} vs reference {tuple(whole.shape)}; "
            "the split lost or reordered rows or images"
        )
    whole = whole.detach().cpu().double()
    split = split.detach().cpu().double()
    for what, t in (
        ("the reference output (one device, unsplit)", whole),
        ("the split output", split),
    ):
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            fix = (
                "the model itself produces them for this input: check its weights and "
                "input, or use another model"
                if t is whole
                else "one device's output is finite, so this is a bug: please report it"
            )
            raise NonFiniteOutputError(
                f"{what} holds {bad} NaN or Inf value(s) of {t.numel()}; exactness cannot "
                f"be checked: {fix}"
            )
    diff = (split - whole).abs().max().item()
    scale = whole.abs().max().item()
    return diff / scale if scale > 0 else diff


def verify_split(
    graph: LayerGraph,
    trials: int = 5,
    devices: int = 4,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    tolerance: float | None = None,
    precision: str | None = None,
) -> VerifyResult:
    """Run `trials` random splits of `graph`'s spatial part; see the module docstring.

    `precision` (fp32, tf32, bf16, fp16) sets the dtype, TF32 and the tolerance (each
    unless given); the unsplit output at that precision is also held against strict fp32
    (`error_vs_fp32`). Without it, `dtype` alone (float32: strict) and 1e-4."""
    from maniple.precision import DTYPES, TOLERANCES, set_tf32

    if precision is None:
        precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")
    else:
        dtype = DTYPES[precision]
    if tolerance is None:
        tolerance = TOLERANCES[precision] if precision != "fp32" else TOLERANCE
    if trials < 1:
        raise ManipleError(f"--trials must be at least 1, got {trials}")
    if devices < 1:
        raise ManipleError(f"--devices must be at least 1, got {devices}")
    if str(device).startswith("cuda"):
        set_tf32(precision == "tf32")  # else TF32 convolutions differ by ~1e-3 of the scale
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    module = graph.module.to(device=device, dtype=dtype)
    tiled = TiledModel(graph)
    x32 = torch.randn(1, *graph.input_shape, generator=gen).to(device=device)
    x = x32.to(dtype)
    vs_fp32 = None
    with torch.no_grad():
        if precision != "fp32":
            graph.module.to(torch.float32)  # bf16/fp16 weights round-trip exactly
            set_tf32(False)
            whole32 = graph.spatial_module(x32)
            set_tf32(precision == "tf32")
            graph.module.to(dtype)
        whole = graph.spatial_module(x)
        if precision != "fp32":
            vs_fp32 = relative_error(whole, whole32)
        results = []
        for _ in range(trials):
            cuts, flc = random_flc(len(graph.units), rng)
            ratios = tuple(round(rng.uniform(0.05, 1.0), 4) for _ in range(devices))
            split = tiled.run_spatial(x, flc, ratios)
            results.append(Trial(cuts, flc, ratios, relative_error(split, whole)))
    del module
    return VerifyResult(
        graph.name,
        devices,
        str(dtype).removeprefix("torch."),
        tolerance,
        tuple(results),
        precision,
        vs_fp32,
    )
