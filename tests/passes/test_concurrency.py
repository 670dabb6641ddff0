"""Quantizing and lowering two models in two threads at once gives what doing it serially gives.

Each job is the whole flow (export, prepare, calibrate, convert, lower with its
self-check) on its own model; the annotation reports, the delegation reports
and the ``.pte`` bytes must equal those of the same jobs run one after the other.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.support import run_at_once
from xnnquant.passes import lower_to_xnnpack
from xnnquant.quantizer import XnnpackQuantizer, quantize

pytestmark = pytest.mark.slow  # two rounds of two lowerings


def _conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2),
                         nn.Flatten(), nn.Linear(4 * 3 * 3, 5)).eval(), (torch.randn(2, 3, 8, 8),)


def _mlp():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(16, 32), nn.Hardswish(), nn.Linear(32, 4)).eval(), (torch.randn(3, 16),)


JOBS = {"conv": (_conv_net, "core"), "mlp": (_mlp, "training")}


def _job(name: str) -> tuple:
    build, ir = JOBS[name]
    model, x = build()
    calibration = [tuple(torch.randn_like(t) for t in x) for _ in range(3)]
    quantizer = XnnpackQuantizer()
    converted = quantize(model, x, calibration, quantizer, ir=ir)
    lowered = lower_to_xnnpack(converted, x)
    return quantizer.report.to_dict(), lowered.report.to_dict(), lowered.buffer


def test_two_threads_give_the_serial_results():
    serial = {name: _job(name) for name in JOBS}
    results = run_at_once({name: (lambda n=name: _job(n)) for name in JOBS})
    for name, (annotation, delegation, buffer) in serial.items():
        got = results[name]
        assert got[0] == annotation, name
        assert got[1] == delegation, name
        assert got[2] == buffer, name
