"""Plain-data descriptions of a layer graph, for `maniple inspect` and `maniple models`."""

from __future__ import annotations

from typing import Any

from maniple.graph.types import LayerGraph, Unit


def unit_features(unit: Unit) -> str:
    """The seed's layer-feature notation, e.g. 'K(3) P(1) S(1)'."""
    return f"K({unit.kernel}) P({unit.padding}) S({unit.stride})"


def stop_note(graph: LayerGraph) -> str:
    """Where the spatial part stops and how much of the work is before it, in words."""
    share = f"{100 * graph.spatial_macs_fraction:.1f}% of the MACs"
    stop = graph.spatial_stop
    if stop is None:
        return f"the whole network splits by rows ({share})"
    return (
        f"the spatial part stops at {stop.name!r} ({stop.kind} in module "
        f"{stop.module_path!r}); {share} are before it, the rest runs whole on one device"
    )


def describe_graph(graph: LayerGraph) -> dict[str, Any]:
    """JSON-ready description: units with kind and row features, the tail, the input,
    where the spatial part stops and its sync points."""
    unit_of = {name: u.index for u in graph.units for name in u.nodes}
    stop = graph.spatial_stop
    return {
        "network": graph.name,
        "input_shape": list(graph.input_shape),
        "macs": graph.macs,
        "flops": 2 * graph.macs,
        "params": graph.params,
        "spatial_macs_fraction": graph.spatial_macs_fraction,
        "spatial_stop": (
            None
            if stop is None
            else {"name": stop.name, "kind": stop.kind, "module": stop.module_path}
        ),
        "sync_points": [
            {
                "name": name,
                "kind": graph.node(name).kind,
                "module": graph.node(name).module_path,
                "unit": unit_of[name],
            }
            for name in graph.sync_points
        ],
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
