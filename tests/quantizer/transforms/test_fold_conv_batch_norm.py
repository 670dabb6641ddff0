"""Tests of ``FoldConvBatchNorm``: core-IR ``convolution → batch norm → getitem(0)`` becomes one conv.

The graph it is for: an eval-mode ``Conv → BatchNorm`` exported to the core
ATen IR, where the norm is ``_native_batch_norm_legit_no_training`` followed by
``getitem(·, 0)``.  The folded weight and bias must be new attributes: the
exported module shares its parameters with the caller's model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import expecttest
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from tests.support import graph_signature
from xnnquant.quantizer.transforms import FoldConvBatchNorm

from .common import Fn, cached_export, check_pass, export_gm, nodes_of

aten = torch.ops.aten
BN_TARGET = aten._native_batch_norm_legit_no_training.default
# Folding reorders float arithmetic: outputs agree to rounding, not bit for bit.
FOLD_TOL = dict(atol=1e-5, rtol=1e-5)


def _with_stats(bn: nn.Module) -> nn.Module:
    """``bn`` with random running statistics (and affine parameters), so the fold is not trivial."""
    with torch.no_grad():
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(0.5, 2.0)
        if bn.affine:
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1.0, 1.0)
    return bn


class ConvBN(nn.Module):
    """``bn(conv(x))``; with ``extra_user`` the conv output is returned as well."""

    def __init__(self, conv: nn.Module, bn: nn.Module, *, extra_user: bool = False):
        super().__init__()
        self.conv, self.bn, self.extra_user = conv, _with_stats(bn), extra_user

    def forward(self, x):
        y = self.conv(x)
        out = self.bn(y)
        return (out, y) if self.extra_user else out


@dataclass(frozen=True)
class Case:
    make: Callable[[], nn.Module]
    shape: tuple
    ir: str = "core"
    folds: int = 1  # batch norms the pass must fold


def _two_blocks():
    return nn.Sequential(ConvBN(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), nn.ReLU(),
                         ConvBN(nn.Conv2d(4, 5, 3, padding=1), nn.BatchNorm2d(5)))


FOLDS: dict = {
    "conv2d": Case(lambda: ConvBN(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), (2, 3, 8, 8)),
    "conv2d_no_bias": Case(lambda: ConvBN(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)),
                           (2, 3, 8, 8)),
    "bn_not_affine": Case(lambda: ConvBN(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, affine=False)),
                          (2, 3, 8, 8)),
    # A large epsilon, so that leaving it out of the fold shows in the outputs.
    "large_eps": Case(lambda: ConvBN(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, eps=0.5)),
                      (2, 3, 8, 8)),
    "conv1d": Case(lambda: ConvBN(nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4)), (2, 3, 10)),
    "depthwise_strided": Case(
        lambda: ConvBN(nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4), nn.BatchNorm2d(4)),
        (2, 4, 8, 8)),
    "two_blocks": Case(_two_blocks, (2, 3, 8, 8), folds=2),
}


class _ComputedWeight(nn.Module):
    """A conv whose weight is computed in the graph, so it is no constant the pass can fold."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.bn = _with_stats(nn.BatchNorm2d(4))

    def forward(self, x):
        return self.bn(F.conv2d(x, self.w * 2.0))


LEFT_ALONE: dict = {
    "transposed_conv": Case(lambda: ConvBN(nn.ConvTranspose2d(3, 4, 3), nn.BatchNorm2d(4)),
                            (2, 3, 8, 8)),
    "conv_output_has_second_user": Case(
        lambda: ConvBN(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), extra_user=True), (2, 3, 8, 8)),
    "bn_after_relu": Case(
        lambda: Fn(lambda m, x: m.bn(F.relu(m.conv(x))), conv=nn.Conv2d(3, 4, 3),
                   bn=_with_stats(nn.BatchNorm2d(4))), (2, 3, 8, 8)),
    "bn_of_input": Case(lambda: Fn(lambda m, x: m.bn(x), bn=_with_stats(nn.BatchNorm2d(3))),
                        (2, 3, 8, 8)),
    "computed_weight": Case(_ComputedWeight, (2, 3, 8, 8)),
    # The training IR spells them conv2d and batch_norm; torchao's prepare folds those.
    "training_ir": Case(lambda: ConvBN(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), (2, 3, 8, 8),
                        ir="training"),
}


def _build(case: Case):
    """A fresh model, its export (sharing its parameters) and an input."""
    model = case.make().eval()
    x = torch.randn(case.shape)
    return model, export_gm(model, (x,), case.ir), x


@cached_export
def _exported(case_id: str):
    model, gm, x = _build({**FOLDS, **LEFT_ALONE}[case_id])
    return model, gm, (x,)


def _conv_bn_pairs(gm) -> list:
    """(conv node, batch-norm node) for each batch norm right after a convolution."""
    return [(bn.args[0], bn) for bn in nodes_of(gm, {BN_TARGET})
            if bn.args[0].target == aten.convolution.default]


def _attr(gm, node) -> torch.Tensor:
    """The tensor a ``get_attr`` node reads."""
    return functools.reduce(getattr, node.target.split("."), gm)


@pytest.mark.parametrize("case_id", FOLDS)
def test_folds_batch_norm_into_conv(case_id):
    case = FOLDS[case_id]
    _, gm, inputs = _exported(case_id)
    # The folded tensors, computed independently by torch's own fusion helper.
    expected = []
    for conv, bn in _conv_bn_pairs(gm):
        gamma, beta, mean, var = (None if a is None else _attr(gm, a) for a in bn.args[1:5])
        bias = None if conv.args[2] is None else _attr(gm, conv.args[2])
        expected.append(fuse_conv_bn_weights(_attr(gm, conv.args[1]), bias, mean, var, bn.args[6],
                                             gamma, beta))
    assert len(expected) == case.folds

    gm = check_pass(FoldConvBatchNorm, gm, inputs, modified=True, **FOLD_TOL)

    assert not nodes_of(gm, {BN_TARGET})
    assert "getitem" not in graph_signature(gm)
    convs = nodes_of(gm, {aten.convolution.default})
    assert len(convs) == case.folds
    for conv, (w, b) in zip(convs, expected):
        assert conv.args[1].op == conv.args[2].op == "get_attr"
        assert conv.args[1].target.endswith("_bn_folded")
        torch.testing.assert_close(_attr(gm, conv.args[1]), w.detach(), **FOLD_TOL)
        torch.testing.assert_close(_attr(gm, conv.args[2]), b.detach(), **FOLD_TOL)
        assert conv.args[1].meta["val"].shape == w.shape


@pytest.mark.parametrize("case_id", FOLDS)
def test_fold_writes_no_parameter_of_the_caller(case_id):
    model, gm, _ = _exported(case_id)
    # The exported module shares storage with the caller's model: writing one writes both.
    assert {p.data_ptr() for p in gm.parameters()} <= {p.data_ptr() for p in model.parameters()}
    caller = {k: v.clone() for k, v in model.state_dict().items()}
    exported = {k: v.clone() for k, v in gm.state_dict().items()}

    assert FoldConvBatchNorm()(gm).modified

    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, caller[name], atol=0, rtol=0, msg=f"caller's {name}")
    after = gm.state_dict()
    for name, value in exported.items():
        torch.testing.assert_close(after[name], value, atol=0, rtol=0,
                                   msg=f"exported module's {name}")


@pytest.mark.parametrize("case_id", LEFT_ALONE)
def test_leaves_graph_alone(case_id):
    _, gm, inputs = _exported(case_id)
    check_pass(FoldConvBatchNorm, gm, inputs, modified=False)


class TestFoldedGraphs(expecttest.TestCase):
    def test_conv2d(self):
        _, gm, _ = _exported("conv2d")
        self.assertExpectedInline(graph_signature(gm), """\
convolution = aten.convolution(x, conv_weight, conv_bias, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
_native_batch_norm_legit_no_training = aten._native_batch_norm_legit_no_training(convolution, bn_weight, bn_bias, bn_running_mean, bn_running_var, 0.1, 1e-05)
getitem = getitem(_native_batch_norm_legit_no_training, 0)""")
        FoldConvBatchNorm()(gm)
        self.assertExpectedInline(graph_signature(gm), """convolution = aten.convolution(x, conv_weight_bn_folded, conv_weight_bias_bn_folded, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)""")

    def test_two_blocks_get_distinct_folded_tensors(self):
        _, gm, _ = _exported("two_blocks")
        FoldConvBatchNorm()(gm)
        self.assertExpectedInline(graph_signature(gm), """\
convolution = aten.convolution(input_1, _0_conv_weight_bn_folded, _0_conv_weight_bias_bn_folded, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
relu = aten.relu(convolution)
convolution_1 = aten.convolution(relu, _2_conv_weight_bn_folded, _2_conv_weight_bias_bn_folded, [1, 1], [1, 1], [1, 1], False, [0, 0], 1)""")

    def test_conv_output_with_second_user_keeps_its_batch_norm(self):
        _, gm, _ = _exported("conv_output_has_second_user")
        FoldConvBatchNorm()(gm)
        self.assertExpectedInline(graph_signature(gm), """\
convolution = aten.convolution(x, conv_weight, conv_bias, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
_native_batch_norm_legit_no_training = aten._native_batch_norm_legit_no_training(convolution, bn_weight, bn_bias, bn_running_mean, bn_running_var, 0.1, 1e-05)
getitem = getitem(_native_batch_norm_legit_no_training, 0)""")
