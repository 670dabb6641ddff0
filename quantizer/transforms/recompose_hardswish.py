"""Put a decomposed hardswish back together: ``x · relu6(x + 3) / 6`` → ``hardswish(x)``.

XNNPACK runs hardswish in int8 as one lookup table (one requantization), but
the core ATen IR decomposes ``F.hardswish`` into five ops::

    add(x, 3) → clamp(·, 0) → clamp(·, None, 6) → mul(x, ·) → div(·, 6)

of which ``div`` has no int8 kernel, and each of the others would requantize
on its own.  This pass, run before annotation, finds that chain (and the same
function written by hand: ``hardtanh``/``relu6``/one ``clamp`` for the bounds,
the ``mul`` operands either way round, ``x · (relu6(x + 3) / 6)``) and
replaces it by one ``aten.hardswish.default``, which the op table quantizes
and ExecuTorch's lowering keeps whole (its hardswish config names the op in
``get_original_aten``).

Only chains whose inner nodes have no other user are rewritten: a value used
elsewhere must stay in the graph.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch.fx import GraphModule, Node

from ..graph import RewriteEachNode, is_call

aten = torch.ops.aten

_ADD = (aten.add.Tensor, aten.add.Scalar)
_MUL = (aten.mul.Tensor,)
_DIV = (aten.div.Tensor, aten.div.Scalar)
_CLAMPS = (aten.clamp.default, aten.hardtanh.default, aten.relu6.default)


def _is_number(value: Any, expected: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == expected


def _single_use(node: Node) -> bool:
    return len(node.users) == 1


def _bounds(node: Node) -> tuple:
    """(lower, upper) of a clamp-like node; None for an unbounded side."""
    if node.target == aten.relu6.default:
        return 0.0, 6.0
    lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min", node.kwargs.get("min_val"))
    hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max", node.kwargs.get("max_val"))
    if node.target == aten.hardtanh.default:
        lo = -1.0 if lo is None else lo
        hi = 1.0 if hi is None else hi
    return lo, hi


def relu6_of_shifted(node: Any) -> Optional[Node]:
    """``x`` when ``node`` computes ``clamp(x + 3, 0, 6)`` through single-use nodes, else None.

    Accepted: one clamp-like node with both bounds (``hardtanh(·, 0, 6)``,
    ``relu6``, ``clamp(·, 0, 6)``), or the core IR's two clamps
    ``clamp(clamp(·, 0), None, 6)``; and below it ``add(x, 3)`` (either operand order).
    """
    lower = upper = None
    current = node
    for _ in range(2):  # at most two clamps
        if not is_call(current, _CLAMPS):
            break
        lo, hi = _bounds(current)
        if lo is not None:
            if lower is not None or not _is_number(lo, 0):
                return None
            lower = lo
        if hi is not None:
            if upper is not None or not _is_number(hi, 6):
                return None
            upper = hi
        if current is not node and not _single_use(current):
            return None
        current = current.args[0]
    if lower is None or upper is None or current is node:
        return None
    if not (is_call(current, _ADD) and _single_use(current)):
        return None
    a, b = current.args[:2]
    if isinstance(a, Node) and _is_number(b, 3):
        return a
    if isinstance(b, Node) and _is_number(a, 3):
        return b
    return None


def _other(node: Node, known: Node) -> Optional[Any]:
    a, b = node.args[:2]
    return b if a is known else a if b is known else None


def _hardswish_input(div: Node) -> Optional[Node]:
    """``x`` when ``div`` is ``(x · relu6(x + 3)) / 6`` or ``x · (relu6(x + 3) / 6)``'s ``mul``."""
    if is_call(div, _DIV) and _is_number(div.args[1], 6):
        mul = div.args[0]
        if not (is_call(mul, _MUL) and _single_use(mul)):
            return None
        for inner in mul.args[:2]:
            x = relu6_of_shifted(inner)
            if x is not None and _single_use(inner) and _other(mul, inner) is x:
                return x
        return None
    if is_call(div, _MUL):  # x · (relu6(x + 3) / 6): here ``div`` is the outer mul
        for inner in div.args[:2]:
            if is_call(inner, _DIV) and _single_use(inner) and _is_number(inner.args[1], 6):
                x = relu6_of_shifted(inner.args[0])
                if x is not None and _single_use(inner.args[0]) and _other(div, inner) is x:
                    return x
    return None


class RecomposeHardswish(RewriteEachNode):
    """``x · relu6(x + 3) / 6``, in any of its spellings, → ``aten.hardswish.default(x)``."""

    def replacement(self, gm: GraphModule, node: Node) -> Optional[Node]:
        x = _hardswish_input(node)
        return None if x is None else self.call_before(gm, node, aten.hardswish.default, (x,))
