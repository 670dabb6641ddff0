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

from .decompose_silu import DecomposeSilu
from .fold_conv_batch_norm import FoldConvBatchNorm
from .lift_scalar_operands import LiftScalarOperands
from .recompose_hardswish import RecomposeHardswish
from .rewrite_clamp import RewriteClamp
from .rewrite_hardsigmoid import RewriteHardsigmoid
from .rewrite_max_pool_with_indices import RewriteMaxPoolWithIndices
from .rewrite_mean_keepdim import RewriteMeanKeepdim

#: Before annotation, in order: fold core-IR batch norm, hardswish whole, hardsigmoid
#: and SiLU in int8 ops, give max-pool and clamps the spellings XNNPACK claims, keepdim for spatial
#: means, tensors for scalar operands (the ones the hardsigmoid spelling adds included).
ANNOTATION_PASSES: tuple = (
    FoldConvBatchNorm,
    RecomposeHardswish,
    RewriteHardsigmoid,
    DecomposeSilu,
    RewriteMaxPoolWithIndices,
    RewriteClamp,
    RewriteMeanKeepdim,
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
