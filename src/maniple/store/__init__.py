"""The profile store: one SQLite file of everything maniple measures, shared by both wings.

The file, its schema and safe opening (`StoreFile`), and the identity every measurement is
kept under (`DeviceKey`, `device_key`). The batch wing adds its rows in
`maniple.batch.store`; the spatial wing keeps its cost tables here as documents.
"""

from maniple.store.file import SCHEMA_VERSION, StoreFile, default_store_path
from maniple.store.keys import DeviceKey, device_key, device_kind

__all__ = [
    "SCHEMA_VERSION",
    "DeviceKey",
    "StoreFile",
    "default_store_path",
    "device_key",
    "device_kind",
]
