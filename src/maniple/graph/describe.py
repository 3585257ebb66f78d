"""Plain-data descriptions of a layer graph, for `maniple inspect` and `maniple models`."""

from __future__ import annotations

from typing import Any

from maniple.graph.types import LayerGraph, Unit


def unit_features(unit: Unit) -> str:
    """The seed's layer-feature notation, e.g. 'K(3) P(1) S(1)'."""
    return f"K({unit.kernel}) P({unit.padding}) S({unit.stride})"


def describe_graph(graph: LayerGraph) -> dict[str, Any]:
    """JSON-ready description: units with kind and row features, the tail, the input."""
    return {
        "network": graph.name,
        "input_shape": list(graph.input_shape),
        "macs": graph.macs,
        "flops": 2 * graph.macs,
        "params": graph.params,
        "units": [
            {
                "index": u.index,
                "name": u.name,
                "kind": u.kind,
                "kernel": u.kernel,
                "stride": u.stride,
                "padding": u.padding,
                "features": unit_features(u),
                "in_shape": list(u.in_shape),
                "out_shape": list(u.out_shape),
                "macs": u.macs,
                "flops": 2 * u.macs,
                "out_bytes": u.out_bytes,
                "nodes": list(u.nodes),
            }
            for u in graph.units
        ],
        "tail": [
            {
                "name": n.name,
                "kind": n.kind,
                "module": n.module_path,
                "out_shape": list(n.out_shape) if n.out_shape else None,
                "macs": n.macs,
            }
            for n in graph.tail
        ],
    }
