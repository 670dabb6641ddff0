"""Write ``scaled_dot_product_attention`` out as ``softmax(q·kᵀ·scale [+ mask])·v``.

The training IR keeps ``aten.scaled_dot_product_attention`` whole (it is what
``nn.MultiheadAttention`` and ``F.scaled_dot_product_attention`` export to).
ExecuTorch's edge lowering then decomposes it into its math form, which scales
``q`` and ``k`` with ``mul.Scalar`` (no XNNPACK config takes the scalar form)
and wraps the softmax in ``_safe_softmax``'s ``eq(-inf) → any → where``, none
of which XNNPACK claims: each attention splits the program into several
delegates.  Written out before annotation, the same function is two matmuls
(``RewriteMatmulAsBmm`` makes them ``bmm``), a multiply by a constant and a
softmax, all of which the delegate runs (in fp32: XNNPACK has no int8 softmax
or int8×int8 bmm).

Numerics: ``_safe_softmax`` differs from ``softmax`` only on a row whose every
score is ``-inf`` (it gives 0 where softmax gives NaN).  With no mask, or an
additive float mask, the scores are finite for finite inputs; a boolean mask
(which can mask a whole row) is left alone, and so are dropout, ``is_causal``
and grouped-query attention.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch.fx import GraphModule, Node

from ..graph import RewriteEachNode, is_call, schema_args, shape

aten = torch.ops.aten


class DecomposeAttention(RewriteEachNode):
    """``sdpa(q, k, v[, float mask])`` → ``matmul(softmax(matmul(q, kᵀ) · scale [+ mask], -1), v)``."""

    def replacement(self, gm: GraphModule, node: Node) -> Optional[Node]:
        if not is_call(node, (aten.scaled_dot_product_attention.default,)):
            return None
        args = schema_args(node)
        q, k, v, mask = args["query"], args["key"], args["value"], args.get("attn_mask")
        if args.get("dropout_p", 0.0) != 0.0 or args.get("is_causal", False) or args.get("enable_gqa", False):
            return None
        if mask is not None:
            val = mask.meta.get("val") if isinstance(mask, Node) else None
            if not (isinstance(val, torch.Tensor) and val.is_floating_point()):
                return None
        q_shape = shape(q)
        if q_shape is None or not isinstance(q_shape[-1], int):
            return None
        scale = args.get("scale")
        scale = 1.0 / math.sqrt(q_shape[-1]) if scale is None else float(scale)
        k_t = self.call_before(gm, node, aten.transpose.int, (k, -2, -1))
        scores = self.call_before(gm, node, aten.matmul.default, (q, k_t))
        scores = self.call_before(gm, node, aten.mul.Tensor, (scores, scale))
        if mask is not None:
            scores = self.call_before(gm, node, aten.add.Tensor, (scores, mask))
        weights = self.call_before(gm, node, aten.softmax.int, (scores, -1))
        return self.call_before(gm, node, aten.matmul.default, (weights, v))
