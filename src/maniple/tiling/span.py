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
from maniple.graph import LayerGraph, NodeBand, capture, halo
from maniple.graph.ops import Window

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

    @property
    def output_name(self) -> str:
        return self.graph.units[self.last].output

    def __call__(self, x_band: torch.Tensor) -> torch.Tensor:
        """Rows [a, b) of the last unit's output from input rows `self.input_rows`."""
        lo, hi = self.input_rows
        if x_band.dim() != 4 or x_band.shape[2] != hi - lo:
            raise ManipleError(
                f"span {self.first}..{self.last} band {self.out_rows} needs input rows "
                f"[{lo}, {hi}) ({hi - lo} rows) as an (N, C, H, W) tensor, got shape "
                f"{tuple(x_band.shape)}"
            )
        env: dict[str, tuple[torch.Tensor, int]] = {self.plan.input_name: (x_band, lo)}
        self.rows_computed = {}
        for name, step in self._steps:
            out, start = step(env)
            env[name] = (out, start)
            self.rows_computed[name] = (start, start + out.shape[2])
        out, start = env[self.output_name]
        return out[:, :, self.out_rows[0] - start : self.out_rows[1] - start]

    def _compile(
        self, name: str, band: NodeBand
    ) -> tuple[str, Callable[[dict[str, tuple[torch.Tensor, int]]], tuple[torch.Tensor, int]]]:
        node = self.graph.node(name)
        fx_node = self.graph.fx_node(name)
        inputs = node.inputs

        def sliced(env: dict[str, tuple[torch.Tensor, int]], i: int) -> torch.Tensor:
            t, off = env[inputs[i]]
            lo, hi = band.in_rows[i]
            return t[:, :, lo - off : hi - off]

        rowmap = node.rowmap
        assert rowmap is not None
        if band.out_rows == (0, node.height) and all(
            self.plan.rows_of(inp) == (0, self.graph.node(inp).height) for inp in inputs
        ):
            # The whole map from whole inputs: the op itself, so one band is bit for bit.
            whole = self._generic_call(fx_node)
            return name, lambda env: (whole({inp: env[inp][0] for inp in inputs}), 0)
        if rowmap.kind == "window":
            assert node.window is not None
            window_fn = self._window_fn(fx_node, node.window, band)
            return name, lambda env: (window_fn(sliced(env, 0)), band.out_rows[0])
        call = self._generic_call(fx_node)
        if rowmap.kind in ("upsample", "shuffle"):
            f = rowmap.factor
            start = band.in_rows[0][0] * f

            def resample(env: dict[str, tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, int]:
                y = call({inputs[0]: sliced(env, 0)})
                a, b = band.out_rows
                return y[:, :, a - start : b - start], a

            return name, resample
        return name, lambda env: (
            call({inp: sliced(env, i) for i, inp in enumerate(inputs)}),
            band.out_rows[0],
        )

    def _generic_call(self, fx_node: fx.Node) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        """Call the node's own op with its tensor arguments replaced by band tensors."""
        gm = self.graph.module

        def resolve(values: dict[str, torch.Tensor]) -> tuple[tuple[Any, ...], dict[str, Any]]:
            def arg(n: fx.Node) -> Any:
                if n.op == "get_attr":
                    return _fetch_attr(gm, str(n.target))
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
