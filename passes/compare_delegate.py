"""Compare the lowered ``.pte`` (the XNNPACK delegate) with the reference integer kernels and the q/dq graph.

The graph-level debugger (:mod:`xnnquant.quantizer.accuracy.debugger`) says
where quantization loses accuracy; this says whether the *lowering* adds
anything on top.  Three programs compute the same int8 model:

- ``converted``: torchao's q/dq graph, simulated in float (what the debugger measures);
- ``reference``: :func:`~xnnquant.passes.lower_to_reference`, XNNPACK's integer
  arithmetic in eager PyTorch;
- ``pte``: the ``.pte`` run through ``executorch.runtime``.

Each pair is compared on every output, pooled over the batches, with the
criterion of :func:`~xnnquant.passes.lower_to_xnnpack`'s self-check (output
steps and SQNR; see ``_judge`` there), so "agrees" means the same everywhere.
A ``pte``/``reference`` disagreement beyond rounding points at the delegate;
a ``reference``/``converted`` one at the reference kernels.

Only the outputs are compared: the ``.pte`` exposes no intermediate values
through ``executorch.runtime`` without an ETDump-enabled build.  The reference
lowering's report lists the patterns it left in float (those run identically
in ``converted`` and ``reference``), carried in :attr:`DelegateComparison.reference_skipped`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.utils._pytree as pytree
from torch.fx import GraphModule

from xnnquant.quantizer.graph import returned_nodes

from .lower_to_reference import REPORT_KEY, lower_to_reference
from .lower_to_xnnpack import LoweredProgram, _clone_inputs, _judge, lower_to_xnnpack
from .report import OutputCheck, is_dequantize, is_quantize, output_step

__all__ = ["PAIRS", "PairCheck", "DelegateComparison", "compare_delegate"]

#: The compared pairs, (actual, expected).
PAIRS = (("pte", "reference"), ("pte", "converted"), ("reference", "converted"))


@dataclass(frozen=True)
class PairCheck:
    """One output of one pair of programs, judged like the lowering's self-check."""

    actual: str
    expected: str
    check: OutputCheck

    def describe(self) -> str:
        verdict = "agrees" if self.check.passed else "DISAGREES"
        return f"{self.actual} vs {self.expected}: {self.check.describe()} -> {verdict}"


@dataclass(frozen=True)
class DelegateComparison:
    """What :func:`compare_delegate` found.

    Attributes:
        checks: one :class:`PairCheck` per pair (:data:`PAIRS`) and output.
        batches: how many batches were run.
        reference_skipped: ``(node, reason)`` of the patterns the reference lowering left in float.
    """

    checks: tuple
    batches: int
    reference_skipped: tuple = ()

    @property
    def agrees(self) -> bool:
        return all(c.check.passed for c in self.checks)

    def format(self) -> str:
        lines = [f"{self.batches} batch(es); outputs compared with the lowering self-check's criterion:"]
        lines += [f"  {c.describe()}" for c in self.checks]
        lines += [f"  reference kept float: {node}: {reason}" for node, reason in self.reference_skipped]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def compare_delegate(
    converted: GraphModule,
    batches: Sequence[tuple],
    *,
    lowered: Optional[LoweredProgram] = None,
) -> DelegateComparison:
    """Run ``converted``, its reference lowering and its ``.pte`` on ``batches``; compare every output.

    Args:
        converted: a ``convert_pt2e`` graph (either IR); not modified.
        batches: input tuples, each of the shapes the program was exported with.
        lowered: the ``.pte`` of ``converted``, if already lowered (else it is
            lowered here with :func:`lower_to_xnnpack` on the first batch).

    Returns:
        A :class:`DelegateComparison`.

    Raises:
        ValueError: no batch.
    """
    batches = [b if isinstance(b, tuple) else (b,) for b in batches]
    if not batches:
        raise ValueError("compare_delegate needs at least one batch of inputs")
    if lowered is None:
        lowered = lower_to_xnnpack(converted, batches[0])
    reference = lower_to_reference(converted)
    method = lowered.load_method()
    outputs: dict = {name: [] for name in ("pte", "reference", "converted")}
    with torch.no_grad():
        for batch in batches:
            outputs["pte"].append(list(method.execute(list(_clone_inputs(batch)))))
            outputs["reference"].append(pytree.tree_leaves(reference(*_clone_inputs(batch))))
            outputs["converted"].append(pytree.tree_leaves(converted(*_clone_inputs(batch))))
    out_nodes = returned_nodes(converted)
    quantized = any(is_quantize(n) or is_dequantize(n) for n in converted.graph.nodes)
    count = len(outputs["converted"][0])
    checks = []
    for actual, expected in PAIRS:
        for i in range(count):
            got = torch.cat([o[i].detach().flatten().clone() for o in outputs[actual]])
            want = torch.cat([o[i].detach().flatten() for o in outputs[expected]])
            step = output_step(out_nodes[i]) if len(out_nodes) == count else None
            checks.append(PairCheck(actual, expected, _judge(i, want, got, step, quantized)))
    skipped = tuple((s.node, s.reason) for s in reference.meta[REPORT_KEY].skipped)
    return DelegateComparison(checks=tuple(checks), batches=len(batches), reference_skipped=skipped)
