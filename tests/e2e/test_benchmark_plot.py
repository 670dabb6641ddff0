"""The benchmark's ``--plot`` chart, drawn from a small results table (no benchmark run)."""

from __future__ import annotations

import json

import pytest

from examples import benchmark

matplotlib = pytest.importorskip("matplotlib", reason="the chart needs the 'plot' extra (pip install -e '.[plot]')")


def _row(model, contender, latency=None, vs_fp32=None, sqnr=None, error=None):
    return {"model": model, "contender": contender, "ir": "core", "error": error,
            "latency_ms": latency, "latency_vs_fp32": vs_fp32, "sqnr_db": sqnr}


RESULTS = [
    _row("mlp", "fp32", 4.0, 1.0, 127.5),
    _row("mlp", "et-core", 200.0, 50.0, 33.4),
    _row("mlp", "xnnquant-core", 2.0, 0.5, 32.3),
    _row("cnn", "fp32", 0.1, 1.0, 130.0),
    _row("cnn", "et-core", error="quantize: ValueError: mean is not an aten adaptive_avg_pool2d operator"),
    _row("cnn", "xnnquant-core", 0.08, 0.8, 37.1),
]


def test_chart_marks_ratios_and_failures(tmp_path, figures):
    path = tmp_path / "chart.png"
    assert benchmark.plot(RESULTS, str(path), title="test table")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) < 100_000  # small enough to commit next to the README
    (fig,) = figures
    latency, sqnr = fig.axes
    labels = sorted(t.get_text() for t in latency.texts)
    assert labels == ["0.50x", "0.80x", "50.00x", "failed"]  # fp32 itself gets no ratio label
    assert [t.get_text() for t in sqnr.texts] == ["failed"]
    heights = sorted(round(p.get_height(), 1) for p in sqnr.patches)
    assert heights == [32.3, 33.4, 37.1, 127.5, 130.0]  # no bar for the failed contender
    assert latency.get_yscale() == "log"
    assert [t.get_text() for t in sqnr.get_xticklabels()] == ["mlp", "cnn"]
    assert not list(tmp_path.glob(".*.png")), "a temporary file was left behind"


def test_plot_from_a_results_file(tmp_path, figures):
    results = tmp_path / "bench.json"
    results.write_text(json.dumps({"settings": {"quick": True, "iters": 2, "calibration_samples": 2},
                                   "machine": {"threads": 2, "torch": "2.13.0"}, "results": RESULTS}))
    png = tmp_path / "out" / "bench.png"
    assert benchmark.main(["--plot-from", str(results), "--plot", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "--quick (tiny model sizes)" in figures[0]._suptitle.get_text()
