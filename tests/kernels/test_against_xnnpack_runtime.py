"""The reference kernels are bit-exact with the XNNPACK runtime, not just close to float simulation.

One model exercises every kernel family (conv2d with a fused clamp, depthwise
conv, 1x1 conv, add + relu, max pooling, global mean, linear, mul, sub,
conv1d). It is quantized with ``XnnpackQuantizer``, lowered twice: once by
stock ExecuTorch into the XNNPACK delegate and run by the ExecuTorch runtime,
once by ``lower_to_reference`` and run in eager PyTorch. Every output code
must be identical.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

runtime = pytest.importorskip("executorch.extension.pybindings.portable_lib")

from tests.support import lower_stock  # noqa: E402
from xnnquant.passes.lower_to_reference import REPORT_KEY, lower_to_reference  # noqa: E402
from xnnquant.quantizer import XnnpackQuantizer, get_config, quantize  # noqa: E402

pytestmark = pytest.mark.slow  # lowers and runs whole models


class EveryKernel(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 6)
        self.c1 = nn.Conv1d(4, 6, 3, padding=2, dilation=2)

    def forward(self, x, y, z):
        a = F.hardtanh(self.conv(x), 0.0, 6.0)
        a = torch.relu(self.dw(a))
        a = torch.relu(a + self.pw(a))
        a = F.max_pool2d(a, 2)
        f = self.fc(a.mean((2, 3)))
        return f, f * y, f - y, self.c1(z)


SHAPES = ((2, 4, 16, 16), (2, 6), (2, 4, 20))


def _inputs(seed):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(s, generator=g) * 2 for s in SHAPES)


@pytest.mark.parametrize("ir", ["training", "core"])
def test_reference_lowering_is_bit_exact_with_xnnpack_runtime(ir):
    torch.manual_seed(0)
    calibration = [_inputs(seed) for seed in range(3)]
    gm = quantize(EveryKernel().eval(), calibration[0], calibration,
                  XnnpackQuantizer().set_global(get_config(observer="minmax")), ir=ir)
    reference = lower_to_reference(gm)
    assert reference.meta[REPORT_KEY].skipped == []

    edge, outside = lower_stock(gm, calibration[0])
    assert outside == []
    program = edge.to_executorch()
    buffer = program.buffer  # the loaded module reads from this buffer: keep it alive
    module = runtime._load_for_executorch_from_buffer(buffer)

    outputs = [n for n in reference.graph.nodes if n.op == "output"][0].args[0]
    scales_zps = [(n.args[1], n.args[2]) for n in outputs]
    for seed in (10, 11):  # not calibration data, so some values saturate
        x = _inputs(seed)
        for (scale, zp), ours, theirs in zip(scales_zps, reference(*x), module.forward(x)):
            # Both are dequantized int8: compare the codes.
            ours_q = torch.round(ours / scale) + zp
            theirs_q = torch.round(theirs / scale) + zp
            assert torch.equal(ours_q, theirs_q), (
                f"{int((ours_q != theirs_q).sum())} codes differ, "
                f"max {float((ours_q - theirs_q).abs().max())} LSB"
            )
