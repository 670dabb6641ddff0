"""Spell the core IR's broadcast-``bmm`` linear as ``aten.linear`` again.

``run_decompositions()`` writes ``linear(x, w, b)`` on a rank-3 input as
``view → addmm → view`` when it can prove that ``x`` flattens to 2-D.  When it
cannot (``x`` is a permuted view with a symbolic dim, as attention's input
``src.transpose(1, 0)`` is under a dynamic sequence length), it falls back on
``matmul``'s batched form and broadcasts the weight over the batch::

    xe = view(expand(x, [B, M, K]), [B, M, K])          # both no-ops on x
    we = view(expand(permute(w, [1, 0]), [B, K, N]), [B, K, N])
    y  = add(view(bmm(xe, we), [B, M, N]), b)

No XNNPACK partitioner config takes ``expand``, and the weight of a ``bmm``
is not a constant, so the weight's dequantize was left outside the delegate
(which cannot be serialized: ``Missing out variants``).  This pass, run before
annotation, writes it back as ``linear(x, w, b)``, which computes the same
values (``x @ wᵀ + b`` on the last dim) and which the op table quantizes on
both IRs.

Matched: the activation's ``expand``/``view`` keep its shape; the weight is a
2-D constant's plain transpose, expanded over a new leading dim; the bias (if
any) is a 1-D constant of the output width, added to the ``bmm``'s
shape-preserving ``view``.  Anything else is left alone.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.fx import GraphModule, Node

from ..graph import RewriteEachNode, is_call, is_constant, same_shape, shape, transposed_source

aten = torch.ops.aten

_NO_OPS = (aten.view.default, aten.reshape.default, aten.expand.default, aten._unsafe_view.default)


def _through_view(node) -> object:
    """The input of a shape-preserving ``view``, else ``node`` itself."""
    if is_call(node, (aten.view.default, aten.reshape.default)) and same_shape(shape(node), shape(node.args[0])):
        return node.args[0]
    return node


def _broadcast_weight(node: Node) -> Optional[Node]:
    """The 2-D constant ``w`` when ``node`` is ``[view](expand(wᵀ, [B, K, N]))``, else None."""
    node = _through_view(node)
    if not is_call(node, (aten.expand.default,)):
        return None
    weight = transposed_source(node.args[0])
    out, src = shape(node), shape(node.args[0])
    if not is_constant(weight) or out is None or src is None or len(out) != 3:
        return None
    return weight if same_shape(out[1:], src) else None


def _linear_parts(bmm: Node) -> Optional[tuple]:
    """(x, w) when ``bmm`` is a rank-3 linear written as a broadcast batched matmul."""
    if not is_call(bmm, (aten.bmm.default,)):
        return None
    act, weight_b = bmm.args[:2]
    weight = _broadcast_weight(weight_b)
    if weight is None:
        return None
    x = act
    while is_call(x, _NO_OPS) and same_shape(shape(x.args[0]), shape(act)):
        x = x.args[0]
    x_shape = shape(x)
    if x_shape is None or len(x_shape) != 3:
        return None
    return x, weight


def _bias_add(bmm: Node, gm: GraphModule) -> Optional[tuple]:
    """(the add, its bias) when ``bmm``'s only use, through a same-shape view, adds a 1-D bias."""
    node = bmm
    if len(node.users) == 1 and _through_view(next(iter(node.users))) is bmm:
        (node,) = node.users
    if len(node.users) != 1:
        return None
    (add,) = node.users
    if not is_call(add, (aten.add.Tensor,)) or add.args[0] is not node or len(add.args) != 2:
        return None
    if add.kwargs.get("alpha", 1) != 1:
        return None
    bias = add.args[1]
    width = shape(bmm)[-1] if shape(bmm) is not None else None
    if not is_constant(bias) or not same_shape(shape(bias, gm), (width,)):
        return None
    return add, bias


class RecomposeBroadcastLinear(RewriteEachNode):
    """``add(view(bmm(x, expand(wᵀ))), b)`` → ``linear(x, w, b)`` (and without the bias)."""

    def replacement(self, gm: GraphModule, node: Node) -> Optional[Node]:
        if is_call(node, (aten.add.Tensor,)):
            # With a bias, the add is what gets replaced: visited after its bmm.
            bmm = _through_view(node.args[0])
            parts = _linear_parts(bmm) if isinstance(bmm, Node) else None
            found = _bias_add(bmm, gm) if parts is not None else None
            if found is None or found[0] is not node:
                return None
            return self.call_before(gm, node, aten.linear.default, (*parts, found[1]))
        parts = _linear_parts(node)
        if parts is None or _bias_add(node, gm) is not None:
            return None
        return self.call_before(gm, node, aten.linear.default, parts)
