"""The one pass runner, and the passes that run before annotation.

``ANNOTATION_PASSES`` run in ``XnnpackQuantizer.transform_for_annotation``;
``xnnquant.passes.pipeline.PRE_LOWERING_PASSES`` run in ``lower_to_xnnpack``.
Both lists go through :func:`run_pipeline`.  The runner lives here, at the
bottom layer, because the quantizer must not import the lowering package.

Each pass is a ``torch.fx`` ``PassBase`` (``call()`` returns
``PassResult(graph_module, modified)``); the graph each one is for is in its
module docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch.fx import GraphModule

from .decompose_attention import DecomposeAttention
from .decompose_silu import DecomposeSilu
from .fold_conv_batch_norm import FoldConvBatchNorm
from .lift_scalar_operands import LiftScalarOperands
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

#: Before annotation, in order: fold core-IR batch norm, drop eval dropout and no-op expands,
#: linear whole where the core IR broadcast it into a ``bmm``, select as slice, attention written
#: out and batched matmuls as ``bmm`` (training IR), an unmasked safe softmax as softmax (core
#: IR), hardswish whole, hardsigmoid and SiLU in int8 ops, give max-pool and clamps the spellings
#: XNNPACK claims, keepdim for spatial means, ``rsub`` as ``sub``, tensors for scalar operands
#: (the ones the hardsigmoid spelling adds included).
ANNOTATION_PASSES: tuple = (
    FoldConvBatchNorm,
    RemoveIdentityOps,
    RecomposeBroadcastLinear,
    RewriteSelectAsSlice,
    DecomposeAttention,
    RewriteMatmulAsBmm,
    RewriteSafeSoftmax,
    RecomposeHardswish,
    RewriteHardsigmoid,
    DecomposeSilu,
    RewriteMaxPoolWithIndices,
    RewriteClamp,
    RewriteMeanKeepdim,
    RewriteRsubAsSub,
    LiftScalarOperands,
)


@dataclass(frozen=True)
class PipelineResult:
    """The rewritten graph module and the names of the passes that changed it, in order."""

    graph_module: GraphModule
    changed: tuple

    @property
    def modified(self) -> bool:
        return bool(self.changed)


def run_pipeline(gm: GraphModule, passes: Sequence) -> PipelineResult:
    """Run ``passes`` (classes or instances) over ``gm`` in order.

    The graph module is rewritten in place; copy it first if the caller's must
    stay untouched (``lower_to_xnnpack`` does).

    Returns:
        A :class:`PipelineResult`; ``changed`` names each pass that reported a modification.
    """
    changed = []
    for p in passes:
        instance = p() if isinstance(p, type) else p
        result = instance(gm)
        gm = result.graph_module
        if result.modified:
            changed.append(type(instance).__name__)
    return PipelineResult(gm, tuple(changed))
