"""Configs: presets, validation errors, drop-in conversion of torchao/ExecuTorch configs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torchao.quantization.pt2e import HistogramObserver
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
from torchao.quantization.pt2e import MinMaxObserver
from torchao.quantization.pt2e.quantizer import QuantizationSpec

from xnnquant.quantizer import (
    MIN_SCALE,
    ConfigError,
    QuantConfig,
    XnnpackQuantizer,
    as_config,
    get_config,
    get_dynamic_config,
    get_qat_config,
)


def _act(**overrides):
    fields = dict(dtype=torch.int8, quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine,
                  observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=MIN_SCALE))
    fields.update(overrides)
    return QuantizationSpec(**fields)


def test_default_is_static_int8_per_channel():
    config = XnnpackQuantizer().global_config
    assert config == get_config()
    assert config.input_activation.dtype == torch.int8
    assert config.weight.qscheme == torch.per_channel_symmetric
    assert (config.weight.quant_min, config.weight.quant_max) == (-127, 127)
    assert config.bias is None and not config.is_dynamic and not config.is_qat


def test_presets_are_frozen_and_keyword_only():
    config = get_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.is_qat = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        get_config(False)  # type: ignore[misc]
    per_tensor = dataclasses.replace(config, name="tweaked")
    assert per_tensor.name == "tweaked" and config.name != "tweaked"


def _observer(spec):
    return spec.observer_or_fake_quant_ctr.p.func


PRESETS = {
    "per_tensor": (lambda: get_config(per_channel=False),
                   lambda c: c.weight.qscheme == torch.per_tensor_symmetric),
    "dynamic": (lambda: get_dynamic_config(),
                lambda c: c.is_dynamic and c.output_activation is None),
    "qat": (lambda: get_qat_config(), lambda c: c.is_qat),
    "histogram_default": (lambda: get_config(),
                          lambda c: _observer(c.input_activation) is HistogramObserver
                          and _observer(c.clamped_output_activation) is MinMaxObserver),
    "minmax": (lambda: get_config(observer="minmax"),
               lambda c: _observer(c.input_activation) is MinMaxObserver
               and _observer(c.output_activation) is MinMaxObserver
               and c.clamped_output_activation is None and not c.is_dynamic),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets(name):
    factory, check = PRESETS[name]
    assert check(factory())


def test_every_preset_keeps_scale_floor():
    for config in (get_config(), get_config(per_channel=False), get_dynamic_config(), get_qat_config()):
        for spec in (config.input_activation, config.output_activation, config.weight):
            if spec is not None:
                assert spec.observer_or_fake_quant_ctr.p.keywords["eps"] >= MIN_SCALE


BAD_CONFIGS = {
    "uint8_activations": (lambda: get_config(act_dtype=torch.uint8), "uint8"),
    "per_tensor_dynamic": (lambda: get_dynamic_config(per_channel=False), "per-channel"),
    "unknown_observer": (lambda: get_config(observer="percentile"), "observer"),
    "weight_range_128": (
        lambda: dataclasses.replace(get_config(), weight=dataclasses.replace(get_config().weight, quant_min=-128)),
        "[-127, 127]",
    ),
    "tiny_eps": (
        lambda: QuantConfig(input_activation=_act(observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=1e-9)),
                            output_activation=None, weight=None),
        "2**-12",
    ),
    "int16_activation": (lambda: QuantConfig(_act(dtype=torch.int16), None, None), "dtype"),
    "quantized_bias": (lambda: dataclasses.replace(get_config(), bias=_act()), "bias"),
    "weight_only": (lambda: QuantConfig(None, None, get_config().weight), "weight-only"),
    "not_a_config": (lambda: as_config(42), "QuantConfig"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_configs_raise_clear_errors(name):
    make, words = BAD_CONFIGS[name]
    with pytest.raises(ConfigError, match=None) as info:
        make()
    assert words in str(info.value)


def test_executorch_config_is_accepted_and_not_mutated():
    et_config = get_symmetric_quantization_config(is_per_channel=True)
    fields = [f.name for f in dataclasses.fields(et_config)]
    before = [getattr(et_config, f) for f in fields]
    quantizer = XnnpackQuantizer().set_global(et_config)
    assert isinstance(quantizer.global_config, QuantConfig)
    assert quantizer.global_config.weight == et_config.weight
    assert all(getattr(et_config, f) is b for f, b in zip(fields, before))
    assert as_config(quantizer.global_config.to_torchao()) == dataclasses.replace(
        quantizer.global_config, name="QuantizationConfig")
