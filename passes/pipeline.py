"""The one place that lists and runs graph passes: before annotation, and before lowering.

``ANNOTATION_PASSES`` run in ``XnnpackQuantizer.transform_for_annotation``:
they put an exported graph into the spellings the pattern table covers (see
each module's docstring).  ``PRE_LOWERING_PASSES`` run on a converted graph
module in ``lower_to_xnnpack``.

Each pass is a ``torch.fx`` ``PassBase`` (``call()`` returns
``PassResult(graph_module, modified)``).  Only passes that a real graph needs
are listed; the graph each one is for is in its module docstring:

* :class:`RewriteMaxPoolWithIndices`: a float core-IR ``max_pool2d`` arrives as
  ``max_pool2d_with_indices → getitem`` and the partitioner claims only
  ``max_pool2d``; the quantizer already rewrites it before annotating, but a
  plain fp32 program has not been through the quantizer.
* :class:`RecomposeLinear`: a quantized core-IR linear on a rank-3 input
  (``view → q/dq → addmm → q/dq → view``) is refused by ExecuTorch's
  ``AddmmConfig`` ("invalid source partition").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch.fx import GraphModule

from .fold_conv_batch_norm import FoldConvBatchNorm
from .lift_scalar_operands import LiftScalarOperands
from .recompose_linear import RecomposeLinear
from .rewrite_clamp import RewriteClamp
from .rewrite_max_pool_with_indices import RewriteMaxPoolWithIndices
from .rewrite_mean_keepdim import RewriteMeanKeepdim

#: Before annotation, in order: fold core-IR batch norm, give max-pool and clamps the
#: spellings XNNPACK claims, keepdim for spatial means, tensors for scalar operands.
ANNOTATION_PASSES: tuple = (
    FoldConvBatchNorm,
    RewriteMaxPoolWithIndices,
    RewriteClamp,
    RewriteMeanKeepdim,
    LiftScalarOperands,
)

#: The pre-lowering passes, in the order they run.
PRE_LOWERING_PASSES: tuple = (RewriteMaxPoolWithIndices, RecomposeLinear)


@dataclass(frozen=True)
class PipelineResult:
    """The rewritten graph module and the names of the passes that changed it, in order."""

    graph_module: GraphModule
    changed: tuple

    @property
    def modified(self) -> bool:
        return bool(self.changed)


def run_pipeline(gm: GraphModule, passes: Sequence = PRE_LOWERING_PASSES) -> PipelineResult:
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
