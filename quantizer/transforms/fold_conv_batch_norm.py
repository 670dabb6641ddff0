"""Fold eval-mode batch norm into the preceding convolution, in the core ATen IR.

torchao's ``prepare_pt2e`` folds ``conv2d → batch_norm`` in the training IR, but
not the core IR's ``convolution → _native_batch_norm_legit_no_training →
getitem(0)``.  Unfolded, the batch norm would sit between two quantized ops in
float.  Folding (per output channel c, with γ, β, μ, σ² and ε of the norm)::

    w'[c] = w[c] · γ[c] / sqrt(σ²[c] + ε)
    b'[c] = (b[c] − μ[c]) · γ[c] / sqrt(σ²[c] + ε) + β[c]

The folded tensors are new attributes of the graph module; the original
parameters (which may belong to the caller's model) are never written to.
"""

from __future__ import annotations

import operator

import torch
from torch.fx import GraphModule, Node
from torch.fx.passes.infra.pass_base import PassBase, PassResult

from ..graph import constant

aten = torch.ops.aten


def _constant(gm: GraphModule, node) -> torch.Tensor | None:
    """The constant behind ``node`` (None for an absent optional argument)."""
    if node is None:
        return None
    value = constant(gm, node)
    if value is None:
        raise TypeError("not a constant")
    return value.detach()


def _new_attr(gm: GraphModule, base: str, value: torch.Tensor) -> str:
    name, i = f"{base}_bn_folded", 0
    while hasattr(gm, name):
        i += 1
        name = f"{base}_bn_folded_{i}"
    gm.register_buffer(name, value)
    return name


class FoldConvBatchNorm(PassBase):
    """Fold ``_native_batch_norm_legit_no_training`` into a non-transposed ``aten.convolution``."""

    def call(self, gm: GraphModule) -> PassResult:
        modified = False
        for bn in list(gm.graph.nodes):
            if bn.target != aten._native_batch_norm_legit_no_training.default:
                continue
            conv = bn.args[0]
            if not (isinstance(conv, Node) and conv.target == aten.convolution.default):
                continue
            if conv.args[6] or len(conv.users) != 1:
                continue  # transposed conv, or the conv output is used elsewhere too
            users = list(bn.users)
            if not all(u.target is operator.getitem for u in users) or any(
                u.args[1] != 0 for u in users
            ):
                continue
            try:
                w = _constant(gm, conv.args[1])
                b = _constant(gm, conv.args[2])
                gamma, beta, mean, var = (_constant(gm, a) for a in bn.args[1:5])
            except TypeError:
                continue  # a non-constant operand: nothing to fold
            eps = bn.args[6]
            out_ch = w.shape[0]
            gamma = torch.ones(out_ch) if gamma is None else gamma
            beta = torch.zeros(out_ch) if beta is None else beta
            b = torch.zeros(out_ch) if b is None else b
            factor = gamma / torch.sqrt(var + eps)
            w_new = w * factor.reshape(-1, *([1] * (w.dim() - 1)))
            b_new = (b - mean) * factor + beta
            w_name = _new_attr(gm, conv.args[1].target.replace(".", "_"), w_new)
            b_name = _new_attr(gm, conv.args[1].target.replace(".", "_") + "_bias", b_new)
            with gm.graph.inserting_before(conv):
                w_node = gm.graph.get_attr(w_name)
                b_node = gm.graph.get_attr(b_name)
            w_node.meta["val"] = conv.args[1].meta.get("val")
            b_node.meta["val"] = bn.args[2].meta.get("val") if isinstance(bn.args[2], Node) else None
            args = list(conv.args)
            args[1], args[2] = w_node, b_node
            conv.args = tuple(args)
            for user in users:
                user.replace_all_uses_with(conv)
                gm.graph.erase_node(user)
            gm.graph.erase_node(bn)
            modified = True
        if modified:
            gm.graph.eliminate_dead_code()
            gm.graph.lint()
            gm.recompile()
        return PassResult(gm, modified)
