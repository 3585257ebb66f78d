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

from maniple.errors import ManipleError
from maniple.graph.halo import halo
from maniple.graph.layout import NodeLayout, node_layouts
from maniple.graph.ops import module_path
from maniple.graph.types import LayerGraph, LayerNode, TraceError, Unit
from maniple.graph.units import find_units
from maniple.graph.values import RecordedValues, record_values

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


def _tensor_inputs(node: fx.Node, layouts: dict[str, NodeLayout]) -> tuple[str, ...]:
    """The node's tensor inputs: not constants, not shape values (a shape read's value is
    fixed at capture, so it keeps no tensor alive)."""
    if layouts[node.name].role == "meta":
        return ()
    names: list[str] = []
    for a in node.all_input_nodes:
        if a.op != "get_attr" and layouts[a.name].role != "meta" and a.name not in names:
            names.append(a.name)
    return tuple(names)


def _record(gm: fx.GraphModule, sample: torch.Tensor, module: nn.Module) -> RecordedValues:
    try:
        return record_values(gm, sample)
    except Exception as exc:  # the model's own forward failed at this input
        raise ManipleError(
            f"{type(module).__name__} fails on a (1, {', '.join(map(str, sample.shape[1:]))}) "
            f"input: {type(exc).__name__}: {exc}. Give the input shape the model was built for"
        ) from exc


def capture(
    module: nn.Module, input_shape: tuple[int, int, int], name: str | None = None
) -> LayerGraph:
    """Trace `module` and build its layer graph for a (C, H, W) input.

    Shapes (and the values of shape reads and checks) come from one forward pass of a
    batch-1 zero tensor on the CPU in float32.
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
        values = _record(gm, sample, module)
    layouts = node_layouts(gm, modules, values)
    nodes: list[LayerNode] = []
    for i, node in enumerate(gm.graph.nodes):
        lay = layouts[node.name]
        info = lay.info
        out_shape = values.shapes.get(node.name)
        out_bytes = values.nbytes.get(node.name, 0)
        nodes.append(
            LayerNode(
                index=i,
                name=node.name,
                op=node.op,
                target=str(node.target) if node.op != "call_function" else _fn_name(node.target),
                kind=info.kind,
                role=lay.role,
                inputs=_tensor_inputs(node, layouts),
                module_path=module_path(node),
                out_shape=out_shape,
                macs=values.macs.get(node.name, 0),
                out_bytes=out_bytes,
                rowmap=info.rowmap,
                window=info.window,
                row_dim=lay.row_dim,
                sync=lay.sync,
            )
        )
    graph_name = name or type(module).__name__
    units, tail = find_units(nodes, graph_name)
    static = {n.name: values.static[n.name] for n in nodes if n.role == "meta"}
    graph = LayerGraph(
        gm, tuple(int(s) for s in input_shape), nodes, units, tail, graph_name, static
    )
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
