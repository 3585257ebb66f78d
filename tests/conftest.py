"""Test set-up: make tests/ importable (shared small networks), keep torch to 2 threads,
and keep the tests' measurements out of the user's profile store (one store per run)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
_STORE_DIR = tempfile.TemporaryDirectory(prefix="maniple-test-store-")
os.environ["MANIPLE_PROFILE_DB"] = str(Path(_STORE_DIR.name) / "profiles.sqlite")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def ray_session() -> Iterator[object]:
    """One private Ray on 127.0.0.1 for a module of emulated tests (`usefixtures`); shut
    down even if tests fail."""
    from maniple.devices.ray_backend import ensure_ray, release_ray

    session = ensure_ray()
    try:
        yield session
    finally:
        release_ray(session)
