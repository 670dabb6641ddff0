"""compare_delegate: the .pte, the reference kernels and the q/dq graph agree, and a wrong .pte is caught."""

from __future__ import annotations

import pytest
import torch

from examples.models import build, example_inputs
from xnnquant.passes import lower_to_xnnpack
from xnnquant.passes.compare_delegate import PAIRS, compare_delegate
from xnnquant.quantizer import XnnpackQuantizer
from xnnquant.quantizer.workflow import IRS, quantize


def _converted(ir, seed=0):
    model, shape = build("digits_cnn", tiny=True)
    cal = example_inputs(shape, 4, seed=seed)
    return quantize(model, cal[0], cal, XnnpackQuantizer(), ir=ir, alarm_sqnr_db=None), cal


@pytest.mark.parametrize("ir", IRS)
def test_three_programs_agree(ir):
    converted, cal = _converted(ir)
    result = compare_delegate(converted, cal)
    assert result.agrees, result.format()
    assert [(c.actual, c.expected) for c in result.checks] == list(PAIRS)
    pte_vs_ref = result.checks[0].check
    assert pte_vs_ref.kind == "dequantized" and pte_vs_ref.max_steps <= 1.0 + 1e-3
    assert result.batches == len(cal)


def test_a_pte_of_another_program_disagrees():
    converted, cal = _converted("core")
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    wrong = lower_to_xnnpack(quantize(other, cal[0], cal, XnnpackQuantizer(), alarm_sqnr_db=None),
                             cal[0])
    result = compare_delegate(converted, cal, lowered=wrong)
    assert not result.agrees
    by_pair = {(c.actual, c.expected): c.check.passed for c in result.checks}
    assert by_pair == {("pte", "reference"): False, ("pte", "converted"): False,
                       ("reference", "converted"): True}
    assert "DISAGREES" in result.format()


def test_no_batches_is_an_error():
    converted, _ = _converted("training")
    with pytest.raises(ValueError, match="at least one batch"):
        compare_delegate(converted, [])
