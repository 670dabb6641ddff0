"""Every record of the op table is annotated as its case expects, on both IRs.

Cases come from ``cases.CASES``; the guard test fails when a record of the op
table has no case.  Lowering and execution of the same cases is in
``tests/e2e/test_patterns_e2e.py``.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.quantizer.cases import CASES, quantize_case
from xnnquant.quantizer import RECORDS, QParams, record
from xnnquant.quantizer.workflow import IRS


@pytest.mark.parametrize("ir", IRS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_pattern_case_annotation(name, ir):
    case = CASES[name]
    quantizer, _, _, _ = quantize_case(name, ir)
    report = quantizer.report
    assert report.pattern_counts() == case.expect[ir], str(report)
    left = Counter(d.pattern or d.op for d in report.left_float)
    assert dict(left) == case.floats.get(ir, {}), str(report)
    for decision in report.left_float:
        if decision.pattern is not None and record(decision.pattern).qparams is QParams.FLOAT:
            assert decision.reason == record(decision.pattern).reason, decision


def test_same_input_gives_same_annotations():
    first, gm1, _, _ = quantize_case("data_movement", "core", fresh=True)
    second, gm2, _, _ = quantize_case("data_movement", "core", fresh=True)
    assert first.report.to_dict() == second.report.to_dict()
    assert str(gm1.graph) == str(gm2.graph)


def _covered(ir: str) -> set:
    return {name for case in CASES.values()
            for name in (*case.expect.get(ir, {}), *case.floats.get(ir, {}),
                         *case.decomposed.get(ir, ()))}


@pytest.mark.parametrize("ir", IRS)
def test_every_record_has_a_case_on_both_irs(ir):
    missing = {r.name for r in RECORDS} - _covered(ir)
    assert missing == set(), f"op-table records without a case on the {ir} IR: {missing}"


def test_float_records_have_a_reason_and_others_a_rule():
    for r in RECORDS:
        assert bool(r.reason) == (r.qparams is QParams.FLOAT), r.name
        assert r.spellings and all(s.targets for s in r.spellings), r.name
