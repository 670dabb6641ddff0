"""Kernels against the op table: every record names a registered kernel or says why not, and gaps raise.

Also exports a tiny module per kernel to prove the fake implementations let
``torch.export`` capture graphs that call them.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from tests.kernels.kernel_cases import CASES, FLOAT_REFERENCE, output_bounds
from xnnquant.kernels import registered_kernels
from xnnquant.passes.lower_to_reference import (
    KERNEL_RECORDS,
    MissingReferenceError,
    check_references,
    check_registry,
)
from xnnquant.quantizer import RECORDS

aten = torch.ops.aten


def test_every_record_has_a_registered_kernel_or_a_reason():
    check_registry()
    for record in RECORDS:
        if record.reference is None:
            assert record.no_reference, f"record {record.name!r} has no reference and no reason"
        elif record.reference.kernel is not None:
            assert record.reference.kernel in registered_kernels(), record.name
    assert {r.reference.kernel for r in KERNEL_RECORDS} <= set(registered_kernels())


def test_every_kernel_has_a_case_and_a_float_reference():
    # Guard: adding a kernel or a record with a kernel but without a kernel test fails here.
    tested = {c.kernel for c in CASES.values()}
    for name in registered_kernels():
        assert name in tested, f"xnnquant::{name} has no case in kernel_cases.CASES"
        assert name in FLOAT_REFERENCE, f"xnnquant::{name} has no float reference"
    for record in KERNEL_RECORDS:
        assert record.reference.kernel in tested, f"record {record.name!r} has no kernel case"


def test_both_ir_spellings_reach_a_kernel():
    expected = {
        "linear": {aten.linear.default, aten.addmm.default, aten.mm.default},
        "conv": {aten.conv1d.default, aten.conv2d.default, aten.convolution.default},
        "add": {aten.add.Tensor},
        "max_pool": {aten.max_pool2d.default, aten.max_pool2d_with_indices.default},
    }
    by_name = {r.name: r for r in KERNEL_RECORDS}
    for name, targets in expected.items():
        assert by_name[name].targets >= targets, name


def test_check_registry_names_a_record_whose_kernel_is_missing(monkeypatch):
    lowering = importlib.import_module("xnnquant.passes.lower_to_reference")
    monkeypatch.setattr(lowering, "registered_kernels", lambda: {})
    with pytest.raises(MissingReferenceError, match=r"record 'linear' names kernel xnnquant::quantized_linear"):
        lowering.check_registry()


def test_check_references_names_an_op_without_kernel():
    # An op in our namespace that was defined without @reference_kernel.
    name = "_unreferenced_for_test"
    if not hasattr(torch.ops.xnnquant, name):
        lib = torch.library.Library("xnnquant", "FRAGMENT")
        lib.define(f"{name}(Tensor x) -> Tensor")
        lib.impl(name, lambda x: x.clone(), "CompositeExplicitAutograd")
        test_check_references_names_an_op_without_kernel.lib = lib  # keep registered
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    graph.output(graph.call_function(torch.ops.xnnquant.quantized_max_pool2d.default,
                                     (x, [2, 2], [], [0, 0], [1, 1], False, -128, 127)))
    check_references(torch.fx.GraphModule(torch.nn.Module(), graph))  # covered: no error
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    graph.output(graph.call_function(getattr(torch.ops.xnnquant, name).default, (x,)))
    with pytest.raises(MissingReferenceError, match=name):
        check_references(torch.fx.GraphModule(torch.nn.Module(), graph))


class _CallKernel(torch.nn.Module):
    """Calls one kernel with the tensor arguments as inputs and the rest baked in."""

    def __init__(self, kernel, kw, bounds):
        super().__init__()
        self.op = getattr(torch.ops.xnnquant, kernel).default
        self.names = [k for k, v in kw.items() if isinstance(v, torch.Tensor)]
        self.consts = {k: v for k, v in kw.items() if k not in self.names}
        self.bounds = bounds

    def forward(self, *tensors):
        kw = dict(zip(self.names, tensors), **self.consts)
        return self.op(**kw, out_min=self.bounds[0], out_max=self.bounds[1])


def _one_case_per_kernel():
    first = {}
    for case_id in sorted(CASES):
        first.setdefault(CASES[case_id].kernel, case_id)
    return sorted(first.values())


@pytest.mark.parametrize("case_id", _one_case_per_kernel())
def test_fake_impl_lets_torch_export_capture_the_kernel(case_id):
    case = CASES[case_id]
    kw = case.build()
    module = _CallKernel(case.kernel, kw, output_bounds(kw, case.act))
    tensors = tuple(kw[k] for k in module.names)
    ep = torch.export.export(module, tensors)
    targets = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    assert targets == [getattr(torch.ops.xnnquant, case.kernel).default]
    (out,) = [n for n in ep.graph.nodes if n.op == "output"][0].args[0]
    eager = module(*tensors)
    assert out.meta["val"].shape == eager.shape and out.meta["val"].dtype == torch.int8
    assert torch.equal(ep.module()(*tensors), eager)
