"""The layout pass of capture: which nodes keep rows apart, along which dim, and which
reduce over rows (sync points) or see no rows at all (global values).

Why a pass of its own: whether an op is row-local often depends on where the rows are,
not on the op. A Linear or a LayerNorm over the last dim is row-local after ConvNeXt's
permute to NHWC and not before it; a reshape is row-local when it keeps the rows as one
dim of their own (a channel shuffle) and not when it folds them into another (a ViT's
flatten); a mean over (H, W) ends a classifier but, in squeeze-and-excitation, is a sync
point whose few numbers per channel every device can combine and carry on with.

Roles: 'row' (rows along `row_dim`), 'sync' (reduces over rows, the result is global),
'global' (no rows: computed alike on every device from globals and constants), 'meta'
(computes no tensor: shape reads and checks, taken as their values at capture) and
'tail' (runs whole after the spatial part). A sync point whose result never comes back
to the rows (the final global pool) is the start of the tail, not a sync point.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from maniple.errors import ManipleError
from maniple.graph.ops import OpInfo, classify
from maniple.graph.rowmap import RowMap
from maniple.graph.types import SyncInfo
from maniple.graph.values import RecordedValues

_IDENTITY = RowMap("identity")


@dataclass(frozen=True)
class NodeLayout:
    """What the layout pass decided for one node."""

    role: str
    info: OpInfo
    row_dim: int = 2
    sync: SyncInfo | None = None


def _norm_dims(dims: Any, ndim: int) -> tuple[int, ...] | None:
    if dims is None:
        return None
    if isinstance(dims, int):
        dims = (dims,)
    try:
        return tuple(sorted(int(d) % ndim for d in dims))
    except (TypeError, ValueError):
        return None


def _arg(node: fx.Node, index: int, name: str, default: Any) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _reduction(node: fx.Node, modules: dict[str, nn.Module], ndim: int) -> Any:
    """(reduce, dims, keepdim) when the node reduces its input over some dims, else None."""
    if node.op == "call_module":
        m = modules[str(node.target)]
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and ndim == 4:
            if m.output_size in (1, (1, 1), [1, 1]) and not getattr(m, "return_indices", False):
                return ("mean" if isinstance(m, nn.AdaptiveAvgPool2d) else "max", (2, 3), True)
        return None
    target = node.target
    if node.op == "call_function" and target in (
        F.adaptive_avg_pool2d,
        F.adaptive_max_pool2d,
        torch._C._nn.adaptive_avg_pool2d,
    ):
        size = _arg(node, 1, "output_size", None)
        if size in (1, (1, 1), [1, 1]) and ndim == 4 and not _arg(node, 2, "return_indices", False):
            return ("max" if target is F.adaptive_max_pool2d else "mean", (2, 3), True)
        return None
    names = {torch.mean: "mean", torch.sum: "sum", torch.amax: "max"}
    reduce = names.get(target) if node.op == "call_function" else None  # type: ignore[arg-type]
    if node.op == "call_method" and target in ("mean", "sum", "amax"):
        reduce = {"mean": "mean", "sum": "sum", "amax": "max"}[str(target)]
    if reduce is None or len(node.args) < 1:
        return None
    dims = _norm_dims(_arg(node, 1, "dim", None), ndim)
    if dims is None or 0 in dims or _arg(node, 3, "dtype", None) is not None:
        return None
    return (reduce, dims, bool(_arg(node, 2, "keepdim", False)))


def _reshaped_row_dim(in_shape: tuple[int, ...], out_shape: tuple[int, ...], r: int) -> int | None:
    """The output dim holding the rows after a reshape, if the reshape keeps them a dim of
    their own with the same dims before and after (in the row-major sense), else None."""
    if not out_shape or out_shape[0] != in_shape[0]:
        return None
    before, after = math.prod(in_shape[:r]), math.prod(in_shape[r + 1 :])
    for r2 in range(1, len(out_shape)):
        if (
            out_shape[r2] == in_shape[r]
            and math.prod(out_shape[:r2]) == before
            and math.prod(out_shape[r2 + 1 :]) == after
        ):
            return r2
    return None


_RESHAPE_METHODS = {"view", "reshape", "flatten", "unflatten"}
_RESHAPE_FUNCTIONS = {torch.reshape, torch.flatten, torch.unflatten}
_SOFTMAX = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax}


def _layout_rule(
    node: fx.Node,
    modules: dict[str, nn.Module],
    values: RecordedValues,
    x: str,
    r: int,
) -> NodeLayout | None:
    """Row-local ops whose verdict depends on where the rows are (`r`, of input `x`).

    None: not one of these ops (the op tables decide). A NodeLayout with role 'tail':
    one of these ops, but it mixes the rows with something else here.
    """
    target, op = node.target, node.op
    in_shape = values.shapes[x] or ()
    out_shape = values.shapes[node.name] or ()
    ndim = len(in_shape)

    def row(kind: str, row_dim: int = r) -> NodeLayout:
        return NodeLayout("row", OpInfo(kind, "row", _IDENTITY), row_dim)

    tail = NodeLayout("tail", OpInfo(_kind(node, modules), "tail"))
    if (op == "call_method" and target == "permute") or (
        op == "call_function" and target is torch.permute
    ):
        dims = node.args[1:] if op == "call_method" else (_arg(node, 1, "dims", ()),)
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        order = [int(d) % ndim for d in dims]
        return row("permute", order.index(r)) if r in order else tail
    if (op == "call_method" and target == "transpose") or (
        op == "call_function" and target is torch.transpose
    ):
        a, b = (int(node.args[1]) % ndim, int(node.args[2]) % ndim)
        return row("transpose", b if r == a else a if r == b else r)
    if (
        (op == "call_method" and target in _RESHAPE_METHODS)
        or (op == "call_function" and target in _RESHAPE_FUNCTIONS)
        or (op == "call_module" and isinstance(modules[str(target)], (nn.Flatten, nn.Unflatten)))
    ):
        r2 = _reshaped_row_dim(in_shape, out_shape, r)
        return tail if r2 is None else row("reshape", r2)
    if op == "call_function" and target is torch.cat:
        dim = int(_arg(node, 1, "dim", 0)) % ndim
        return tail if dim == r else row("cat")
    if target in ("chunk", "split") or target in (torch.chunk, torch.split):
        dim = int(_arg(node, 2, "dim", 0)) % ndim
        return tail if dim == r else row(str(getattr(target, "__name__", target)))
    if op == "call_function" and target is operator.getitem:
        return _getitem_rule(node, values, x, r, tail)
    if op == "call_module":
        m = modules[str(target)]
        if isinstance(m, nn.Linear):
            return row("linear") if r < ndim - 1 else tail
        if isinstance(m, nn.LayerNorm):
            return row("layer_norm") if r < ndim - len(m.normalized_shape) else tail
        if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
            return row("softmax") if m.dim is not None and int(m.dim) % ndim != r else tail
        return None
    if target is F.linear:
        return row("linear") if r < ndim - 1 else tail
    if target is F.layer_norm:
        shape = _arg(node, 1, "normalized_shape", ())
        k = 1 if isinstance(shape, int) else len(shape)
        return row("layer_norm") if r < ndim - k else tail
    if target in _SOFTMAX or (op == "call_method" and target in ("softmax", "log_softmax")):
        dim = _arg(node, 1, "dim", None)
        return row("softmax") if dim is not None and int(dim) % ndim != r else tail
    if target is F.batch_norm:
        return row("batch_norm") if r != 1 and not _arg(node, 5, "training", False) else tail
    if getattr(target, "__name__", "") == "stochastic_depth":
        return row("stochastic_depth") if not _arg(node, 3, "training", True) else tail
    return None


def _getitem_rule(
    node: fx.Node, values: RecordedValues, x: str, r: int, tail: NodeLayout
) -> NodeLayout:
    """getitem of a chunk's tuple, or a tensor slice that keeps every row."""
    index = node.args[1]
    if values.kinds.get(x) == "tensors":
        ok = isinstance(index, int)
        return NodeLayout("row", OpInfo("getitem", "row", _IDENTITY), r) if ok else tail
    idx = index if isinstance(index, tuple) else (index,)
    if not all(isinstance(i, slice) for i in idx):
        return tail
    if len(idx) > r and idx[r] != slice(None, None, None):
        return tail
    return NodeLayout("row", OpInfo("slice", "row", _IDENTITY), r)


def _broadcasts_along_rows(shape: tuple[int, ...], out_shape: tuple[int, ...], r: int) -> bool:
    """A tensor of `shape` broadcast against an output of `out_shape` (rows at `r`) adds
    the same values to every row."""
    aligned = r - (len(out_shape) - len(shape))
    return aligned < 0 or shape[aligned] == 1


def _layout_of(
    node: fx.Node,
    modules: dict[str, nn.Module],
    values: RecordedValues,
    done: dict[str, NodeLayout],
) -> NodeLayout:
    if node.op == "placeholder":
        return NodeLayout("row", OpInfo("input", "row", _IDENTITY), 2)
    if node.op in ("get_attr", "output"):
        return NodeLayout("tail", classify(node, modules))
    if values.is_value(node.name):
        return NodeLayout(
            "meta", OpInfo(str(getattr(node.target, "__name__", node.target)), "tail")
        )
    tensors = [
        a.name for a in node.all_input_nodes if a.op != "get_attr" and done[a.name].role != "meta"
    ]
    kind = _kind(node, modules)
    if any(done[n].role == "tail" for n in tensors):
        return NodeLayout("tail", OpInfo(kind, "tail"))
    rows = [n for n in tensors if done[n].role == "row"]
    if not rows:
        return NodeLayout("global", OpInfo(kind, "global"))
    x = rows[0]
    r = done[x].row_dim
    in_shape = values.shapes[x] or ()
    red = _reduction(node, modules, len(in_shape))
    if red is not None:
        reduce, dims, keepdim = red
        if r not in dims:
            shift = 0 if keepdim else sum(1 for d in dims if d < r)
            return NodeLayout("row", OpInfo(reduce, "row", _IDENTITY), r - shift)
        if len(tensors) != 1:
            return NodeLayout("tail", OpInfo(_kind(node, modules), "tail"))
        count = math.prod(in_shape[d] for d in dims)
        sync = SyncInfo(reduce, dims, keepdim, count)
        return NodeLayout("sync", OpInfo(_kind(node, modules), "sync"), r, sync)
    if len(rows) == 1:
        rule = _layout_rule(node, modules, values, x, r)
        if rule is not None:
            return rule if _globals_broadcast(node, values, done, rule) else _as_tail(rule)
    info = classify(node, modules)
    if info.role == "tail":
        return NodeLayout("tail", info)
    out_shape = values.shapes[node.name] or ()
    if info.rowmap is not None and info.rowmap.kind != "identity":
        ok = r == 2 and len(in_shape) == 4 and all(done[n].row_dim == 2 for n in rows)
        return NodeLayout("row", info, 2) if ok else NodeLayout("tail", info)
    if values.kinds.get(node.name) != "tensor" or not out_shape:
        return NodeLayout("tail", info)
    r_out = r + (len(out_shape) - len(in_shape))
    for n in rows:
        shape = values.shapes[n] or ()
        r_n = done[n].row_dim + (len(out_shape) - len(shape))
        if r_n != r_out or shape[done[n].row_dim] != out_shape[r_out]:
            return NodeLayout("tail", info)  # rows in another place, or broadcast along rows
    layout = NodeLayout("row", info, r_out)
    return layout if _globals_broadcast(node, values, done, layout) else NodeLayout("tail", info)


def _kind(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """The op tables' name for the node's op (its target's name for an op they lack)."""
    try:
        return classify(node, modules).kind
    except ManipleError:
        return str(getattr(node.target, "__name__", node.target))


def _as_tail(layout: NodeLayout) -> NodeLayout:
    return NodeLayout("tail", OpInfo(layout.info.kind, "tail"))


def _globals_broadcast(
    node: fx.Node, values: RecordedValues, done: dict[str, NodeLayout], layout: NodeLayout
) -> bool:
    """Every global or constant tensor the node reads gives each row the same values."""
    if layout.role != "row" or layout.info.kind in ("getitem", "slice"):
        return True
    out_shape = values.shapes[node.name]
    if out_shape is None:
        return True
    for a in node.all_input_nodes:
        role = "const" if a.op == "get_attr" else done[a.name].role
        if role in ("const", "global", "sync"):
            shape = values.shapes.get(a.name)
            if shape and not _broadcasts_along_rows(shape, out_shape, layout.row_dim):
                return False
    return True


def node_layouts(
    gm: fx.GraphModule, modules: dict[str, nn.Module], values: RecordedValues
) -> dict[str, NodeLayout]:
    """Every node's layout, in graph order; see the module docstring."""
    done: dict[str, NodeLayout] = {}
    for node in gm.graph.nodes:
        done[node.name] = _layout_of(node, modules, values, done)
    _settle_syncs(gm, done)
    return done


def _settle_syncs(gm: fx.GraphModule, done: dict[str, NodeLayout]) -> None:
    """Keep as sync points and globals only what flows back into rows; the rest is tail."""
    used: set[str] = set()
    stack = [
        a.name
        for node in gm.graph.nodes
        if done[node.name].role == "row"
        for a in node.all_input_nodes
        if done[a.name].role in ("global", "sync")
    ]
    by_name = {n.name: n for n in gm.graph.nodes}
    while stack:
        name = stack.pop()
        if name in used:
            continue
        used.add(name)
        stack.extend(
            a.name for a in by_name[name].all_input_nodes if done[a.name].role in ("global", "sync")
        )
    for name, layout in done.items():
        if layout.role in ("global", "sync") and name not in used:
            done[name] = NodeLayout("tail", OpInfo(layout.info.kind, "tail"))
