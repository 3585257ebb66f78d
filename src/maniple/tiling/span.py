"""Run a span of units on a band of rows and get exactly the rows the whole model gives.

A `SpanProgram` is built once per (span, band) from the halo plan and then called on the
input band: it takes exactly the input rows the halo math names, and returns exactly rows
[a, b) of the span's last unit. Each window op pads only at the true borders of the map,
with its own semantics: zeros for conv, -inf for max pooling, and for average pooling the
divisor the unsplit op would use (with or without count_include_pad, ceil_mode included).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from maniple.errors import ManipleError
from maniple.graph import LayerGraph, LayerNode, NodeBand, capture, halo
from maniple.graph.ops import Window
from maniple.tiling.span_run import INPUT_KEY, Env, SpanRun, combine_runs, narrow_rows
from maniple.tiling.sync import empty_partial, partial

__all__ = ["SpanProgram", "SpanRun", "combine_runs", "graph_of", "narrow_rows"]

Rows = tuple[int, int]


class _AvgDivisors:
    """Per-output-position divisors of an average pool, taken from the unsplit op itself."""

    def __init__(self, window: Window, in_hw: tuple[int, int]) -> None:
        ones = torch.ones(1, 1, *in_hw, dtype=torch.float64)
        kw = dict(
            kernel_size=window.kernel,
            stride=window.stride,
            padding=window.padding,
            ceil_mode=window.ceil_mode,
            count_include_pad=window.count_include_pad,
        )
        if window.divisor_override:
            sums = F.avg_pool2d(ones, divisor_override=1, **kw)
            self.map = torch.full_like(sums, float(window.divisor_override))
        else:
            sums = F.avg_pool2d(ones, divisor_override=1, **kw)
            self.map = sums / F.avg_pool2d(ones, **kw)
        self.map = self.map.round()


class SpanProgram:
    """Units first..last of a network, run on rows [a, b) of the last unit's output.

    Build it once and call it many times: it holds the halo plan and nothing per call.
    `model` is a captured `LayerGraph`, or an nn.Module with its (C, H, W) `input_shape`.
    """

    def __init__(
        self,
        model: LayerGraph | nn.Module,
        input_shape: tuple[int, int, int] | None,
        first_unit: int,
        last_unit: int,
        out_rows: Rows,
    ) -> None:
        self.graph = model if isinstance(model, LayerGraph) else graph_of(model, input_shape)
        self.plan = halo(self.graph, first_unit, last_unit, out_rows)
        self.first, self.last, self.out_rows = first_unit, last_unit, self.plan.out_rows
        self.input_rows: Rows = self.plan.input_rows
        self.rows_computed: dict[str, Rows] = {}
        self._modules = dict(self.graph.module.named_modules())
        self._steps = [self._compile(name, band) for name, band in self.plan.nodes]
        self.sync_points: tuple[str, ...] = tuple(n for n, kind, _ in self._steps if kind == "sync")
        self._free_after = self._last_uses()

    def _last_uses(self) -> list[tuple[str, ...]]:
        """Per step, the values no later step reads: dropped once it has run, as torch.fx's
        own code does, so the allocator reuses their memory (kept alive, every op of a
        ResNet-50 touched fresh memory and the span ran 1.7x slower than the module)."""
        last: dict[str, int] = {}
        for i, (name, _, _) in enumerate(self._steps):
            for inp in self.graph.node(name).inputs:
                last[inp] = i
        out: list[list[str]] = [[] for _ in self._steps]
        for name, i in last.items():
            if name != self.output_name:
                out[i].append(name)
        return [tuple(names) for names in out]

    def _weights_dtype(self) -> torch.dtype | None:
        """The dtype of the model's weights (a worker may run them in bf16 or fp16)."""
        for p in self.graph.module.parameters():
            if p.is_floating_point():
                return p.dtype
        return None

    @property
    def output_name(self) -> str:
        return self.graph.units[self.last].output

    @property
    def owns_every_row(self) -> bool:
        """The band is the whole map: its own partials are the whole reductions."""
        return self.out_rows == (0, self.graph.units[self.last].out_shape[2])

    def start(self, x_band: torch.Tensor) -> SpanRun:
        """Run up to the first sync point (or to the end); see `SpanRun`."""
        lo, hi = self.input_rows
        if x_band.dim() != 4 or x_band.shape[2] != hi - lo:
            raise ManipleError(
                f"span {self.first}..{self.last} band {self.out_rows} needs input rows "
                f"[{lo}, {hi}) ({hi - lo} rows) as an (N, C, H, W) tensor, got shape "
                f"{tuple(x_band.shape)}"
            )
        self.rows_computed = {}
        dtype = self._weights_dtype()
        if dtype is not None and x_band.is_floating_point() and x_band.dtype != dtype:
            x_band = x_band.to(dtype)  # a band arrives in float32; the span runs in its own
        # INPUT_KEY keeps the input for its dtype, batch and device after the steps have
        # dropped it (the caller holds it anyway)
        return SpanRun(self, {self.plan.input_name: (x_band, lo), INPUT_KEY: (x_band, lo)})

    def __call__(self, x_band: torch.Tensor) -> torch.Tensor:
        """Rows [a, b) of the last unit's output from input rows `self.input_rows`.

        A span with sync points runs this way only on the whole map; a band of it needs
        the other bands' partials (`start`, then `SpanRun.resume`)."""
        if self.sync_points and not self.owns_every_row:
            raise ManipleError(
                f"span {self.first}..{self.last} band {self.out_rows} has "
                f"{len(self.sync_points)} sync point(s) ({', '.join(self.sync_points)}): it "
                "needs the other bands' partial reductions; run it with start() and resume()"
            )
        return self.run_solo(x_band)

    def run_solo(self, x_band: torch.Tensor) -> torch.Tensor:
        """The span with each sync point combined from this band's partial alone: exact on
        the whole map, and on a band the same work (what profiling times)."""
        run = self.start(x_band)
        while run.pending is not None:
            run.resume(run.partial)
        assert run.output is not None
        return run.output

    def _compile(self, name: str, band: NodeBand) -> tuple[str, str, Callable[[Env], Any]]:
        node = self.graph.node(name)
        fx_node = self.graph.fx_node(name)
        inputs = node.inputs
        if node.role == "global":
            call = self._generic_call(fx_node)
            return name, "global", lambda env: call({inp: env[inp][0] for inp in inputs})
        if node.role == "sync":
            return name, "sync", self._sync_step(node, band)
        is_global = [self.graph.node(i).role in ("global", "sync") for i in inputs]
        dims = [self.graph.node(i).row_dim for i in inputs]

        def sliced(env: Env, i: int) -> Any:
            t, off = env[inputs[i]]
            if is_global[i]:
                return t
            lo, hi = band.in_rows[i]
            return narrow_rows(t, dims[i], lo - off, hi - lo)

        rowmap = node.rowmap
        assert rowmap is not None
        if node.kind == "reshape":
            return name, "row", self._reshape_step(node, band, sliced)
        if band.out_rows == (0, node.height) and all(
            g or self.plan.rows_of(inp) == (0, self.graph.node(inp).height)
            for inp, g in zip(inputs, is_global, strict=True)
        ):
            # The whole map from whole inputs: the op itself, so one band is bit for bit.
            whole = self._generic_call(fx_node)
            return name, "row", lambda env: (whole({inp: env[inp][0] for inp in inputs}), 0)
        if rowmap.kind == "window":
            assert node.window is not None
            window_fn = self._window_fn(fx_node, node.window, band)
            return name, "row", lambda env: (window_fn(sliced(env, 0)), band.out_rows[0])
        call = self._generic_call(fx_node)
        if rowmap.kind in ("upsample", "shuffle"):
            f = rowmap.factor
            start = band.in_rows[0][0] * f

            def resample(env: Env) -> tuple[torch.Tensor, int]:
                y = call({inputs[0]: sliced(env, 0)})
                a, b = band.out_rows
                return y[:, :, a - start : b - start], a

            return name, "row", resample
        return (
            name,
            "row",
            lambda env: (
                call({inp: sliced(env, i) for i, inp in enumerate(inputs)}),
                band.out_rows[0],
            ),
        )

    def _reshape_step(
        self, node: LayerNode, band: NodeBand, sliced: Callable[[Env, int], Any]
    ) -> Callable[[Env], tuple[torch.Tensor, int]]:
        """A reshape that keeps the rows a dim of their own: the static output shape with
        this band's rows and batch (sizes the model read from the whole map would not fit)."""
        assert node.out_shape is not None
        shape = list(node.out_shape)
        shape[node.row_dim] = band.out_rows[1] - band.out_rows[0]

        def run(env: Env) -> tuple[torch.Tensor, int]:
            x = sliced(env, 0)
            return x.reshape([x.shape[0], *shape[1:]]), band.out_rows[0]

        return run

    def _sync_step(self, node: LayerNode, band: NodeBand) -> Callable[[Env], Any]:
        """The partial of the rows this band owns (`band.in_rows[0]`) of the sync's input."""
        assert node.sync is not None
        info, x = node.sync, node.inputs[0]
        lo, hi = band.in_rows[0]
        rd = self.graph.node(x).row_dim
        shape = self.graph.node(x).out_shape or ()

        def run(env: Env) -> torch.Tensor:
            if hi <= lo:
                ref = env[INPUT_KEY][0]
                return empty_partial((ref.shape[0], *shape[1:]), info, ref.device)
            t, off = env[x]
            return partial(narrow_rows(t, rd, lo - off, hi - lo), info)

        return run

    def _generic_call(self, fx_node: fx.Node) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        """Call the node's own op with its tensor arguments replaced by band tensors."""
        gm = self.graph.module

        static = self.graph.static_values

        def resolve(values: dict[str, torch.Tensor]) -> tuple[tuple[Any, ...], dict[str, Any]]:
            def arg(n: fx.Node) -> Any:
                if n.op == "get_attr":
                    return _fetch_attr(gm, str(n.target))
                if n.name in static:
                    return static[n.name]
                return values[n.name]

            args = fx.node.map_arg(fx_node.args, arg)
            kwargs = fx.node.map_arg(fx_node.kwargs, arg)
            return args, kwargs  # type: ignore[return-value]

        if fx_node.op == "call_module":
            mod = self._modules[str(fx_node.target)]
            return lambda v: mod(*resolve(v)[0], **resolve(v)[1])
        if fx_node.op == "call_function":
            fn = fx_node.target
            assert callable(fn)

            def call_fn(v: dict[str, torch.Tensor]) -> torch.Tensor:
                args, kwargs = resolve(v)
                return fn(*args, **kwargs)

            return call_fn
        if fx_node.op == "call_method":
            method = str(fx_node.target)

            def call_method(v: dict[str, torch.Tensor]) -> torch.Tensor:
                args, kwargs = resolve(v)
                return getattr(args[0], method)(*args[1:], **kwargs)

            return call_method
        raise AssertionError(f"unexpected fx op {fx_node.op} in a span")

    def _window_fn(
        self, fx_node: fx.Node, w: Window, band: NodeBand
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """The window op on a band: explicit border rows, no row padding in the op itself."""
        pad_top, pad_bottom = band.pad
        pad = (0, 0, pad_top, pad_bottom)
        row0_pad = (0, w.padding[1])
        if w.op == "conv":
            conv = self._modules[str(fx_node.target)]
            assert isinstance(conv, nn.Conv2d)

            def run_conv(x: torch.Tensor) -> torch.Tensor:
                if pad_top or pad_bottom:
                    x = F.pad(x, pad)
                return F.conv2d(
                    x, conv.weight, conv.bias, w.stride, row0_pad, w.dilation, conv.groups
                )

            return run_conv
        if w.op == "max":

            def run_max(x: torch.Tensor) -> torch.Tensor:
                if pad_top or pad_bottom:
                    x = F.pad(x, pad, value=float("-inf"))
                return F.max_pool2d(x, w.kernel, w.stride, row0_pad, w.dilation, w.ceil_mode)

            return run_max
        in_node = self.graph.node(self.graph.node(fx_node.name).inputs[0])
        assert in_node.out_shape is not None
        divisors = self._divisors(fx_node.name, w, (in_node.out_shape[2], in_node.out_shape[3]))
        a, b = band.out_rows

        def run_avg(x: torch.Tensor) -> torch.Tensor:
            if pad_top or pad_bottom:
                x = F.pad(x, pad)
            sums = F.avg_pool2d(
                x,
                w.kernel,
                w.stride,
                row0_pad,
                w.ceil_mode,
                count_include_pad=True,
                divisor_override=1,
            )
            return sums / divisors[:, :, a:b].to(device=x.device, dtype=x.dtype)

        return run_avg

    def _divisors(self, name: str, w: Window, in_hw: tuple[int, int]) -> torch.Tensor:
        cache = _divisor_cache.setdefault(self.graph, {})
        if name not in cache:
            cache[name] = _AvgDivisors(w, in_hw).map
        return cache[name]


_divisor_cache: weakref.WeakKeyDictionary[LayerGraph, dict[str, torch.Tensor]] = (
    weakref.WeakKeyDictionary()
)
_graph_lock = threading.Lock()
_graph_cache: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], LayerGraph]] = (
    weakref.WeakKeyDictionary()
)


def graph_of(module: nn.Module, input_shape: tuple[int, int, int] | None) -> LayerGraph:
    """The module's layer graph, captured once per (module, input shape) and reused."""
    if input_shape is None:
        raise ManipleError("an nn.Module needs its (C, H, W) input_shape to be split by rows")
    key = tuple(int(s) for s in input_shape)
    with _graph_lock:  # devices on threads of one process may ask at the same time
        per_module = _graph_cache.setdefault(module, {})
        if key not in per_module:
            per_module[key] = capture(module, key)  # type: ignore[arg-type]
        return per_module[key]


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
