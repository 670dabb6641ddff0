"""Charts of accuracy results as PNG files: the debugger's per-layer table, and the atomic PNG writer.

matplotlib is optional (the ``plot`` extra): every function here returns False
when it is missing instead of raising, so a caller can say so and go on.  The
benchmark's chart (``examples/benchmark.py``) writes through :func:`write_png`
too, so every PNG the project makes is written the same way.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Optional


def pyplot():
    """matplotlib's ``pyplot`` on the file-only Agg backend, or None if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on CI or on an edge build box
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def write_png(fig, path: str, *, dpi: int = 100) -> None:
    """Save ``fig`` to ``path`` atomically (a half-written PNG never replaces a good one), then close it."""
    plt = pyplot()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        plt.close(fig)


def plot_debug_report(report, path: str, *, limit: Optional[int] = 20) -> bool:
    """Write the debugger's table as a horizontal bar chart: local and cumulative SQNR per node, worst on top.

    ``report`` is a :class:`~xnnquant.quantizer.accuracy.debugger.DebugReport`;
    ``limit`` rows are drawn (None: all).  Nodes left float are drawn hatched,
    so a low bar that no setter can fix is told apart from a quantized one.  An
    infinite SQNR (exact) is drawn at the right edge and labelled "exact".
    Returns False when matplotlib is missing.
    """
    plt = pyplot()
    if plt is None:
        return False
    rows = list(report.rows if limit is None else report.rows[:limit])
    finite = [v for r in rows for v in (r.sqnr_db, r.local_sqnr_db)
              if v is not None and math.isfinite(v)]
    edge = max(finite + [report.output_sqnr_db if math.isfinite(report.output_sqnr_db) else 0, 10]) + 5
    fig, ax = plt.subplots(figsize=(9.0, 1.2 + 0.28 * max(1, len(rows))))
    labels, ys = [], range(len(rows))
    for y, r in zip(ys, rows):
        hatch = None if r.quantized else "//"
        for value, offset, color, name in ((r.local_sqnr_db, -0.18, "tab:blue", "local (fp32 inputs)"),
                                           (r.sqnr_db, 0.18, "tab:orange", "cumulative")):
            if value is None:
                continue
            shown = edge if not math.isfinite(value) else value
            ax.barh(y + offset, shown, 0.36, color=color, hatch=hatch, edgecolor="white",
                    label=name if y == 0 else None)
            if not math.isfinite(value):
                ax.text(shown, y + offset, " exact", va="center", fontsize=6)
        labels.append(f"{r.node} ({r.module or '<root>'})")
    ax.set_yticks(list(ys), labels, fontsize=7)
    ax.invert_yaxis()  # worst first, as in the table
    ax.set_xlabel("SQNR vs fp32, dB (higher is better; hatched: node left float)")
    if math.isfinite(report.output_sqnr_db):
        ax.axvline(report.output_sqnr_db, color="black", linestyle="dashed", linewidth=0.8,
                   label=f"model output {report.output_sqnr_db:.1f} dB")
    ax.set_xlim(0, edge * 1.08)
    ax.grid(axis="x", linewidth=0.4, alpha=0.5)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)  # never over a bar
    ax.set_title(f"per-node SQNR, worst {len(rows)} of {len(report.rows)} "
                 f"(local: the node fed exact fp32 inputs)", fontsize=8)
    fig.tight_layout()
    write_png(fig, path)
    return True
