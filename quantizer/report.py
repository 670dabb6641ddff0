"""The annotation report: for every op node, quantized or left in float, and why.

The annotator fills one :class:`NodeDecision` per ``call_function`` node
(bookkeeping nodes such as ``getitem`` of a batch-norm tuple excepted); the
:class:`AnnotationReport` holds them in graph order, as data (``to_dict``) and
as a table (``str(report)``).  Nothing is skipped silently: a node that is not
quantized carries the reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Optional


@dataclass(frozen=True)
class NodeDecision:
    """What the quantizer decided for one node.

    Attributes:
        node: the node's name in the annotated graph.
        op: the node's target, e.g. ``aten.addmm.default``.
        quantized: whether the node's inputs/outputs are observed.
        pattern: the table entry that matched (``linear``, ``max_pool``, ...).
        role: ``anchor``, ``fused activation``, ``shared qparams`` or ``weight transpose``.
        reason: why it is float, or how it is quantized.
        config: name of the config that applied, if any.
    """

    node: str
    op: str
    quantized: bool
    pattern: Optional[str] = None
    role: Optional[str] = None
    reason: str = ""
    config: Optional[str] = None


@dataclass
class AnnotationReport:
    """All decisions of one ``annotate`` call, in graph order."""

    decisions: list = field(default_factory=list)

    @property
    def quantized(self) -> list:
        return [d for d in self.decisions if d.quantized]

    @property
    def left_float(self) -> list:
        return [d for d in self.decisions if not d.quantized]

    def by_node(self) -> dict:
        return {d.node: d for d in self.decisions}

    def pattern_counts(self) -> dict:
        """Quantized anchors and shared ops per pattern name, e.g. ``{"conv": 3, "add": 1}``."""
        counts = Counter(
            d.pattern for d in self.decisions
            if d.quantized and d.role in ("anchor", "shared qparams")
        )
        return dict(sorted(counts.items()))

    def float_reasons(self) -> dict:
        """How many nodes were left float for each reason."""
        return dict(sorted(Counter(d.reason for d in self.left_float).items()))

    def to_dict(self) -> dict:
        return {
            "quantized": len(self.quantized),
            "float": len(self.left_float),
            "patterns": self.pattern_counts(),
            "decisions": [asdict(d) for d in self.decisions],
        }

    def summary(self) -> str:
        pats = ", ".join(f"{k}={v}" for k, v in self.pattern_counts().items()) or "none"
        return (f"{len(self.quantized)} nodes quantized ({pats}); "
                f"{len(self.left_float)} left in float")

    def __str__(self) -> str:
        rows = [("node", "op", "status", "pattern", "why")]
        for d in self.decisions:
            status = "int8" if d.quantized else "float"
            why = d.role if d.quantized else d.reason
            rows.append((d.node, d.op, status, d.pattern or "-", why or ""))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4]
            for row in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(self.summary())
        return "\n".join(lines)
