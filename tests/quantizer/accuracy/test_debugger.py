"""The numeric debugger blames the layer whose input quantization breaks, on both IRs."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from examples.models import build, example_inputs
from xnnquant.quantizer import XnnpackQuantizer
from xnnquant.quantizer.accuracy import compare_graphs, debug_quantization, float_reference
from xnnquant.quantizer.workflow import IRS, export_model, quantize

from .outlier import batches, outlier_net


@pytest.mark.parametrize("ir", IRS)
def test_outlier_layer_ranks_first(ir):
    model = outlier_net()
    state = copy.deepcopy(model.state_dict())
    cal = batches()
    report = debug_quantization(model, cal[0], cal, XnnpackQuantizer(), ir=ir)
    first, second = report.rows[:2]
    # fc2 reads the ×1000 channel through one per-tensor scale: its local SQNR collapses.
    assert first.module == "fc2" and first.quantized
    assert first.local_sqnr_db < 5.0
    assert second.module == "fc1"
    assert all(r.loss_db > 30.0 for r in report.rows[1:])
    # Cumulative error of the last layer is the model's output error.
    (fc3,) = [r for r in report.rows if r.module == "fc3"]
    assert fc3.sqnr_db == pytest.approx(report.output_sqnr_db)
    assert report.output_sqnr_db < 10.0
    assert [r.loss_db for r in report.rows] == sorted(r.loss_db for r in report.rows)
    assert "fc2" in report.table().splitlines()[3]
    assert report.unmatched == ()
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), f"debugger changed the caller's {key}"


@pytest.mark.parametrize("ir", IRS)
def test_clean_model_has_no_bad_layer(ir):
    cal = batches()
    report = debug_quantization(outlier_net(outlier=False), cal[0], cal, XnnpackQuantizer(), ir=ir)
    assert min(r.loss_db for r in report.rows) > 30.0
    assert report.output_sqnr_db > 30.0


def test_same_input_same_report():
    cal = batches()
    one = debug_quantization(outlier_net(), cal[0], cal, XnnpackQuantizer())
    two = debug_quantization(outlier_net(), cal[0], cal, XnnpackQuantizer())
    assert one == two


@pytest.mark.parametrize("ir", IRS)
def test_batch_norm_folded_nodes_compare_at_the_same_point(ir):
    # prepare folds batch norm into the conv: the reference must compare the
    # folded conv with conv+bn, not with the conv alone.
    model, shape = build("resnet18", tiny=True)
    cal = example_inputs(shape, 2)
    ep = export_model(model, cal[0], ir=ir)
    reference = float_reference(ep, XnnpackQuantizer())
    with torch.no_grad():
        torch.testing.assert_close(reference(*cal[0]), model(*cal[0]), rtol=1e-4, atol=1e-4)
    converted = quantize(ep, cal[0], cal, XnnpackQuantizer(), alarm_sqnr_db=None)
    report = compare_graphs(reference, converted, cal)
    assert report.unmatched == ()
    convs = [r for r in report.rows if "conv" in r.op]
    assert len(convs) >= 5
    assert all(r.sqnr_db > 20.0 for r in convs)


def test_local_off_leaves_local_empty():
    cal = batches(2)
    report = debug_quantization(outlier_net(), cal[0], cal, XnnpackQuantizer(), local=False)
    assert all(r.local_sqnr_db is None for r in report.rows)
    assert report.rows[0].loss_db == min(r.sqnr_db for r in report.rows)
    assert not math.isnan(report.output_sqnr_db)


def test_no_batches_is_an_error():
    cal = batches(1)
    ep = export_model(outlier_net(), cal[0])
    converted = quantize(ep, cal[0], cal, XnnpackQuantizer(), alarm_sqnr_db=None)
    with pytest.raises(ValueError, match="at least one batch"):
        compare_graphs(float_reference(ep, XnnpackQuantizer()), converted, [])
