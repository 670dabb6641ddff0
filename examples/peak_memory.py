"""Peak memory of prepare + calibrate + convert + lower, xnnquant against ExecuTorch's quantizer.

Each contender runs in a fresh Python process (``--child``), so one's peak
cannot hide in another's.  The process reports its resident set size after the
imports and the fp32 model are in memory (the baseline), and its peak RSS
(``ru_maxrss``) after quantizing and lowering; the figure that matters is the
difference, the memory the flow itself needs at its worst.

    python examples/peak_memory.py                    # ResNet-18 (224 px), both quantizers
    python examples/peak_memory.py --model mobilenet_v2 --calibration-samples 16
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONTENDERS = ("xnnquant-training", "xnnquant-core", "et-training")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _child(contender: str, model_name: str, samples: int) -> dict:
    from examples.common import silence_library_noise

    silence_library_noise()
    import torch

    from examples.models import MODELS, example_inputs
    from xnnquant.passes import PRE_LOWERING_PASSES, lower_to_xnnpack
    from xnnquant.quantizer import XnnpackQuantizer
    from xnnquant.quantizer.workflow import export_model, quantize

    torch.manual_seed(0)
    spec = MODELS[model_name]
    model = spec.builder()
    calibration = example_inputs(spec.input_shape, samples, seed=1)
    ir = "core" if contender.endswith("core") else "training"
    if contender.startswith("et"):
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    else:
        quantizer = XnnpackQuantizer()
    baseline = _rss_mb()
    program = export_model(model, calibration[0], ir=ir)
    converted = quantize(program, calibration[0], calibration, quantizer, alarm_sqnr_db=None)
    # ExecuTorch's flow is its stock lowering: none of xnnquant's passes.
    passes = () if contender.startswith("et") else PRE_LOWERING_PASSES
    lowered = lower_to_xnnpack(converted, calibration[0], passes=passes, self_check=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"contender": contender, "baseline_mb": baseline, "peak_mb": peak,
            "flow_mb": peak - baseline, "pte_bytes": len(lowered.buffer)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--calibration-samples", type=int, default=8)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.model, args.calibration_samples)))
        return 0
    rows = []
    for contender in CONTENDERS:
        done = subprocess.run([sys.executable, __file__, "--child", contender, "--model", args.model,
                               "--calibration-samples", str(args.calibration_samples)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{contender}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            rows.append({"contender": contender, "error": done.stderr.strip().splitlines()[-1:]})
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{args.model}, {args.calibration_samples} calibration batches: peak RSS of "
          "prepare + calibrate + convert + lower, in fresh processes")
    print(f"{'contender':<20} {'baseline MB':>12} {'peak MB':>9} {'flow MB':>9}")
    for row in rows:
        if "error" in row:
            print(f"{row['contender']:<20} failed: {row['error']}")
            continue
        print(f"{row['contender']:<20} {row['baseline_mb']:>12.0f} {row['peak_mb']:>9.0f} {row['flow_mb']:>9.0f}")
    ours = {r["contender"]: r for r in rows if "error" not in r}
    if "et-training" in ours:
        for name in ("xnnquant-training", "xnnquant-core"):
            if name in ours:
                print(f"{name}: {ours[name]['flow_mb'] / ours['et-training']['flow_mb']:.2f}x "
                      "ExecuTorch's flow memory")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
