"""Reference integer kernels for xnnquant: the golden model of XNNPACK's int8 operators.

Importing this package registers the kernels as ``torch.ops.xnnquant.*``
(``ops``, and ``lut`` for the table-driven activations and pad) and exposes the shared arithmetic
(``arith``) and XNNPACK's row-wise dynamic quantization (``dynamic``).  Which q/dq pattern
each kernel implements is a field of that op's record in the one op table,
``xnnquant.quantizer.patterns`` (``OpRecord.reference``); the reference
lowering, ``xnnquant.passes.lower_to_reference``, reads it from there.
"""

from xnnquant.kernels.arith import activation_bounds, add_fixed_point_params
from xnnquant.kernels.dynamic import fake_quantize_rows
from xnnquant.kernels.lut import (
    lookup_table,
    quantized_gelu,
    quantized_hardswish,
    quantized_leaky_relu,
    quantized_pad,
    quantized_sigmoid,
    quantized_tanh,
)
from xnnquant.kernels.ops import (
    NAMESPACE,
    quantized_add,
    quantized_clamp,
    quantized_conv,
    quantized_linear,
    quantized_max_pool2d,
    quantized_mean_hw,
    quantized_mul,
    quantized_sub,
    registered_kernels,
)

__all__ = [
    "NAMESPACE",
    "activation_bounds",
    "add_fixed_point_params",
    "fake_quantize_rows",
    "lookup_table",
    "quantized_add",
    "quantized_clamp",
    "quantized_conv",
    "quantized_gelu",
    "quantized_hardswish",
    "quantized_leaky_relu",
    "quantized_linear",
    "quantized_max_pool2d",
    "quantized_mean_hw",
    "quantized_mul",
    "quantized_pad",
    "quantized_sigmoid",
    "quantized_sub",
    "quantized_tanh",
    "registered_kernels",
]
