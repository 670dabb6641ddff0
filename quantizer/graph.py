"""Graph helpers used everywhere in xnnquant, written once: op names, shapes, schema arguments, transposes.

Every part of the package (the annotator, the op table's checks, the
annotation and lowering passes, the reports, the reference lowering) asks
these questions of ``torch.fx`` nodes; they are answered here only, so the
answers cannot drift apart.  This module imports nothing else of xnnquant.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch._ops import OpOverload
from torch.fx import GraphModule, Node
from torch.fx.passes.infra.pass_base import PassBase, PassResult

aten = torch.ops.aten

#: The ops that spell a 2-D transpose in either IR (``permute(w, [1, 0])`` in the core IR).
TRANSPOSES = frozenset({aten.permute.default, aten.t.default, aten.transpose.int,
                        aten.permute_copy.default, aten.t_copy.default, aten.transpose_copy.int})


def op_name(target) -> str:
    """``aten.addmm.default``-style name of a node target: ATen, edge dialect, or a Python callable.

    Accepts a :class:`~torch.fx.Node` too.  Edge-dialect overloads wrap an ATen
    overload (``._op``), so both dialects give the same name.
    """
    if isinstance(target, Node):
        target = target.target
    inner = target if isinstance(target, OpOverload) else getattr(target, "_op", target)
    if isinstance(inner, OpOverload):
        namespace, name = inner._schema.name.split("::")
        return f"{namespace}.{name}.{inner._overloadname}"
    return getattr(target, "__name__", str(target))


def short_name(target) -> str:
    """``aten.addmm.default`` → ``addmm.default``: the form ExecuTorch's partitioner configs use."""
    return ".".join(op_name(target).split(".")[-2:])


def is_call(node: Any, targets) -> bool:
    """``node`` is a ``call_function`` node whose target is in ``targets``."""
    return isinstance(node, Node) and node.op == "call_function" and node.target in targets


def constant(gm: Optional[GraphModule], node: Any) -> Optional[torch.Tensor]:
    """The tensor behind a ``get_attr`` node (None for anything else, or without ``gm``)."""
    if gm is None or not (isinstance(node, Node) and node.op == "get_attr"):
        return None
    value: Any = gm
    for part in node.target.split("."):
        value = getattr(value, part, None)
    return value if isinstance(value, torch.Tensor) else None


def shape(node: Any, gm: Optional[GraphModule] = None) -> Optional[tuple]:
    """The tensor shape of ``node``'s value, or None when unknown.

    Nodes that ``convert_pt2e`` or a pass inserted may lack ``meta["val"]``: a
    quantize/dequantize is looked through (it keeps its input's shape) and a
    constant is read from ``gm`` when given.
    """
    while isinstance(node, Node):
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            return tuple(val.shape)
        if node.op == "get_attr":
            tensor = constant(gm, node)
            return tuple(tensor.shape) if tensor is not None else None
        if node.op != "call_function" or getattr(node.target, "namespace", None) != "quantized_decomposed":
            return None
        node = node.args[0]
    return None


def is_float_tensor(value: Any) -> bool:
    """``value`` is a node whose value is a floating-point tensor (fp32, fp16 or bf16)."""
    val = value.meta.get("val") if isinstance(value, Node) else None
    return isinstance(val, torch.Tensor) and val.dtype in (torch.float32, torch.float16, torch.bfloat16)


def schema_args(node: Node) -> dict:
    """``{schema argument name: value}`` of a call to an ``OpOverload``, defaults filled in.

    Example: ``addmm(b, x, wt)`` gives ``{"self": b, "mat1": x, "mat2": wt,
    "beta": 1, "alpha": 1}``.  A target without a schema gives ``{}``.
    """
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        return {}
    values = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(node.args) and not arg.kwarg_only:
            values[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            values[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            values[arg.name] = arg.default_value
    return values


def same_shape(a: Optional[tuple], b: Optional[tuple]) -> bool:
    """Two known shapes are equal; symbolic dims compare by name.

    ``==`` on two ``SymInt`` would ask the shape environment and may add a guard.
    """
    return a is not None and b is not None and [str(d) for d in a] == [str(d) for d in b]


def transposed_source(node: Any) -> Optional[Node]:
    """The 2-D tensor that ``node`` transposes, or None if ``node`` is no plain 2-D transpose.

    Accepted spellings: ``t(w)``, ``transpose(w, 0, 1)`` (any sign of the dims)
    and ``permute(w, [1, 0])`` (likewise), in ATen or edge (``_copy``) form.
    The source must be 2-D (when its shape is known), so ``permute`` of a
    higher-rank tensor never passes.
    """
    if not is_call(node, TRANSPOSES):
        return None
    source = node.args[0]
    src_shape = shape(source)
    if src_shape is not None and len(src_shape) != 2:
        return None
    name = node.target._opname
    if name.startswith("permute"):
        if sorted(d % 2 for d in node.args[1]) != [0, 1] or node.args[1][0] % 2 != 1:
            return None
    elif name.startswith("transpose"):
        if sorted(d % 2 for d in node.args[1:3]) != [0, 1]:
            return None
    return source if isinstance(source, Node) else None


def is_constant(node: Any) -> bool:
    """``node`` is a ``get_attr`` constant, or the dequantize of one (a converted weight)."""
    if isinstance(node, Node) and node.op == "call_function" and \
            getattr(node.target, "namespace", None) == "quantized_decomposed":
        node = node.args[0]
    return isinstance(node, Node) and node.op == "get_attr"


def is_transposed_constant(node: Any) -> bool:
    """``node`` is a 2-D transpose of a constant (the core IR's linear weight), before or after convert."""
    return is_constant(transposed_source(node))


def holds_attention(gm: GraphModule) -> bool:
    """``gm`` computes attention: a softmax whose output a batched matmul reads, through data movement."""
    softmaxes = (aten.softmax.int, aten._softmax.default, aten._safe_softmax.default)
    matmuls = (aten.bmm.default, aten.matmul.default)
    passing = (aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.expand.default,
               aten.clone.default, aten.dropout.default, aten.where.self, aten.to.dtype,
               aten._to_copy.default)
    for node in gm.graph.nodes:
        if not is_call(node, softmaxes):
            continue
        pending, seen = [node], set()
        while pending:
            current = pending.pop()
            for user in current.users:
                if is_call(user, matmuls):
                    return True
                if is_call(user, passing) and user not in seen:
                    seen.add(user)
                    pending.append(user)
    return False


def returned_nodes(gm: GraphModule) -> list:
    """What ``gm`` returns, flattened in output order (the values its caller gets as outputs)."""
    from torch.utils import _pytree as pytree

    return pytree.tree_leaves(gm.graph.output_node().args[0])


def erase_chain(gm: GraphModule, node: Node) -> None:
    """Erase ``node`` (which must have no users) and every ``call_function`` input left without users.

    A rewritten pattern (``x * relu6(x + 3) / 6``) leaves its inner nodes dead
    once its root is replaced; erasing them here keeps the graph the annotator
    sees free of float ops that compute nothing.
    """
    pending = [node]
    while pending:
        current = pending.pop()
        if current.users or getattr(current, "_erased", False):
            continue
        inputs = [a for a in current.all_input_nodes if a.op == "call_function"]
        gm.graph.erase_node(current)
        pending.extend(inputs)


def fake_value(target, args: tuple, kwargs: dict) -> Optional[torch.Tensor]:
    """``target`` run on the ``meta["val"]`` of its node arguments (fake tensors), or None.

    None when an argument has no value (a constant from ``get_attr``) or the
    call fails on fake tensors.
    """
    from torch.utils import _pytree as pytree

    missing = []

    def value(arg):
        if isinstance(arg, Node):
            val = arg.meta.get("val")
            if val is None:
                missing.append(arg)
            return val
        return arg

    args, kwargs = pytree.tree_map(value, (args, kwargs))
    if missing:
        return None
    try:
        out = target(*args, **kwargs)
    except Exception:  # a decomposition's inner op may not run on fake values: keep the copy
        return None
    return out if isinstance(out, torch.Tensor) else None


class RewriteEachNode(PassBase):
    """Base of the passes that replace single nodes: a subclass says what replaces a node.

    :meth:`replacement` inserts the new nodes before ``node`` (with
    :meth:`call_before`) and returns the one that takes over ``node``'s uses,
    or None to leave ``node`` alone.  The replaced node is then erased with
    every input left without users (:func:`erase_chain`), and the graph is
    linted and recompiled once, if anything changed.
    """

    def replacement(self, gm: GraphModule, node: Node) -> Optional[Node]:
        raise NotImplementedError

    @staticmethod
    def call_before(gm: GraphModule, node: Node, target, args: tuple, kwargs: Optional[dict] = None) -> Node:
        """A ``call_function`` inserted before ``node``, carrying a copy of its meta."""
        with gm.graph.inserting_before(node):
            new = gm.graph.call_function(target, args, kwargs or {})
        # The module stack keeps scoping by module; the value is the new op's own where it
        # can be computed (an inner node of a decomposition has another shape).
        new.meta = dict(node.meta)
        val = fake_value(target, args, kwargs or {})
        if val is not None:
            new.meta["val"] = val
        return new

    def call(self, gm: GraphModule) -> PassResult:
        modified = False
        for node in list(gm.graph.nodes):
            # Nodes erased as part of an earlier replacement's chain are skipped.
            if node.op != "call_function" or getattr(node, "_erased", False):
                continue
            new = self.replacement(gm, node)
            if new is None:
                continue
            node.replace_all_uses_with(new)
            erase_chain(gm, node)
            modified = True
        if modified:
            gm.graph.lint()
            gm.recompile()
        return PassResult(gm, modified)
