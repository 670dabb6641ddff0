"""``kernels/dynamic.py`` against XNNPACK's runtime: per-row dynamic quantization, as the delegate does it.

A dynamically quantized linear whose input rows differ in magnitude by 1000x is
lowered and run; the converted graph rewritten by ``EmulateDynamicRows`` (one
scale and zero point per row) must match the ``.pte`` to fp32 rounding of the
GEMM, while the graph as converted (one scale for the whole tensor) must not:
that difference is what the self-check's row-wise recheck is for.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from xnnquant.kernels import fake_quantize_rows
from xnnquant.passes import lower_to_xnnpack
from xnnquant.passes.emulate_dynamic_rows import EmulateDynamicRows
from xnnquant.quantizer import XnnpackQuantizer, get_dynamic_config, quantize, sqnr


def _inputs(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 32, generator=gen)
    return x * torch.logspace(-2, 1, 6)[:, None]  # row ranges from 0.01 to 10


@pytest.fixture(scope="module")
def lowered():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 16)).eval()
    converted = quantize(model, (_inputs(0),), None, XnnpackQuantizer().set_global(get_dynamic_config()))
    return converted, lower_to_xnnpack(converted, (_inputs(0),), self_check=False)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_pte_quantizes_each_row_on_its_own(lowered, seed):
    converted, program = lowered
    rows = EmulateDynamicRows()(copy.deepcopy(converted)).graph_module
    x = _inputs(seed)
    got = program.run(x)[0]
    with torch.no_grad():
        per_row, per_tensor = rows(x), converted(x)
    assert sqnr(per_row, got) >= 60.0, sqnr(per_row, got)
    assert sqnr(per_tensor, got) < sqnr(per_row, got) - 20.0


def test_rows_keep_their_own_precision_and_zero_stays_exact():
    x = torch.tensor([[0.0, 1e-3, -2e-3, 5e-4], [0.0, 10.0, -3.0, 7.0], [0.0, 0.0, 0.0, 0.0]])
    y = fake_quantize_rows(x)
    assert torch.equal(y[:, 0], torch.zeros(3)) and torch.equal(y[2], torch.zeros(4))
    for row, out in zip(x[:2], y[:2]):
        step = (row.max().clamp(min=0) - row.min().clamp(max=0)) / 255
        assert (row - out).abs().max() <= step / 2 + 1e-7
    # A conv's row is a whole image: nonbatch_dims=3 gives one scale per image.
    images = torch.randn(2, 3, 4, 4) * torch.tensor([0.01, 10.0])[:, None, None, None]
    assert torch.equal(fake_quantize_rows(images, 3)[0], fake_quantize_rows(images[:1].reshape(1, -1))[0].reshape(3, 4, 4))
