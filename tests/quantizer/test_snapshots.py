"""Converted graphs of small cases, pinned: their exact structure is the contract.

Regenerate with ``EXPECTTEST_ACCEPT=1`` and read every line before committing.
"""

from __future__ import annotations

import expecttest

from tests.quantizer.cases import quantize_case
from xnnquant.quantizer.testing import graph_text


class TestConvertedGraphs(expecttest.TestCase):
    def test_core_ir_linear_observes_weight_before_permute(self):
        _, converted, _, _ = quantize_case("linear", "core")
        self.assertExpectedInline(graph_text(converted), """\
dequantize_per_channel_default = quantized_decomposed.dequantize_per_channel(quantize_per_channel_default, _scale_0, _zero_point_0, 0, -127, 127, int8)
quantize_per_tensor_default = quantized_decomposed.quantize_per_tensor(input_1, 0.0219, 4, -128, 127, int8)
dequantize_per_tensor_default = quantized_decomposed.dequantize_per_tensor(quantize_per_tensor_default, 0.0219, 4, -128, 127, int8)
permute = aten.permute(dequantize_per_channel_default, [1, 0])
addmm = aten.addmm(_0_bias, dequantize_per_tensor_default, permute)
relu = aten.relu(addmm)
quantize_per_tensor_default_1 = quantized_decomposed.quantize_per_tensor(relu, 0.00572, -128, -128, 127, int8)
dequantize_per_tensor_default_1 = quantized_decomposed.dequantize_per_tensor(quantize_per_tensor_default_1, 0.00572, -128, -128, 127, int8)""")

    def test_core_ir_3d_linear_observes_outside_its_views(self):
        _, converted, _, _ = quantize_case("linear_3d", "core")
        self.assertExpectedInline(graph_text(converted), """\
dequantize_per_channel_default = quantized_decomposed.dequantize_per_channel(quantize_per_channel_default, _scale_0, _zero_point_0, 0, -127, 127, int8)
dequantize_per_channel_default_1 = quantized_decomposed.dequantize_per_channel(quantize_per_channel_default_1, _scale_1, _zero_point_1, 0, -127, 127, int8)
quantize_per_tensor_default = quantized_decomposed.quantize_per_tensor(input_1, 0.02504, 11, -128, 127, int8)
dequantize_per_tensor_default = quantized_decomposed.dequantize_per_tensor(quantize_per_tensor_default, 0.02504, 11, -128, 127, int8)
view = aten.view(dequantize_per_tensor_default, [10, 16])
permute = aten.permute(dequantize_per_channel_default, [1, 0])
addmm = aten.addmm(_0_bias, view, permute)
view_1 = aten.view(addmm, [2, 5, 32])
hardtanh = aten.hardtanh(view_1, 0, 6)
quantize_per_tensor_default_1 = quantized_decomposed.quantize_per_tensor(hardtanh, 0.008951, -128, -128, 127, int8)
dequantize_per_tensor_default_1 = quantized_decomposed.dequantize_per_tensor(quantize_per_tensor_default_1, 0.008951, -128, -128, 127, int8)
view_2 = aten.view(dequantize_per_tensor_default_1, [10, 32])
permute_1 = aten.permute(dequantize_per_channel_default_1, [1, 0])
addmm_1 = aten.addmm(_2_bias, view_2, permute_1)
view_3 = aten.view(addmm_1, [2, 5, 8])
quantize_per_tensor_default_2 = quantized_decomposed.quantize_per_tensor(view_3, 0.007957, -23, -128, 127, int8)
dequantize_per_tensor_default_2 = quantized_decomposed.dequantize_per_tensor(quantize_per_tensor_default_2, 0.007957, -23, -128, 127, int8)""")

    def test_training_ir_conv_relu6_is_fused(self):
        _, converted, _, _ = quantize_case("conv_bn_relu6", "training")
        self.assertExpectedInline(graph_text(converted), """\
dequantize_per_channel_default = quantized_decomposed.dequantize_per_channel(quantize_per_channel_default, _scale_0, _zero_point_0, 0, -127, 127, int8)
quantize_per_tensor_default = quantized_decomposed.quantize_per_tensor(input_1, 0.02845, -17, -128, 127, int8)
dequantize_per_tensor_default = quantized_decomposed.dequantize_per_tensor(quantize_per_tensor_default, 0.02845, -17, -128, 127, int8)
conv2d = aten.conv2d(dequantize_per_tensor_default, dequantize_per_channel_default, _0_bias)
hardtanh = aten.hardtanh(conv2d, 0, 6)
quantize_per_tensor_default_1 = quantized_decomposed.quantize_per_tensor(hardtanh, 0.01002, -128, -128, 127, int8)
dequantize_per_tensor_default_1 = quantized_decomposed.dequantize_per_tensor(quantize_per_tensor_default_1, 0.01002, -128, -128, 127, int8)""")

    def test_core_ir_max_pool_shares_input_qparams(self):
        _, converted, _, _ = quantize_case("max_pool", "core")
        self.assertExpectedInline(graph_text(converted), """\
dequantize_per_channel_default = quantized_decomposed.dequantize_per_channel(quantize_per_channel_default, _scale_0, _zero_point_0, 0, -127, 127, int8)
quantize_per_tensor_default = quantized_decomposed.quantize_per_tensor(input_1, 0.02845, -17, -128, 127, int8)
dequantize_per_tensor_default = quantized_decomposed.dequantize_per_tensor(quantize_per_tensor_default, 0.02845, -17, -128, 127, int8)
convolution = aten.convolution(dequantize_per_tensor_default, dequantize_per_channel_default, _0_bias, [1, 1], [1, 1], [1, 1], False, [0, 0], 1)
relu = aten.relu(convolution)
quantize_per_tensor_default_1 = quantized_decomposed.quantize_per_tensor(relu, 0.007664, -128, -128, 127, int8)
dequantize_per_tensor_default_1 = quantized_decomposed.dequantize_per_tensor(quantize_per_tensor_default_1, 0.007664, -128, -128, 127, int8)
max_pool2d_default = aten.max_pool2d(dequantize_per_tensor_default_1, [2, 2], [2, 2])
quantize_per_tensor_default_2 = quantized_decomposed.quantize_per_tensor(max_pool2d_default, 0.007664, -128, -128, 127, int8)
dequantize_per_tensor_default_2 = quantized_decomposed.dequantize_per_tensor(quantize_per_tensor_default_2, 0.007664, -128, -128, 127, int8)""")
