"""Drop the ops an eval-mode export keeps that compute nothing: eval dropout and same-shape expand.

The training IR keeps ``dropout(x, p, train=False)`` wherever a module has a
dropout layer (``nn.TransformerEncoderLayer`` has three, ``nn.MultiheadAttention``
one), and the core IR spells a batched ``matmul`` with an ``expand`` of each
operand to the shape it already has.  Neither has a record in the op table, so
each stood between two int8 ops as a float op with a dequantize before it and
a quantize after it, and neither is claimed by an XNNPACK partitioner config
(``expand_copy`` splits the program into several delegates).  Both return their
input's values unchanged, so this pass, run before annotation, replaces each
with its input.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.fx import GraphModule, Node

from ..graph import RewriteEachNode, is_call, same_shape, shape

aten = torch.ops.aten

_DROPOUTS = (aten.dropout.default, aten.feature_dropout.default, aten.alpha_dropout.default)
_EXPANDS = (aten.expand.default, aten.expand_copy.default)


class RemoveIdentityOps(RewriteEachNode):
    """``dropout(x, p, train=False)`` (or ``p=0``) → ``x``; ``expand(x, x.shape)`` → ``x``."""

    def replacement(self, gm: GraphModule, node: Node) -> Optional[Node]:
        x = node.args[0] if node.args else None
        if not isinstance(x, Node):
            return None
        if is_call(node, _DROPOUTS):
            p, train = (list(node.args[1:3]) + [None, None])[:2]
            p, train = node.kwargs.get("p", p), node.kwargs.get("train", train)
            return x if train is False or p == 0 else None
        if is_call(node, _EXPANDS) and same_shape(shape(node), shape(x)):
            return x
        return None
