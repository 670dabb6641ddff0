"""Bad input to the quantize side gets a clear error (issue #10, part 3).

``CASES`` is the table: each case builds its bad input, runs one call of the
public API, and names the error type and a regex its message must match (what
went wrong *and* what to do).  Cases that are already tested elsewhere are
listed in ``COVERED_ELSEWHERE`` with the test that covers them, and a guard
test checks that those tests still exist, so the list stays complete.

Inputs that are unusual but fine (all-zero or constant activations, weights
near 1e30) are not errors: the tests after the table check that they quantize,
lower, run and agree with the converted graph.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import re
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import pytest
import torch
from torch import nn
from torchao.quantization.pt2e import MinMaxObserver, PerChannelMinMaxObserver
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.utils import QuantizationConfig

from xnnquant.quantizer import (
    MIN_SCALE,
    CalibrationError,
    ConfigError,
    ExportError,
    ModelError,
    XnnpackQuantizer,
    convert,
    export_model,
    get_config,
    quantize,
)

X = (torch.randn(2, 8),)


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(8, 6).eval()


def _quantize(batches, model=None, **kwargs):
    return quantize(model if model is not None else _linear(), X, batches, XnnpackQuantizer(),
                    alarm_sqnr_db=None, **kwargs)


def _convbn_train() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())  # left in train mode


XC = (torch.randn(2, 3, 8, 8),)


def _loader_that_fails_at(k: int):
    for i in range(k):
        yield (torch.randn(2, 8),)
    raise OSError("sample_0003.npy: unreadable")


def _dynamic_batch_too_large():
    # Export allows batch 1..4; batch 2 holds 16 rows, which the exported guards refuse in forward.
    batch = torch.export.Dim("batch", min=1, max=4)
    batches = [(torch.randn(3, 8),), (torch.randn(2, 8),), (torch.randn(16, 8),)]
    return quantize(_linear(), (torch.randn(3, 8),), batches, XnnpackQuantizer(),
                    dynamic_shapes=({0: batch},), alarm_sqnr_db=None)


def _converted():
    return _quantize(None)


def _prepared():
    return prepare_pt2e(export_model(_linear(), X).module(), XnnpackQuantizer())


class _DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # Python control flow on a tensor's value
            return x * 2
        return x - 1


def _spec(spec, **changes):
    return dataclasses.replace(spec, **changes)


def _with_weight(**changes):
    return dataclasses.replace(get_config(), weight=_spec(get_config().weight, **changes))


def _with_activation(**changes):
    act = _spec(get_config().input_activation, **changes)
    return dataclasses.replace(get_config(), input_activation=act, output_activation=act)


def _torchao_config_with_weight(**changes):
    c = get_config()
    return QuantizationConfig(c.input_activation, c.output_activation,
                              _spec(c.weight, **changes), None, False)


def _overflowing_weights():
    model = _linear()
    with torch.no_grad():
        model.weight.fill_(1e38)  # finite, but x @ w.T overflows float32
    return quantize(model, (torch.full((2, 8), 10.0),), None, XnnpackQuantizer(), alarm_sqnr_db=None)


def _inf_weight():
    model = _linear()
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    return _quantize(None, model=model)


@dataclass(frozen=True)
class Case:
    run: Callable[[], object]
    error: type
    match: str  # regex on str(error): what is wrong and what to do
    chained: Optional[type] = None  # the type of __cause__, when the original error must be kept


NAN_BATCH = torch.randn(2, 8)
NAN_BATCH[1, 3] = float("nan")
INF_BATCH = torch.randn(2, 8)
INF_BATCH[0, 0] = float("-inf")

CASES = {
    # -- calibration data
    "calibration NaN in a later batch": Case(
        lambda: _quantize([(torch.randn(2, 8),), (NAN_BATCH,)]), CalibrationError,
        r"batch 1 input 0 contains NaN or Inf; clean or clip the data"),
    "calibration Inf": Case(lambda: _quantize([(INF_BATCH,)]), CalibrationError,
                            r"batch 0 input 0 contains NaN or Inf"),
    "calibration empty generator": Case(lambda: _quantize(iter(())), CalibrationError,
                                        r"empty: pass at least one batch"),
    "calibration int64": Case(lambda: _quantize([(torch.ones(2, 8, dtype=torch.long),)]),
                              CalibrationError,
                              r"dtype torch\.int64, the model was exported with torch\.float32; "
                              r"convert the data \(e\.g\. x\.to\(torch\.float32\)\)"),
    "calibration float16": Case(lambda: _quantize([(torch.randn(2, 8).half(),)]), CalibrationError,
                                r"dtype torch\.float16, .*x\.to\(torch\.float32\)"),
    "calibration bfloat16": Case(lambda: _quantize([(torch.randn(2, 8).bfloat16(),)]), CalibrationError,
                                 r"dtype torch\.bfloat16, .*x\.to\(torch\.float32\)"),
    "calibration shape differs from the export": Case(
        lambda: _quantize([(torch.randn(2, 8),), (torch.randn(2, 9),)]), CalibrationError,
        r"batch 1 input 0 has shape \(2, 9\), the model was exported for \(2, 8\); reshape the "
        r"data, or export with dynamic_shapes"),
    "calibration rank differs": Case(lambda: _quantize([(torch.randn(8),)]), CalibrationError,
                                     r"shape \(8,\), the model was exported for \(2, 8\)"),
    "calibration batch with too many inputs": Case(
        lambda: _quantize([(torch.randn(2, 8), torch.randn(2, 8))]), CalibrationError,
        r"batch 0 has 2 inputs, the exported model takes 1; give each batch as a tuple"),
    "data loader raises at batch 3": Case(
        lambda: _quantize(_loader_that_fails_at(3)), CalibrationError,
        r"(?s)raised OSError while producing batch 3: sample_0003\.npy: unreadable\nFix the data "
        r"loader; nothing was converted", chained=OSError),
    "forward raises on batch 2": Case(
        _dynamic_batch_too_large, CalibrationError,
        r"(?s)calibration batch 2 raised \w+ in the model's forward \(2 batches ran before it\).*"
        r"Fix that batch or the model", chained=Exception),
    # -- the model
    "batch norm left in train mode": Case(
        lambda: quantize(_convbn_train(), XC, None, XnnpackQuantizer()), ModelError,
        r"in training mode \(BatchNorm2d '1'\).*Call model\.eval\(\) before quantizing"),
    "dropout left in train mode": Case(
        lambda: quantize(nn.Sequential(nn.Linear(8, 6), nn.Dropout(0.2)), X, None, XnnpackQuantizer()),
        ModelError, r"in training mode \(Dropout '1'\).*model\.eval\(\)"),
    "program exported in train mode": Case(
        lambda: quantize(torch.export.export(_convbn_train(), XC), XC, None, XnnpackQuantizer()),
        ModelError, r"in training mode \(batch norm node '\w+'\).*model\.eval\(\)"),
    # torchao's prepare_pt2e folds a conv's batch norm (with its running statistics) before
    # the quantizer sees the graph, so a dropout is what is left to find there.
    "train-mode graph given to prepare_pt2e": Case(
        lambda: prepare_pt2e(torch.export.export(nn.Sequential(nn.Linear(8, 6), nn.Dropout(0.2)), X).module(),
                             XnnpackQuantizer()),
        ModelError, r"in training mode \(dropout node '\w+'\).*qat_train="),
    "converted graph given to quantize": Case(
        lambda: _quantize(None, model=_converted()), ModelError,
        r"already quantized \(node '\w+' is quantized_decomposed::\w+\): quantize the original "
        r"float model"),
    "converted graph given to prepare_pt2e": Case(
        lambda: prepare_pt2e(_converted(), XnnpackQuantizer()), ModelError, r"already quantized"),
    "prepared graph given to quantize": Case(
        lambda: _quantize(None, model=_prepared()), ModelError,
        r"already prepared for quantization \(it holds the observer '\w+'\): calibrate it and "
        r"call convert"),
    "data-dependent control flow": Case(
        lambda: quantize(_DataDependent(), (torch.randn(4),), None, XnnpackQuantizer()), ExportError,
        r"(?s)_DataDependent\.forward branches on the value of a tensor .*torch\.where.*torch\.cond",
        chained=Exception),
    # -- configs
    "not a config to XnnpackQuantizer()": Case(lambda: XnnpackQuantizer("int8"), ConfigError,
                                               r"expected a QuantConfig .*got str; build one with "
                                               r"xnnquant\.quantizer\.get_config"),
    "not a config to set_global": Case(lambda: XnnpackQuantizer().set_global(8), ConfigError,
                                       r"got int; build one with"),
    "not a config to set_module_name": Case(lambda: XnnpackQuantizer().set_module_name("fc", {}),
                                            ConfigError, r"got dict; build one with"),
    "not a config to set_module_type": Case(
        lambda: XnnpackQuantizer().set_module_type(nn.Linear, lambda: get_config()), ConfigError,
        r"got function; build one with"),
    "not a config to set_operator_type": Case(
        lambda: XnnpackQuantizer().set_operator_type(torch.ops.aten.linear.default, "per-channel"),
        ConfigError, r"got str; build one with"),
    "weight quant_max 128": Case(lambda: _with_weight(quant_max=128), ConfigError,
                                 r"range \[-127, 128\] is outside \[-127, 127\].*quant_max=127"),
    "torchao config with weight range [-128, 127]": Case(
        lambda: XnnpackQuantizer(_torchao_config_with_weight(quant_min=-128)), ConfigError,
        r"range \[-128, 127\] is outside \[-127, 127\]; .*Set quant_min=-127"),
    "activation observer with its default eps": Case(
        lambda: _with_activation(observer_or_fake_quant_ctr=MinMaxObserver), ConfigError,
        r"input_activation: observer eps=1\.19209e-07 allows scales below 2\*\*-12.*eps=2\*\*-12"),
    "activation observer with_args but no eps": Case(
        lambda: _with_activation(observer_or_fake_quant_ctr=MinMaxObserver.with_args(reduce_range=False)),
        ConfigError, r"allows scales below 2\*\*-12"),
    "weight observer with eps 1e-9 via set_module_name": Case(
        lambda: XnnpackQuantizer().set_module_name("fc", _torchao_config_with_weight(
            observer_or_fake_quant_ctr=PerChannelMinMaxObserver.with_args(eps=1e-9))),
        ConfigError, r"weight: observer eps=1e-09 allows scales below 2\*\*-12"),
    # -- values
    "weights that overflow float32 activations": Case(
        _overflowing_weights, CalibrationError,
        r"observer '\w+' saw no finite value in 1 calibration batches.*overflow float32.*scale them down"),
    "an Inf weight": Case(_inf_weight, CalibrationError, r"recorded an infinite range \[.*inf\]"),
    "weights of 1e30 with the histogram observer": Case(
        lambda: _quantize(None, model=_huge_weights()), CalibrationError,
        r"observer '\w+' \(a HistogramObserver\) recorded values up to \d(\.\d+)?e\+\d\d.*"
        r"get_config\(observer='minmax'\)"),
    "convert before any calibration": Case(
        lambda: convert(_prepared()), CalibrationError,
        r"observer '\w+' has seen no data: the prepared model was never calibrated\. Run "
        r"calibrate\(prepared, batches\)"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_a_clear_error(name):
    case = CASES[name]
    with pytest.raises(case.error) as info, warnings.catch_warnings():
        # HistogramObserver's own notice on the Inf cases; the error below is what the user gets.
        warnings.filterwarnings("ignore", "torch.inf detected in input tensor")
        case.run()
    assert re.search(case.match, str(info.value)), str(info.value)
    if case.chained is not None:
        assert isinstance(info.value.__cause__, case.chained), repr(info.value.__cause__)


# Cases of the list that other files test; the guard below keeps this list honest.
COVERED_ELSEWHERE = {
    "calibration NaN (first batch), empty list": "tests.quantizer.test_workflows::test_calibration_errors_say_what_to_do",
    "model that will not export": "tests.quantizer.test_workflows::test_model_that_will_not_export_raises_export_error",
    "QAT on the core IR with batch norm": "tests.quantizer.test_workflows::test_qat_on_core_ir_with_batchnorm_is_refused",
    "weight quant_min -128, tiny activation eps, not a config to as_config": "tests.quantizer.test_specs::test_bad_configs_raise_clear_errors",
    "caller's model not mutated by the raw torchao flow": "tests.quantizer.test_workflows::test_caller_model_and_config_are_not_mutated",
}


@pytest.mark.parametrize("what", sorted(COVERED_ELSEWHERE))
def test_cases_covered_elsewhere_are_still_there(what):
    module, test = COVERED_ELSEWHERE[what].split("::")
    assert callable(getattr(importlib.import_module(module), test, None)), COVERED_ELSEWHERE[what]


def test_train_mode_model_is_refused_without_being_switched_or_changed():
    model = _convbn_train()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ModelError):
        quantize(model, XC, None, XnnpackQuantizer())
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no running-stat update either


def test_train_mode_model_quantizes_after_eval():
    # The error's advice works: the same model, once in eval mode, quantizes.
    converted = quantize(_convbn_train().eval(), XC, None, XnnpackQuantizer(), alarm_sqnr_db=None)
    assert any("quantize_per_tensor" in str(n.target) for n in converted.graph.nodes)


def test_raw_torchao_convert_without_calibration_only_warns_and_uses_scale_one():
    # The documented outcome that xnnquant.quantizer.convert refuses (see check_calibrated).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = convert_pt2e(_prepared())
    assert any("must run observer" in str(w.message) for w in caught)
    scales = [n.args[1] for n in converted.graph.nodes
              if n.op == "call_function" and n.target == torch.ops.quantized_decomposed.quantize_per_tensor.default]
    assert scales and all(s == 1.0 for s in scales), scales


def _activation_scales(converted) -> list:
    return [n.args[1] for n in converted.graph.nodes if n.op == "call_function"
            and n.target == torch.ops.quantized_decomposed.quantize_per_tensor.default]


@pytest.mark.parametrize("observer", ["histogram", "minmax"])
@pytest.mark.parametrize("value", [0.0, 3.0], ids=["all-zero", "constant"])
def test_constant_activations_keep_a_valid_scale_and_lower_and_run(observer, value):
    from xnnquant.passes import lower_to_xnnpack

    data = torch.full((2, 8), value)
    converted = quantize(_linear(), (data,), [(data,)], XnnpackQuantizer(get_config(observer=observer)),
                         alarm_sqnr_db=None)
    scales = _activation_scales(converted)
    assert scales and all(s >= MIN_SCALE for s in scales), scales
    lowered = lower_to_xnnpack(converted, (data,))  # the self-check compares with the graph
    assert lowered.report.fully_delegated, str(lowered.report)
    out = lowered.run(data)[0]
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, converted(data), atol=2 * max(scales), rtol=0)


def _huge_weights():
    model = _linear()
    with torch.no_grad():
        model.weight.mul_(1e30)
    return model


def test_huge_weights_are_handled_without_nan():
    # The default histogram observer refuses them (a case of the table); min/max handles them.
    from xnnquant.passes import lower_to_xnnpack

    model = _huge_weights()
    converted = quantize(model, X, None, XnnpackQuantizer(get_config(observer="minmax")),
                         alarm_sqnr_db=None)
    lowered = lower_to_xnnpack(converted, X)
    out = lowered.run(*X)[0]
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, converted(*X), rtol=0, atol=lowered.report.self_check.outputs[0].step)
    # int8 weights: one step of the output is ~1/127 of its range; the fp32 model agrees to a few steps.
    reference = model(*X).detach()
    assert (out - reference).abs().max() <= 0.05 * reference.abs().max()
