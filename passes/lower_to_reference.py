"""Rewrite a converted PT2E graph into xnnquant's reference integer kernels.

Input: the output of torchao ``convert_pt2e`` (either export IR), in which every
quantized op is simulated in float as ``dequantize → op [→ activation] → quantize``.
Output: a *copy* of that graph in which each such pattern whose op-table
record (``xnnquant.quantizer.patterns``) names a :class:`Reference` is one
``torch.ops.xnnquant.*`` call on int8 tensors, so the model runs in XNNPACK's integer arithmetic in eager PyTorch and
can still be captured with ``torch.export.export``.

What is matched (all of it read from the op table, nothing per op here):

* activations: ``dequantize_per_tensor(x_q, scale, zp, qmin, qmax, int8)`` with
  constant qparams, optionally followed by shared-qparams data-movement ops
  (the core-IR ``view`` before an ``addmm``), which are replayed on ``x_q``;
* weights: an int8 constant through ``dequantize_per_channel(w, scales, zps,
  axis=0, …)`` or ``dequantize_per_tensor``, symmetric, and for the core-IR
  ``addmm``/``mm`` through ``permute(w, [1, 0])``;
* the output: at most one fused activation and any data-movement ops, then one
  ``quantize_per_tensor`` to int8;
* standalone ``dequantize → data-movement op → quantize`` with identical
  qparams, which becomes the op applied to the int8 codes, and standalone
  ``dequantize → relu/hardtanh/clamp → quantize`` with identical qparams, which
  becomes ``xnnquant.quantized_clamp``.

Nothing is dropped silently: every pattern left in float is listed, with the
reason, in the :class:`ReferenceLoweringReport` attached to the result as
``result.meta["xnnquant_reference_report"]``; ``strict=True`` raises instead.

Example (training IR, ``nn.Linear`` + relu)::

    dq(x_q, 0.02, 3) ─┐
    dq_per_channel(w_q, s_w, 0, axis=0) ─┼→ linear(·, ·, b) → relu → q(·, 0.05, -128)
                      b ─┘
    becomes
    xnnquant.quantized_linear(x_q, 0.02, 3, w_q, s_w, b, 0.05, -128, -128, 127)

(relu's clamp lower bound is the output zero point, −128 here.)
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers quantized_decomposed ops)
from torch.fx import GraphModule, Node
from torch.fx.passes.infra.pass_base import PassBase, PassResult

from xnnquant.kernels.arith import activation_bounds
from xnnquant.kernels.ops import NAMESPACE, registered_kernels
from xnnquant.quantizer._quiet import quiet_third_party
from xnnquant.quantizer.graph import constant, is_call, schema_args, shape, transposed_source
from xnnquant.quantizer.patterns import (
    ACTIVATION_BOUNDS,
    RECORDS,
    OpRecord,
    Role,
    Spelling,
    record_for,
)

REPORT_KEY = "xnnquant_reference_report"

_qd = torch.ops.quantized_decomposed
QUANTIZE = _qd.quantize_per_tensor.default
DEQUANTIZE = _qd.dequantize_per_tensor.default
DEQUANTIZE_PER_CHANNEL = _qd.dequantize_per_channel.default
_DEQUANTIZE_OPS = (DEQUANTIZE, DEQUANTIZE_PER_CHANNEL)


class MissingReferenceError(LookupError):
    """A record names a kernel that is not registered, or a lowered op has no reference."""


def _has_kernel(record: OpRecord) -> bool:
    return record.reference is not None and record.reference.kernel is not None


#: Records whose pattern becomes one kernel call, and records whose op is replayed on int8 codes.
KERNEL_RECORDS = tuple(r for r in RECORDS if _has_kernel(r))
ON_CODES_TARGETS = frozenset().union(
    *(r.targets for r in RECORDS if r.reference is not None and r.reference.kernel is None))


def kernel_op(record: OpRecord):
    """The ``torch.ops.xnnquant`` overload of ``record``'s reference kernel."""
    return getattr(getattr(torch.ops, NAMESPACE), record.reference.kernel).default


def check_registry() -> None:
    """Fail if a record of the op table names a kernel that was never registered.

    Raises:
        MissingReferenceError: naming the record and the missing kernel.
    """
    kernels = registered_kernels()
    for record in KERNEL_RECORDS:
        if record.reference.kernel not in kernels:
            raise MissingReferenceError(
                f"record {record.name!r} names kernel {NAMESPACE}::{record.reference.kernel}, "
                "which has no registered reference implementation"
            )


def check_references(gm: GraphModule) -> None:
    """Fail if ``gm`` calls an ``xnnquant`` op without a registered reference kernel.

    Raises:
        MissingReferenceError: naming the first such op and its node.
    """
    kernels = registered_kernels()
    for node in gm.graph.nodes:
        target = node.target
        if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
            continue
        if target.namespace == NAMESPACE and target._schema.name.split("::")[-1] not in kernels:
            raise MissingReferenceError(
                f"node {node.name} calls {target}, which has no registered reference kernel"
            )


@dataclass(frozen=True)
class Lowered:
    """A pattern replaced by a reference kernel: anchor node name, pattern and kernel."""

    node: str
    pattern: str
    kernel: str


@dataclass(frozen=True)
class Skipped:
    """A quantized op left in float simulation, and why."""

    node: str
    target: str
    reason: str


@dataclass
class ReferenceLoweringReport:
    """What :func:`lower_to_reference` rewrote and what it left in float."""

    lowered: list[Lowered] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"lowered {len(self.lowered)} pattern(s), left {len(self.skipped)} in float"]
        lines += [f"  {s.node} ({s.target}): {s.reason}" for s in self.skipped]
        return "\n".join(lines)


class _NoMatch(Exception):
    """Raised inside matching with the reason the pattern cannot be lowered."""


@dataclass
class _Operand:
    """A dequantized activation: its int8 source, qparams and replayed data movement."""

    q_input: Node
    scale: float
    zp: int
    moves: list[Node]


@dataclass
class _Match:
    """Everything needed to emit one kernel call in place of a float pattern."""

    record: OpRecord
    anchor: Node
    operands: list[_Operand]
    weight: tuple[Node, Node | float, Node | None] | None
    params: list[Any]
    out_moves: list[Node]
    q_node: Node
    y_scale: float
    y_zp: int
    out_min: int
    out_max: int
    consumed: list[Node]  # the float nodes this match replaces, never matched again


def _activation_qparams(dq: Node, role: str) -> tuple[Node, float, int]:
    if not is_call(dq, (DEQUANTIZE,)):
        found = dq.target if isinstance(dq, Node) else type(dq).__name__
        raise _NoMatch(f"{role} is not a per-tensor dequantize (found {found})")
    a = schema_args(dq)
    if a["dtype"] != torch.int8:
        raise _NoMatch(f"{role} is quantized to {a['dtype']}; only int8 is covered")
    if isinstance(a["scale"], Node) or isinstance(a["zero_point"], Node):
        raise _NoMatch(f"{role} has runtime (tensor) qparams; only constant qparams are covered")
    return a["input"], float(a["scale"]), int(a["zero_point"])


def _trace_activation(node: Any, role: str) -> _Operand:
    moves = []
    while is_call(node, ON_CODES_TARGETS):
        moves.append(node)
        node = node.args[0]
    q_input, scale, zp = _activation_qparams(node, role)
    return _Operand(q_input, scale, zp, moves[::-1])


def _constant(gm: GraphModule, node: Any, role: str) -> torch.Tensor:
    value = constant(gm, node)
    if value is None:
        raise _NoMatch(f"{role} is not a constant (get_attr), so it cannot be checked")
    return value


def _trace_weight(gm: GraphModule, node: Any, transposed: bool) -> tuple[Node, Node | float]:
    if transposed:
        node = transposed_source(node)
        if node is None:
            raise _NoMatch("weight does not reach the op through a 2-D transpose")
    if not is_call(node, _DEQUANTIZE_OPS):
        raise _NoMatch("weight is not dequantized (float weight)")
    a = schema_args(node)
    if a["dtype"] != torch.int8:
        raise _NoMatch(f"weight is quantized to {a['dtype']}; only int8 is covered")
    if node.target is DEQUANTIZE_PER_CHANNEL:
        if a["axis"] != 0:
            raise _NoMatch(f"weight is quantized along axis {a['axis']}; the kernels need axis 0")
        zero_points = a["zero_points"]
        if zero_points is not None and torch.any(
            _constant(gm, zero_points, "weight zero point") != 0
        ):
            raise _NoMatch("weight is asymmetric (non-zero zero points); XNNPACK needs zp_w = 0")
        return a["input"], a["scales"]
    if isinstance(a["scale"], Node) or a["zero_point"] != 0:
        raise _NoMatch("per-tensor weight needs a constant scale and zero point 0")
    return a["input"], float(a["scale"])


def _trace_output(node: Node, record: OpRecord, spelling: Spelling):
    index = spelling.output_index
    if index is not None:
        users = list(node.users)
        if len(users) != 1 or not (users[0].target is operator.getitem
                                   and users[0].args[1] == index):
            raise _NoMatch(f"outputs other than #{index} are used")
        node = users[0]
    moves, act = [], None
    while True:
        users = list(node.users)
        if len(users) != 1:
            raise _NoMatch(
                f"{node.name} has {len(users)} users; its float value escapes the pattern"
            )
        user = users[0]
        if is_call(user, (QUANTIZE,)):
            return moves, act, user
        if user.args[:1] != (node,):
            raise _NoMatch(f"output feeds {user.target} in a non-leading argument")
        if is_call(user, ON_CODES_TARGETS):
            moves.append(user)
        elif is_call(user, ACTIVATION_BOUNDS) and record.reference.fuses_activation and act is None:
            act = user
        else:
            raise _NoMatch(f"output feeds {user.target} instead of a quantize")
        node = user


def _bound(act_args: dict[str, Any], spec: float | str | None) -> float | None:
    value = act_args.get(spec) if isinstance(spec, str) else spec
    if isinstance(value, Node):
        raise _NoMatch("activation bound is a runtime value")
    return None if value is None else float(value)


def _match(gm: GraphModule, node: Node, record: OpRecord) -> _Match:
    """Everything needed to replace ``node``'s q/dq pattern by ``record``'s kernel, or ``_NoMatch``."""
    reference = record.reference
    spelling = record.spelling(node.target)
    args = schema_args(node)
    roles = {role: [a for a in spelling.args if a.role is role] for role in Role}
    operands = [_trace_activation(args[a.name], f"input {a.name!r}") for a in roles[Role.ACT]]
    weight = None
    for w_arg in roles[Role.WEIGHT]:
        w, w_scale = _trace_weight(gm, args[w_arg.name], w_arg.transposed)
        bias = next((args.get(b.name) for b in roles[Role.BIAS]), None)
        if is_call(bias, _DEQUANTIZE_OPS):
            raise _NoMatch("bias is explicitly quantized; only a float bias is covered")
        weight = (w, w_scale, bias)
    rewrite = reference.rewrite_args.get(node.target)
    if rewrite is not None:
        args = rewrite(args, shape(weight[0], gm) if weight else None)
        if isinstance(args, str):
            raise _NoMatch(args)
    params = [args[schema_name] for _, schema_name in reference.params]
    out_moves, act, q_node = _trace_output(node, record, spelling)
    if spelling.bounds is not None:
        act = node
    _, y_scale, y_zp = _output_qparams(q_node)
    if not reference.requantizes and any((o.scale, o.zp) != (y_scale, y_zp) for o in operands):
        raise _NoMatch(
            f"output qparams ({y_scale}, {y_zp}) differ from the input's "
            f"({operands[0].scale}, {operands[0].zp}); {record.name} needs shared qparams"
        )
    qa = schema_args(q_node)
    out_min, out_max = qa["quant_min"], qa["quant_max"]
    if act is not None:
        lower, upper = ACTIVATION_BOUNDS[act.target]
        act_args = schema_args(act)
        out_min, out_max = activation_bounds(
            _bound(act_args, lower), _bound(act_args, upper), y_scale, y_zp, out_min, out_max,
        )
    consumed = [node, *node.users, *out_moves, *([act] if act is not None else []), q_node]
    return _Match(record, node, operands, weight, params, out_moves, q_node, y_scale, y_zp,
                  out_min, out_max, consumed)


def _output_qparams(q_node: Node) -> tuple[Node, float, int]:
    a = schema_args(q_node)
    if a["dtype"] != torch.int8:
        raise _NoMatch(f"output is quantized to {a['dtype']}; only int8 is covered")
    if isinstance(a["scale"], Node) or isinstance(a["zero_point"], Node):
        raise _NoMatch("output has runtime (tensor) qparams; only constant qparams are covered")
    return a["input"], float(a["scale"]), int(a["zero_point"])


def _replay(graph, moves: list[Node], value: Any) -> Node:
    for move in moves:
        value = graph.call_function(move.target, (value, *move.args[1:]), dict(move.kwargs))
    return value


class _Rewriter:
    """Applies matches to one graph module and tracks what became dead."""

    def __init__(self, gm: GraphModule):
        self.gm = gm
        self.graph = gm.graph
        self.replaced: list[Node] = []
        self.consumed: set[Node] = set()

    def _scale_node(self, scale: Node | float) -> Node:
        if isinstance(scale, Node):
            return scale
        # Per-tensor weight scale: the kernels take a tensor, so store one.
        index = 0
        while hasattr(self.gm, f"_xnnquant_w_scale_{index}"):
            index += 1
        name = f"_xnnquant_w_scale_{index}"
        self.gm.register_buffer(name, torch.tensor([scale], dtype=torch.float32))
        return self.graph.get_attr(name)

    def apply(self, m: _Match) -> Node:
        with self.graph.inserting_before(m.q_node):
            args: list[Any] = []
            for o in m.operands:
                value = _replay(self.graph, o.moves, o.q_input)
                ref = m.record.reference
                args += [value, o.scale, o.zp] if ref.requantizes or ref.input_qparams else [value]
            if m.weight is not None:
                w, w_scale, bias = m.weight
                args += [w, self._scale_node(w_scale), bias]
            args += m.params
            if m.record.reference.requantizes:
                args += [m.y_scale, m.y_zp]
            args += [m.out_min, m.out_max]
            kernel = self.graph.call_function(kernel_op(m.record), tuple(args))
            for key in ("stack_trace", "nn_module_stack", "source_fn_stack"):
                if key in m.anchor.meta:
                    kernel.meta[key] = m.anchor.meta[key]
            result = _replay(self.graph, m.out_moves, kernel)
        self._replace(m.q_node, result)
        self.consumed.update(m.consumed)
        return kernel

    def apply_on_codes(self, move: Node, codes: Any, q_node: Node) -> None:
        """Replace ``dq → move → q`` by ``move`` applied to the int8 ``codes``."""
        with self.graph.inserting_before(q_node):
            result = _replay(self.graph, [move], codes)
        self._replace(q_node, result)

    def _replace(self, q_node: Node, result: Node) -> None:
        q_node.replace_all_uses_with(result)
        self.replaced.append(q_node)

    def erase_dead(self) -> None:
        """Erase what the rewrite left unused, walking up from the replaced quantizes only.

        A global dead-code elimination would also remove unrelated nodes of the
        input graph (e.g. export's ``_guards_fn`` call), which is not ours to drop.
        """
        work = list(self.replaced)
        while work:
            node = work.pop()
            dead = not node.users and node.op in ("call_function", "get_attr")
            if node.graph is not self.graph or not dead:
                continue
            inputs = node.all_input_nodes
            self.graph.erase_node(node)
            work.extend(inputs)


def _on_codes_match(node: Node) -> tuple[Any, Node] | None:
    """``dq → move → q`` (a list of dequantizes for ``cat``) with equal qparams: (codes, q)."""
    src = node.args[0] if node.args else None
    sources = list(src) if isinstance(src, (list, tuple)) else [src]
    users = list(node.users)
    if not (sources and all(is_call(s, (DEQUANTIZE,)) for s in sources)
            and len(users) == 1 and is_call(users[0], (QUANTIZE,))):
        return None
    _, s_out, zp_out = _output_qparams(users[0])
    codes = []
    for source in sources:
        x_q, s_in, zp_in = _activation_qparams(source, "input")
        if (s_in, zp_in) != (s_out, zp_out):
            raise _NoMatch(
                f"input qparams ({s_in}, {zp_in}) differ from output ({s_out}, {zp_out}); "
                "a data-movement op needs shared qparams (XNNPACK refuses otherwise)"
            )
        codes.append(x_q)
    return (codes if isinstance(src, (list, tuple)) else codes[0]), users[0]


def _dq_derived(node: Any) -> bool:
    while is_call(node, ON_CODES_TARGETS) or (
        isinstance(node, Node) and node.target is operator.getitem
    ):
        node = node.args[0]
    return is_call(node, _DEQUANTIZE_OPS)


def _uncovered_reason(node: Node) -> str | None:
    """Why a float op left inside the quantized region was not lowered (None: not such an op)."""
    if node.op != "call_function" or is_call(node, (QUANTIZE, *_DEQUANTIZE_OPS)):
        return None
    if getattr(node.target, "namespace", None) == NAMESPACE:
        return None
    if not any(_dq_derived(a) for a in node.all_input_nodes):
        return None
    if node.target in ON_CODES_TARGETS or node.target is operator.getitem:
        # Data movement between a dequantize and a float op is part of that op's
        # pattern; it only counts on its own when it feeds a quantize.
        if not any(is_call(u, (QUANTIZE,)) for u in node.users):
            return None
        return "data-movement op between dequantize and quantize was not lowered"
    if not _feeds_quantize(node):
        return (f"{node.target} reads a dequantized value but its output is not quantized "
                "(runs in float)")
    record = record_for(node)
    if record is not None and record.no_reference:
        return f"{node.target} has no reference kernel: {record.no_reference}"
    return f"{node.target} has no record with a reference kernel in the op table"


def _in_quantized_region(node: Node, record: OpRecord) -> bool:
    """The quantizer quantized this op: it reads a dequantized value or its result is quantized.

    An anchor op outside that region was left in float by the quantizer, which
    is a decision and not a pattern this pass failed to lower. An activation
    that does not read a dequantized value belongs to the op before it (fused
    there, or reported with that op when it could not be lowered).
    """
    reads_dq = any(_dq_derived(a) for a in node.all_input_nodes)
    is_activation = record.spelling(node.target).bounds is not None
    return reads_dq or (not is_activation and _feeds_quantize(node))


def _feeds_quantize(node: Node) -> bool:
    """The value reaches a quantize through data-movement ops or activations only."""
    work = [node]
    while work:
        for user in work.pop().users:
            if is_call(user, (QUANTIZE,)):
                return True
            if (is_call(user, ON_CODES_TARGETS) or is_call(user, ACTIVATION_BOUNDS)
                    or user.target is operator.getitem):
                work.append(user)
    return False


@quiet_third_party
def lower_to_reference(gm: GraphModule, *, strict: bool = False) -> GraphModule:
    """Lower a converted PT2E graph to xnnquant reference integer kernels.

    Args:
        gm: the ``GraphModule`` returned by ``convert_pt2e`` (training or core IR).
            It is not modified.
        strict: raise instead of leaving uncovered patterns in float.

    Returns:
        A new ``GraphModule`` in which every covered ``dq → op [→ act] → q``
        pattern is a ``torch.ops.xnnquant.*`` call on int8 tensors. Its
        ``meta["xnnquant_reference_report"]`` holds a
        :class:`ReferenceLoweringReport` listing what was lowered and every
        quantized op left in float, with the reason.

    Raises:
        MissingReferenceError: ``strict`` is set and some pattern was left in float.
    """
    out = copy.deepcopy(gm)
    report = ReferenceLoweringReport()
    rewriter = _Rewriter(out)
    skipped_nodes: set[Node] = set()
    # The op table's checks read shapes, which the kernels written below do not carry.
    records = {n: record_for(n) for n in out.graph.nodes}
    reasons = {n: r.why_not(n) for n, r in records.items() if r is not None and _has_kernel(r)}
    for node in list(out.graph.nodes):
        if node.op != "call_function" or node in rewriter.consumed:
            continue
        record = records[node]
        try:
            if record is not None and _has_kernel(record) and _in_quantized_region(node, record):
                if reasons[node] is not None:
                    raise _NoMatch(reasons[node])
                rewriter.apply(_match(out, node, record))
                report.lowered.append(Lowered(node.name, record.name, record.reference.kernel))
            elif node.target in ON_CODES_TARGETS and (hit := _on_codes_match(node)):
                rewriter.apply_on_codes(node, *hit)
                report.lowered.append(Lowered(node.name, "shared_qparams", str(node.target)))
        except _NoMatch as exc:
            skipped_nodes.add(node)
            report.skipped.append(Skipped(node.name, str(node.target), str(exc)))
    rewriter.erase_dead()
    for node in out.graph.nodes:
        if node not in skipped_nodes and (reason := _uncovered_reason(node)):
            report.skipped.append(Skipped(node.name, str(node.target), reason))
    out.graph.lint()
    out.recompile()
    out.meta[REPORT_KEY] = report
    if strict and report.skipped:
        raise MissingReferenceError(f"patterns left without a reference kernel:\n{report}")
    return out


class LowerToReferencePass(PassBase):
    """``lower_to_reference`` in the fx pass infrastructure.

    ``call`` returns ``PassResult(new_graph_module, modified)``; the input
    module is left untouched, so callers must use the returned module.
    """

    def __init__(self, *, strict: bool = False):
        self.strict = strict

    def call(self, graph_module: GraphModule) -> PassResult:
        lowered = lower_to_reference(graph_module, strict=self.strict)
        return PassResult(lowered, bool(lowered.meta[REPORT_KEY].lowered))


# Importing the lowering proves every record's kernel exists (kernels register on import).
check_registry()
