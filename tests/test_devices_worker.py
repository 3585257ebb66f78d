"""The one Worker, in this process on the CPU, and local device handles (no Ray)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from maniple.devices import CallTiming, ModelSpec, Worker, open_device
from maniple.devices.cpuslots import CpuSlots
from maniple.devices.tiny import TINY_INPUT_SHAPE, TINY_NETWORK, tiny_cnn
from maniple.devices.worker import from_wire, to_wire
from maniple.errors import ManipleError

TINY = ModelSpec(TINY_NETWORK, seed=3, input_shape=TINY_INPUT_SHAPE)


def test_importing_devices_does_not_import_ray() -> None:
    code = (
        "import sys, maniple.devices, maniple.cluster, torch\n"
        "from maniple.devices import open_device, ModelSpec\n"
        "from maniple.devices.tiny import TINY_NETWORK\n"
        "h = open_device('cpu', ModelSpec(TINY_NETWORK, input_shape=(3, 32, 32)))\n"
        "h.run_batch(torch.zeros(1, 3, 32, 32)); h.close()\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_worker_runs_a_batch_and_times_it() -> None:
    worker = Worker("cpu", TINY, threads=1)
    x = torch.randn(4, *TINY_INPUT_SHAPE)
    y, timing = worker.run_batch(x)
    expected = tiny_cnn(seed=3)(x)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    assert isinstance(timing, CallTiming)
    assert timing.op == "batch" and timing.device == "cpu" and timing.pid == os.getpid()
    assert timing.board_ms is None and timing.link_ms == 0.0
    assert 0 < timing.compute_ms <= timing.wall_ms
    assert timing.device_ms == timing.wall_ms
    info = worker.info()
    assert info.threads == 1 and info.network == "tiny_cnn" and info.node_id is None


def test_model_spec_ships_weights_once() -> None:
    module = tiny_cnn(seed=11)
    spec = ModelSpec(TINY_NETWORK, seed=0, input_shape=TINY_INPUT_SHAPE).with_weights(module)
    built = spec.build()
    for a, b in zip(module.state_dict().values(), built.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    bad = ModelSpec(TINY_NETWORK, input_shape=TINY_INPUT_SHAPE, state_dict=b"not a checkpoint")
    with pytest.raises(ManipleError, match="do not load"):
        bad.build()


def test_model_spec_errors() -> None:
    with pytest.raises(ManipleError, match="cannot import model factory"):
        ModelSpec("no_such_pkg.mod:fn", input_shape=(3, 8, 8)).build()
    with pytest.raises(ManipleError, match="input_shape"):
        ModelSpec("x", input_shape=(3, 0, 8))
    with pytest.raises(ManipleError, match="holds no model"):
        Worker("cpu").run_batch(torch.zeros(1, 3, 8, 8))


def test_zoo_model_spec_builds_identically() -> None:
    zoo = pytest.importorskip("maniple.zoo")
    a = ModelSpec("squeezenet_v1.1", seed=5).build()
    b = zoo.build("squeezenet_v1.1", seed=5)
    assert a.input_shape == tuple(zoo.input_shape("squeezenet_v1.1"))
    for p, q in zip(a.module.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_local_handle_runs_on_its_own_thread() -> None:
    with open_device("cpu", TINY, threads=1) as handle:
        x = torch.randn(2, *TINY_INPUT_SHAPE)
        call = handle.submit_batch(x)
        y, timing = call.result()
        assert call.done() and y.shape == (2, 10)
        assert timing.overhead_ms >= 0.0
        assert handle.transfer(1000).link_ms == 0.0
        assert handle.info().device == "cpu"
    with pytest.raises(ManipleError, match="closed"):
        handle.run_batch(x)


def test_local_handle_accepts_a_module() -> None:
    module = tiny_cnn(seed=1)
    with open_device("cpu", module, input_shape=TINY_INPUT_SHAPE) as handle:
        y, _ = handle.run_batch(torch.ones(1, *TINY_INPUT_SHAPE))
    torch.testing.assert_close(y, module(torch.ones(1, *TINY_INPUT_SHAPE)), rtol=0, atol=0)


def test_worker_errors_name_the_device() -> None:
    with open_device("cpu", TINY) as handle:
        with pytest.raises(ManipleError, match="device 'cpu': run_batch failed"):
            handle.run_batch(torch.zeros(1, 5, 32, 32))  # wrong channel count


def test_run_span_matches_the_whole_model() -> None:
    tiling = pytest.importorskip("maniple.tiling")
    pytest.importorskip("maniple.zoo")
    worker = Worker("cpu", ModelSpec("vgg-16", seed=0))
    x = torch.randn(1, 3, 224, 224)
    last = 3
    parts = []
    for rows in ((0, 20), (20, 56)):
        program = tiling.SpanProgram(worker.module, (3, 224, 224), 0, last, out_rows=rows)
        lo, hi = program.input_rows
        band, timing = worker.run_span(0, last, rows, x[:, :, lo:hi])
        assert timing.op == "span" and band.shape[2] == rows[1] - rows[0]
        parts.append(band)
    assert len(worker._spans) == 2  # one cached program per (span, rows, band shape)
    ref_program = tiling.SpanProgram(worker.module, (3, 224, 224), 0, last, out_rows=(0, 56))
    lo, hi = ref_program.input_rows
    with torch.inference_mode():
        ref = ref_program(x[:, :, lo:hi])
    torch.testing.assert_close(torch.cat(parts, dim=2), ref, rtol=1e-5, atol=1e-5)


def test_cpu_slots_let_one_holder_per_slot() -> None:
    order: list[int] = []
    inside: list[int] = []
    overlaps: list[int] = []

    def hold(k: int) -> None:
        # flock is per open file: separate CpuSlots objects exclude each other like processes
        with CpuSlots(count=1).hold():
            inside.append(k)
            if len(inside) != 1:
                overlaps.append(k)
            time.sleep(0.02)
            order.append(k)
            inside.remove(k)

    threads = [threading.Thread(target=hold, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(order) == [0, 1, 2] and not overlaps


def test_worker_for_ray_takes_and_gives_numpy_arrays() -> None:
    """Inside a Ray actor the worker returns numpy arrays (Ray moves them without pickling);
    read-only arrays from Ray's object store are accepted and copied, not written to."""
    worker = Worker("cpu", TINY, threads=1, numpy_out=True)
    x = torch.randn(2, *TINY_INPUT_SHAPE)
    arr = x.numpy().copy()
    arr.setflags(write=False)
    y, _ = worker.run_batch(arr)
    assert isinstance(y, np.ndarray)
    torch.testing.assert_close(from_wire(y), tiny_cnn(seed=3)(x), rtol=0, atol=0)


def test_wire_keeps_dtypes_numpy_lacks_as_tensors() -> None:
    t = torch.ones(2, 3, dtype=torch.bfloat16)
    assert to_wire(t) is t
    a = to_wire(torch.arange(6.0).reshape(2, 3))
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    a.setflags(write=False)
    back = from_wire(a)
    back += 1  # writable: a copy, not the read-only array
    assert a[0, 0] == 0.0
