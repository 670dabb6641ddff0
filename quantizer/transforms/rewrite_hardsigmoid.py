"""Spell hardsigmoid in ops XNNPACK runs in int8: ``relu6(x + 3) / 6`` → ``mul(hardtanh(add(x, 3), 0, 6), 1/6)``.

XNNPACK has no hardsigmoid operator and ExecuTorch no config for it: the edge
lowering decomposes ``aten.hardsigmoid`` into ``add → clamp → clamp → div``,
and ``div`` has no int8 kernel, so a squeeze-excite gate ``hardsigmoid(s) · x``
would leave int8 around the gate.  This pass, run before annotation, writes
the function as three ops the op table quantizes:

* ``add(x, 3)``: int8 add against a lifted constant (own qparams);
* ``hardtanh(·, 0, 6)``: a clamp on the codes (shared qparams, exact);
* ``mul(·, 1/6)``: int8 multiply by a lifted constant (own qparams).

It matches the training IR's ``aten.hardsigmoid.default`` and the core IR's
decomposition ``div(clamp(clamp(add(x, 3), 0), None, 6), 6)`` (and the
hand-written ``relu6(x + 3) / 6``).  ``x · relu6(x + 3) / 6`` is hardswish and
is left to :class:`~.recompose_hardswish.RecomposeHardswish`, which runs first.

Cost: two requantizations instead of none in fp32; the ``add`` output carries
the range of ``x + 3``, so the gate is about 2 output steps (of ``1/255``)
from the float gate rather than 0.5.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.fx import GraphModule, Node

from ..graph import RewriteEachNode, is_call
from .recompose_hardswish import relu6_of_shifted

aten = torch.ops.aten

_DIV = (aten.div.Tensor, aten.div.Scalar)


def _hardsigmoid_input(node: Node) -> Optional[Node]:
    if is_call(node, (aten.hardsigmoid.default, aten.hardsigmoid_.default)):
        return node.args[0] if isinstance(node.args[0], Node) else None
    if is_call(node, _DIV) and node.args[1] == 6 and isinstance(node.args[1], (int, float)):
        inner = node.args[0]
        if isinstance(inner, Node) and len(inner.users) == 1:
            return relu6_of_shifted(inner)
    return None


class RewriteHardsigmoid(RewriteEachNode):
    """``hardsigmoid(x)`` and ``relu6(x + 3) / 6`` → ``mul(hardtanh(add(x, 3.0), 0.0, 6.0), 1/6)``."""

    def replacement(self, gm: GraphModule, node: Node) -> Optional[Node]:
        x = _hardsigmoid_input(node)
        if x is None:
            return None
        shifted = self.call_before(gm, node, aten.add.Tensor, (x, 3.0))
        clamped = self.call_before(gm, node, aten.hardtanh.default, (shifted, 0.0, 6.0))
        return self.call_before(gm, node, aten.mul.Tensor, (clamped, 1.0 / 6.0))
