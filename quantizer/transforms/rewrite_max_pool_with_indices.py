"""Spell core-IR ``max_pool2d_with_indices → getitem(0)`` as ``max_pool2d``.

``run_decompositions()`` turns ``max_pool2d`` into ``max_pool2d_with_indices``
plus ``getitem(·, 0)``.  ExecuTorch's XNNPACK partitioner only claims
``max_pool2d``, so the decomposed form stays outside the delegate even when it
is quantized.  When the indices are unused the two forms compute the same
values; the rewrite is skipped when anything reads the indices.
"""

from __future__ import annotations

import operator

import torch
from torch.fx import GraphModule
from torch.fx.passes.infra.pass_base import PassBase, PassResult

aten = torch.ops.aten


class RewriteMaxPoolWithIndices(PassBase):
    """``getitem(max_pool2d_with_indices(x, ...), 0)`` → ``max_pool2d(x, ...)`` when indices are unused."""

    def call(self, gm: GraphModule) -> PassResult:
        modified = False
        for node in list(gm.graph.nodes):
            if node.op != "call_function" or node.target != aten.max_pool2d_with_indices.default:
                continue
            users = list(node.users)
            if not all(u.target is operator.getitem and u.args[1] == 0 for u in users):
                continue  # the indices are read: only the decomposed form computes them
            with gm.graph.inserting_before(node):
                pool = gm.graph.call_function(aten.max_pool2d.default, node.args, node.kwargs)
            pool.meta.update(node.meta)
            pool.meta["val"] = users[0].meta.get("val") if users else None
            for user in users:
                user.replace_all_uses_with(pool)
                gm.graph.erase_node(user)
            gm.graph.erase_node(node)
            modified = True
        if modified:
            gm.graph.lint()
            gm.recompile()
        return PassResult(gm, modified)
