"""The README's main job and the benchmark's smoke mode run end to end, and their figures hold."""

from __future__ import annotations

import json

import pytest

from examples import benchmark, quickstart

pytestmark = pytest.mark.slow  # both train or quantize whole models


def test_quickstart_int8_accuracy_within_one_point(tmp_path):
    out = tmp_path / "digits_int8.pte"
    result = quickstart.run(["--output", str(out), "--latency-runs", "5"])
    assert out.stat().st_size == result["int8_pte_bytes"] > 0
    assert result["accuracy_drop_pp"] <= 1.0, result
    assert result["fully_delegated"] and result["sqnr_db"] > 25.0, result


def test_benchmark_quick_rows_show_xnnquant_fully_int8_on_both_irs(tmp_path):
    path = tmp_path / "bench.json"
    assert benchmark.main(["--quick", "--json", str(path)]) == 0
    rows = {r["contender"]: r for r in json.loads(path.read_text())["results"]}
    assert {"fp32", "et-training", "xnnquant-training", "xnnquant-core"} <= set(rows)
    for name in ("xnnquant-training", "xnnquant-core"):
        row = rows[name]
        assert row["error"] is None, row
        assert row["quantized_ops"] == row["compute_ops"] > 0, row
        assert row["delegates"] == 1 and row["ops_outside"] == [], row
        assert row["sqnr_db"] >= rows["et-training"]["sqnr_db"] - 0.5, row
        assert row["pte_bytes"] > 0 and row["latency_ms"] > 0, row
