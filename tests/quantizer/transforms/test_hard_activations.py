"""Tests of ``RecomposeHardswish``, ``RewriteHardsigmoid`` and ``DecomposeSilu``.

Each rewrites one activation, in every spelling either IR gives it, into the
ops the op table quantizes: hardswish whole, hardsigmoid as
``mul(hardtanh(add(x, 3), 0, 6), 1/6)``, SiLU as ``mul(x, sigmoid(x))``.
Chains whose inner values are used elsewhere, or whose constants differ, are
left alone.  Outputs must stay equal (to float rounding: ``/6`` becomes ``·(1/6)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest
import torch
import torch.nn.functional as F

from xnnquant.quantizer.transforms import DecomposeSilu, RecomposeHardswish, RewriteHardsigmoid

from .common import Fn, cached_export, call_targets, check_pass, export_gm

aten = torch.ops.aten
_IMG = (2, 4, 6, 6)


@dataclass(frozen=True)
class Case:
    fn: Callable
    ir: str
    pass_cls: type
    after: tuple = ()  # the call targets after the pass, in order (empty: left alone)


def _hswish_by_hand(x):
    return x * F.relu6(x + 3) / 6


def _relu6_reused(x):
    r = F.relu6(x + 3)
    return x * r / 6 + r


CASES: dict = {
    "hardswish_training": Case(F.hardswish, "training", RecomposeHardswish),  # already whole
    "hardswish_core": Case(F.hardswish, "core", RecomposeHardswish, (aten.hardswish.default,)),
    "hardswish_by_hand_training": Case(_hswish_by_hand, "training", RecomposeHardswish,
                                       (aten.hardswish.default,)),
    "hardswish_by_hand_core": Case(_hswish_by_hand, "core", RecomposeHardswish,
                                   (aten.hardswish.default,)),
    "x_times_hardsigmoid_core": Case(lambda x: x * F.hardsigmoid(x), "core", RecomposeHardswish,
                                     (aten.hardswish.default,)),
    "hardswish_other_input": Case(lambda x: x.flip(0) * F.relu6(x + 3) / 6, "core",
                                  RecomposeHardswish),
    "hardswish_shift_4": Case(lambda x: x * F.relu6(x + 4) / 6, "core", RecomposeHardswish),
    "hardswish_inner_reused": Case(_relu6_reused, "core", RecomposeHardswish),
    "hardsigmoid_training": Case(F.hardsigmoid, "training", RewriteHardsigmoid,
                                 (aten.add.Tensor, aten.hardtanh.default, aten.mul.Tensor)),
    "hardsigmoid_core": Case(F.hardsigmoid, "core", RewriteHardsigmoid,
                             (aten.add.Tensor, aten.hardtanh.default, aten.mul.Tensor)),
    "relu6_shifted_over_6": Case(lambda x: F.relu6(x + 3) / 6, "training", RewriteHardsigmoid,
                                 (aten.add.Tensor, aten.hardtanh.default, aten.mul.Tensor)),
    "relu6_shifted_over_5": Case(lambda x: F.relu6(x + 3) / 5, "core", RewriteHardsigmoid),
    "silu_training": Case(F.silu, "training", DecomposeSilu,
                          (aten.sigmoid.default, aten.mul.Tensor)),
    "silu_core": Case(F.silu, "core", DecomposeSilu),  # the core IR has sigmoid · x already
}


@cached_export
def _exported(case_id: str):
    case = CASES[case_id]
    model = Fn(lambda m, x: case.fn(x))
    inputs = (torch.randn(_IMG) * 4,)
    return model, export_gm(model, inputs, case.ir), inputs


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_rewrites_every_spelling_and_leaves_the_rest(case_id):
    case = CASES[case_id]
    _, gm, inputs = _exported(case_id)
    gm = check_pass(case.pass_cls, gm, inputs, modified=bool(case.after), atol=1e-6, rtol=1e-6)
    if case.after:
        assert tuple(call_targets(gm)) == case.after
        for node in gm.graph.nodes:
            if node.op == "call_function":
                assert isinstance(node.meta.get("val"), torch.Tensor), node  # the annotator reads it


def test_hardsigmoid_constants_are_floats():
    _, gm, _ = _exported("hardsigmoid_core")
    RewriteHardsigmoid()(gm)
    add, hardtanh, mul = [n for n in gm.graph.nodes if n.op == "call_function"]
    assert add.args[1] == 3.0 and hardtanh.args[1:] == (0.0, 6.0) and mul.args[1] == 1 / 6
