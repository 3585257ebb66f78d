"""Capture any nn.Module with torch.fx into maniple's layer graph.

The layer graph is the one place the profiler, the planners and the runtime ask about a
network: its nodes with kind, window features, shapes and MACs; the *spatial part* that can
be split by rows; the *tail* that runs whole; and the *units* (spans between cut points
where a single tensor is live) that fused groups are made of.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from maniple.errors import ManipleError
from maniple.graph.ops import OpInfo, Window, classify, module_path
from maniple.graph.rowmap import RowMap


class TraceError(ManipleError):
    """torch.fx could not trace the module."""


@dataclass(frozen=True)
class LayerNode:
    """One fx node with what maniple knows about it."""

    index: int
    name: str
    op: str
    target: str
    kind: str
    role: str
    inputs: tuple[str, ...]
    module_path: str
    out_shape: tuple[int, ...] | None
    macs: int
    out_bytes: int
    rowmap: RowMap | None = None
    window: Window | None = None

    @property
    def height(self) -> int:
        """Rows of this node's output (dim 2), for 4-D outputs."""
        assert self.out_shape is not None and len(self.out_shape) == 4, self.name
        return self.out_shape[2]


@dataclass(frozen=True)
class Unit:
    """A span of nodes between two cut points: what Legion fuses into groups.

    `input` is the single live tensor before the unit, `output` the one after it. `kernel`,
    `stride` and `padding` are the unit's effective row features as the halo math sees them
    (for a single conv they are the conv's own; for a residual block, its receptive field).
    """

    index: int
    name: str
    kind: str
    input: str
    output: str
    nodes: tuple[str, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    macs: int
    out_bytes: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0


@dataclass(eq=False)
class LayerGraph:
    """A traced network: nodes, units of the spatial part, and the tail."""

    module: fx.GraphModule
    input_shape: tuple[int, int, int]
    nodes: list[LayerNode]
    units: list[Unit]
    tail: list[LayerNode]
    name: str = "model"
    _by_name: dict[str, LayerNode] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {n.name: n for n in self.nodes}

    def node(self, name: str) -> LayerNode:
        return self._by_name[name]

    @property
    def spatial_output(self) -> str:
        """Name of the node whose output ends the spatial part."""
        return self.units[-1].output

    @property
    def macs(self) -> int:
        return sum(n.macs for n in self.nodes)

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def unit_range_check(self, first: int, last: int) -> None:
        """Raise a clear error unless 0 <= first <= last < number of units."""
        n = len(self.units)
        if not (0 <= first <= last < n):
            raise ManipleError(
                f"unit span {first}..{last} is outside the spatial part of {self.name!r}, "
                f"which has units 0..{n - 1}; pick first <= last within that range"
            )

    @cached_property
    def spatial_module(self) -> fx.GraphModule:
        """GraphModule from the network input to the spatial part's output."""
        return _sub_module(self.module, None, self.spatial_output)

    @cached_property
    def tail_module(self) -> fx.GraphModule:
        """GraphModule from the spatial part's output to the network output."""
        return _sub_module(self.module, self.spatial_output, None)

    def fx_node(self, name: str) -> fx.Node:
        return self._fx_nodes[name]

    @cached_property
    def _fx_nodes(self) -> dict[str, fx.Node]:
        return {n.name: n for n in self.module.graph.nodes}


def _sub_module(gm: fx.GraphModule, start: str | None, end: str | None) -> fx.GraphModule:
    """Copy the nodes of `gm` from `start`'s output (exclusive) to `end` (inclusive)."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    started = start is None
    for node in gm.graph.nodes:
        if not started:
            if node.name == start:
                env[node] = graph.placeholder("x")
                started = True
            elif node.op == "get_attr":
                env[node] = graph.node_copy(node, lambda n: env[n])
            continue
        if node.op == "output":
            if end is None:
                graph.node_copy(node, lambda n: env[n])
            break
        env[node] = graph.node_copy(node, lambda n: env[n])
        if end is not None and node.name == end:
            graph.output(env[node])
            break
    return fx.GraphModule(gm, graph)


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
    from maniple.graph.units import find_units  # units need the nodes built above

    units, tail = find_units(nodes, graph_name)
    graph = LayerGraph(gm, tuple(int(s) for s in input_shape), nodes, units, tail, graph_name)
    graph.units[:] = [_with_row_features(graph, u) for u in graph.units]
    return graph


def _with_row_features(graph: LayerGraph, unit: Unit) -> Unit:
    """Fill a unit's kernel/stride/padding: the op's own for a single window op, else the
    effective ones of the whole block as the halo math sees them (middle output row)."""
    from dataclasses import replace

    from maniple.graph.halo import halo

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
