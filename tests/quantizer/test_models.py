"""Whole networks on both IRs: coverage, full delegation, IR invariance, accuracy vs ExecuTorch.

The networks are the tiny variants of ``examples.models`` (ResNet-style with
max_pool, residual adds and eval batch norm; MobileNetV2-style with depthwise
convs and relu6; an MLP block with 3-D linear inputs; the quickstart CNN).
"""

from __future__ import annotations

import functools

import pytest
import torch
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
    XNNPACKQuantizer,
    get_symmetric_quantization_config,
)

from examples.models import TINY_MODELS, build, example_inputs
from tests.support import delegate_count, lower_stock, run_pte
from xnnquant.quantizer import XnnpackQuantizer, quantize, sqnr
from xnnquant.quantizer.workflow import IRS

pytestmark = pytest.mark.slow  # lowers and runs every example model on both IRs

aten = torch.ops.aten
# The ops "Done when" counts: every one of them must be quantized in both IRs.
COUNTED = {
    aten.conv1d.default, aten.conv2d.default, aten.convolution.default, aten.linear.default,
    aten.addmm.default, aten.mm.default, aten.max_pool2d.default,
    aten.max_pool2d_with_indices.default, aten.add.Tensor, aten.add_.Tensor,
}


@functools.lru_cache(maxsize=None)
def _run(name: str, ir: str, contender: str = "xnnquant"):
    model, shape = build(name, tiny=True)
    calibration = example_inputs(shape, 8, seed=1)
    (x,) = example_inputs(shape, 1, seed=2)
    if contender == "xnnquant":
        quantizer = XnnpackQuantizer()
    else:
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    converted = quantize(model, x, calibration, quantizer, ir=ir)
    edge, outside = lower_stock(converted, x)
    out = run_pte(edge, x) if not outside else converted(*x)
    delegates = delegate_count(edge.exported_program().graph_module)
    return quantizer, delegates, outside, sqnr(model(*x), out)


def _counted(quantizer) -> tuple:
    decisions = [d for d in quantizer.report.decisions
                 if d.op in {f"aten.{t._opname}.{t._overloadname}" for t in COUNTED}]
    return sum(d.quantized for d in decisions), len(decisions)


@pytest.mark.parametrize("ir", IRS)
@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_every_op_quantized_and_delegated(name, ir):
    quantizer, delegates, outside, db = _run(name, ir)
    quantized, total = _counted(quantizer)
    assert total > 0 and quantized == total, str(quantizer.report)
    assert outside == [] and delegates == 1
    assert db > 25.0


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_ir_invariance(name):
    training, _, _, db_training = _run(name, "training")
    core, _, _, db_core = _run(name, "core")
    assert _counted(training) == _counted(core)
    assert abs(db_training - db_core) <= 0.5


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_sqnr_at_least_executorch_quantizer(name):
    _, _, _, ours = _run(name, "core")
    _, _, _, theirs = _run(name, "training", "executorch")
    assert ours >= theirs - 0.5, (ours, theirs)
