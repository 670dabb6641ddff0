"""The export → prepare → calibrate → convert workflow, written once.

Tests, examples and the benchmark all go through these helpers so that every
contender sees the same export, the same calibration data and the same checks.
They wrap torch.export and torchao's ``prepare_pt2e`` / ``convert_pt2e``; they
insert no observers of their own.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Iterable, Literal, Sequence

import torch
from torch.fx import GraphModule

from ._quiet import quiet_third_party

IR = Literal["training", "core"]
IRS: tuple[IR, ...] = ("training", "core")


class CalibrationError(ValueError):
    """Calibration data that cannot produce meaningful quantization parameters."""


class ExportError(RuntimeError):
    """A model that torch.export could not capture."""


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
    try:
        ep = torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes)
    except Exception as exc:  # torch raises many unrelated types here
        raise ExportError(
            f"torch.export.export failed for {type(model).__name__}: {exc}\n"
            "Make the forward traceable (no data-dependent Python control flow, "
            "no untraceable side effects) or export a sub-module, then retry."
        ) from exc
    return ep.run_decompositions() if ir == "core" else ep


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
            prepared(*batch)
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
    """
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import (
        convert_pt2e,
        prepare_pt2e,
        prepare_qat_pt2e,
    )

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
            calibrate(prepared, batches, progress=progress)
        finally:
            if recorder is not None:
                recorder.close()
    converted = convert_pt2e(prepared)
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
