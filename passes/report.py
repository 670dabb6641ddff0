"""The delegation report: which edge-graph ops the XNNPACK delegate took, and why not the rest.

:func:`xnnquant.passes.lower_to_xnnpack` fills one :class:`NodeStatus` per op
node of the edge graph that the partitioner saw (``call_function`` nodes;
``getitem`` plumbing excepted), plus the counts read from the lowered graph.
The :class:`DelegationReport` is data (``to_dict()`` for JSON) and a table
(``str(report)``).

A node left outside carries one reason category (:data:`REASONS`) and a free
text detail.  The categories are decided from the graph in this order, first
match wins:

1. ``unsupported op``: no XNNPACK partitioner config claims the target
   (e.g. ``aten.cumsum``); the detail names the op.
2. ``dtype``: a tensor input or output has a dtype XNNPACK does not compute in
   (anything but float32/float16, or int8/uint8 behind q/dq), e.g. an int64 index.
3. ``qparams mismatch``: a data-movement op (view, permute, slice, cat, ...)
   whose dequantized input and quantized output use different qparams.
4. ``float op between quantized ops``: some neighbours of the op are q/dq nodes
   and some are not, so the op is neither a clean float op nor a clean
   quantized one.
5. ``partitioner``: the reason the partitioner logged through ExecuTorch's
   ``WhyNoPartition`` (the detail), or "not claimed by any partition".

A q/dq node left outside takes the category of the outside op it is attached
to (the detail names that op), because it is outside only because of that op.

The report also carries the numeric self-check of ``lower_to_xnnpack``
(:class:`SelfCheck`, one :class:`OutputCheck` per program output: the ``.pte``
run through ``executorch.runtime`` against the input program's eager output)
and any delegate boundary the partitioner got wrong (``boundary_problems``,
e.g. a dequantize delegated without a Convert whose consumer stayed outside).
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Iterable, Optional

import torch
from torch.fx import Node

from xnnquant.quantizer.graph import op_name
from xnnquant.quantizer.patterns import DATA_MOVEMENT

UNSUPPORTED_OP = "unsupported op"
DTYPE = "dtype"
QPARAMS_MISMATCH = "qparams mismatch"
FLOAT_BETWEEN_QUANTIZED = "float op between quantized ops"
PARTITIONER = "partitioner"
REASONS = (UNSUPPORTED_OP, DTYPE, QPARAMS_MISMATCH, FLOAT_BETWEEN_QUANTIZED, PARTITIONER)

_COMPUTE_DTYPES = {torch.float32, torch.float16}
_QUANT_DTYPES = {torch.int8, torch.uint8, torch.int32}

# The op names (without overload) of the op table's data-movement records, in ATen and
# edge spelling: their output must carry the qparams of their input for XNNPACK.
_DATA_MOVEMENT = frozenset(
    {op.split(".")[0] for r in DATA_MOVEMENT for op in r.edge_ops}
    | {t._opname for r in DATA_MOVEMENT for t in r.targets})


def _short(name: str) -> str:
    """``aten.addmm.default`` → ``addmm``."""
    parts = name.split(".")
    return parts[1] if len(parts) >= 3 else parts[0]


def is_quantize(node) -> bool:
    return isinstance(node, Node) and node.op == "call_function" and \
        _short(op_name(node.target)).startswith("quantize_per_")


def is_dequantize(node) -> bool:
    return isinstance(node, Node) and node.op == "call_function" and \
        _short(op_name(node.target)).startswith("dequantize_per_")


def is_plumbing(node: Node) -> bool:
    """Nodes that move no data of their own: tuple getitem and the delegate call."""
    return node.target is operator.getitem or \
        node.target is torch.ops.higher_order.executorch_call_delegate


@dataclass(frozen=True)
class NodeStatus:
    """One op node of the edge graph as the partitioner saw it.

    Attributes:
        node: the node's name in the edge graph.
        op: its target, e.g. ``aten.addmm.default``.
        kind: ``compute``, ``quantize`` or ``dequantize``.
        delegated: whether a partition took it.
        reason: one of :data:`REASONS` when not delegated, else None.
        detail: the op name, the neighbour, or the partitioner's own words.
    """

    node: str
    op: str
    kind: str
    delegated: bool
    reason: Optional[str] = None
    detail: str = ""


@dataclass(frozen=True)
class OutputCheck:
    """One program output as the self-check compared it: the ``.pte`` against the eager program.

    Attributes:
        index: position among the flattened outputs.
        kind: how it was judged: ``dequantized`` (a per-tensor dequantize's
            output: output steps and SQNR), ``float`` (another float output of a
            quantized program: SQNR), ``fp32`` (an output of a program with no
            quantize/dequantize: float tolerance) or ``exact`` (an integer or
            bool output: must be equal).
        max_abs: max |pte - eager|.
        sqnr: SQNR of the ``.pte`` output against the eager one in dB; ``inf``
            when they are equal, None when the eager output is all zeros.
        step: the output's quantization step (the dequantize's scale), or None.
        max_steps: ``max_abs / step`` for a dequantized output, else None.
        passed: whether the output met its criterion.
        against: what the ``.pte`` was compared with: ``eager`` (the input
            program run eagerly), ``reference`` (its lowering to xnnquant's
            reference integer kernels, used when the eager comparison failed on
            steps alone) or ``row-wise`` (a dynamic program with XNNPACK's
            per-row activation quantization, used when a float output failed;
            see ``lower_to_xnnpack._self_check``).
        eager: the eager comparison that sent this output to the second
            reference, or None when ``against`` is ``eager``.
    """

    index: int
    kind: str
    max_abs: float
    sqnr: Optional[float]
    step: Optional[float] = None
    max_steps: Optional[float] = None
    passed: bool = True
    against: str = "eager"
    eager: Optional["OutputCheck"] = None

    def describe(self) -> str:
        """``output 0 (dequantized, step 0.03): max |pte - eager| 0.03 = 1.00 steps, SQNR 57.5 dB``."""
        step = f", step {self.step:.4g}" if self.step is not None else ""
        figures = f"max |pte - {self.against}| {self.max_abs:.4g}"
        if self.max_steps is not None:
            figures += f" = {self.max_steps:.2f} steps"
        if self.sqnr is not None:
            figures += f", SQNR {self.sqnr:.1f} dB"
        text = f"output {self.index} ({self.kind}{step}): {figures}"
        if self.eager is not None:
            first = [f"{self.eager.max_steps:.2f} steps"] if self.eager.max_steps is not None else []
            if self.eager.sqnr is not None:
                first.append(f"SQNR {self.eager.sqnr:.1f} dB")
            text += f" (eager: {', '.join(first) or 'failed'})"
        return text


@dataclass(frozen=True)
class SelfCheck:
    """The numeric self-check of a lowering: did the ``.pte`` compute what the input program computes?

    Attributes:
        ran: False when ``lower_to_xnnpack(..., self_check=False)`` turned it off.
        outputs: one :class:`OutputCheck` per flattened program output.
    """

    ran: bool = False
    outputs: tuple = ()

    @property
    def passed(self) -> Optional[bool]:
        """Whether every output met its criterion; None when the check did not run."""
        return all(o.passed for o in self.outputs) if self.ran else None

    @property
    def sqnr(self) -> Optional[float]:
        """The lowest SQNR over the outputs (dB), None if none was measured."""
        values = [o.sqnr for o in self.outputs if o.sqnr is not None]
        return min(values) if values else None

    @property
    def max_steps(self) -> Optional[float]:
        """The largest difference over the dequantized outputs, in output steps; None if there are none."""
        values = [o.max_steps for o in self.outputs if o.max_steps is not None]
        return max(values) if values else None

    def to_dict(self) -> dict:
        """The check as JSON-ready data; figures that are not finite are written as None.

        JSON has no infinity: an SQNR of inf (identical outputs) becomes None
        next to ``max_abs`` 0, and a difference of inf or NaN (a shape mismatch,
        a NaN in the ``.pte`` output) becomes None next to ``passed`` False.
        """
        def finite(x):
            return x if isinstance(x, (int, float)) and math.isfinite(x) else None

        figures = ("max_abs", "sqnr", "step", "max_steps")

        def output(fields: dict) -> dict:
            return {k: finite(v) if k in figures else output(v) if isinstance(v, dict) else v
                    for k, v in fields.items()}

        return {
            "ran": self.ran,
            "passed": self.passed,
            "sqnr": finite(self.sqnr),
            "max_steps": finite(self.max_steps),
            "outputs": [output(asdict(o)) for o in self.outputs],
        }

    def summary(self) -> str:
        """The one line the report's table ends with."""
        if not self.ran:
            return "self-check: not run (self_check=False)"
        verdict = "passed" if self.passed else "FAILED"
        n = len(self.outputs)
        outputs = f"{n} output{'s' if n != 1 else ''}"
        if all(o.max_abs == 0 for o in self.outputs):
            return f"self-check: {verdict} on {outputs} (identical to the input program)"
        figures = []
        if self.sqnr is not None:
            figures.append(f"SQNR {self.sqnr:.1f} dB")
        if self.max_steps is not None:
            figures.append(f"max {self.max_steps:.2f} output steps")
        worst_abs = max((o.max_abs for o in self.outputs), default=0.0)
        figures.append(f"max |pte - eager| {worst_abs:.3g}")
        return f"self-check: {verdict} on {outputs} ({', '.join(figures)})"


@dataclass
class DelegationReport:
    """What ended up inside and outside the XNNPACK delegate.

    Attributes:
        nodes: one :class:`NodeStatus` per op node of the partitioned edge graph, in graph order.
        num_delegates: ``executorch_call_delegate`` nodes in the lowered graph.
        num_partitions: partitions the partitioner tagged (one lowered module each).
        outside_ops: op names of the non-plumbing nodes left in the lowered graph.
        pte_size: size of the serialized program in bytes (0 until serialized).
        passes_changed: names of the pre-lowering passes that modified the graph.
        boundary_problems: delegate boundaries the partitioner got wrong, one
            sentence each (e.g. a dequantize delegated without a Convert whose
            consumer stayed outside); empty when there are none.
        self_check: the numeric :class:`SelfCheck` (``ran`` is False when it was turned off).
    """

    nodes: list = field(default_factory=list)
    num_delegates: int = 0
    num_partitions: int = 0
    outside_ops: list = field(default_factory=list)
    pte_size: int = 0
    passes_changed: tuple = ()
    boundary_problems: tuple = ()
    self_check: SelfCheck = field(default_factory=SelfCheck)

    @property
    def not_delegated(self) -> list:
        """The :class:`NodeStatus` entries the delegate did not take."""
        return [n for n in self.nodes if not n.delegated]

    @property
    def non_delegated_ops(self) -> list:
        """Op names of the compute nodes left outside (q/dq excluded), in graph order."""
        return [op for op in self.outside_ops if not _is_qdq_name(op)]

    @property
    def qdq_outside(self) -> int:
        """Quantize/dequantize nodes left outside the delegate."""
        return sum(1 for op in self.outside_ops if _is_qdq_name(op))

    @property
    def fully_delegated(self) -> bool:
        """No compute op and no q/dq outside a delegate (inputs, outputs and getitem don't count)."""
        return not self.outside_ops

    def reason_counts(self) -> dict:
        """``{reason: number of non-delegated nodes}``."""
        return dict(Counter(n.reason for n in self.not_delegated))

    def to_dict(self) -> dict:
        return {
            "nodes": [asdict(n) for n in self.nodes],
            "num_delegates": self.num_delegates,
            "num_partitions": self.num_partitions,
            "outside_ops": list(self.outside_ops),
            "non_delegated_ops": self.non_delegated_ops,
            "qdq_outside": self.qdq_outside,
            "fully_delegated": self.fully_delegated,
            "pte_size": self.pte_size,
            "passes_changed": list(self.passes_changed),
            "boundary_problems": list(self.boundary_problems),
            "self_check": self.self_check.to_dict(),
        }

    def format(self, *, delegated: bool = True) -> str:
        """The report as a text table; ``delegated=False`` lists only the nodes left outside."""
        rows = [n for n in self.nodes if delegated or not n.delegated]
        header = ("node", "op", "delegated", "reason")
        body = [
            (n.node, n.op, "yes" if n.delegated else "no",
             "" if n.delegated else f"{n.reason}: {n.detail}" if n.detail else n.reason)
            for n in rows
        ]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *body]]
        lines.append(
            f"delegates: {self.num_delegates}  partitions: {self.num_partitions}  "
            f"q/dq outside: {self.qdq_outside}  ops outside: {self.non_delegated_ops or 'none'}  "
            f"pte: {self.pte_size} bytes"
        )
        lines.extend(f"boundary problem: {p}" for p in self.boundary_problems)
        lines.append(self.self_check.summary())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _is_qdq_name(op: str) -> bool:
    return _short(op).startswith(("quantize_per_", "dequantize_per_"))


def _qparams(node: Node) -> tuple:
    """(scale, zero_point, quant_min, quant_max, dtype) of a per-tensor q/dq node."""
    return tuple(node.args[1:6])


def _dequantized(node: Node) -> bool:
    """A dequantize, or data movement of one (a weight's ``dq → permute`` counts as quantized)."""
    while isinstance(node, Node) and not is_dequantize(node):
        if node.op != "call_function" or _short(op_name(node.target)) not in _DATA_MOVEMENT:
            return False
        node = node.args[0] if node.args else None
    return isinstance(node, Node)


def output_step(node) -> Optional[float]:
    """The quantization step of the values ``node`` produces, or None if they are not dequantized int8.

    That is the scale of the per-tensor dequantize that makes them, looking
    through data movement (a ``dq → view`` output carries the dequantize's
    values unchanged).  A per-channel or dynamic dequantize has no single step.
    """
    while isinstance(node, Node) and node.op == "call_function" and not is_dequantize(node):
        if _short(op_name(node.target)) not in _DATA_MOVEMENT or not node.args:
            return None
        node = node.args[0]
    if not (is_dequantize(node) and _short(op_name(node.target)) == "dequantize_per_tensor"):
        return None
    scale = node.args[1] if len(node.args) > 1 else node.kwargs.get("scale")
    return float(scale) if isinstance(scale, (int, float)) else None


def _tensor_dtypes(node: Node) -> list:
    val = node.meta.get("val")
    vals = val if isinstance(val, (tuple, list)) else [val]
    return [v.dtype for v in vals if isinstance(v, torch.Tensor)]


def _kind(node: Node) -> str:
    if is_quantize(node):
        return "quantize"
    if is_dequantize(node):
        return "dequantize"
    return "compute"


def classify(node: Node, supported: set, why: dict) -> tuple:
    """(reason, detail) for a compute node the partitioner left outside.

    Args:
        node: an edge-graph ``call_function`` node that is not q/dq.
        supported: target names (``addmm.default`` form) some partitioner config claims.
        why: node name → reasons the partitioner logged.
    """
    name = op_name(node.target)
    short_target = ".".join(name.split(".")[-2:])
    if short_target not in supported:
        return UNSUPPORTED_OP, name
    tensor_inputs = [a for a in node.all_input_nodes if _tensor_dtypes(a)]
    for arg in [node, *tensor_inputs]:
        bad = [d for d in _tensor_dtypes(arg) if d not in _COMPUTE_DTYPES]
        if bad and not (is_dequantize(arg) or is_quantize(arg)):
            where = "output" if arg is node else f"input {arg.name}"
            return DTYPE, f"{where} is {bad[0]}"
    producers = [a for a in tensor_inputs if a.op not in ("get_attr", "placeholder")]
    dq_in = [a for a in producers if _dequantized(a)]
    q_out = [u for u in node.users if is_quantize(u)]
    direct_dq = [a for a in producers if is_dequantize(a)]
    if _short(name) in _DATA_MOVEMENT and direct_dq and q_out:
        if any(_qparams(d) != _qparams(q) for d in direct_dq for q in q_out
               if len(d.args) >= 6 and len(q.args) >= 6):
            return QPARAMS_MISMATCH, (f"input scale/zero point {_qparams(direct_dq[0])[:2]} "
                                      f"vs output {_qparams(q_out[0])[:2]}")
    if (dq_in or q_out) and (len(dq_in) != len(producers) or len(q_out) != len(node.users)):
        return FLOAT_BETWEEN_QUANTIZED, "some inputs/outputs are quantized and some float"
    reasons = why.get(node.name)
    return PARTITIONER, "; ".join(reasons) if reasons else "not claimed by any partition"


def node_statuses(nodes: Iterable[Node], supported: set, why: dict) -> list:
    """:class:`NodeStatus` for every op node of a tagged (partitioned) edge graph."""
    ops = [n for n in nodes if n.op == "call_function" and not is_plumbing(n)]
    outside = {n for n in ops if "delegation_tag" not in n.meta}
    statuses = {}
    for node in ops:
        if node in outside and _kind(node) == "compute":
            reason, detail = classify(node, supported, why)
            statuses[node] = NodeStatus(node.name, op_name(node.target), "compute", False, reason, detail)
    for node in ops:
        if node in statuses:
            continue
        kind = _kind(node)
        if node not in outside:
            statuses[node] = NodeStatus(node.name, op_name(node.target), kind, True)
            continue
        neighbours = [*node.all_input_nodes, *node.users]
        anchor = next((m for m in neighbours if m in statuses and not statuses[m].delegated
                       and statuses[m].kind == "compute"), None)
        if anchor is not None:
            reason, detail = statuses[anchor].reason, f"next to {anchor.name} ({statuses[anchor].op})"
        else:
            reasons = why.get(node.name)
            reason = PARTITIONER
            detail = "; ".join(reasons) if reasons else "left at a partition boundary"
        statuses[node] = NodeStatus(node.name, op_name(node.target), kind, False, reason, detail)
    return [statuses[n] for n in ops]
