"""Reference integer kernels for xnnquant: the golden model of XNNPACK's int8 operators.

Importing this package registers the kernels as ``torch.ops.xnnquant.*``
(``ops``) and exposes the shared arithmetic (``arith``).  Which q/dq pattern
each kernel implements is a field of that op's record in the one op table,
``xnnquant.quantizer.patterns`` (``OpRecord.reference``); the reference
lowering, ``xnnquant.passes.lower_to_reference``, reads it from there.
"""

from xnnquant.kernels.arith import activation_bounds, add_fixed_point_params
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
    "quantized_add",
    "quantized_clamp",
    "quantized_conv",
    "quantized_linear",
    "quantized_max_pool2d",
    "quantized_mean_hw",
    "quantized_mul",
    "quantized_sub",
    "registered_kernels",
]
