"""Run a traced network once and keep what every node produced: shapes, or the value itself.

Why more than torch's ShapeProp: tracing turns shape reads and shape checks into nodes
(`x.size()`, `x.ndim == 4`, `torch._assert`), and a channel shuffle reshapes with sizes
read from the tensor. Their values at the static input shape are what capture needs to
resolve them (role 'meta'), and the shapes of tuple outputs (`chunk`, `split`) are what
the halo math needs for the tensors inside them. Multiply-accumulates are torch's own
count per node (FlopCounterMode), so a leaf module such as a transformer layer counts too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx
from torch.utils.flop_counter import FlopCounterMode


class _Recorder(fx.Interpreter):
    """An fx interpreter that keeps a light record of each node's result."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[str, tuple[int, ...] | None] = {}
        self.nbytes: dict[str, int] = {}
        self.static: dict[str, Any] = {}
        self.kinds: dict[str, str] = {}
        self.macs: dict[str, int] = {}

    def run_node(self, n: fx.Node) -> Any:
        if n.op in ("call_module", "call_function", "call_method"):
            # torch's own count (convolutions, matmuls, attention), inside leaf modules too
            with FlopCounterMode(display=False) as flops:
                result = super().run_node(n)
            self.macs[n.name] = int(flops.get_total_flops()) // 2
            if not self.macs[n.name] and n.op == "call_module":
                self.macs[n.name] = _fused_module_macs(
                    self.module.get_submodule(str(n.target)), result
                )
        else:
            result = super().run_node(n)
        self.kinds[n.name], self.shapes[n.name], self.nbytes[n.name] = _describe(result)
        if self.kinds[n.name] == "value":
            self.static[n.name] = result
        return result


def _fused_module_macs(module: torch.nn.Module, result: Any) -> int:
    """MACs of a leaf module whose fused kernel torch's counter does not see (a transformer
    layer's fast path): each weight matrix once per position of the output."""
    if not isinstance(result, torch.Tensor) or result.dim() < 1 or result.shape[-1] == 0:
        return 0
    positions = result.numel() // result.shape[-1]
    return positions * sum(p.numel() for p in module.parameters() if p.dim() >= 2)


def _describe(value: Any) -> tuple[str, tuple[int, ...] | None, int]:
    """(kind, shape, bytes): 'tensor', 'tensors' (a tuple or list of tensors, the shape of
    the first) or 'value' (anything else: ints, sizes, booleans, None)."""
    if isinstance(value, torch.Tensor):
        return "tensor", tuple(int(s) for s in value.shape), value.numel() * value.element_size()
    if (
        isinstance(value, (tuple, list))
        and value
        and all(isinstance(v, torch.Tensor) for v in value)
    ):
        total = sum(v.numel() * v.element_size() for v in value)
        return "tensors", tuple(int(s) for s in value[0].shape), total
    return "value", None, 0


class RecordedValues:
    """What one batch-1 forward pass at the static shape gave, node by node."""

    def __init__(self, recorder: _Recorder) -> None:
        self.shapes = recorder.shapes
        self.nbytes = recorder.nbytes
        self.static = recorder.static
        self.kinds = recorder.kinds
        self.macs = recorder.macs

    def is_tensor(self, name: str) -> bool:
        return self.kinds.get(name) == "tensor"

    def is_value(self, name: str) -> bool:
        """The node computes no tensor (a shape read, a check, an int)."""
        return self.kinds.get(name, "value") == "value"


def record_values(gm: fx.GraphModule, sample: torch.Tensor) -> RecordedValues:
    """Run `gm` on `sample` without gradients and record every node's result."""
    recorder = _Recorder(gm)
    with torch.no_grad():
        recorder.run(sample)
    return RecordedValues(recorder)
