"""Lower a converted (or plain fp32) program to an ExecuTorch ``.pte`` that runs on XNNPACK.

:func:`lower_to_xnnpack` takes the output of torchao's ``convert_pt2e`` (a
``GraphModule``) or an ``ExportedProgram``, from the training IR or the core
ATen IR, runs the pre-lowering passes of :mod:`xnnquant.passes.pipeline` on a
copy, re-exports, and hands the result to ExecuTorch's
``to_edge_transform_and_lower`` with the ``XnnpackPartitioner``.  It returns a
:class:`LoweredProgram`: the program manager, the ``.pte`` bytes, a
:class:`~xnnquant.passes.report.DelegationReport` and helpers to save and run
the program through ``executorch.runtime``.

The report is built from inside the partitioner: a thin subclass of
``XnnpackPartitioner`` looks at the edge graph right after tagging (tagged
nodes are the delegated ones) while the ``WhyNoPartition`` debug records of
ExecuTorch's XNNPACK partitioner configs are collected for the reasons.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch.fx import GraphModule

from .pipeline import PRE_LOWERING_PASSES, run_pipeline
from .report import DelegationReport, is_plumbing, node_statuses, op_name


class LoweringError(RuntimeError):
    """A program that could not be lowered to XNNPACK; the message says why and what to do."""


@dataclass
class LoweredProgram:
    """A program lowered to ExecuTorch with the XNNPACK delegate.

    Attributes:
        manager: ExecuTorch's ``ExecutorchProgramManager``.
        buffer: the serialized ``.pte`` bytes.
        report: the :class:`DelegationReport`.
    """

    manager: Any
    buffer: bytes
    report: DelegationReport
    _program: Any = field(default=None, init=False, repr=False, compare=False)

    def save(self, path) -> Path:
        """Write the ``.pte`` to ``path`` atomically and return the path.

        The bytes go to a temporary file in the same directory which then
        replaces ``path``, so a reader never sees a partial file and a failed
        write leaves any earlier file at ``path`` as it was.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.buffer)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return path

    def load_method(self, name: str = "forward"):
        """The ``executorch.runtime`` ``Method`` ``name``, loaded once per call.

        The program is loaded from :attr:`buffer` on first use and kept, so a
        benchmark can time ``method.execute(inputs)`` alone.
        """
        if self._program is None:
            from executorch.runtime import Runtime

            self._program = Runtime.get().load_program(self.buffer)
        try:
            method = self._program.load_method(name)
        except Exception as exc:  # the runtime raises RuntimeError with a numeric code
            raise LoweringError(
                f"executorch.runtime could not load method {name!r}: {exc}\n"
                "Usually an op outside the delegate has no kernel in this runtime build "
                f"(ops outside: {self.report.non_delegated_ops or 'none'}); make that op "
                "one XNNPACK delegates or replace it."
            ) from exc
        if method is None:
            raise LoweringError(f"the program has no method {name!r}")
        return method

    def run(self, *inputs: torch.Tensor) -> list:
        """Execute ``forward`` on ``inputs`` through ``executorch.runtime``; returns the outputs.

        The outputs are copied because the runtime may reuse their memory on the next call.
        """
        outputs = self.load_method().execute(list(inputs))
        return [o.clone() if isinstance(o, torch.Tensor) else o for o in outputs]


def _why_loggers() -> list:
    """The loggers of the loaded XNNPACK partitioner configs that ``WhyNoPartition`` writes to."""
    from executorch.exir.backend.utils import WhyNoPartition

    loggers = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("executorch.backends.xnnpack.partition"):
            continue
        why = getattr(module, "why", None)
        if isinstance(why, WhyNoPartition) and why.logger not in loggers:
            loggers.append(why.logger)
    return loggers


class _WhyHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.reasons: dict = {}

    def emit(self, record: logging.LogRecord) -> None:
        # The WhyNoPartition object is reused for the next node, so read it now.
        msg = record.msg
        node, reason = getattr(msg, "node", None), getattr(msg, "reason", None)
        if node is not None and reason:
            found = self.reasons.setdefault(node.name, [])
            if reason not in found:
                found.append(reason)


@contextlib.contextmanager
def _collect_why():
    handler = _WhyHandler()
    saved = []
    for logger in _why_loggers():
        saved.append((logger, logger.level, logger.propagate))
        # DEBUG so the records are made; no propagation so they reach only us, not the console.
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def _recording_partitioner(**kwargs):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    class _RecordingPartitioner(XnnpackPartitioner):
        """``XnnpackPartitioner`` that keeps the status of every node it tagged or left."""

        statuses: list = []
        num_partitions: int = 0

        def partition(self, exported_program):
            with _collect_why() as why:
                result = super().partition(exported_program)
            supported = set(self.target_partitioner_configs)
            self.statuses = node_statuses(exported_program.graph.nodes, supported, why.reasons)
            self.num_partitions = len(result.partition_tags)
            return result

    return _RecordingPartitioner(**kwargs)


def _check_inputs(example_inputs) -> None:
    if not isinstance(example_inputs, tuple):
        raise TypeError(
            "example_inputs must be a tuple of tensors, e.g. (x,); "
            f"got {type(example_inputs).__name__}"
        )


def _copy_graph_module(program) -> tuple:
    """(a graph module the caller does not own, whether it came from an ExportedProgram)."""
    if isinstance(program, torch.export.ExportedProgram):
        return copy.deepcopy(program.module()), True
    if isinstance(program, GraphModule):
        return copy.deepcopy(program), False
    raise TypeError(
        "program must be a converted torch.fx.GraphModule (from convert_pt2e) or a "
        f"torch.export.ExportedProgram; got {type(program).__name__}. "
        "Export an nn.Module first, e.g. with xnnquant.quantizer.export_model."
    )


def lower_to_xnnpack(
    program,
    example_inputs: tuple,
    *,
    path=None,
    passes: Sequence = PRE_LOWERING_PASSES,
    require_full_delegation: bool = False,
    partitioner_kwargs: Optional[dict] = None,
) -> LoweredProgram:
    """Lower ``program`` to an ExecuTorch program with the XNNPACK delegate.

    Args:
        program: a converted ``GraphModule`` (``convert_pt2e``'s output) or an
            ``ExportedProgram``, from the training IR or the core ATen IR;
            quantized or plain fp32.  It is not modified.
        example_inputs: a tuple of example tensors, used to re-export.
        path: when given, the ``.pte`` is also written there (atomically).
        passes: the pre-lowering passes; the default is
            :data:`xnnquant.passes.pipeline.PRE_LOWERING_PASSES`.
        require_full_delegation: raise :class:`LoweringError` (with the report)
            when any op or q/dq node stays outside the delegate.
        partitioner_kwargs: passed to ``XnnpackPartitioner``.

    Returns:
        A :class:`LoweredProgram`; ``report.fully_delegated`` tells whether
        anything stayed outside the delegate.

    Raises:
        TypeError: ``program`` or ``example_inputs`` has the wrong type.
        LoweringError: re-export, edge conversion, partitioning or
            serialization failed (the ExecuTorch exception is chained), or
            ``require_full_delegation`` was set and something stayed outside.
    """
    from executorch.exir import to_edge_transform_and_lower

    _check_inputs(example_inputs)
    gm, from_ep = _copy_graph_module(program)
    piped = run_pipeline(gm, passes)

    if from_ep and not piped.modified:
        ep = copy.deepcopy(program)  # ExecuTorch must not touch the caller's program either
    else:
        try:
            ep = torch.export.export(piped.graph_module, example_inputs)
        except Exception as exc:  # torch.export raises many unrelated types
            raise LoweringError(
                f"re-exporting the graph failed: {type(exc).__name__}: {exc}\n"
                "Check that example_inputs match what the program was exported with "
                "(number, shapes, dtypes)."
            ) from exc

    partitioner = _recording_partitioner(**(partitioner_kwargs or {}))
    try:
        edge = to_edge_transform_and_lower(ep, partitioner=[partitioner])
    except Exception as exc:
        raise LoweringError(
            f"ExecuTorch could not convert the graph to the edge dialect and lower it: "
            f"{type(exc).__name__}: {exc}\n"
            "Every op must be a core ATen op or a registered ExecuTorch op; replace or "
            "decompose the op named above, or keep it out of the exported module."
        ) from exc
    # Read the counts before to_executorch(), which rewrites the edge graph in place.
    lowered_gm = edge.exported_program().graph_module
    outside = [
        op_name(n.target) for n in lowered_gm.graph.nodes
        if n.op == "call_function" and not is_plumbing(n)
    ]
    delegates = sum(
        1 for n in lowered_gm.graph.nodes
        if n.op == "call_function" and n.target is torch.ops.higher_order.executorch_call_delegate
    )
    report = DelegationReport(
        nodes=list(partitioner.statuses),
        num_delegates=delegates,
        num_partitions=partitioner.num_partitions,
        outside_ops=outside,
        passes_changed=piped.changed,
    )
    if require_full_delegation and not report.fully_delegated:
        raise LoweringError(
            "not everything was delegated to XNNPACK:\n"
            f"{report.format(delegated=False)}\n"
            "Quantize the ops listed (or leave them and their neighbours in float) so that "
            "no quantized op sits outside the delegate."
        )
    try:
        manager = edge.to_executorch()
        buffer = bytes(manager.buffer)
    except Exception as exc:
        raise LoweringError(
            f"ExecuTorch could not serialize the lowered program: {type(exc).__name__}: {exc}\n"
            "Each op left outside the delegate needs a portable kernel (out variant); "
            "these nodes stayed outside:\n"
            f"{report.format(delegated=False)}\n"
            "Replace the op named above or make it one XNNPACK delegates."
        ) from exc
    report.pte_size = len(buffer)
    lowered = LoweredProgram(manager=manager, buffer=buffer, report=report)
    if path is not None:
        lowered.save(path)
    return lowered
