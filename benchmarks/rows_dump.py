"""Dump every row decision of the spatial wing as JSON, with the code before or after the
restructuring, so the two can be compared exactly (no timing involved).

For the study's networks and ResNet-50, several band weights and fused-layer
configurations: each group's bands, each active device's input rows (what the star
runtime cuts and sends), and Legion's alpha tables A and A_in. Before the restructuring
these came from `maniple.plan.legion`, the star runtime's own halo calls and
`maniple.profile.legion_profiler`; after it, from `maniple.spatial.bands`, the schedule
(`lower`) and `maniple.spatial.profiler`. `benchmarks/legion_check.sh` runs it with both
and requires identical output.

    python benchmarks/rows_dump.py OUT.json            # this checkout
    PYTHONPATH=OLD/src python benchmarks/rows_dump.py OUT.json   # another revision
"""

from __future__ import annotations

import json
import random
import sys
from typing import Any

from maniple import zoo
from maniple.graph import capture, halo
from maniple.tiling import split_rows_capped

NETWORKS = ("vgg-16", "vgg-19", "yolov2", "resnet-50")
WEIGHTS = ((0.5, 0.5), (0.3, 0.2, 0.1, 0.25, 0.15), (1 / 6,) * 6, (0.26, 0.26, 0.16, 0.16, 0.16))


def _flcs(n: int, seed: int) -> list[tuple[tuple[int, int], ...]]:
    rng = random.Random(seed)
    flcs = [tuple((k, k) for k in range(n)), ((0, n - 1),)]
    for _ in range(3):
        cuts = sorted(k for k in range(1, n) if rng.random() < 0.3)
        bounds = [0, *cuts, n]
        flcs.append(tuple((bounds[i], bounds[i + 1] - 1) for i in range(len(bounds) - 1)))
    return flcs


def _rows_new(graph: Any, flc: Any, weights: Any) -> tuple[list[Any], list[Any]]:
    from maniple.spatial.bands import group_bands
    from maniple.spatial.plan import SpatialPlan
    from maniple.spatial.schedule import lower

    heights = tuple(u.out_shape[2] for u in graph.units)
    names = tuple(f"d{i}" for i in range(len(weights)))
    bands = group_bands(flc, heights, weights)
    plan = SpatialPlan(graph.name, "layerwise", names, heights, flc, bands, None, None)
    schedule = lower(plan.validate(), graph)
    inputs = [[list(s.receive[0].rows) for s in schedule.group_steps(g)] for g in range(len(flc))]
    return [[list(b) for b in group] for group in bands], inputs


def _rows_old(graph: Any, flc: Any, weights: Any) -> tuple[list[Any], list[Any]]:
    from maniple.plan.legion import group_bands  # type: ignore[import-not-found]

    heights = tuple(u.out_shape[2] for u in graph.units)
    bands = group_bands(flc, heights, weights)
    inputs = [
        [list(halo(graph, first, last, b).input_rows) for b in group if b[1] > b[0]]
        for (first, last), group in zip(flc, bands)
    ]
    return [[list(b) for b in group] for group in bands], inputs


def main() -> None:
    try:
        from maniple.spatial.profiler import alpha_tables

        rows, after = _rows_new, True
    except ImportError:
        from maniple.profile.legion_profiler import alpha_tables  # type: ignore[no-redef]

        rows, after = _rows_old, False
    out: dict[str, Any] = {}
    for net in NETWORKS:
        graph = capture(zoo.build(net), zoo.input_shape(net), net)
        for w, weights in enumerate(WEIGHTS):
            measured = [
                [b if b[1] > b[0] else (0, 1) for b in split_rows_capped(u.out_shape[2], weights)]
                for u in graph.units
            ]
            A, A_in = alpha_tables(graph, weights, measured)
            out[f"{net}/w{w}/A"] = A.round(12).tolist()
            out[f"{net}/w{w}/A_in"] = A_in.round(12).tolist()
            for f, flc in enumerate(_flcs(len(graph.units), seed=w)):
                bands, inputs = rows(graph, flc, weights)
                out[f"{net}/w{w}/flc{f}"] = {"flc": flc, "bands": bands, "inputs": inputs}
    with open(sys.argv[1], "w") as fh:
        json.dump(out, fh, sort_keys=True)
    print(f"{'after' if after else 'before'}: {len(out)} entries -> {sys.argv[1]}")


if __name__ == "__main__":
    main()
