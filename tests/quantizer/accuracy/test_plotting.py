"""The debugger's PNG chart: one bar pair per row, worst on top, float nodes hatched, exact values marked."""

from __future__ import annotations

import math

import pytest

from xnnquant.quantizer.accuracy import DebugReport, NodeComparison

matplotlib = pytest.importorskip("matplotlib", reason="the chart needs the 'plot' extra (pip install -e '.[plot]')")


def _row(node, local, cumulative, quantized=True):
    return NodeComparison(node=node, op="aten.conv2d.default", module=f"m.{node}", quantized=quantized,
                          sqnr_db=cumulative, max_abs_error=0.1, local_sqnr_db=local,
                          local_max_abs_error=0.1, numel=16)


REPORT = DebugReport(rows=(_row("conv_3", 12.0, 18.0), _row("softmax", None, 25.0, quantized=False),
                           _row("view", math.inf, 30.0)),
                     output_sqnr_db=21.5, batches=2)


def test_bars_follow_the_table(tmp_path, figures):
    path = tmp_path / "layers.png"
    assert REPORT.plot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = figures
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["conv_3 (m.conv_3)", "softmax (m.softmax)",
                                                             "view (m.view)"]
    widths = [round(p.get_width(), 1) for p in ax.patches]
    edge = 30.0 + 5  # the largest finite SQNR plus a margin: where "exact" is drawn
    assert widths == [12.0, 18.0, 25.0, edge, 30.0]  # softmax has no local figure: one bar
    assert [p.get_hatch() for p in ax.patches] == [None, None, "//", None, None]
    assert [t.get_text().strip() for t in ax.texts] == ["exact"]
    assert ax.yaxis_inverted()
    assert not list(tmp_path.glob(".*.png")), "a temporary file was left behind"


def test_limit_draws_the_worst_rows_only(tmp_path, figures):
    assert REPORT.plot(str(tmp_path / "one.png"), limit=1)
    (fig,) = figures
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["conv_3 (m.conv_3)"]
