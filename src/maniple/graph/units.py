"""Find the spatial part, its units, and the tail of a captured network.

A *cut point* is a place in the node order where a single tensor is live: everything after
it depends on the network input only through that tensor. Fused groups may begin and end
only at cut points, so units are the spans between them: a conv with its batch norm and
activation, a pooling layer, a ResNet block, an Inception module, a DenseNet layer. Spans
that hold no conv or pooling op (a lone activation after a residual add) join the unit
before them, so every unit does real row work.
"""

from __future__ import annotations

from maniple.errors import ManipleError
from maniple.graph.types import LayerNode, Unit

_ANCHOR_ROWMAPS = {"window", "upsample", "unshuffle", "shuffle"}
_TUPLE_KINDS = {"chunk", "split"}  # row-local ops whose output is a tuple of maps


class NoSpatialPartError(ManipleError):
    """The network has nothing maniple can split by rows."""


def _cut_positions(nodes: list[LayerNode]) -> list[int]:
    """Positions p where exactly one tensor (node p's output) is live after node p."""
    pos = {n.name: n.index for n in nodes}
    last_use: dict[str, int] = {}
    for n in nodes:
        for inp in n.inputs:
            last_use[inp] = max(last_use.get(inp, -1), n.index)
    live: set[str] = set()
    cuts: list[int] = []
    for n in nodes:
        if n.op in ("get_attr", "output"):
            continue
        for inp in n.inputs:
            if last_use.get(inp) == n.index:
                live.discard(inp)
        if n.name in last_use:
            live.add(n.name)
        if live == {n.name} and _is_map(n):
            cuts.append(pos[n.name])
    return cuts


def _is_map(n: LayerNode) -> bool:
    """Units begin and end at (N, C, H, W) maps of rows: a permuted or reshaped tensor
    inside a block, or a global value, is no place to cut."""
    return (
        n.role == "row"
        and n.row_dim == 2
        and n.kind not in _TUPLE_KINDS
        and n.out_shape is not None
        and len(n.out_shape) == 4
    )


def _first_tail_position(nodes: list[LayerNode]) -> int:
    for n in nodes:
        if n.op == "placeholder" or n.op == "get_attr" or n.role == "meta":
            continue
        if n.role == "tail":
            return n.index
    return len(nodes)


def _is_anchor(node: LayerNode) -> bool:
    return node.rowmap is not None and node.rowmap.kind in _ANCHOR_ROWMAPS


def find_units(nodes: list[LayerNode], name: str) -> tuple[list[Unit], list[LayerNode]]:
    """Split the node list into units of the spatial part and the tail."""

    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ManipleError(
            f"{name!r} takes {len(placeholders)} inputs; maniple splits networks with exactly "
            "one image input (N, C, H, W)"
        )
    first_tail = _first_tail_position(nodes)
    cuts = [c for c in _cut_positions(nodes) if c < first_tail]
    if not cuts or cuts[0] != placeholders[0].index:
        cuts = [placeholders[0].index, *cuts]
    # Segments (c_k, c_{k+1}]: merge those without a window op into the one before.
    segments: list[list[LayerNode]] = []
    for lo, hi in zip(cuts, cuts[1:]):
        seg = [n for n in nodes[lo + 1 : hi + 1] if n.op != "get_attr" and n.role != "meta"]
        if segments and not any(_is_anchor(n) for n in seg):
            segments[-1].extend(seg)
        else:
            segments.append(seg)
    if segments and not any(_is_anchor(n) for n in segments[0]) and len(segments) > 1:
        segments[1] = segments[0] + segments[1]
        segments.pop(0)
    if not segments or not any(_is_anchor(n) for n in segments[0]):
        culprit = nodes[first_tail] if first_tail < len(nodes) else None
        where = (
            f"; the first op that is not row-local is {culprit.name!r} ({culprit.kind}) in "
            f"module {culprit.module_path!r}"
            if culprit is not None
            else ""
        )
        raise NoSpatialPartError(
            f"{name!r} has no spatial part: no conv or pooling layer can be split by rows "
            f"before the tail begins{where}. maniple needs a network that starts with "
            "row-local layers (conv, pooling, activations) on an (N, C, H, W) input"
        )
    by_name = {n.name: n for n in nodes}
    units: list[Unit] = []
    prev_out = placeholders[0].name
    for seg in segments:
        out = seg[-1]
        anchors = [n for n in seg if _is_anchor(n)]
        single = len(anchors) == 1 and all(
            a.rowmap is not None and a.rowmap.kind == "identity" for a in seg if a is not anchors[0]
        )
        kind = anchors[0].kind if single else "block"
        unit_name = anchors[0].module_path if single else _common_prefix(seg)
        units.append(
            Unit(
                index=len(units),
                name=unit_name,
                kind=kind,
                input=prev_out,
                output=out.name,
                nodes=tuple(n.name for n in seg),
                in_shape=by_name[prev_out].out_shape or (),
                out_shape=out.out_shape or (),
                macs=sum(n.macs for n in seg),
                out_bytes=out.out_bytes,
            )
        )
        prev_out = out.name
    in_units = {name for u in units for name in u.nodes}
    tail = [
        n
        for n in nodes
        if n.op not in ("placeholder", "get_attr", "output")
        and n.role != "meta"
        and n.name not in in_units
    ]
    return units, tail


def _common_prefix(seg: list[LayerNode]) -> str:
    paths = [n.module_path.split(".") for n in seg if n.module_path != "<top>"]
    if not paths:
        return seg[0].name
    prefix: list[str] = []
    for parts in zip(*paths):
        if all(p == parts[0] for p in parts):
            prefix.append(parts[0])
        else:
            break
    return ".".join(prefix) if prefix else seg[0].name
