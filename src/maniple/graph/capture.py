"""Capture any nn.Module with torch.fx into maniple's layer graph.

The layer graph is the one place the profiler, the planners and the runtime ask about a
network: its nodes with kind, window features, shapes and MACs; the *spatial part* that can
be split by rows; the *tail* that runs whole; and the *units* (spans between cut points
where a single tensor is live) that fused groups are made of.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from maniple.errors import ManipleError
from maniple.graph.halo import halo
from maniple.graph.ops import OpInfo, classify, module_path
from maniple.graph.types import LayerGraph, LayerNode, TraceError, Unit
from maniple.graph.units import find_units

# torch.fx patches nn.Module.__call__ for the whole process while it traces, so two threads
# tracing at once (two local devices building their band programs) corrupt each other.
_TRACE_LOCK = threading.Lock()


def _trace(module: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(module)
    except Exception as exc:  # fx raises many kinds; all mean the same to a user
        raise TraceError(
            f"torch.fx could not trace {type(module).__name__}: {type(exc).__name__}: {exc}. "
            "maniple needs an fx-traceable model: remove Python control flow that depends on "
            "tensor values (if/for over tensor data), or wrap such code in a leaf module; "
            "see https://pytorch.org/docs/stable/fx.html#limitations-of-symbolic-tracing"
        ) from exc


def _tensor_inputs(node: fx.Node) -> tuple[str, ...]:
    names: list[str] = []
    for a in node.all_input_nodes:
        if a.op != "get_attr" and a.name not in names:
            names.append(a.name)
    return tuple(names)


def _shape_of(node: fx.Node) -> tuple[tuple[int, ...] | None, int]:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None, 0
    shape = tuple(int(s) for s in meta.shape)
    numel = 1
    for s in shape:
        numel *= s
    return shape, numel * torch.empty((), dtype=meta.dtype).element_size()


def _macs(node: fx.Node, modules: dict[str, nn.Module], out_shape: tuple[int, ...] | None) -> int:
    if node.op != "call_module" or out_shape is None:
        return 0
    m = modules[str(node.target)]
    numel = 1
    for s in out_shape:
        numel *= s
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        return numel * (m.in_channels // m.groups) * kh * kw
    if isinstance(m, nn.Linear):
        return numel * m.in_features
    return 0


def capture(
    module: nn.Module, input_shape: tuple[int, int, int], name: str | None = None
) -> LayerGraph:
    """Trace `module` and build its layer graph for a (C, H, W) input.

    Shapes come from one forward pass of a batch-1 zero tensor on the CPU in float32.
    """
    if len(input_shape) != 3 or any(int(s) <= 0 for s in input_shape):
        raise ManipleError(
            f"input shape must be (C, H, W) with positive sizes, got {tuple(input_shape)}"
        )
    module = module.eval()
    with _TRACE_LOCK:
        gm = _trace(module)
        modules = dict(gm.named_modules())
        sample = torch.zeros(1, *input_shape)
        with torch.no_grad():
            ShapeProp(gm).propagate(sample)
    nodes: list[LayerNode] = []
    for i, node in enumerate(gm.graph.nodes):
        info: OpInfo = classify(node, modules)
        out_shape, out_bytes = _shape_of(node)
        nodes.append(
            LayerNode(
                index=i,
                name=node.name,
                op=node.op,
                target=str(node.target) if node.op != "call_function" else _fn_name(node.target),
                kind=info.kind,
                role=info.role,
                inputs=_tensor_inputs(node),
                module_path=module_path(node),
                out_shape=out_shape,
                macs=_macs(node, modules, out_shape),
                out_bytes=out_bytes,
                rowmap=info.rowmap,
                window=info.window,
            )
        )
    _check_row_local_shapes(nodes)
    graph_name = name or type(module).__name__
    units, tail = find_units(nodes, graph_name)
    graph = LayerGraph(gm, tuple(int(s) for s in input_shape), nodes, units, tail, graph_name)
    graph.units[:] = [_with_row_features(graph, u) for u in graph.units]
    return graph


def _with_row_features(graph: LayerGraph, unit: Unit) -> Unit:
    """Fill a unit's kernel/stride/padding: the op's own for a single window op, else the
    effective ones of the whole block as the halo math sees them (middle output row)."""
    anchors = [graph.node(n).window for n in unit.nodes if graph.node(n).window is not None]
    if unit.kind != "block" and len(anchors) == 1:
        w = anchors[0]
        return replace(unit, kernel=w.kernel[0], stride=w.stride[0], padding=w.padding[0])
    h_in, h_out = unit.in_shape[2], unit.out_shape[2]
    stride = max(1, round(h_in / h_out))
    mid = h_out // 2
    lo, hi = halo(graph, unit.index, unit.index, (mid, mid + 1)).input_rows
    return replace(unit, kernel=hi - lo, stride=stride, padding=max(0, mid * stride - lo))


def _fn_name(target: object) -> str:
    return getattr(target, "__name__", str(target))


def _check_row_local_shapes(nodes: list[LayerNode]) -> None:
    """Demote to tail any 'row' node whose tensors are not 4-D maps of matching height.

    An add of a full-height constant, or a broadcast along rows, is not row-local even if
    the op usually is; the first such node ends the spatial part.
    """
    by_name = {n.name: n for n in nodes}
    for i, n in enumerate(nodes):
        if n.role != "row" or n.op == "placeholder":
            continue
        ok = n.out_shape is not None and len(n.out_shape) == 4
        if ok and n.rowmap is not None and n.rowmap.kind == "identity":
            for inp in n.inputs:
                shape = by_name[inp].out_shape
                if shape is None or len(shape) != 4 or shape[2] not in (1, n.out_shape[2]):
                    ok = False
                elif shape[2] == 1 and n.out_shape[2] != 1:
                    ok = False  # broadcast along rows: each band would need the same row
        if not ok:
            nodes[i] = LayerNode(**{**n.__dict__, "role": "tail"})
