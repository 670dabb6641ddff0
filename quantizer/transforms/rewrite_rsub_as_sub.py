"""Spell the training IR's ``rsub`` as the ``sub`` the core IR has: ``c - x`` is ``sub(c, x)``.

``0.5 - x`` exports to ``aten.rsub.Scalar(x, 0.5)`` in the training IR and to
``aten.sub.Tensor(0.5, x)`` after ``run_decompositions()``.  Only ``sub`` has a
record in the op table, so the training IR left the subtraction float where the
core IR quantized it (found by the fuzzer: the two IRs must quantize the same
ops).  This pass, run before ``LiftScalarOperands`` (which lifts the number to a
constant on either side), writes ``rsub(x, other)`` as ``sub(other, x)``;
``alpha`` other than 1 is left alone.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.fx import GraphModule, Node

from ..graph import RewriteEachNode, is_call

aten = torch.ops.aten


class RewriteRsubAsSub(RewriteEachNode):
    """``rsub(x, other)`` → ``sub(other, x)``."""

    def replacement(self, gm: GraphModule, node: Node) -> Optional[Node]:
        if not is_call(node, (aten.rsub.Scalar, aten.rsub.Tensor)) or len(node.args) < 2:
            return None
        alpha = node.args[2] if len(node.args) > 2 else node.kwargs.get("alpha", 1)
        if alpha != 1:
            return None
        x, other = node.args[:2]
        return self.call_before(gm, node, aten.sub.Tensor, (other, x))
