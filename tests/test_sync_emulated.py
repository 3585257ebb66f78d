"""Sync points on emulated boards (Ray actors): the boards swap their partials among
themselves over the cluster's gloo group, mid-call, on both runtimes, and the output is
one device's.

Marked `emulated`; one local Ray instance (127.0.0.1 only) serves the whole module.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maniple import zoo
from maniple.cluster import open_cluster, parse_shorthand
from maniple.devices import ModelSpec
from maniple.graph import capture
from maniple.spatial.costs import ProfilingSpent
from maniple.spatial.planners import plan_with_matrix
from maniple.spatial.runtimes.peer import run_peer_schedule
from maniple.spatial.runtimes.star import run_schedule
from maniple.spatial.schedule import lower
from maniple.spatial.schedule_peer import lower_peer
from maniple.tiling.verify import relative_error

pytestmark = [pytest.mark.emulated, pytest.mark.usefixtures("ray_session")]
pytest.importorskip("ray")

NETWORK, SHAPE = "mobilenet-v3-large", (3, 64, 64)


def test_boards_swap_partials_and_split_exactly() -> None:
    model = zoo.resolve(NETWORK, SHAPE)[0]
    graph = capture(model, SHAPE, NETWORK)
    assert len(graph.sync_points) == 8
    x = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = graph.spatial_module(x)
    spec = parse_shorthand(emulate="3xfirefly-rk3399", dilation=1.0)
    with open_cluster(spec, ModelSpec(NETWORK, input_shape=SHAPE), input_shape=SHAPE) as cluster:
        handles = {h.name: h for h in cluster}
        n = len(graph.units)
        heights = tuple(u.out_shape[2] for u in graph.units)
        flc = ((0, n // 2), (n // 2 + 1, n - 1))
        for runtime, lowering, run in (
            ("star", lower, run_schedule),
            ("peer", lower_peer, run_peer_schedule),
        ):
            plan = plan_with_matrix(
                NETWORK,
                "legion",
                tuple(handles),
                heights,
                (1.0, 1.0, 1.0),
                flc,
                np.ones((n, n)),
                ProfilingSpent(),
                runtime=runtime,
            )
            schedule = lowering(plan, graph)
            result = run(schedule, handles, graph, x, run_tail=False)
            assert relative_error(result.output, reference) <= 1e-4, runtime
            assert all(getattr(h, "_swap_group", None) == tuple(handles) for h in cluster)
