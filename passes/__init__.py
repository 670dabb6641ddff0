"""xnnquant.passes: lowering-time graph passes and the lowering of converted programs to ExecuTorch.

Public API::

    from xnnquant.passes import lower_to_xnnpack, LoweredProgram, DelegationReport
    from xnnquant.passes import lower_to_reference

Annotation-time passes live with the quantizer (``xnnquant.quantizer.transforms``).
"""

from .lower_to_reference import MissingReferenceError, lower_to_reference
from .lower_to_xnnpack import (
    InputError,
    LoweredProgram,
    LoweringError,
    ProgramError,
    RuntimeMethod,
    lower_to_xnnpack,
)
from .pipeline import PRE_LOWERING_PASSES, PipelineResult, run_pipeline
from .decompose_layer_norm import DecomposeLayerNorm
from .recompose_linear import RecomposeLinear
from .rewrite_squeeze_as_view import RewriteSqueezeAsView
from .report import REASONS, DelegationReport, NodeStatus

__all__ = [
    "lower_to_xnnpack", "LoweredProgram", "LoweringError", "ProgramError", "InputError",
    "RuntimeMethod", "DelegationReport", "NodeStatus",
    "REASONS", "PRE_LOWERING_PASSES", "PipelineResult", "run_pipeline", "DecomposeLayerNorm",
    "RecomposeLinear", "RewriteSqueezeAsView", "lower_to_reference", "MissingReferenceError",
]
