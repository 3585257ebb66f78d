"""The layer graph's types: nodes, units and the graph itself, at the bottom of `graph/`.

Capture builds them, unit finding and the halo math read them; keeping the types apart
lets each of those import the types without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from torch import fx

from maniple.errors import ManipleError
from maniple.graph.ops import Window
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
