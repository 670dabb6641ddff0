"""Spell the core IR's decomposed linear ``addmm``/``mm`` as ``aten.linear`` again.

``run_decompositions()`` turns ``linear(x, w, b)`` into
``addmm(b, x, permute(w, [1, 0]))`` (``mm`` without a bias) and, for an input of
rank > 2, wraps it in ``view`` ops.  ExecuTorch's ``AddmmConfig`` does not look
at the ``addmm`` alone: it rebuilds the ``nn.Linear`` it came from out of the
node metadata (``torch.fx`` source partitions, falling back to
``nn_module_stack``) and insists that this group has a single output node.  A
quantized 3-D linear breaks that rule, because the quantizer puts a q/dq pair
between each ``view`` and the ``addmm``, so the group has three outputs
(``view``, ``addmm``, ``view``) and the partitioner answers "invalid source
partition": the ``addmm`` and its weight dequantize stay outside the delegate.

``aten.linear`` is claimed by ``LinearConfig``, which matches the node by its
arguments only (and ``to_edge_transform_and_lower`` keeps ``aten.linear``
undecomposed for XNNPACK), so writing the op back as ``linear`` makes the rank
of the input irrelevant.  Worked example (weight quantized per channel before
the transpose, as the XNNPACK quantizer does on the core IR)::

    w_dq = dequantize_per_channel(w_i8, s, z, axis=0)      # [N, K]
    wt   = permute(w_dq, [1, 0])                           # [K, N]
    y    = addmm(b, x_dq, wt)                              # b + x_dq @ wt

becomes::

    w_dq = dequantize_per_channel(w_i8, s, z, axis=0)
    y    = linear(x_dq, w_dq, b)                           # x_dq @ w_dqᵀ + b

which computes the same values.  Only the plain form is rewritten: ``beta`` and
``alpha`` equal to 1, a 2-D activation and weight, a 1-D bias of the output
width, and a transpose spelled ``permute(·, [1, 0])``, ``t`` or
``transpose(·, 0, 1)``.
"""

from __future__ import annotations

import torch
from torch.fx import GraphModule
from torch.fx.passes.infra.pass_base import PassBase, PassResult

from xnnquant.quantizer.graph import shape, transposed_source

aten = torch.ops.aten


class RecomposeLinear(PassBase):
    """``addmm(b, x, wᵀ)`` → ``linear(x, w, b)`` and ``mm(x, wᵀ)`` → ``linear(x, w)``."""

    def call(self, gm: GraphModule) -> PassResult:
        modified = False
        for node in list(gm.graph.nodes):
            if node.op != "call_function":
                continue
            if node.target == aten.addmm.default:
                bias, act, weight_t = node.args[:3]
                if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
                    continue  # scaled forms are not a linear
            elif node.target == aten.mm.default:
                act, weight_t = node.args[:2]
                bias = None
            else:
                continue
            weight = transposed_source(weight_t)
            weight_shape = shape(weight, gm)
            act_shape = shape(act, gm)
            if weight_shape is None or len(weight_shape) != 2:
                continue
            if act_shape is None or len(act_shape) != 2:
                continue
            out_features = weight_shape[0]
            if bias is not None and shape(bias, gm) != (out_features,):
                continue  # a broadcast 2-D "bias" is not a linear bias
            args = (act, weight) if bias is None else (act, weight, bias)
            with gm.graph.inserting_before(node):
                linear = gm.graph.call_function(aten.linear.default, args)
            linear.meta.update(node.meta)
            node.replace_all_uses_with(linear)
            gm.graph.erase_node(node)
            if not weight_t.users:
                gm.graph.erase_node(weight_t)
            modified = True
        if modified:
            gm.graph.lint()
            gm.recompile()
        return PassResult(gm, modified)
