"""What every annotation-pass test does: export a tiny module, run a pass, check it.

:func:`check_pass` is the one contract all four passes share: the pass reports
whether it changed the graph, the graph still lints, the outputs on fresh
random inputs are the ones the graph gave before the pass, a graph it must
leave alone is left exactly as it was, and a second run changes nothing.
"""

from __future__ import annotations

import copy
import functools
from typing import Callable

import torch
from torch import nn
from torch.fx import GraphModule

from xnnquant.quantizer.workflow import IR, export_model


class Fn(nn.Module):
    """A module around ``fn(self, *inputs)``, with optional child modules and buffers."""

    def __init__(self, fn, buffers=None, **children):
        super().__init__()
        self.fn = fn
        for name, child in children.items():
            setattr(self, name, child)
        for name, value in (buffers or {}).items():
            self.register_buffer(name, value)

    def forward(self, *inputs):
        return self.fn(self, *inputs)


def export_gm(model: nn.Module, inputs: tuple, ir: IR) -> GraphModule:
    """The graph module of ``model`` (put in eval mode) exported to ``ir``."""
    return export_model(model.eval(), inputs, ir=ir).module()


def cached_export(build: Callable[[str], tuple]) -> Callable[[str], tuple]:
    """Memoize ``build(case_id) -> (model, graph module, inputs)``: exporting to the core IR is slow.

    Each call returns a fresh deep copy of the whole tuple, since passes rewrite
    in place.  One deep copy keeps what the originals share: the copied graph
    module still shares its parameters' storage with the copied model.
    """
    build = functools.cache(build)

    def get(case_id: str) -> tuple:
        return copy.deepcopy(build(case_id))

    return get


def call_targets(gm: GraphModule) -> list:
    """The targets of ``gm``'s call_function nodes, in graph order."""
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def nodes_of(gm: GraphModule, targets) -> list:
    """``gm``'s call_function nodes whose target is in ``targets``."""
    wanted = set(targets)
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target in wanted]


def fresh_like(inputs: tuple, count: int = 2) -> list:
    """``count`` new random input tuples shaped like ``inputs`` (integers stay integers)."""

    def like(t: torch.Tensor) -> torch.Tensor:
        if t.is_floating_point():
            return torch.randn(t.shape).to(t.dtype)
        return torch.randint(-5, 6, t.shape, dtype=t.dtype)

    return [tuple(like(t) for t in inputs) for _ in range(count)]


def check_pass(pass_cls, gm: GraphModule, inputs: tuple, *, modified: bool,
               atol: float = 0.0, rtol: float = 0.0) -> GraphModule:
    """Run ``pass_cls`` over ``gm`` and check the contract; return the rewritten graph module.

    Args:
        pass_cls: the ``PassBase`` subclass under test.
        gm: the exported graph module; the pass rewrites it in place.
        inputs: example inputs; fresh random ones like them are checked too.
        modified: whether the pass must report (and make) a change.
        atol, rtol: the output tolerance; exact (0) by default.
    """
    samples = [inputs, *fresh_like(inputs)]
    reference = copy.deepcopy(gm)
    graph_before = str(gm.graph)

    result = pass_cls()(gm)

    assert result.modified is modified
    out = result.graph_module
    out.graph.lint()
    if modified:
        assert str(out.graph) != graph_before, "modified=True but the graph is unchanged"
    else:
        assert str(out.graph) == graph_before, "modified=False but the graph changed"
    with torch.no_grad():
        for sample in samples:
            torch.testing.assert_close(out(*sample), reference(*sample), atol=atol, rtol=rtol)
    graph_after = str(out.graph)
    again = pass_cls()(out)
    assert again.modified is False, "a second run changed the graph again"
    assert str(again.graph_module.graph) == graph_after
    return out
