"""Limits checked before work starts (issue #15): boards against cores, memory and the
process limit; batch and input shape against memory; absurd input sizes refused as they
are read. The host's figures are injected, so every test says the same on any machine,
and every refusal is asserted to come before any process starts or any tensor of the
work is allocated.
"""

from __future__ import annotations

import sys
import time

import pytest
from torch import nn

from maniple import zoo
from maniple.cli import main
from maniple.devices import ModelSpec, host_limits
from maniple.devices.host_limits import (
    MAX_BOARDS_PER_CORE,
    RAY_BASE,
    HostResources,
    board_bytes,
    check_boards,
    check_forward,
)
from maniple.devices.names import parse_device
from maniple.errors import ManipleError
from maniple.graph import capture
from maniple.graph.memory import GIB, MIB, estimate_builder, estimate_graph, estimate_module

SMALL = "squeezenet_v1.1"  # cheap to build: the CLI tests resolve it for real
BIG_HOST = HostResources(cores=2, available_bytes=24 * GIB, max_tasks=None)


def host(**changes: object) -> HostResources:
    return HostResources(**{**BIG_HOST.__dict__, **changes})  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def ray_not_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """Count Ray's own processes as if no test had started Ray in this process yet."""
    monkeypatch.setattr(host_limits, "_starts_ray", lambda address: address in (None, "local"))


@pytest.fixture
def fixed_host(monkeypatch: pytest.MonkeyPatch) -> list[HostResources]:
    """The host every check sees: 2 cores, 24 GiB available, no process limit (edit [0])."""
    figures = [BIG_HOST]
    monkeypatch.setattr(host_limits, "host_resources", lambda: figures[0])
    return figures


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a refused command gets as far as starting Ray or profiling."""
    import maniple.batch.infer  # noqa: F401 - loads the module to patch
    from maniple.devices import ray_backend

    infer_module = sys.modules["maniple.batch.infer"]  # maniple.batch.infer is also a function

    def started(*_: object, **__: object) -> None:
        raise AssertionError("work started before the limits were checked")

    monkeypatch.setattr(ray_backend, "ensure_ray", started)
    monkeypatch.setattr(infer_module, "profiled_cluster", started)


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    """(exit code, stdout + stderr with line wrapping undone) of the real entry point."""
    monkeypatch.setattr(sys, "argv", ["maniple", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out = capsys.readouterr()
    return info.value.code, " ".join((out.out + out.err).split())


def boards(n: int) -> list:
    return [parse_device("emu:firefly-rk3399")] * n


# --- the estimate -----------------------------------------------------------------------


def test_estimate_from_shapes_equals_the_captured_graph() -> None:
    shape = zoo.input_shape(SMALL)
    ahead = estimate_builder(zoo.entry(SMALL).builder, shape, SMALL)
    module = zoo.build(SMALL)
    captured = estimate_graph(capture(module, shape, SMALL))
    assert ahead == captured == estimate_module(module, shape, SMALL)
    assert ahead.param_bytes == 4 * sum(p.numel() for p in module.parameters())
    assert ahead.input_bytes == 4 * 3 * 224 * 224 and ahead.output_bytes == 4 * 1000


def test_peak_counts_live_tensors_once_and_views_not_at_all() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1), nn.Flatten()
    )
    e = estimate_module(net, (1, 8, 8))
    # conv1: input 64 + out 256 values; relu in place; conv2: 256 + 128; flatten is a view
    assert e.peak_bytes == 4 * (256 + 128) and e.output_bytes == 4 * 128


def test_a_huge_input_is_estimated_without_allocating() -> None:
    estimate_builder(zoo.entry("vgg-16").builder, (3, 32, 32), "vgg-16")  # warm meta kernels
    start = time.perf_counter()
    e = estimate_builder(zoo.entry("vgg-16").builder, (3, 60_000, 60_000), "vgg-16")
    assert time.perf_counter() - start < 2.0
    assert e.peak_bytes > 1.5 * 2**40  # two 64-channel maps of 60000^2 floats


# --- emulated boards --------------------------------------------------------------------


def test_boards_per_core() -> None:
    check_boards(boards(2 * MAX_BOARDS_PER_CORE), host=BIG_HOST)
    with pytest.raises(ManipleError, match=r"100 emulated boards on 2 cores .* at most 16"):
        check_boards(boards(100), host=BIG_HOST)


def test_boards_against_memory_name_the_need_and_the_most_that_fit() -> None:
    memory = estimate_builder(zoo.entry("vgg-16").builder, (3, 224, 224), "vgg-16")
    small = host(cores=64, available_bytes=10 * GIB)
    fit = (small.usable_bytes - RAY_BASE) // board_bytes(memory)
    check_boards(boards(fit), memory, host=small)
    with pytest.raises(ManipleError) as info:
        check_boards(boards(fit + 1), memory, host=small)
    text = str(info.value)
    assert f"{fit + 1} emulated boards need about" in text and "10 GiB available" in text
    assert f"use at most {fit} boards" in text and "350 MiB per worker process" in text


def test_boards_against_the_process_limit() -> None:
    limited = host(cores=64, available_bytes=2**50, max_tasks=4096, tasks_in_use=1000)
    with pytest.raises(
        ManipleError, match=r"RLIMIT_NPROC.* 4,096 with 1,000 in use; use at most 91"
    ):
        check_boards(boards(100), host=limited)


def test_profiling_counts_each_board_twice() -> None:
    tight = host(cores=64, available_bytes=4 * GIB)
    check_boards(boards(8), host=tight)
    with pytest.raises(ManipleError, match="16 workers .2 per board while profiling"):
        check_boards(boards(8), workers_per_board=2, host=tight)


def test_open_cluster_refuses_before_any_process(fixed_host: list, no_work: None) -> None:
    from maniple.cluster import open_cluster, parse_shorthand

    spec = parse_shorthand(emulate="100xfirefly-rk3399")
    with pytest.raises(ManipleError, match="100 emulated boards"):
        open_cluster(spec, ModelSpec(SMALL))


def test_spatial_with_100_boards_exits_2_at_once(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fixed_host: list,
    no_work: None,
) -> None:
    start = time.perf_counter()
    code, out = run_main(
        monkeypatch, capsys, "spatial", "--network", SMALL, "--emulate", "100xfirefly-rk3399"
    )
    assert code == 2 and "Traceback" not in out, out
    assert "100 emulated boards on 2 cores" in out and "use at most 16 boards" in out
    assert time.perf_counter() - start < 10  # resolving the network, no profiling


# --- batch and input shape --------------------------------------------------------------


def test_infer_batch_of_a_billion_fails_fast(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fixed_host: list,
    no_work: None,
) -> None:
    start = time.perf_counter()
    code, out = run_main(
        monkeypatch,
        capsys,
        "infer",
        "--network",
        "vgg-16",
        "--batch",
        "1000000000",
        "--device",
        "cpu",
    )
    assert time.perf_counter() - start < 1.0
    assert code == 2 and "Traceback" not in out, out
    assert "1,000,000,000 images of 3x224x224 need 548 TiB" in out
    most = BIG_HOST.usable_bytes // (4 * 3 * 224 * 224)
    assert "24 GiB available" in out and f"use --batch {most} at most" in out


def test_infer_batch_checked_against_activations_on_cpu(fixed_host: list, no_work: None) -> None:
    from maniple.batch.infer import InferOptions, infer
    from maniple.cluster import parse_shorthand

    fixed_host[0] = host(available_bytes=2 * GIB)
    options = InferOptions(SMALL, batch=1000)
    with pytest.raises(
        ManipleError, match=r"--batch 1000 of squeezenet_v1.1 .* use --batch \d+ at most"
    ):
        infer(parse_shorthand("cpu"), None, options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "command",
    [
        ["spatial", "--network", SMALL, "--emulate", "2xfirefly-rk3399"],
        ["verify", SMALL],
        ["inspect", SMALL],
        ["infer", "--network", SMALL, "--batch", "1", "--device", "cpu"],
    ],
)
@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ("3,100000,100000", "at most 65,536 per side and 268,435,456 values (1 GiB) per image"),
        ("3,9000,9000", "needs at least"),  # under the cap, over the (injected) 4 GiB
    ],
)
def test_huge_input_shape_exits_2_before_anything_runs(
    command: list[str],
    shape: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fixed_host: list,
    no_work: None,
) -> None:
    fixed_host[0] = host(available_bytes=4 * GIB)
    from torch.fx.passes.shape_prop import ShapeProp  # what capture runs the network with

    monkeypatch.setattr(
        ShapeProp, "propagate", lambda *_: pytest.fail("capture ran the network on the input")
    )
    code, out = run_main(monkeypatch, capsys, *command, "--input-shape", shape)
    assert code == 2 and "Traceback" not in out, out
    assert message in out and ("4 GiB available" in out or "65,536" in out), out


def test_input_size_caps_from_python_too() -> None:
    with pytest.raises(ManipleError, match="65,536 per side"):
        zoo.resolve(SMALL, (3, 70_000, 1))
    with pytest.raises(ManipleError, match="268,435,456 values"):
        zoo.parse_input_shape("3,10000,10000")
    assert zoo.parse_input_shape("3,9000,9000") == (3, 9000, 9000)


def test_a_normal_forward_pass_passes() -> None:
    memory = estimate_builder(zoo.entry("vgg-16").builder, (3, 224, 224), "vgg-16")
    check_forward(memory, host=BIG_HOST)
    with pytest.raises(ManipleError, match=r"use a smaller --input-shape, e.g. 3,\d+,\d+"):
        check_forward(memory, host=host(available_bytes=20 * MIB))


@pytest.mark.parametrize("option", ["--devices", "--trials"])
def test_verify_counts_are_bounded(
    option: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_main(monkeypatch, capsys, "verify", SMALL, option, str(10**12))
    assert code == 2 and "Traceback" not in out and f"{option} {10**12}: verify takes 1 to" in out


def test_the_address_space_limit_bounds_this_process() -> None:
    memory = estimate_builder(zoo.entry("vgg-16").builder, (3, 224, 224), "vgg-16")
    capped = host(address_room=20 * MIB)
    check_boards(boards(3), memory, host=capped)  # new processes: not this one's limit
    with pytest.raises(ManipleError, match=r"may map only 20 MiB more \(RLIMIT_AS"):
        check_forward(memory, host=capped)


def test_verify_device_is_checked_before_the_network_is_built(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_main(monkeypatch, capsys, "verify", SMALL, "--device", "cpu,cpu")
    assert code == 2 and "Traceback" not in out and "bad device name 'cpu,cpu'" in out


def test_an_input_too_small_for_the_network_is_a_user_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["inspect", "maniple.devices.tiny:tiny_cnn", "--input-shape", "3,2,2"]
    code, out = run_main(monkeypatch, capsys, *argv)
    assert code == 2 and "Traceback" not in out and "cannot run on a 3x2x2 input" in out
