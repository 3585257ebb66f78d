"""The peer runtime with two workers sharing one GPU (`--devices cuda:0#0,cuda:0#1`).

Why on one GPU: issue #18 asks for the peer runtime on two GPUs; where only one is at hand,
two workers on it (each its own thread and model, told apart by the `#K` suffix) still run
the peer runtime's whole path, so its exactness and its bytes can be checked; its speed
cannot (both workers share the GPU: benchmarks/gpu_peer_one_gpu.py records what was run).

GPU tests (marker `gpu`, skipped without CUDA): VGG-16, ResNet-50 and a segmentation-style
network (the benchmark's `seg_fcn`: the zoo has none, and testing the network that is
measured keeps the two in step) at 512x512, fp32 and bf16:
- a fixed split run on both runtimes equals the single worker's output within the
  precision's tolerance, and the peer runtime moves only the input and the last bands
  through the coordinator (less than the star runtime for the same plan), the rest
  worker to worker;
- Legion's peer search (`LegionSession.measure(runtime="peer")`, what `maniple spatial
  --runtime peer` runs) plans and runs on the two workers within tolerance.
CPU tests (no marker, a few seconds): the `#K` names, and the same peer search on two
workers of the host CPU (`cpu#0,cpu#1`) for the tiny network, through the CLI's set-up.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import torch

from maniple.cluster import parse_shorthand
from maniple.devices import parse_device
from maniple.devices.handles import DeviceHandle
from maniple.devices.tiny import TINY_NETWORK
from maniple.errors import ManipleError
from maniple.precision import TOLERANCES, ExecMode
from maniple.spatial.measured import reference_input
from maniple.spatial.peer_setup import run_plan
from maniple.spatial.schedule_peer import coordinator_bytes, device_bytes, lower_peer
from maniple.spatial.session import LegionSession
from maniple.spatial.setup import SpatialSetup, open_devices, prepare
from maniple.tiling.verify import relative_error

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from gpu_peer_one_gpu import SEG_NETWORK, mode_plans, warm_one_by_one  # noqa: E402

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SHAPE = (3, 512, 512)
TWO_ON_ONE_GPU = "cuda:0#0,cuda:0#1"
NETWORKS = ("vgg-16", "resnet-50", SEG_NETWORK)
PRECISIONS = ("fp32", "bf16")
CASES = [(n, p) for n in NETWORKS for p in PRECISIONS]
Opened = tuple[SpatialSetup, list[DeviceHandle]]


def _open(stack: ExitStack, network: str, devices: str, shape: tuple, precision: str) -> Opened:
    """The CLI's set-up (`prepare`, `open_devices`), its workers warmed one at a time (see
    `warm_one_by_one`: warming them at once can race torch.fx's capture)."""
    setup = prepare(network, devices=devices, input_shape=shape, mode=ExecMode(precision))
    handles = stack.enter_context(open_devices(setup, warm=False))
    warm_one_by_one(handles, setup.graph, reference_input(setup.graph))
    return setup, handles


@pytest.fixture(scope="module")
def two_on_one_gpu() -> Iterator[Callable[[str, str], Opened]]:
    """Two workers on cuda:0 holding `network` at `precision`, opened once per module."""
    opened: dict[tuple[str, str], Opened] = {}
    with ExitStack() as stack:

        def get(network: str, precision: str) -> Opened:
            key = (network, precision)
            if key not in opened:
                opened[key] = _open(stack, network, TWO_ON_ONE_GPU, SHAPE, precision)
            return opened[key]

        yield get


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize(("network", "precision"), CASES)
def test_peer_on_one_gpu_equals_the_single_worker(
    two_on_one_gpu: Callable[[str, str], Opened], network: str, precision: str
) -> None:
    setup, handles = two_on_one_gpu(network, precision)
    graph, by_name = setup.graph, {h.name: h for h in handles}
    assert sorted(by_name) == ["cuda:0#0", "cuda:0#1"]
    assert {h.spec.torch_device for h in handles} == {"cuda:0"}
    x = reference_input(graph)
    plans = mode_plans(graph, tuple(by_name))
    runs = {mode: run_plan(plan, by_name, graph, x) for mode, plan in plans.items()}
    single, star, peer = runs["single"], runs["star"], runs["peer"]
    tol = TOLERANCES[precision]
    assert relative_error(peer.output.float(), single.output.float()) <= tol
    assert relative_error(star.output.float(), single.output.float()) <= tol
    if precision == "fp32":  # one worker on the GPU is the host's strict fp32
        with torch.no_grad():
            assert relative_error(single.output, graph.module(x)) <= tol
    schedule = lower_peer(plans["peer"], graph)
    assert len(schedule.groups) > 1 and peer.runtime == "peer"
    assert peer.bytes_through_coordinator == coordinator_bytes(schedule)
    assert peer.bytes_through_coordinator < star.bytes_through_coordinator
    assert peer.bytes_between_devices == device_bytes(schedule) > 0
    assert star.bytes_between_devices == 0


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize(("network", "precision"), CASES)
def test_legion_peer_search_on_one_gpu(
    two_on_one_gpu: Callable[[str, str], Opened], network: str, precision: str
) -> None:
    setup, handles = two_on_one_gpu(network, precision)
    session = LegionSession(handles, setup.graph, repeats=1, compress="off")
    result = session.measure("legion", runtime="peer", min_gain=None)
    assert result.plan.runtime == "peer"
    assert set(result.plan.devices) == {"cuda:0#0", "cuda:0#1"}
    assert result.max_rel_error <= result.tolerance == TOLERANCES[precision]
    if len(result.plan.flc) > 1:  # halo rows went worker to worker
        assert result.bytes_between_devices > 0


# -- no GPU needed ------------------------------------------------------------------------------
def test_two_workers_of_one_device_are_named_apart() -> None:
    a, b = parse_device("cuda:0#0"), parse_device("gpu0#1")
    assert (a.name, b.name) == ("cuda:0#0", "cuda:0#1")
    assert a.torch_device == b.torch_device == "cuda:0" and a.is_local
    assert parse_device(b.name) == b  # the name reads back to the same spec
    assert parse_device("CPU#2").name == "cpu#2"
    names = [d.name for d in parse_shorthand("cuda:0#0,cuda:0#1").devices]
    assert names == ["cuda:0#0", "cuda:0#1"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("cuda:0#", "NAME#K"),
        ("cuda:0#x", "NAME#K"),
        ("cuda:0#1#2", "NAME#K"),
        ("tpu#1", "'tpu' before #K"),
    ],
)
def test_bad_worker_numbers_say_why(text: str, fragment: str) -> None:
    with pytest.raises(ManipleError) as info:
        parse_device(text)
    assert fragment in str(info.value) and repr(text) in str(info.value)


def test_a_device_given_twice_is_told_how_to_mean_two_workers() -> None:
    with pytest.raises(ManipleError) as info:
        parse_shorthand("cuda:0,cuda:0")
    assert "listed twice" in str(info.value) and "cuda:0#0,cuda:0#1" in str(info.value)


def test_peer_search_on_two_cpu_workers() -> None:
    """`maniple spatial --devices cpu#0,cpu#1 --runtime peer` in-process: the same path as
    the GPU tests, on the host CPU, for the tiny network (a few seconds)."""
    with ExitStack() as stack:
        setup, handles = _open(stack, TINY_NETWORK, "cpu#0,cpu#1", (3, 64, 64), "fp32")
        session = LegionSession(handles, setup.graph, repeats=1, compress="off")
        result = session.measure("legion", runtime="peer", min_gain=None)
    assert result.plan.runtime == "peer" and result.plan.devices == ("cpu#0", "cpu#1")
    assert result.max_rel_error <= TOLERANCES["fp32"]
