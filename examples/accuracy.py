"""Accuracy tools on real and example models: the numeric debugger, the quantize() alarm, the float fallback.

For the digits CNN trained as in the quickstart (real weights), and for the
example models of ``examples/models.py``, it prints:

1. the alarm's figure (``quantize()``'s output SQNR against fp32, recorded on the result);
2. the debugger's table, worst layer first;
3. for ``--fallback-db``, the float fallback that meets that output-SQNR budget;
4. for ``--delegate``, the ``.pte`` against the reference kernels and the q/dq graph.

Run ``python examples/accuracy.py --help`` for the flags.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from examples.common import silence_library_noise  # noqa: E402

silence_library_noise()

MODELS = ("digits_cnn", "mlp_block", "resnet18", "mobilenet_v2")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--ir", choices=("training", "core"), default="core")
    parser.add_argument("--full-size", action="store_true",
                        help="the benchmark's sizes for the example models (default: the tiny ones)")
    parser.add_argument("--calibration", type=int, default=16, help="calibration batches")
    parser.add_argument("--rows", type=int, default=8, help="debugger rows to print")
    parser.add_argument("--fallback-db", type=float, default=None,
                        help="also run the float fallback with this output-SQNR budget")
    parser.add_argument("--delegate", action="store_true",
                        help="also lower and compare the .pte with the reference kernels")
    return parser.parse_args(argv)


def model_and_data(name: str, args):
    """(model, calibration batches); digits_cnn is trained on real digits as in the quickstart."""
    from examples.models import build, example_inputs

    if name == "digits_cnn":
        from examples.models import digits_cnn
        from examples.quickstart import load_digits_split, train

        x_train, y_train, _, _ = load_digits_split(0)
        model = digits_cnn(seed=0)
        train(model, x_train, y_train, epochs=8, seed=0)
        idx = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[: args.calibration]
        return model, [(x_train[i : i + 1],) for i in idx.tolist()]
    model, shape = build(name, tiny=not args.full_size)
    return model, example_inputs(shape, args.calibration)


def run(argv=None) -> dict:
    args = parse_args(argv)
    from xnnquant.quantizer import XnnpackQuantizer
    from xnnquant.quantizer.accuracy import (
        ACCURACY_KEY,
        compare_graphs,
        find_float_fallback,
        float_reference,
        sqnr_budget,
    )
    from xnnquant.quantizer.workflow import export_model, quantize

    results = {}
    for name in args.models:
        model, cal = model_and_data(name, args)
        ep = export_model(model, cal[0], ir=args.ir)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            converted = quantize(ep, cal[0], cal, XnnpackQuantizer())
        figure = converted.meta[ACCURACY_KEY]
        print(f"== {name} ({args.ir} IR, {len(cal)} calibration batches)")
        print(f"alarm: output SQNR {figure.sqnr_db:.1f} dB on {figure.batches} batch(es), "
              f"threshold {figure.threshold_db:g} dB -> {'FIRED' if figure.alarm else 'quiet'}")
        for w in caught:
            if "alarm" in str(w.message):
                print(f"  warning: {w.message}")
        report = compare_graphs(float_reference(ep, XnnpackQuantizer()), converted, cal)
        print(report.table(limit=args.rows))
        results[name] = {"alarm_sqnr_db": figure.sqnr_db, "debugger": report}
        if args.fallback_db is not None:
            fallback = find_float_fallback(ep, cal[0], cal, budget=sqnr_budget(min_sqnr_db=args.fallback_db))
            print(fallback.format())
            results[name]["fallback"] = fallback
        if args.delegate:
            from xnnquant.passes.compare_delegate import compare_delegate

            comparison = compare_delegate(converted, cal)
            print(comparison.format())
            results[name]["delegate"] = comparison
        print()
    return results


def main(argv=None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
