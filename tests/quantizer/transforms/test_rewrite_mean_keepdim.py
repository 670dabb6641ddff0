"""Tests of ``RewriteMeanKeepdim``: a spatial ``mean(x, (2, 3))`` of a 4-D tensor becomes keepdim + view.

``mean.dim(x, [2, 3], False)`` → ``view(mean.dim(x, [2, 3], True), [N, C])``,
the only int8 mean XNNPACK runs.  A mean over other dims, of a tensor that is
not 4-D, with ``keepdim=True`` already or with a ``dtype`` is left alone.
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
from xnnquant.quantizer.transforms import RewriteMeanKeepdim

from .common import Fn, cached_export, check_pass, export_gm, nodes_of

aten = torch.ops.aten


@dataclass(frozen=True)
class Case:
    make: Callable[[], nn.Module]
    shape: tuple
    ir: str = "training"


def _mean(*args, **kwargs):
    return lambda: Fn(lambda m, x: x.mean(*args, **kwargs))


class _Head(nn.Module):
    """conv → relu → global average → linear: a classifier head."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


_IMG = (2, 3, 6, 5)

REWRITES: dict = {
    "spatial": Case(_mean((2, 3)), _IMG),
    "spatial_negative_dims": Case(_mean((-1, -2)), _IMG),
    "spatial_reversed_dims": Case(_mean((3, 2)), _IMG),
    "spatial_keepdim_false_given": Case(_mean((2, 3), keepdim=False), _IMG),
    "core_spatial": Case(_mean((2, 3)), _IMG, ir="core"),
    "core_classifier_head": Case(_Head, (2, 3, 8, 8), ir="core"),
}

LEFT_ALONE: dict = {
    "keepdim_true": Case(_mean((2, 3), keepdim=True), _IMG),
    "core_keepdim_true": Case(_mean((2, 3), keepdim=True), _IMG, ir="core"),
    "channel_dim": Case(_mean(1), _IMG),
    "last_dim": Case(_mean(-1), _IMG),
    "dims_1_2": Case(_mean((1, 2)), _IMG),
    "dims_1_2_3": Case(_mean((1, 2, 3)), _IMG),
    "all_dims": Case(_mean(), _IMG),
    "three_d_input": Case(_mean((1, 2)), (2, 3, 5)),
    "five_d_input_dims_2_3": Case(_mean((2, 3)), (2, 3, 4, 5, 2)),
    "with_dtype": Case(_mean((2, 3), dtype=torch.float64), _IMG),
}


@cached_export
def _exported(case_id: str):
    case = {**REWRITES, **LEFT_ALONE}[case_id]
    model, x = case.make(), torch.randn(case.shape)
    return model, export_gm(model, (x,), case.ir), (x,)


@pytest.mark.parametrize("case_id", REWRITES)
def test_rewrites_spatial_mean_as_keepdim_and_view(case_id):
    _, gm, inputs = _exported(case_id)
    (before,) = nodes_of(gm, {aten.mean.dim})
    source, dims = before.args[0], list(before.args[1])
    out_shape = before.meta["val"].shape
    users = set(before.users)

    gm = check_pass(RewriteMeanKeepdim, gm, inputs, modified=True)

    (mean,) = nodes_of(gm, {aten.mean.dim})
    assert mean.args == (source, dims, True) and not mean.kwargs
    (view,) = mean.users
    assert view.target == aten.view.default
    assert view.args == (mean, list(out_shape))
    assert set(view.users) == users
    n, c = source.meta["val"].shape[:2]
    assert mean.meta["val"].shape == (n, c, 1, 1)
    assert view.meta["val"].shape == out_shape == (n, c)


@pytest.mark.parametrize("case_id", LEFT_ALONE)
def test_leaves_other_means_alone(case_id):
    _, gm, inputs = _exported(case_id)
    check_pass(RewriteMeanKeepdim, gm, inputs, modified=False)


class TestRewrittenGraphs(expecttest.TestCase):
    def test_spatial_mean(self):
        _, gm, _ = _exported("spatial")
        RewriteMeanKeepdim()(gm)
        self.assertExpectedInline(graph_signature(gm), """\
mean = aten.mean(inputs_0, [2, 3], True)
view_default = aten.view(mean, [2, 3])""")

    def test_core_classifier_head(self):
        _, gm, _ = _exported("core_classifier_head")
        RewriteMeanKeepdim()(gm)
        self.assertExpectedInline(graph_signature(gm), """\
convolution = aten.convolution(x, conv_weight, conv_bias, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
relu = aten.relu(convolution)
mean = aten.mean(relu, [2, 3], True)
view_default = aten.view(mean, [2, 4])
permute = aten.permute(fc_weight, [1, 0])
addmm = aten.addmm(fc_bias, view_default, permute)""")

    def test_two_spatial_means_get_their_own_views(self):
        model = Fn(lambda m, x: x.mean((2, 3)) + x.mean((-2, -1)))
        gm = export_gm(model, (torch.randn(_IMG),), "training")
        RewriteMeanKeepdim()(gm)
        self.assertExpectedInline(graph_signature(gm), """\
mean = aten.mean(inputs_0, [2, 3], True)
view_default = aten.view(mean, [2, 3])
mean_1 = aten.mean(inputs_0, [-2, -1], True)
view_default_1 = aten.view(mean_1, [2, 3])
add = aten.add(view_default, view_default_1)""")
