"""Stable text of quantized graphs and annotation reports, for snapshot tests (``expecttest``).

Pin what a model looks like after quantization in a user's own test suite::

    from xnnquant.quantizer.testing import quantized_graph_text

    class TestMyModel(expecttest.TestCase):
        def test_quantized_graph(self):
            text = quantized_graph_text(MyModel().eval(), (torch.ones(2, 16),), ir="core")
            self.assertExpectedInline(text, \"\"\"...\"\"\")   # EXPECTTEST_ACCEPT=1 fills it in

The text is the real graph, one node per line, with what changes from run to
run taken out: floats are rounded to a few significant digits (so a last-bit
difference in an observer does not churn the snapshot), dtypes are short and
nodes are named as the exporter named them (no addresses, no ids).
:func:`graph_text` formats any converted or prepared ``GraphModule``,
:func:`report_text` an :class:`~xnnquant.quantizer.report.AnnotationReport`,
and :class:`QuantizedSnapshotMixin` quantizes a module on both export IRs and
checks both snapshots in one call, optionally asserting that the two IRs were
quantized alike.

The issue that asked for this module named it ``xnnquant.testing``; it lives in
``xnnquant.quantizer`` because the package has no top-level ``xnnquant``
module of its own.  Like the rest of ``xnnquant.quantizer`` it imports neither
the kernels nor the lowering.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional, Sequence

import torch
from torch.fx import GraphModule, Node

from torchao.quantization.pt2e import AffineQuantizedObserverBase, FakeQuantizeBase, ObserverBase

from .graph import op_name
from .report import AnnotationReport
from .workflow import IRS, quantize

__all__ = [
    "graph_text", "report_text", "quantized_graph_text", "quantize_for_snapshot",
    "QuantizedSnapshotMixin", "QDQ_DETAIL",
]

#: How much of the quantize/dequantize nodes :func:`graph_text` shows:
#: ``"full"`` every q/dq node with all its arguments; ``"qparams"`` q/dq nodes
#: with scale and zero point only (the int8 range and dtype dropped);
#: ``"none"`` no q/dq node at all: each operand that came through one is marked
#: ``name'`` (quantized), so only the compute graph and where int8 flows remain.
QDQ_DETAIL = ("full", "qparams", "none")

# The modules prepare_pt2e / prepare_qat_pt2e insert: shown in a prepared graph's text.
_OBSERVERS = (ObserverBase, FakeQuantizeBase, AffineQuantizedObserverBase)


def _is_qdq(node) -> bool:
    return (isinstance(node, Node) and node.op == "call_function"
            and getattr(node.target, "namespace", None) == "quantized_decomposed")


def _target_name(node: Node) -> str:
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target._opname}"
    return getattr(target, "__name__", str(target))


def graph_text(gm: GraphModule, *, qdq: str = "full", digits: Optional[int] = 4) -> str:
    """The ``call_function`` nodes and observers of ``gm``, one per line.

    Args:
        gm: a converted graph (``convert_pt2e``), a prepared one (``prepare_pt2e``;
            observers show as ``name = HistogramObserver(x)``), or any FX graph.
        qdq: one of :data:`QDQ_DETAIL`.
        digits: significant digits floats are rounded to (``None``: Python's repr).
            Four keeps snapshots stable across calibration noise of about 1e-4
            relative; use fewer when calibration data is random.

    Returns:
        ``"name = namespace.op(arg, ...)"`` lines joined by newlines, e.g.
        ``"addmm = aten.addmm(_0_bias, dequantize_per_tensor_default, permute)"``.

    Raises:
        ValueError: ``qdq`` is not one of :data:`QDQ_DETAIL`.
    """
    if qdq not in QDQ_DETAIL:
        raise ValueError(f"qdq must be one of {QDQ_DETAIL}, got {qdq!r}")

    def source(node: Node) -> str:
        # With qdq="none", q → dq chains are looked through to the tensor they carry.
        marked = False
        while _is_qdq(node) and isinstance(node.args[0], Node):
            node, marked = node.args[0], True
        return node.name + ("'" if marked else "")

    def fmt(a) -> str:
        if isinstance(a, Node):
            return source(a) if qdq == "none" else a.name
        if isinstance(a, float):
            return repr(a) if digits is None else f"{a:.{digits}g}"
        if isinstance(a, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in a) + "]"
        if isinstance(a, torch.dtype):
            return str(a).replace("torch.", "")
        return str(a)

    lines = []
    for node in gm.graph.nodes:
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if not isinstance(module, _OBSERVERS):
                continue  # e.g. the _guards_fn that ExportedProgram.module() adds
            lines.append(f"{node.name} = {type(module).__name__}({', '.join(fmt(a) for a in node.args)})")
            continue
        if node.op != "call_function":
            continue
        args = node.args
        if _is_qdq(node):
            if qdq == "none":
                continue
            if qdq == "qparams":
                # (input, scale, zero_point[, axis]): the range and dtype are int8's, always.
                keep = 4 if "per_channel" in node.target.__name__ else 3
                args = args[:keep]
        lines.append(f"{node.name} = {_target_name(node)}({', '.join(fmt(a) for a in args)})")
    return "\n".join(lines)


def report_text(report: AnnotationReport, *, only: Optional[str] = None) -> str:
    """An annotation report as stable text: one ``node: op status pattern (why)`` line per node.

    Unlike ``str(report)`` the lines are not padded into columns, so one new
    node does not re-indent every line of the snapshot.

    Args:
        report: ``quantizer.report`` after ``prepare_pt2e``.
        only: ``"int8"`` or ``"float"`` to list only those nodes; the summary
            line always counts all of them.

    Raises:
        ValueError: ``only`` is neither None, ``"int8"`` nor ``"float"``.
    """
    if only not in (None, "int8", "float"):
        raise ValueError(f"only must be None, 'int8' or 'float', got {only!r}")
    if not isinstance(report, AnnotationReport):
        raise TypeError(
            f"report must be an AnnotationReport (quantizer.report after prepare_pt2e), "
            f"got {type(report).__name__}"
        )
    lines = []
    for d in report.decisions:
        status = "int8" if d.quantized else "float"
        if only is not None and status != only:
            continue
        why = d.role if d.quantized else d.reason
        lines.append(f"{d.node}: {d.op} {status} {d.pattern or '-'}" + (f" ({why})" if why else ""))
    lines.append(report.summary())
    return "\n".join(lines)


def quantize_for_snapshot(
    model: torch.nn.Module,
    example_inputs: tuple,
    *,
    ir: str = "core",
    calibration: Optional[Sequence[tuple]] = None,
    make_quantizer: Optional[Callable[[], object]] = None,
) -> tuple:
    """(converted ``GraphModule``, the quantizer after use) for ``model`` on one IR.

    ``model`` is not modified (it is exported from a copy).  ``calibration``
    defaults to ``[example_inputs]``, which makes the result depend on nothing
    but the inputs given; ``make_quantizer`` defaults to ``XnnpackQuantizer()``
    and is called once per IR, so no state is shared between IRs.
    """
    from .quantizer import XnnpackQuantizer

    if ir not in IRS:
        raise ValueError(f"ir must be one of {IRS}, got {ir!r}")
    quantizer = make_quantizer() if make_quantizer is not None else XnnpackQuantizer()
    converted = quantize(copy.deepcopy(model), example_inputs, calibration, quantizer, ir=ir)
    return converted, quantizer


def quantized_graph_text(
    model: torch.nn.Module,
    example_inputs: tuple,
    *,
    ir: str = "core",
    calibration: Optional[Sequence[tuple]] = None,
    make_quantizer: Optional[Callable[[], object]] = None,
    qdq: str = "full",
    digits: Optional[int] = 4,
) -> str:
    """:func:`graph_text` of ``model`` quantized on ``ir``: the one call a user's snapshot test needs.

    See :func:`quantize_for_snapshot` for the arguments that quantize and
    :func:`graph_text` for ``qdq`` and ``digits``.
    """
    converted, _ = quantize_for_snapshot(model, example_inputs, ir=ir, calibration=calibration,
                                         make_quantizer=make_quantizer)
    return graph_text(converted, qdq=qdq, digits=digits)


def _activation_qparams(gm: GraphModule, digits: Optional[int]) -> list:
    """Sorted (scale, zero point) of the per-tensor quantize nodes: what int8 flows where."""
    found = []
    for node in gm.graph.nodes:
        if _is_qdq(node) and op_name(node).startswith("quantized_decomposed.quantize_per_tensor"):
            scale, zero_point = node.args[1], node.args[2]
            if isinstance(scale, float) and digits is not None:
                scale = float(f"{scale:.{digits}g}")
            found.append((scale, zero_point))
    return sorted(found, key=repr)


class QuantizedSnapshotMixin:
    """Mix into an ``expecttest.TestCase``: one assertion quantizes on both IRs and checks the snapshot.

    Example::

        class TestMyModel(QuantizedSnapshotMixin, expecttest.TestCase):
            def test_graph(self):
                self.assertQuantizedInline(MyModel().eval(), (torch.ones(2, 16),), \"\"\"...\"\"\",
                                           ir_invariant=True)

    The snapshot holds a ``# training IR`` and a ``# core IR`` section (or
    only the IRs in ``irs``).  ``EXPECTTEST_ACCEPT=1`` writes it at the call.
    """

    def assertQuantizedInline(  # noqa: N802 (unittest naming)
        self,
        model: torch.nn.Module,
        example_inputs: tuple,
        expect: str,
        *,
        irs: Sequence[str] = IRS,
        calibration: Optional[Sequence[tuple]] = None,
        make_quantizer: Optional[Callable[[], object]] = None,
        qdq: str = "full",
        digits: Optional[int] = 4,
        ir_invariant: bool = False,
    ) -> dict:
        """Assert the graph text of ``model`` quantized on each IR in ``irs`` equals ``expect``.

        With ``ir_invariant=True`` it first asserts that the IRs were quantized
        alike: the same patterns quantized the same number of times, the same
        number of nodes left float, and the same activation qparams (scale
        rounded to ``digits``, zero point) at the quantize nodes.

        Returns:
            ``{ir: converted GraphModule}``, for further checks.
        """
        converted, reports, sections = {}, {}, []
        for ir in irs:
            gm, quantizer = quantize_for_snapshot(model, example_inputs, ir=ir,
                                                  calibration=calibration,
                                                  make_quantizer=make_quantizer)
            converted[ir], reports[ir] = gm, getattr(quantizer, "report", None)
            sections.append(f"# {ir} IR\n{graph_text(gm, qdq=qdq, digits=digits)}")
        if ir_invariant and len(irs) > 1:
            first = irs[0]
            for ir in irs[1:]:
                if reports[first] is not None and reports[ir] is not None:
                    self.assertEqual(
                        reports[first].pattern_counts(), reports[ir].pattern_counts(),
                        f"patterns quantized on the {first} IR and the {ir} IR differ",
                    )
                    self.assertEqual(
                        len(reports[first].left_float), len(reports[ir].left_float),
                        f"nodes left float on the {first} IR and the {ir} IR differ in number",
                    )
                self.assertEqual(
                    _activation_qparams(converted[first], digits),
                    _activation_qparams(converted[ir], digits),
                    f"activation qparams on the {first} IR and the {ir} IR differ",
                )
        self.assertExpectedInline("\n".join(sections), expect, skip=1)
        return converted
