"""Published architectures (tiny, random weights) on both IRs: int8 coverage, one delegate, vs fp32.

The models are ``examples.models.TINY_ARCHITECTURES``:

* CNNs (mobilenet_v3_small with hardswish and hardsigmoid squeeze-excite,
  efficientnet_b0 with SiLU and sigmoid squeeze-excite, a TF-"SAME"-padded
  MobileNet): with the default config every conv, linear, pool, add, mul, pad and
  activation is quantized, and the ``.pte`` is one delegate with nothing outside.
* Transformers (a 2-layer ViT, ``nn.TransformerEncoderLayer``): the default
  config quantizes their linears dynamically (``QuantConfig.attention``), the
  static one everything it can; both lower to one delegate, fewer than the stock
  fp32 lowering of the same model, and the default keeps >= 25 dB against fp32.

Every lowering runs ``lower_to_xnnpack``'s self-check, so each ``.pte`` here
also matches its converted graph.
"""

from __future__ import annotations

import functools

import pytest
import torch

from examples.models import TINY_ARCHITECTURES, build, example_inputs
from tests.support import delegate_count, lower_stock
from xnnquant.passes import lower_to_xnnpack
from xnnquant.quantizer import XnnpackQuantizer, get_config, quantize, sqnr
from xnnquant.quantizer.workflow import IRS, export_model

pytestmark = pytest.mark.slow  # quantizes and lowers whole networks

CNNS = ("mobilenet_v3_small", "efficientnet_b0", "tf_same_mobilenet")
TRANSFORMERS = ("vit", "transformer_encoder")
CONFIGS = {"default": lambda: XnnpackQuantizer(),
           "static": lambda: XnnpackQuantizer(get_config(attention="static"))}

aten = torch.ops.aten
# What "every op XNNPACK runs in int8" means on these graphs, by op name in the report.
COUNTED = {
    "aten.conv2d.default", "aten.convolution.default", "aten.linear.default", "aten.addmm.default",
    "aten.max_pool2d.default", "aten.add.Tensor", "aten.mul.Tensor", "aten.hardswish.default",
    "aten.hardtanh.default", "aten.relu.default", "aten.sigmoid.default", "aten.mean.dim",
    "aten.constant_pad_nd.default", "aten.pad.default",
}


def test_the_table_holds_every_architecture():
    assert set(TINY_ARCHITECTURES) == set(CNNS) | set(TRANSFORMERS)


@functools.lru_cache(maxsize=None)
def _run(name: str, ir: str, config: str):
    model, shape = build(name, tiny=True)
    calibration = example_inputs(shape, 8, seed=1)
    (x,) = example_inputs(shape, 1, seed=2)
    quantizer = CONFIGS[config]()
    converted = quantize(model, x, calibration, quantizer, ir=ir)
    lowered = lower_to_xnnpack(converted, x)
    with torch.no_grad():
        reference = model(*x)
    return quantizer.report, lowered, sqnr(reference, lowered.run(*x)[0])


@functools.lru_cache(maxsize=None)
def _stock_fp32_delegates(name: str, ir: str) -> int:
    model, shape = build(name, tiny=True)
    (x,) = example_inputs(shape, 1, seed=2)
    edge, _ = lower_stock(export_model(model, x, ir=ir).module(), x)
    return delegate_count(edge.exported_program().graph_module)


@pytest.mark.parametrize("ir", IRS)
@pytest.mark.parametrize("name", CNNS)
def test_cnn_is_int8_throughout_in_one_delegate(name, ir):
    report, lowered, _ = _run(name, ir, "default")
    counted = [d for d in report.decisions if d.op in COUNTED]
    assert counted and all(d.quantized for d in counted), [(d.node, d.reason) for d in counted if not d.quantized]
    assert lowered.report.num_delegates == 1 and lowered.report.outside_ops == [], str(lowered.report)
    assert lowered.report.self_check.passed


# The static config on the training IR only: each case is a whole lowering (suite time).
TRANSFORMER_CASES = [(name, ir, "default") for name in TRANSFORMERS for ir in IRS] + \
    [(name, "training", "static") for name in TRANSFORMERS]


@pytest.mark.parametrize("name, ir, config", TRANSFORMER_CASES)
def test_transformer_has_one_delegate_fewer_than_stock_fp32(name, ir, config):
    report, lowered, db = _run(name, ir, config)
    assert lowered.report.num_delegates == 1 and lowered.report.outside_ops == [], str(lowered.report)
    assert lowered.report.num_delegates < _stock_fp32_delegates(name, ir)
    assert lowered.report.self_check.passed
    linears = [d for d in report.decisions if d.op in ("aten.linear.default", "aten.addmm.default")]
    assert linears and all(d.quantized for d in linears)
    if config == "default":
        assert all("attention graph" in (d.config or "") for d in linears)
        assert db >= 25.0, db
