"""Annotation-time graph passes: put an exported graph into the spellings the op table covers.

They run in ``XnnpackQuantizer.transform_for_annotation`` (see
:data:`.pipeline.ANNOTATION_PASSES`), before torchao's prepare inserts
observers.  Lowering-time passes live in ``xnnquant.passes``; both kinds are
run by the one runner here, :func:`.pipeline.run_pipeline`.
"""

from .decompose_attention import DecomposeAttention
from .decompose_silu import DecomposeSilu
from .fold_conv_batch_norm import FoldConvBatchNorm
from .lift_scalar_operands import LiftScalarOperands
from .pipeline import ANNOTATION_PASSES, PipelineResult, run_pipeline
from .recompose_broadcast_linear import RecomposeBroadcastLinear
from .recompose_hardswish import RecomposeHardswish
from .remove_identity_ops import RemoveIdentityOps
from .rewrite_clamp import RewriteClamp
from .rewrite_hardsigmoid import RewriteHardsigmoid
from .rewrite_matmul_as_bmm import RewriteMatmulAsBmm
from .rewrite_max_pool_with_indices import RewriteMaxPoolWithIndices
from .rewrite_select_as_slice import RewriteSelectAsSlice
from .rewrite_mean_keepdim import RewriteMeanKeepdim
from .rewrite_rsub_as_sub import RewriteRsubAsSub
from .rewrite_safe_softmax import RewriteSafeSoftmax

__all__ = [
    "ANNOTATION_PASSES", "PipelineResult", "run_pipeline", "DecomposeAttention", "DecomposeSilu",
    "FoldConvBatchNorm", "LiftScalarOperands", "RecomposeBroadcastLinear", "RecomposeHardswish",
    "RemoveIdentityOps", "RewriteClamp", "RewriteHardsigmoid", "RewriteMatmulAsBmm",
    "RewriteMaxPoolWithIndices", "RewriteMeanKeepdim", "RewriteRsubAsSub", "RewriteSafeSoftmax",
    "RewriteSelectAsSlice",
]
