"""How a device computes: its precision, its memory format and whether it runs compiled.

Why one small record: a split must equal one device *at the same precision*, so the
precision travels with every device (`DeviceSpec.mode`), keys its profiles, sets the
exactness tolerance and is printed beside every figure. The default is strict fp32,
the only setting in which a CPU and a GPU give the same output to 1e-4.

Precisions:
- `fp32`: strict IEEE float32; TF32 is turned off for cuDNN convolutions and CUDA matrix
  products (PyTorch would otherwise let cuDNN use TF32 on Ampere and later GPUs).
- `tf32`: float32 tensors, TF32 tensor-core math on CUDA (a CPU computes plain fp32).
- `bf16`, `fp16`: the model's weights and activations in that type.

TF32 is one switch per process (the legacy flags; torch refuses to read them once the
newer per-backend `fp32_precision` settings are mixed in, and other code reads them), so
two GPUs of one process cannot run fp32 and tf32 side by side: `check_tf32_agree` says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from maniple.errors import ManipleError, UnknownNameError

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
DTYPES = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
TOLERANCES = {"fp32": 1e-4, "tf32": 1e-3, "bf16": 2e-2, "fp16": 2e-2}
"""Max abs error relative to the output's scale between a split and one device at the
same precision (DESIGN.md: 'How results are judged')."""

MEMORY_FORMATS = ("auto", "contiguous", "channels-last")
COMPILE_MODES = ("off", "default", "max-autotune-no-cudagraphs", "cuda-graphs")
"""`default` and `max-autotune-no-cudagraphs` are torch.compile (inductor) modes;
`cuda-graphs` captures each fixed shape once and replays it (no code generation)."""


@dataclass(frozen=True)
class ExecMode:
    """How one device runs its model. Frozen and picklable: it is sent to workers.

    precision:     fp32 | tf32 | bf16 | fp16
    memory_format: auto (channels-last on a GPU at tf32/bf16/fp16, where tensor cores read
                   NHWC natively; contiguous elsewhere) | contiguous | channels-last
    compile:       off | default | max-autotune-no-cudagraphs | cuda-graphs
    """

    precision: str = "fp32"
    memory_format: str = "auto"
    compile: str = "off"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UnknownNameError("precision", self.precision, PRECISIONS)
        if self.memory_format not in MEMORY_FORMATS:
            raise UnknownNameError("memory format", self.memory_format, MEMORY_FORMATS)
        if self.compile not in COMPILE_MODES:
            raise UnknownNameError("compile mode", self.compile, COMPILE_MODES)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.precision]

    @property
    def tolerance(self) -> float:
        return TOLERANCES[self.precision]

    @property
    def is_default(self) -> bool:
        return self == ExecMode()

    def channels_last(self, device_type: str) -> bool:
        """Whether a device of `device_type` ('cpu', 'cuda', ...) runs NHWC in this mode."""
        if self.memory_format == "auto":
            return device_type == "cuda" and self.precision != "fp32"
        return self.memory_format == "channels-last"

    def on(self, device_type: str) -> ExecMode:
        """This mode as a device of `device_type` runs it: only GPUs compile (a CPU runs
        eager: inductor's CPU path needs a C++ toolchain and minutes per shape)."""
        if device_type == "cuda" or self.compile == "off":
            return self
        return dataclasses.replace(self, compile="off")

    def describe(self) -> str:
        """`fp32`, `bf16 channels-last compiled(default)`, ... (for reports and keys)."""
        parts = [self.precision]
        if self.memory_format != "auto":
            parts.append(self.memory_format)
        if self.compile != "off":
            parts.append(f"compiled({self.compile})")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "memory_format": self.memory_format,
            "compile": self.compile,
            "tolerance": self.tolerance,
        }


DEFAULT_MODE = ExecMode()


def parse_precision(text: str, option: str = "--precision") -> str:
    """`text` as a precision name (case-insensitive; float32/bfloat16/half accepted)."""
    aliases = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16"}
    name = aliases.get(str(text).strip().lower(), str(text).strip().lower())
    if name == "half":
        name = "fp16"
    if name not in PRECISIONS:
        raise ManipleError(
            f"{option + ' ' if option else ''}{text!r} is not a precision; valid: "
            f"{', '.join(PRECISIONS)} (fp32 is strict float32, the default)"
        )
    return name


def loosest_tolerance(modes: Iterable[ExecMode]) -> float:
    """The tolerance a run of devices in `modes` is checked against: the loosest of them."""
    return max((m.tolerance for m in modes), default=TOLERANCES["fp32"])


def set_tf32(on: bool) -> None:
    """TF32 for cuDNN convolutions and CUDA matrix products in this process, on or off."""
    torch.backends.cudnn.allow_tf32 = bool(on)
    torch.backends.cuda.matmul.allow_tf32 = bool(on)


def strict_fp32() -> None:
    """Turn TF32 off for cuDNN convolutions and CUDA matrix products in this process."""
    set_tf32(False)


def tf32_enabled() -> bool:
    """Whether cuDNN convolutions may use TF32 here (for reports)."""
    return bool(torch.backends.cudnn.allow_tf32)


def check_tf32_agree(named_modes: Iterable[tuple[str, ExecMode]]) -> bool:
    """Whether TF32 is to be on for the CUDA devices of one process (their (name, mode)
    pairs): fp32 wants it off, tf32 on; both at once is an error naming them."""
    wants = {n: m.precision == "tf32" for n, m in named_modes if m.precision in ("fp32", "tf32")}
    if len(set(wants.values())) > 1:
        on = [n for n, w in wants.items() if w]
        off = [n for n, w in wants.items() if not w]
        raise ManipleError(
            f"{', '.join(on)} at tf32 and {', '.join(off)} at fp32 share this process, but "
            "TF32 is one switch per process; give them the same precision, or run one of "
            "them as a Ray device (ray:head/cuda:N)"
        )
    return any(wants.values())
