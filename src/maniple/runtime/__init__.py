"""Run plans on devices: batch split (`run_batch_plan`, end to end `infer`), profiling the
devices of a run into the store, and measuring host-device I/O."""

from maniple.devices.precision import strict_fp32
from maniple.runtime.batch import (
    BatchRun,
    UnitRun,
    max_rel_error,
    median_run,
    run_batch_plan,
    run_interleaved,
)
from maniple.runtime.compare import PlannerComparison, compare_planners
from maniple.runtime.device_key import device_key
from maniple.runtime.device_runner import DeviceBatchRunner, is_out_of_memory
from maniple.runtime.infer import (
    InferOptions,
    InferResult,
    choose_plan,
    ideal_ms,
    infer,
    random_batch,
)
from maniple.runtime.profiling import (
    DeviceProfile,
    profile_cluster,
    profile_device,
    profile_sizes,
    profiled_cluster,
    table_network,
)
from maniple.runtime.spatial import run_spatial_plan

__all__ = [
    "BatchRun",
    "DeviceBatchRunner",
    "DeviceProfile",
    "InferOptions",
    "InferResult",
    "PlannerComparison",
    "UnitRun",
    "choose_plan",
    "compare_planners",
    "device_key",
    "ideal_ms",
    "infer",
    "is_out_of_memory",
    "max_rel_error",
    "median_run",
    "profile_cluster",
    "profile_device",
    "profile_sizes",
    "profiled_cluster",
    "random_batch",
    "run_batch_plan",
    "run_interleaved",
    "run_spatial_plan",
    "strict_fp32",
    "table_network",
]
