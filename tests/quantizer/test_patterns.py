"""Every pattern of the table, on both IRs: annotated as expected, fully delegated, accurate.

Cases come from ``cases.CASES``; the guard test fails when an entry of the
pattern table (``PATTERNS`` or ``SHARED_OPS``) has no case.
"""

from __future__ import annotations

import pytest
import torch

from tests.quantizer.cases import CASES
from tests.support import lower_stock, run_pte
from xnnquant.quantizer import PATTERNS, SHARED_OPS, XnnpackQuantizer, get_config, quantize, sqnr
from xnnquant.quantizer.workflow import IRS

# minmax keeps the table fast; the histogram default is covered by the model tests.
CONFIG = get_config(observer="minmax")


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


@pytest.mark.parametrize("ir", IRS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_pattern_case(name, ir):
    case = CASES[name]
    torch.manual_seed(1)
    model = case.make()
    x = (torch.randn(*case.shape),)
    calibration = [(torch.randn(*case.shape),) for _ in range(4)] + [x]
    quantizer = XnnpackQuantizer(CONFIG)
    converted = quantize(model, x, calibration, quantizer, ir=ir)

    counts = quantizer.report.pattern_counts()
    for pattern, count in case.expect[ir].items():
        assert counts.get(pattern, 0) == count, (pattern, counts)
    assert quantizer.report.left_float == [], str(quantizer.report)

    edge, outside = lower_stock(converted, x)
    assert len(outside) == case.outside.get(ir, 0), (outside, case.why)
    if outside:
        return  # ops outside the delegate are portable kernels we do not load here
    got = _first(run_pte(edge, x))
    want = _first(model(*x))
    assert sqnr(want, got) > 30.0


def test_every_table_entry_has_a_case():
    covered = {p for case in CASES.values() for counts in case.expect.values() for p in counts}
    names = {p.name for p in PATTERNS} | {s.name for s in SHARED_OPS}
    assert names - covered == set(), f"pattern table entries without a case: {names - covered}"
