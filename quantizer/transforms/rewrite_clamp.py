"""Spell a clamp after a conv/linear as the activation XNNPACK fuses: ``relu`` or ``hardtanh``.

XNNPACK fuses ``relu`` and ``hardtanh`` into a conv/linear as an output clamp,
but not ``clamp`` or ``relu6``.  ``clamp(x, 0)`` is ``relu(x)``, and
``clamp(x, a, b)`` and ``relu6(x)`` are ``hardtanh(x, a, b)``: same values, a
spelling the quantizer can fuse.  Clamps elsewhere keep their spelling, which
XNNPACK runs in int8 as it is.
"""

from __future__ import annotations

import torch
from torch.fx import GraphModule
from torch.fx.passes.infra.pass_base import PassBase, PassResult

from ..patterns import FUSING_TAILS, FUSING_TARGETS

aten = torch.ops.aten

# The ops of the table that fuse hardtanh, and the view that may end a 3-D linear.
_FUSES_INTO = FUSING_TARGETS | FUSING_TAILS


class RewriteClamp(PassBase):
    """After a conv/linear: ``clamp(x, 0, None)`` → ``relu``; ``clamp(x, a, b)``, ``relu6`` → ``hardtanh``."""

    def call(self, gm: GraphModule) -> PassResult:
        modified = False
        for node in gm.graph.nodes:
            if node.op != "call_function" or node.kwargs:
                continue
            producer = node.args[0] if node.args else None
            if getattr(producer, "target", None) not in _FUSES_INTO or len(producer.users) != 1:
                continue
            if node.target in (aten.relu6.default, aten.relu6_.default):
                node.target, node.args = aten.hardtanh.default, (producer, 0.0, 6.0)
                modified = True
                continue
            if node.target != aten.clamp.default:
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
