"""A CPU and a GPU of this process compute one batch at the same time (skipped without CUDA)."""

from __future__ import annotations

import os

import pytest
import torch

from maniple.devices import ModelSpec, open_device
from maniple.devices.tiny import TINY_INPUT_SHAPE, TINY_NETWORK

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_cpu_and_gpu_are_busy_at_the_same_time() -> None:
    shape = (3, 224, 224)
    model = ModelSpec(TINY_NETWORK, seed=2, input_shape=shape)
    cpu = open_device("cpu", model, threads=max(1, (os.cpu_count() or 2) - 1))
    gpu = open_device("cuda:0", model)
    try:
        x_cpu = torch.randn(32, *shape)
        x_gpu = torch.randn(512, *shape)
        for handle, x in ((cpu, x_cpu), (gpu, x_gpu)):
            handle.run_batch(x)  # warm-up at these sizes
        # Repeat the GPU's share until the CPU is done, so the intervals can be compared.
        cpu_call = cpu.submit_batch(x_cpu)
        gpu_timings = []
        while not cpu_call.done():
            gpu_timings.append(gpu.run_batch(x_gpu)[1])
        y_cpu, t_cpu = cpu_call.result()
    finally:
        cpu.close()
        gpu.close()
    busy_gpu = [t for t in gpu_timings if t.start_s < t_cpu.end_s and t.end_s > t_cpu.start_s]
    assert busy_gpu, "the GPU ran nothing while the CPU computed"
    overlap = sum(min(t.end_s, t_cpu.end_s) - max(t.start_s, t_cpu.start_s) for t in busy_gpu)
    assert overlap > 0.5 * (t_cpu.end_s - t_cpu.start_s)
    assert y_cpu.shape == (32, 10) and t_cpu.device == "cpu"
    assert all(t.device == "cuda:0" for t in gpu_timings)


def test_gpu_worker_matches_cpu() -> None:
    model = ModelSpec(TINY_NETWORK, seed=4, input_shape=TINY_INPUT_SHAPE)
    x = torch.randn(8, *TINY_INPUT_SHAPE)
    with open_device("cpu", model) as cpu, open_device("cuda:0", model) as gpu:
        y_cpu, _ = cpu.run_batch(x)
        y_gpu, t_gpu = gpu.run_batch(x)
    assert y_gpu.device.type == "cpu" and t_gpu.compute_ms > 0
    torch.testing.assert_close(y_gpu, y_cpu, rtol=1e-4, atol=1e-4)
