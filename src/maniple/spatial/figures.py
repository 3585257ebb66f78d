"""Figures in the style of the Legion study's result1 (speedups) and result2 (profiling)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SEARCH_LABELS = {"fss": "FSS", "legion": "Legion", "legion-wildcard": "Legion + Wild Card"}
COLORS = {"fss": "#eeeeee", "legion": "#aaaaaa", "legion-wildcard": "#666666"}
ROWS = (("F", "Firefly-RK3399 boards"), ("O", "Odroid-XU4 boards"), ("mixed", "mixed sets"))


def _row_of(set_name: str) -> str:
    kinds = {p.strip()[-1] for p in set_name.upper().split("+")}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _grid(rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    networks = list(dict.fromkeys(r["network"] for r in rows))
    kinds = [k for k, _ in ROWS if any(_row_of(r["set"]) == k for r in rows)]
    return networks, kinds


def speedup_figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Speedup over one board, per board set: FSS, Legion, Legion + Wild Card."""
    networks, kinds = _grid(rows)
    if not rows:
        return
    fig, axes = plt.subplots(
        len(kinds), len(networks), figsize=(4.2 * len(networks), 2.8 * len(kinds)), squeeze=False
    )
    for i, kind in enumerate(kinds):
        for j, net in enumerate(networks):
            ax = axes[i][j]
            sel = [r for r in rows if r["network"] == net and _row_of(r["set"]) == kind]
            xs = range(len(sel))
            for k, (search, label) in enumerate(SEARCH_LABELS.items()):
                ax.bar(
                    [x + (k - 1) * 0.27 for x in xs],
                    [r["results"][search]["speedup"] for r in sel],
                    0.27,
                    label=label,
                    color=COLORS[search],
                    edgecolor="black",
                    linewidth=0.6,
                )
            ax.set_xticks(list(xs), [r["set"] for r in sel], fontsize=8)
            ax.set_ylim(0, 3)
            ax.axhline(1, color="black", linewidth=0.5)
            ax.set_title(f"{net}: {dict(ROWS)[kind]}", fontsize=9)
            if j == 0:
                ax.set_ylabel("speedup (x)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def profiling_figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Profiling time (board seconds) of FSS and Legion per board set, log scale."""
    networks = list(dict.fromkeys(r["network"] for r in rows))
    if not rows:
        return
    fig, axes = plt.subplots(1, len(networks), figsize=(5 * len(networks), 3), squeeze=False)
    for j, net in enumerate(networks):
        ax = axes[0][j]
        sel = [r for r in rows if r["network"] == net and r["set"] not in ("1F", "1O")]
        xs = range(len(sel))
        for k, search in enumerate(("fss", "legion")):
            ax.bar(
                [x + (k - 0.5) * 0.4 for x in xs],
                [r["results"][search]["profile_seconds"] for r in sel],
                0.4,
                label=SEARCH_LABELS[search],
                color=COLORS[search] if search == "fss" else "#555555",
                edgecolor="black",
                linewidth=0.6,
            )
        ax.set_yscale("log")
        ax.set_xticks(list(xs), [r["set"] for r in sel], fontsize=7, rotation=45)
        ax.set_title(f"{net}: profiling time", fontsize=9)
        if j == 0:
            ax.set_ylabel("board seconds (log)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
