"""Reference integer kernels for xnnquant: the golden model of XNNPACK's int8 operators.

Importing this package registers the kernels as ``torch.ops.xnnquant.*``
(``ops``), exposes the shared arithmetic (``arith``) and the table pairing each
kernel with the q/dq pattern it implements (``registry``).
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
from xnnquant.kernels.registry import (
    ANCHORS,
    FUSED_ACTIVATIONS,
    PATTERNS,
    SHARED_QPARAMS_OPS,
    Anchor,
    FusedActivation,
    MissingReferenceError,
    ReferencePattern,
    check_references,
    check_registry,
    pattern_for,
)

check_registry()

__all__ = [
    "ANCHORS",
    "FUSED_ACTIVATIONS",
    "NAMESPACE",
    "PATTERNS",
    "SHARED_QPARAMS_OPS",
    "Anchor",
    "FusedActivation",
    "MissingReferenceError",
    "ReferencePattern",
    "activation_bounds",
    "add_fixed_point_params",
    "check_references",
    "check_registry",
    "pattern_for",
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
