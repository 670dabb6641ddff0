"""The table of op cases: one small module per op-table record (at least), run on both IRs.

``expect`` maps each IR to the pattern counts the annotation report must show
(``AnnotationReport.pattern_counts()``); ``floats`` names the float-only
records whose nodes the report must leave float, with the record's reason;
``outside`` gives how many ops are expected to stay outside the XNNPACK
delegate, with the reason in ``why``.  The guard test in ``test_patterns.py``
fails when a record of the op table has no case here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Case:
    make: Callable[[], nn.Module]
    shape: tuple
    expect: dict  # ir -> {pattern name: count}
    outside: dict = field(default_factory=dict)  # ir -> number of ops expected outside
    why: str = ""
    # ir -> {record name (or op name, for ops with no record): nodes left float}
    floats: dict = field(default_factory=dict)
    # ir -> records this case covers although that IR decomposes their op away
    decomposed: dict = field(default_factory=dict)


class _Fn(nn.Module):
    """A module around a function, with optional conv/linear children."""

    def __init__(self, fn, **children):
        super().__init__()
        self.fn = fn
        for name, child in children.items():
            setattr(self, name, child)

    def forward(self, x):
        return self.fn(self, x)


def _seeded(fn):
    def make():
        torch.manual_seed(0)
        return fn().eval()
    return make


def _both(counts: dict) -> dict:
    return {"training": counts, "core": counts}


CASES: dict = {
    "linear": Case(
        _seeded(lambda: nn.Sequential(nn.Linear(16, 8), nn.ReLU())), (4, 16),
        _both({"linear": 1}),
    ),
    "linear_no_bias": Case(
        _seeded(lambda: nn.Linear(16, 8, bias=False)), (4, 16),
        _both({"linear": 1}),
    ),
    "linear_3d": Case(
        _seeded(lambda: nn.Sequential(nn.Linear(16, 32), nn.Hardtanh(0, 6), nn.Linear(32, 8))),
        (2, 5, 16),
        _both({"linear": 2}),
    ),
    "conv2d_relu": Case(
        _seeded(lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())), (1, 3, 8, 8),
        _both({"conv": 1}),
    ),
    "conv_bn_relu6": Case(
        _seeded(lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU6())),
        (1, 3, 8, 8),
        _both({"conv": 1}),
    ),
    "depthwise_conv": Case(
        _seeded(lambda: nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU())),
        (1, 8, 8, 8),
        _both({"conv": 1}),
    ),
    "grouped_conv": Case(
        _seeded(lambda: nn.Conv2d(8, 16, 3, stride=2, groups=4)), (1, 8, 9, 9),
        _both({"conv": 1}),
    ),
    "conv1d": Case(
        _seeded(lambda: nn.Sequential(nn.Conv1d(4, 8, 3, padding=1), nn.ReLU())), (2, 4, 16),
        _both({"conv": 1}),
    ),
    "conv_transpose2d": Case(
        _seeded(lambda: nn.ConvTranspose2d(4, 8, 3, stride=2)), (1, 4, 6, 6),
        _both({"conv_transpose": 1}),
    ),
    "conv_relu6_functional": Case(
        _seeded(lambda: _Fn(lambda m, x: F.relu6(m.conv(x)), conv=nn.Conv2d(3, 4, 3))),
        (1, 3, 8, 8),
        _both({"conv": 1}),
    ),
    "conv_clamp": Case(
        _seeded(lambda: _Fn(lambda m, x: torch.clamp(m.conv(x), 0.0, 4.0),
                            conv=nn.Conv2d(3, 4, 3))),
        (1, 3, 8, 8),
        _both({"conv": 1}),
    ),
    "add_relu": Case(
        _seeded(lambda: _Fn(lambda m, x: F.relu(m.a(x) + m.b(x)),
                            a=nn.Conv2d(3, 4, 1), b=nn.Conv2d(3, 4, 1))),
        (1, 3, 8, 8),
        _both({"conv": 2, "add": 1}),
    ),
    "add_scalar": Case(
        _seeded(lambda: _Fn(lambda m, x: m.conv(x) + 0.5, conv=nn.Conv2d(3, 4, 1))),
        (1, 3, 8, 8),
        _both({"conv": 1, "add": 1}),
    ),
    "sub": Case(
        _seeded(lambda: _Fn(lambda m, x: m.a(x) - m.b(x), a=nn.Conv2d(3, 4, 1), b=nn.Conv2d(3, 4, 1))),
        (1, 3, 8, 8),
        _both({"conv": 2, "sub": 1}),
    ),
    "mul": Case(
        _seeded(lambda: _Fn(lambda m, x: m.a(x) * m.b(x), a=nn.Conv2d(3, 4, 1), b=nn.Conv2d(3, 4, 1))),
        (1, 3, 8, 8),
        _both({"conv": 2, "mul": 1}),
    ),
    "max_pool": Case(
        _seeded(lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))),
        (1, 3, 8, 8),
        _both({"conv": 1, "max_pool": 1}),
    ),
    "max_pool_indices_used": Case(
        _seeded(lambda: _Fn(lambda m, x: m.pool(m.conv(x)),
                            conv=nn.Conv2d(3, 4, 3, padding=1),
                            pool=nn.MaxPool2d(2, return_indices=True))),
        (1, 3, 8, 8),
        _both({"conv": 1, "max_pool": 1}),
        outside={"training": 1, "core": 1},
        why="the indices output is int64 and is read, so XNNPACK cannot take the op",
    ),
    "mean_classifier": Case(
        _seeded(lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten(), nn.Linear(8, 4))),
        (1, 3, 8, 8),
        _both({"conv": 1, "mean": 1, "view": 1, "linear": 1}),
    ),
    "mean_dims": Case(
        _seeded(lambda: _Fn(lambda m, x: m.fc(F.relu(m.conv(x)).mean((2, 3))),
                            conv=nn.Conv2d(3, 8, 3), fc=nn.Linear(8, 4))),
        (1, 3, 8, 8),
        _both({"conv": 1, "mean": 1, "view": 1, "linear": 1}),
    ),
    "data_movement": Case(
        _seeded(lambda: _Fn(
            lambda m, x: m.fc(torch.cat([m.conv(x)[:, :, 1:], m.conv(x)[:, :, :-1]], dim=1)
                              .permute(0, 2, 3, 1).reshape(2, -1)),
            conv=nn.Conv2d(3, 4, 1), fc=nn.Linear(8 * 3 * 4, 4))),
        (2, 3, 4, 4),
        {"training": {"conv": 2, "slice": 2, "cat": 1, "permute": 1, "view": 1, "linear": 1},
         "core": {"conv": 2, "slice": 2, "cat": 1, "permute": 1, "view": 1, "clone": 1, "linear": 1}},
    ),
    "standalone_relu_hardtanh": Case(
        _seeded(lambda: _Fn(lambda m, x: F.hardtanh(F.relu(m.pool(m.conv(x))), 0.0, 1.0),
                            conv=nn.Conv2d(3, 4, 3, padding=1), pool=nn.MaxPool2d(2))),
        (1, 3, 8, 8),
        _both({"conv": 1, "max_pool": 1, "relu": 1, "hardtanh": 1}),
    ),
}


def _between_convs(fn, floats: dict, channels: int = 4, **kw) -> Case:
    """A float-only op between two quantized convs: it must stay float with its record's reason."""
    return Case(
        _seeded(lambda: _Fn(lambda m, x: m.b(fn(m.a(x))), a=nn.Conv2d(3, channels, 1),
                            b=nn.Conv2d(channels, 4, 1))),
        (1, 3, 8, 8), kw.pop("expect", _both({"conv": 2})), floats=kw.pop("irs_floats", _both(floats)),
        **kw,
    )


# squeeze/unsqueeze on non-trailing dims: [1,4,1,8] → conv1d on [1,4,8] → conv2d on [1,1,4,8].
CASES["squeeze"] = Case(
    _seeded(lambda: _Fn(lambda m, x: m.c(m.b(m.a(x).squeeze(2)).unsqueeze(1)),
                        a=nn.Conv2d(3, 4, 1), b=nn.Conv1d(4, 4, 3, padding=1), c=nn.Conv2d(1, 2, 1))),
    (1, 3, 1, 8), _both({"conv": 3, "squeeze": 2}),
)

CASES["clone"] = Case(
    _seeded(lambda: _Fn(lambda m, x: m.b(m.a(x).clone()), a=nn.Conv2d(3, 4, 1), b=nn.Conv2d(4, 4, 1))),
    (1, 3, 8, 8), _both({"conv": 2, "clone": 1}),
)

# An attention-style mask: softmax(scores + where(keep, 0, finfo.min)).  One int8 scale cannot
# hold -3.4e38 and the scores, so the add must stay float (the where and gt have no record).
CASES["masked_add"] = Case(
    _seeded(lambda: _Fn(
        lambda m, x: m.b(torch.softmax(
            m.a(x) + torch.where(x[:, :8] > 0, 0.0, torch.finfo(torch.float32).min), dim=-1)),
        a=nn.Linear(16, 8), b=nn.Linear(8, 4))),
    (4, 16), _both({"linear": 2, "slice": 1}),
    floats={"training": {"add": 1, "softmax": 1, "aten.where.Scalar": 1, "aten.gt.Scalar": 1},
            "core": {"add": 1, "softmax": 1, "aten.where.self": 1, "aten.gt.Scalar": 1,
                     "aten.scalar_tensor.default": 2}},
    outside=_both(4), why="XNNPACK has no where, scalar_tensor or comparison ops",
)

def _gated(gate, counts: dict) -> Case:
    """A squeeze-excite block, ``f · gate(mean(f))`` with ``f = conv(x)``, before another conv."""
    return Case(
        _seeded(lambda: _Fn(lambda m, x: m.b(_squeeze_excite(m.a(x), gate)),
                            a=nn.Conv2d(3, 4, 1), b=nn.Conv2d(4, 4, 1))),
        (1, 3, 8, 8), _both({"conv": 2, "mean": 1, **counts}))


def _squeeze_excite(features, gate):
    return features * gate(features.mean((2, 3), keepdim=True))


# int8 activations (lookup tables in XNNPACK), through xnnquant's partitioner configs.
CASES.update({
    "sigmoid": _between_convs(torch.sigmoid, {}, expect=_both({"conv": 2, "sigmoid": 1})),
    "tanh": _between_convs(torch.tanh, {}, expect=_both({"conv": 2, "tanh": 1})),
    "gelu": _between_convs(F.gelu, {}, expect=_both({"conv": 2, "gelu": 1})),
    "gelu_tanh": _between_convs(lambda x: F.gelu(x, approximate="tanh"), {},
                                expect=_both({"conv": 2, "gelu": 1})),
    "leaky_relu": _between_convs(lambda x: F.leaky_relu(x, 0.1), {},
                                 expect=_both({"conv": 2, "leaky_relu": 1})),
    # The core IR decomposes hardswish; RecomposeHardswish puts it back whole.
    "hardswish": _between_convs(F.hardswish, {}, expect=_both({"conv": 2, "hardswish": 1})),
    "hardswish_by_hand": _between_convs(lambda x: x * F.relu6(x + 3) / 6, {},
                                        expect=_both({"conv": 2, "hardswish": 1})),
    "hardsigmoid": _between_convs(F.hardsigmoid, {}, expect=_both(
        {"conv": 2, "add": 1, "hardtanh": 1, "mul": 1})),
    # SiLU is sigmoid then mul in XNNPACK (DecomposeSilu spells the training IR that way).
    "silu": _between_convs(F.silu, {}, expect=_both({"conv": 2, "sigmoid": 1, "mul": 1})),
    "se_sigmoid": _gated(torch.sigmoid, {"sigmoid": 1, "mul": 1}),
    # The gate is respelled add → hardtanh → mul by 1/6 (RewriteHardsigmoid), then the SE mul.
    "se_hardsigmoid": _gated(F.hardsigmoid, {"add": 1, "hardtanh": 1, "mul": 2}),
    # Pad keeps its input's qparams and XNNPACK fuses it into the conv after it.
    "pad_conv": _between_convs(lambda x: F.pad(x, (1, 1, 1, 1)), {},
                               expect=_both({"conv": 2, "pad": 1})),
    "pad_value_alone": Case(
        _seeded(lambda: _Fn(lambda m, x: F.pad(m.a(x), (1, 2, 0, 1), value=0.25),
                            a=nn.Conv2d(3, 4, 1))),
        (1, 3, 8, 8), _both({"conv": 1, "pad": 1})),
    # TF "SAME" with an even kernel: the training IR keeps conv2d(padding="same"), the core IR
    # spells it constant_pad_nd → convolution.
    "conv_same_even_kernel": Case(
        _seeded(lambda: _Fn(lambda m, x: m.b(F.relu(m.a(x))), a=nn.Conv2d(3, 4, 1),
                            b=nn.Conv2d(4, 4, 4, padding="same"))),
        (1, 3, 8, 8), {"training": {"conv": 2}, "core": {"conv": 2, "pad": 1}}),
})

# Float-only records: XNNPACK runs them in fp32 (inside the delegate, unless the record says).
CASES.update({
    # Between linears (no NHWC conversion): after a conv, ExecuTorch's softmax over the last
    # NCHW dim disagrees with its graph (the self-check catches it), and over another dim
    # XNNPACK refuses it.
    "softmax": Case(
        _seeded(lambda: _Fn(lambda m, x: m.b(torch.softmax(m.a(x), dim=-1)), a=nn.Linear(16, 8),
                            b=nn.Linear(8, 4))),
        (4, 16), _both({"linear": 2}), floats=_both({"softmax": 1}),
    ),
    "avg_pool2d": _between_convs(lambda x: F.avg_pool2d(x, 2), {"avg_pool2d": 1}),
    "layer_norm": Case(
        _seeded(lambda: _Fn(lambda m, x: m.b(m.norm(m.a(x))), a=nn.Linear(16, 8),
                            norm=nn.LayerNorm(8), b=nn.Linear(8, 4))),
        (4, 16), _both({"linear": 2}), floats=_both({"layer_norm": 1}),
    ),
    "bmm": Case(
        _seeded(lambda: _Fn(lambda m, x: m.b(torch.bmm(m.a(x), m.c(x).transpose(1, 2))),
                            a=nn.Linear(8, 8), c=nn.Linear(8, 8), b=nn.Linear(3, 4))),
        (2, 3, 8), _both({"linear": 3, "permute": 1}), floats=_both({"bmm": 1}),
    ),
})


_CACHE: dict = {}


def quantize_case(name: str, ir: str, *, fresh: bool = False):
    """(quantizer, converted graph module, example inputs, model) for one case, cached per run."""
    from xnnquant.quantizer import XnnpackQuantizer, get_config, quantize

    key = (name, ir)
    if fresh or key not in _CACHE:
        case = CASES[name]
        torch.manual_seed(1)
        model = case.make()
        x = (torch.randn(*case.shape),)
        calibration = [(torch.randn(*case.shape),) for _ in range(4)] + [x]
        # minmax keeps the table fast; the default config is covered by the model tests.
        quantizer = XnnpackQuantizer(get_config(observer="minmax"))
        converted = quantize(model, x, calibration, quantizer, ir=ir)
        if fresh:
            return quantizer, converted, x, model
        _CACHE[key] = (quantizer, converted, x, model)
    return _CACHE[key]
