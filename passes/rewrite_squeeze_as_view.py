"""Spell ``squeeze``/``unsqueeze`` as the ``view`` they are, so the XNNPACK delegate takes them.

ExecuTorch's XNNPACK partitioner has no config for ``squeeze_copy`` and claims
``unsqueeze_copy`` only on the last dim, so ``x.squeeze(2)`` or
``x.unsqueeze(1)`` between two quantized ops splits the program into several
delegates with the op (and its q/dq) outside.  Both only insert or drop size-1
dims, which is exactly ``view(x, out_shape)``: same values, same memory order,
and ``view_copy`` is claimed (in fp32 and in int8 with shared qparams).

Only nodes whose output shape is known and static are rewritten; a symbolic
dim keeps the op as it is.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.fx import GraphModule, Node

from xnnquant.quantizer.graph import RewriteEachNode
from xnnquant.quantizer.patterns import record

aten = torch.ops.aten

_SQUEEZES = record("squeeze").targets


class RewriteSqueezeAsView(RewriteEachNode):
    """``squeeze(x, dims)`` / ``unsqueeze(x, dim)`` → ``view(x, out_shape)`` for static shapes."""

    def replacement(self, gm: GraphModule, node: Node) -> Optional[Node]:
        if node.target not in _SQUEEZES:
            return None
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor) or not all(isinstance(d, int) for d in val.shape):
            return None
        return self.call_before(gm, node, aten.view.default, (node.args[0], list(val.shape)))
