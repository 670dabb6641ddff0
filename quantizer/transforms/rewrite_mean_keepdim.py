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


def _view_shape(gm: GraphModule, mean, x, out_val) -> list:
    """The ``view``'s size argument: ``out_val``'s shape, with a dynamic (symbolic) size kept dynamic.

    A ``SymInt`` written into the graph as a constant names a symbol the graph
    does not define (``NameError: name 's77' is not defined`` when a model
    exported with a dynamic batch is calibrated), so a single dynamic size
    becomes -1, and several become ``sym_size`` nodes of ``x`` (the mean keeps
    ``x``'s leading dims, so dim i of the output is dim i of ``x``).
    """
    shape = list(out_val.shape)
    dynamic = [i for i, size in enumerate(shape) if isinstance(size, torch.SymInt)]
    if len(dynamic) == 1:
        shape[dynamic[0]] = -1
    elif dynamic:
        for i in dynamic:
            with gm.graph.inserting_before(mean):
                size = gm.graph.call_function(aten.sym_size.int, (x, i))
            size.meta["val"] = shape[i]
            shape[i] = size
    return shape


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
                view = gm.graph.call_function(aten.view.default, (node, _view_shape(gm, node, x, out_val)))
            node.replace_all_uses_with(view, delete_user_cb=lambda u: u is not view)
            node.args = (x, list(node.args[1]), True)
            node.meta["val"] = val.mean(dim=list(node.args[1]), keepdim=True)
            view.meta.update({k: v for k, v in node.meta.items() if k != "val"})
            view.meta["val"] = out_val
            modified = True
        if modified:
            gm.recompile()
        return PassResult(gm, modified)
