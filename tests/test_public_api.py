"""The public API docs/ARCHITECTURE.md describes is importable from `maniple` itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

import maniple


@pytest.mark.parametrize("name", maniple.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(maniple, name) is not None


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = maniple.nope  # type: ignore[attr-defined]


def test_import_maniple_is_cheap() -> None:
    """Names load on first use: `import maniple` alone pulls in neither torch nor Ray."""
    code = "import sys, maniple; print('torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
