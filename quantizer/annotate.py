"""The one generic annotator: reads the op table and writes QuantizationAnnotations.

It makes three passes over the graph's ``call_function`` nodes, in topological order:

1. **Own-qparams records** (``QParams.OWN``): each argument gets the spec of
   its role.  A weight reached through a transpose is observed on the
   parameter, before the transpose, with its output-channel axis.  When the
   op's only user is an activation the record fuses, the output observer moves
   after that activation.
2. **Shared-qparams records** (``QParams.SHARED``): an op whose input is
   already quantized gets ``SharedQuantizationSpec`` on its input edge and
   output, so input and output carry one set of qparams (XNNPACK refuses a
   slice or permute whose qparams differ).  ``cat`` inputs join the same group;
   ``max_pool2d_with_indices`` passes its qparams to ``getitem(·, 0)``.  This
   runs second because it needs to know which inputs the first pass quantized.
3. **Everything else**: ``QParams.FLOAT`` records and ops with no record are
   left float, with the reason.

Every ``call_function`` node gets a :class:`~.report.NodeDecision`.

Worked example (core IR, ``y = relu(addmm(b, x, permute(w)))``)::

    x ──[act obs]──► addmm ──► relu ──[out obs]──►
    w ──[per-channel obs, axis 0]──► permute ──┘
    b (float; XNNPACK quantizes it to int32 with scale s_x·s_w)
"""

from __future__ import annotations

import operator
from typing import Callable, Optional

from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.quantizer import (
    QuantizationAnnotation,
    SharedQuantizationSpec,
)
from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

from .graph import TRANSPOSES, is_float_tensor, is_transposed_constant, op_name, same_shape, schema_args, shape
from .patterns import BOOKKEEPING, HARDTANH, OpRecord, QParams, Role, record_for
from .report import AnnotationReport, NodeDecision
from .specs import QuantConfig, with_weight_axis

#: (config or None, where it came from: "global", "module name 'a.b'", ...)
Resolver = Callable[[Node], tuple]


def output_is_quantized(node: Node) -> bool:
    """Whether ``node``'s output carries an observer after annotation."""
    ann = node.meta.get(Q_ANNOTATION_KEY)
    return ann is not None and ann.output_qspec is not None


def _source_fn(node: Node):
    """The call a node was decomposed from: its source function, else its innermost module."""
    stack = node.meta.get("source_fn_stack") or []
    if stack:
        return stack[-1][0]
    modules = node.meta.get("nn_module_stack") or {}
    return list(modules.values())[-1][0] if modules else None


def _same_source(node: Node, anchor: Node) -> bool:
    source = _source_fn(anchor)
    return source is not None and _source_fn(node) == source


def walk_back(value, ops: frozenset, anchor: Node) -> tuple:
    """Follow single-user ``ops`` of the anchor's own source call back from ``value``.

    Returns (the source value, the ops walked through, nearest the anchor first).
    """
    chain = []
    # A transpose of a parameter is unambiguous even without source metadata.
    while (isinstance(value, Node) and value.target in ops and len(value.users) == 1
           and (_same_source(value, anchor) or is_transposed_constant(value))):
        chain.append(value)
        value = value.args[0]
    return value, chain


def walk_forward(node: Node, ops: frozenset, anchor: Node, *, any_source: bool = False) -> list:
    """The single-user ``ops`` of the anchor's own source call (or any, if asked) after ``node``."""
    chain = []
    while len(node.users) == 1:
        (user,) = node.users
        if user.op != "call_function" or user.target not in ops:
            break
        if not (any_source or _same_source(user, anchor)):
            break
        chain.append(user)
        node = user
    return chain


class _Annotator:
    def __init__(self, resolve: Resolver, node_filter: Optional[Callable[[Node], bool]]):
        self.resolve = resolve
        self.node_filter = node_filter
        self.decisions: dict = {}

    # -- bookkeeping ----------------------------------------------------------------
    def decide(self, node: Node, quantized: bool, *, pattern=None, role=None, reason="",
               config: Optional[QuantConfig] = None) -> None:
        self.decisions[node] = NodeDecision(
            node=node.name, op=op_name(node), quantized=quantized, pattern=pattern, role=role,
            reason=reason, config=config.name if config is not None else None,
        )

    def prelude(self, node: Node, record: OpRecord) -> Optional[QuantConfig]:
        """The node's config, or None after recording why it is not annotated here."""
        if Q_ANNOTATION_KEY in node.meta:
            self.decide(node, output_is_quantized(node), pattern=record.name,
                        reason="annotated before this quantizer ran; left as it was")
            return None
        config, why = self.config_for(node)
        if config is None:
            self.decide(node, False, pattern=record.name, reason=why)
        elif config.is_dynamic and not record.dynamic:
            # A data-movement op too: a dynamic q/dq before a transpose is delegated by no
            # XNNPACK config, and its choose_qparams has no portable kernel either.
            self.decide(node, False, pattern=record.name, config=config,
                        reason="dynamic configs quantize only linear and conv (XNNPACK's dynamic kernels)")
            return None
        return config

    def config_for(self, node: Node) -> tuple:
        """(config, reason it is None)."""
        if self.node_filter is not None and not self.node_filter(node):
            return None, "excluded by the node filter"
        config, source = self.resolve(node)
        if config is None:
            return None, f"excluded by config ({source} is set to None)"
        return config, ""

    # -- phase 1: records with their own observer -------------------------------------
    def anchor(self, node: Node, record: OpRecord) -> None:
        config = self.prelude(node, record)
        if config is None:
            return
        if not is_float_tensor(node):
            self.decide(node, False, pattern=record.name, config=config,
                        reason="dtype not supported: output is not a float tensor")
            return
        reason = record.why_not(node, dynamic=config.is_dynamic)
        if reason is not None:
            self.decide(node, False, pattern=record.name, config=config, reason=reason)
            return

        values = schema_args(node)
        input_map: dict = {}
        before: list = []  # (op walked through, its source, spec, role): observed before that op
        walked: list = []  # (op, role) between a source and the op, for the report
        restoring: list = []  # the views after the op that undo its input's flattening
        for arg in record.args_of(node.target):
            value = values.get(arg.name)
            if not isinstance(value, Node):
                continue
            source, chain = walk_back(value, _through(arg), node)
            if arg.role is Role.ACT and chain:
                restoring = _restoring_views(node, record, source)
                if not restoring:
                    source, chain = value, []
            if arg.role is Role.ACT:
                if not is_float_tensor(source):
                    self.decide(node, False, pattern=record.name, config=config,
                                reason="dtype not supported: activation input is not a float tensor")
                    return
                spec = config.input_activation
            elif arg.role is Role.WEIGHT:
                if not (isinstance(source, Node) and source.op == "get_attr"):
                    self.decide(node, False, pattern=record.name, config=config,
                                reason="weight is not a constant parameter; XNNPACK needs static weights")
                    return
                spec = with_weight_axis(config.weight, arg.axis)
            else:
                spec = config.bias
            if spec is None:
                continue
            walked += [(op, arg.role) for op in chain[:-1]]
            if chain:
                before.append((chain[-1], source, spec, arg.role))
            else:
                input_map[value] = spec

        tail_ops = walk_forward(node, record.folds, node, any_source=True)
        tail_ops += restoring
        tail = tail_ops[-1] if tail_ops else node
        fused = self._fused_activation(tail, record, config)
        output = config.output_activation
        if (output is not None and fused is not None and fused.target in HARDTANH
                and config.clamped_output_activation is not None):
            output = config.clamped_output_activation
        last = fused if fused is not None else tail
        node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
            input_qspec_map=input_map,
            output_qspec=output if last is node else None,
            _annotated=True,
        )
        self.decide(node, True, pattern=record.name, role="anchor", config=config)
        for op, source, spec, role in before:
            op.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
                input_qspec_map={source: spec}, _annotated=True
            )
            self.decide(op, True, pattern=record.name, role=f"{role.value} {op.target._opname}",
                        config=config)
        for op, role in walked:
            self.decide(op, True, pattern=record.name, role=f"{role.value} {op.target._opname}",
                        config=config)
        for op in tail_ops:
            op.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
                output_qspec=output if last is op else None, _annotated=True)
            role = "folded" if op.target in record.folds else "output"
            self.decide(op, True, pattern=record.name, role=f"{role} {op.target._opname}",
                        config=config)
        if fused is not None:
            fused.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(output_qspec=output, _annotated=True)
            self.decide(fused, True, pattern=record.name, role="fused activation", config=config)

    def _fused_activation(self, node: Node, record: OpRecord, config: QuantConfig) -> Optional[Node]:
        if config.is_dynamic or len(node.users) != 1:
            return None
        (user,) = node.users
        if user.op != "call_function" or user.target not in record.fused:
            return None
        if Q_ANNOTATION_KEY in user.meta or self.config_for(user)[0] != config:
            return None
        return user

    # -- phase 2: records that share their input's qparams -----------------------------
    def shared(self, node: Node, record: OpRecord) -> None:
        config = self.prelude(node, record)
        if config is None:
            return
        spelling = record.spelling(node.target)
        (data,) = spelling.args
        value = schema_args(node)[data.name]
        inputs = [i for i in (value if data.is_list else [value]) if isinstance(i, Node)]
        # Model inputs count as quantizable: moving int8 data is cheaper than fp32.
        leaders = [i for i in inputs if output_is_quantized(i)
                   or (i.op == "placeholder" and is_float_tensor(i))]
        if not leaders:
            self.decide(node, False, pattern=record.name, config=config,
                        reason="input is float, so this op keeps float too")
            return
        reason = record.why_not(node)
        if reason is not None:
            self.decide(node, False, pattern=record.name, config=config, reason=reason)
            return
        # One leader's qparams; the other inputs and the output join its group.  Every spec
        # names the group's root (the edge or node holding a real spec), never a chain of
        # shared specs: torchao's union-find can root a group at a shared spec that points
        # back into it, and then recurses forever (``cat([clamp(x), x])`` did).
        leader = leaders[0]
        if output_is_quantized(leader):
            shared_out = SharedQuantizationSpec(_sharing_root(leader))
            input_map = {i: shared_out for i in inputs}
        else:
            shared_out = SharedQuantizationSpec((leader, node))
            input_map = {i: shared_out for i in inputs}
            input_map[leader] = config.input_activation
        if spelling.output_index is not None:
            node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map=input_map, _annotated=True)
            for user in node.users:
                if user.target is operator.getitem and user.args[1] == spelling.output_index:
                    user.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
                        output_qspec=shared_out, _annotated=True)
                    self.decide(user, True, pattern=record.name, role="shared output", config=config)
        else:
            node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
                input_qspec_map=input_map, output_qspec=shared_out, _annotated=True)
        self.decide(node, True, pattern=record.name, role="shared qparams", config=config)

    # -- phase 3: everything else -----------------------------------------------------
    def unmatched(self, node: Node, record: Optional[OpRecord]) -> None:
        if record is not None:
            self.decide(node, False, pattern=record.name, reason=record.reason)
        elif not is_float_tensor(node) and not isinstance(node.meta.get("val"), (tuple, list)):
            self.decide(node, False, reason="dtype not supported: not a float tensor op")
        else:
            self.decide(node, False, reason="no record in the op table: not an op XNNPACK runs in int8")


def _restoring_views(node: Node, record: OpRecord, flattened: Node) -> list:
    """The record's ``output_through`` views after ``node`` that undo its input's flattening.

    The core IR spells a rank-3 linear ``view → addmm → view``; ExecuTorch
    rebuilds that group from its source partition and wants the observers
    outside both views.  Views that only happen to surround a 2-D linear of the
    same module (attention's ``reshape(L·N, E)`` → ``out_proj`` →
    ``view(L, N, E)``) are not part of it: observing beyond them would leave
    the linear's own input and output float, and ExecuTorch's ``GEMMConfig``
    then rejects the linear and strands its weight's dequantize outside the
    delegate.  So the views belong to the op only as a pair that restores the
    flattened activation's leading dims; empty otherwise.
    """
    views = walk_forward(node, record.output_through, node)
    before, after = shape(flattened), shape(views[-1]) if views else None
    if before is None or after is None or not same_shape(before[:-1], after[:-1]):
        return []
    return views


def _sharing_root(node: Node):
    """The edge or node whose own spec ``node``'s output qparams come from, through shared specs."""
    target = node
    while True:
        if isinstance(target, Node):
            spec = target.meta[Q_ANNOTATION_KEY].output_qspec
        else:
            source, user = target
            spec = user.meta[Q_ANNOTATION_KEY].input_qspec_map[source]
        if not isinstance(spec, SharedQuantizationSpec):
            return target
        target = spec.edge_or_node


def _through(arg) -> frozenset:
    """The ops an argument may be observed before (a transposed weight's 2-D transpose)."""
    return arg.through | TRANSPOSES if arg.transposed else arg.through


def _live_nodes(gm: GraphModule) -> set:
    """The nodes the graph's outputs depend on (an op with no path to an output computes nothing)."""
    live: set = set()
    pending = [gm.graph.output_node()]
    while pending:
        node = pending.pop()
        if node not in live:
            live.add(node)
            pending.extend(node.all_input_nodes)
    return live


def annotate_graph(
    gm: GraphModule,
    resolve: Resolver,
    node_filter: Optional[Callable[[Node], bool]] = None,
) -> AnnotationReport:
    """Annotate ``gm`` in place from the op table; return what was decided for each node.

    Args:
        gm: the graph module handed to ``Quantizer.annotate`` by torchao's prepare.
        resolve: maps a node to ``(config or None, description of its source)``,
            implementing the quantizer's scoping precedence.
        node_filter: nodes for which it returns False stay float.
    """
    annotator = _Annotator(resolve, node_filter)
    # Dead code is left out: the training IR keeps it where the core IR's decomposition
    # drops it, and convert_pt2e erases it, so counting it would make the IRs disagree.
    live = _live_nodes(gm)
    nodes = [n for n in gm.graph.nodes if n.op == "call_function" and n in live]
    records = {n: record_for(n) for n in nodes}
    for phase, rule in ((annotator.anchor, QParams.OWN), (annotator.shared, QParams.SHARED)):
        for node in nodes:
            rec = records[node]
            if rec is not None and rec.qparams is rule and node not in annotator.decisions:
                phase(node, rec)
    for node in nodes:
        if node not in annotator.decisions and node.target not in BOOKKEEPING:
            annotator.unmatched(node, records[node])
    ordered = [annotator.decisions[n] for n in nodes if n in annotator.decisions]
    return AnnotationReport(decisions=ordered)
