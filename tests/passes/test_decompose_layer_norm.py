"""Tests of ``DecomposeLayerNorm``: layer norm over the last dim as GEMMs and elementwise ops.

The rewrite must equal ``layer_norm`` to fp32 rounding on both IRs (training IR
``aten.layer_norm``, core IR ``native_layer_norm`` + ``getitem``), with and
without the affine parameters, and on a converted int8 graph; a norm over more
than one dim is left alone.  Lowered, a layer norm between two quantized linears
no longer leaves the delegate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest
import torch
from torch import nn

from tests.quantizer.transforms.common import call_targets, check_pass, export_gm
from xnnquant.passes import DecomposeLayerNorm, lower_to_xnnpack
from xnnquant.quantizer import XnnpackQuantizer, quantize

aten = torch.ops.aten
_NORMS = {aten.layer_norm.default, aten.native_layer_norm.default}


@dataclass(frozen=True)
class Case:
    make: Callable[[], nn.Module]
    shape: tuple
    ir: str = "training"


def _affine():
    norm = nn.LayerNorm(8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return norm


REWRITES = {
    "training": Case(_affine, (2, 3, 8)),
    "training_no_affine": Case(lambda: nn.LayerNorm(8, elementwise_affine=False), (2, 3, 8)),
    "training_eps": Case(lambda: nn.LayerNorm(8, eps=1e-2), (4, 8)),
    "core": Case(_affine, (2, 3, 8), ir="core"),
    "core_no_bias": Case(lambda: nn.LayerNorm(8, bias=False), (2, 3, 8), ir="core"),
}
LEFT_ALONE = {
    "two_dims": Case(lambda: nn.LayerNorm((3, 8)), (2, 3, 8)),
    "core_two_dims": Case(lambda: nn.LayerNorm((3, 8)), (2, 3, 8), ir="core"),
}


def _gm(case: Case):
    torch.manual_seed(0)
    x = torch.randn(case.shape) * 3 + 1
    return export_gm(case.make(), (x,), case.ir), (x,)


@pytest.mark.parametrize("case_id", REWRITES)
def test_rewrites_layer_norm_to_fp32_rounding(case_id):
    gm, inputs = _gm(REWRITES[case_id])
    gm = check_pass(DecomposeLayerNorm, gm, inputs, modified=True, atol=1e-5, rtol=1e-5)
    targets = set(call_targets(gm))
    assert not targets & _NORMS
    assert {aten.linear.default, aten.rsqrt.default} <= targets


@pytest.mark.parametrize("case_id", LEFT_ALONE)
def test_leaves_other_norms_alone(case_id):
    gm, inputs = _gm(LEFT_ALONE[case_id])
    check_pass(DecomposeLayerNorm, gm, inputs, modified=False)


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.norm, self.b = nn.Linear(16, 16), nn.LayerNorm(16), nn.Linear(16, 4)

    def forward(self, x):
        return self.b(self.norm(self.a(x)))


@pytest.mark.parametrize("ir", ["training", "core"])
def test_a_quantized_layer_norm_stays_inside_the_delegate(ir):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16)
    converted = quantize(_Block().eval(), (x,), [(torch.randn(2, 5, 16),) for _ in range(4)],
                         XnnpackQuantizer(), ir=ir)
    lowered = lower_to_xnnpack(converted, (x,))
    assert "DecomposeLayerNorm" in lowered.report.passes_changed
    assert lowered.report.num_delegates == 1 and lowered.report.outside_ops == []
    assert lowered.report.self_check.passed
