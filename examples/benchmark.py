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
import math
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
from examples.models import (  # noqa: E402
    ARCHITECTURES,
    MODELS,
    TINY_ARCHITECTURES,
    TINY_MODELS,
    example_inputs,
)

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
        if isinstance(node, (list, tuple)):  # cat: every input must be quantized
            return all(_reaches_dq(n) for n in node if isinstance(n, torch.fx.Node))
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


def plot(results: list, path: str, *, title: Optional[str] = None) -> bool:
    """Write a PNG of latency and SQNR per model and contender; returns False if matplotlib is missing.

    Top panel: median latency in ms (log scale, since models differ by 1000x),
    each bar marked with its ratio to fp32 on the same model; bottom panel:
    output SQNR in dB.  A contender that failed gets no bar but a "failed"
    mark, so it cannot be read as fast.  ``results`` are :class:`Result`
    objects or their ``asdict`` form (the ``results`` of the JSON file).
    The figure is written atomically.
    """
    from xnnquant.quantizer.accuracy.plotting import pyplot, write_png

    plt = pyplot()
    if plt is None:
        return False
    rows = [r if isinstance(r, dict) else asdict(r) for r in results]
    models = list(dict.fromkeys(r["model"] for r in rows))
    names = list(dict.fromkeys(r["contender"] for r in rows))
    by_key = {(r["model"], r["contender"]): r for r in rows}
    width = 0.8 / max(1, len(names))
    colors = plt.get_cmap("tab10").colors
    fig, (lat_ax, sqnr_ax) = plt.subplots(2, 1, figsize=(2.2 + 2.0 * len(models), 6.4), sharex=True)
    for k, name in enumerate(names):
        for i, model in enumerate(models):
            r = by_key.get((model, name))
            x = i + (k - (len(names) - 1) / 2) * width
            color = colors[k % len(colors)]
            label = name if i == 0 else None
            if r is None:
                continue
            if r.get("error") or r.get("latency_ms") is None:
                for ax in (lat_ax, sqnr_ax):
                    ax.text(x, 0.02, "failed", rotation=90, ha="center", va="bottom", fontsize=7,
                            color=color, transform=ax.get_xaxis_transform())
                lat_ax.bar(x, 0, width, color=color, label=label)
                continue
            lat_ax.bar(x, r["latency_ms"], width, color=color, label=label)
            ratio = r.get("latency_vs_fp32")
            if ratio is not None and name != "fp32":
                lat_ax.annotate(f"{ratio:.2f}x", (x, r["latency_ms"]), xytext=(0, 2),
                                textcoords="offset points", ha="center", va="bottom", fontsize=6.5,
                                rotation=90, bbox={"boxstyle": "square,pad=0.1", "fc": "white",
                                                   "ec": "none", "alpha": 0.8})
            if r.get("sqnr_db") is not None and math.isfinite(r["sqnr_db"]):
                sqnr_ax.bar(x, r["sqnr_db"], width, color=color)
    for i, model in enumerate(models):
        fp32 = by_key.get((model, "fp32"))
        if fp32 and fp32.get("latency_ms"):
            # fp32's latency across the whole group: the line every ratio label is relative to.
            lat_ax.hlines(fp32["latency_ms"], i - 0.45, i + 0.45, colors="black", linestyles="dashed",
                          linewidth=0.8, label="fp32 latency" if i == 0 else None)
    lat_ax.set_yscale("log")
    lat_ax.set_ylabel("median latency, ms (log)\nlabel: ratio to fp32")
    lat_ax.margins(y=0.25)
    lat_ax.legend(fontsize=7, ncol=min(len(names) + 1, 6), loc="upper center",
                  bbox_to_anchor=(0.5, 1.2), frameon=False)
    sqnr_ax.set_ylabel("output SQNR vs eager fp32, dB")
    sqnr_ax.set_xticks(range(len(models)), models)
    for ax in (lat_ax, sqnr_ax):
        ax.grid(axis="y", linewidth=0.4, alpha=0.5)
    if title:
        fig.suptitle(title, fontsize=8, y=0.005, va="bottom")
    fig.tight_layout(rect=(0, 0.03 if title else 0, 1, 1))
    write_png(fig, path)
    return True


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compare fp32, ExecuTorch's XNNPACKQuantizer and xnnquant's XnnpackQuantizer "
        "on the training and core ATen IRs, through the ExecuTorch runtime.",
    )
    parser.add_argument("--models", nargs="+", choices=sorted({**MODELS, **ARCHITECTURES}),
                        help=f"models to run (default: {' '.join(MODELS)}; {' '.join(QUICK_MODELS)} "
                        f"with --quick; the published architectures {' '.join(ARCHITECTURES)} on request)")
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
    parser.add_argument("--plot-from", metavar="JSON",
                        help="run nothing: draw the --plot chart (default out/benchmark.png) from a "
                        "results file this script wrote")
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


def _chart_title(settings: dict, machine: dict) -> str:
    return (f"examples/benchmark.py{' --quick (tiny model sizes)' if settings.get('quick') else ''}: "
            f"{settings.get('calibration_samples')} calibration batches, median of "
            f"{settings.get('iters')} runs on {machine.get('threads')} threads; "
            f"torch {machine.get('torch')}")


def plot_from(json_path: str, png_path: str) -> int:
    """Draw the chart of a results file written by :func:`main`."""
    data = json.loads(Path(json_path).read_text())
    if not plot(data["results"], png_path,
                title=_chart_title(data.get("settings", {}), data.get("machine", {}))):
        print("matplotlib is not installed, no chart written (pip install -e '.[plot]')",
              file=sys.stderr)
        return 1
    print(f"wrote {png_path}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.plot_from:
        return plot_from(args.plot_from, args.plot or "out/benchmark.png")
    table = {**TINY_MODELS, **TINY_ARCHITECTURES} if args.quick else {**MODELS, **ARCHITECTURES}
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

    settings = {k: v for k, v in vars(args).items() if k not in ("json", "plot", "plot_from")}
    machine = {"python": platform.python_version(), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    write_json_atomic(args.json, {
        "settings": settings,
        "baseline": BASELINE,
        "machine": machine,
        "elapsed_s": elapsed,
        "results": [asdict(r) for r in results],
    })
    print(f"wrote {args.json}")
    if args.plot:
        if plot(results, args.plot, title=_chart_title(settings, machine)):
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
