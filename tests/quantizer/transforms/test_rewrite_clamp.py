"""Tests of ``RewriteClamp``: a clamp right after a conv/linear becomes the ``relu``/``hardtanh`` XNNPACK fuses.

``clamp(x, 0)`` → ``relu(x)``; ``clamp(x, a, b)`` and ``relu6(x)`` →
``hardtanh(x, a, b)``.  Every other clamp keeps its spelling: one after an op
that fuses nothing, one whose producer has another user (it cannot be fused),
one with tensor bounds or with one non-zero bound (no fusable spelling).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import expecttest
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support import graph_signature
from xnnquant.quantizer.patterns import FUSING_TARGETS
from xnnquant.quantizer.transforms import RewriteClamp

from .common import Fn, cached_export, check_pass, export_gm, nodes_of

aten = torch.ops.aten
CLAMP_SPELLINGS = {aten.clamp.default, aten.clamp.Tensor, aten.relu6.default}


@dataclass(frozen=True)
class Case:
    make: Callable[[], nn.Module]
    shapes: tuple  # one shape per input
    ir: str = "training"
    producer: object = None  # the target of the op the clamp follows
    after: object = None  # what the clamp becomes
    bounds: tuple = ()  # the arguments of ``after`` that follow its input


def _after(child: nn.Module, act):
    """``act(child(x))``."""
    return lambda: Fn(lambda m, x: act(m.op(x)), op=child)


_IMG, _SEQ = (2, 3, 8, 8), (2, 3, 10)


def _clamp(lo=None, hi=None):
    return lambda y: torch.clamp(y, lo, hi)


REWRITES: dict = {
    "conv2d_clamp_min_zero": Case(_after(nn.Conv2d(3, 4, 3), _clamp(0)), (_IMG,),
                                  producer=aten.conv2d.default, after=aten.relu.default),
    "conv2d_clamp_min_float_zero": Case(_after(nn.Conv2d(3, 4, 3), _clamp(0.0)), (_IMG,),
                                        producer=aten.conv2d.default, after=aten.relu.default),
    "conv2d_clamp_range": Case(_after(nn.Conv2d(3, 4, 3), _clamp(-0.5, 0.75)), (_IMG,),
                               producer=aten.conv2d.default, after=aten.hardtanh.default,
                               bounds=(-0.5, 0.75)),
    "conv2d_clamp_int_range": Case(_after(nn.Conv2d(3, 4, 3), _clamp(0, 1)), (_IMG,),
                                   producer=aten.conv2d.default, after=aten.hardtanh.default,
                                   bounds=(0.0, 1.0)),
    "conv2d_relu6": Case(_after(nn.Conv2d(3, 4, 3), F.relu6), (_IMG,),
                         producer=aten.conv2d.default, after=aten.hardtanh.default,
                         bounds=(0.0, 6.0)),
    "conv2d_padding_same_relu6": Case(_after(nn.Conv2d(3, 4, 3, padding="same"), F.relu6),
                                      (_IMG,), producer=aten.conv2d.padding,
                                      after=aten.hardtanh.default, bounds=(0.0, 6.0)),
    "conv1d_clamp_range": Case(_after(nn.Conv1d(3, 4, 3), _clamp(-1, 1)), (_SEQ,),
                               producer=aten.conv1d.default, after=aten.hardtanh.default,
                               bounds=(-1.0, 1.0)),
    "conv1d_padding_same_clamp_min_zero": Case(
        _after(nn.Conv1d(3, 4, 3, padding="same"), _clamp(0)), (_SEQ,),
        producer=aten.conv1d.padding, after=aten.relu.default),
    "conv_transpose1d_relu6": Case(_after(nn.ConvTranspose1d(3, 4, 3), F.relu6), (_SEQ,),
                                   producer=aten.conv_transpose1d.default,
                                   after=aten.hardtanh.default, bounds=(0.0, 6.0)),
    "conv_transpose2d_clamp_min_zero": Case(_after(nn.ConvTranspose2d(3, 4, 3), _clamp(0)),
                                            (_IMG,), producer=aten.conv_transpose2d.input,
                                            after=aten.relu.default),
    "linear_relu6": Case(_after(nn.Linear(8, 6), F.relu6), ((4, 8),),
                         producer=aten.linear.default, after=aten.hardtanh.default,
                         bounds=(0.0, 6.0)),
    # The core IR: relu6 is already hardtanh there, so only clamp needs the rewrite.
    "core_convolution_clamp_min_zero": Case(_after(nn.Conv2d(3, 4, 3), _clamp(0)), (_IMG,),
                                            ir="core", producer=aten.convolution.default,
                                            after=aten.relu.default),
    "core_addmm_clamp_range": Case(_after(nn.Linear(8, 6), _clamp(-1, 1)), ((4, 8),), ir="core",
                                   producer=aten.addmm.default, after=aten.hardtanh.default,
                                   bounds=(-1.0, 1.0)),
    "core_mm_clamp_min_zero": Case(_after(nn.Linear(8, 6, bias=False), _clamp(0)), ((4, 8),),
                                   ir="core", producer=aten.mm.default, after=aten.relu.default),
    # A 3-D linear ends in the view that restores its rank: the clamp follows the view.
    "core_3d_linear_clamp_range": Case(_after(nn.Linear(8, 6), _clamp(0, 6)), ((2, 5, 8),),
                                       ir="core", producer=aten.view.default,
                                       after=aten.hardtanh.default, bounds=(0.0, 6.0)),
}


class _TwoUsers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        return torch.clamp(y, 0), y


LEFT_ALONE: dict = {
    "clamp_after_add": Case(lambda: Fn(lambda m, x: torch.clamp(x + x, -1, 1)), (_IMG,)),
    "clamp_min_zero_after_add": Case(lambda: Fn(lambda m, x: torch.clamp(x + x, 0)), (_IMG,)),
    "relu6_after_add": Case(lambda: Fn(lambda m, x: F.relu6(x + x)), (_IMG,)),
    "clamp_of_input": Case(lambda: Fn(lambda m, x: torch.clamp(x, -1, 1)), (_IMG,)),
    "core_clamp_after_add": Case(lambda: Fn(lambda m, x: torch.clamp(x + x, 0)), (_IMG,),
                                 ir="core"),
    "producer_has_two_users": Case(_TwoUsers, (_IMG,)),
    "tensor_bounds": Case(
        lambda: Fn(lambda m, x: torch.clamp(m.op(x), m.lo, m.hi), op=nn.Conv2d(3, 4, 3),
                   buffers={"lo": torch.tensor(-0.5), "hi": torch.tensor(0.5)}), (_IMG,)),
    "upper_bound_only": Case(_after(nn.Conv2d(3, 4, 3), _clamp(None, 1.0)), (_IMG,)),
    "non_zero_lower_bound_only": Case(_after(nn.Conv2d(3, 4, 3), _clamp(0.5)), (_IMG,)),
    "already_relu": Case(_after(nn.Conv2d(3, 4, 3), F.relu), (_IMG,)),
    "already_hardtanh": Case(_after(nn.Linear(8, 6), F.hardtanh), ((4, 8),)),
}

# Clamps "elsewhere" that the pass respells anyway: it recognises a conv/linear by
# its target only, so any view and any mm count as one.  The values are unchanged
# (relu = clamp(·, 0)), so these are departures from the documented contract only.
RESPELLED_ELSEWHERE: dict = {
    "clamp_after_view_of_input": Case(
        lambda: Fn(lambda m, x: torch.clamp(x.view(2, -1), 0)), (_IMG,)),
    "core_clamp_after_matmul_of_two_inputs": Case(
        lambda: Fn(lambda m, x, y: torch.clamp(x @ y, -1, 1)), ((4, 8), (8, 3)), ir="core"),
}


@cached_export
def _exported(case_id: str):
    case = {**REWRITES, **LEFT_ALONE, **RESPELLED_ELSEWHERE}[case_id]
    model = case.make()
    inputs = tuple(torch.randn(s) for s in case.shapes)
    return model, export_gm(model, inputs, case.ir), inputs


@pytest.mark.parametrize("case_id", REWRITES)
def test_rewrites_clamp_after_conv_or_linear(case_id):
    case = REWRITES[case_id]
    _, gm, inputs = _exported(case_id)
    (clamp,) = nodes_of(gm, CLAMP_SPELLINGS)
    assert clamp.args[0].target == case.producer

    gm = check_pass(RewriteClamp, gm, inputs, modified=True)

    assert not nodes_of(gm, CLAMP_SPELLINGS)
    (act,) = nodes_of(gm, {case.after})
    assert act.args[0].target == case.producer
    assert act.args[1:] == case.bounds
    assert all(type(b) is float for b in act.args[1:])
    assert not act.kwargs


def test_every_op_that_fuses_a_clamp_has_a_case():
    covered = {case.producer for case in REWRITES.values()}
    missing = {str(t) for t in FUSING_TARGETS - covered}
    assert not missing, f"ops that fuse a clamp with no case in REWRITES: {sorted(missing)}"


@pytest.mark.parametrize("case_id", LEFT_ALONE)
def test_leaves_clamp_elsewhere_alone(case_id):
    _, gm, inputs = _exported(case_id)
    check_pass(RewriteClamp, gm, inputs, modified=False)


@pytest.mark.parametrize("case_id", RESPELLED_ELSEWHERE)
def test_leaves_clamp_after_op_that_is_no_conv_or_linear_alone(case_id):
    _, gm, inputs = _exported(case_id)
    check_pass(RewriteClamp, gm, inputs, modified=False)


class TestRewrittenGraphs(expecttest.TestCase):
    def test_conv2d_relu6_becomes_hardtanh(self):
        _, gm, _ = _exported("conv2d_relu6")
        RewriteClamp()(gm)
        self.assertExpectedInline(graph_signature(gm), """\
conv2d = aten.conv2d(inputs_0, op_weight, op_bias)
relu6 = aten.hardtanh(conv2d, 0, 6)""")

    def test_conv2d_clamp_min_zero_becomes_relu(self):
        _, gm, _ = _exported("conv2d_clamp_min_zero")
        RewriteClamp()(gm)
        self.assertExpectedInline(graph_signature(gm), """\
conv2d = aten.conv2d(inputs_0, op_weight, op_bias)
clamp = aten.relu(conv2d)""")

    def test_core_3d_linear_clamp_becomes_hardtanh_after_the_view(self):
        _, gm, _ = _exported("core_3d_linear_clamp_range")
        RewriteClamp()(gm)
        self.assertExpectedInline(graph_signature(gm), """\
view = aten.view(inputs_0, [10, 8])
permute = aten.permute(op_weight, [1, 0])
addmm = aten.addmm(op_bias, view, permute)
view_1 = aten.view(addmm, [2, 5, 6])
clamp = aten.hardtanh(view_1, 0, 6)""")

    def test_only_the_clamp_after_the_conv_is_respelled(self):
        model = Fn(lambda m, x: torch.clamp(torch.clamp(m.conv(x), -1, 1) + x[:, :1, 1:-1, 1:-1],
                                            -2, 2), conv=nn.Conv2d(3, 4, 3))
        gm = export_gm(model, (torch.randn(_IMG),), "training")
        RewriteClamp()(gm)
        self.assertExpectedInline(graph_signature(gm), """\
conv2d = aten.conv2d(inputs_0, conv_weight, conv_bias)
clamp = aten.hardtanh(conv2d, -1, 1)
slice_1 = aten.slice(inputs_0, 1, 0, 1)
slice_2 = aten.slice(slice_1, 2, 1, -1)
slice_3 = aten.slice(slice_2, 3, 1, -1)
add = aten.add(clamp, slice_3)
clamp_1 = aten.clamp(add, -2, 2)""")
