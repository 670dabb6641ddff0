"""Scoping: module name > module type > operator type > global, filters, and float islands."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from tests.support import lower_stock
from xnnquant.quantizer import XnnpackQuantizer, get_config, quantize

CONFIG = get_config(observer="minmax")
Q = torch.ops.quantized_decomposed
QUANTIZE = {Q.quantize_per_tensor.default, Q.quantize_per_tensor.tensor}
DEQUANTIZE = {Q.dequantize_per_tensor.default, Q.dequantize_per_tensor.tensor}


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.proj = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.proj(torch.relu(self.conv(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = Block()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        y = self.block(torch.relu(self.stem(x)))
        return self.head(y.mean((2, 3)))


X = (torch.randn(1, 3, 8, 8),)


def _quantized_modules(quantizer, ir="training"):
    torch.manual_seed(0)
    quantize(Net().eval(), X, [X], quantizer, ir=ir)
    by_node = quantizer.report.by_node()
    anchors = [d for d in quantizer.report.decisions if d.pattern in ("conv", "linear", "addmm")
               and d.role in ("anchor", None)]
    return {d.node: d.quantized for d in anchors}, by_node


SCOPES = {
    "global_only": (lambda q: q, {"stem": True, "block.conv": True, "block.proj": True, "head": True}),
    "module_name_none": (lambda q: q.set_module_name("block", None),
                         {"stem": True, "block.conv": False, "block.proj": False, "head": True}),
    "module_name_beats_type": (
        lambda q: q.set_module_type(nn.Conv2d, None).set_module_name("block.proj", CONFIG),
        {"stem": False, "block.conv": False, "block.proj": True, "head": True}),
    "type_beats_operator": (
        lambda q: q.set_operator_type(torch.ops.aten.conv2d.default, None).set_module_type(Block, CONFIG),
        {"stem": False, "block.conv": True, "block.proj": True, "head": True}),
    "operator_beats_global": (
        lambda q: q.set_global(None).set_operator_type(torch.ops.aten.linear, CONFIG),
        {"stem": False, "block.conv": False, "block.proj": False, "head": True}),
    "inner_name_beats_outer_name": (
        lambda q: q.set_module_name("block", None).set_module_name("block.conv", CONFIG),
        {"stem": True, "block.conv": True, "block.proj": False, "head": True}),
}

_NODE_OF = {"stem": "conv2d", "block.conv": "conv2d_1", "block.proj": "conv2d_2", "head": "linear"}


@pytest.mark.parametrize("name", sorted(SCOPES))
def test_precedence(name):
    setup, expected = SCOPES[name]
    quantizer = setup(XnnpackQuantizer(CONFIG))
    quantized, by_node = _quantized_modules(quantizer)
    got = {module: quantized[_NODE_OF[module]] for module in expected}
    assert got == expected
    for module, is_q in expected.items():
        if not is_q:
            assert "excluded by config" in by_node[_NODE_OF[module]].reason


def test_filter_function_keeps_nodes_float():
    quantizer = XnnpackQuantizer(CONFIG).set_filter_function(lambda n: n.name != "linear")
    quantized, by_node = _quantized_modules(quantizer)
    assert quantized["linear"] is False and quantized["conv2d"] is True
    assert by_node["linear"].reason == "excluded by the node filter"


@pytest.mark.parametrize("ir", ["training", "core"])
def test_float_island_has_clean_boundaries_and_lowers(ir):
    quantizer = XnnpackQuantizer(CONFIG).set_module_name("block.proj", None)
    torch.manual_seed(0)
    converted = quantize(Net().eval(), X, [X], quantizer, ir=ir)
    (proj,) = [n for n in converted.graph.nodes if n.op == "call_function"
               and n.target in (torch.ops.aten.conv2d.default, torch.ops.aten.convolution.default)
               and "proj" in str(n.meta.get("nn_module_stack", {}))]
    assert proj.args[0].target in DEQUANTIZE  # enters float through a dequantize
    assert proj.args[1].op == "get_attr"  # its weight stays float
    node = proj
    while node.target not in QUANTIZE:  # float until the next quantized op quantizes again
        (node,) = node.users
        assert node.target not in DEQUANTIZE
    assert str(next(iter(next(iter(node.users)).users))) in ("linear", "addmm")
    _, outside = lower_stock(converted, X)
    assert outside == []  # the float conv runs in XNNPACK's fp32 path


def test_setters_reject_wrong_types():
    with pytest.raises(TypeError, match="ATen op"):
        XnnpackQuantizer().set_operator_type("linear", CONFIG)
    with pytest.raises(TypeError, match="class"):
        XnnpackQuantizer().set_module_type("Linear", CONFIG)
    with pytest.raises(TypeError, match="str"):
        XnnpackQuantizer().set_module_name(nn.Linear, CONFIG)
