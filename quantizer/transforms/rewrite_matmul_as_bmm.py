"""Spell a batched ``matmul`` of two activations as ``reshape → bmm → reshape``.

The training IR keeps ``aten.matmul``; ExecuTorch's edge lowering decomposes a
rank-4 one (attention's ``q·kᵀ`` and ``p·v``, shape ``[B, H, L, D]``) into
``expand → view → bmm → view``, and no XNNPACK partitioner config takes the
``expand`` (to the shape its input already has), so each such matmul split the
program.  Written as ``bmm`` on the flattened batch before annotation, it is
what the core IR spells after ``RemoveIdentityOps``: ops the delegate runs
(``bmm`` in fp32, since XNNPACK rejects int8×int8 bmm).

Only a matmul whose operands have the same static leading dims, rank ≥ 3, is
rewritten: a broadcast matmul or a symbolic size is left as it is.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch.fx import GraphModule, Node

from ..graph import RewriteEachNode, is_call, shape

aten = torch.ops.aten


class RewriteMatmulAsBmm(RewriteEachNode):
    """``matmul(a[..., L, D], b[..., D, M])`` → ``reshape(bmm(reshape(a), reshape(b)), [..., L, M])``."""

    def replacement(self, gm: GraphModule, node: Node) -> Optional[Node]:
        if not is_call(node, (aten.matmul.default,)):
            return None
        a, b = node.args[:2]
        a_shape, b_shape = shape(a), shape(b)
        if a_shape is None or b_shape is None or len(a_shape) < 3 or len(a_shape) != len(b_shape):
            return None
        if not all(isinstance(d, int) for d in (*a_shape, *b_shape)) or a_shape[:-2] != b_shape[:-2]:
            return None
        if len(a_shape) == 3:
            return self.call_before(gm, node, aten.bmm.default, (a, b))
        batch = math.prod(a_shape[:-2])
        a3 = self.call_before(gm, node, aten.reshape.default, (a, [batch, *a_shape[-2:]]))
        b3 = self.call_before(gm, node, aten.reshape.default, (b, [batch, *b_shape[-2:]]))
        product = self.call_before(gm, node, aten.bmm.default, (a3, b3))
        return self.call_before(gm, node, aten.reshape.default,
                                (product, [*a_shape[:-2], a_shape[-2], b_shape[-1]]))
