"""Dynamic shapes through quantize → ``lower_to_xnnpack`` → run, on both IRs and both configs.

Each case exports a model with a bounded ``torch.export.Dim`` (the batch dim of
a conv net and an MLP, the sequence dim of ``nn.TransformerEncoderLayer``),
quantizes it with ``XnnpackQuantizer`` (static int8, or dynamic int8), lowers
it (the self-check runs at the example size) and runs the ``.pte`` at three
sizes within the bounds; each result must match the converted graph within
int8 rounding.  ``lower_to_xnnpack`` used to re-export the converted graph
without its dynamic dims, so any size but the example's failed with
``set_inputs() ... failed with error 0x10``.  A size outside the bounds must
get xnnquant's ``InputError``, not the runtime's error code.

Run at the sizes in the order below (the example's first, through the self-check,
then smaller and up to the bound): an int8 ``mean`` in ExecuTorch's XNNPACK
delegate gave wrong results once a size grew past the largest one run before,
which ``LoweredProgram.load_method`` works around; the conv net's mean is the
regression test for that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest
import torch
from torch import nn
from torch.export import Dim

from xnnquant.passes import InputError, lower_to_xnnpack
from xnnquant.passes.report import output_step
from xnnquant.quantizer import XnnpackQuantizer, get_config, get_dynamic_config
from xnnquant.quantizer.workflow import quantize, sqnr

LOW, HIGH = 1, 8
SIZES = (1, 3, HIGH)  # the example's size (4) runs first, in the self-check


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 32)
        self.b = nn.Linear(32, 8)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def _encoder():
    return nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)


@dataclass(frozen=True)
class Case:
    build: Callable[[], nn.Module]
    shape: tuple  # the example's shape; dim ``dim`` is the dynamic one
    dim: int


CASES = {
    "conv": Case(ConvNet, (4, 3, 12, 12), 0),
    "mlp": Case(MLP, (4, 16), 0),
    "encoder": Case(_encoder, (2, 4, 32), 1),
}
CONFIGS = {
    # Static everywhere: the default would quantize the encoder dynamically (QuantConfig.attention).
    "static": lambda: XnnpackQuantizer(get_config(attention="static")),
    "dynamic": lambda: XnnpackQuantizer().set_global(get_dynamic_config()),
}
IRS = ("training", "core")
FAST = {("mlp", "static", "training"), ("conv", "static", "core")}

#: Within rounding: a dequantized output may be this many steps off (XNNPACK and
#: the q/dq graph round each requantization independently, the self-check's own
#: limit is 4); a float output of the dynamic config must keep this SQNR.
MAX_STEPS = 4.0
MIN_SQNR_DB = 30.0


def _sized(case: Case, n: int, seed: int) -> torch.Tensor:
    shape = list(case.shape)
    shape[case.dim] = n
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


_lowered: dict = {}


def _lower(name: str, config: str, ir: str):
    if (name, config, ir) not in _lowered:
        case = CASES[name]
        torch.manual_seed(0)
        model = case.build().eval()
        x = _sized(case, case.shape[case.dim], 0)
        converted = quantize(model, (x,), [(_sized(case, case.shape[case.dim], s),) for s in (1, 2, 3)],
                             CONFIGS[config](), ir=ir,
                             dynamic_shapes=({case.dim: Dim("n", min=LOW, max=HIGH)},))
        _lowered[name, config, ir] = (converted, lower_to_xnnpack(converted, (x,)))
    return _lowered[name, config, ir]


def _params():
    for name in CASES:
        for config in CONFIGS:
            for ir in IRS:
                marks = () if (name, config, ir) in FAST else (pytest.mark.slow,)
                yield pytest.param(name, config, ir, id=f"{name}-{config}-{ir}", marks=marks)


@pytest.mark.parametrize("name, config, ir", list(_params()))
def test_runs_at_sizes_within_the_bounds_and_matches_the_converted_graph(name, config, ir):
    case = CASES[name]
    converted, lowered = _lower(name, config, ir)
    assert lowered.report.self_check.passed
    dims = lowered.input_shapes[0][1]
    assert dims[case.dim] == (LOW, HIGH), lowered.input_shapes
    out = next(n for n in converted.graph.nodes if n.op == "output").args[0][0]
    step = output_step(out)
    for n in SIZES:
        x = _sized(case, n, 10 + n)
        got = lowered.run(x)[0]
        with torch.no_grad():
            want = converted(x)
        assert got.shape == want.shape, (n, got.shape, want.shape)
        if step is not None:
            steps = (got - want).abs().max().item() / step
            assert steps <= MAX_STEPS + 1e-3, f"size {n}: {steps:.1f} output steps off"
        else:
            assert sqnr(want, got) >= MIN_SQNR_DB, f"size {n}: SQNR {sqnr(want, got):.1f} dB"


def test_a_size_outside_the_bounds_gets_a_clear_error():
    case = CASES["mlp"]
    _, lowered = _lower("mlp", "static", "training")
    with pytest.raises(InputError, match=r"(?s)shape \(9, 16\).*\(1\.\.8, 16\).*dynamic_shapes"):
        lowered.run(_sized(case, HIGH + 1, 0))
    with pytest.raises(InputError, match=r"shape \(4, 15\)"):
        lowered.run(torch.randn(4, 15))  # a static dim must match exactly
    with pytest.raises(InputError, match="dtype torch.float16"):
        lowered.run(torch.randn(4, 16, dtype=torch.float16))
    with pytest.raises(InputError, match="takes 1 inputs, got 2"):
        lowered.run(torch.randn(4, 16), torch.randn(4, 16))
    # The method still runs afterwards: nothing reached the runtime.
    assert lowered.run(_sized(case, 2, 0))[0].shape == (2, 8)


def test_static_export_stays_static():
    x = torch.randn(4, 16)
    converted = quantize(MLP().eval(), (x,), None, XnnpackQuantizer())
    lowered = lower_to_xnnpack(converted, (x,))
    assert lowered.input_shapes == ((torch.float32, (4, 16)),)
    with pytest.raises(InputError, match=r"shape \(3, 16\).*\(4, 16\)"):
        lowered.run(torch.randn(3, 16))
