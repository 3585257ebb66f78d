"""Tensors across a process boundary and GPU timing: what every worker call needs.

Apart from the worker so that the worker holds only what it runs; the names stay
importable from `maniple.devices.worker`.
"""

from __future__ import annotations

import numpy as np
import torch


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "xpu":
        torch.xpu.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def to_wire(t: torch.Tensor) -> torch.Tensor | np.ndarray:
    """A CPU tensor as a numpy array for Ray, which moves arrays through its object store
    without pickling; dtypes numpy lacks (bfloat16) stay tensors."""
    try:
        return t.detach().cpu().numpy()
    except TypeError:
        return t


def from_wire(a: np.ndarray) -> torch.Tensor:
    """A tensor from an array that crossed Ray: arrays from its object store are read-only
    views of shared memory, so they are copied once (torch wants writable memory)."""
    return torch.from_numpy(a if a.flags.writeable else a.copy())
