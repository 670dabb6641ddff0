"""Sensitivity analysis and automatic float fallback: the fewest layers to keep float that meet a budget.

A *candidate* is a module path that ``XnnpackQuantizer.set_module_name(path,
None)`` can keep float: the innermost module of each quantized node (nodes in
the root's own ``forward`` have none and are listed as not candidates).

The search, worked on the test model ``fc1 → fc2 → relu → fc3`` whose fc1
output has one channel ×1000 (fc2's weights compensate, so fp32 is unchanged)::

    baseline (all int8)                      1.9 dB   budget 30 dB: not met
    1. sensitivity, one layer float at a time:
         fc1 1.9 dB   fc2 2.3 dB   fc3 1.9 dB  (neither alone helps: fc1's output
         is still quantized for fc2, or fc2's input still is)
    2. greedy: add layers best-first until the budget is met:
         {fc2} 2.3 → {fc2, fc1} 42.5 dB: met
    3. prune: drop each kept layer whose removal still meets the budget
         (none here) → keep {fc1, fc2}

The result is irreducible (no kept layer can be dropped), not proven minimum:
exhaustive search is exponential.  Evaluations cost ``n + k + k`` conversions
for ``n`` candidates and ``k`` kept layers.

Calibration runs once.  A prepared graph computes in fp32 whatever is kept
float, so an observer watching the same tensors with the same settings sees the
same values in every candidate's graph; its calibrated state is copied instead
of re-running calibration.  Observers with no identical twin (a tensor that was
inside a fused or shared group and now needs its own, e.g. a linear's output
once its relu is float) are calibrated alone: the copied ones are parked for
that run, so no observer sees a batch twice.  Counted in
:attr:`FallbackReport.recalibrated` and ``observers_calibrated``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch.fx import GraphModule

from .debugger import _float_leaves, _is_observer, module_path

__all__ = ["Budget", "sqnr_budget", "metric_budget", "LayerSensitivity", "FallbackReport",
           "find_float_fallback"]


@dataclass(frozen=True)
class Budget:
    """What "accurate enough" means for :func:`find_float_fallback`.  Make one with
    :func:`sqnr_budget` or :func:`metric_budget`.

    Attributes:
        min_sqnr_db: output SQNR against fp32 the quantized model must reach (SQNR budget).
        metric: ``metric(model) -> float``, higher is better, called with the fp32
            module and with each converted candidate (metric budget).
        tolerance: how far below the fp32 metric the quantized one may be.
    """

    min_sqnr_db: Optional[float] = None
    metric: Optional[Callable[[torch.nn.Module], float]] = None
    tolerance: float = 0.0

    def __post_init__(self):
        if (self.min_sqnr_db is None) == (self.metric is None):
            raise ValueError("a Budget needs exactly one of min_sqnr_db or metric; "
                             "use sqnr_budget(db) or metric_budget(fn, tolerance=...)")
        if self.metric is not None and not callable(self.metric):
            raise TypeError(f"metric must be callable as metric(model) -> float, got {self.metric!r}")
        if not (isinstance(self.tolerance, (int, float)) and self.tolerance >= 0):
            raise ValueError(f"tolerance must be a number >= 0, got {self.tolerance!r}")
        if self.min_sqnr_db is not None and not isinstance(self.min_sqnr_db, (int, float)):
            raise TypeError(f"min_sqnr_db must be a number of dB, got {self.min_sqnr_db!r}")

    def target(self, fp32_score: float) -> float:
        """The score a candidate must reach, given the fp32 model's score."""
        return self.min_sqnr_db if self.metric is None else fp32_score - self.tolerance

    def describe(self) -> str:
        if self.metric is None:
            return f"output SQNR >= {self.min_sqnr_db:g} dB"
        name = getattr(self.metric, "__name__", "metric")
        return f"{name} within {self.tolerance:g} of fp32"


def sqnr_budget(*, min_sqnr_db: float) -> Budget:
    """A budget on output SQNR against fp32 (pooled over the evaluation batches, worst output)."""
    return Budget(min_sqnr_db=min_sqnr_db)


def metric_budget(*, metric: Callable[[torch.nn.Module], float], tolerance: float) -> Budget:
    """A budget on a user metric: ``metric(quantized) >= metric(fp32) - tolerance``.

    Example: top-1 agreement within 1 point is ``metric_budget(metric=top1, tolerance=1.0)``
    with ``top1(model)`` returning percent correct on the user's data.
    """
    return Budget(metric=metric, tolerance=tolerance)


@dataclass(frozen=True)
class LayerSensitivity:
    """The score with one candidate layer kept float (everything else int8).

    Attributes:
        module: the module path (``set_module_name`` spelling).
        score: output SQNR (dB) or metric value with that layer float.
        gain: ``score`` minus the all-int8 score.
        nodes: quantized nodes the layer covers.
        float_bytes: extra bytes its weights take in fp32 rather than int8 (3 per element).
    """

    module: str
    score: float
    gain: float
    nodes: int
    float_bytes: int


@dataclass(frozen=True)
class FallbackReport:
    """The result of :func:`find_float_fallback`.

    Attributes:
        quantizer: a new ``XnnpackQuantizer``: the one given, plus
            ``set_module_name(m, None)`` for every kept module.
        kept_float: the module paths kept float, in the order they were added.
        met: whether the budget is met (False: even every candidate float does not).
        budget: the :class:`Budget`.
        fp32_score: the fp32 model's score (``inf`` for an SQNR budget).
        baseline_score: the score with everything quantized.
        score: the score with ``kept_float`` float.
        sensitivity: one :class:`LayerSensitivity` per candidate, best gain first.
        not_candidates: quantized nodes no module path can reach, with the reason.
        evaluations: conversions evaluated.
        recalibrated: evaluations that ran calibration for observers with no calibrated twin.
        observers_calibrated: how many observers those runs calibrated (all others were copied).
        float_bytes: extra weight bytes of ``kept_float`` in fp32 (size cost; latency is not measured
            here, lower both with ``xnnquant.passes.lower_to_xnnpack`` to time them).
    """

    quantizer: object
    kept_float: tuple
    met: bool
    budget: Budget
    fp32_score: float
    baseline_score: float
    score: float
    sensitivity: tuple
    not_candidates: tuple = ()
    evaluations: int = 0
    recalibrated: int = 0
    observers_calibrated: int = 0
    float_bytes: int = 0

    def format(self) -> str:
        unit = " dB" if self.budget.metric is None else ""
        lines = [
            f"budget: {self.budget.describe()} -> {'met' if self.met else 'NOT met'}",
            f"all int8: {_fmt(self.baseline_score)}{unit}; with {len(self.kept_float)} layer(s) float: "
            f"{_fmt(self.score)}{unit}" + ("" if self.budget.metric is None else
                                          f" (fp32 {_fmt(self.fp32_score)})"),
            f"kept float: {', '.join(self.kept_float) or 'none'} "
            f"(+{self.float_bytes:,} B of fp32 weights)",
            f"{self.evaluations} evaluations; {self.recalibrated} calibrated "
            f"{self.observers_calibrated} new observer(s), the rest copied; sensitivity "
            "(one layer float at a time, best first):",
        ]
        for s in self.sensitivity[:10]:
            lines.append(f"  {s.module:<32} {_fmt(s.score):>8}{unit}  gain {s.gain:+.2f}  "
                         f"nodes {s.nodes}  +{s.float_bytes:,} B")
        if len(self.sensitivity) > 10:
            lines.append(f"  ... {len(self.sensitivity) - 10} more")
        for name, reason in self.not_candidates:
            lines.append(f"not a candidate: {name}: {reason}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _fmt(value: float) -> str:
    return "inf" if value == math.inf else f"{value:.2f}"


# -- observer reuse --------------------------------------------------------------------------


def _observer_groups(prepared: GraphModule) -> dict:
    """observer instance id → (the names it is registered under, a key saying what it watches).

    The key is the set of nodes it observes plus its settings: two observers
    with the same key see the same tensors, so they calibrate to the same state.
    """
    groups: dict = {}
    for node in prepared.graph.nodes:
        if not _is_observer(prepared, node):
            continue
        module = prepared.get_submodule(node.target)
        names, watched, _ = groups.setdefault(id(module), ([], set(), module))
        names.append(node.target)
        watched.add(node.args[0].name)
    out = {}
    for key, (names, watched, module) in groups.items():
        settings = tuple(repr(getattr(module, a, None)) for a in
                         ("dtype", "qscheme", "quant_min", "quant_max", "ch_axis", "eps", "bins",
                          "reduce_range", "is_dynamic"))
        out[key] = (names, (type(module), frozenset(watched), settings), module)
    return out


def _reuse_observers(calibrated: GraphModule, fresh: GraphModule) -> list:
    """Copy calibrated observer states into ``fresh``; return the names of the observers left to calibrate.

    Each entry of the result lists the names one observer instance is
    registered under in ``fresh``.
    """
    by_key = {key: module for _, key, module in _observer_groups(calibrated).values()}
    missing = []
    for names, key, _ in _observer_groups(fresh).values():
        source = by_key.get(key)
        if source is None:
            missing.append(names)
            continue
        copied = copy.deepcopy(source)
        for name in names:
            fresh.register_module(name, copied)
    return missing


def _calibrate_only(prepared: GraphModule, missing: list, calibration: list) -> None:
    """Run calibration through ``prepared`` feeding only the observers named in ``missing``.

    The others (already calibrated) are parked as identities for the run, so
    they see no batch twice and cost nothing.
    """
    from ..workflow import calibrate

    wanted = {name for names in missing for name in names}
    parked = {}
    for node in prepared.graph.nodes:
        if node.target not in wanted and node.target not in parked and _is_observer(prepared, node):
            parked[node.target] = prepared.get_submodule(node.target)
    for name in parked:
        prepared.register_module(name, torch.nn.Identity())
    try:
        calibrate(prepared, calibration)
    finally:
        for name, module in parked.items():
            prepared.register_module(name, module)


# -- the search --------------------------------------------------------------------------------


def _candidates(prepared: GraphModule) -> tuple:
    """(module path → number of quantized nodes, [(node, reason) not reachable]) in graph order."""
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    found: dict = {}
    unreachable = []
    for node in prepared.graph.nodes:
        ann = node.meta.get(Q_ANNOTATION_KEY)
        if ann is None or not (ann.input_qspec_map or ann.output_qspec is not None):
            continue
        path = module_path(node)
        if not path:
            unreachable.append((node.name, "traced in the root module's forward; no module "
                                           "path keeps it float (wrap it in a submodule)"))
            continue
        found[path] = found.get(path, 0) + 1
    return found, unreachable


def _float_bytes(root: torch.nn.Module, path: str) -> int:
    try:
        module = root.get_submodule(path)
    except AttributeError:
        return 0
    return 3 * sum(p.numel() for p in module.parameters() if p.is_floating_point())


def find_float_fallback(
    model,
    example_inputs: tuple,
    calibration: Iterable,
    *,
    budget: Budget,
    quantizer=None,
    ir: str = "training",
    eval_data: Optional[Sequence] = None,
    candidates: Optional[Sequence[str]] = None,
    max_float: Optional[int] = None,
    progress: bool = True,
) -> FallbackReport:
    """Find the fewest layers to keep float so that the quantized model meets ``budget``.

    Args:
        model: an ``nn.Module`` (exported to ``ir``; not modified) or an ``ExportedProgram``.
        example_inputs: tuple of example tensors.
        calibration: calibration batches; calibration runs once.
        budget: from :func:`sqnr_budget` or :func:`metric_budget`.
        quantizer: the ``XnnpackQuantizer`` to start from (default: ``XnnpackQuantizer()``);
            not modified.
        ir: ``"training"`` or ``"core"``, when ``model`` is an ``nn.Module``.
        eval_data: batches the SQNR budget is measured on (default: the calibration batches).
        candidates: module paths to consider (default: every module holding a quantized node).
        max_float: stop adding layers at this many.
        progress: a tqdm progress bar over the evaluations (when tqdm is installed).

    Returns:
        A :class:`FallbackReport` with the ready quantizer.

    Raises:
        TypeError: ``quantizer`` has no ``set_module_name``.
        ValueError: a QAT config, no calibration data, or an unknown candidate.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from ..quantizer import XnnpackQuantizer
    from ..workflow import calibrate, export_model, sqnr

    base = XnnpackQuantizer() if quantizer is None else quantizer
    if not callable(getattr(base, "set_module_name", None)):
        raise TypeError(f"quantizer must support set_module_name (XnnpackQuantizer); got {type(base).__name__}")
    if getattr(base, "_any_qat", lambda: False)():
        raise ValueError("find_float_fallback works on post-training quantization; "
                         "pass a quantizer with a static or dynamic config, not a QAT one")
    if isinstance(model, torch.export.ExportedProgram):
        ep = model
    else:
        ep = export_model(copy.deepcopy(model), example_inputs, ir=ir)
    calibration = [b if isinstance(b, tuple) else (b,) for b in calibration]
    if not calibration:
        raise ValueError("calibration data is empty: pass at least one batch of representative inputs")
    eval_batches = [b if isinstance(b, tuple) else (b,) for b in (eval_data or calibration)]

    fp32 = ep.module()
    with torch.no_grad():
        fp32_outputs = [_float_leaves(fp32(*b)) for b in eval_batches]

    def score_of(converted: GraphModule) -> float:
        if budget.metric is not None:
            return float(budget.metric(converted))
        with torch.no_grad():
            actual = [_float_leaves(converted(*b)) for b in eval_batches]
        return min(sqnr(torch.cat([r[i].flatten() for r in fp32_outputs]),
                        torch.cat([a[i].flatten() for a in actual]))
                   for i in range(len(fp32_outputs[0])))

    fp32_score = math.inf if budget.metric is None else float(budget.metric(fp32))
    target = budget.target(fp32_score)

    calibrated = prepare_pt2e(ep.module(), copy.deepcopy(base))
    calibrate(calibrated, calibration)
    found, unreachable = _candidates(calibrated)
    if candidates is not None:
        unknown = [c for c in candidates if c not in found]
        if unknown:
            raise ValueError(f"unknown candidate module(s) {unknown}; modules holding quantized "
                             f"nodes: {sorted(found)}")
        found = {c: found[c] for c in candidates}
    names = list(found)

    bar = _progress(progress, total=1 + len(names))
    cache: dict = {}
    counts = {"evaluations": 0, "recalibrated": 0, "observers": 0}

    def quantizer_for(kept) -> object:
        q = copy.deepcopy(base)
        for name in kept:
            q.set_module_name(name, None)
        return q

    def evaluate(kept: frozenset) -> float:
        if kept in cache:
            return cache[kept]
        prepared = prepare_pt2e(ep.module(), quantizer_for(sorted(kept)))
        missing = _reuse_observers(calibrated, prepared)
        if missing:
            _calibrate_only(prepared, missing, calibration)
            counts["recalibrated"] += 1
            counts["observers"] += len(missing)
        cache[kept] = score_of(convert_pt2e(prepared))
        counts["evaluations"] += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{len(kept)} float: {_fmt(cache[kept])}")
        return cache[kept]

    try:
        baseline = evaluate(frozenset())
        singles = {name: evaluate(frozenset({name})) for name in names}
        # Best gain first; graph order breaks ties, so the search is deterministic.
        ranked = sorted(names, key=lambda n: (-singles[n], names.index(n)))
        kept: list = []
        score = baseline
        if bar is not None:
            bar.total = bar.n + len(ranked)
        for name in ranked:
            if score >= target or (max_float is not None and len(kept) >= max_float):
                break
            kept.append(name)
            score = evaluate(frozenset(kept))
        if score >= target:
            # Prune, latest first: a layer added before the one that met the
            # budget may have been needed only with layers the search tried after.
            for name in reversed(list(kept)):
                trial = [k for k in kept if k != name]
                if evaluate(frozenset(trial)) >= target:
                    kept = trial
            score = evaluate(frozenset(kept))
    finally:
        if bar is not None:
            bar.close()

    root = model if isinstance(model, torch.nn.Module) else fp32
    sensitivity = tuple(
        LayerSensitivity(module=n, score=singles[n], gain=singles[n] - baseline, nodes=found[n],
                         float_bytes=_float_bytes(root, n))
        for n in ranked)
    return FallbackReport(
        quantizer=quantizer_for(kept), kept_float=tuple(kept), met=score >= target, budget=budget,
        fp32_score=fp32_score, baseline_score=baseline, score=score, sensitivity=sensitivity,
        not_candidates=tuple(unreachable), evaluations=counts["evaluations"],
        recalibrated=counts["recalibrated"], observers_calibrated=counts["observers"],
        float_bytes=sum(_float_bytes(root, n) for n in kept))


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is cosmetic; the search runs without it
        return None
    return tqdm(total=total, desc="float fallback", unit="eval")
