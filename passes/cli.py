"""The ``xnnquant`` command line: quantize a saved ``.pt2``, inspect a ``.pte``, run a ``.pte``.

::

    xnnquant quantize MODEL.pt2 -o MODEL.pte --calibration SAMPLES.pt --report MODEL.json
    xnnquant inspect MODEL.pte
    xnnquant run MODEL.pte --input SAMPLE.pt --save OUT.pt

``quantize`` loads a program saved with ``torch.export.save``, quantizes its
``.module()`` with ``XnnpackQuantizer`` (through ``xnnquant.quantizer.quantize``,
on the IR asked for), lowers it with ``lower_to_xnnpack`` (whose self-check
runs the ``.pte`` against the quantized graph) and writes the ``.pte`` and an
optional JSON report atomically.  Bad input (a missing file, a file that is
not an exported program, samples that do not match the program's inputs, an
output that cannot be written) ends the command with exit status 2 and one
line saying what to fix; a failure of the quantization or the lowering itself
with status 1 and ExecuTorch's or xnnquant's message.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Iterable, Optional

EXIT_FAILED = 1  # the quantization, lowering or run failed
EXIT_BAD_INPUT = 2  # what the user gave cannot be used (argparse uses 2 for bad flags too)

CONFIGS = ("per-channel", "per-tensor", "dynamic")


class BadInput(Exception):
    """Input the command cannot use; the message is the one line printed."""


def _write(path: str, data: bytes, what: str) -> None:
    """Write ``data`` to ``path`` atomically; a failure becomes the one-line error naming ``what``."""
    # Imported here: the CLI's --help must not wait for torch and ExecuTorch.
    from xnnquant.passes.lower_to_xnnpack import write_atomic

    try:
        write_atomic(path, data)
    except OSError as exc:
        raise BadInput(f"{what} {path}: {exc.strerror or exc}") from exc


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xnnquant")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


# --------------------------------------------------------------------------- inputs


def _check_readable(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{what} {path}: no such file")
    if p.is_dir():
        raise BadInput(f"{what} {path}: is a directory, give a file")
    return p


def _check_writable(path: str, what: str) -> Path:
    """Fail before any work when ``path`` cannot be written (its directory is created later if missing)."""
    p = Path(path)
    if p.is_dir():
        raise BadInput(f"{what} {path}: is a directory, give a file name")
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise BadInput(f"{what} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{what} {path}: directory {parent} is not writable")
    return p


def _load_exported(path: Path):
    import torch

    # torch.export.load logs a traceback at WARNING before raising; the one line below says it all.
    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:
        raise BadInput(
            f"{path}: not an exported program ({type(exc).__name__}); "
            "save one with torch.export.save(torch.export.export(model, inputs), 'model.pt2')"
        ) from exc
    finally:
        logger.setLevel(level)
    if not isinstance(ep, torch.export.ExportedProgram):
        raise BadInput(f"{path}: holds a {type(ep).__name__}, not a torch.export.ExportedProgram")
    return ep


def _user_inputs(ep) -> list:
    """[(name, example value)] of the program's user inputs, in order."""
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    out = []
    for name in ep.graph_signature.user_inputs:
        node = placeholders.get(name)
        out.append((name, node.meta.get("val") if node is not None else None))
    return out


def _as_batches(data, names: list, source: str) -> list:
    """Turn what ``torch.load`` gave into a list of input tuples in the program's input order.

    Accepted: a list of tuples (or of tensors, for one input); a list of dicts
    name → tensor; a dict name → tensor (one batch) or name → list of tensors
    (one batch per element); a single tuple or tensor (one batch).
    """
    import torch

    def from_dict(d: dict, where: str) -> list:
        missing = [n for n in names if n not in d]
        extra = [k for k in d if k not in names]
        if missing or extra:
            raise BadInput(f"{source}{where}: keys {sorted(map(str, d))} do not match the program's "
                           f"inputs {names}" + (f" (missing {missing})" if missing else ""))
        values = [d[n] for n in names]
        if all(isinstance(v, (list, tuple)) for v in values):
            counts = {len(v) for v in values}
            if len(counts) != 1:
                raise BadInput(f"{source}{where}: the inputs hold different numbers of samples "
                               f"({dict(zip(names, map(len, values)))})")
            return [tuple(v[i] for v in values) for i in range(counts.pop())]
        return [tuple(values)]

    if isinstance(data, torch.Tensor):
        return [(data,)]
    if isinstance(data, dict):
        return from_dict(data, "")
    if isinstance(data, tuple) and all(isinstance(t, torch.Tensor) for t in data):
        return [data]
    if isinstance(data, list):
        batches = []
        for i, item in enumerate(data):
            if isinstance(item, torch.Tensor):
                batches.append((item,))
            elif isinstance(item, (tuple, list)):
                batches.append(tuple(item))
            elif isinstance(item, dict):
                batches.extend(from_dict(item, f" sample {i}"))
            else:
                raise BadInput(f"{source} sample {i}: a {type(item).__name__}; expected a tuple of "
                               "tensors, a tensor or a dict of named tensors")
        if not batches:
            raise BadInput(f"{source}: holds no samples")
        return batches
    raise BadInput(f"{source}: holds a {type(data).__name__}; expected a list of input tuples "
                   "or a dict of named inputs (saved with torch.save)")


def _load_samples(path: Path, names: list) -> list:
    import torch

    try:
        data = torch.load(str(path), weights_only=True)
    except Exception as exc:
        raise BadInput(f"{path}: not a file of tensors saved with torch.save "
                       f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from exc
    return _as_batches(data, names, str(path))


def _check_batches(batches: list, inputs: list, source: str) -> None:
    """Every batch has the program's number of inputs, each with its dtype, rank and static sizes."""
    import torch

    names = [n for n, _ in inputs]
    for b, batch in enumerate(batches):
        if len(batch) != len(inputs):
            raise BadInput(f"{source} sample {b}: {len(batch)} inputs, the program takes "
                           f"{len(inputs)} ({', '.join(names)})")
        for (name, val), t in zip(inputs, batch):
            where = f"{source} sample {b} input {name!r}"
            if not isinstance(t, torch.Tensor):
                raise BadInput(f"{where}: a {type(t).__name__}, expected a tensor")
            if not isinstance(val, torch.Tensor):
                continue
            if t.dtype != val.dtype:
                raise BadInput(f"{where}: dtype {t.dtype}, the program takes {val.dtype}")
            # A dynamic dimension (a SymInt, not an int) takes any size.
            want = tuple(d if isinstance(d, int) else str(d) for d in val.shape)
            if t.dim() != len(want) or any(isinstance(d, int) and d != n for d, n in zip(want, t.shape)):
                raise BadInput(f"{where}: shape {tuple(t.shape)}, the program takes {want}")
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise BadInput(f"{where}: contains NaN or Inf; clean the samples")


def _random_batches(inputs: list, count: int, seed: int) -> list:
    import torch

    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        batch = []
        for name, val in inputs:
            if not isinstance(val, torch.Tensor) or not all(isinstance(d, int) for d in val.shape):
                raise BadInput(f"--random: input {name!r} has no static shape; give --calibration")
            if val.is_floating_point():
                batch.append(torch.randn(tuple(val.shape), generator=generator, dtype=val.dtype))
            else:
                batch.append(torch.zeros(tuple(val.shape), dtype=val.dtype))
        batches.append(tuple(batch))
    return batches


def _progress(items: list, desc: str, enabled: bool) -> Iterable:
    """``items`` with a progress bar on stderr: tqdm when installed, else a plain counter."""
    if not enabled:
        yield from items
        return
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(items, desc=desc, unit="sample", file=sys.stderr)
        return
    total = len(items)
    for i, item in enumerate(items, 1):
        yield item
        print(f"\r{desc}: {i}/{total}", end="" if i < total else "\n", file=sys.stderr, flush=True)


def _module_names(ep) -> set:
    names = set()
    for node in ep.graph.nodes:
        for path, _type in (node.meta.get("nn_module_stack") or {}).values():
            if path:
                names.add(str(path))
    return names


# --------------------------------------------------------------------------- quantize


def _make_quantizer(config: str, exclude: list):
    from xnnquant.quantizer import XnnpackQuantizer, get_config, get_dynamic_config

    preset = {"per-channel": lambda: get_config(),
              "per-tensor": lambda: get_config(per_channel=False),
              "dynamic": lambda: get_dynamic_config()}[config]()
    quantizer = XnnpackQuantizer(preset)
    for name in exclude:
        quantizer.set_module_name(name, None)
    return quantizer


def cmd_quantize(args) -> int:
    import torch

    from xnnquant.passes.lower_to_xnnpack import lower_to_xnnpack
    from xnnquant.quantizer import quantize

    source = _check_readable(args.model, "model")
    output = _check_writable(args.output, "output")
    if output.resolve() == source.resolve():
        raise BadInput(f"output {args.output}: is the input file; give another name")
    report_path = _check_writable(args.report, "report") if args.report else None
    calibration_path = _check_readable(args.calibration, "calibration") if args.calibration else None

    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    ep = _load_exported(source)
    inputs = _user_inputs(ep)
    names = [n for n, _ in inputs]
    for name in args.exclude:
        if name not in _module_names(ep):
            known = ", ".join(sorted(_module_names(ep))) or "none recorded"
            raise BadInput(f"--exclude {name}: no module of that name in the program (modules: {known})")

    if calibration_path is not None:
        batches = _load_samples(calibration_path, names)
        _check_batches(batches, inputs, str(calibration_path))
        calibration_source = str(calibration_path)
    else:
        batches = _random_batches(inputs, args.random, seed=0)
        calibration_source = f"random ({args.random} samples, seed 0)"
        print(f"warning: calibrating on {args.random} random samples: the .pte runs, but its "
              "accuracy says nothing; give --calibration with real inputs", file=sys.stderr)
    if ep.example_inputs and not ep.example_inputs[1] and len(ep.example_inputs[0]) == len(inputs):
        example = tuple(ep.example_inputs[0])
    else:
        example = batches[0]

    say(f"{source}: {len(inputs)} input(s) {', '.join(names)}; "
        f"calibration: {calibration_source}, {len(batches)} sample(s)")
    program = ep.run_decompositions() if args.ir == "core" else ep
    quantizer = _make_quantizer(args.config, args.exclude)
    start = time.perf_counter()
    converted = quantize(program, example, _progress(batches, "calibrating", not args.quiet),
                         quantizer)
    quantize_s = time.perf_counter() - start
    say(f"annotation ({args.ir} IR, {args.config}): {quantizer.report.summary()}")
    for reason, count in quantizer.report.float_reasons().items():
        say(f"  float x{count}: {reason}")
    if args.verbose:
        say(str(quantizer.report))

    say("lowering to XNNPACK ...")
    start = time.perf_counter()
    lowered = lower_to_xnnpack(converted, example,
                               require_full_delegation=args.require_full_delegation)
    lower_s = time.perf_counter() - start
    lines = lowered.report.format(delegated=args.verbose).splitlines()
    if not args.verbose and not lowered.report.not_delegated:
        lines = lines[1:]  # the table's header, over no rows
    say("\n".join(lines))

    _write(output, lowered.buffer, "output")
    say(f"wrote {output} ({len(lowered.buffer)} bytes; quantize {quantize_s:.1f} s, lower {lower_s:.1f} s)")
    if report_path is not None:
        report = {
            "xnnquant_version": _version(),
            "torch_version": torch.__version__,
            "model": str(source),
            "output": str(output),
            "ir": args.ir,
            "config": args.config,
            "exclude": list(args.exclude),
            "calibration": {"source": calibration_source, "samples": len(batches)},
            "inputs": [{"name": n, "dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                       if isinstance(v, torch.Tensor) else {"name": n} for n, v in inputs],
            "annotation": quantizer.report.to_dict(),
            "delegation": lowered.report.to_dict(),
            "fully_delegated": lowered.report.fully_delegated,
        }
        text = json.dumps(_finite(report), indent=2, sort_keys=False) + "\n"
        _write(report_path, text.encode(), "report")
        say(f"wrote {report_path}")
    return 0


def _finite(value):
    """JSON has no inf/nan: write them as strings so any JSON reader can load the report."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# --------------------------------------------------------------------------- inspect / run


def cmd_inspect(args) -> int:
    from xnnquant.passes.inspect_pte import PteFormatError, inspect_pte

    path = _check_readable(args.pte, "program")
    try:
        summary = inspect_pte(path)
    except PteFormatError as exc:
        raise BadInput(f"{path}: {exc}") from exc
    print(json.dumps(_finite(summary.to_dict()), indent=2) if args.json else summary)
    return 0


def cmd_run(args) -> int:
    import torch

    from xnnquant.passes.inspect_pte import PteFormatError, inspect_pte
    from xnnquant.quantizer import quiet_third_party

    path = _check_readable(args.pte, "program")
    input_path = _check_readable(args.input, "input")
    save = _check_writable(args.save, "--save") if args.save else None
    try:
        summary = inspect_pte(path)
    except PteFormatError as exc:
        raise BadInput(f"{path}: {exc}") from exc
    method_info = next((m for m in summary.methods if m.name == args.method), None)
    if method_info is None:
        raise BadInput(f"{path}: no method {args.method!r} (methods: "
                       f"{', '.join(m.name for m in summary.methods)})")
    names = [f"input_{i}" for i in range(len(method_info.inputs))]
    batches = _load_samples(input_path, names)
    expected = [(name, torch.empty(t.sizes, dtype=getattr(torch, t.dtype)))
                for name, t in zip(names, method_info.inputs)]
    _check_batches(batches, expected, str(input_path))

    from xnnquant.passes.lower_to_xnnpack import LoweredProgram, ProgramError

    # inspect_pte parsed the flatbuffer; the runtime can still refuse it (a corrupted
    # delegate payload), which is the file's fault, not a failure of the command.
    try:
        with quiet_third_party():
            method = LoweredProgram.load(path).load_method(args.method)
    except ProgramError as exc:
        raise BadInput(f"{path}: {' '.join(str(exc).split())}") from exc
    results = []
    for batch in batches:
        outputs = method.execute(list(batch))
        results.append([o.clone() if isinstance(o, torch.Tensor) else o for o in outputs])
    for i, out in enumerate(results[0]):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        dtype = str(out.dtype).replace("torch.", "") if isinstance(out, torch.Tensor) else ""
        print(f"output {i}: {dtype}{list(shape) if isinstance(shape, tuple) else shape}")
    times = []
    first = list(batches[0])
    for _ in range(args.warmup):
        method.execute(first)
    for _ in range(args.iters):
        start = time.perf_counter()
        method.execute(first)
        times.append((time.perf_counter() - start) * 1e3)
    print(f"latency: median {statistics.median(times):.3f} ms over {args.iters} runs "
          f"(min {min(times):.3f} ms) on sample 0")
    if save is not None:
        import io

        buffer = io.BytesIO()
        torch.save(results if len(results) > 1 else results[0], buffer)
        _write(save, buffer.getvalue(), "--save")
        print(f"wrote {save}")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xnnquant",
        description="Quantize torch.export programs to int8 for ExecuTorch's XNNPACK backend, "
                    "and inspect or run the resulting .pte files.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    q = sub.add_parser(
        "quantize", help="quantize a saved .pt2 and lower it to an XNNPACK .pte",
        description="Load a program saved with torch.export.save, quantize it with "
                    "XnnpackQuantizer, lower it to XNNPACK and write the .pte (atomically).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    q.add_argument("model", metavar="MODEL.pt2", help="program saved with torch.export.save")
    q.add_argument("-o", "--output", required=True, metavar="MODEL.pte", help="where to write the .pte")
    samples = q.add_mutually_exclusive_group(required=True)
    samples.add_argument("--calibration", metavar="FILE",
                         help="calibration samples saved with torch.save: a list of input tuples, "
                              "or a dict of named inputs (name -> tensor or list of tensors)")
    samples.add_argument("--random", type=int, metavar="N",
                         help="calibrate on N random samples: a smoke run, accuracy is meaningless")
    q.add_argument("--ir", choices=("training", "core"), default="training",
                   help="'training': quantize the program as saved; 'core': run_decompositions() first")
    q.add_argument("--config", choices=CONFIGS, default="per-channel",
                   help="static int8 with per-channel or per-tensor weights, or dynamic int8")
    q.add_argument("--exclude", action="append", default=[], metavar="MODULE_NAME",
                   help="keep this submodule (e.g. 'fc2' or 'layer1.0') in float; repeatable")
    q.add_argument("--report", metavar="FILE.json", help="write the annotation and delegation reports as JSON")
    q.add_argument("--require-full-delegation", action="store_true",
                   help="fail when any op or q/dq node stays outside the XNNPACK delegate")
    q.add_argument("-v", "--verbose", action="store_true", help="print the full per-node reports")
    q.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")
    q.set_defaults(func=cmd_quantize)

    i = sub.add_parser(
        "inspect", help="show a .pte's delegates, ops outside them, qparams and sizes",
        description="Read a .pte without running it: methods and their inputs, XNNPACK "
                    "delegates (node and value types, qparams), ops outside delegates, sizes.",
    )
    i.add_argument("pte", metavar="FILE.pte")
    i.add_argument("--json", action="store_true", help="print JSON instead of text")
    i.set_defaults(func=cmd_inspect)

    r = sub.add_parser(
        "run", help="run a .pte with the ExecuTorch runtime on saved inputs",
        description="Run a .pte through executorch.runtime on inputs saved with torch.save "
                    "(a tensor, a tuple of tensors, or a list of them); print the outputs' "
                    "shapes and the latency on the first sample.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    r.add_argument("pte", metavar="FILE.pte")
    r.add_argument("--input", required=True, metavar="FILE", help="inputs saved with torch.save")
    r.add_argument("--save", metavar="OUT.pt", help="save the outputs with torch.save (atomically)")
    r.add_argument("--method", default="forward", help="method to run")
    r.add_argument("--iters", type=int, default=20, help="timed runs for the latency")
    r.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    r.set_defaults(func=cmd_run)
    return parser


def main(argv: Optional[list] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "random", None) is not None and args.random < 1:
        parser.error("--random must be at least 1")
    if getattr(args, "iters", 1) < 1:
        parser.error("--iters must be at least 1")
    # ExecuTorch logs every partitioning decision at INFO; a command line shows its own summary.
    logging.basicConfig(level=logging.WARNING)
    from xnnquant.quantizer import quiet_third_party

    try:
        with quiet_third_party():
            return args.func(args)
    except BadInput as exc:
        print(f"xnnquant {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"xnnquant {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``xnnquant inspect m.pte | head``): not a failure to report.
        # stdout is pointed at /dev/null so Python's flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what the shell reports for a writer killed by the pipe
    except Exception as exc:  # the library's errors carry what to do; no traceback for users
        message = str(exc).strip() or type(exc).__name__
        print(f"xnnquant {args.command}: failed: {type(exc).__name__}: {message}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
