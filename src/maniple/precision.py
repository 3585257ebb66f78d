"""Plain fp32 on GPUs, so that a split's output equals one device's output.

Why: PyTorch lets cuDNN run fp32 convolutions in TF32 by default (10-bit mantissa) on
Ampere and later GPUs. A batch split across a CPU and such a GPU would then mix two
precisions, and the outputs would differ by ~1e-3 of their scale, ten times the design's
tolerance. maniple's runs compare fp32 with fp32: TF32 is turned off for this process.

Only the legacy flags are used: torch refuses to read them once the newer per-backend
`fp32_precision` settings have been mixed in, and other code still reads them.
"""

from __future__ import annotations

import torch


def strict_fp32() -> None:
    """Turn TF32 off for cuDNN convolutions and CUDA matrix products in this process."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def tf32_enabled() -> bool:
    """Whether cuDNN convolutions may use TF32 here (for reports)."""
    return bool(torch.backends.cudnn.allow_tf32)
