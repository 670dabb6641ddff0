"""Tests of the annotation passes that put attention blocks (and ``rsub``) into ops the delegate runs.

``RemoveIdentityOps`` (eval dropout, same-shape expand), ``RecomposeBroadcastLinear``
(the core IR's ``bmm`` of an expanded weight), ``RewriteSelectAsSlice``,
``DecomposeAttention`` (``scaled_dot_product_attention``), ``RewriteMatmulAsBmm``,
``RewriteSafeSoftmax`` and ``RewriteRsubAsSub`` (a fuzzer finding).  Each pass gets cases it must rewrite and cases it
must leave alone, through the shared contract of :func:`.common.check_pass`
(same outputs on fresh inputs, a second run changes nothing), plus the ops it
must leave behind.  The snapshots pin the exact graphs on small attention code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import expecttest
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

from tests.support import graph_signature
from xnnquant.quantizer.transforms import (
    DecomposeAttention,
    RecomposeBroadcastLinear,
    RemoveIdentityOps,
    RewriteMatmulAsBmm,
    RewriteRsubAsSub,
    RewriteSafeSoftmax,
    RewriteSelectAsSlice,
)
from xnnquant.quantizer.workflow import export_model

from .common import Fn, cached_export, call_targets, check_pass

aten = torch.ops.aten


@dataclass(frozen=True)
class Case:
    pass_cls: type
    make: Callable[[], nn.Module]
    shapes: tuple
    ir: str = "training"
    gone: frozenset = frozenset()  # targets the pass must remove
    dynamic: dict = None  # input index → {dim: Dim}
    atol: float = 0.0


def _linear_after_transpose():
    return Fn(lambda m, x: m.fc(x.transpose(1, 0)), fc=nn.Linear(8, 6))


def _linear_no_bias_after_transpose():
    return Fn(lambda m, x: m.fc(x.transpose(1, 0)), fc=nn.Linear(8, 6, bias=False))


def _sdpa(mask: bool = False, **kw):
    def fn(m, q, k, v, *rest):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=rest[0] if rest else None, **kw)
    return lambda: Fn(fn)


def _encoder():
    return nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)


_QKV = ((2, 2, 5, 4),) * 3
_DROPOUT = {aten.dropout.default}
_SDPA = {aten.scaled_dot_product_attention.default}
_SAFE = {aten.where.self, aten.eq.Scalar, aten.any.dim, aten.logical_not.default, aten.full_like.default}

REWRITES: dict = {
    "eval_dropout": Case(RemoveIdentityOps, lambda: nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)),
                         ((2, 4),), gone=frozenset(_DROPOUT)),
    "encoder_dropouts": Case(RemoveIdentityOps, _encoder, ((2, 3, 16),), gone=frozenset(_DROPOUT)),
    "core_same_shape_expand": Case(RemoveIdentityOps, lambda: Fn(lambda m, a, b: a @ b),
                                   ((2, 3, 4, 5), (2, 3, 5, 6)), ir="core",
                                   gone=frozenset({aten.expand.default})),
    "core_broadcast_linear": Case(RecomposeBroadcastLinear, _linear_after_transpose, ((3, 4, 8),),
                                  ir="core", dynamic={0: {1: Dim("n", min=2, max=8)}},
                                  gone=frozenset({aten.bmm.default}), atol=1e-6),
    "core_broadcast_linear_no_bias": Case(RecomposeBroadcastLinear, _linear_no_bias_after_transpose,
                                          ((3, 4, 8),), ir="core", dynamic={0: {1: Dim("n", min=2, max=8)}},
                                          gone=frozenset({aten.bmm.default}), atol=1e-6),
    "select": Case(RewriteSelectAsSlice, lambda: Fn(lambda m, x: x[1] * x[:, 0]), ((4, 4, 5),),
                   gone=frozenset({aten.select.int})),
    "select_negative_index": Case(RewriteSelectAsSlice, lambda: Fn(lambda m, x: x[:, -1]), ((3, 4),),
                                  gone=frozenset({aten.select.int})),
    "core_select": Case(RewriteSelectAsSlice, lambda: Fn(lambda m, x: x[:, 2] + 1), ((3, 4),), ir="core",
                        gone=frozenset({aten.select.int})),
    "sdpa": Case(DecomposeAttention, _sdpa(), _QKV, gone=frozenset(_SDPA), atol=1e-6),
    "sdpa_float_mask": Case(DecomposeAttention, _sdpa(), _QKV + ((5, 5),), gone=frozenset(_SDPA), atol=1e-6),
    "sdpa_scale": Case(DecomposeAttention, _sdpa(scale=0.3), _QKV, gone=frozenset(_SDPA), atol=1e-6),
    "matmul_4d": Case(RewriteMatmulAsBmm, lambda: Fn(lambda m, a, b: a @ b.transpose(-2, -1)),
                      ((2, 3, 4, 5), (2, 3, 6, 5)), gone=frozenset({aten.matmul.default}), atol=1e-6),
    "matmul_3d": Case(RewriteMatmulAsBmm, lambda: Fn(lambda m, a, b: a @ b), ((2, 4, 5), (2, 5, 3)),
                      gone=frozenset({aten.matmul.default})),
    "core_safe_softmax": Case(RewriteSafeSoftmax, _sdpa(), _QKV, ir="core", gone=frozenset(_SAFE)),
    "rsub_scalar": Case(RewriteRsubAsSub, lambda: Fn(lambda m, x: 0.5 - x), ((3, 4),),
                        gone=frozenset({aten.rsub.Scalar})),
    "rsub_tensor": Case(RewriteRsubAsSub, lambda: Fn(lambda m, x, y: torch.rsub(x, y)), ((3, 4), (3, 4)),
                        gone=frozenset({aten.rsub.Tensor})),
}

LEFT_ALONE: dict = {
    "different_shape_expand": Case(RemoveIdentityOps, lambda: Fn(lambda m, x: x.expand(3, 4) * 2), ((1, 4),)),
    "core_2d_linear": Case(RecomposeBroadcastLinear, lambda: nn.Linear(8, 6), ((3, 8),), ir="core"),
    "core_activation_bmm": Case(RecomposeBroadcastLinear, lambda: Fn(lambda m, a, b: torch.bmm(a, b)),
                                ((2, 3, 4), (2, 4, 5)), ir="core"),
    "select_negative_index_dynamic_dim": Case(
        RewriteSelectAsSlice, lambda: Fn(lambda m, x: x[:, -1]), ((3, 4),), dynamic={0: {1: Dim("n", min=2, max=8)}}),
    # A boolean mask can mask a whole row, where softmax and the safe softmax differ.
    "sdpa_bool_mask": Case(DecomposeAttention, lambda: Fn(
        lambda m, q, k, v, s: F.scaled_dot_product_attention(q, k, v, attn_mask=s > -10.0)),
        _QKV + ((5, 5),)),
    "sdpa_causal": Case(DecomposeAttention, _sdpa(is_causal=True), _QKV),
    "matmul_broadcast": Case(RewriteMatmulAsBmm, lambda: Fn(lambda m, a, b: a @ b), ((2, 3, 4, 5), (5, 6))),
    "matmul_broadcast_batch": Case(RewriteMatmulAsBmm, lambda: Fn(lambda m, a, b: a @ b),
                                   ((2, 3, 4, 5), (1, 3, 5, 6))),
    "core_masked_safe_softmax": Case(RewriteSafeSoftmax, _sdpa(), _QKV + ((5, 5),), ir="core"),
    "rsub_alpha": Case(RewriteRsubAsSub, lambda: Fn(lambda m, x: torch.rsub(x, 0.5, alpha=2)), ((3, 4),)),
}


def _inputs(case: Case) -> tuple:
    gen = torch.Generator().manual_seed(0)
    return tuple(torch.randn(s, generator=gen) for s in case.shapes)


@cached_export
def _exported(case_id: str):
    case = {**REWRITES, **LEFT_ALONE}[case_id]
    model = case.make().eval()
    inputs = _inputs(case)
    dynamic = None
    if case.dynamic:
        # Fn's forward takes *inputs: one entry, holding a spec per input.
        dynamic = (tuple(case.dynamic.get(i) for i in range(len(inputs))),)
    gm = export_model(model, inputs, ir=case.ir, dynamic_shapes=dynamic).module()
    return model, gm, inputs


@pytest.mark.parametrize("case_id", REWRITES)
def test_rewrites(case_id):
    case = REWRITES[case_id]
    _, gm, inputs = _exported(case_id)
    assert case.gone & set(call_targets(gm)), "the case does not hold what the pass removes"
    gm = check_pass(case.pass_cls, gm, inputs, modified=True, atol=case.atol, rtol=1e-5 if case.atol else 0.0)
    assert not case.gone & set(call_targets(gm)), call_targets(gm)


@pytest.mark.parametrize("case_id", LEFT_ALONE)
def test_leaves_alone(case_id):
    case = LEFT_ALONE[case_id]
    _, gm, inputs = _exported(case_id)
    check_pass(case.pass_cls, gm, inputs, modified=False)


def test_broadcast_linear_keeps_a_dynamic_dim_and_runs_at_other_sizes():
    model, gm, _ = _exported("core_broadcast_linear")
    out = RecomposeBroadcastLinear()(gm).graph_module
    (linear,) = [n for n in out.graph.nodes if n.target == aten.linear.default]
    assert not isinstance(linear.meta["val"].shape[0], int)  # the symbolic sequence dim
    for n in (2, 7):
        x = torch.randn(3, n, 8)
        torch.testing.assert_close(out(x), model(x), atol=1e-6, rtol=1e-5)


class TestRewrittenGraphs(expecttest.TestCase):
    def test_sdpa_written_out(self):
        _, gm, _ = _exported("sdpa")
        DecomposeAttention()(gm)
        self.assertExpectedInline(graph_signature(gm), """\
transpose_int = aten.transpose(inputs_1, -2, -1)
matmul_default = aten.matmul(inputs_0, transpose_int)
mul_tensor = aten.mul(matmul_default, 0.5)
softmax_int = aten.softmax(mul_tensor, -1)
matmul_default_1 = aten.matmul(softmax_int, inputs_2)""")

    def test_core_broadcast_linear(self):
        _, gm, _ = _exported("core_broadcast_linear")
        RecomposeBroadcastLinear()(gm)
        self.assertExpectedInline(graph_signature(gm), """\
permute = aten.permute(inputs_0, [1, 0, 2])
linear_default = aten.linear(permute, fc_weight, fc_bias)""")

    def test_select_as_slice(self):
        _, gm, _ = _exported("select")
        RewriteSelectAsSlice()(gm)
        self.assertExpectedInline(graph_signature(gm), """\
slice_tensor = aten.slice(inputs_0, 0, 1, 2)
squeeze_dims = aten.squeeze(slice_tensor, [0])
slice_tensor_1 = aten.slice(inputs_0, 1, 0, 1)
squeeze_dims_1 = aten.squeeze(slice_tensor_1, [1])
mul = aten.mul(squeeze_dims, squeeze_dims_1)""")
