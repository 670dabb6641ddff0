"""End-to-end tests of ``lower_to_xnnpack``: quantize, lower, run the ``.pte``, compare.

Each case of ``CASES`` is quantized with ``XnnpackQuantizer()`` on the IRs it
lists, lowered (which runs the numeric self-check), executed through
``executorch.runtime`` and compared with the converted graph's eager output:
they must agree within one step of the output quantization (XNNPACK and the
reference q/dq graph round differently at most once), and the self-check must
have measured the same.  The SQNR against the fp32 model is printed with
``-s`` and checked against a floor.

Beyond the cases: the graph each pre-lowering pass is for (``GRAPH_FOR_PASS``),
the ``linear → matmul of two activations → linear`` program of issue 8 whose
q/dq ExecuTorch's partitioner used to delegate without Converts, the
self-check's criterion and errors, and lowering from two threads at once.
"""

from __future__ import annotations

import copy
import importlib
import logging
import math
import os
import re
import threading
from dataclasses import dataclass
from typing import Callable

import pytest
import torch
from torch import nn

from tests.support import run_at_once
from xnnquant.passes import (
    PRE_LOWERING_PASSES,
    LoweredProgram,
    LoweringError,
    lower_to_xnnpack,
    run_pipeline,
)
from xnnquant.quantizer import XnnpackQuantizer, get_dynamic_config
from xnnquant.quantizer.workflow import export_model, quantize, sqnr

# The module, not the function that xnnquant.passes exports under the same name.
lowering = importlib.import_module("xnnquant.passes.lower_to_xnnpack")

IRS = ("training", "core")


def make_quantizer():
    """The quantizer under test: ``XnnpackQuantizer`` with its default static int8 config."""
    return XnnpackQuantizer()


class _Linear(nn.Module):
    def __init__(self, bias=True):
        super().__init__()
        self.fc = nn.Linear(8, 6, bias=bias)

    def forward(self, x):
        return self.fc(x)


class _ConvRelu(nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return torch.relu(self.conv(x))


class _ConvPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)


class _AddRelu(nn.Module):
    def forward(self, x, y):
        return torch.relu(x + y)


class _Residual(nn.Module):
    """conv → eval batch norm → relu → conv, plus the identity, then relu."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        with torch.no_grad():  # non-identity statistics so a wrong fold shows
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        y = self.conv2(torch.relu(self.bn(self.conv1(x))))
        return torch.relu(y + x)


@dataclass(frozen=True)
class Case:
    make: Callable[[], nn.Module]
    shapes: tuple
    irs: tuple = IRS
    min_sqnr: float = 25.0
    notes: str = ""

    def __post_init__(self):
        # A case that names no IR, or a misspelt one, would silently test nothing.
        if not self.irs or set(self.irs) - set(IRS):
            raise ValueError(f"Case.irs must be a non-empty subset of {IRS}, got {self.irs}")


CASES = {
    "linear": Case(lambda: _Linear(), ((4, 8),)),
    # Core IR: the aten.mm spelling, the less common one.
    "linear_no_bias": Case(lambda: _Linear(bias=False), ((4, 8),), irs=("core",)),
    "linear_3d": Case(lambda: _Linear(), ((2, 3, 8),)),
    # Core-IR convolution is covered by max_pool and residual_bn; keep the suite fast.
    "conv2d_relu": Case(lambda: _ConvRelu(nn.Conv2d(3, 4, 3)), ((1, 3, 8, 8),), irs=("training",)),
    "depthwise_conv": Case(lambda: _ConvRelu(nn.Conv2d(4, 4, 3, groups=4)), ((1, 4, 8, 8),),
                           irs=("training",)),
    "conv1d": Case(lambda: _ConvRelu(nn.Conv1d(3, 4, 3)), ((1, 3, 10),), irs=("training",)),
    "max_pool": Case(_ConvPool, ((1, 3, 8, 8),)),
    "add_relu": Case(_AddRelu, ((1, 4, 4, 4), (1, 4, 4, 4)), irs=("training",)),
    "residual_bn": Case(_Residual, ((1, 4, 8, 8),)),
}

# Measured numbers, printed at the end of the module with ``pytest -s``.
MEASURED: dict = {}
# (case, ir) → (code, state dict) of the converted graph before it was lowered.
UNTOUCHED: dict = {}


def _inputs(case: Case, seed: int = 1) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*s, generator=gen) for s in case.shapes)


def _model(case: Case) -> nn.Module:
    torch.manual_seed(0)
    return case.make().eval()


def _output_scale(gm) -> float:
    """Scale of the dequantize that feeds the graph output."""
    out = next(n for n in gm.graph.nodes if n.op == "output")
    node = out.args[0]
    while isinstance(node, (tuple, list)):
        node = node[0]
    assert "dequantize" in str(node.target), f"output is not dequantized: {node.format_node()}"
    return float(node.args[1])


def _case_params():
    return [pytest.param(name, ir, id=f"{name}-{ir}") for name, case in CASES.items() for ir in case.irs]


@pytest.fixture(scope="module")
def quantizer():
    return make_quantizer()


@pytest.fixture(scope="module")
def lowered_cache(quantizer):
    """(case, ir) → (model, inputs, converted graph, LoweredProgram), built once per module."""
    cache = {}

    def get(name: str, ir: str):
        if (name, ir) not in cache:
            case = CASES[name]
            model, inputs = _model(case), _inputs(case)
            calibration = [_inputs(case, seed) for seed in range(1, 5)]
            converted = quantize(model, inputs, calibration, quantizer, ir=ir)
            UNTOUCHED[name, ir] = (converted.code,
                                   {k: v.clone() for k, v in converted.state_dict().items()})
            cache[name, ir] = (model, inputs, converted, lower_to_xnnpack(converted, inputs))
        return cache[name, ir]

    yield get
    if MEASURED:
        print("\ncase                     delegates  outside  max|pte-graph|/LSB  self-check SQNR  "
              "SQNR vs fp32")
        for key, row in sorted(MEASURED.items()):
            print(f"{key:<24} {row['delegates']:>9}  {row['outside']!s:>7}  "
                  f"{row['lsb']:>18.2f}  {row['check_sqnr'] or float('nan'):>12.1f} dB  "
                  f"{row['sqnr']:>8.1f} dB")


@pytest.mark.slow  # lowers every case
@pytest.mark.parametrize("name, ir", _case_params())
def test_lowered_program_matches_converted_graph(lowered_cache, name, ir):
    model, inputs, converted, lowered = lowered_cache(name, ir)
    report = lowered.report

    assert report.fully_delegated, report.format(delegated=False)
    assert report.num_delegates == 1
    assert report.qdq_outside == 0
    assert report.pte_size == len(lowered.buffer) > 0

    (out,) = lowered.run(*inputs)
    expected = converted(*inputs)
    step = _output_scale(converted)
    lsb = (out - expected).abs().max().item() / step
    quality = sqnr(model(*inputs), out)
    check = report.self_check
    MEASURED[f"{name}-{ir}"] = dict(delegates=report.num_delegates, outside=len(report.outside_ops),
                                    lsb=lsb, sqnr=quality, check_sqnr=check.sqnr)
    assert lsb <= 1.0 + 1e-4, f"runtime and converted graph differ by {lsb:.2f} output steps"
    assert quality >= CASES[name].min_sqnr
    # The self-check ran on the same inputs, so it must have seen the same difference.
    assert check.ran and check.passed, report.format()
    (output,) = check.outputs
    assert output.kind == "dequantized"
    assert output.step == pytest.approx(step)
    assert output.max_steps == pytest.approx(lsb, abs=1e-6)
    assert report.boundary_problems == ()


def _fp32_core_max_pool():
    x = torch.randn(1, 3, 8, 8)
    return export_model(_ConvPool().eval(), (x,), ir="core"), (x,)


def _quantized_core_linear_with_split_views():
    # Imported here: test_recompose_linear imports this module.
    from .test_recompose_linear import _split_views_with_qdq

    model, x = nn.Sequential(nn.Linear(8, 6)).eval(), torch.randn(2, 3, 8)
    return _split_views_with_qdq(quantize(model, (x,), None, make_quantizer(), ir="core")), (x,)


def _quantized_squeeze_unsqueeze():
    from tests.quantizer.cases import quantize_case

    _, converted, x, _ = quantize_case("squeeze", "training")
    return converted, x


def _quantized_layer_norm_between_linears():
    model = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 4)).eval()
    x = torch.randn(2, 3, 8)
    return quantize(model, (x,), None, make_quantizer(), ir="training"), (x,)


# Each pre-lowering pass, in pipeline order, and a builder of the graph that needs it.
GRAPH_FOR_PASS = {
    "RewriteMaxPoolWithIndices": _fp32_core_max_pool,
    "RecomposeLinear": _quantized_core_linear_with_split_views,
    "RewriteSqueezeAsView": _quantized_squeeze_unsqueeze,
    "DecomposeLayerNorm": _quantized_layer_norm_between_linears,
}


def test_every_pre_lowering_pass_has_a_graph_that_needs_it():
    assert [p.__name__ for p in PRE_LOWERING_PASSES] == list(GRAPH_FOR_PASS)


@pytest.mark.parametrize("pass_name", list(GRAPH_FOR_PASS))
def test_each_pass_is_what_delegates_its_graph(pass_name):
    program, inputs = GRAPH_FOR_PASS[pass_name]()
    others = [p for p in PRE_LOWERING_PASSES if p.__name__ != pass_name]
    with pytest.raises(LoweringError, match="not everything was delegated"):
        lower_to_xnnpack(program, inputs, passes=others, require_full_delegation=True)
    lowered = lower_to_xnnpack(program, inputs, require_full_delegation=True)
    assert pass_name in lowered.report.passes_changed
    assert lowered.report.self_check.passed, lowered.report.format()


def test_input_graph_module_is_not_modified(lowered_cache):
    # The cache recorded the converted graph before lowering it (and self-checking it).
    ir = "core"
    _, _, converted, _ = lowered_cache("max_pool", ir)
    code_before, state_before = UNTOUCHED["max_pool", ir]
    assert converted.code == code_before
    state_after = converted.state_dict()
    assert state_after.keys() == state_before.keys()
    assert all(torch.equal(state_after[k], v) for k, v in state_before.items())


def test_same_input_gives_same_bytes(lowered_cache):
    _, inputs, converted, lowered = lowered_cache("linear", "training")
    again = lower_to_xnnpack(converted, inputs)
    assert again.buffer == lowered.buffer


def test_fp32_training_ir_conv_lowers_and_matches_eager():
    torch.manual_seed(0)
    model = _ConvRelu(nn.Conv2d(3, 4, 3)).eval()
    x = torch.randn(1, 3, 8, 8)
    lowered = lower_to_xnnpack(export_model(model, (x,), ir="training"), (x,))
    assert lowered.report.fully_delegated, str(lowered.report)
    assert lowered.report.passes_changed == ()
    torch.testing.assert_close(lowered.run(x)[0], model(x), atol=1e-5, rtol=1e-5)


def test_fp32_core_ir_max_pool_is_delegated_after_rewrite():
    model = _ConvPool().eval()
    x = torch.randn(1, 3, 8, 8)
    ep = export_model(model, (x,), ir="core")
    lowered = lower_to_xnnpack(ep, (x,))
    assert "RewriteMaxPoolWithIndices" in lowered.report.passes_changed
    assert lowered.report.fully_delegated, str(lowered.report)
    torch.testing.assert_close(lowered.run(x)[0], model(x), atol=1e-5, rtol=1e-5)


def test_load_method_can_be_executed_repeatedly(lowered_cache):
    _, inputs, _, lowered = lowered_cache("linear", "training")
    method = lowered.load_method()
    first = method.execute(list(inputs))[0].clone()
    second = method.execute(list(inputs))[0]
    assert torch.equal(first, second)


def test_save_writes_the_buffer_and_path_argument_saves(tmp_path, lowered_cache):
    _, inputs, converted, lowered = lowered_cache("linear", "training")
    target = lowered.save(tmp_path / "sub" / "model.pte")
    assert target.read_bytes() == lowered.buffer
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.pte"]


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch, lowered_cache):
    lowered: LoweredProgram = lowered_cache("linear", "training")[3]
    target = tmp_path / "model.pte"
    target.write_bytes(b"previous")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        lowered.save(target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pte"]


def test_saved_file_gets_the_permissions_open_would_give(tmp_path, lowered_cache):
    # mkstemp alone creates 0600 files: a .pte that other users (or a web server) cannot read.
    lowered: LoweredProgram = lowered_cache("linear", "training")[3]
    umask = os.umask(0)
    os.umask(umask)
    mode = lowered.save(tmp_path / "model.pte").stat().st_mode & 0o777
    with open(tmp_path / "plain", "wb"):
        pass
    assert mode == (tmp_path / "plain").stat().st_mode & 0o777 == 0o666 & ~umask, oct(mode)


def test_pipeline_reports_what_changed():
    x = torch.randn(1, 3, 8, 8)
    gm = export_model(_ConvPool().eval(), (x,), ir="core").module()
    result = run_pipeline(copy.deepcopy(gm), PRE_LOWERING_PASSES)
    assert result.changed == ("RewriteMaxPoolWithIndices",)
    again = run_pipeline(result.graph_module, PRE_LOWERING_PASSES)
    assert again.changed == ()


def test_wrong_example_inputs_raise_a_clear_error(lowered_cache):
    _, _, converted, _ = lowered_cache("linear", "training")
    with pytest.raises(LoweringError, match="(?s)re-exporting the graph failed.*example_inputs"):
        lower_to_xnnpack(converted, (torch.randn(4, 5),))


def test_op_without_kernel_raises_a_clear_error():
    @torch.library.custom_op("xnnquant_test::twice", mutates_args=())
    def twice(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @twice.register_fake
    def _(x):
        return torch.empty_like(x)

    class Model(nn.Module):
        def forward(self, x):
            return torch.ops.xnnquant_test.twice(torch.relu(x))

    x = torch.randn(2, 3)
    with pytest.raises(LoweringError, match="(?si)Missing out variants.*xnnquant_test::twice.*replace"):
        lower_to_xnnpack(export_model(Model(), (x,)), (x,))


def test_non_tuple_inputs_and_wrong_program_type_are_rejected(lowered_cache):
    _, inputs, converted, _ = lowered_cache("linear", "training")
    with pytest.raises(TypeError, match="tuple"):
        lower_to_xnnpack(converted, list(inputs))
    with pytest.raises(TypeError, match="GraphModule"):
        lower_to_xnnpack(_Linear(), inputs)


# --------------------------------------------------------------------------- issue 8: q/dq of rejected ops


class _MatmulOfActivations(nn.Module):
    """linear → matmul of two activations (2-D) → linear.

    The quantizer keeps the matmul float (XNNPACK has no int8 kernel for it),
    so it sits between the first linear's dequantize and the second linear's
    quantize, and its second operand is the dequantized transpose of the input.
    """

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(4, 6)

    def forward(self, x):
        return self.fc2(torch.matmul(self.fc1(x), x.t()))


class _ConvWithActivationWeight(nn.Module):
    """A conv whose weight is computed (a linear's output): ExecuTorch's conv config rejects it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4 * 3 * 3 * 3)
        self.conv = nn.Conv2d(3, 3, 1)
        self.out = nn.Conv2d(4, 4, 1)

    def forward(self, x, z):
        weight = self.fc(z).view(4, 3, 3, 3)
        return self.out(nn.functional.conv2d(self.conv(x), weight))


REJECTED_OPS = {
    "matmul": Case(_MatmulOfActivations, ((4, 8),)),
    "conv_activation_weight": Case(_ConvWithActivationWeight, ((1, 3, 8, 8), (1, 8)), irs=("core",)),
}


@pytest.fixture(scope="module")
def rejected_cache():
    """(case, ir) → (model, inputs, converted graph) for ``REJECTED_OPS``."""
    cache = {}

    def get(name: str, ir: str):
        if (name, ir) not in cache:
            case = REJECTED_OPS[name]
            model, inputs = _model(case), _inputs(case)
            calibration = [_inputs(case, seed) for seed in range(1, 5)]
            cache[name, ir] = (model, inputs, quantize(model, inputs, calibration, make_quantizer(), ir=ir))
        return cache[name, ir]

    return get


def _rejected_params():
    return [pytest.param(name, ir, id=f"{name}-{ir}")
            for name, case in REJECTED_OPS.items() for ir in case.irs]


@pytest.mark.parametrize("name, ir", _rejected_params())
def test_op_the_partitioner_rejects_runs_in_fp32_between_explicit_converts(rejected_cache, name, ir):
    model, inputs, converted = rejected_cache(name, ir)
    lowered = lower_to_xnnpack(converted, inputs)
    report = lowered.report

    # The rejected op (fp32 mm / convolution of two activations) runs outside the
    # delegate, with the portable kernel; its q/dq neighbours convert inside.
    target = {"matmul": "aten.mm.default", "conv_activation_weight": "aten.convolution.default"}[name]
    assert report.non_delegated_ops == [target]
    assert report.qdq_outside == 0
    assert report.boundary_problems == ()
    assert report.self_check.passed, report.format()

    (out,) = lowered.run(*inputs)
    lsb = (out - converted(*inputs)).abs().max().item() / _output_scale(converted)
    quality = sqnr(model(*inputs), out)
    MEASURED[f"{name}-{ir}"] = dict(delegates=report.num_delegates, outside=len(report.outside_ops),
                                    lsb=lsb, sqnr=quality, check_sqnr=report.self_check.sqnr)
    assert lsb <= 1.0 + 1e-4
    assert quality >= 25.0


@pytest.mark.parametrize("name, ir", _rejected_params())
def test_without_the_guard_the_self_check_catches_the_wrong_boundary(rejected_cache, monkeypatch, name, ir):
    """The ExecuTorch behaviour the guard undoes: q/dq of a rejected op delegated without Converts."""
    model, inputs, converted = rejected_cache(name, ir)
    monkeypatch.setattr(lowering, "_guard_configs", lambda configs: configs)

    with pytest.raises(LoweringError) as info:
        lower_to_xnnpack(converted, inputs)
    message = str(info.value)
    op = {"matmul": "aten_mm_default", "conv_activation_weight": "aten_convolution_default_1"}[name]
    assert "self-check failed" in message
    assert re.search(rf"dequantize_per_tensor\S* \(\S+\) is delegated without a Convert \(implicit\), "
                     rf"but its consumer {op} \(\S+\) is outside that delegate, so it reads int8 "
                     rf"data as fp32", message), message
    assert re.search(rf"quantize_per_tensor\S* \(\S+\) is delegated without a Convert \(implicit\), "
                     rf"but its producer {op} ", message), message
    assert "set_module_name" in message

    # What the self-check refused is what the caller would have got: noise.
    lowered = lower_to_xnnpack(converted, inputs, self_check=False)
    assert not lowered.report.self_check.ran
    assert len(lowered.report.boundary_problems) == 2
    assert sqnr(model(*inputs), lowered.run(*inputs)[0]) < 10.0


def test_dynamic_quantize_taking_fp32_from_outside_is_no_boundary_problem():
    # Its quantize is implicit and its producer (the input) outside, by design:
    # XNNPACK's dynamic GEMM quantizes the fp32 activation itself.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    x = torch.randn(4, 16)
    converted = quantize(model, (x,), None, XnnpackQuantizer(get_dynamic_config()), ir="core")
    report = lower_to_xnnpack(converted, (x,)).report
    assert report.fully_delegated, report.format()
    assert report.boundary_problems == ()
    (output,) = report.self_check.outputs
    assert output.kind == "float" and output.passed  # a dynamic linear's output is fp32


# --------------------------------------------------------------------------- the self-check


def test_self_check_is_recorded_in_the_report(lowered_cache):
    report = lowered_cache("conv2d_relu", "training")[3].report
    check = report.self_check
    data = report.to_dict()["self_check"]
    assert data["ran"] is True and data["passed"] is True
    # JSON has no infinity: identical outputs (SQNR inf) are written as null.
    assert data["sqnr"] == (None if math.isinf(check.sqnr) else pytest.approx(check.sqnr))
    assert data["max_steps"] == pytest.approx(check.max_steps)
    assert data["outputs"][0]["kind"] == "dequantized"
    assert data["outputs"][0]["step"] == pytest.approx(check.outputs[0].step)
    assert str(report).splitlines()[-1] == check.summary()
    assert check.summary().startswith("self-check: passed on 1 output (")


def test_self_check_can_be_turned_off(lowered_cache):
    _, inputs, converted, lowered = lowered_cache("linear", "training")
    unchecked = lower_to_xnnpack(converted, inputs, self_check=False)
    assert unchecked.buffer == lowered.buffer
    assert unchecked.report.self_check.ran is False
    assert unchecked.report.self_check.passed is None
    assert unchecked.report.to_dict()["self_check"] == {
        "ran": False, "passed": None, "sqnr": None, "max_steps": None, "outputs": []}
    assert str(unchecked.report).endswith("self-check: not run (self_check=False)")


def test_failure_without_a_known_bad_boundary_names_the_delegate_edges(rejected_cache, monkeypatch):
    _, inputs, converted = rejected_cache("matmul", "core")
    monkeypatch.setattr(lowering, "MAX_OUTPUT_STEPS", -1.0)  # so that even an exact output fails
    with pytest.raises(LoweringError) as info:
        lower_to_xnnpack(converted, inputs)
    message = str(info.value)
    assert "No implicit quantize/dequantize was found outside its op's delegate" in message
    # The mm's dequantized inputs and its quantized output sit at the delegates' edges.
    assert re.search(r"dequantize_per_tensor\S* \(\S+\) at the edge of tag\d", message), message
    assert re.search(r"\n  \S*quantize_per_tensor\S* \(quantized_decomposed.quantize_per_tensor.default\) "
                     r"at the edge of tag\d", message), message
    assert "aten_mm_default (aten.mm.default): partitioner: Expected weight to be a static param" in message
    assert "self_check=False" in message


def _dequantized(values, step=0.1):
    return torch.tensor(values, dtype=torch.float32) * step


@pytest.mark.parametrize("steps_off, passes", [(0, True), (2, True), (4, True), (5, False), (40, False)])
def test_dequantized_output_may_be_off_by_at_most_four_steps(steps_off, passes):
    expected = _dequantized(range(-60, 60))
    actual = expected.clone()
    actual[7] += steps_off * 0.1
    check = lowering._judge(0, expected, actual, 0.1, quantized=True)
    assert check.max_steps == pytest.approx(steps_off)
    assert check.passed is passes


def test_dequantized_output_below_the_sqnr_floor_fails_even_within_four_steps():
    expected = _dequantized([1, -1] * 50)
    actual = expected + 0.3  # every element off by 3 steps: SQNR about -9.5 dB
    check = lowering._judge(0, expected, actual, 0.1, quantized=True)
    assert check.max_steps == pytest.approx(3.0)
    assert check.sqnr < lowering.MIN_SQNR_DB
    assert not check.passed


def test_all_zero_dequantized_output_is_judged_by_steps_alone():
    expected = torch.zeros(10)
    check = lowering._judge(0, expected, expected + 0.1, 0.1, quantized=True)
    assert check.sqnr is None and check.passed


def test_fp32_outputs_are_held_to_a_float_tolerance_and_integers_to_equality():
    expected = torch.linspace(-2, 2, 50)
    assert lowering._judge(0, expected, expected + 1e-4, None, quantized=False).passed
    assert not lowering._judge(0, expected, expected + 1e-2, None, quantized=False).passed
    indices = torch.arange(5)
    assert lowering._judge(0, indices, indices.clone(), None, quantized=True).passed
    assert not lowering._judge(0, indices, indices.flip(0), None, quantized=True).passed
    assert not lowering._judge(0, expected, expected[:10], None, quantized=False).passed


def test_fp32_program_self_check_uses_the_float_tolerance():
    torch.manual_seed(0)
    model = _ConvRelu(nn.Conv2d(3, 4, 3)).eval()
    x = torch.randn(1, 3, 8, 8)
    check = lower_to_xnnpack(export_model(model, (x,), ir="training"), (x,)).report.self_check
    (output,) = check.outputs
    assert output.kind == "fp32" and output.passed
    assert output.max_abs <= lowering.FP32_RTOL * model(x).abs().max().item()


def test_non_tensor_output_gives_a_clear_error():
    class Model(nn.Module):
        def forward(self, x):
            return torch.relu(x), x.shape[0]

    x = torch.randn(2, 3)
    with pytest.raises(LoweringError, match="(?s)output 1 of the program is 2, of type int, not a tensor"
                                           ".*self_check=False"):
        lower_to_xnnpack(export_model(Model(), (x,)), (x,))
    assert lower_to_xnnpack(export_model(Model(), (x,)), (x,), self_check=False).report.pte_size > 0


# --------------------------------------------------------------------------- threads


def _why_logger():
    """A logger ExecuTorch's XNNPACK partitioner configs write their ``WhyNoPartition`` records to."""
    import executorch.backends.xnnpack.partition.config.gemm_configs as gemm_configs

    return gemm_configs.why.logger


@pytest.mark.slow  # several rounds of three lowerings
def test_two_programs_lowered_at_once_report_as_when_lowered_one_after_the_other(rejected_cache):
    jobs = {"matmul": rejected_cache("matmul", "training")[1:],
            "conv_activation_weight": rejected_cache("conv_activation_weight", "core")[1:]}
    serial = {name: lower_to_xnnpack(converted, inputs) for name, (inputs, converted) in jobs.items()}
    # Both have a partitioner reason, so both captures are exercised.
    assert all(any(n.detail == "Expected weight to be a static param" for n in lowered.report.not_delegated)
               for lowered in serial.values())

    results = run_at_once({name: (lambda c=converted, i=inputs: lower_to_xnnpack(c, i))
                           for name, (inputs, converted) in jobs.items()})
    for name, lowered in serial.items():
        assert results[name].report.to_dict() == lowered.report.to_dict(), name
        assert results[name].buffer == lowered.buffer, name


def test_capture_takes_only_its_own_thread_and_leaves_the_loggers_as_they_were():
    logger = _why_logger()
    level, filters = logger.level, list(logger.filters)
    seen = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    watcher = Collect(logging.DEBUG)
    parent = logging.getLogger("executorch.backends.xnnpack")
    parent.addHandler(watcher)
    from executorch.exir.backend.utils import WhyNoPartition

    why = WhyNoPartition(logger)
    node = torch.fx.Graph().placeholder("x")

    def other_thread():
        why(node, "from another thread")  # DEBUG: the level this logger did not let through
        logger.warning("a warning from another thread")

    try:
        with lowering._capture_why() as sink:
            assert logger.level == logging.DEBUG
            why(node, "from this thread")
            t = threading.Thread(target=other_thread)
            t.start()
            t.join()
    finally:
        parent.removeHandler(watcher)
    assert sink == {"x": ["from this thread"]}
    # The other thread's warning propagated as it would have without the capture,
    # and no debug record reached anyone.
    assert seen == ["a warning from another thread"]
    assert (logger.level, logger.filters) == (level, filters)


def test_a_forward_argument_named_like_a_builtin_is_still_an_input():
    # nn.Conv1d.forward(input): fx names the placeholder input_1 while the signature says
    # input, and the lowering once counted 0 inputs ("the program takes 0 inputs, got 1").
    x = torch.randn(1, 6, 4)
    model = nn.Conv1d(6, 4, 1).eval()
    lowered = lower_to_xnnpack(export_model(model, (x,)), (x,))
    assert lowered.input_shapes == ((torch.float32, (1, 6, 4)),)
    torch.testing.assert_close(lowered.run(x)[0], model(x), atol=1e-5, rtol=1e-5)
