"""Sensitivity + float fallback: finds the outlier pair, meets the budget, reuses calibration soundly."""

from __future__ import annotations

import copy

import pytest
import torch
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

from examples.models import build, example_inputs
from xnnquant.quantizer import XnnpackQuantizer, get_qat_config
from xnnquant.quantizer.accuracy import Budget, find_float_fallback, metric_budget, sqnr_budget
from xnnquant.quantizer.accuracy.fallback import _calibrate_only, _reuse_observers
from xnnquant.quantizer.workflow import IRS, calibrate, export_model, quantize, sqnr

from .outlier import batches, outlier_net

BUDGET_DB = 30.0


@pytest.mark.parametrize("ir", IRS)
def test_fallback_finds_the_outlier_layers_and_meets_the_budget(ir):
    model, cal = outlier_net(), batches()
    base = XnnpackQuantizer()
    report = find_float_fallback(model, cal[0], cal, budget=sqnr_budget(min_sqnr_db=BUDGET_DB),
                                 quantizer=base, ir=ir, progress=False)
    assert report.met
    assert sorted(report.kept_float) == ["fc1", "fc2"]
    assert report.recalibrated == 0
    # It must keep improving the case it was built for: from a broken model to the budget.
    assert report.baseline_score < 10.0 and report.score >= BUDGET_DB
    assert report.score - report.baseline_score > 20.0
    assert base.module_name_config == {}, "the caller's quantizer was modified"
    # The returned quantizer, used on its own, reproduces the figure.
    converted = quantize(model, cal[0], cal, report.quantizer, ir=ir, alarm_sqnr_db=None)
    with torch.no_grad():
        got = sqnr(torch.cat([model(*b) for b in cal]), torch.cat([converted(*b) for b in cal]))
    assert got == pytest.approx(report.score, abs=1e-6)
    assert {s.module for s in report.sensitivity} == {"fc1", "fc2", "fc3"}
    assert "kept float: " in report.format()


def test_nothing_kept_float_when_the_budget_is_already_met():
    cal = batches()
    report = find_float_fallback(outlier_net(outlier=False), cal[0], cal,
                                 budget=sqnr_budget(min_sqnr_db=20.0), progress=False)
    assert report.met and report.kept_float == ()
    assert report.evaluations == 1 + len(report.sensitivity)


def test_metric_budget_with_tolerance():
    model, cal = outlier_net(), batches()
    with torch.no_grad():
        labels = torch.cat([model(*b).argmax(1) for b in cal])

    def agreement(m) -> float:
        # Top-1 agreement with fp32, in percent; the program is exported for batches of 8.
        with torch.no_grad():
            predicted = torch.cat([m(*b).argmax(1) for b in cal])
        return 100.0 * (predicted == labels).float().mean().item()

    report = find_float_fallback(model, cal[0], cal,
                                 budget=metric_budget(metric=agreement, tolerance=0.0),
                                 progress=False)
    assert report.fp32_score == 100.0
    assert report.baseline_score < 100.0
    assert report.met and report.score == 100.0
    assert 1 <= len(report.kept_float) <= 2


def test_copied_observers_give_the_same_program_as_recalibrating():
    cal = batches()
    ep = export_model(outlier_net(), cal[0], ir="core")
    calibrated = prepare_pt2e(ep.module(), XnnpackQuantizer())
    calibrate(calibrated, cal)
    float_one = XnnpackQuantizer().set_module_name("fc3", None)
    reused = prepare_pt2e(ep.module(), copy.deepcopy(float_one))
    assert _reuse_observers(calibrated, reused) == []
    fresh = prepare_pt2e(ep.module(), copy.deepcopy(float_one))
    calibrate(fresh, cal)
    a, b = convert_pt2e(reused), convert_pt2e(fresh)
    for batch in cal:
        assert torch.equal(a(*batch), b(*batch))


def test_bad_arguments_say_what_to_do():
    cal = batches(1)
    with pytest.raises(ValueError, match="exactly one of"):
        Budget()
    with pytest.raises(ValueError, match="tolerance"):
        metric_budget(metric=lambda m: 0.0, tolerance=-1)
    with pytest.raises(ValueError, match="post-training"):
        find_float_fallback(outlier_net(), cal[0], cal, budget=sqnr_budget(min_sqnr_db=1.0),
                            quantizer=XnnpackQuantizer(get_qat_config()), progress=False)
    with pytest.raises(ValueError, match="unknown candidate"):
        find_float_fallback(outlier_net(), cal[0], cal, budget=sqnr_budget(min_sqnr_db=1.0),
                            candidates=["nope"], progress=False)
    with pytest.raises(ValueError, match="empty"):
        find_float_fallback(outlier_net(), cal[0], [], budget=sqnr_budget(min_sqnr_db=1.0),
                            progress=False)


def test_observers_without_a_twin_are_calibrated_alone_to_the_same_state():
    # With mlp_block's relu float, the linear before it needs its own output
    # observer, which the all-int8 graph never had.
    model, shape = build("mlp_block", tiny=True)
    cal = example_inputs(shape, 3)
    ep = export_model(model, cal[0], ir="core")
    calibrated = prepare_pt2e(ep.module(), XnnpackQuantizer())
    calibrate(calibrated, cal)
    float_relu = XnnpackQuantizer().set_module_name("relu", None)
    reused = prepare_pt2e(ep.module(), copy.deepcopy(float_relu))
    missing = _reuse_observers(calibrated, reused)
    assert len(missing) == 2
    _calibrate_only(reused, missing, cal)
    fresh = prepare_pt2e(ep.module(), copy.deepcopy(float_relu))
    calibrate(fresh, cal)
    a, b = convert_pt2e(reused), convert_pt2e(fresh)
    for batch in cal:
        assert torch.equal(a(*batch), b(*batch))
