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

from ..patterns import FUSING_TAILS, FUSING_TARGETS, record_for

aten = torch.ops.aten


def _fuses_activation(producer) -> bool:
    """``producer`` is an op the quantizer fuses a hardtanh into (or the view that ends one).

    The record must take the node itself, not just its target: an ``mm`` of two
    activations is no linear, and a ``view`` counts only right after a conv/linear.
    """
    if getattr(producer, "target", None) in FUSING_TAILS and len(producer.users) == 1:
        producer = producer.args[0]
    if getattr(producer, "target", None) not in FUSING_TARGETS or len(producer.users) != 1:
        return False
    record = record_for(producer)
    return record is not None and record.why_not(producer) is None


class RewriteClamp(PassBase):
    """After a conv/linear: ``clamp(x, 0, None)`` → ``relu``; ``clamp(x, a, b)``, ``relu6`` → ``hardtanh``."""

    def call(self, gm: GraphModule) -> PassResult:
        modified = False
        for node in gm.graph.nodes:
            if node.op != "call_function" or node.kwargs:
                continue
            producer = node.args[0] if node.args else None
            if not _fuses_activation(producer) or len(producer.users) != 1:
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
