"""xnnquant.passes: graph passes and the lowering of converted programs to ExecuTorch.

Public API::

    from xnnquant.passes import lower_to_xnnpack, LoweredProgram, DelegationReport
    from xnnquant.passes import lower_to_reference
"""

from .lower_to_reference import lower_to_reference
from .lower_to_xnnpack import LoweredProgram, LoweringError, lower_to_xnnpack
from .pipeline import ANNOTATION_PASSES, PRE_LOWERING_PASSES, PipelineResult, run_pipeline
from .recompose_linear import RecomposeLinear
from .report import REASONS, DelegationReport, NodeStatus

__all__ = [
    "lower_to_xnnpack", "LoweredProgram", "LoweringError", "DelegationReport", "NodeStatus",
    "REASONS", "ANNOTATION_PASSES", "PRE_LOWERING_PASSES", "PipelineResult", "run_pipeline", "RecomposeLinear",
    "lower_to_reference",
]
