"""The batch wing (KCC 2020): a batch of images divided across units by measured speed.

Stages, in import order: costs (`perf_entries`, `perf_table`, `errors`, `store`, `profiler`,
`device_runner`, `profile_cluster`, `measure_io`), planners (`plan`, `planners`), runtime
(`run`, `infer`, `compare`), report (`report`, `timeline`).
"""

from maniple.batch.compare import PlannerComparison, compare_planners
from maniple.batch.device_runner import DeviceBatchRunner, is_out_of_memory
from maniple.batch.errors import DeviceOutOfMemory
from maniple.batch.infer import (
    InferOptions,
    InferResult,
    choose_plan,
    ideal_ms,
    infer,
    random_batch,
)
from maniple.batch.perf_entries import PerfEntry
from maniple.batch.perf_table import SEED_BATCHES, PerfTable, load_table, load_tables
from maniple.batch.plan import BatchPlan
from maniple.batch.planners import PLANNERS, plan_batch
from maniple.batch.profile_cluster import (
    DeviceProfile,
    profile_cluster,
    profile_device,
    profile_sizes,
    profiled_cluster,
    table_network,
)
from maniple.batch.profiler import BatchRunner, profile_batch_table
from maniple.batch.report import io_table, summary_lines, unit_table
from maniple.batch.run import (
    BatchRun,
    UnitRun,
    max_rel_error,
    median_run,
    run_batch_plan,
    run_interleaved,
)
from maniple.batch.store import ProfileStore
from maniple.batch.timeline import plot_timeline
from maniple.store import DeviceKey, default_store_path, device_key

__all__ = [
    "PLANNERS",
    "SEED_BATCHES",
    "BatchPlan",
    "BatchRun",
    "BatchRunner",
    "DeviceBatchRunner",
    "DeviceKey",
    "DeviceOutOfMemory",
    "DeviceProfile",
    "InferOptions",
    "InferResult",
    "PerfEntry",
    "PerfTable",
    "PlannerComparison",
    "ProfileStore",
    "UnitRun",
    "choose_plan",
    "compare_planners",
    "default_store_path",
    "device_key",
    "ideal_ms",
    "infer",
    "io_table",
    "is_out_of_memory",
    "load_table",
    "load_tables",
    "max_rel_error",
    "median_run",
    "plan_batch",
    "plot_timeline",
    "profile_batch_table",
    "profile_cluster",
    "profile_device",
    "profile_sizes",
    "profiled_cluster",
    "random_batch",
    "run_batch_plan",
    "run_interleaved",
    "summary_lines",
    "table_network",
    "unit_table",
]
