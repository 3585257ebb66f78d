"""Test set-up: make tests/ importable (shared small networks), keep torch to 2 threads,
and keep the tests' measurements out of the user's profile store (one store per run)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
_STORE_DIR = tempfile.TemporaryDirectory(prefix="maniple-test-store-")
os.environ["MANIPLE_PROFILE_DB"] = str(Path(_STORE_DIR.name) / "profiles.sqlite")
torch.set_num_threads(min(2, torch.get_num_threads()))
