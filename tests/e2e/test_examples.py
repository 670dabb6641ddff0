"""The README's main job and the benchmark's smoke mode run end to end."""

from __future__ import annotations

import json

from examples import benchmark, quickstart


def test_quickstart_int8_accuracy_within_one_point(tmp_path):
    out = tmp_path / "digits_int8.pte"
    result = quickstart.run(["--output", str(out), "--latency-runs", "5"])
    assert out.stat().st_size > 0
    assert result["accuracy_drop_pp"] <= 1.0, result
    assert result["fully_delegated"] and result["sqnr_db"] > 25.0, result


def test_benchmark_quick_writes_json(tmp_path):
    path = tmp_path / "bench.json"
    assert benchmark.main(["--quick", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())
    assert rows, "benchmark wrote no rows"
