"""The lookup-table activations and pad are bit-exact with the XNNPACK runtime.

One model holds each of them after a conv (sigmoid, tanh, gelu both ways,
hardswish, leaky_relu, a pad before a conv, a pad with a value on its own).
It is quantized with ``XnnpackQuantizer`` and lowered twice: by
``lower_to_xnnpack``, which claims these ops in int8 through xnnquant's
partitioner configs, and run by the ExecuTorch runtime; and by
``lower_to_reference``, run in eager PyTorch.  Every output code must be
identical, on inputs outside the calibration range too (the tables' tails).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xnnquant.passes import lower_to_xnnpack
from xnnquant.passes.lower_to_reference import REPORT_KEY, lower_to_reference
from xnnquant.quantizer import XnnpackQuantizer, get_config, quantize

pytestmark = pytest.mark.slow  # lowers and runs a model on both IRs

ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "hardswish": F.hardswish,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),
}


class EveryTable(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleDict({name: nn.Conv2d(4, 4, 1) for name in ACTIVATIONS})
        self.padded = nn.Conv2d(4, 4, 3)

    def forward(self, x):
        outs = [ACTIVATIONS[name](conv(x)) for name, conv in self.convs.items()]
        outs.append(self.padded(F.pad(x, (1, 1, 1, 1))))
        outs.append(F.pad(self.convs["tanh"](x), (2, 0, 1, 1), value=0.5))
        return tuple(outs)


def _codes(values: torch.Tensor, scale: float, zp: int) -> torch.Tensor:
    return torch.round(values / scale) + zp


@pytest.mark.parametrize("ir", ["training", "core"])
def test_tables_and_pad_are_bit_exact_with_xnnpack_runtime(ir):
    torch.manual_seed(0)
    calibration = [(torch.randn(2, 4, 8, 8),) for _ in range(3)]
    gm = quantize(EveryTable().eval(), calibration[0], calibration,
                  XnnpackQuantizer().set_global(get_config(observer="minmax")), ir=ir)
    reference = lower_to_reference(gm)
    assert reference.meta[REPORT_KEY].skipped == []
    lowered = lower_to_xnnpack(gm, calibration[0], require_full_delegation=True)
    assert lowered.report.num_delegates == 1

    outputs = [n for n in reference.graph.nodes if n.op == "output"][0].args[0]
    scales_zps = [(n.args[1], n.args[2]) for n in outputs]
    names = [*ACTIVATIONS, "pad_conv", "pad_value"]
    for seed in (10, 11):
        x = (torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(seed)) * 3,)
        for name, (scale, zp), ours, theirs in zip(names, scales_zps, reference(*x),
                                                   lowered.run(*x)):
            diff = (_codes(ours, scale, zp) - _codes(theirs, scale, zp)).abs()
            print(f"{ir} {name}: max {int(diff.max())} steps, {int((diff > 0).sum())} differ")
            assert int(diff.max()) == 0, name
