"""Helpers shared by the test folders: stock ExecuTorch lowering and delegate accounting.

Issue #2's contract is that a converted graph from either IR lowers with
ExecuTorch's own ``to_edge_transform_and_lower`` + ``XnnpackPartitioner`` with
nothing left outside the delegate, so these helpers deliberately use the stock
API rather than ``xnnquant.passes.lower_to_xnnpack``.
"""

from __future__ import annotations

import operator
import threading
from typing import Callable

import torch
from torch.fx import GraphModule

# The snapshot formatter is public (users' tests use it too); the old name stays for the test files.
from xnnquant.quantizer.testing import graph_text as graph_signature  # noqa: F401

# Nodes that are plumbing around a delegate rather than computation left outside it.
_PLUMBING = {operator.getitem}


def lower_stock(converted: GraphModule, example_inputs: tuple):
    """Lower with stock ExecuTorch; return (edge program manager, ops left outside the delegate)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    ep = torch.export.export(converted, example_inputs)
    edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
    return edge, ops_outside(edge.exported_program().graph_module)


def ops_outside(gm: GraphModule) -> list:
    """Names of the call_function targets that are not delegate calls or plumbing."""
    out = []
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target in _PLUMBING:
            continue
        if node.target is torch.ops.higher_order.executorch_call_delegate:
            continue
        out.append(getattr(node.target, "__name__", str(node.target)))
    return out


def delegate_count(gm: GraphModule) -> int:
    return sum(
        1 for n in gm.graph.nodes
        if n.op == "call_function" and n.target is torch.ops.higher_order.executorch_call_delegate
    )


def run_pte(edge, inputs: tuple) -> torch.Tensor:
    """Serialize an edge program manager and run it through ``executorch.runtime``."""
    from executorch.runtime import Runtime

    buffer = edge.to_executorch().buffer
    method = Runtime.get().load_program(buffer).load_method("forward")
    return method.execute(list(inputs))[0]


def run_at_once(jobs: dict) -> dict:
    """Run each ``name → zero-argument callable`` in its own thread, all released at once.

    Returns ``name → result``; the first exception a job raised is re-raised here,
    in the caller's thread.
    """
    start = threading.Barrier(len(jobs))
    results, errors = {}, []

    def run(name: str, job: Callable) -> None:
        try:
            start.wait()
            results[name] = job()
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item) for item in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
