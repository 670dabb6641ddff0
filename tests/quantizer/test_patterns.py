"""Every pattern of the table is annotated as expected on both IRs.

Cases come from ``cases.CASES``; the guard test fails when an entry of the
pattern table (``PATTERNS`` or ``SHARED_OPS``) has no case.  Lowering and
execution of the same cases is in ``tests/e2e/test_patterns_e2e.py``.
"""

from __future__ import annotations

import pytest
import torch

from tests.quantizer.cases import CASES, quantize_case
from xnnquant.quantizer import PATTERNS, SHARED_OPS
from xnnquant.quantizer.workflow import IRS


@pytest.mark.parametrize("ir", IRS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_pattern_case_annotation(name, ir):
    case = CASES[name]
    quantizer, _, _, _ = quantize_case(name, ir)
    counts = quantizer.report.pattern_counts()
    for pattern, count in case.expect[ir].items():
        assert counts.get(pattern, 0) == count, (pattern, counts)
    assert quantizer.report.left_float == [], str(quantizer.report)


def test_same_input_gives_same_annotations():
    first, gm1, _, _ = quantize_case("data_movement", "core", fresh=True)
    second, gm2, _, _ = quantize_case("data_movement", "core", fresh=True)
    assert first.report.to_dict() == second.report.to_dict()
    assert str(gm1.graph) == str(gm2.graph)


def test_every_table_entry_has_a_case():
    covered = {p for case in CASES.values() for counts in case.expect.values() for p in counts}
    names = {p.name for p in PATTERNS} | {s.name for s in SHARED_OPS}
    assert names - covered == set(), f"pattern table entries without a case: {names - covered}"
