"""The always-on accuracy alarm of :func:`xnnquant.quantizer.workflow.quantize`.

``quantize`` already holds the fp32 program and the calibration data: it keeps
the prepared (fp32) model's outputs on the first calibration batches, runs the
converted graph on those batches after converting and measures the output SQNR.  Below the threshold it warns with :class:`AccuracyWarning`,
naming the worst layers (found by the numeric debugger, which only runs when
the alarm fires).  The figure is recorded on the converted graph as
``converted.meta["xnnquant_accuracy"]`` (an :class:`OutputAccuracy`), whether
the alarm fired or not.

A default of 15 dB means the quantization noise has about 18% of the output's
RMS: well below every model of the benchmark (≥ 32 dB), above what breaks a
classifier (the outlier test model: 2 dB).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

import torch
from torch.fx import GraphModule

__all__ = ["AccuracyWarning", "OutputAccuracy", "ACCURACY_KEY", "DEFAULT_ALARM_SQNR_DB",
           "ALARM_BATCHES", "OutputRecorder", "check_output_accuracy"]

#: Where ``quantize`` records the figure on the converted ``GraphModule``'s ``meta``.
ACCURACY_KEY = "xnnquant_accuracy"
DEFAULT_ALARM_SQNR_DB = 15.0
#: Calibration batches the alarm measures on.  Each costs one forward of the
#: converted graph (0.3-0.7 s on 224-px ResNet-18, one thread, measured on a busy machine):
#: enough for a coarse alarm, cheap next to calibration.
ALARM_BATCHES = 2


class AccuracyWarning(UserWarning):
    """The quantized model's output is far from the fp32 model's (SQNR below the alarm threshold)."""


@dataclass(frozen=True)
class OutputAccuracy:
    """What the alarm measured.

    Attributes:
        sqnr_db: output SQNR of the converted graph against fp32 (the worst output), pooled over ``batches``.
        threshold_db: the alarm threshold it was compared with.
        batches: how many calibration batches were measured.
        worst_layers: ``(module, node, local SQNR dB)`` of the worst quantized
            nodes, filled only when the alarm fired.
    """

    sqnr_db: float
    threshold_db: float
    batches: int
    worst_layers: tuple = ()

    @property
    def alarm(self) -> bool:
        return self.sqnr_db < self.threshold_db


class OutputRecorder:
    """Keeps the first ``limit`` calibration batches and the prepared model's outputs on them.

    A prepared graph computes in fp32 (its observers only watch), so its
    outputs during calibration are the fp32 reference at no extra cost: only
    the converted graph runs again, on ``limit`` batches.  Calibration data may
    be a one-shot iterator; only the kept batches are held.
    """

    def __init__(self, prepared: GraphModule, limit: int = ALARM_BATCHES):
        self.limit = limit
        self.batches: list = []
        self.outputs: list = []
        self._hook = prepared.register_forward_hook(self._record)

    def _record(self, module, inputs, output) -> None:
        if len(self.outputs) < self.limit:
            self.outputs.append(output)

    def keep(self, batches: Iterable) -> Iterator:
        """Yield ``batches`` unchanged, holding on to the first ``limit``."""
        for batch in batches:
            if len(self.batches) < self.limit:
                self.batches.append(batch)
            yield batch

    def close(self) -> None:
        """Stop recording (before convert, which works on the same module)."""
        self._hook.remove()

    def check(self, ep, converted: GraphModule, quantizer, *, threshold_db: float):
        """:func:`check_output_accuracy` on what was recorded."""
        self.close()
        count = min(len(self.batches), len(self.outputs))
        return check_output_accuracy(ep, converted, self.batches[:count], quantizer,
                                     threshold_db=threshold_db, reference=self.outputs[:count])


def check_output_accuracy(
    ep: torch.export.ExportedProgram,
    converted: GraphModule,
    batches: list,
    quantizer,
    *,
    threshold_db: float,
    reference: Optional[list] = None,
) -> Optional[OutputAccuracy]:
    """Measure output SQNR of ``converted`` against ``ep`` on ``batches``; warn below ``threshold_db``.

    Args:
        reference: the fp32 outputs on ``batches``, when already at hand (else ``ep`` is run).

    Returns:
        The :class:`OutputAccuracy`, or None when there is nothing to compare
        (no batch, or no floating-point output).
    """
    from ..workflow import sqnr
    from .debugger import _float_leaves, compare_graphs, float_reference, format_db

    if not batches:
        return None
    if reference is None:
        fp32 = ep.module()
        with torch.no_grad():
            reference = [fp32(*(b if isinstance(b, tuple) else (b,))) for b in batches]
    expected = [_float_leaves(out) for out in reference]
    actual = []
    with torch.no_grad():
        for batch in batches:
            actual.append(_float_leaves(converted(*(batch if isinstance(batch, tuple) else (batch,)))))
    if not expected[0]:
        return None
    # Pool each output over the batches; the model is as good as its worst output.
    figure = min(
        sqnr(torch.cat([r[i].flatten() for r in expected]), torch.cat([a[i].flatten() for a in actual]))
        for i in range(len(expected[0])))
    result = OutputAccuracy(sqnr_db=figure, threshold_db=threshold_db, batches=len(batches))
    if not result.alarm:
        return result
    report = compare_graphs(float_reference(ep, quantizer), converted, batches)
    worst = tuple((r.module or "<root>", r.node, r.loss_db) for r in report.worst(3))
    result = OutputAccuracy(sqnr_db=figure, threshold_db=threshold_db, batches=len(batches),
                            worst_layers=worst)
    named = ", ".join(f"{module} ({node}, {format_db(db)} dB local)" for module, node, db in worst)
    warnings.warn(
        f"quantized output SQNR is {format_db(figure)} dB against fp32 on {len(batches)} calibration "
        f"batch(es), below the alarm threshold of {threshold_db:g} dB. Worst layers: {named or 'none'}. "
        "Keep them float with quantizer.set_module_name(name, None), or let "
        "xnnquant.quantizer.accuracy.find_float_fallback choose; debug_quantization shows every "
        "layer. Pass alarm_sqnr_db=None to quantize() to silence this check.",
        AccuracyWarning, stacklevel=4)
    return result

