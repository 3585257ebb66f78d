"""Layer graph: torch.fx capture, units of the spatial part, the tail, and halo math."""

from maniple.graph.capture import capture
from maniple.graph.halo import (
    HaloPlan,
    NodeBand,
    alpha,
    check_band,
    halo,
    input_alpha,
    rows_needed,
    span_nodes,
)
from maniple.graph.ops import OpInfo, UnsupportedOpError, Window, register_op
from maniple.graph.rowmap import RowMap
from maniple.graph.types import LayerGraph, LayerNode, TraceError, Unit
from maniple.graph.units import NoSpatialPartError

__all__ = [
    "HaloPlan",
    "LayerGraph",
    "LayerNode",
    "NoSpatialPartError",
    "NodeBand",
    "OpInfo",
    "RowMap",
    "TraceError",
    "Unit",
    "UnsupportedOpError",
    "Window",
    "alpha",
    "capture",
    "check_band",
    "halo",
    "input_alpha",
    "register_op",
    "rows_needed",
    "span_nodes",
]
