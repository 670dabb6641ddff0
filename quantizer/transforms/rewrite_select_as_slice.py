"""Spell ``select(x, dim, i)`` as ``squeeze(slice(x, dim, i, i + 1), [dim])``.

No XNNPACK partitioner config claims ``select_copy``, so each ``x[i]`` (the
``q, k, v = qkv[0], qkv[1], qkv[2]`` of attention, ViT's class token
``x[:, 0]``) ran outside the delegate, in float, and split the program.  Its
value is a size-1 ``slice`` with that dim dropped: ``slice_copy`` is claimed
(in int8 with shared qparams), and the lowering respells the ``squeeze`` as
the ``view`` it is (``xnnquant.passes.RewriteSqueezeAsView``).  This pass runs
before annotation, so both new ops share the input's qparams.

A negative index is made positive from the dim's size; when that size is
symbolic the node is left alone.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.fx import GraphModule, Node

from ..graph import RewriteEachNode, is_call, shape

aten = torch.ops.aten


class RewriteSelectAsSlice(RewriteEachNode):
    """``select(x, dim, i)`` → ``squeeze.dims(slice(x, dim, i, i + 1), [dim])``."""

    def replacement(self, gm: GraphModule, node: Node) -> Optional[Node]:
        if not is_call(node, (aten.select.int,)):
            return None
        x, dim, index = node.args[:3]
        x_shape = shape(x)
        if x_shape is None or not isinstance(dim, int) or not isinstance(index, int):
            return None
        dim %= len(x_shape)
        if index < 0:
            size = x_shape[dim]
            if not isinstance(size, int):
                return None
            index += size
        sliced = self.call_before(gm, node, aten.slice.Tensor, (x, dim, index, index + 1))
        # Only the shape differs from the select's: the size-1 dim is still there.
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            sliced.meta["val"] = val.unsqueeze(dim)
        return self.call_before(gm, node, aten.squeeze.dims, (sliced, [dim]))
