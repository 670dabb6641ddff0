"""Make a dynamically quantized graph quantize as XNNPACK does: per row, not per tensor.

For the self-check of ``lower_to_xnnpack`` only.  A converted graph under
``get_dynamic_config()`` computes each dynamic activation as::

    s, zp = choose_qparams.tensor(x, ...)
    y     = dequantize_per_tensor.tensor(quantize_per_tensor.tensor(x, s, zp, ...), s, zp, ...)

with one ``(s, zp)`` for all of ``x``, while the delegate picks one per row
(:mod:`xnnquant.kernels.dynamic`).  This pass replaces each such ``y`` with
``fake_quantize_rows(x, nonbatch_dims)``, which is what the delegate's GEMM or
conv reads, so the rewritten graph is the reference the ``.pte`` is judged
against when it fails against the per-tensor graph.  A ``y`` read by a conv
gets rows of one image (3 non-batch dims), any other one rows of its last dim,
as ExecuTorch serializes the tensor.
"""

from __future__ import annotations

import operator

import torch
from torch.fx import GraphModule, Node
from torch.fx.passes.infra.pass_base import PassBase, PassResult

from xnnquant.kernels.dynamic import fake_quantize_rows
from xnnquant.quantizer.graph import is_call

_qd = torch.ops.quantized_decomposed
_CONVS = (torch.ops.aten.convolution.default, torch.ops.aten.conv1d.default,
          torch.ops.aten.conv2d.default)


def _dynamic_source(dq: Node):
    """``x`` when ``dq`` dequantizes a quantize of ``x`` with qparams chosen from ``x`` itself."""
    q = dq.args[0]
    if not is_call(q, (_qd.quantize_per_tensor.tensor,)):
        return None
    x, scale = q.args[0], q.args[1]
    if not (is_call(scale, (operator.getitem,)) and is_call(scale.args[0], (_qd.choose_qparams.tensor,))):
        return None
    return x if scale.args[0].args[0] is x else None


class EmulateDynamicRows(PassBase):
    """``dq(q(x, choose_qparams(x)))`` → ``fake_quantize_rows(x, nonbatch_dims)``."""

    def call(self, gm: GraphModule) -> PassResult:
        modified = False
        for node in list(gm.graph.nodes):
            if not is_call(node, (_qd.dequantize_per_tensor.tensor,)):
                continue
            x = _dynamic_source(node)
            if x is None:
                continue
            # A conv reads one image per row (C·H·W), everything else one vector of the last dim.
            nonbatch = max(1, len(x.meta["val"].shape) - 1) if any(is_call(u, _CONVS) for u in node.users) \
                and isinstance(x.meta.get("val"), torch.Tensor) else 1
            with gm.graph.inserting_before(node):
                rows = gm.graph.call_function(fake_quantize_rows, (x, nonbatch))
            rows.meta = dict(node.meta)
            node.replace_all_uses_with(rows)
            modified = True
        if modified:
            gm.graph.eliminate_dead_code()
            gm.graph.lint()
            gm.recompile()
        return PassResult(gm, modified)
