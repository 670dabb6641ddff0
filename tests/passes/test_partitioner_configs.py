"""xnnquant's partitioner configs: each replaces ExecuTorch's config of its op and adds int8.

And the lowering uses them: with xnnquant's configs a quantized sigmoid runs
in int8 inside the delegate; ExecuTorch's stock configs run it in fp32
between two Converts (the delegate takes the q/dq around it on their own).
"""

from __future__ import annotations

import pytest
import torch
from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType
from torch import nn

from xnnquant.passes import lower_to_xnnpack
from xnnquant.passes.partitioner_configs import (
    CONFIGS_BY_NAME,
    PARTITIONER_CONFIGS,
    XNNQUANT_CONFIGS,
)
from xnnquant.quantizer import RECORDS, XnnpackQuantizer, get_config, quantize


def test_ours_replace_executorchs_of_the_same_target_and_add_int8():
    stock = {c.target_name: c for c in ALL_PARTITIONER_CONFIGS}
    used = {c.target_name: c for c in PARTITIONER_CONFIGS}
    assert len(used) == len(PARTITIONER_CONFIGS), "two configs share a target name"
    assert set(used) == set(stock), "the lowering must claim exactly what ExecuTorch claims"
    for config in XNNQUANT_CONFIGS:
        assert used[config.target_name] is config
        assert issubclass(config, stock[config.target_name])
        assert ConfigPrecisionType.STATIC_QUANT in config().supported_precision_types()
        assert ConfigPrecisionType.FP32 in config().supported_precision_types()


def test_every_config_a_record_names_resolves():
    for record in RECORDS:
        for name in record.partitioner:
            assert name in CONFIGS_BY_NAME, (record.name, name)


def _sigmoid_between_convs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sigmoid(), nn.Conv2d(4, 4, 1)).eval()
    x = (torch.randn(1, 3, 8, 8),)
    return quantize(model, x, [x], XnnpackQuantizer(get_config(observer="minmax"))), x


@pytest.mark.slow
def test_lowering_claims_int8_sigmoid_only_with_our_configs():
    gm, x = _sigmoid_between_convs()
    ours = lower_to_xnnpack(gm, x)
    assert ours.report.num_delegates == 1 and ours.report.fully_delegated
    stock = lower_to_xnnpack(gm, x, partitioner_kwargs={"configs": list(ALL_PARTITIONER_CONFIGS)})
    # Stock: the sigmoid is delegated too, but in fp32, its dq and q serialized as two
    # explicit Converts with an fp32 tensor each (5776 bytes against 5648, measured).
    assert stock.report.num_delegates == 1 and stock.report.self_check.passed
    assert len(ours.buffer) < len(stock.buffer)
