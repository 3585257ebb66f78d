"""Timeline plot of a batch split: when each unit ran, beside the best unit alone.

Why a picture: a good split shows all bars ending together, near the predicted makespan
and well before the single unit's bar; a bad one shows one long bar. Device time and
per-call overhead (Ray, queueing: real host time) are drawn apart.
"""

from __future__ import annotations

from pathlib import Path

from maniple.batch.run import BatchRun


def plot_timeline(run: BatchRun, path: str | Path, single: BatchRun | None = None) -> Path:
    """Write a PNG of `run`'s units (and `single`'s, if given) to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(u.device, u) for u in run.units if u.called]
    if single is not None:
        rows += [(f"{u.device} alone", u) for u in single.units if u.called]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 2.0))
    for i, (label, u) in enumerate(rows):
        ax.barh(i, u.device_ms, left=u.start_ms, color="tab:blue" if "alone" not in label
                else "tab:gray")  # fmt: skip
        ax.barh(i, u.overhead_ms, left=u.start_ms + u.device_ms, color="tab:orange")
        ax.text(u.end_ms, i, f" {u.images} img, {u.elapsed_ms:.0f} ms", va="center", fontsize=8)
    ax.axvline(run.plan.makespan_ms, color="k", linestyle="--", linewidth=1,
               label=f"predicted makespan {run.plan.makespan_ms:.0f} ms")  # fmt: skip
    ax.axvline(run.measured_ms, color="tab:red", linewidth=1,
               label=f"measured makespan {run.measured_ms:.0f} ms")  # fmt: skip
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel("ms from the start of the run (emulated boards: emulated ms)")
    ax.set_title(
        f"{run.plan.network}, batch {run.plan.batch}, planner {run.plan.planner} "
        "(blue: device time, orange: overhead)",
        fontsize=9,
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
