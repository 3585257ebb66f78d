"""Profiles: batch performance tables, the SQLite profile store, and the batch profiler.

Everything maniple measures about a device ends up here, so that planning never needs the
device itself and a second run reuses what the first one measured.
"""

from maniple.profile.batch_profiler import BatchRunner, profile_batch_table
from maniple.profile.errors import DeviceOutOfMemory
from maniple.profile.perf_table import (
    SEED_BATCHES,
    PerfEntry,
    PerfTable,
    load_table,
    load_tables,
)
from maniple.profile.store import DeviceKey, ProfileStore, default_store_path

__all__ = [
    "SEED_BATCHES",
    "BatchRunner",
    "DeviceKey",
    "DeviceOutOfMemory",
    "PerfEntry",
    "PerfTable",
    "ProfileStore",
    "default_store_path",
    "load_table",
    "load_tables",
    "profile_batch_table",
]
