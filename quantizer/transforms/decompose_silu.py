"""Write SiLU as what XNNPACK runs: ``silu(x)`` → ``mul(x, sigmoid(x))``.

XNNPACK has no SiLU (swish) operator and ExecuTorch no config for it: the edge
lowering decomposes ``aten.silu`` into ``sigmoid`` and ``mul``.  The core ATen
IR already holds that pair, and the op table quantizes both (sigmoid from a
lookup table, mul in int8).  In the training IR ``aten.silu.default`` has no
record, so it would stay float and run in fp32 inside the delegate.  This
pass, run before annotation, spells it the core IR's way in both IRs.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.fx import GraphModule, Node

from ..graph import RewriteEachNode, is_call

aten = torch.ops.aten


class DecomposeSilu(RewriteEachNode):
    """``silu(x)`` → ``mul(x, sigmoid(x))``."""

    def replacement(self, gm: GraphModule, node: Node) -> Optional[Node]:
        if not is_call(node, (aten.silu.default, aten.silu_.default)) or not isinstance(node.args[0], Node):
            return None
        x = node.args[0]
        gate = self.call_before(gm, node, aten.sigmoid.default, (x,))
        return self.call_before(gm, node, aten.mul.Tensor, (x, gate))
