"""Spell ``clamp`` as the activation XNNPACK fuses: ``relu`` or ``hardtanh``.

XNNPACK fuses ``relu`` and ``hardtanh`` into a conv/linear as an output clamp,
but not ``clamp``.  ``clamp(x, 0)`` is ``relu(x)`` and ``clamp(x, a, b)`` is
``hardtanh(x, a, b)``: same values, a spelling the quantizer can fuse.
"""

from __future__ import annotations

import torch
from torch.fx import GraphModule
from torch.fx.passes.infra.pass_base import PassBase, PassResult

aten = torch.ops.aten


class RewriteClamp(PassBase):
    """``clamp(x, 0, None)`` → ``relu(x)``; ``clamp(x, a, b)`` (both finite) → ``hardtanh(x, a, b)``."""

    def call(self, gm: GraphModule) -> PassResult:
        modified = False
        for node in gm.graph.nodes:
            if node.op != "call_function" or node.target != aten.clamp.default or node.kwargs:
                continue
            lo = node.args[1] if len(node.args) > 1 else None
            hi = node.args[2] if len(node.args) > 2 else None
            if not all(v is None or isinstance(v, (int, float)) for v in (lo, hi)):
                continue
            if lo == 0 and hi is None:
                node.target, node.args = aten.relu.default, (node.args[0],)
            elif lo is not None and hi is not None:
                node.target, node.args = aten.hardtanh.default, (node.args[0], float(lo), float(hi))
            else:
                continue
            modified = True
        if modified:
            gm.recompile()
        return PassResult(gm, modified)
