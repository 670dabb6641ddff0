"""Turn the scalar operand of add/sub/mul into a tensor constant.

XNNPACK's int8 binary kernels take two quantized tensors, so ``x + 1.0`` can
only run in int8 when the ``1.0`` is a tensor that gets its own observer (and
folds into an int8 constant after convert).  The constant is 0-D, so
broadcasting and the result are unchanged.
"""

from __future__ import annotations

import torch
from torch.fx import GraphModule, Node
from torch.fx.passes.infra.pass_base import PassBase, PassResult

from ..patterns import LIFTED_TARGETS, SCALAR_FORMS


class LiftScalarOperands(PassBase):
    """Replace a Python-number operand of a binary op by a 0-D ``get_attr`` constant."""

    def call(self, gm: GraphModule) -> PassResult:
        modified = False
        count = 0
        for node in list(gm.graph.nodes):
            if node.op != "call_function" or node.target not in LIFTED_TARGETS or len(node.args) < 2:
                continue
            operands = list(node.args[:2])
            numbers = [i for i, a in enumerate(operands) if isinstance(a, (int, float))
                       and not isinstance(a, bool)]
            tensors = [a for a in operands if isinstance(a, Node)]
            # The core IR spells ``1.0 - x`` as ``sub.Tensor(1.0, x)``: the number may be either side.
            if len(numbers) != 1 or len(tensors) != 1:
                continue
            (index,) = numbers
            val = tensors[0].meta.get("val")
            if not isinstance(val, torch.Tensor) or not val.is_floating_point():
                continue
            while hasattr(gm, f"_lifted_scalar_{count}"):
                count += 1
            name = f"_lifted_scalar_{count}"
            gm.register_buffer(name, torch.tensor(float(operands[index]), dtype=val.dtype))
            with gm.graph.inserting_before(node):
                const = gm.graph.get_attr(name)
            const.meta["val"] = torch.empty((), dtype=val.dtype)
            operands[index] = const
            node.args = (*operands, *node.args[2:])
            node.target = SCALAR_FORMS.get(node.target, node.target)
            modified = True
        if modified:
            gm.recompile()
        return PassResult(gm, modified)
