"""End-to-end tests of ``lower_to_xnnpack``: quantize, lower, run the ``.pte``, compare.

Each case of ``CASES`` is quantized on the IRs it lists, lowered, executed
through ``executorch.runtime`` and compared with the converted graph's eager
output: they must agree within one step of the output quantization (XNNPACK
and the reference q/dq graph round differently at most once).  The SQNR
against the fp32 model is printed with ``-s`` and checked against a floor.

The quantizer is a parameter (:func:`make_quantizer`): the project's
``XnnpackQuantizer`` when it imports, ExecuTorch's ``XNNPACKQuantizer``
otherwise (which annotates almost nothing on the core IR, so there only the
training IR is quantized).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Callable

import pytest
import torch
from torch import nn

from xnnquant.passes import (
    PRE_LOWERING_PASSES,
    LoweredProgram,
    LoweringError,
    lower_to_xnnpack,
    run_pipeline,
)
from xnnquant.quantizer.workflow import export_model, quantize, sqnr


def make_quantizer():
    """The quantizer under test, configured for static int8 with per-channel weights."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    try:
        from xnnquant.quantizer import XnnpackQuantizer as quantizer_class
    except ImportError:  # the project quantizer has not landed: use ExecuTorch's
        quantizer_class = XNNPACKQuantizer
    return quantizer_class().set_global(get_symmetric_quantization_config(is_per_channel=True))


def project_quantizer_available() -> bool:
    try:
        from xnnquant.quantizer import XnnpackQuantizer  # noqa: F401
    except ImportError:
        return False
    return True


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
    irs: tuple = ("training", "core")
    min_sqnr: float = 25.0
    notes: str = ""


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
    params = []
    for name, case in CASES.items():
        for ir in case.irs:
            if ir == "core" and not project_quantizer_available():
                continue
            params.append(pytest.param(name, ir, id=f"{name}-{ir}"))
    return params


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
        print("\ncase                     delegates  outside  max|pte-graph|/LSB  SQNR vs fp32")
        for key, row in sorted(MEASURED.items()):
            print(f"{key:<24} {row['delegates']:>9}  {row['outside']!s:>7}  "
                  f"{row['lsb']:>18.2f}  {row['sqnr']:>8.1f} dB")


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
    MEASURED[f"{name}-{ir}"] = dict(delegates=report.num_delegates, outside=len(report.outside_ops),
                                    lsb=lsb, sqnr=quality)
    assert lsb <= 1.0 + 1e-4, f"runtime and converted graph differ by {lsb:.2f} output steps"
    assert quality >= CASES[name].min_sqnr


def test_every_case_runs_on_some_ir():
    assert all(case.irs for case in CASES.values())


# Each pre-lowering pass and the test that shows the graph which needs it.
GRAPH_FOR_PASS = {
    "RewriteMaxPoolWithIndices": "test_fp32_core_ir_max_pool_is_delegated_after_rewrite",
    "RecomposeLinear": "test_recompose_linear.py::"
                       "test_quantized_3d_linear_with_split_views_is_delegated_only_with_the_pass",
}


def test_every_pre_lowering_pass_has_a_graph_that_needs_it():
    assert [p.__name__ for p in PRE_LOWERING_PASSES] == list(GRAPH_FOR_PASS)


def test_input_graph_module_is_not_modified(lowered_cache):
    # The cache recorded the converted graph before lowering it.
    ir = "core" if project_quantizer_available() else "training"
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


def test_pipeline_reports_what_changed():
    x = torch.randn(1, 3, 8, 8)
    gm = export_model(_ConvPool().eval(), (x,), ir="core").module()
    result = run_pipeline(copy.deepcopy(gm), PRE_LOWERING_PASSES)
    assert result.changed == ("RewriteMaxPoolWithIndices",)
    again = run_pipeline(result.graph_module)
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
