"""Write ``layer_norm`` over the last dim as ops the XNNPACK delegate runs in fp32.

XNNPACK has no layer norm and no ExecuTorch partitioner config claims
``native_layer_norm``, so every layer norm of a transformer stayed outside the
delegate and split the program (a 2-layer ViT: 5 of them, 6 delegates).  On the
converted graph, just before lowering, this pass writes ``layer_norm(x, [D],
w, b, eps)`` as::

    a    = full([1, D], 1/D)                # a constant
    mean = linear(x, a)                     # x · a^T = Σ x / D, shape [..., 1]
    d    = x - mean
    var  = linear(d * d, a)                 # the biased variance, as layer_norm's
    y    = d * rsqrt(var + eps) * w + b

The means are GEMMs with a constant weight (XNNPACK's ``mean`` reduces 4-D
spatial dims only), which ExecuTorch's ``LinearConfig`` claims in fp32 because
the weight is not dequantized; ``sub``, ``mul``, ``add`` and ``rsqrt`` are
claimed in fp32 too.  The layer norm stays float, as the op table says: only
where it runs changes.  The result equals ``layer_norm`` to fp32 rounding (a
few ulp), so a requantized output can move by one step at a rounding boundary.

Only a norm over one static last dim is rewritten, and in the core IR's
``native_layer_norm`` only when nothing reads its mean and rstd outputs.
"""

from __future__ import annotations

import operator
from typing import Optional

import torch
from torch.fx import GraphModule, Node

from xnnquant.quantizer.graph import RewriteEachNode, is_call, schema_args, shape

aten = torch.ops.aten


def _constant(gm: GraphModule, node: Node, stem: str, value: torch.Tensor) -> Node:
    """A ``get_attr`` of ``value``, registered on ``gm`` under a fresh name, before ``node``."""
    index = 0
    while hasattr(gm, f"{stem}_{index}"):
        index += 1
    name = f"{stem}_{index}"
    gm.register_buffer(name, value)
    with gm.graph.inserting_before(node):
        attr = gm.graph.get_attr(name)
    attr.meta["val"] = value
    return attr


class DecomposeLayerNorm(RewriteEachNode):
    """``layer_norm(x, [D], w, b, eps)`` → ``(x - x·aᵀ) · rsqrt((x - x·aᵀ)²·aᵀ + eps) · w + b``."""

    def replacement(self, gm: GraphModule, node: Node) -> Optional[Node]:
        # The core IR's op returns (out, mean, rstd): its getitem 0 is what gets replaced.
        norm = node
        if node.target is operator.getitem and node.args[1] == 0:
            norm = node.args[0]
            if not is_call(norm, (aten.native_layer_norm.default,)) or len(norm.users) != 1:
                return None
        elif not is_call(node, (aten.layer_norm.default,)):
            return None
        args = schema_args(norm)
        x, dims = args["input"], list(args["normalized_shape"])
        weight, bias, eps = args.get("weight"), args.get("bias"), args.get("eps", 1e-5)
        x_shape = shape(x)
        if x_shape is None or len(dims) != 1 or not isinstance(dims[0], int) or x_shape[-1] != dims[0]:
            return None
        width = dims[0]
        averaging = _constant(gm, node, "_xnnquant_mean_weight", torch.full((1, width), 1.0 / width))
        epsilon = _constant(gm, node, "_xnnquant_layer_norm_eps", torch.tensor([float(eps)]))
        mean = self.call_before(gm, node, aten.linear.default, (x, averaging))
        centred = self.call_before(gm, node, aten.sub.Tensor, (x, mean))
        squared = self.call_before(gm, node, aten.mul.Tensor, (centred, centred))
        variance = self.call_before(gm, node, aten.linear.default, (squared, averaging))
        shifted = self.call_before(gm, node, aten.add.Tensor, (variance, epsilon))
        scale = self.call_before(gm, node, aten.rsqrt.default, (shifted,))
        out = self.call_before(gm, node, aten.mul.Tensor, (centred, scale))
        if weight is not None:
            out = self.call_before(gm, node, aten.mul.Tensor, (out, weight))
        if bias is not None:
            out = self.call_before(gm, node, aten.add.Tensor, (out, bias))
        return out
