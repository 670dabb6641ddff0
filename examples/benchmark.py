"""Side-by-side benchmark: fp32 XNNPACK vs ExecuTorch's XNNPACKQuantizer vs xnnquant, on both export IRs.

For every model, all contenders get the same model instance, the same
calibration batches and the same held-out inputs:

* ``fp32``                  float model lowered to XNNPACK;
* ``et-training``/``et-core``   ExecuTorch's ``XNNPACKQuantizer`` with
  ``get_symmetric_quantization_config(is_per_channel=True)``;
* ``xnnquant-training``/``xnnquant-core``  ``XnnpackQuantizer()``.

Columns: quantized compute ops / all compute ops in the converted graph, XNNPACK
delegates and ops left outside them, SQNR of the ``.pte`` output against the
eager fp32 model, median runtime latency (contenders interleaved run by run),
latency ratios against fp32 and against ``et-training`` (ExecuTorch's default
flow), ``.pte`` size, and quantize time (prepare + calibrate + convert).

A contender that fails (for example ExecuTorch's quantizer on the core IR)
gets its error in the table and the JSON; the run goes on.

    python examples/benchmark.py                      # full run, ~8 min on 2 idle cores
    python examples/benchmark.py --quick              # tiny digits CNN, about a minute
    python examples/benchmark.py --models resnet18 --iters 50 --json out/r18.json
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

# Run as a script, Python puts examples/ (not the repo root) on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from examples.common import (  # noqa: E402
    interleaved_latency,
    median_ms,
    quiet_native_stderr,
    run_method,
    silence_library_noise,
)
from examples.models import MODELS, TINY_MODELS, example_inputs  # noqa: E402

silence_library_noise()

from xnnquant.passes.report import is_dequantize, is_quantize  # noqa: E402
from xnnquant.quantizer.graph import TRANSPOSES, schema_args  # noqa: E402
from xnnquant.quantizer.patterns import (  # noqa: E402
    ACTIVATION_BOUNDS,
    RECORDS,
    SHARED_TARGETS,
    Role,
    record_for,
    targets_of,
)

def _compute_records():
    """Records whose int8-ness decides speed: all but data movement and standalone clamps."""
    return [r for r in RECORDS if not (r.reference is not None and r.reference.kernel is None)
            and not any(sp.bounds is not None for sp in r.spellings)]


#: Ops whose int8-ness decides speed (from the op table); data movement is not counted.
COMPUTE_OPS = targets_of(_compute_records())

# Ops a q/dq pair may be separated from its compute op by without changing what runs in int8:
# layout ops on the way in (core IR puts permute between a weight's dq and addmm, view around
# 3-D linears) and fused activations / getitem on the way out.
_LAYOUT_OPS = SHARED_TARGETS - frozenset(ACTIVATION_BOUNDS) | TRANSPOSES
_OUTPUT_FUSIBLE = _LAYOUT_OPS | frozenset(ACTIVATION_BOUNDS)


def _bias(node):
    """The node's bias argument (which both quantizers may leave in float), if its record has one."""
    rec = record_for(node)
    if rec is None:
        return None
    values = schema_args(node)
    return next((values.get(a.name) for a in rec.args_of(node.target) if a.role is Role.BIAS), None)


@dataclass(frozen=True)
class Contender:
    """One way of producing a ``.pte``: a quantizer factory (``None`` = fp32), an export IR,
    and whether xnnquant's pre-lowering passes run (``False`` = ExecuTorch's stock lowering)."""

    name: str
    make_quantizer: Optional[Callable[[], object]]
    ir: str
    xnnquant_passes: bool = True


def _et_quantizer():
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))


def _xnnquant_quantizer():
    from xnnquant.quantizer import XnnpackQuantizer

    return XnnpackQuantizer()


CONTENDERS = (
    Contender("fp32", None, "training"),
    # ExecuTorch's flow end to end: its quantizer, then plain to_edge_transform_and_lower,
    # so the comparison is against what an ExecuTorch user gets today.
    Contender("et-training", _et_quantizer, "training", xnnquant_passes=False),
    Contender("et-core", _et_quantizer, "core", xnnquant_passes=False),
    Contender("xnnquant-training", _xnnquant_quantizer, "training"),
    Contender("xnnquant-core", _xnnquant_quantizer, "core"),
)
BASELINE = "et-training"

# ExecuTorch lowering costs 5-10 s per program even for a tiny model, so the smoke
# run defaults to the one model that has conv, pool, add and linear.
QUICK_MODELS = ("digits_cnn",)


@dataclass
class Result:
    """One contender on one model; ``error`` is set (and later fields stay ``None``) on failure."""

    model: str
    contender: str
    ir: str
    error: Optional[str] = None
    quantized_ops: Optional[int] = None
    compute_ops: Optional[int] = None
    delegates: Optional[int] = None
    ops_outside: list = field(default_factory=list)
    sqnr_db: Optional[float] = None
    latency_ms: Optional[float] = None
    latency_vs_fp32: Optional[float] = None
    latency_vs_baseline: Optional[float] = None
    pte_bytes: Optional[int] = None
    quantize_s: Optional[float] = None
    lower_s: Optional[float] = None


def _reaches_dq(node) -> bool:
    while node.op == "call_function" and node.target in _LAYOUT_OPS:
        node = node.args[0]
    return is_dequantize(node)


def _feeds_q_only(node) -> bool:
    users = list(node.users)
    if not users:
        return False
    for user in users:
        if is_quantize(user):
            continue
        passthrough = user.op == "call_function" and (
            user.target in _OUTPUT_FUSIBLE or user.target is operator.getitem
        )
        if not (passthrough and _feeds_q_only(user)):
            return False
    return True


def quantized_op_count(gm: torch.fx.GraphModule) -> tuple[int, int]:
    """(compute ops that sit between dq and q, all compute ops) in a converted graph.

    A compute op counts as quantized when every tensor input except its bias
    comes from a dequantize (possibly through layout ops such as core IR's
    weight ``permute``) and every use of its output ends in a quantize (possibly
    through a fused relu/hardtanh or a ``getitem``).  For example, core IR's
    ``x → q → dq → view → addmm(bias, ·, permute(dq(w))) → q`` counts; an
    ``addmm`` fed by a float ``view`` does not.
    """
    from xnnquant.quantizer.workflow import count_ops

    quantized = 0
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in COMPUTE_OPS:
            continue
        bias = _bias(node)
        inputs = [a for a in node.all_input_nodes if a is not bias]
        if inputs and all(_reaches_dq(a) for a in inputs) and _feeds_q_only(node):
            quantized += 1
    return quantized, count_ops(gm, COMPUTE_OPS)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def bench_model(name: str, model: torch.nn.Module, shape, args) -> list[Result]:
    """Quantize, lower and measure every contender on one model; see the module docstring."""
    from xnnquant.passes import lower_to_xnnpack
    from xnnquant.quantizer.workflow import export_model, quantize, sqnr

    calibration = example_inputs(shape, args.calibration_samples, seed=1)
    held_out = example_inputs(shape, args.eval_samples, seed=2)
    example = calibration[0]
    with torch.no_grad():
        reference = [model(*x) for x in held_out]

    results, methods = [], {}
    for contender in CONTENDERS:
        if contender.name not in args.contenders:
            continue
        res = Result(name, contender.name, contender.ir)
        results.append(res)
        stage = "quantize"
        print(f"  {contender.name:<18}", end="", flush=True)
        try:
            # Export outside the timer so quantize_s is prepare + calibrate + convert only.
            program = export_model(model, example, ir=contender.ir)
            if contender.make_quantizer is not None:
                quantizer = contender.make_quantizer()
                start = time.perf_counter()
                program = quantize(program, example, calibration, quantizer)
                res.quantize_s = time.perf_counter() - start
                res.quantized_ops, res.compute_ops = quantized_op_count(program)
            stage = "lower"
            start = time.perf_counter()
            passes = {} if contender.xnnquant_passes else {"passes": ()}
            lowered = lower_to_xnnpack(program, example, **passes)
            res.lower_s = time.perf_counter() - start
            res.pte_bytes = len(lowered.buffer)
            res.delegates = lowered.report.num_delegates
            res.ops_outside = list(lowered.report.outside_ops)
            stage = "run"
            with quiet_native_stderr():
                method = lowered.load_method()
            outputs = [run_method(method, x) for x in held_out]
            res.sqnr_db = sqnr(torch.cat([r.flatten() for r in reference]),
                               torch.cat([o.flatten() for o in outputs]))
            # Keep the lowered program referenced for as long as its method runs.
            methods[contender.name] = (method, lowered)
            print(f"ok  (quantize {res.quantize_s or 0:.1f} s, lower {res.lower_s:.1f} s)")
        except Exception as exc:  # any failure is a result worth reporting, not a crash
            res.error = f"{stage}: {_first_line(exc)}"
            print(f"FAILED at {res.error}")
            if args.verbose:
                traceback.print_exc()

    one = held_out[0]
    times = interleaved_latency(
        {n: (lambda m=m: m.execute(list(one))) for n, (m, _) in methods.items()},
        iters=args.iters,
        warmup=args.warmup,
    )
    medians = {n: median_ms(t) for n, t in times.items()}
    for res in results:
        if res.contender in medians:
            res.latency_ms = medians[res.contender]
            if "fp32" in medians:
                res.latency_vs_fp32 = res.latency_ms / medians["fp32"]
            if BASELINE in medians:
                res.latency_vs_baseline = res.latency_ms / medians[BASELINE]
    return results


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def format_table(results: list[Result]) -> str:
    header = ("model", "contender", "q-ops", "deleg", "outside", "SQNR dB",
              "median ms", "vs fp32", f"vs {BASELINE}", "pte KiB", "quant s")
    rows = [header]
    notes = []
    for r in results:
        if r.error:
            rows.append((r.model, r.contender, "FAILED", "", "", "", "", "", "", "", ""))
            notes.append(f"{r.model}/{r.contender}: {r.error}")
            continue
        qops = "-" if r.quantized_ops is None else f"{r.quantized_ops}/{r.compute_ops}"
        rows.append((
            r.model, r.contender, qops, _fmt(r.delegates, "d"), str(len(r.ops_outside)),
            _fmt(r.sqnr_db, ".1f"), _fmt(r.latency_ms, ".2f"), _fmt(r.latency_vs_fp32, ".2f"),
            _fmt(r.latency_vs_baseline, ".2f"), _fmt(r.pte_bytes and r.pte_bytes / 1024, ",.0f"),
            _fmt(r.quantize_s, ".1f"),
        ))
        if r.ops_outside:
            outside = sorted(set(r.ops_outside))
            notes.append(f"{r.model}/{r.contender}: outside the delegate: {', '.join(outside)}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines + ([""] + notes if notes else []))


def write_json_atomic(path: str, data) -> None:
    """Write to a temp file in the target folder, then rename: readers never see half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    # mkstemp creates the file 0600; give the result the permissions open() would have.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, allow_nan=True)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def plot(results: list[Result], path: str) -> bool:
    """Bar chart of latency relative to fp32 per model; returns False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    models = list(dict.fromkeys(r.model for r in results))
    names = list(dict.fromkeys(r.contender for r in results))
    fig, ax = plt.subplots(figsize=(2 + 1.8 * len(models), 4))
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        values = [next((r.latency_vs_fp32 or 0 for r in results
                        if r.model == m and r.contender == name), 0) for m in models]
        ax.bar([i + k * width for i in range(len(models))], values, width, label=name)
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(models))], models)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_ylabel("median latency / fp32 (lower is better; 0 = failed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return True


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compare fp32, ExecuTorch's XNNPACKQuantizer and xnnquant's XnnpackQuantizer "
        "on the training and core ATen IRs, through the ExecuTorch runtime.",
    )
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS),
                        help=f"models to run (default: all; {' '.join(QUICK_MODELS)} with --quick)")
    parser.add_argument("--contenders", nargs="+", choices=[c.name for c in CONTENDERS],
                        default=[c.name for c in CONTENDERS], help="contenders to run (default: all)")
    parser.add_argument("--calibration-samples", type=int, default=8,
                        help="random calibration batches per model, the same for every contender "
                        "(default: %(default)s)")
    parser.add_argument("--eval-samples", type=int, default=4,
                        help="held-out random inputs for SQNR (default: %(default)s)")
    parser.add_argument("--iters", type=int, default=30,
                        help="timed runs per contender (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed runs per contender first (default: %(default)s)")
    parser.add_argument("--json", default="out/benchmark.json",
                        help="where to write the results (default: %(default)s)")
    parser.add_argument("--plot", metavar="PATH", help="also write a PNG chart (needs matplotlib)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny model sizes, 2 calibration batches, 2 timed iterations")
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of failures")
    args = parser.parse_args(argv)
    if args.models is None:
        args.models = list(QUICK_MODELS if args.quick else MODELS)
    if args.quick:
        args.calibration_samples, args.eval_samples = 2, 1
        args.iters, args.warmup = 2, 1
    for flag in ("calibration_samples", "eval_samples", "iters"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    table = TINY_MODELS if args.quick else MODELS
    torch.manual_seed(0)
    started = time.perf_counter()
    results: list[Result] = []
    for name in args.models:
        spec = table[name]
        print(f"{name} {tuple(spec.input_shape)}{' (tiny)' if args.quick else ''}")
        results += bench_model(name, spec.builder(), spec.input_shape, args)
    elapsed = time.perf_counter() - started

    print()
    print(format_table(results))
    print(f"\n{len(args.models)} models in {elapsed:.0f} s; latency = median of {args.iters} "
          f"interleaved runs (batch as in input shape) on {torch.get_num_threads()} threads")

    write_json_atomic(args.json, {
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "plot")},
        "baseline": BASELINE,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()},
        "elapsed_s": elapsed,
        "results": [asdict(r) for r in results],
    })
    print(f"wrote {args.json}")
    if args.plot:
        if plot(results, args.plot):
            print(f"wrote {args.plot}")
        else:
            print(f"--plot {args.plot}: matplotlib is not installed, no chart written "
                  "(pip install -e '.[plot]' to enable it)")
    # ExecuTorch's quantizer failing is a finding; ours failing is a bug the caller must see.
    ours_failed = [f"{r.model}/{r.contender}" for r in results
                   if r.error and r.contender.startswith("xnnquant")]
    if ours_failed:
        print(f"error: xnnquant failed on {', '.join(ours_failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
