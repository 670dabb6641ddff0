"""The fuzzer's properties: what must hold for every graph, on both IRs, as one function.

:func:`check_graph` takes a :class:`~tests.fuzz.graphs.GraphSpec`, quantizes the
module it describes on the training and the core IR, lowers each converted
graph to XNNPACK twice, runs it, and raises :class:`PropertyFailure` (with a
``kind`` from :data:`KINDS`) for the first promise xnnquant breaks:

* ``crash``: an exception that is not one of xnnquant's documented errors;
* ``load failure``: the ``.pte`` does not load or execute in ``executorch.runtime``;
* ``unreported outside op``: an op left outside the delegate without a reason in
  the delegation report, or a float node without a reason in the annotation report;
* ``reference mismatch``: the delegate is farther than :data:`REFERENCE_STEPS`
  output steps from the reference kernels, or than the self-check's limits from
  the converted graph (also when the self-check itself raises);
* ``IR disagreement``: the two IRs quantize different ops, or only one raises;
* ``nondeterministic``: lowering the same graph twice gives different ``.pte`` bytes;
* ``mutation``: the caller's model or config changed.

A documented error (:data:`DOCUMENTED`) is an allowed outcome: xnnquant said
clearly that it cannot take the graph.  It is returned in the :class:`Outcome`
so that a run can count them, and its message must say what to do.

The regression tests and the hypothesis test share this function, so a
regression case checks exactly what the fuzzer checked when it found the bug.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.utils._pytree as pytree

from xnnquant.passes import LoweringError, MissingReferenceError, lower_to_reference, lower_to_xnnpack
from xnnquant.passes.lower_to_xnnpack import MAX_OUTPUT_STEPS, MIN_SQNR_DB
from xnnquant.passes.report import REASONS, output_step
from xnnquant.quantizer.graph import returned_nodes
from xnnquant.quantizer import (
    CalibrationError,
    ConfigError,
    ExportError,
    ValidationError,
    XnnpackQuantizer,
    get_config,
    quantize,
    sqnr,
)
from xnnquant.quantizer.workflow import IRS

from .graphs import FuzzNet, GraphSpec

#: xnnquant's documented errors: raising one of these is an allowed outcome.
DOCUMENTED = (ConfigError, ValidationError, CalibrationError, ExportError, LoweringError,
              MissingReferenceError)

CRASH = "crash"
LOAD = "load failure"
UNREPORTED = "unreported outside op"
MISMATCH = "reference mismatch"
IR_DISAGREEMENT = "IR disagreement"
NONDETERMINISTIC = "nondeterministic"
MUTATION = "mutation"
KINDS = (CRASH, LOAD, UNREPORTED, MISMATCH, IR_DISAGREEMENT, NONDETERMINISTIC, MUTATION)

#: The delegate against the reference kernels: the kernels model XNNPACK's int8
#: arithmetic, so they agree to within one rounding step of the output (as in
#: tests/e2e/test_patterns_e2e.py).
REFERENCE_STEPS = 1.0

#: Records whose counts legitimately differ between the IRs, and why.  The core IR
#: spells ``reshape`` of a non-contiguous tensor as ``clone → _unsafe_view``; the
#: training IR keeps one ``reshape`` (tests/quantizer/cases.py "data_movement").
IR_SPECIFIC = frozenset({"clone"})


class PropertyFailure(AssertionError):
    """A broken promise; ``kind`` is one of :data:`KINDS`."""

    def __init__(self, kind: str, ir: Optional[str], message: str):
        super().__init__(f"[{kind}] {ir or 'both IRs'}: {message}")
        self.kind = kind
        self.ir = ir


@dataclass
class IRResult:
    """What one IR gave: its pattern counts, or the documented error it raised."""

    counts: dict = field(default_factory=dict)
    error: Optional[str] = None  # "LoweringError: first line"
    outside: tuple = ()
    max_ref_steps: float = 0.0


@dataclass
class Outcome:
    """What :func:`check_graph` saw on each IR."""

    results: dict = field(default_factory=dict)  # ir -> IRResult

    def errors(self) -> list:
        return [r.error for r in self.results.values() if r.error]


def example_inputs(spec: GraphSpec, seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(spec.input_shape, generator=g),)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _classify_lowering_error(exc: LoweringError, ir: str) -> None:
    """Raise the property a ``LoweringError`` breaks; return if it is an allowed refusal."""
    text = str(exc)
    if text.startswith("self-check failed"):
        raise PropertyFailure(MISMATCH, ir, text) from exc
    if "could not load method" in text or "could not execute the program" in text:
        raise PropertyFailure(LOAD, ir, text) from exc


def _check_annotation_report(quantizer: XnnpackQuantizer, ir: str) -> None:
    silent = [d for d in quantizer.report.left_float if not d.reason]
    if silent:
        raise PropertyFailure(UNREPORTED, ir, f"float nodes without a reason: {silent}\n{quantizer.report}")


def _check_delegation_report(report, ir: str) -> None:
    """Every compute op outside the delegate is a report row with a reason category and a detail."""
    reported = Counter(n.op for n in report.not_delegated
                       if n.kind == "compute" and n.reason in REASONS and n.detail)
    outside = Counter(report.non_delegated_ops)
    missing = outside - reported
    if missing:
        raise PropertyFailure(UNREPORTED, ir, f"outside the delegate but not reported with a reason: "
                                              f"{dict(missing)}\n{report}")
    bad = [n for n in report.not_delegated if n.reason not in REASONS]
    if bad:
        raise PropertyFailure(UNREPORTED, ir, f"rows outside the delegate with no reason category: {bad}")


def _steps(expected: torch.Tensor, actual: torch.Tensor, step: Optional[float]) -> tuple:
    """(max difference in output steps or None, SQNR or None) of two outputs."""
    if expected.shape != actual.shape:
        return float("inf"), None
    diff = (expected.double() - actual.double()).abs()
    worst = diff.max().item() if diff.numel() else 0.0
    db = sqnr(expected, actual) if expected.any() else None
    return (worst / step if step else None), db


def _compare(converted, lowered, reference, x: tuple, ir: str) -> float:
    """The delegate on a fresh input against the reference kernels and the converted graph."""
    try:
        delegate = lowered.run(*x)
    except Exception as exc:
        raise PropertyFailure(LOAD, ir, f"running the .pte on a fresh input failed: {_first_line(exc)}") from exc
    with torch.no_grad():
        graph_out = pytree.tree_leaves(converted(*x))
        ref_out = pytree.tree_leaves(reference(*x))
    nodes = returned_nodes(converted)
    worst_ref = 0.0
    for i, (node, got, want, ref) in enumerate(zip(nodes, delegate, graph_out, ref_out)):
        step = output_step(node)
        steps, db = _steps(want, got, step)
        # In output steps when the output is dequantized: an SQNR says nothing about an output
        # whose values all lie a step or two from zero (3 values of leaky_relu(x < 0), 1 step
        # apart, measured 4.8 dB).  A float output has no step, so its SQNR is judged.
        if (steps > MAX_OUTPUT_STEPS + 1e-3) if step is not None else (db is not None and db < MIN_SQNR_DB):
            raise PropertyFailure(MISMATCH, ir, f"output {i}: delegate vs converted graph: "
                                                f"{steps} steps (step {step}), SQNR {db} dB")
        steps, db = _steps(ref, got, step)
        if step is not None:
            worst_ref = max(worst_ref, steps)
            if steps > REFERENCE_STEPS * 1.0001:
                raise PropertyFailure(MISMATCH, ir, f"output {i}: delegate vs reference kernels: "
                                                    f"{steps:.3f} steps (step {step})")
        elif db is not None and db < MIN_SQNR_DB:
            raise PropertyFailure(MISMATCH, ir, f"output {i}: delegate vs reference kernels: SQNR {db} dB")
    return worst_ref


def _graph_state(gm) -> tuple:
    return gm.code, {k: v.clone() for k, v in gm.state_dict().items()}


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def run_ir(spec: GraphSpec, ir: str, model: torch.nn.Module, config) -> IRResult:
    """Quantize, lower (twice) and run ``model`` on ``ir``; raise :class:`PropertyFailure` on a broken promise."""
    x = example_inputs(spec, 1)
    calibration = [example_inputs(spec, s) for s in (2, 3, 4)] + [x]
    quantizer = XnnpackQuantizer(config)
    stage = "quantize"
    try:
        converted = quantize(model, x, calibration, quantizer, ir=ir)
        _check_annotation_report(quantizer, ir)
        counts = quantizer.report.pattern_counts()
        before = _graph_state(converted)
        stage = "lower"
        lowered = lower_to_xnnpack(converted, x)
        _check_delegation_report(lowered.report, ir)
        # A lowering costs about a second; each graph checks determinism on one IR, alternating
        # by seed, so that over a run both IRs are checked equally often.
        again = lower_to_xnnpack(converted, x, self_check=False) if ir == IRS[spec.seed % 2] else lowered
        if again.buffer != lowered.buffer:
            raise PropertyFailure(NONDETERMINISTIC, ir, f"two lowerings of one graph gave .pte files of "
                                                        f"{len(lowered.buffer)} and {len(again.buffer)} bytes")
        stage = "reference"
        reference = lower_to_reference(converted)
        worst = _compare(converted, lowered, reference, example_inputs(spec, 5), ir)
        after = _graph_state(converted)
        if before[0] != after[0] or not _same_state(before[1], after[1]):
            raise PropertyFailure(MUTATION, ir, "lowering changed the converted graph it was given")
    except PropertyFailure:
        raise
    except LoweringError as exc:
        _classify_lowering_error(exc, ir)
        return IRResult(error=_first_line(exc))
    except DOCUMENTED as exc:
        return IRResult(error=_first_line(exc))
    except Exception as exc:
        raise PropertyFailure(CRASH, ir, f"{stage}: {type(exc).__name__}: {exc}") from exc
    return IRResult(counts=counts, outside=tuple(lowered.report.non_delegated_ops), max_ref_steps=worst)


def _comparable(counts: dict) -> dict:
    return {k: v for k, v in counts.items() if k not in IR_SPECIFIC}


def check_graph(spec: GraphSpec, config=None) -> Outcome:
    """Every property on both IRs; raises :class:`PropertyFailure`, returns the :class:`Outcome`."""
    config = config if config is not None else get_config(observer="minmax")
    config_fields = [getattr(config, f.name) for f in dataclasses.fields(config)]
    config_repr = repr(config)
    model = FuzzNet(spec).eval()
    model_repr, model_state = repr(model), {k: v.clone() for k, v in model.state_dict().items()}
    outcome = Outcome()
    for ir in IRS:
        outcome.results[ir] = run_ir(spec, ir, model, config)
    if repr(model) != model_repr or not _same_state(model.state_dict(), model_state) or model.training:
        raise PropertyFailure(MUTATION, None, "the caller's model changed")
    if repr(config) != config_repr or any(
            a is not b for a, b in zip(config_fields, (getattr(config, f.name) for f in dataclasses.fields(config)))):
        raise PropertyFailure(MUTATION, None, "the caller's config changed")
    training, core = outcome.results["training"], outcome.results["core"]
    if (training.error is None) != (core.error is None):
        raise PropertyFailure(IR_DISAGREEMENT, None, f"training: {training.error or 'ok'}; "
                                                     f"core: {core.error or 'ok'}")
    if training.error is None and _comparable(training.counts) != _comparable(core.counts):
        raise PropertyFailure(IR_DISAGREEMENT, None, f"quantized ops per record differ: training "
                                                     f"{training.counts}, core {core.counts}")
    return outcome
