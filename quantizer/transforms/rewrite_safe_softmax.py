"""Spell the core IR's ``_safe_softmax`` as the ``softmax`` it is when no score can be ``-inf``.

``run_decompositions()`` writes the softmax of ``scaled_dot_product_attention``
as ``_safe_softmax``::

    p    = softmax(s, -1)
    rows = logical_not(any(logical_not(eq(s, -inf)), -1, keepdim=True))
    out  = where(rows, full_like(p, 0), p)

so that a row whose every score is ``-inf`` (fully masked) gives 0 rather
than NaN.  None of ``eq``, ``logical_not``, ``any``, ``full_like`` and ``where``
is claimed by an XNNPACK partitioner config, so each attention split the
program into several delegates.  When the scores are a batched matmul
(through views and scalings) with no mask added, they are finite for finite
inputs, no row is all ``-inf``, and ``out`` equals ``p``: this pass, run
before annotation, then replaces ``out`` with ``p``.  Scores with a mask added
are left alone.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch.fx import GraphModule, Node

from ..graph import RewriteEachNode, is_call
from ..patterns import VIEWS

aten = torch.ops.aten

_SCALINGS = (aten.mul.Tensor, aten.mul.Scalar, aten.div.Tensor, aten.div.Scalar)


def _unmasked_scores(scores) -> bool:
    """``scores`` is a ``bmm`` seen through views and multiplications by Python numbers."""
    while True:
        if is_call(scores, (aten.bmm.default,)):
            return True
        if is_call(scores, VIEWS):
            scores = scores.args[0]
        elif is_call(scores, _SCALINGS) and isinstance(scores.args[1], (int, float)):
            scores = scores.args[0]
        else:
            return False


def _all_masked_rows(cond, scores: Node, dim) -> bool:
    """``cond`` is ``logical_not(any(logical_not(eq(scores, -inf)), dim, True))``."""
    if not is_call(cond, (aten.logical_not.default,)):
        return False
    anyone = cond.args[0]
    if not (is_call(anyone, (aten.any.dim,)) and anyone.args[1] == dim):
        return False
    inner = anyone.args[0]
    if not is_call(inner, (aten.logical_not.default,)):
        return False
    eq = inner.args[0]
    return (is_call(eq, (aten.eq.Scalar,)) and eq.args[0] is scores
            and isinstance(eq.args[1], float) and math.isinf(eq.args[1]) and eq.args[1] < 0)


class RewriteSafeSoftmax(RewriteEachNode):
    """``where(all_masked(s), full_like(p, 0), p)`` with ``p = softmax(s)`` → ``p``, for unmasked ``s``."""

    def replacement(self, gm: GraphModule, node: Node) -> Optional[Node]:
        if not is_call(node, (aten.where.self,)):
            return None
        cond, zeros, probs = node.args[:3]
        if not is_call(probs, (aten._softmax.default, aten.softmax.int)):
            return None
        if not (is_call(zeros, (aten.full_like.default,)) and zeros.args[0] is probs and zeros.args[1] == 0):
            return None
        scores, dim = probs.args[:2]
        if not _all_masked_rows(cond, scores, dim) or not _unmasked_scores(scores):
            return None
        return probs
