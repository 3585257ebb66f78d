"""maniple: run one network's inference on devices that differ in speed, faster than any alone.

The public API, as docs/ARCHITECTURE.md describes it, is importable from here:

    import maniple
    graph = maniple.capture(maniple.zoo.build("resnet-50"), (3, 224, 224), "resnet-50")
    plan = maniple.plan_batch(table, 256)

Names are loaded on first use (PEP 562), so that `import maniple` stays cheap and a
worker process that needs one module does not import the whole library.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # base
    "ManipleError": "maniple.errors",
    "UnknownNameError": "maniple.errors",
    "zoo": "maniple.zoo",
    "capture": "maniple.graph",
    "LayerGraph": "maniple.graph",
    "halo": "maniple.graph",
    "alpha": "maniple.graph",
    "TiledModel": "maniple.tiling",
    "SpanProgram": "maniple.tiling",
    "split_rows": "maniple.tiling",
    "stitch": "maniple.tiling",
    "verify_split": "maniple.tiling.verify",
    "Worker": "maniple.devices",
    "DeviceHandle": "maniple.devices",
    "LocalHandle": "maniple.devices",
    "RayHandle": "maniple.devices.ray_backend",
    "ModelSpec": "maniple.devices",
    "open_device": "maniple.devices",
    "parse_device": "maniple.devices",
    "probe": "maniple.devices",
    "ClusterSpec": "maniple.cluster",
    "load_cluster": "maniple.cluster",
    "parse_shorthand": "maniple.cluster",
    "open_cluster": "maniple.cluster",
    "with_link": "maniple.cluster",
    "DeviceKey": "maniple.store",
    "StoreFile": "maniple.store",
    "device_key": "maniple.store",
    "strict_fp32": "maniple.precision",
    "ExecMode": "maniple.precision",
    # batch wing
    "PerfTable": "maniple.batch",
    "ProfileStore": "maniple.batch",
    "BatchPlan": "maniple.batch",
    "plan_batch": "maniple.batch",
    "run_batch_plan": "maniple.batch",
    "InferOptions": "maniple.batch",
    "infer": "maniple.batch",
    # spatial wing
    "LegionCosts": "maniple.spatial",
    "SpatialPlan": "maniple.spatial",
    "Schedule": "maniple.spatial",
    "lower": "maniple.spatial",
    "plan_spatial": "maniple.spatial",
    "wildcard_plans": "maniple.spatial",
    "plan_from_measured": "maniple.spatial",
    "profile_units": "maniple.spatial",
    "measure_groups": "maniple.spatial",
    "run_spatial_plan": "maniple.spatial",
    "run_schedule": "maniple.spatial",
    "LegionSession": "maniple.spatial",
    "prepare": "maniple.spatial",
    "open_devices": "maniple.spatial",
    "StreamPlan": "maniple.spatial.stream_plan",
    "plan_stream": "maniple.spatial.stream_planner",
    "StreamSession": "maniple.spatial.stream_session",
    "run_stream": "maniple.spatial.stream_run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Load an exported name from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'maniple' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module == f"maniple.{name}" else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
