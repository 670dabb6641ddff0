"""``lower_to_reference`` on converted graphs of small models, in both export IRs.

Each model in ``MODELS`` is quantized with ``XnnpackQuantizer`` and lowered.
The tests check that the covered patterns became the expected kernels with no
float ``dq → op → q`` left, that eager outputs agree with the converted graph
(the float simulation) to one output quantization step, that the input graph
module is untouched, that the result exports, and that an op without a
reference kernel is reported rather than dropped.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import expecttest
import pytest
import torch
from torch import nn

from tests.support import graph_signature

from xnnquant.passes.lower_to_reference import (
    DEQUANTIZE,
    KERNEL_RECORDS,
    REPORT_KEY,
    LowerToReferencePass,
    lower_to_reference,
)
from xnnquant.quantizer import XnnpackQuantizer, get_config, quantize


class _Binary(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, y):
        return self.fn(x, y)


class _ConvTransposeBetweenConvs(nn.Module):
    """A quantized op with no reference kernel (transposed conv) between two that have one."""

    def __init__(self):
        super().__init__()
        self.first, self.up, self.second = nn.Conv1d(3, 4, 1), nn.ConvTranspose1d(4, 4, 2), \
            nn.Conv1d(4, 2, 1)

    def forward(self, x):
        return self.second(self.up(self.first(x)))


@dataclass(frozen=True)
class Model:
    """A model, its input shapes and the kernels its lowering must contain."""

    make: Callable[[], nn.Module]
    shapes: tuple[tuple[int, ...], ...]
    kernels: dict[str, int]
    per_channel: bool = True


MODELS: dict[str, Model] = {
    "linear": Model(lambda: nn.Linear(16, 8), ((4, 16),), {"quantized_linear": 1}),
    "linear_3d": Model(lambda: nn.Linear(8, 6), ((2, 5, 8),), {"quantized_linear": 1}),
    "conv_relu": Model(lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
                       ((1, 3, 8, 8),), {"quantized_conv": 1}),
    "conv_relu_maxpool": Model(
        lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2)),
        ((1, 3, 10, 10),), {"quantized_conv": 1, "quantized_max_pool2d": 1}),
    "depthwise_conv": Model(lambda: nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4),
                            ((1, 4, 9, 9),), {"quantized_conv": 1}),
    "conv1d_hardtanh": Model(lambda: nn.Sequential(nn.Conv1d(3, 6, 3, dilation=2), nn.Hardtanh()),
                             ((2, 3, 16),), {"quantized_conv": 1}),
    "add_relu": Model(lambda: _Binary(lambda x, y: torch.relu(x + y)), ((2, 8), (2, 8)),
                      {"quantized_add": 1}),
    "mul": Model(lambda: _Binary(torch.mul), ((2, 8), (8,)), {"quantized_mul": 1}),
    "sub": Model(lambda: _Binary(torch.sub), ((3, 8), (3, 8)), {"quantized_sub": 1}),
    "conv_global_mean": Model(
        lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1)),
        ((2, 3, 8, 8),), {"quantized_conv": 1, "quantized_mean_hw": 1}),
    "conv1d_same_padding": Model(lambda: nn.Conv1d(3, 5, 5, padding="same"), ((2, 3, 12),),
                                 {"quantized_conv": 1}),
    "conv2d_valid_padding": Model(lambda: nn.Conv2d(3, 5, 3, padding="valid"), ((1, 3, 7, 7),),
                                  {"quantized_conv": 1}),
    "linear_per_tensor": Model(lambda: nn.Linear(16, 8), ((4, 16),), {"quantized_linear": 1},
                               per_channel=False),
    "conv_per_tensor": Model(lambda: nn.Conv2d(3, 4, 3), ((1, 3, 6, 6),), {"quantized_conv": 1},
                             per_channel=False),
}


def _inputs(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(s, generator=g) for s in shapes)


@functools.cache
def converted(model_id: str, ir: str):
    spec = MODELS[model_id] if model_id in MODELS else UNCOVERED[model_id]
    torch.manual_seed(0)
    model = spec.make().eval()
    calibration = [_inputs(spec.shapes, seed) for seed in range(4)]
    # minmax: snapshots must not move when the default observer is tuned.
    config = get_config(per_channel=spec.per_channel, observer="minmax")
    quantizer = XnnpackQuantizer().set_global(config)
    return quantize(model, calibration[0], calibration, quantizer, ir=ir), spec


@functools.cache
def lowered(model_id: str, ir: str):
    gm, _ = converted(model_id, ir)
    return lower_to_reference(gm)


CASES = [pytest.param(m, ir, id=f"{m}-{ir}") for m in sorted(MODELS) for ir in ("training", "core")]


def _kernels(gm) -> Counter:
    return Counter(n.target._opname for n in gm.graph.nodes
                   if n.op == "call_function" and getattr(n.target, "namespace", "") == "xnnquant")


@pytest.mark.parametrize("model_id, ir", CASES)
def test_covered_patterns_become_kernels(model_id, ir):
    out = lowered(model_id, ir)
    report = out.meta[REPORT_KEY]
    assert report.skipped == []
    assert _kernels(out) == Counter(MODELS[model_id].kernels)
    anchors = frozenset().union(*(r.targets for r in KERNEL_RECORDS))
    leftover = [n.name for n in out.graph.nodes if n.op == "call_function" and n.target in anchors]
    assert leftover == []


def _output_lsb(out_node) -> float:
    # Outputs end in dequantize_per_tensor(q, scale, ...): the step is its scale.
    assert out_node.target is DEQUANTIZE
    return out_node.args[1]


@pytest.mark.parametrize("model_id, ir", CASES)
def test_eager_matches_float_simulation_within_one_step(model_id, ir):
    gm, spec = converted(model_id, ir)
    out = lowered(model_id, ir)
    outputs = [n for n in out.graph.nodes if n.op == "output"][0].args[0]
    worst = 0.0
    # Seeds 0-3 were calibration data; 10-11 are new (and may saturate).
    for seed in (0, 3, 10, 11):
        x = _inputs(spec.shapes, seed)
        ref, got = gm(*x), out(*x)
        ref, got = (ref, got) if isinstance(ref, tuple) else ((ref,), (got,))
        for node, r, o in zip(outputs, ref, got):
            worst = max(worst, float((r - o).abs().max()) / _output_lsb(node))
    print(f"{model_id}-{ir}: max |Δ| = {worst:.3f} output steps")
    assert worst <= 1.0 + 1e-4


@pytest.mark.parametrize("model_id, ir", [("linear_3d", "core"), ("conv_relu_maxpool", "training")])
def test_input_graph_module_is_not_mutated(model_id, ir):
    gm, _ = converted(model_id, ir)
    code, state = gm.code, {k: v.clone() for k, v in gm.state_dict().items()}
    result = LowerToReferencePass()(gm)
    assert result.modified and result.graph_module is not gm
    assert gm.code == code
    assert REPORT_KEY not in gm.meta
    assert state.keys() == gm.state_dict().keys()
    assert all(torch.equal(v, gm.state_dict()[k]) for k, v in state.items())


@pytest.mark.parametrize("model_id, ir", [
    ("linear_3d", "core"), ("conv_relu_maxpool", "core"),
    ("add_relu", "training"), ("conv1d_hardtanh", "training"),
])
def test_lowered_graph_exports(model_id, ir):
    _, spec = converted(model_id, ir)
    out = lowered(model_id, ir)
    x = _inputs(spec.shapes, 7)
    ep = torch.export.export(out, x)
    assert _kernels(ep.graph_module) == Counter(spec.kernels)
    assert torch.equal(ep.module()(*x), out(*x))


UNCOVERED: dict[str, Model] = {
    "conv_transpose": Model(_ConvTransposeBetweenConvs, ((2, 3, 6),), {"quantized_conv": 2}),
    "conv1d_same_even_kernel": Model(lambda: nn.Conv1d(3, 5, 4, padding="same"), ((2, 3, 12),),
                                     {}),
}


@pytest.mark.parametrize("ir", ["training", "core"])
def test_op_without_reference_is_reported_and_kept(ir):
    out = lowered("conv_transpose", ir)
    report = out.meta[REPORT_KEY]
    target = {"training": torch.ops.aten.conv_transpose1d.default,
              "core": torch.ops.aten.convolution.default}[ir]
    assert [(s.target, s.reason) for s in report.skipped] == [
        (str(target), f"{target} has no reference kernel: transposed convolution has no "
                      "reference kernel yet; the delegate's output is checked against the "
                      "converted graph only")
    ]
    assert _kernels(out) == Counter({"quantized_conv": 2})
    # The float pattern dq → conv_transpose → q is still there, between the two kernels.
    (up,) = [n for n in out.graph.nodes if n.target is target]
    assert up.args[0].target is DEQUANTIZE
    quantize_op = torch.ops.quantized_decomposed.quantize_per_tensor.default
    assert [u.target for u in up.users] == [quantize_op]
    gm, spec = converted("conv_transpose", ir)
    x = _inputs(spec.shapes, 5)
    assert (out(*x) - gm(*x)).abs().max() <= 1.0001 * _output_lsb(
        [n for n in out.graph.nodes if n.op == "output"][0].args[0][0])
    with pytest.raises(LookupError, match="conv_transpose1d|convolution"):
        lower_to_reference(gm, strict=True)


def test_asymmetric_same_padding_is_reported():
    out = lowered("conv1d_same_even_kernel", "training")
    (skipped,) = out.meta[REPORT_KEY].skipped
    assert skipped.target == "aten.conv1d.padding"
    assert "asymmetric" in skipped.reason
    assert _kernels(out) == Counter()


def _hand_built(op, op_args: tuple, out_scale: float):
    """q → dq → op → q → dq with chosen output qparams; the input side has (0.1, 0)."""
    qd = torch.ops.quantized_decomposed
    g = torch.fx.Graph()
    x = g.placeholder("x")
    q = g.call_function(qd.quantize_per_tensor.default, (x, 0.1, 0, -128, 127, torch.int8))
    dq = g.call_function(qd.dequantize_per_tensor.default, (q, 0.1, 0, -128, 127, torch.int8))
    y = g.call_function(op, (dq, *op_args))
    q2 = g.call_function(qd.quantize_per_tensor.default, (y, out_scale, 0, -128, 127, torch.int8))
    g.output(g.call_function(qd.dequantize_per_tensor.default,
                             (q2, out_scale, 0, -128, 127, torch.int8)))
    return torch.fx.GraphModule(nn.Module(), g)


SHARED_QPARAMS_KERNELS = {
    "max_pool2d": (torch.ops.aten.max_pool2d.default, ([2, 2],), "quantized_max_pool2d"),
    "relu": (torch.ops.aten.relu.default, (), "quantized_clamp"),
    "hardtanh": (torch.ops.aten.hardtanh.default, (-0.5, 2.0), "quantized_clamp"),
}


@pytest.mark.parametrize("name", sorted(SHARED_QPARAMS_KERNELS))
def test_shared_qparams_op_is_lowered_exactly(name):
    op, args, kernel = SHARED_QPARAMS_KERNELS[name]
    gm = _hand_built(op, args, out_scale=0.1)
    out = lower_to_reference(gm)
    assert _kernels(out) == Counter({kernel: 1})
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0)) * 5
    assert torch.equal(out(x), gm(x))


@pytest.mark.parametrize("name", sorted(SHARED_QPARAMS_KERNELS))
def test_pattern_that_cannot_be_lowered_is_reported_with_its_reason(name):
    op, args, _ = SHARED_QPARAMS_KERNELS[name]
    out = lower_to_reference(_hand_built(op, args, out_scale=0.2))
    (skipped,) = out.meta[REPORT_KEY].skipped
    assert skipped.target == str(op)
    assert "needs shared qparams" in skipped.reason
    assert _kernels(out) == Counter()


class TestLoweredGraphs(expecttest.TestCase):
    def test_hand_built_maxpool_with_shared_qparams(self):
        gm = _hand_built(torch.ops.aten.max_pool2d.default, ([2, 2],), out_scale=0.1)
        self.assertExpectedInline(graph_signature(lower_to_reference(gm)), """\
quantize_per_tensor_default = quantized_decomposed.quantize_per_tensor(x, 0.1, 0, -128, 127, int8)
quantized_max_pool2d_default = xnnquant.quantized_max_pool2d(quantize_per_tensor_default, [2, 2], [], [0, 0], [1, 1], False, -128, 127)
dequantize_per_tensor_default_1 = quantized_decomposed.dequantize_per_tensor(quantized_max_pool2d_default, 0.1, 0, -128, 127, int8)""")

    def test_core_ir_linear_3d(self):
        # view → addmm(bias, ·, permute(dq_per_channel(w))) → view becomes one kernel on int8.
        self.assertExpectedInline(graph_signature(lowered("linear_3d", "core")), """\
quantize_per_tensor_default = quantized_decomposed.quantize_per_tensor(input_1, 0.02644, -2, -128, 127, int8)
view_default = aten.view(quantize_per_tensor_default, [10, 8])
quantized_linear_default = xnnquant.quantized_linear(view_default, 0.02644, -2, quantize_per_channel_default, _scale_0, bias, 0.0117, -7, -128, 127)
view_default_1 = aten.view(quantized_linear_default, [2, 5, 6])
dequantize_per_tensor_default_1 = quantized_decomposed.dequantize_per_tensor(view_default_1, 0.0117, -7, -128, 127, int8)""")

    def test_training_ir_conv_relu_maxpool(self):
        self.assertExpectedInline(graph_signature(lowered("conv_relu_maxpool", "training")), """\
quantize_per_tensor_default = quantized_decomposed.quantize_per_tensor(input_1, 0.02644, -2, -128, 127, int8)
quantized_conv_default = xnnquant.quantized_conv(quantize_per_tensor_default, 0.02644, -2, quantize_per_channel_default, _scale_0, _0_bias, [1, 1], [0, 0], [1, 1], 1, 0.00771, -128, -128, 127)
quantized_max_pool2d_default = xnnquant.quantized_max_pool2d(quantized_conv_default, [2, 2], [2, 2], [0, 0], [1, 1], False, -128, 127)
dequantize_per_tensor_default_2 = quantized_decomposed.dequantize_per_tensor(quantized_max_pool2d_default, 0.00771, -128, -128, 127, int8)""")
