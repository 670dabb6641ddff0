"""Tests of ``RecomposeLinear``: core-IR ``addmm``/``mm`` back to ``aten.linear``.

The graph that needs it: a quantized core-IR linear on a rank-3 input whose
``view`` ops carry their own q/dq pair (``view → q/dq → addmm → q/dq → view``),
as a quantizer produces when it treats the views like any other data-movement
op.  ExecuTorch's ``AddmmConfig`` refuses that ``addmm`` ("invalid source
partition"), so it and its weight dequantize stay outside the delegate.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xnnquant.passes import LoweringError, RecomposeLinear, lower_to_xnnpack
from xnnquant.passes.report import PARTITIONER
from xnnquant.quantizer.workflow import export_model, quantize

from .test_lower_to_xnnpack import make_quantizer

aten = torch.ops.aten
qd = torch.ops.quantized_decomposed


def _targets(gm) -> list:
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def _core_module(model, x):
    return export_model(model.eval(), (x,), ir="core").module()


@pytest.mark.parametrize("bias", [True, False], ids=["addmm", "mm"])
def test_rewrites_decomposed_linear(bias):
    torch.manual_seed(0)
    model, x = nn.Linear(8, 6, bias=bias), torch.randn(4, 8)
    gm = _core_module(model, x)
    assert (aten.addmm.default if bias else aten.mm.default) in _targets(gm)

    result = RecomposeLinear()(gm)

    assert result.modified
    targets = _targets(result.graph_module)
    assert aten.linear.default in targets
    assert not {aten.addmm.default, aten.mm.default, aten.permute.default} & set(targets)
    torch.testing.assert_close(result.graph_module(x), model(x))


def test_leaves_scaled_addmm_alone():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(6, 8))
            self.b = nn.Parameter(torch.randn(6))

        def forward(self, x):
            return torch.addmm(self.b, x, self.w.t(), beta=0.5)

    x = torch.randn(4, 8)
    gm = _core_module(Scaled(), x)
    result = RecomposeLinear()(gm)
    assert not result.modified
    assert aten.addmm.default in _targets(result.graph_module)


def test_leaves_plain_matmul_of_two_activations_alone():
    class MatMul(nn.Module):
        def forward(self, x, y):
            return x @ y

    x, y = torch.randn(4, 8), torch.randn(8, 3)
    gm = export_model(MatMul(), (x, y), ir="core").module()
    assert not RecomposeLinear()(gm).modified


def _split_views_with_qdq(gm):
    """Give each ``view`` around the ``addmm`` its own q/dq pair, as a view-quantizing quantizer does."""
    graph = gm.graph
    for node in list(graph.nodes):
        if node.target != aten.view.default:
            continue
        if node.args[0].target == aten.addmm.default:
            # addmm → [q/dq with the output's qparams] → view
            params = next(iter(node.users)).args[1:]
            source = node.args[0]
            with graph.inserting_after(source):
                q = graph.call_function(qd.quantize_per_tensor.default, (source, *params))
            with graph.inserting_after(q):
                dq = graph.call_function(qd.dequantize_per_tensor.default, (q, *params))
            node.replace_input_with(source, dq)
        else:
            # view → [q/dq with the input's qparams] → addmm
            params = node.args[0].args[1:]
            with graph.inserting_after(node):
                q = graph.call_function(qd.quantize_per_tensor.default, (node, *params))
            with graph.inserting_after(q):
                dq = graph.call_function(qd.dequantize_per_tensor.default, (q, *params))
            for user in [u for u in node.users if u is not q]:
                user.replace_input_with(node, dq)
    graph.lint()
    gm.recompile()
    return gm


def test_quantized_3d_linear_with_split_views_is_delegated_only_with_the_pass():
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(8, 6)).eval(), torch.randn(2, 3, 8)
    converted = _split_views_with_qdq(quantize(model, (x,), None, make_quantizer(), ir="core"))
    assert _targets(converted).count(qd.quantize_per_tensor.default) >= 3

    # Without the pass the addmm and its weight dequantize stay outside, and the
    # dequantize has no portable kernel, so the program cannot even be serialized.
    with pytest.raises(LoweringError) as info:
        lower_to_xnnpack(converted, (x,), passes=())
    message = str(info.value)
    assert "aten.addmm.default" in message
    assert f"{PARTITIONER}: invalid source partition" in message
    assert "dequantize_per_channel" in message

    lowered = lower_to_xnnpack(converted, (x,))
    assert lowered.report.passes_changed == ("RecomposeLinear",)
    assert lowered.report.fully_delegated, str(lowered.report)
    torch.testing.assert_close(lowered.run(x)[0], converted(x), atol=1e-6, rtol=0)
