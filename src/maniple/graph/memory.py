"""How much memory a network needs for a forward pass, known before anything runs.

Why: a batch of 10^9 images or a 3x100000x100000 input used to be found out by the
allocator (a traceback for tens of TB after seconds of profiling, or the OOM killer) and
a model copy per emulated board by the host running out of memory minutes later. The
figures here come from shapes alone: the network is traced with torch.fx and its shapes
are propagated on *meta* tensors (shape and dtype, no storage), so estimating an input of
any size costs the same few milliseconds and allocates nothing. A captured `LayerGraph`
already holds every node's output size, so it is estimated for free (`estimate_graph`).

The activation figure is the peak of one inference pass per image: walking the nodes in
execution order, a node's output is alive from the node until its last consumer (fx's
generated code drops each value after its last use, and no gradients are kept). Outputs
that alias their input (views such as flatten/reshape, in-place ReLU, eval-mode dropout)
add nothing. Operator scratch space (e.g. a convolution's workspace) is not counted, so
the figure is a floor: a check that refuses when the floor exceeds what is available
never refuses a run that would have fit.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import chain
from typing import Any

import torch
from torch import fx, nn

from maniple.errors import ManipleError
from maniple.graph.types import LayerGraph

MIB = 2**20
GIB = 2**30

_VIEW_FUNCTIONS = {
    torch.flatten,
    torch.reshape,
    torch.squeeze,
    torch.unsqueeze,
    torch.transpose,
    torch.permute,
    torch.chunk,
    torch.split,
    torch.narrow,
    operator.getitem,
    getattr,
}
_VIEW_METHODS = {
    "view",
    "reshape",
    "flatten",
    "squeeze",
    "unsqueeze",
    "transpose",
    "permute",
    "expand",
    "chunk",
    "split",
    "narrow",
    "size",
    "dim",
    "t",
}
_IDENTITY_MODULES = (nn.Flatten, nn.Identity, nn.Dropout, nn.Dropout2d, nn.Unflatten)


@dataclass(frozen=True)
class MemoryEstimate:
    """A network's memory at one input shape: weights once, the rest per image (bytes).

    peak_bytes: the most bytes of tensors alive at once during one image's forward pass,
    the input included (a floor; see the module docstring).
    """

    network: str
    input_shape: tuple[int, int, int]
    param_bytes: int
    input_bytes: int
    output_bytes: int
    peak_bytes: int

    def forward_bytes(self, images: int) -> int:
        """A forward pass over `images` images at once, weights not included."""
        return images * self.peak_bytes

    def describe(self) -> str:
        """`vgg-16 at 3x224x224 (weights 528 MiB, 24.5 MiB per image in flight)`."""
        shape = "x".join(map(str, self.input_shape))
        return (
            f"{self.network} at {shape} (weights {fmt_bytes(self.param_bytes)}, "
            f"{fmt_bytes(self.peak_bytes)} per image in flight)"
        )


def fmt_bytes(n: float) -> str:
    """Bytes for a message, in the largest binary unit that keeps the number >= 1."""
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", GIB), ("MiB", MIB)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"
    return f"{n / 2**10:.3g} KiB" if n >= 2**10 else f"{int(n)} B"


def estimate_graph(graph: LayerGraph) -> MemoryEstimate:
    """The estimate of an already captured graph, from the output sizes it recorded."""
    sizes = {n.name: n.out_bytes for n in graph.nodes}
    param_bytes = sum(_nbytes(p) for p in _unique(graph.module.parameters()))
    return _estimate(graph.module, sizes, graph.name, graph.input_shape, param_bytes)


def estimate_module(
    module: nn.Module, input_shape: tuple[int, int, int], name: str | None = None
) -> MemoryEstimate:
    """The estimate of `module` at a batch-1 (C, H, W) input, without allocating it.

    The module is traced, and its weights swapped for meta tensors in a copy (the real
    weights are neither copied nor touched), so shapes propagate with no storage at all.
    Raises whatever tracing or propagation raise (TraceError for untraceable modules).
    """
    # the same tracing (under the same process-wide lock) and errors as capture
    from maniple.graph.capture import _TRACE_LOCK, _trace

    with _TRACE_LOCK:
        gm = _trace(module.eval())
    param_bytes = sum(_nbytes(p) for p in _unique(gm.parameters()))
    meta_gm = _meta_copy(gm)
    sizes: dict[str, int] = {}
    _SizeRecorder(meta_gm, sizes).run(torch.empty((1, *input_shape), device="meta"))
    shape = (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))
    return _estimate(meta_gm, sizes, name or type(module).__name__, shape, param_bytes)


def estimate_builder(
    builder: Callable[[], nn.Module], input_shape: tuple[int, int, int], name: str
) -> MemoryEstimate:
    """The estimate of the module `builder()` makes, built on the meta device (no weights
    are allocated or initialised, so even VGG-16 costs milliseconds)."""
    with torch.device("meta"):
        module = builder()
    return estimate_module(module, input_shape, name)


def estimate_for_capture(
    module: nn.Module, shape: tuple[int, int, int], name: str
) -> MemoryEstimate | None:
    """`estimate_module` before a capture. ManipleErrors (an untraceable module) pass
    through, and a shape error (an input too small for a pooling layer) becomes one,
    since capture would meet the same on real tensors; None where meta tensors alone
    cannot run an op (the checks then count no model)."""
    try:
        return estimate_module(module, shape, name)
    except ManipleError:
        raise
    except RuntimeError as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "meta" in why.lower():
            return None
        raise ManipleError(
            f"{name} cannot run on a {'x'.join(map(str, shape))} input: {why}; "
            "give a larger --input-shape (e.g. the size the network was built for)"
        ) from None
    except Exception:  # noqa: BLE001 - no estimate, not an error
        return None


class _SizeRecorder(fx.Interpreter):
    """Runs a graph (on meta tensors) and records each node's output bytes."""

    def __init__(self, gm: fx.GraphModule, sizes: dict[str, int]) -> None:
        super().__init__(gm)
        self.sizes = sizes

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.sizes[n.name] = _value_bytes(out)
        return out


def _value_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return _nbytes(value)
    if isinstance(value, list | tuple):
        return sum(_value_bytes(v) for v in value)
    return 0


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _unique(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    seen: dict[int, torch.Tensor] = {}
    for t in tensors:
        seen.setdefault(id(t), t)
    return list(seen.values())


def _meta_copy(gm: fx.GraphModule) -> fx.GraphModule:
    """A deep copy of `gm` whose parameters and buffers are meta tensors of the same
    shape: deepcopy's memo hands out the meta twin wherever a real tensor would be copied."""
    memo: dict[int, Any] = {}
    for t in chain(gm.parameters(), gm.buffers()):
        twin = torch.empty_like(t, device="meta")
        memo[id(t)] = (
            nn.Parameter(twin, requires_grad=False) if isinstance(t, nn.Parameter) else twin
        )
    return copy.deepcopy(gm, memo)


def _estimate(
    gm: fx.GraphModule,
    sizes: dict[str, int],
    name: str,
    input_shape: tuple[int, int, int],
    param_bytes: int,
) -> MemoryEstimate:
    nodes = list(gm.graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    outputs = [n for n in nodes if n.op == "output"]
    input_bytes = sum(sizes.get(n.name, 0) for n in inputs)
    output_bytes = sum(
        sizes.get(a.name, 0) for o in outputs for a in o.all_input_nodes if a.op != "get_attr"
    )
    return MemoryEstimate(
        name,
        input_shape,
        param_bytes,
        input_bytes,
        output_bytes,
        peak_live_bytes(gm, sizes),
    )


def peak_live_bytes(gm: fx.GraphModule, sizes: dict[str, int]) -> int:
    """The most output bytes alive at once when `gm`'s nodes run in order (see the module
    docstring); `sizes` holds each node's output bytes by name."""
    modules = dict(gm.named_modules())
    nodes = list(gm.graph.nodes)
    root: dict[str, str] = {}  # node -> the node whose storage it shares
    last_use: dict[str, int] = {}
    for i, n in enumerate(nodes):
        args = [a for a in n.all_input_nodes if a.op != "get_attr"]
        base = _alias_base(n, modules, args)
        root[n.name] = root[base.name] if base is not None else n.name
        for a in args:
            last_use[root[a.name]] = i
        last_use.setdefault(root[n.name], i)
    live = peak = 0
    frees: dict[int, list[str]] = {}
    for name, i in last_use.items():
        frees.setdefault(i, []).append(name)
    for i, n in enumerate(nodes):
        if n.op != "get_attr" and root[n.name] == n.name:
            live += sizes.get(n.name, 0)
        peak = max(peak, live)
        for name in frees.get(i, ()):
            live -= sizes.get(name, 0)
    return peak


def _alias_base(n: fx.Node, modules: dict[str, nn.Module], args: list[fx.Node]) -> fx.Node | None:
    """The input whose storage `n`'s output shares (views, in-place ops), else None."""
    if not args:
        return None
    first = args[0]
    if n.op == "call_module":
        m = modules.get(str(n.target))
        if isinstance(m, _IDENTITY_MODULES) or getattr(m, "inplace", False) is True:
            return first
    elif n.op == "call_function":
        if n.target in _VIEW_FUNCTIONS or n.kwargs.get("inplace") is True:
            return first
    elif n.op == "call_method":
        target = str(n.target)
        if target in _VIEW_METHODS or (target.endswith("_") and not target.startswith("_")):
            return first
    return None
