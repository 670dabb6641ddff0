"""``xnnquant.quantizer.testing``, the public snapshot helpers, tested the way a user's suite uses them.

Regenerate the snapshots with ``EXPECTTEST_ACCEPT=1`` and read every line.
"""

from __future__ import annotations

import re

import expecttest
import pytest
import torch
from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

from xnnquant.quantizer import AnnotationReport, XnnpackQuantizer, export_model
from xnnquant.quantizer.testing import (
    QuantizedSnapshotMixin,
    graph_text,
    quantize_for_snapshot,
    report_text,
)


class TwoLayer(torch.nn.Module):
    """The README walkthrough's model."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 32)
        self.fc2 = torch.nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def _inputs():
    return (torch.linspace(-1, 1, 32).reshape(2, 16),)


class TestReadmeExample(expecttest.TestCase):
    def test_three_lines_pin_the_quantized_graph(self):
        torch.manual_seed(0)
        model = TwoLayer().eval()
        # The README's three lines, as written there:
        from xnnquant.quantizer.testing import quantized_graph_text
        text = quantized_graph_text(model, (torch.linspace(-1, 1, 32).reshape(2, 16),), ir="core")
        self.assertExpectedInline(text, """\
dequantize_per_channel_default = quantized_decomposed.dequantize_per_channel(quantize_per_channel_default, _scale_0, _zero_point_0, 0, -127, 127, int8)
dequantize_per_channel_default_1 = quantized_decomposed.dequantize_per_channel(quantize_per_channel_default_1, _scale_1, _zero_point_1, 0, -127, 127, int8)
quantize_per_tensor_default = quantized_decomposed.quantize_per_tensor(x, 0.007839, 0, -128, 127, int8)
dequantize_per_tensor_default = quantized_decomposed.dequantize_per_tensor(quantize_per_tensor_default, 0.007839, 0, -128, 127, int8)
permute = aten.permute(dequantize_per_channel_default, [1, 0])
addmm = aten.addmm(fc1_bias, dequantize_per_tensor_default, permute)
relu = aten.relu(addmm)
quantize_per_tensor_default_1 = quantized_decomposed.quantize_per_tensor(relu, 0.002915, -128, -128, 127, int8)
dequantize_per_tensor_default_1 = quantized_decomposed.dequantize_per_tensor(quantize_per_tensor_default_1, 0.002915, -128, -128, 127, int8)
permute_1 = aten.permute(dequantize_per_channel_default_1, [1, 0])
addmm_1 = aten.addmm(fc2_bias, dequantize_per_tensor_default_1, permute_1)
quantize_per_tensor_default_2 = quantized_decomposed.quantize_per_tensor(addmm_1, 0.001613, -32, -128, 127, int8)
dequantize_per_tensor_default_2 = quantized_decomposed.dequantize_per_tensor(quantize_per_tensor_default_2, 0.001613, -32, -128, 127, int8)""")


class TestMixin(QuantizedSnapshotMixin, expecttest.TestCase):
    def test_both_irs_in_one_call_and_ir_invariance(self):
        torch.manual_seed(0)
        converted = self.assertQuantizedInline(TwoLayer().eval(), _inputs(), """\
# training IR
linear = aten.linear(x', quantize_per_channel_default', fc1_bias)
relu = aten.relu(linear)
linear_1 = aten.linear(relu', quantize_per_channel_default_1', fc2_bias)
# core IR
permute = aten.permute(quantize_per_channel_default', [1, 0])
addmm = aten.addmm(fc1_bias, x', permute)
relu = aten.relu(addmm)
permute_1 = aten.permute(quantize_per_channel_default_1', [1, 0])
addmm_1 = aten.addmm(fc2_bias, relu', permute_1)""", qdq="none", ir_invariant=True)
        assert set(converted) == {"training", "core"}

    def test_ir_invariance_can_fail(self):
        torch.manual_seed(0)
        # A factory that quantizes the training IR and nothing on the core IR.
        quantizers = iter([XnnpackQuantizer(), XnnpackQuantizer(None)])
        with pytest.raises(AssertionError, match="patterns quantized on the training IR and the core IR differ"):
            self.assertQuantizedInline(TwoLayer().eval(), _inputs(), "", ir_invariant=True,
                                       make_quantizer=lambda: next(quantizers))

    def test_a_wrong_snapshot_fails(self):
        torch.manual_seed(0)
        with pytest.raises(AssertionError):
            self.assertQuantizedInline(TwoLayer().eval(), _inputs(), "# training IR\n", irs=("training",))


def test_qparams_detail_drops_only_the_int8_range():
    torch.manual_seed(0)
    converted, _ = quantize_for_snapshot(TwoLayer().eval(), _inputs(), ir="training")
    full = graph_text(converted).splitlines()
    short = graph_text(converted, qdq="qparams").splitlines()
    assert len(full) == len(short)
    assert full[2].endswith(", -128, 127, int8)") and short[2] == full[2][: -len(", -128, 127, int8)")] + ")"
    assert short[0].endswith("_scale_0, _zero_point_0, 0)")  # per-channel keeps its axis
    unrounded = graph_text(converted, digits=None)
    assert unrounded != graph_text(converted) and len(unrounded) > len(graph_text(converted))


def test_prepared_graph_shows_its_observers():
    torch.manual_seed(0)
    gm = export_model(TwoLayer().eval(), _inputs(), ir="core").module()
    prepared = prepare_pt2e(gm, XnnpackQuantizer())
    text = graph_text(prepared)
    assert re.search(r"^activation_post_process_\d+ = HistogramObserver\(x\)$", text, re.M), text
    assert "PerChannelMinMaxObserver" in text and "_guards_fn" not in text


def test_report_text_lists_float_nodes_with_their_reason():
    torch.manual_seed(0)
    _, quantizer = quantize_for_snapshot(
        TwoLayer().eval(), _inputs(), ir="core",
        make_quantizer=lambda: XnnpackQuantizer().set_module_name("fc2", None))
    assert report_text(quantizer.report, only="float") == (
        "permute_1: aten.permute.default float permute (excluded by config (module name 'fc2' is set to None))\n"
        "addmm_1: aten.addmm.default float linear (excluded by config (module name 'fc2' is set to None))\n"
        "3 nodes quantized (linear=1); 2 left in float"
    )
    assert len(report_text(quantizer.report).splitlines()) == 6


def test_bad_arguments_are_rejected():
    gm = torch.fx.symbolic_trace(TwoLayer())
    with pytest.raises(ValueError, match="qdq must be one of"):
        graph_text(gm, qdq="some")
    with pytest.raises(ValueError, match="only must be"):
        report_text(AnnotationReport(), only="x")
    with pytest.raises(TypeError, match="AnnotationReport"):
        report_text("not a report")
    with pytest.raises(ValueError, match="ir must be one of"):
        quantize_for_snapshot(TwoLayer(), _inputs(), ir="edge")


def test_the_model_is_not_modified():
    torch.manual_seed(0)
    model = TwoLayer().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantize_for_snapshot(model, _inputs(), ir="core")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
