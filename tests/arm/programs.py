"""The programs the ARM test runs, built the way the e2e tests build them, in worker processes.

:data:`PROGRAMS` names every pattern case of ``tests.quantizer.cases`` and
every tiny example model of ``examples.models``, on both IRs. :func:`build`
quantizes one of them, lowers it with ``lower_to_xnnpack``, and runs it on
:data:`INPUTS_PER_PROGRAM` inputs through ``executorch.runtime`` (the x86
baseline) and through the reference kernels.

Lowering costs one to a few seconds a program and is single-threaded Python,
so the test calls :func:`build` in two spawned processes, one per core.
:func:`build` returns NumPy arrays and bytes only: torch's own pickling would
pass tensors between processes through shared-memory handles, which gains
nothing for arrays this small.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from examples.models import TINY_MODELS, build as build_model, example_inputs
from tests.quantizer.cases import CASES, quantize_case
from xnnquant.passes import lower_to_reference, lower_to_xnnpack
from xnnquant.quantizer import XnnpackQuantizer, quantize
from xnnquant.quantizer.workflow import IRS

INPUTS_PER_PROGRAM = 4
PROGRAMS: dict = {
    **{f"{name}/{ir}": ("case", name, ir) for name in sorted(CASES) for ir in IRS},
    **{f"model:{name}/{ir}": ("model", name, ir) for name in sorted(TINY_MODELS) for ir in IRS},
}


@dataclass
class Built:
    """One lowered program: the ``.pte`` and what x86 and the reference kernels give on its inputs."""

    id: str
    pte: bytes
    ops: list  # compute ops of the converted graph, to name in a failure
    outside: list  # ops left outside the delegate
    steps: list  # per output: the output quantization step, or None for an integer output
    samples: list  # per input: tuple of float32 arrays
    baseline: list  # per input: list of arrays from executorch.runtime on x86
    reference: list  # per input: list of arrays from lower_to_reference


def _as_list(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _name(target) -> str:
    return getattr(target, "__name__", str(target))


def _output_steps(converted) -> list:
    output = next(n for n in converted.graph.nodes if n.op == "output")
    steps = []
    for node in _as_list(output.args[0]):
        is_dq = isinstance(node, torch.fx.Node) and _name(node.target).startswith("dequantize_per_tensor")
        steps.append(float(node.args[1]) if is_dq else None)
    return steps


def _compute_ops(converted) -> list:
    ops = []
    for node in converted.graph.nodes:
        if node.op != "call_function":
            continue
        name = _name(node.target).split(".")[0]
        if not name.startswith(("quantize_per", "dequantize_per", "getitem")) and name not in ops:
            ops.append(name)
    return ops


def _quantized(kind: str, name: str, ir: str):
    """(converted graph, the input to lower with, every input to run), as the e2e and model tests make them."""
    if kind == "case":
        _, converted, x, _ = quantize_case(name, ir)
        gen = torch.Generator().manual_seed(3)
        more = [tuple(torch.randn(t.shape, generator=gen) for t in x)
                for _ in range(INPUTS_PER_PROGRAM - 1)]
        return converted, x, [x, *more]
    model, shape = build_model(name, tiny=True)
    calibration = example_inputs(shape, 8, seed=1)
    (x,) = example_inputs(shape, 1, seed=2)
    converted = quantize(model, x, calibration, XnnpackQuantizer(), ir=ir)
    return converted, x, [x, *example_inputs(shape, INPUTS_PER_PROGRAM - 1, seed=3)]


def _arrays(outputs) -> list:
    return [t.detach().contiguous().numpy().copy() for t in _as_list(outputs)]


def build(program_id: str) -> Built:
    """Quantize, lower and run one program of :data:`PROGRAMS` on x86."""
    kind, name, ir = PROGRAMS[program_id]
    converted, x, samples = _quantized(kind, name, ir)
    lowered = lower_to_xnnpack(converted, x)
    reference = lower_to_reference(converted)
    with torch.no_grad():
        ref = [_arrays(reference(*s)) for s in samples]
    return Built(
        id=program_id,
        pte=lowered.buffer,
        ops=_compute_ops(converted),
        outside=list(getattr(lowered.report, "non_delegated_ops", [])),
        steps=_output_steps(converted),
        samples=[tuple(t.numpy().copy() for t in s) for s in samples],
        baseline=[_arrays(lowered.run(*s)) for s in samples],
        reference=ref,
    )


def as_tensors(arrays) -> list:
    return [torch.from_numpy(a) for a in arrays]

