"""How maniple sets up and counts its Ray connection, without importing Ray: the session
record, the environment variables it insists on (token authentication, loopback), the
arguments of `ray.init`, and the check that a local instance stayed on loopback.

Why apart from ray_backend: these are plain values and rules about the environment and
addresses, which read (and can be tested) without Ray; ray_backend stays the one module
that imports ray and calls it with them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from maniple.errors import ManipleError

AUTH_MODE_VAR = "RAY_AUTH_MODE"
LOOPBACK_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps a local node on 127.0.0.1
LOOPBACK_IP = "127.0.0.1"
LOCAL_OBJECT_STORE_BYTES = 2 * 2**30  # inputs, bands and shipped weights; spills beyond
INIT_ARGS: dict[str, Any] = {  # every session: no worker logs here, Ray's warnings only
    "log_to_driver": False,
    "logging_level": logging.WARNING,
    "namespace": "maniple",
}


@dataclass
class RaySession:
    """This process's connection to Ray: who started it, where it is, how many users."""

    address: str
    started_here: bool
    users: int = 0
    restore: dict[str, Any] | None = None  # loopback settings to undo at shutdown
    tracker: Any = None  # ray_leftovers.Tracker of a private Ray: its record and watcher

    @property
    def private(self) -> bool:
        """Whether this is maniple's own local Ray (started with no address)."""
        return self.restore is not None

    def join(self, address: str | None = None) -> RaySession:
        """One more user; `address` (None, 'local', 'auto' or this session's) must not ask
        for another cluster."""
        if address not in (None, "local", "auto", self.address):
            raise ManipleError(
                f"this process is already connected to Ray at {self.address}; "
                f"cannot also connect to {address!r} (close the other cluster first)"
            )
        self.users += 1
        return self


def require_token_auth_env() -> None:
    """Set RAY_AUTH_MODE=token for this process and those Ray starts; refuse any other mode."""
    mode = os.environ.get(AUTH_MODE_VAR)
    if mode is not None and mode.lower() != "token":
        raise ManipleError(
            f"{AUTH_MODE_VAR}={mode!r}: maniple keeps Ray's token authentication on; "
            f"unset {AUTH_MODE_VAR} or set it to 'token'"
        )
    os.environ[AUTH_MODE_VAR] = "token"


def set_env(name: str, value: str | None) -> None:
    """Set the environment variable `name`, or remove it for None (to restore a setting)."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def local_init_args() -> dict[str, Any]:
    """`ray.init` arguments of a private single-node Ray on loopback, without a dashboard
    or GPUs, with at least 2 CPUs."""
    return {
        "address": "local",
        "_node_ip_address": LOOPBACK_IP,
        "include_dashboard": False,
        "num_cpus": max(2, os.cpu_count() or 1),
        "num_gpus": 0,
        "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
        **INIT_ARGS,
    }


def loopback_error(gcs: str, addresses: set[str]) -> ManipleError | None:
    """The error for a local Ray whose GCS (`gcs`) or nodes (`addresses`) are not on
    loopback only; None where they are."""
    if gcs.startswith(f"{LOOPBACK_IP}:") and addresses == {LOOPBACK_IP}:
        return None
    return ManipleError(
        f"the local Ray instance came up on {gcs} / {sorted(addresses)}, not on {LOOPBACK_IP} "
        f"only; refusing to use it. Set {LOOPBACK_VAR}=0 before anything imports ray"
    )
