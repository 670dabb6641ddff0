"""The main job: train a small CNN on real digits, quantize it to int8 with xnnquant, run the .pte.

``make demo`` runs this with no arguments.  Every step a user would take is here,
in order, with nothing hidden:

1. train ``digits_cnn`` for a few seconds on scikit-learn's bundled 8×8 digits
   (no download), with a seeded, stratified train/test split;
2. export it (core ATen IR by default: the IR that ExecuTorch's own
   XNNPACKQuantizer cannot fully handle) and quantize it with
   ``XnnpackQuantizer`` on calibration images from the training split;
3. lower the float and the int8 model with ``lower_to_xnnpack`` and write the
   int8 ``.pte``;
4. load that file with the ExecuTorch runtime and measure, on held-out digits:
   accuracy (fp32 vs int8), output SQNR, delegation, file size and latency.

Run ``python examples/quickstart.py --help`` for the flags.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Run as a script, Python puts examples/ (not the repo root) on sys.path; the
# repo root is needed for ``examples.models`` to resolve the same way it does in tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from examples.common import (  # noqa: E402
    interleaved_latency,
    median_ms,
    quiet_native_stderr,
    run_method,
    silence_library_noise,
)
from examples.models import digits_cnn  # noqa: E402

silence_library_noise()

# Accuracy budget the test suite holds the quickstart to, in percentage points.
MAX_ACCURACY_DROP_PP = 1.0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a digits CNN, quantize it to int8 with xnnquant, lower it to "
        "XNNPACK and compare the int8 .pte with fp32.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--output", default="out/digits_int8.pte", help="where to write the int8 .pte")
    parser.add_argument(
        "--ir",
        choices=("training", "core"),
        default="core",
        help="export IR to quantize: 'training' (aten.linear/conv2d) or 'core' (core ATen: addmm, convolution, ...)",
    )
    parser.add_argument(
        "--calibration-samples", type=int, default=256, help="training images used for calibration"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the split, init and training")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (under a second each)")
    parser.add_argument(
        "--latency-runs", type=int, default=200, help="timed single-image runs per model (median reported)"
    )
    args = parser.parse_args(argv)
    if args.calibration_samples < 1:
        parser.error("--calibration-samples must be at least 1")
    if args.latency_runs < 1:
        parser.error("--latency-runs must be at least 1")
    return args


def load_digits_split(seed: int):
    """Stratified 75/25 split of the 1 797 digits, scaled with training-split statistics only.

    Returns:
        ``(x_train, y_train, x_test, y_test)``; images are ``[n, 1, 8, 8]`` float32.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.images.astype(np.float32),
        digits.target,
        test_size=0.25,
        random_state=seed,
        stratify=digits.target,
    )
    mean, std = x_train.mean(), x_train.std()

    def to_tensor(images):
        return torch.from_numpy((images - mean) / std).unsqueeze(1)

    return to_tensor(x_train), torch.from_numpy(y_train), to_tensor(x_test), torch.from_numpy(y_test)


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int) -> None:
    """Mini-batch Adam; the learning rate decays to zero (cosine) so the last epochs
    settle the weights instead of bouncing between minibatches."""
    batch = 64
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * ((len(x) + batch - 1) // batch))
    # Ops this small are all per-op overhead: extra intra-op threads only add
    # synchronisation, and on a shared machine they spin against other jobs
    # (measured 5 s on one thread vs 17 s on two under load, same accuracy).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.train()
    try:
        for epoch in range(epochs):
            perm = torch.randperm(len(x), generator=gen)
            total = 0.0
            for i in range(0, len(x), batch):
                idx = perm[i : i + batch]
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
            print(f"  epoch {epoch + 1}/{epochs}  loss {total / len(x):.4f}")
    finally:
        torch.set_num_threads(threads)
        model.eval()


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (logits.argmax(dim=1) == labels).float().mean().item()


def run(argv=None) -> dict:
    """The whole quickstart; prints as it goes and returns the numbers it printed.

    Returns:
        ``fp32_accuracy`` and ``int8_accuracy`` (percent, int8 from the .pte),
        ``accuracy_drop_pp``, ``sqnr_db``, ``fp32_pte_bytes``, ``int8_pte_bytes``,
        ``fp32_latency_ms``, ``int8_latency_ms``, ``fully_delegated`` and ``output``.
    """
    args = parse_args(argv)
    from xnnquant.passes import lower_to_xnnpack
    from xnnquant.quantizer import XnnpackQuantizer
    from xnnquant.quantizer.workflow import export_model, quantize, sqnr

    torch.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = load_digits_split(args.seed)
    print(f"digits: {len(x_train)} train / {len(x_test)} held-out images, 8x8, 10 classes")

    print(f"[1/4] training digits_cnn for {args.epochs} epochs")
    start = time.perf_counter()
    model = digits_cnn(seed=args.seed)
    train(model, x_train, y_train, epochs=args.epochs, seed=args.seed)
    print(f"  trained in {time.perf_counter() - start:.1f} s")
    with torch.no_grad():
        fp32_logits = model(x_test)
    fp32_acc = accuracy(fp32_logits, y_test)

    print(f"[2/4] quantizing on the {args.ir} IR with XnnpackQuantizer")
    # The .pte is exported for one image at a time, the way an app would call it.
    example = (x_train[:1],)
    n_cal = min(args.calibration_samples, len(x_train))
    cal_idx = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(args.seed))[:n_cal]
    calibration = [(x_train[i : i + 1],) for i in cal_idx.tolist()]
    exported = export_model(model, example, ir=args.ir)
    start = time.perf_counter()
    converted = quantize(exported, example, calibration, XnnpackQuantizer(), progress=True)
    print(f"  prepare + calibrate ({n_cal} images) + convert: {time.perf_counter() - start:.1f} s")

    print("[3/4] lowering to XNNPACK")
    start = time.perf_counter()
    # fp32 from the training IR: the float baseline an ExecuTorch user would ship.
    fp32_program = lower_to_xnnpack(export_model(model, example, ir="training"), example)
    int8_program = lower_to_xnnpack(converted, example, path=args.output)
    print(f"  lowered fp32 and int8 in {time.perf_counter() - start:.1f} s; wrote {args.output}")
    report = int8_program.report
    print(f"  int8 delegation: {report.num_delegates} XNNPACK delegate(s), "
          f"ops outside: {report.non_delegated_ops or 'none'}, q/dq outside: {report.qdq_outside}"
          f" -> {'fully delegated' if report.fully_delegated else 'NOT fully delegated'}")
    if not report.fully_delegated:
        print("    " + report.format(delegated=False).replace("\n", "\n    "))

    print(f"[4/4] running {args.output} with the ExecuTorch runtime")
    from executorch.runtime import Runtime

    with quiet_native_stderr():
        # A loaded method does not keep its program alive; hold the program in a name.
        int8_runtime_program = Runtime.get().load_program(Path(args.output))
        int8_method = int8_runtime_program.load_method("forward")
        fp32_method = fp32_program.load_method()
    int8_logits = torch.cat([run_method(int8_method, (x_test[i : i + 1],)) for i in range(len(x_test))])
    int8_acc = accuracy(int8_logits, y_test)
    output_sqnr = sqnr(fp32_logits, int8_logits)

    one = x_test[:1]
    times = interleaved_latency(
        {"fp32": lambda: fp32_method.execute([one]), "int8": lambda: int8_method.execute([one])},
        iters=args.latency_runs,
        warmup=5,
    )
    fp32_ms, int8_ms = median_ms(times["fp32"]), median_ms(times["int8"])
    fp32_size, int8_size = len(fp32_program.buffer), os.path.getsize(args.output)

    drop = fp32_acc - int8_acc
    verdict = "OK" if drop <= MAX_ACCURACY_DROP_PP else "OVER BUDGET"
    print()
    print(f"results on {len(x_test)} held-out digits (int8 numbers come from the .pte):")
    print(f"  {'':22}{'fp32':>12}{'int8':>12}")
    print(f"  {'accuracy (%)':22}{fp32_acc:12.2f}{int8_acc:12.2f}")
    print(f"  {'.pte size (bytes)':22}{fp32_size:12,d}{int8_size:12,d}")
    print(f"  {'median latency (us)':22}{fp32_ms * 1e3:12.1f}{int8_ms * 1e3:12.1f}")
    print(f"  accuracy drop: {drop:+.2f} pp (budget {MAX_ACCURACY_DROP_PP:.0f} pp: {verdict})")
    print(f"  output SQNR int8 vs fp32: {output_sqnr:.1f} dB")
    print(f"  size ratio int8/fp32: {int8_size / fp32_size:.2f}x; "
          f"latency ratio int8/fp32: {int8_ms / fp32_ms:.2f}x "
          f"(median of {args.latency_runs} interleaved runs, batch 1)")
    return {
        "fp32_accuracy": fp32_acc,
        "int8_accuracy": int8_acc,
        "accuracy_drop_pp": drop,
        "sqnr_db": output_sqnr,
        "fp32_pte_bytes": fp32_size,
        "int8_pte_bytes": int8_size,
        "fp32_latency_ms": fp32_ms,
        "int8_latency_ms": int8_ms,
        "fully_delegated": report.fully_delegated,
        "output": args.output,
    }


def main(argv=None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
