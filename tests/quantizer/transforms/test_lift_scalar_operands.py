"""Tests of ``LiftScalarOperands``: the Python-number operand of add/sub/mul becomes a 0-D tensor constant.

``x + 1.0`` → ``add.Tensor(x, c)`` with ``c`` a ``get_attr`` holding
``tensor(1.0)`` in ``x``'s dtype, so the constant gets an observer of its own;
the ``.Scalar`` overloads become their ``.Tensor`` forms (the op table's
``scalar_forms``).  Integer tensors and ops of two tensors are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import expecttest
import pytest
import torch

from tests.support import graph_signature
from xnnquant.quantizer.patterns import LIFTED_TARGETS, SCALAR_FORMS
from xnnquant.quantizer.transforms import LiftScalarOperands

from .common import Fn, cached_export, check_pass, export_gm, nodes_of

aten = torch.ops.aten


@dataclass(frozen=True)
class Case:
    fn: Callable  # fn(*inputs), the forward
    inputs: Callable[[], tuple]
    ir: str = "training"
    target: object = None  # the binary op's target before the pass
    after: object = None  # ... and after it
    values: tuple = ()  # the lifted constants, in graph order


def _x(*shape, dtype=torch.float32):
    return lambda: (torch.randn(shape).to(dtype),)


def _ints(*shape):
    return lambda: (torch.randint(-5, 6, shape),)


_X = _x(2, 3, 4)

LIFTS: dict = {
    "add_float": Case(lambda x: x + 1.5, _X, target=aten.add.Tensor, after=aten.add.Tensor,
                      values=(1.5,)),
    "radd_float": Case(lambda x: 1.5 + x, _X, target=aten.add.Tensor, after=aten.add.Tensor,
                       values=(1.5,)),
    "mul_int": Case(lambda x: x * 2, _X, target=aten.mul.Tensor, after=aten.mul.Tensor,
                    values=(2.0,)),
    "sub_float": Case(lambda x: x - 0.5, _X, target=aten.sub.Tensor, after=aten.sub.Tensor,
                      values=(0.5,)),
    "add_alpha": Case(lambda x: torch.add(x, 1.0, alpha=2), _X, target=aten.add.Tensor,
                      after=aten.add.Tensor, values=(1.0,)),
    "add_scalar_overload": Case(lambda x: aten.add.Scalar(x, 1.25), _X, target=aten.add.Scalar,
                                after=aten.add.Tensor, values=(1.25,)),
    "sub_scalar_overload": Case(lambda x: aten.sub.Scalar(x, 3), _X, target=aten.sub.Scalar,
                                after=aten.sub.Tensor, values=(3.0,)),
    "mul_scalar_overload": Case(lambda x: aten.mul.Scalar(x, -0.75), _X, target=aten.mul.Scalar,
                                after=aten.mul.Tensor, values=(-0.75,)),
    "half_input": Case(lambda x: x + 0.25, _x(2, 3, 4, dtype=torch.float16),
                       target=aten.add.Tensor, after=aten.add.Tensor, values=(0.25,)),
    "two_scalars": Case(lambda x: x * 2 + 1, _X, target=aten.mul.Tensor, after=aten.mul.Tensor,
                        values=(2.0, 1.0)),
    "core_add_float": Case(lambda x: x + 1.5, _X, ir="core", target=aten.add.Tensor,
                           after=aten.add.Tensor, values=(1.5,)),
    "core_mul_scalar_overload": Case(lambda x: aten.mul.Scalar(x, 3.0), _X, ir="core",
                                     target=aten.mul.Scalar, after=aten.mul.Tensor,
                                     values=(3.0,)),
}

LEFT_ALONE: dict = {
    "int_tensor_add": Case(lambda x: x + 1, _ints(2, 3)),
    "int_tensor_mul": Case(lambda x: x * 2, _ints(2, 3)),
    "int_tensor_sub_scalar_overload": Case(lambda x: aten.sub.Scalar(x, 1), _ints(2, 3)),
    "tensor_plus_tensor": Case(lambda x, y: x + y, lambda: (torch.randn(2, 3), torch.randn(2, 3))),
    "tensor_times_0d_tensor": Case(lambda x, s: x * s, lambda: (torch.randn(2, 3), torch.randn(()))),
    "div_is_not_lifted": Case(lambda x: x / 2.0, _X),
    "core_int_tensor_add": Case(lambda x: x + 1, _ints(2, 3), ir="core"),
    "core_tensor_minus_tensor": Case(lambda x, y: x - y,
                                     lambda: (torch.randn(2, 3), torch.randn(2, 3)), ir="core"),
}

# The core IR writes ``1.0 - x`` as ``sub.Tensor(1.0, x)``: the number is the left operand.
SCALAR_ON_THE_LEFT: dict = {
    "core_scalar_minus_tensor": Case(lambda x: 1.0 - x, _X, ir="core", target=aten.sub.Tensor),
}


@cached_export
def _exported(case_id: str):
    case = {**LIFTS, **LEFT_ALONE, **SCALAR_ON_THE_LEFT}[case_id]
    model, inputs = Fn(lambda m, *args: case.fn(*args)), case.inputs()
    return model, export_gm(model, inputs, case.ir), inputs


def _binary_ops(gm) -> list:
    return nodes_of(gm, LIFTED_TARGETS)


@pytest.mark.parametrize("case_id", LIFTS)
def test_lifts_scalar_operand_to_tensor_constant(case_id):
    case = LIFTS[case_id]
    _, gm, inputs = _exported(case_id)
    before = _binary_ops(gm)
    assert before[0].target == case.target
    kwargs = [dict(n.kwargs) for n in before]

    gm = check_pass(LiftScalarOperands, gm, inputs, modified=True)

    ops = _binary_ops(gm)
    assert [n.target for n in ops][0] == case.after
    assert [dict(n.kwargs) for n in ops] == kwargs
    consts = [n.args[1] for n in ops]
    assert all(c.op == "get_attr" for c in consts)
    assert len({c.target for c in consts}) == len(consts)
    dtype = inputs[0].dtype
    for const, value in zip(consts, case.values, strict=True):
        tensor = gm.get_buffer(const.target)
        torch.testing.assert_close(tensor, torch.tensor(value, dtype=dtype), atol=0, rtol=0)
        assert const.meta["val"].shape == () and const.meta["val"].dtype == dtype


def test_every_scalar_form_has_a_case():
    # The in-place overloads (add_.Tensor, ...) never reach the pass: export functionalizes them.
    covered = {c.target for c in LIFTS.values()} | {c.after for c in LIFTS.values()}
    wanted = set(SCALAR_FORMS) | set(SCALAR_FORMS.values())
    missing = {str(t) for t in wanted - covered}
    assert not missing, f"scalar forms with no case in LIFTS: {sorted(missing)}"


@pytest.mark.parametrize("case_id", LEFT_ALONE)
def test_leaves_integer_and_tensor_operands_alone(case_id):
    _, gm, inputs = _exported(case_id)
    check_pass(LiftScalarOperands, gm, inputs, modified=False)


@pytest.mark.parametrize("case_id", SCALAR_ON_THE_LEFT)
def test_lifts_scalar_on_the_left(case_id):
    _, gm, inputs = _exported(case_id)
    (op,) = _binary_ops(gm)
    assert op.target == SCALAR_ON_THE_LEFT[case_id].target

    gm = check_pass(LiftScalarOperands, gm, inputs, modified=True)

    (op,) = _binary_ops(gm)
    assert all(isinstance(a, torch.fx.Node) for a in op.args[:2])


class TestLiftedGraphs(expecttest.TestCase):
    def test_add_scalar_overload(self):
        _, gm, _ = _exported("add_scalar_overload")
        LiftScalarOperands()(gm)
        self.assertExpectedInline(graph_signature(gm), """add = aten.add(inputs_0, _lifted_scalar_0)""")

    def test_two_scalars_get_their_own_constants(self):
        _, gm, _ = _exported("two_scalars")
        LiftScalarOperands()(gm)
        self.assertExpectedInline(graph_signature(gm), """\
mul = aten.mul(inputs_0, _lifted_scalar_0)
add = aten.add(mul, _lifted_scalar_1)""")

    def test_only_the_scalar_operand_is_lifted(self):
        model = Fn(lambda m, x, y: (x + y) * 0.5 - x)
        gm = export_gm(model, (torch.randn(2, 3), torch.randn(2, 3)), "training")
        LiftScalarOperands()(gm)
        self.assertExpectedInline(graph_signature(gm), """\
add = aten.add(inputs_0, inputs_1)
mul = aten.mul(add, _lifted_scalar_0)
sub = aten.sub(mul, inputs_0)""")
