"""The export → prepare → calibrate → convert workflow, written once.

Tests, examples and the benchmark all go through these helpers so that every
contender sees the same export, the same calibration data and the same checks.
They wrap torch.export and torchao's ``prepare_pt2e`` / ``convert_pt2e``; they
insert no observers of their own.
"""

from __future__ import annotations

import copy
import math
import threading
from typing import Callable, Iterable, Literal, Optional, Sequence

import torch
from torch.fx import GraphModule

from ._quiet import quiet_third_party

IR = Literal["training", "core"]
IRS: tuple[IR, ...] = ("training", "core")


#: One process-wide lock around everything that traces: torch.export keeps its
#: state in module globals and torch's dispatch-mode slots are process-wide, so two
#: exports at once fail ("ProxyTorchDispatchMode slot already occupied", measured with
#: two threads quantizing), and so do two ExecuTorch lowerings.  ``quantize`` and
#: ``export_model`` hold it, and so does ``xnnquant.passes.lower_to_xnnpack`` from
#: copying its program to serializing it.  Reentrant: ``quantize`` exports inside it.
#: Calls from several threads are safe and take turns.
TRACING_LOCK = threading.RLock()


class CalibrationError(ValueError):
    """Calibration data that cannot produce meaningful quantization parameters."""


class ExportError(RuntimeError):
    """A model that torch.export could not capture."""


class ModelError(ValueError):
    """A model post-training quantization cannot take as given: in training mode, or already quantized."""


# Ops whose result depends on training mode, as each IR spells them, and the index of
# their "training" flag: batch norm normalizes with the batch's statistics (and updates
# the running ones), dropout zeroes values at random.
_TRAINING_MODE_OPS = {
    torch.ops.aten.batch_norm.default: (5, "batch norm"),
    torch.ops.aten._native_batch_norm_legit_functional.default: (5, "batch norm"),
    torch.ops.aten._native_batch_norm_legit.default: (5, "batch norm"),
    torch.ops.aten.native_batch_norm.default: (5, "batch norm"),
    torch.ops.aten.dropout.default: (2, "dropout"),
    torch.ops.aten.native_dropout.default: (2, "dropout"),
}


def check_not_in_training_mode(model) -> None:
    """Raise :class:`ModelError` when ``model`` would compute differently in eval mode.

    Post-training quantization calibrates what the model computes at inference:
    a batch norm in training mode normalizes each calibration batch with its own
    statistics (and moves the running ones), a dropout zeroes values at random,
    so the observers would record ranges the deployed model never produces.
    The model is not switched to eval here: that would change the caller's
    module (or, on a copy, silently quantize something else than was asked for).

    Args:
        model: an ``nn.Module``, an ``ExportedProgram`` or a ``GraphModule``; a
            module is checked by its submodules' ``training`` flags, a graph by
            the training flag of its batch norm and dropout nodes.
    """
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.dropout import _DropoutNd

    found = []
    if isinstance(model, torch.export.ExportedProgram):
        model = model.graph_module
    if isinstance(model, GraphModule):
        for node in model.graph.nodes:
            entry = _TRAINING_MODE_OPS.get(node.target) if node.op == "call_function" else None
            if entry is None:
                continue
            index, kind = entry
            flag = node.args[index] if len(node.args) > index else node.kwargs.get("training",
                                                                                  node.kwargs.get("train"))
            if flag is True:
                found.append(f"{kind} node {node.name!r}")
    if not found:  # an exported graph keeps no training-mode submodules; a plain module does
        found = [f"{type(m).__name__} {name!r}" for name, m in model.named_modules()
                 if m.training and isinstance(m, (_BatchNorm, _DropoutNd))]
    if found:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise ModelError(
            f"the model is in training mode ({shown}): post-training quantization would calibrate "
            "on batch statistics and random dropout, not on what the model computes at inference. "
            "Call model.eval() before quantizing (and before torch.export.export), or pass "
            "qat_train= for quantization-aware training.")


def check_not_quantized(gm: GraphModule) -> None:
    """Raise :class:`ModelError` when ``gm`` is already prepared (observers) or converted (q/dq nodes).

    Preparing such a graph again would observe the int8 rounding of the first
    quantization and quantize twice; torchao does it without a word.
    """
    from torchao.quantization.pt2e import ObserverBase
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

    for node in gm.graph.nodes:
        if node.op == "call_function" and getattr(node.target, "namespace", None) == "quantized_decomposed":
            raise ModelError(
                f"the model is already quantized (node {node.name!r} is "
                f"{node.target.name()}): quantize the original float model instead of the "
                "output of convert_pt2e / quantize, e.g. keep a copy of it before quantizing.")
    for name, module in gm.named_modules():
        if isinstance(module, (ObserverBase, FakeQuantizeBase)):
            raise ModelError(
                f"the model is already prepared for quantization (it holds the observer "
                f"{name!r}): calibrate it and call convert(...) on it, or prepare the "
                "original float model.")


@quiet_third_party
def export_model(
    model: torch.nn.Module,
    example_inputs: tuple,
    *,
    ir: IR = "training",
    dynamic_shapes=None,
) -> torch.export.ExportedProgram:
    """Export ``model`` to the requested IR without touching the caller's module.

    Args:
        model: an eval-mode (or QAT train-mode) ``nn.Module``.
        example_inputs: a tuple of example tensors.
        ir: ``"training"`` for what ``torch.export.export`` returns (``aten.linear``,
            ``aten.conv2d``), ``"core"`` for the core ATen IR after
            ``run_decompositions()`` (``aten.addmm``, ``aten.convolution``).
        dynamic_shapes: passed through to ``torch.export.export``.

    Returns:
        The ``ExportedProgram``.

    Raises:
        ValueError: ``ir`` is not one of ``IRS`` or inputs are not a tuple.
        ExportError: torch.export failed; the message says what to change.
    """
    if ir not in IRS:
        raise ValueError(f"ir must be one of {IRS}, got {ir!r}")
    if not isinstance(example_inputs, tuple):
        raise ValueError(
            "example_inputs must be a tuple of tensors, e.g. (x,); "
            f"got {type(example_inputs).__name__}"
        )
    with TRACING_LOCK:
        try:
            ep = torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes)
        except Exception as exc:  # torch raises many unrelated types here
            raise ExportError(_export_failure(model, exc)) from exc
        return ep.run_decompositions() if ir == "core" else ep


def _export_failure(model, exc: Exception) -> str:
    """The :class:`ExportError` message: what to change first, then torch.export's own words."""
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    text = str(exc)
    if isinstance(exc, GuardOnDataDependentSymNode) or "data-dependent" in text.lower() \
            or "data dependent" in text.lower():
        hint = (f"{type(model).__name__}.forward branches on the value of a tensor (data-dependent "
                "control flow, e.g. `if x.sum() > 0:`), which torch.export cannot capture. Make it "
                "traceable: compute both branches and pick with torch.where(cond, a, b), write the branch with "
                "torch.cond(pred, true_fn, false_fn, (x,)), or move the decision out of forward.")
    else:
        hint = ("Make the forward traceable (no data-dependent Python control flow, no "
                "untraceable side effects) or export a sub-module, then retry.")
    return (f"torch.export.export failed for {type(model).__name__}: {type(exc).__name__}.\n{hint}\n"
            f"torch.export said: {text}")


def calibrate(
    prepared: GraphModule,
    batches: Iterable[tuple],
    *,
    progress: bool = False,
    desc: str = "calibrating",
) -> int:
    """Run calibration batches through a prepared model.

    Every batch is checked before it reaches an observer, because a single NaN
    or Inf poisons min/max observers silently.

    Returns:
        The number of batches run.

    Raises:
        CalibrationError: no batch was given, a batch holds NaN/Inf, has
            another number of inputs or another dtype or shape than the
            exported ones, or the batches' iterator raised (chained).
    """
    expected = _exported_inputs(prepared)
    iterator = batches
    if progress:
        try:
            from tqdm import tqdm

            iterator = tqdm(batches, desc=desc, unit="batch")
        except ImportError:  # progress is cosmetic; calibration still runs
            pass
    count = 0
    with torch.no_grad():
        iterator = iter(iterator)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                break
            except Exception as exc:  # the user's data loader: any type
                raise CalibrationError(
                    f"the calibration data raised {type(exc).__name__} while producing batch "
                    f"{count}: {exc}\nFix the data loader; nothing was converted, so calibrate "
                    "again from a fresh prepare_pt2e.") from exc
            if not isinstance(batch, tuple):
                batch = (batch,)
            _check_batch(batch, expected, count)
            try:
                prepared(*batch)
            except Exception as exc:  # the model's own forward on this batch: any type
                raise CalibrationError(
                    f"calibration batch {count} raised {type(exc).__name__} in the model's forward "
                    f"({count} batches ran before it): {exc}\nFix that batch or the model; nothing "
                    "was converted, so calibrate again from a fresh prepare_pt2e.") from exc
            count += 1
    if count == 0:
        raise CalibrationError(
            "calibration data is empty: pass at least one batch of representative inputs"
        )
    return count


def _exported_inputs(prepared: GraphModule) -> list:
    """(dtype, shape) of each placeholder the export recorded; a symbolic size is None (any size)."""
    found = []
    for node in prepared.graph.find_nodes(op="placeholder"):
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            found.append(None)
            continue
        found.append((val.dtype, tuple(d if isinstance(d, int) else None for d in val.shape)))
    return found


def _check_batch(batch: tuple, expected: list, count: int) -> None:
    if expected and len(batch) != len(expected):
        raise CalibrationError(
            f"calibration batch {count} has {len(batch)} inputs, the exported model takes "
            f"{len(expected)}; give each batch as a tuple of the forward's arguments.")
    for i, t in enumerate(batch):
        want = expected[i] if expected else None
        if isinstance(t, torch.Tensor) and want is not None:
            dtype, shape = want
            if t.dtype != dtype:
                raise CalibrationError(
                    f"calibration batch {count} input {i} has dtype {t.dtype}, the model was "
                    f"exported with {dtype}; convert the data (e.g. x.to({dtype})).")
            if t.dim() != len(shape) or any(s is not None and s != n for s, n in zip(shape, t.shape)):
                shown = tuple("any" if s is None else s for s in shape)
                raise CalibrationError(
                    f"calibration batch {count} input {i} has shape {tuple(t.shape)}, the model "
                    f"was exported for {shown}; reshape the data, or export with dynamic_shapes "
                    "for the dims that vary.")
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
            raise CalibrationError(
                f"calibration batch {count} input {i} contains NaN or Inf; "
                "clean or clip the data before calibrating")


def _observed_range(observer) -> tuple | None:
    """(min, max) tensors an observer (or a fake quantizer's inner observer) has recorded; None if it keeps none."""
    inner = getattr(observer, "activation_post_process", observer)
    lo, hi = getattr(inner, "min_val", None), getattr(inner, "max_val", None)
    if not isinstance(lo, torch.Tensor) or not isinstance(hi, torch.Tensor):
        return None  # e.g. PlaceholderObserver (dynamic quantization): nothing is recorded
    return lo, hi


# HistogramObserver searches its clipping range with sums of cubed bin widths in
# float32; beyond about ±1e15 they overflow and it picks [min, 0] or worse (measured
# on torchao 0.18: randn·1e15 got zero point 127, i.e. every positive value clipped to 0).
# 1e12 keeps a margin: ranges below it gave the same scale as min/max would.
HISTOGRAM_RANGE_LIMIT = 1e12


def check_calibrated(prepared: GraphModule, batches_run: Optional[int] = None) -> None:
    """Raise :class:`CalibrationError` unless every observer in ``prepared`` recorded a usable range.

    torchao's ``convert_pt2e`` on an observer that never ran only warns
    ("must run observer before calling calculate_qparams") and quantizes with
    scale 1.0 and zero point 0: a program that lowers and runs, and returns
    values rounded to whole numbers.  An observer that recorded an infinite
    range (an Inf weight, or activations that overflow float32) would give an
    infinite scale and NaN outputs; a histogram observer over a range beyond
    :data:`HISTOGRAM_RANGE_LIMIT` silently picks a wrong one.

    Args:
        prepared: the output of ``prepare_pt2e`` / ``prepare_qat_pt2e``.
        batches_run: how many calibration batches went through it, when known;
            it tells "never calibrated" from "saw only Inf/NaN".
    """
    from torchao.quantization.pt2e import HistogramObserver, ObserverBase
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

    for name, module in prepared.named_modules():
        if not isinstance(module, (ObserverBase, FakeQuantizeBase)):
            continue
        observed = _observed_range(module)
        if observed is None:
            continue
        lo, hi = observed
        if lo.numel() == 0 or bool((lo > hi).any()):
            if batches_run:  # HistogramObserver drops a batch holding Inf: it saw nothing finite
                raise CalibrationError(
                    f"observer {name!r} saw no finite value in {batches_run} calibration batches: "
                    "the tensor it observes is Inf or NaN, e.g. activations that overflow float32 "
                    "(weights near 1e38) or an Inf weight. Check the model's parameters (e.g. "
                    "torch.isfinite(p).all() for each) and scale them down.")
            raise CalibrationError(
                f"observer {name!r} has seen no data: the prepared model was never calibrated. "
                "Run calibrate(prepared, batches) (or the model on representative inputs) "
                "before converting; without it every scale would be 1.0.")
        if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            raise CalibrationError(
                f"observer {name!r} recorded an infinite range [{lo.min().item()}, "
                f"{hi.max().item()}]: a weight or an activation there is Inf, or overflows "
                "float32. Check the model's parameters (e.g. torch.isfinite(p).all() for each) "
                "and scale them down.")
        inner = getattr(module, "activation_post_process", module)
        bound = max(abs(lo.min().item()), abs(hi.max().item()))
        if isinstance(inner, HistogramObserver) and bound > HISTOGRAM_RANGE_LIMIT:
            raise CalibrationError(
                f"observer {name!r} (a HistogramObserver) recorded values up to {bound:.3g}; its "
                f"clipping search overflows float32 beyond about {HISTOGRAM_RANGE_LIMIT:g} and "
                "would pick a wrong range. Quantize with get_config(observer='minmax'), "
                "or scale the model's weights down.")


def convert(prepared: GraphModule, *, batches_run: Optional[int] = None) -> GraphModule:
    """``convert_pt2e(prepared)`` after :func:`check_calibrated` (``batches_run`` goes to it).

    Raises:
        CalibrationError: an observer saw no data, or a range it cannot quantize.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    check_calibrated(prepared, batches_run)
    return convert_pt2e(prepared)


@quiet_third_party
def quantize(
    model: torch.nn.Module | torch.export.ExportedProgram,
    example_inputs: tuple,
    calibration: Iterable[tuple] | None,
    quantizer,
    *,
    ir: IR = "training",
    qat_train: Callable[[GraphModule], None] | None = None,
    progress: bool = False,
    alarm_sqnr_db: float | None = 15.0,
    dynamic_shapes=None,
) -> GraphModule:
    """Export (if needed), prepare, calibrate and convert.

    Args:
        model: an ``nn.Module`` (exported here to ``ir``) or an ``ExportedProgram``.
        example_inputs: tuple of example tensors.
        calibration: batches (tuples of tensors) for post-training calibration.
            ``None`` calibrates on ``example_inputs`` alone.
        quantizer: any torchao PT2E ``Quantizer``.
        ir: which IR to export to when ``model`` is an ``nn.Module``.
        qat_train: when given, ``prepare_qat_pt2e`` is used and this callable
            trains the prepared module in place before conversion.
        progress: show a progress bar while calibrating.
        dynamic_shapes: passed to :func:`export_model` when ``model`` is an
            ``nn.Module`` (an ``ExportedProgram`` keeps its own); the converted
            graph keeps the dynamic dims, and ``lower_to_xnnpack`` reads them.
        alarm_sqnr_db: after converting, measure the output SQNR against fp32 on
            the first two calibration batches and warn (``AccuracyWarning``, naming
            the worst layers) below this many dB; ``None`` skips the check.  Not
            run for QAT, which has no calibration data.

    Returns:
        The converted ``GraphModule`` with quantize/dequantize nodes; the
        alarm's figure is in ``.meta["xnnquant_accuracy"]`` (an
        :class:`~xnnquant.quantizer.accuracy.OutputAccuracy`, None if not measured).

    Raises:
        ModelError: for post-training quantization, ``model`` is in training
            mode (a batch norm or dropout; call ``model.eval()``, the caller's
            model is never switched), or it is already prepared or quantized.
        ExportError: torch.export could not capture ``model``.
        CalibrationError: see :func:`calibrate` and :func:`check_calibrated`.
    """
    with TRACING_LOCK:  # several threads take turns (see TRACING_LOCK)
        return _quantize(model, example_inputs, calibration, quantizer, ir=ir, qat_train=qat_train,
                         progress=progress, alarm_sqnr_db=alarm_sqnr_db, dynamic_shapes=dynamic_shapes)


def _quantize(model, example_inputs, calibration, quantizer, *, ir, qat_train, progress, alarm_sqnr_db,
              dynamic_shapes) -> GraphModule:
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

    if qat_train is None:
        check_not_in_training_mode(model)
    if isinstance(model, GraphModule):  # before export, whose errors on q/dq say less
        check_not_quantized(model)
    if isinstance(model, torch.export.ExportedProgram):
        if dynamic_shapes is not None:
            raise ValueError(
                "dynamic_shapes is for exporting an nn.Module; this ExportedProgram already has "
                "its shapes. Pass dynamic_shapes to export_model (or torch.export.export) instead.")
        ep = model
    else:
        # Export works on a copy: prepare mutates the graph module it is given.
        ep = export_model(copy.deepcopy(model), example_inputs, ir=ir,
                          dynamic_shapes=dynamic_shapes)
    gm = ep.module()
    check_not_quantized(gm)
    batches_run = None
    if qat_train is not None:
        prepared = prepare_qat_pt2e(gm, quantizer)
        qat_train(prepared)
        move_exported_model_to_eval(prepared)
    else:
        prepared = prepare_pt2e(gm, quantizer)
        batches = calibration if calibration is not None else [example_inputs]
        recorder = None
        if alarm_sqnr_db is not None:
            from .accuracy.alarm import OutputRecorder

            recorder = OutputRecorder(prepared)
            batches = recorder.keep(batches)
        try:
            batches_run = calibrate(prepared, batches, progress=progress)
        finally:
            if recorder is not None:
                recorder.close()
    converted = convert(prepared, batches_run=batches_run)
    if alarm_sqnr_db is not None and qat_train is None:
        from .accuracy.alarm import ACCURACY_KEY

        converted.meta[ACCURACY_KEY] = recorder.check(ep, converted, quantizer,
                                                      threshold_db=alarm_sqnr_db)
    return converted


def sqnr(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: ``10·log10(Σref² / Σ(ref−test)²)``.

    Returns ``inf`` when the two agree exactly.
    """
    reference = reference.detach().float()
    noise = (reference - test.detach().float()).pow(2).sum().item()
    return sqnr_from_sums(reference.pow(2).sum().item(), noise)


def sqnr_from_sums(signal: float, noise: float) -> float:
    """:func:`sqnr` from ``Σref²`` and ``Σ(ref−test)²`` already summed (pooled over batches)."""
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def count_ops(gm: GraphModule, targets: Sequence) -> int:
    """Number of ``call_function`` nodes whose target is in ``targets``."""
    wanted = set(targets)
    return sum(1 for n in gm.graph.nodes if n.op == "call_function" and n.target in wanted)
