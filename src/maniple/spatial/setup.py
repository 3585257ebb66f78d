"""One set-up for every spatial run: the network, the devices, their weights, warm boards.

`maniple spatial`, `maniple bench legion` and `maniple demo` all start the same way, and
used to do it in three copies that disagreed (weights shipped or not, boards warmed or
not, the link override applied or not). Here it is once:

- `prepare` resolves the network (zoo name or `module:callable`), captures its graph and
  builds the cluster spec from `--devices` / `--emulate` with the link override applied;
  before capturing it refuses an input or a board count this host cannot hold
  (`maniple.devices.host_limits`, from the network's shapes alone);
- `open_devices` opens them with the model loaded on each and warms every board up
  (two untimed whole-network runs, not counted: fresh boards run slower than settled ones);
- `open_cache` gives the profile store's cache of spatial profiles for those devices.

On a testbed (`testbed=`, from `maniple.cluster.testbed.attach`) the boards are the
testbed's, at its link and dilation, each opened on its own Ray node behind its shaped
link (the boards' clocks then sleep for compute only).


Weights: a zoo network is rebuilt from its seed on every worker, bit for bit the same as
here, so nothing is shipped; any other module's weights are shipped once to each worker,
so that every device computes with exactly the coordinator's weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from maniple import zoo
from maniple.cluster import ClusterSpec, open_cluster, parse_shorthand, with_link
from maniple.cluster.testbed import Testbed
from maniple.devices import DeviceHandle, ModelSpec, host_limits
from maniple.errors import ManipleError
from maniple.graph import LayerGraph, capture
from maniple.graph.memory import estimate_for_capture, estimate_graph
from maniple.precision import DEFAULT_MODE, ExecMode, check_tf32_agree
from maniple.spatial.cache import CostCache, ProfileKey
from maniple.spatial.measured import fast_forward, reference_input
from maniple.spatial.profiler import whole_spatial_span
from maniple.store import StoreFile, device_key

WARM_UP_RUNS = 2


@dataclass(frozen=True)
class SpatialSetup:
    """A network ready to split and the devices to split it over (not yet opened)."""

    network: str
    module: nn.Module
    graph: LayerGraph
    spec: ClusterSpec
    model: ModelSpec
    testbed: Testbed | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        shape = self.graph.input_shape
        return (int(shape[0]), int(shape[1]), int(shape[2]))


def prepare(
    network: str,
    *,
    devices: str | None = None,
    emulate: str | None = None,
    link_mbps: float | None = 100.0,
    dilation: float | None = None,
    input_shape: tuple[int, int, int] | None = None,
    timeout_s: float | None = None,
    mode: ExecMode = DEFAULT_MODE,
    testbed: Testbed | None = None,
) -> SpatialSetup:
    """Resolve `network`, capture it and describe the devices; see the module docstring.
    `timeout_s` bounds how long a silent device is waited for (None: the default); every
    device computes in `mode` (emulated boards stay strict fp32)."""
    if testbed is not None:
        if devices:
            raise ManipleError("--testbed runs the testbed's boards only; leave --devices out")
        testbed.check_run(emulate, link_mbps, dilation)
        emulate, link_mbps, dilation = (
            testbed.plan.boards_text, testbed.plan.link_mbps, testbed.plan.dilation
        )  # fmt: skip
    module, shape, name = zoo.resolve(network, input_shape)
    timeout = {} if timeout_s is None else {"timeout_s": timeout_s}
    spec = with_link(
        parse_shorthand(devices, emulate, None, dilation=dilation, **timeout), link_mbps
    ).with_mode(mode)
    if testbed is not None:
        spec = dataclasses.replace(spec, ray_address=testbed.address)
    check_tf32_agree((d.name, d.exec_mode) for d in spec.devices if d.is_local and d.kind == "cuda")
    # limits before capture runs the network here and before any board starts
    memory = estimate_for_capture(module, shape, name)
    host_limits.check_forward(memory)
    host_limits.check_boards(spec.devices, memory, ray_address=spec.ray_address)
    graph = _spatial_graph(module, shape, name)
    model = ModelSpec(network, input_shape=shape)
    if network not in zoo.names():
        model = model.with_weights(module)
    return SpatialSetup(network, module, graph, spec, model, testbed)


MIN_SPATIAL_FRACTION = 0.5
"""A spatial split leaving more than half the MACs on one device cannot pay for itself."""


def _spatial_graph(module: nn.Module, shape: tuple[int, int, int], name: str) -> LayerGraph:
    """The captured graph, refused with the way out when little of it splits by rows."""
    from maniple.graph import NoSpatialPartError
    from maniple.graph.describe import stop_note

    advice = (
        f"split the batch instead: maniple infer --network {name} (each device takes whole images)"
    )
    try:
        graph = capture(module, shape, name)
    except NoSpatialPartError as exc:
        raise ManipleError(f"{exc}; {advice}") from None
    if graph.spatial_macs_fraction < MIN_SPATIAL_FRACTION:
        raise ManipleError(
            f"{name!r} does not split by rows: {stop_note(graph)}, at most "
            f"{100 * MIN_SPATIAL_FRACTION:.0f}% at least is needed to gain; {advice}"
        )
    return graph


def warm_up(
    handles: Sequence[DeviceHandle],
    graph: LayerGraph,
    x: torch.Tensor,
    runs: int = WARM_UP_RUNS,
) -> None:
    """Run the whole spatial part `runs` times on every device, untimed and not counted.

    Why: a fresh emulated board's first runs are slower than its settled ones (cold caches
    and allocator, and its clock keeps the fastest run of each piece of work), so a
    benchmark whose first board set meets fresh boards would time that set against
    boards still settling. Runs in fast-forward, all devices at once.
    """
    last, full, band = whole_spatial_span(graph, x)
    with fast_forward(handles):
        for _ in range(runs):
            calls = [h.submit_span(0, last, full, band, link=False, solo=True) for h in handles]
            for call in calls:
                call.result()


@contextmanager
def open_devices(setup: SpatialSetup, *, warm: bool = True) -> Iterator[list[DeviceHandle]]:
    """The devices of `setup`, open with the model loaded, warmed up; closed on exit."""
    memory = estimate_graph(setup.graph)
    tb = setup.testbed
    with open_cluster(
        setup.spec,
        setup.model,
        input_shape=setup.input_shape,
        memory=memory,
        nodes=tb.nodes() if tb else None,
        links=tb.links() if tb else None,
    ) as cluster:
        handles = list(cluster)
        if warm:
            warm_up(handles, setup.graph, reference_input(setup.graph))
        yield handles


def open_cache(
    store: StoreFile,
    handles: Sequence[DeviceHandle],
    graph: LayerGraph,
    *,
    reprofile: bool = False,
    profile_repeats: int = 1,
) -> CostCache:
    """The cache of spatial profiles for exactly these devices (in this order) and graph."""
    key = ProfileKey.of(graph, [device_key(h) for h in handles], profile_repeats=profile_repeats)
    return CostCache(store, key, reprofile=reprofile)
