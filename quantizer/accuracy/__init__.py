"""xnnquant.quantizer.accuracy: find and fix the layers that quantization breaks, on graphs only.

- :mod:`.debugger`: every node of a converted graph against fp32 at the same point
  (cumulative and local SQNR, max error, module path), as data and a table.
- :mod:`.alarm`: the output-SQNR check ``quantize()`` runs after converting,
  and its :class:`AccuracyWarning`.
- :mod:`.fallback`: per-layer sensitivity and the smallest set of layers to keep
  float that meets an accuracy budget; returns a ready ``XnnpackQuantizer``.

Like the rest of ``xnnquant.quantizer`` this imports neither the lowering nor
the reference kernels; the ``.pte``-against-reference comparison lives in
``xnnquant.passes.compare_delegate``.
"""

from .alarm import ACCURACY_KEY, AccuracyWarning, OutputAccuracy
from .debugger import DebugReport, NodeComparison, compare_graphs, debug_quantization, float_reference
from .fallback import (
    Budget,
    FallbackReport,
    LayerSensitivity,
    find_float_fallback,
    metric_budget,
    sqnr_budget,
)

__all__ = [
    "AccuracyWarning", "OutputAccuracy", "ACCURACY_KEY",
    "DebugReport", "NodeComparison", "compare_graphs", "debug_quantization", "float_reference",
    "Budget", "sqnr_budget", "metric_budget", "find_float_fallback", "FallbackReport",
    "LayerSensitivity",
]
