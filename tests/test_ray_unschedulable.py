"""A Ray device that asks its node for a GPU (or CPUs) it does not have is a ManipleError
naming what was asked, what the node has and the fix, before any actor is made; what Ray
itself raises about scheduling becomes one too; the CLI exits 2 without a traceback.

The checks on node records need no Ray; the rest start maniple's private local Ray (which
has no GPUs, whatever the machine has) and are marked `ray`.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from maniple.devices.ray_nodes import check_fits, unschedulable_error
from maniple.errors import ManipleError

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs Ray")


def node(cpus: float = 2, gpus: float = 0) -> dict[str, Any]:
    resources = {"CPU": cpus, "node:__internal_head__": 1.0, "memory": 1e9}
    if gpus:
        resources["GPU"] = gpus
    return {"NodeID": "ab" * 28, "Alive": True, "NodeManagerAddress": "10.0.0.5",
            "Resources": resources, "Labels": {}}  # fmt: skip


def test_a_gpu_the_private_ray_lacks_names_the_local_device_instead() -> None:
    with pytest.raises(ManipleError) as info:
        check_fits(node(), "ray:head/cuda:0", 1, "cuda:0", private=True)
    text = str(info.value)
    assert "'ray:head/cuda:0'" in text and "GPU cuda:0" in text and "has 0 GPU(s)" in text
    assert "private local Ray has no GPUs" in text and "'cuda:N'" in text


def test_a_gpu_index_past_the_nodes_gpus_lists_the_ones_it_has() -> None:
    check_fits(node(gpus=2), "ray:head/cuda:1", 1, "cuda:1", private=False)
    with pytest.raises(ManipleError) as info:
        check_fits(node(gpus=2), "ray:head/cuda:2", 1, "cuda:2", private=False)
    text = str(info.value)
    assert "has 2 GPU(s) (cuda:0 to cuda:1)" in text and "10.0.0.5 head" in text
    assert "ray start --num-gpus=N" in text


def test_more_cpus_than_the_node_has_says_the_limit() -> None:
    check_fits(node(cpus=4), "ray:head/cpu", 4, "cpu", private=False)
    with pytest.raises(ManipleError, match=r"asks for 6 CPU\(s\).*has 4; give it threads <= 4"):
        check_fits(node(cpus=4), "ray:head/cpu", 6, "cpu", private=False)


def test_rays_own_words_come_with_the_live_nodes() -> None:
    error = unschedulable_error("ray:x/cpu", "The actor is not schedulable: gone.", [node()])
    text = str(error)
    assert text.startswith("device 'ray:x/cpu' cannot be placed on its Ray node: The actor is")
    assert "Live nodes: 10.0.0.5 head" in text and "ray status" in text


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One private Ray for the module's tests (each handle would otherwise start its own)."""
    from maniple.devices.ray_backend import ensure_ray, release_ray

    session = ensure_ray()
    yield
    release_ray(session)


@pytest.mark.ray
@needs_ray
def test_a_gpu_device_on_the_gpu_less_private_ray_fails_before_any_actor(
    local_ray: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maniple.devices import ray_backend

    made = []
    real = ray_backend.remote_worker_class
    monkeypatch.setattr(ray_backend, "remote_worker_class", lambda: made.append(1) or real())
    from maniple.devices import ModelSpec, open_device
    from maniple.devices.tiny import TINY_INPUT_SHAPE, TINY_NETWORK

    with pytest.raises(ManipleError, match=r"has 0 GPU\(s\)\. maniple's private local Ray"):
        open_device("ray:head/cuda:0", ModelSpec(TINY_NETWORK, input_shape=TINY_INPUT_SHAPE))
    assert made == []


@pytest.mark.ray
@needs_ray
def test_what_ray_raises_about_scheduling_is_a_maniple_error(
    local_ray: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past our own check (as if the node lost its GPU meanwhile), Ray's
    ActorUnschedulableError comes back as a ManipleError naming the device."""
    from maniple.devices import ray_backend
    from maniple.devices.names import parse_device

    monkeypatch.setattr(ray_backend, "check_fits", lambda *a, **k: None)
    with pytest.raises(ManipleError) as info:
        ray_backend.RayHandle(parse_device("ray:head/cuda:0"), startup_timeout_s=60)
    text = str(info.value)
    assert "'ray:head/cuda:0' cannot be placed on its Ray node" in text
    assert "Live nodes: 127.0.0.1 head" in text
    assert info.value.__cause__.__class__.__name__ == "ActorUnschedulableError"


@pytest.mark.ray
@needs_ray
def test_the_cli_exits_2_with_the_reason_and_no_traceback(
    local_ray: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from maniple.cli import main

    args = ["infer", "--network", "maniple.devices.tiny:tiny_cnn", "--input-shape", "3,32,32"]
    args += ["--batch", "4", "--device", "ray:head/cuda:0"]
    monkeypatch.setattr(sys, "argv", ["maniple", *args])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "cuda:0" in err and "0 GPU(s)" in err and "Traceback" not in err
