"""The public API docs/ARCHITECTURE.md describes is importable from `maniple` itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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


def test_every_key_api_of_the_architecture_page_is_exported() -> None:
    """docs/ARCHITECTURE.md's 'key API' column names what `maniple` exports (zoo functions
    through `maniple.zoo`)."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| `maniple")]
    names = {
        m.group(1)
        for row in rows
        for m in re.finditer(r"`([A-Za-z_][A-Za-z0-9_]*)[`(]", row.rsplit("|", 2)[1])
    }
    assert len(names) > 20
    missing = [n for n in sorted(names) if not hasattr(maniple, n) and not hasattr(maniple.zoo, n)]
    assert not missing, f"in ARCHITECTURE.md's key API but not exported by maniple: {missing}"
