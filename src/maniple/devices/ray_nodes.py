"""Ray's node records read as plain data: which nodes are alive, a node's one-line summary,
the one node a selector names, whether a device's worker fits it, and one device per node
CPU and GPU.

Why apart from ray_backend: everything here takes the dicts that `ray.nodes()` returns and
never Ray itself (ray_backend fetches the list and stays the one module that imports ray),
so the selector rules and their error messages read, and can be tested, without a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from maniple.devices.names import DeviceSpec
from maniple.errors import ManipleError

Node = dict[str, Any]
"""One entry of `ray.nodes()`: NodeID, Alive, NodeManagerAddress, Resources, Labels, …"""

BUILTIN_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory", "accelerator_type"}
"""Resources Ray gives every node: not a name for one node."""

_HEAD = "node:__internal_head__"


def live_nodes(nodes: Iterable[Node]) -> list[Node]:
    """The nodes that are alive, in Ray's order."""
    return [n for n in nodes if n.get("Alive")]


def node_summary(node: Node) -> str:
    """`IP [head] (id …, resources […], labels {…})`, for error messages."""
    resources = node["Resources"]
    custom = sorted(
        k for k in resources if not k.startswith("node:") and k not in BUILTIN_RESOURCES
    )
    labels = {k: v for k, v in node.get("Labels", {}).items() if not k.startswith("ray.io/")}
    head = " head" if _HEAD in resources else ""
    return (
        f"{node['NodeManagerAddress']}{head} (id {node['NodeID'][:12]}…, resources "
        f"{custom or '-'}, labels {labels or '-'})"
    )


def node_matches(node: Node, selector: str) -> bool:
    """Whether `selector` names `node`: its IP, node id (or a prefix of at least 8
    characters), node name, hostname, a custom resource it holds, a label value, or 'head'."""
    if selector == "head":
        return _HEAD in node["Resources"]
    if len(selector) >= 8 and node["NodeID"].startswith(selector):
        return True
    names = (node["NodeManagerAddress"], node.get("NodeName"), node.get("NodeManagerHostname"))
    return (
        selector in names
        or (selector in node["Resources"] and selector not in BUILTIN_RESOURCES)
        or selector in node.get("Labels", {}).values()
    )


def pick_node(nodes: list[Node], selector: str) -> Node:
    """The one node of `nodes` (the live ones) that `selector` names; errors list the
    nodes."""
    hits = [n for n in nodes if node_matches(n, selector)]
    listing = "; ".join(node_summary(n) for n in nodes)
    if not hits:
        raise ManipleError(
            f"no live Ray node matches {selector!r}. Nodes: {listing}. Name a node by IP, "
            "node id, a custom resource (ray start --resources='{\"board1\": 1}') or a label"
        )
    if len(hits) > 1:
        raise ManipleError(
            f"Ray node selector {selector!r} matches {len(hits)} nodes: "
            f"{'; '.join(node_summary(n) for n in hits)}. Use a node id or a custom resource"
        )
    return hits[0]


def node_devices(nodes: list[Node]) -> list[DeviceSpec]:
    """One ray device per node's CPU and per GPU; a node is named by its IP, or by its id's
    first 12 characters where several nodes share the IP."""
    specs = []
    ips = [n["NodeManagerAddress"] for n in nodes]
    for n in nodes:
        selector = (
            n["NodeManagerAddress"] if ips.count(n["NodeManagerAddress"]) == 1 else n["NodeID"][:12]
        )
        specs.append(DeviceSpec("ray", node=selector, target="cpu"))
        for g in range(int(n["Resources"].get("GPU", 0))):
            specs.append(DeviceSpec("ray", node=selector, target=f"cuda:{g}"))
    return specs


_NO_GPU_FIX = {
    True: "maniple's private local Ray has no GPUs (a GPU of this machine is the local device "
    "'cuda:N', without Ray); for a GPU on a Ray node, start a cluster with "
    "`RAY_AUTH_MODE=token ray start --head --num-gpus=N` and name it in the cluster file "
    "(ray: auto, or ray: HOST:PORT)",
    False: "name a node that has one (`maniple devices --ray ADDRESS` lists every node's "
    "devices), or start this node with `ray start --num-gpus=N`",
}


def check_fits(node: Node, device: str, cpus: float, target: str, *, private: bool) -> None:
    """Refuse a worker that asks `node` for more CPUs or GPUs than it has at all, or for a GPU
    index it lacks: Ray would never schedule it (ActorUnschedulableError, or a wait until the
    start timeout). `private`: the node is maniple's own local Ray."""
    resources = node["Resources"]
    gpus, have_cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    where = f"Ray node {node_summary(node)}"
    if target.startswith("cuda"):
        index = int(target.partition(":")[2] or 0)
        if index >= gpus:
            raise ManipleError(
                f"device {device!r} asks for GPU {target}, but {where} has {gpus:g} GPU(s)"
                f"{f' (cuda:0 to cuda:{int(gpus) - 1})' if gpus >= 1 else ''}. "
                + _NO_GPU_FIX[private and gpus < 1]
            )
    if cpus > have_cpus:
        raise ManipleError(
            f"device {device!r} asks for {cpus:g} CPU(s) (its threads), but {where} has "
            f"{have_cpus:g}; give it threads <= {have_cpus:g}, or name a node with more CPUs"
        )


def unschedulable_error(device: str, reason: str, nodes: list[Node]) -> ManipleError:
    """The error for a worker Ray gave up scheduling (`reason`, Ray's own words): the node
    it was bound to is gone, or lacks what the worker asks for."""
    listing = "; ".join(node_summary(n) for n in nodes) or "none"
    return ManipleError(
        f"device {device!r} cannot be placed on its Ray node: {reason.strip()} Live nodes: "
        f"{listing}. Name a live node that has the CPUs and GPUs it asks for (`ray status` "
        "shows each node's resources), or drop the device"
    )
