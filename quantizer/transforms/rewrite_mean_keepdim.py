"""Spell a spatial ``mean(dims=(2, 3), keepdim=False)`` as ``mean(keepdim=True)`` + ``view``.

XNNPACK runs int8 mean only as global average pooling with ``keepdim=True``.
``x.mean((2, 3))`` -- common before a classifier -- then becomes a quantized
``mean`` followed by a ``view`` that shares its qparams: both run in the delegate.
"""

from __future__ import annotations

import torch
from torch.fx import GraphModule
from torch.fx.passes.infra.pass_base import PassBase, PassResult

from ..graph import schema_args
from ..patterns import spatial_mean_reason

aten = torch.ops.aten


class RewriteMeanKeepdim(PassBase):
    """``mean.dim(x, [2, 3], False)`` on a 4-D tensor → ``view(mean.dim(x, [2, 3], True), shape)``."""

    def call(self, gm: GraphModule) -> PassResult:
        modified = False
        for node in list(gm.graph.nodes):
            if node.op != "call_function" or node.target != aten.mean.dim or node.kwargs.get("dtype"):
                continue
            if schema_args(node)["keepdim"] or spatial_mean_reason(node) is not None:
                continue
            x = node.args[0]
            val = x.meta["val"]
            out_val = node.meta.get("val")
            with gm.graph.inserting_after(node):
                view = gm.graph.call_function(aten.view.default, (node, list(out_val.shape)))
            node.replace_all_uses_with(view, delete_user_cb=lambda u: u is not view)
            node.args = (x, list(node.args[1]), True)
            node.meta["val"] = val.mean(dim=list(node.args[1]), keepdim=True)
            view.meta.update({k: v for k, v in node.meta.items() if k != "val"})
            view.meta["val"] = out_val
            modified = True
        if modified:
            gm.recompile()
        return PassResult(gm, modified)
