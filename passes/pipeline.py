"""The passes that run on a converted graph module before ``lower_to_xnnpack`` hands it to ExecuTorch.

They run through the one runner, :func:`xnnquant.quantizer.transforms.run_pipeline`
(the annotation-time list is beside it).  Only passes that a real graph needs
are listed; the graph each one is for is in its module docstring:

* :class:`RewriteMaxPoolWithIndices`: a float core-IR ``max_pool2d`` arrives as
  ``max_pool2d_with_indices → getitem`` and the partitioner claims only
  ``max_pool2d``; the quantizer already rewrites it before annotating, but a
  plain fp32 program has not been through the quantizer.
* :class:`RecomposeLinear`: a quantized core-IR linear on a rank-3 input
  (``view → q/dq → addmm → q/dq → view``) is refused by ExecuTorch's
  ``AddmmConfig`` ("invalid source partition").
* :class:`RewriteSqueezeAsView`: ``squeeze``/``unsqueeze`` on a non-trailing
  dim is claimed by no partitioner config and splits the program.
* :class:`DecomposeLayerNorm`: ``layer_norm`` is claimed by no partitioner
  config, not even in fp32; written as GEMMs and elementwise ops it runs (in
  fp32) inside the delegate.
"""

from __future__ import annotations

from xnnquant.quantizer.transforms import PipelineResult, RewriteMaxPoolWithIndices, run_pipeline

from .decompose_layer_norm import DecomposeLayerNorm
from .recompose_linear import RecomposeLinear
from .rewrite_squeeze_as_view import RewriteSqueezeAsView

#: The pre-lowering passes, in the order they run.
PRE_LOWERING_PASSES: tuple = (RewriteMaxPoolWithIndices, RecomposeLinear, RewriteSqueezeAsView,
                              DecomposeLayerNorm)

__all__ = ["PRE_LOWERING_PASSES", "DecomposeLayerNorm", "PipelineResult", "RecomposeLinear",
           "RewriteSqueezeAsView", "run_pipeline"]
