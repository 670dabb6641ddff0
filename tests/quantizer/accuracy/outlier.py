"""The test model one layer of which breaks int8: fc1's output has one channel ×1000.

fc2's weights for that channel are divided by 1000, so the fp32 function is an
ordinary MLP; but the per-tensor scale of fc1's output (fc2's input) is set by
the outlier channel, and the other 31 channels round to a few levels.  Only
keeping both fc1 (whose output is quantized for fc2) and fc2 (which quantizes
its input) float removes that quantize step.
"""

from __future__ import annotations

import torch
from torch import nn

OUTLIER_SCALE = 1000.0


class OutlierNet(nn.Module):
    def __init__(self, outlier: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 32)
        self.fc3 = nn.Linear(32, 8)
        if outlier:
            with torch.no_grad():
                self.fc1.weight[3] *= OUTLIER_SCALE
                self.fc1.bias[3] *= OUTLIER_SCALE
                self.fc2.weight[:, 3] /= OUTLIER_SCALE

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(self.fc1(x))))


def outlier_net(*, outlier: bool = True, seed: int = 0) -> nn.Module:
    """A seeded :class:`OutlierNet` in eval mode; the caller's RNG is left alone."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return OutlierNet(outlier).eval()


def batches(count: int = 4, seed: int = 1) -> list:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 16, generator=gen),) for _ in range(count)]
