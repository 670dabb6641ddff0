"""The numeric debugger: every node of a converted graph against the fp32 model at the same point.

It answers "which layer do I blame?".  For each node on the activation path of
a converted graph it measures, over a set of batches:

- **cumulative** error: the node's value in the quantized model against the
  fp32 model's value at the same node, both fed the real inputs.  It grows
  along the network, so on its own it points at the *last* layers, not at the
  one that broke;
- **local** error: the same node when everything before it is exact, i.e. its
  activation inputs are the fp32 model's values, passed through the quantized
  model's own input quantize/dequantize.  It is the error this node's input
  quantization, weight quantization and output quantization add, so a layer
  whose input range one outlier channel blows up is blamed right there.

The table is sorted by local SQNR (worst first).

Where "the same point" comes from: the float reference is the graph that
``prepare_pt2e`` builds (conv/linear-batch-norm folded, the annotation
rewrites of :mod:`xnnquant.quantizer.transforms` applied), with its observers
removed.  It computes the fp32 model's function, and ``convert_pt2e`` keeps the
names of its nodes, so nodes match by name.  Matching against the exported
graph instead (as torchao's numeric debugger does through ``from_node``) would
compare a conv whose batch norm was folded into it with the conv before the
batch norm.

Example::

    report = debug_quantization(model, (x,), calibration, XnnpackQuantizer(), ir="core")
    print(report.table())                # one screen, worst layer first
    report.rows[0].module                # e.g. 'layer3.1.conv2'
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import torch
from torch.fx import GraphModule, Interpreter, Node

from ..graph import op_name
from ..quantizer import _module_stack, _normalize_module_name
from ..workflow import sqnr_from_sums

__all__ = [
    "NodeComparison",
    "DebugReport",
    "float_reference",
    "compare_graphs",
    "debug_quantization",
    "module_path",
]


def _is_qdq(node: Node) -> bool:
    return node.op == "call_function" and getattr(node.target, "namespace", None) == "quantized_decomposed"


def _is_observer(gm: GraphModule, node: Node) -> bool:
    from torchao.quantization.pt2e import ObserverBase
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

    if node.op != "call_module":
        return False
    module = gm.get_submodule(node.target)
    return isinstance(module, (ObserverBase, FakeQuantizeBase))


def module_path(node: Node) -> str:
    """The innermost module the node was traced in, as ``set_module_name`` spells it (``""``: the root)."""
    stack = _module_stack(node)
    return _normalize_module_name(stack[-1][0]) if stack else ""


def float_reference(model, quantizer) -> GraphModule:
    """The float graph ``prepare_pt2e`` builds for ``quantizer``, with its observers removed.

    Args:
        model: an ``ExportedProgram`` or its ``.module()``; neither is modified.
        quantizer: the quantizer the converted graph was made with; a copy is used.

    Returns:
        A ``GraphModule`` that computes the fp32 function with the node names of
        the converted graph.
    """
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    gm = model.module() if isinstance(model, torch.export.ExportedProgram) else copy.deepcopy(model)
    prepared = prepare_pt2e(gm, copy.deepcopy(quantizer))
    for node in list(prepared.graph.nodes):
        if _is_observer(prepared, node):
            node.replace_all_uses_with(node.args[0])
            prepared.graph.erase_node(node)
    prepared.graph.eliminate_dead_code()
    prepared.delete_all_unused_submodules()
    prepared.recompile()
    return prepared


@dataclass(frozen=True)
class NodeComparison:
    """One node of the converted graph against the fp32 model.

    Attributes:
        node: the node's name (the same in the float reference and the converted graph).
        op: its target, e.g. ``aten.conv2d.default``.
        module: the innermost module it was traced in (``""``: the root's forward);
            ``set_module_name(module, None)`` keeps it float.
        quantized: whether it reads dequantized inputs or its output is quantized.
            A quantized output is compared after its quantize/dequantize, the
            value the next op reads; a conv whose fused relu carries the output
            quantization is compared before it.
        sqnr_db: cumulative SQNR, real inputs through the whole quantized model.
        max_abs_error: cumulative largest absolute difference.
        local_sqnr_db: SQNR with exact fp32 values at its inputs (None when not measured).
        local_max_abs_error: the same, largest absolute difference.
        numel: elements compared per batch.
    """

    node: str
    op: str
    module: str
    quantized: bool
    sqnr_db: float
    max_abs_error: float
    local_sqnr_db: Optional[float]
    local_max_abs_error: Optional[float]
    numel: int

    @property
    def loss_db(self) -> float:
        """The SQNR the table sorts by: local when measured, else cumulative."""
        return self.local_sqnr_db if self.local_sqnr_db is not None else self.sqnr_db


@dataclass(frozen=True)
class DebugReport:
    """The debugger's result: rows sorted worst first, and the model's output SQNR.

    Attributes:
        rows: one :class:`NodeComparison` per compared node, lowest ``loss_db`` first.
        output_sqnr_db: SQNR of the converted graph's outputs (the worst one) against the fp32 reference.
        batches: how many batches were compared.
        unmatched: converted-graph nodes on the activation path that had no
            counterpart in the reference, with the reason.
    """

    rows: tuple
    output_sqnr_db: float
    batches: int
    unmatched: tuple = ()

    def worst(self, count: int = 3, *, quantized_only: bool = True) -> tuple:
        """The ``count`` worst rows (quantized nodes only, by default)."""
        rows = [r for r in self.rows if r.quantized or not quantized_only]
        return tuple(rows[:count])

    def table(self, limit: Optional[int] = 20) -> str:
        """The rows as a text table, worst first; ``limit`` rows (None: all)."""
        rows = self.rows if limit is None else self.rows[:limit]
        header = (f"{'node':<24} {'module':<28} {'op':<24} {'q':>1} "
                  f"{'local dB':>9} {'cumul dB':>9} {'max err':>10}")
        lines = [f"output SQNR {format_db(self.output_sqnr_db)} dB over {self.batches} batch(es); "
                 f"rows sorted by local SQNR (node fed exact fp32 inputs)", header, "-" * len(header)]
        for r in rows:
            lines.append(
                f"{r.node[:24]:<24} {(r.module or '<root>')[:28]:<28} {r.op[:24]:<24} "
                f"{'y' if r.quantized else 'n':>1} {format_db(r.local_sqnr_db):>9} "
                f"{format_db(r.sqnr_db):>9} {r.max_abs_error:>10.4g}")
        if limit is not None and len(self.rows) > limit:
            lines.append(f"... {len(self.rows) - limit} more rows (table(limit=None) shows all)")
        for name, reason in self.unmatched:
            lines.append(f"not compared: {name}: {reason}")
        return "\n".join(lines)

    def plot(self, path: str, *, limit: Optional[int] = 20) -> bool:
        """Write the table as a PNG bar chart (see :func:`.plotting.plot_debug_report`); False without matplotlib."""
        from .plotting import plot_debug_report

        return plot_debug_report(self, path, limit=limit)

    def __str__(self) -> str:
        return self.table()


def format_db(value: Optional[float]) -> str:
    """An SQNR for tables and messages: one decimal, ``inf`` for exact, ``-`` when not measured."""
    if value is None:
        return "-"
    return "inf" if value == math.inf else f"{value:.1f}"


class _Errors:
    """Running sums for one node over batches: SQNR is pooled, not averaged per batch."""

    __slots__ = ("signal", "noise", "max_abs", "numel")

    def __init__(self):
        self.signal, self.noise, self.max_abs, self.numel = 0.0, 0.0, 0.0, 0

    def add(self, reference: torch.Tensor, actual: torch.Tensor) -> None:
        reference, actual = reference.detach().double(), actual.detach().double()
        diff = reference - actual
        self.signal += reference.pow(2).sum().item()
        self.noise += diff.pow(2).sum().item()
        self.max_abs = max(self.max_abs, diff.abs().max().item() if diff.numel() else 0.0)
        self.numel = reference.numel()

    @property
    def sqnr_db(self) -> float:
        return sqnr_from_sums(self.signal, self.noise)


def _measurement_points(gm: GraphModule) -> dict:
    """compute node → (node whose value the next op reads, the q/dq chain to it).

    A quantized node ``n`` is followed by ``quantize → dequantize``; the
    dequantized value is what its consumers see, so that is where it is
    measured.  Other nodes are measured at themselves.
    """
    points = {}
    for node in gm.graph.nodes:
        if node.op != "call_function" or _is_qdq(node):
            continue
        chain = []
        q = next((u for u in node.users if _is_qdq(u) and "quantize_per" in u.target._opname
                  and not u.target._opname.startswith("de")), None)
        if q is not None:
            dq = next((u for u in q.users if _is_qdq(u) and u.target._opname.startswith("dequantize")), None)
            if dq is not None:
                chain = [q, dq]
        points[node.name] = chain
    return points


def _activation_nodes(gm: GraphModule) -> set:
    """Names of nodes that depend on a graph input (weights' own transposes and q/dq excluded)."""
    live = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            live.add(node.name)
        elif node.op == "call_function" and any(
                isinstance(a, Node) and a.name in live for a in node._input_nodes):
            live.add(node.name)
    return live


class _Recorder(Interpreter):
    """Runs a graph and records the values of chosen nodes; in local mode it also
    replaces each compared node's measured value by the reference's before the
    next op reads it."""

    def __init__(self, gm: GraphModule, measure: dict, reference: Optional[dict] = None):
        super().__init__(gm)
        self.measure = measure          # measured node name → compared node name
        self.reference = reference      # compared node name → fp32 value (local mode)
        self.chains = {}                # measured node name → q/dq chain from the compared node
        self.values: dict = {}
        self.links: set = set()         # names of the q/dq nodes in ``chains``
        self.link_args: dict = {}

    def run_node(self, n: Node):
        if n.name in self.links:
            # The q/dq arguments (scale, zero point, ...) as this run sees them, to replay below.
            self.link_args[n.name] = self.fetch_args_kwargs_from_env(n)
        result = super().run_node(n)
        key = self.measure.get(n.name)
        if key is None or not isinstance(result, torch.Tensor):
            return result
        self.values[key] = result
        if self.reference is not None and key in self.reference:
            value = self.reference[key]
            # Re-apply the node's own output q/dq to the fp32 value, so the next
            # op's input quantization is the quantized model's.
            for link in self.chains.get(n.name, ()):
                args, kwargs = self.link_args[link.name]
                value = link.target(value, *args[1:], **kwargs)
            return value
        return result


def _run(gm: GraphModule, inputs: tuple, measure: dict, reference=None, chains=None):
    recorder = _Recorder(gm, measure, reference)
    recorder.chains = chains or {}
    recorder.links = {link.name for chain in recorder.chains.values() for link in chain}
    with torch.no_grad():
        out = recorder.run(*inputs)
    return out, recorder.values


def _float_leaves(value) -> list:
    leaves = torch.utils._pytree.tree_leaves(value)
    return [t for t in leaves if isinstance(t, torch.Tensor) and t.is_floating_point()]


def compare_graphs(
    reference: GraphModule,
    quantized: GraphModule,
    batches: Iterable,
    *,
    local: bool = True,
) -> DebugReport:
    """Compare every activation-path node of ``quantized`` with the node of the same name in ``reference``.

    Args:
        reference: the float graph, e.g. :func:`float_reference`.
        quantized: the converted graph.
        batches: input tuples (a tensor alone is taken as a 1-tuple).
        local: also measure each node fed exact fp32 inputs (one more run per batch).

    Returns:
        A :class:`DebugReport`, rows sorted by ``loss_db``, worst first.

    Raises:
        ValueError: no batch was given.
    """
    ref_nodes = {n.name: n for n in reference.graph.nodes}
    live = _activation_nodes(quantized)
    chains = _measurement_points(quantized)
    compared, unmatched = {}, []
    for node in quantized.graph.nodes:
        if node.name not in chains or node.name not in live:
            continue
        ref = ref_nodes.get(node.name)
        if ref is None or ref.op != "call_function":
            unmatched.append((node.name, "no node of this name in the float reference"))
            continue
        compared[node.name] = node
    # Both graphs are measured at the compared node; the quantized one after its q/dq.
    ref_measure = {name: name for name in compared}
    q_measure = {(chains[name][-1].name if chains[name] else name): name for name in compared}
    q_chains = {chains[name][-1].name: chains[name] for name in compared if chains[name]}

    cumulative = {name: _Errors() for name in compared}
    local_err = {name: _Errors() for name in compared}
    outputs: list = []
    count = 0
    for batch in batches:
        batch = batch if isinstance(batch, tuple) else (batch,)
        ref_out, ref_values = _run(reference, batch, ref_measure)
        q_out, q_values = _run(quantized, batch, q_measure)
        for name, value in q_values.items():
            expected = ref_values.get(name)
            if expected is not None and expected.shape == value.shape:
                cumulative[name].add(expected, value)
        if local:
            _, l_values = _run(quantized, batch, q_measure, reference=ref_values, chains=q_chains)
            for name, value in l_values.items():
                expected = ref_values.get(name)
                if expected is not None and expected.shape == value.shape:
                    local_err[name].add(expected, value)
        pairs = list(zip(_float_leaves(ref_out), _float_leaves(q_out)))
        if not outputs:
            outputs = [_Errors() for _ in pairs]
        for errors, (expected, actual) in zip(outputs, pairs):
            errors.add(expected, actual)
        count += 1
    if count == 0:
        raise ValueError("compare_graphs needs at least one batch of inputs")

    rows = []
    for name, node in compared.items():
        errors = cumulative[name]
        if errors.numel == 0:
            unmatched.append((name, "shapes differ between the reference and the converted graph"))
            continue
        loc = local_err[name] if local else None
        rows.append(NodeComparison(
            node=name, op=op_name(node), module=module_path(node),
            quantized=bool(chains[name]) or any(_is_qdq(a) for a in node._input_nodes),
            sqnr_db=errors.sqnr_db, max_abs_error=errors.max_abs,
            local_sqnr_db=loc.sqnr_db if loc is not None and loc.numel else None,
            local_max_abs_error=loc.max_abs if loc is not None and loc.numel else None,
            numel=errors.numel))
    # Graph order breaks ties, so the same input always gives the same table.
    order = {name: i for i, name in enumerate(compared)}
    rows.sort(key=lambda r: (r.loss_db, order[r.node]))
    output_sqnr = min((e.sqnr_db for e in outputs), default=math.inf)
    return DebugReport(rows=tuple(rows), output_sqnr_db=output_sqnr, batches=count,
                       unmatched=tuple(unmatched))


def debug_quantization(
    model,
    example_inputs: tuple,
    calibration: Optional[Sequence],
    quantizer,
    *,
    ir: str = "training",
    batches: Optional[Sequence] = None,
    local: bool = True,
) -> DebugReport:
    """Quantize ``model`` with ``quantizer`` and compare it node by node with fp32.

    Args:
        model: an ``nn.Module`` (exported to ``ir``; not modified) or an ``ExportedProgram``.
        example_inputs: tuple of example tensors.
        calibration: calibration batches (None: ``example_inputs`` alone).
        quantizer: the PT2E quantizer; a copy is used, the caller's is untouched.
        ir: ``"training"`` or ``"core"``, when ``model`` is an ``nn.Module``.
        batches: the batches to compare on (default: the calibration batches).
        local: also measure each node fed exact fp32 inputs.

    Returns:
        A :class:`DebugReport`.
    """
    from ..workflow import export_model, quantize

    if isinstance(model, torch.export.ExportedProgram):
        ep = model
    else:
        ep = export_model(copy.deepcopy(model), example_inputs, ir=ir)
    calibration = list(calibration) if calibration is not None else [example_inputs]
    converted = quantize(ep, example_inputs, calibration, copy.deepcopy(quantizer), alarm_sqnr_db=None)
    reference = float_reference(ep, quantizer)
    return compare_graphs(reference, converted, batches if batches is not None else calibration,
                          local=local)
