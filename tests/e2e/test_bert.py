"""A BERT encoder (``transformers``' ``BertModel``, small config, random weights) with a padding mask.

The issue this pins: a pretrained BERT sentence encoder came out of the default
static config at cosine 0.285 to fp32, with no warning.  Two things did it: the
attention-mask add (its operand holds the dtype's minimum, which no int8 scale
holds with the scores) and static per-tensor activations in a transformer.  The
mask add now stays float with that reason, and a graph with attention gets the
dynamic config for its linears (``QuantConfig.attention``).  On both IRs the
``.pte`` must keep the pooled embedding at cosine >= 0.99 to fp32, pass the
self-check, and put every linear in int8.
"""

from __future__ import annotations

import functools

import pytest
import torch

from examples.bert_encoder import MeanPooledEncoder
from xnnquant.passes import lower_to_xnnpack
from xnnquant.quantizer import XnnpackQuantizer, quantize
from xnnquant.quantizer.workflow import IRS

transformers = pytest.importorskip("transformers")  # in the test extra; a clear skip otherwise
pytestmark = pytest.mark.slow  # exports and lowers a whole encoder twice

SEQ, BATCH = 12, 4


def _batch(seed: int) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 200, (BATCH, SEQ), generator=gen)
    lengths = torch.randint(4, SEQ + 1, (BATCH,), generator=gen)
    mask = (torch.arange(SEQ)[None, :] < lengths[:, None]).long()
    return ids * mask, mask  # padding tokens are id 0, as a tokenizer pads


@functools.lru_cache(maxsize=None)
def _model():
    config = transformers.BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64,
                                     max_position_embeddings=32, attn_implementation="eager")
    torch.manual_seed(0)
    return MeanPooledEncoder(transformers.BertModel(config).eval()).eval()


@functools.lru_cache(maxsize=None)
def _lowered(ir: str):
    model = _model()
    quantizer = XnnpackQuantizer()
    converted = quantize(model, _batch(0), [_batch(s) for s in range(1, 5)], quantizer, ir=ir)
    return quantizer.report, lower_to_xnnpack(converted, _batch(0))


@pytest.mark.parametrize("ir", IRS)
def test_default_config_keeps_the_pooled_embedding(ir):
    report, lowered = _lowered(ir)
    assert lowered.report.self_check.passed, lowered.report.format()
    for seed in (10, 11):
        batch = _batch(seed)
        with torch.no_grad():
            want = _model()(*batch)
        cosine = torch.nn.functional.cosine_similarity(lowered.run(*batch)[0], want, dim=-1)
        assert cosine.min().item() >= 0.99, cosine
    linears = [d for d in report.decisions if d.op in ("aten.linear.default", "aten.addmm.default")]
    assert len(linears) == 2 * 6 and all(d.quantized for d in linears), report.summary()


def test_the_mask_add_stays_float_and_says_why():
    from xnnquant.quantizer import get_config

    quantizer = XnnpackQuantizer(get_config(attention="static"))
    quantize(_model(), _batch(0), [_batch(1)], quantizer, ir="training")
    masks = [d for d in quantizer.report.left_float if "attention mask" in d.reason]
    assert masks, quantizer.report.summary()
