"""Workflows around the quantizer: drop-in use, QAT, dynamic, validate(), bad input, no mutation."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

from tests.support import delegate_count, lower_stock, run_pte
from xnnquant.quantizer import (
    CalibrationError,
    ExportError,
    ValidationError,
    XnnpackQuantizer,
    get_config,
    get_dynamic_config,
    get_qat_config,
    quantize,
    sqnr,
)
from xnnquant.quantizer.workflow import IRS


def _convbn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 6 * 6, 4))


X = (torch.randn(4, 3, 8, 8),)


@pytest.mark.parametrize("config_kwargs", [
    {"is_per_channel": True}, {"is_per_channel": False}, {"is_per_channel": True, "is_dynamic": True},
], ids=["per_channel", "per_tensor", "dynamic"])
def test_executorch_style_code_runs_unchanged(config_kwargs):
    """The snippet from ExecuTorch's docs, with only the class name swapped."""
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    inputs = (torch.randn(2, 16),)
    quantizer = XnnpackQuantizer().set_global(get_symmetric_quantization_config(**config_kwargs))
    m = torch.export.export(model, inputs).module()
    m = prepare_pt2e(m, quantizer)
    m(*inputs)
    m = convert_pt2e(m)
    edge, outside = lower_stock(m, inputs)
    assert outside == [] and delegate_count(edge.exported_program().graph_module) == 1
    assert sqnr(model(*inputs), run_pte(edge, inputs)) > 25.0


ET_OP_TESTS = {
    "add": ("test_add", "TestAdd", "test_qs8_add"),
    "cat": ("test_cat", "TestCat", "test_qs8_cat3"),
    "permute_copy": ("test_permute", "TestPermute", "test_qs8_permute_copy"),
    "maxpool2d": ("test_maxpool2d", "TestMaxPool2d", "test_qs8_maxpool2d"),
    "hardtanh": ("test_hardtanh", "TestHardTanh", "test_qs8_hardtanh"),
    "clamp": ("test_clamp", "TestClamp", "test_qs8_clamp"),
    "mean_dim": ("test_mean_dim", "TestMeanDim", "test_qs8_mean_dim"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ET_OP_TESTS))
def test_executorch_own_op_tests_pass_with_our_quantizer(name, monkeypatch):
    """ExecuTorch's XNNPACK op tests, run from site-packages with our quantizer swapped in."""
    import importlib

    import executorch.backends.xnnpack.test.tester.tester as tester

    module, cls, method = ET_OP_TESTS[name]
    monkeypatch.setattr(tester, "XNNPACKQuantizer", XnnpackQuantizer)
    test_cls = getattr(importlib.import_module(f"executorch.backends.xnnpack.test.ops.{module}"), cls)
    assert hasattr(test_cls, method), f"{cls}.{method} no longer exists in ExecuTorch"
    test_cls(method).debug()  # runs setUp, the test and tearDown; raises on failure


@pytest.mark.slow  # trains
def test_qat_training_ir_folds_bn_and_delegates():
    model = _convbn().train()

    def train(prepared):
        opt = torch.optim.SGD(prepared.parameters(), lr=0.01)
        for _ in range(3):
            loss = prepared(*X).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    quantizer = XnnpackQuantizer(get_qat_config())
    converted = quantize(model, X, None, quantizer, ir="training", qat_train=train)
    assert quantizer.report.pattern_counts()["conv"] == 1
    assert not any("batch_norm" in str(n.target) for n in converted.graph.nodes)
    _, outside = lower_stock(converted, X)
    assert outside == []


def test_qat_on_core_ir_with_batchnorm_is_refused():
    ep = torch.export.export(_convbn().train(), X).run_decompositions()
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    with pytest.raises(ValueError, match="training IR"):
        prepare_qat_pt2e(ep.module(), XnnpackQuantizer(get_qat_config()))


@pytest.mark.parametrize("ir", IRS)
def test_dynamic_linear_and_conv(ir):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4)).eval()
    quantizer = XnnpackQuantizer(get_dynamic_config())
    converted = quantize(model, X, [X], quantizer, ir=ir)
    counts = quantizer.report.pattern_counts()
    assert counts.get("conv") == 1 and counts.get("linear", counts.get("addmm")) == 1
    edge, outside = lower_stock(converted, X)
    assert outside == []
    assert sqnr(model(*X), run_pte(edge, X)) > 25.0


def test_validate_names_node_and_rule():
    torch.manual_seed(0)
    gm = torch.export.export(nn.Sequential(nn.Linear(4, 4)).eval(), (torch.randn(1, 4),)).module()
    quantizer = XnnpackQuantizer()
    quantizer.annotate(gm)
    linear = next(n for n in gm.graph.nodes if n.target == torch.ops.aten.linear.default)
    bad = get_config().weight.__class__(**{**get_config().weight.__dict__, "quant_min": -128})
    ann = linear.meta[Q_ANNOTATION_KEY]
    linear.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
        input_qspec_map={**ann.input_qspec_map, linear.args[1]: bad},
        output_qspec=ann.output_qspec, _annotated=True)
    with pytest.raises(ValidationError, match=r"'linear'.*\[-127, 127\]"):
        quantizer.validate(gm)


def test_validate_rejects_unshared_data_movement():

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten()).eval()
    gm = torch.export.export(model, (torch.randn(1, 3, 4, 4),)).module()
    quantizer = XnnpackQuantizer()
    quantizer.annotate(gm)
    flatten = next(n for n in gm.graph.nodes if n.target == torch.ops.aten.flatten.using_ints)
    act = get_config().output_activation
    flatten.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
        input_qspec_map={flatten.args[0]: act}, output_qspec=act, _annotated=True)
    with pytest.raises(ValidationError, match="flatten.*share"):
        quantizer.validate(gm)


def test_caller_model_and_config_are_not_mutated():
    model = _convbn().eval()
    before = copy.deepcopy(model.state_dict())
    config = get_config()
    quantizer = XnnpackQuantizer(config)
    # Raw torchao flow on ep.module(), whose parameters alias the caller's.
    gm = torch.export.export(model, X).run_decompositions().module()
    prepared = prepare_pt2e(gm, quantizer)
    prepared(*X)
    convert_pt2e(prepared)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert config == get_config() and quantizer.global_config is config


def test_calibration_errors_say_what_to_do():
    model = nn.Sequential(nn.Linear(4, 4)).eval()
    x = (torch.randn(1, 4),)
    with pytest.raises(CalibrationError, match="empty"):
        quantize(model, x, [], XnnpackQuantizer())
    with pytest.raises(CalibrationError, match="NaN or Inf"):
        quantize(model, x, [(torch.tensor([[float("nan"), 0.0, 0.0, 0.0]]),)], XnnpackQuantizer())


def test_model_that_will_not_export_raises_export_error():
    class DataDependent(nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent Python control flow
                return x * 2
            return x

    with pytest.raises(ExportError, match="traceable"):
        quantize(DataDependent(), (torch.randn(2),), None, XnnpackQuantizer())


def test_unsupported_op_stays_float_with_reason():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Softmax(dim=-1), nn.Linear(4, 2)).eval()
    quantizer = XnnpackQuantizer()
    quantize(model, (torch.randn(2, 4),), None, quantizer)
    (softmax,) = [d for d in quantizer.report.left_float]
    assert "softmax" in softmax.op and "fp32 only" in softmax.reason
    assert "1 left in float" in str(quantizer.report)


def test_dynamic_depthwise_conv_stays_float_with_reason():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4)).eval()
    quantizer = XnnpackQuantizer(get_dynamic_config())
    quantize(model, (torch.randn(1, 4, 6, 6),), None, quantizer)
    (conv,) = quantizer.report.left_float
    assert "depthwise" in conv.reason
