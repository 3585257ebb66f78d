"""Classify every torch.fx node as row-local (splittable by rows) or tail (runs whole).

The tables here are the one place that says which PyTorch ops maniple can split. An op
that is neither row-local nor a known tail op is an error that names the node, so a user
learns exactly which line of their model stops the split (and can register the op with
`register_op` if it is row-local after all).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import fx, nn

from maniple.errors import ManipleError
from maniple.graph.rowmap import RowMap

Role = Literal["row", "tail", "sync", "global", "meta"]
WindowKind = Literal["conv", "max", "avg"]


@dataclass(frozen=True)
class Window:
    """A sliding-window op (conv or pooling) with its height/width parameters."""

    op: WindowKind
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    def rowmap(self) -> RowMap:
        return RowMap(
            "window",
            kernel=self.kernel[0],
            stride=self.stride[0],
            padding=self.padding[0],
            dilation=self.dilation[0],
        )


@dataclass(frozen=True)
class OpInfo:
    """What maniple knows about one node: its kind, role, row map and window (if any)."""

    kind: str
    role: Role
    rowmap: RowMap | None = None
    window: Window | None = None


class UnsupportedOpError(ManipleError):
    """An op maniple can neither split by rows nor run in the tail."""


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return int(v), int(v)


def _identity(kind: str) -> OpInfo:
    return OpInfo(kind, "row", RowMap("identity"))


def _tail(kind: str) -> OpInfo:
    return OpInfo(kind, "tail")


def _conv_module(m: nn.Conv2d) -> OpInfo:
    if m.padding_mode != "zeros":
        return _tail("conv")  # reflect/replicate padding cannot be cut at band borders
    k, d = _pair(m.kernel_size), _pair(m.dilation)
    if isinstance(m.padding, str):
        pad = (0, 0) if m.padding == "valid" else tuple(dd * (kk - 1) // 2 for kk, dd in zip(k, d))
    else:
        pad = _pair(m.padding)
    w = Window("conv", k, _pair(m.stride), pad, d)  # type: ignore[arg-type]
    return OpInfo("conv", "row", w.rowmap(), w)


def _maxpool_module(m: nn.MaxPool2d) -> OpInfo:
    if m.return_indices:
        return _tail("max_pool")
    stride = m.stride if m.stride is not None else m.kernel_size
    w = Window(
        "max", _pair(m.kernel_size), _pair(stride), _pair(m.padding), _pair(m.dilation), m.ceil_mode
    )
    return OpInfo("max_pool", "row", w.rowmap(), w)


def _avgpool_module(m: nn.AvgPool2d) -> OpInfo:
    stride = m.stride if m.stride is not None else m.kernel_size
    w = Window(
        "avg",
        _pair(m.kernel_size),
        _pair(stride),
        _pair(m.padding),
        (1, 1),
        m.ceil_mode,
        m.count_include_pad,
        m.divisor_override,
    )
    return OpInfo("avg_pool", "row", w.rowmap(), w)


def _upsample_module(m: nn.Upsample) -> OpInfo:
    sf = m.scale_factor
    f = sf[0] if isinstance(sf, (tuple, list)) else sf
    if m.mode == "nearest" and m.size is None and f is not None and float(f).is_integer():
        return OpInfo("upsample", "row", RowMap("upsample", factor=int(f)))
    return _tail("upsample")


_ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
)
_TAIL_MODULES: tuple[type[nn.Module], ...] = (
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Flatten,
    nn.Linear,
    nn.Softmax,
    nn.LogSoftmax,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.BatchNorm1d,
    nn.Conv1d,
)

_ELEMENTWISE_FUNCTIONS: set[Any] = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.neg,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    torch.neg,
    torch.clamp,
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.hardtanh,
    F.sigmoid,
    F.silu,
    F.gelu,
    F.elu,
    F.hardswish,
    F.hardsigmoid,
    F.mish,
    F.dropout,
}
_TAIL_FUNCTIONS: set[Any] = {
    torch.flatten,
    torch.reshape,
    torch.squeeze,
    torch.unsqueeze,
    torch.mean,
    torch.sum,
    torch.matmul,
    torch.softmax,
    torch.log_softmax,
    torch.sort,
    torch.topk,
    torch.argmax,
    torch.stack,
    torch.transpose,
    torch.permute,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    F.linear,
    F.softmax,
    F.log_softmax,
    F.layer_norm,
    F.group_norm,
    operator.getitem,
    operator.floordiv,
    getattr,
}
_ELEMENTWISE_METHODS = {
    "relu",
    "sigmoid",
    "tanh",
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "clamp",
    "contiguous",
    "clone",
    "float",
    "half",
    "to",
}
_TAIL_METHODS = {
    "view",
    "reshape",
    "flatten",
    "mean",
    "sum",
    "size",
    "squeeze",
    "unsqueeze",
    "permute",
    "transpose",
    "softmax",
    "log_softmax",
    "max",
    "min",
    "argmax",
    "chunk",
    "split",
    "expand",
    "expand_as",
    "view_as",
    "__getitem__",
    "dim",
}

_registered: dict[Any, OpInfo] = {}


def register_op(target: Callable[..., Any] | str | type[nn.Module], info: OpInfo) -> None:
    """Teach maniple an op it does not know (a function, a method name or a module type)."""
    _registered[target] = info


def _arg(node: fx.Node, index: int, name: str, default: Any) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _function_window(node: fx.Node, op: WindowKind) -> OpInfo:
    k = _pair(_arg(node, 1, "kernel_size", 1))
    stride_arg = _arg(node, 2, "stride", None)
    s = k if stride_arg in (None, [], ()) else _pair(stride_arg)
    p = _pair(_arg(node, 3, "padding", 0))
    if op == "max":
        if _arg(node, 6, "return_indices", False):
            return _tail("max_pool")
        w = Window(
            "max", k, s, p, _pair(_arg(node, 4, "dilation", 1)), bool(_arg(node, 5, "ceil_mode", 0))
        )
        return OpInfo("max_pool", "row", w.rowmap(), w)
    w = Window(
        "avg",
        k,
        s,
        p,
        (1, 1),
        bool(_arg(node, 4, "ceil_mode", False)),
        bool(_arg(node, 5, "count_include_pad", True)),
        _arg(node, 6, "divisor_override", None),
    )
    return OpInfo("avg_pool", "row", w.rowmap(), w)


def _cat_info(node: fx.Node) -> OpInfo:
    dim = _arg(node, 1, "dim", 0)
    return _identity("cat") if dim in (1, -3) else _tail("cat")


def _interpolate_info(node: fx.Node) -> OpInfo:
    mode = _arg(node, 3, "mode", "nearest")
    sf = _arg(node, 2, "scale_factor", None)
    size = _arg(node, 1, "size", None)
    f = sf[0] if isinstance(sf, (tuple, list)) else sf
    if mode == "nearest" and size is None and isinstance(f, (int, float)) and float(f).is_integer():
        return OpInfo("upsample", "row", RowMap("upsample", factor=int(f)))
    return _tail("interpolate")


def classify(node: fx.Node, modules: dict[str, nn.Module]) -> OpInfo:
    """OpInfo for one fx node; raises UnsupportedOpError for ops maniple does not know."""
    if node.op == "placeholder":
        return _identity("input")
    if node.op == "get_attr":
        return _tail("constant")
    if node.op == "output":
        return _tail("output")
    if node.op == "call_module":
        m = modules[str(node.target)]
        for key, info in _registered.items():
            if isinstance(key, type) and isinstance(m, key):
                return info
        if isinstance(m, nn.Conv2d):
            return _conv_module(m)
        if isinstance(m, nn.MaxPool2d):
            return _maxpool_module(m)
        if isinstance(m, nn.AvgPool2d):
            return _avgpool_module(m)
        if isinstance(m, nn.Upsample):
            return _upsample_module(m)
        if isinstance(m, nn.PixelUnshuffle):
            return OpInfo("unshuffle", "row", RowMap("unshuffle", factor=m.downscale_factor))
        if isinstance(m, nn.PixelShuffle):
            return OpInfo("shuffle", "row", RowMap("shuffle", factor=m.upscale_factor))
        if isinstance(m, _ELEMENTWISE_MODULES):
            return _identity(_module_kind(m))
        if isinstance(m, _TAIL_MODULES):
            return _tail(_module_kind(m))
        raise _unsupported(node, f"module type {type(m).__name__}")
    target = node.target
    if target in _registered:
        return _registered[target]
    if node.op == "call_function":
        if target in (F.max_pool2d, torch.max_pool2d):
            return _function_window(node, "max")
        if target in (F.avg_pool2d, torch._C._nn.avg_pool2d):
            return _function_window(node, "avg")
        if target is torch.cat:
            return _cat_info(node)
        if target is F.interpolate:
            return _interpolate_info(node)
        if target is F.pixel_unshuffle or target is torch.pixel_unshuffle:
            return OpInfo("unshuffle", "row", RowMap("unshuffle", factor=int(node.args[1])))
        if target is F.pixel_shuffle or target is torch.pixel_shuffle:
            return OpInfo("shuffle", "row", RowMap("shuffle", factor=int(node.args[1])))
        if target in _ELEMENTWISE_FUNCTIONS:
            return _identity(getattr(target, "__name__", str(target)))
        if target in _TAIL_FUNCTIONS:
            return _tail(getattr(target, "__name__", str(target)))
        raise _unsupported(node, f"function {getattr(target, '__name__', target)!r}")
    if node.op == "call_method":
        if target in _ELEMENTWISE_METHODS:
            return _identity(str(target))
        if target in _TAIL_METHODS:
            return _tail(str(target))
        raise _unsupported(node, f"tensor method .{target}()")
    raise _unsupported(node, f"fx op {node.op}")


def _module_kind(m: nn.Module) -> str:
    name = type(m).__name__
    return {"BatchNorm2d": "batch_norm", "Linear": "linear", "Flatten": "flatten"}.get(
        name, name.lower()
    )


def module_path(node: fx.Node) -> str:
    """Dotted module path of a node, for error messages ('layer1.0.conv1', or '<top>')."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    if stack:
        return str(list(stack.values())[-1][0]) or "<top>"
    return "<top>"


def _unsupported(node: fx.Node, what: str) -> UnsupportedOpError:
    return UnsupportedOpError(
        f"node {node.name!r} in module {module_path(node)!r} is {what}, which maniple can "
        "neither split by rows nor run in the tail. Fix: replace it with a supported op, or "
        "register it with maniple.graph.register_op(target, OpInfo(...)) if its output rows "
        "depend only on a bounded band of input rows."
    )
