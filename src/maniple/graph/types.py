"""The layer graph's types: nodes, units and the graph itself, at the bottom of `graph/`.

Capture builds them, unit finding and the halo math read them; keeping the types apart
lets each of those import the types without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import torch
from torch import fx

from maniple.errors import ManipleError
from maniple.graph.ops import Window
from maniple.graph.rowmap import RowMap


class TraceError(ManipleError):
    """torch.fx could not trace the module."""


Reduce = Literal["sum", "mean", "max"]


@dataclass(frozen=True)
class SyncInfo:
    """A reduction over rows inside the spatial part (squeeze-and-excitation's global pool).

    Each device reduces only the rows of its input it owns, the partial results (a few
    numbers per channel) are combined across devices, and every device then continues with
    the same values. `dims` are the reduced dims of the input (the row dim among them),
    `count` the elements each output value reduces over in the whole map (for the mean).
    """

    reduce: Reduce
    dims: tuple[int, ...]
    keepdim: bool
    count: int


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
    row_dim: int = 2
    """The dim of this node's output that holds the map's rows: 2 for NCHW, 1 after a
    permute to NHWC (ConvNeXt's LayerNorm and Linear run there)."""
    sync: SyncInfo | None = None

    @property
    def height(self) -> int:
        """Rows of this node's output (along `row_dim`)."""
        assert self.out_shape is not None and len(self.out_shape) > self.row_dim, self.name
        return self.out_shape[self.row_dim]


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
    static_values: dict[str, Any] = field(default_factory=dict, repr=False)
    """Values of the nodes that compute no tensor (shape reads, shape checks, int
    arithmetic), taken at capture from the static shapes (role 'meta')."""
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
    def spatial_macs(self) -> int:
        return sum(u.macs for u in self.units)

    @property
    def spatial_macs_fraction(self) -> float:
        """MACs of the spatial part over all MACs (1.0 for a network with no MACs)."""
        total = self.macs
        return self.spatial_macs / total if total else 1.0

    @property
    def sync_points(self) -> tuple[str, ...]:
        """Nodes of the spatial part where devices combine their partial reductions."""
        in_units = {name for u in self.units for name in u.nodes}
        return tuple(n.name for n in self.nodes if n.role == "sync" and n.name in in_units)

    @property
    def spatial_stop(self) -> LayerNode | None:
        """The first node of the tail that computes (where the spatial part stops)."""
        for n in self.tail:
            if n.role == "tail":
                return n
        return None

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
        return _sub_module(self.module, None, self.spatial_output, self.static_values)

    @cached_property
    def tail_module(self) -> fx.GraphModule:
        """GraphModule from the spatial part's output to the network output."""
        return _sub_module(self.module, self.spatial_output, None, self.static_values)

    def run_tail(self, x: torch.Tensor) -> torch.Tensor:
        """The tail on this graph's own weights (the coordinator's, float32): a spatial
        output that devices computed in bf16 or fp16 is widened first."""
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return self.tail_module(x)

    def fx_node(self, name: str) -> fx.Node:
        return self._fx_nodes[name]

    @cached_property
    def _fx_nodes(self) -> dict[str, fx.Node]:
        return {n.name: n for n in self.module.graph.nodes}


def _sub_module(
    gm: fx.GraphModule, start: str | None, end: str | None, static: dict[str, Any] | None = None
) -> fx.GraphModule:
    """Copy the nodes of `gm` from `start`'s output (exclusive) to `end` (inclusive).

    Shape reads before `start` that later nodes use become their static values (`static`).
    """
    static = static or {}
    graph = fx.Graph()
    env: dict[fx.Node, Any] = {}
    started = start is None
    for node in gm.graph.nodes:
        if not started:
            if node.name == start:
                env[node] = graph.placeholder("x")
                started = True
            elif node.op == "get_attr":
                env[node] = graph.node_copy(node, lambda n: env[n])
            elif node.name in static:
                env[node] = static[node.name]  # a shape read before the cut: its value
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
