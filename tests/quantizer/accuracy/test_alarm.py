"""quantize()'s always-on alarm: it fires on the outlier model, names the layer, and records the figure."""

from __future__ import annotations

import warnings

import pytest

from xnnquant.quantizer import XnnpackQuantizer
from xnnquant.quantizer.accuracy import ACCURACY_KEY, AccuracyWarning
from xnnquant.quantizer.accuracy.alarm import ALARM_BATCHES
from xnnquant.quantizer.workflow import IRS, quantize

from .outlier import batches, outlier_net


@pytest.mark.parametrize("ir", IRS)
def test_alarm_fires_and_names_the_layer(ir):
    cal = batches()
    with pytest.warns(AccuracyWarning, match=r"below the alarm threshold of 15 dB.*Worst layers: fc2"):
        converted = quantize(outlier_net(), cal[0], cal, XnnpackQuantizer(), ir=ir)
    figure = converted.meta[ACCURACY_KEY]
    assert figure.alarm and figure.sqnr_db < 10.0 and figure.batches == ALARM_BATCHES
    assert figure.worst_layers[0][0] == "fc2"


def test_alarm_stays_quiet_on_a_clean_model_and_records_the_figure():
    cal = batches()
    with warnings.catch_warnings():
        warnings.simplefilter("error", AccuracyWarning)
        converted = quantize(outlier_net(outlier=False), cal[0], cal, XnnpackQuantizer())
    figure = converted.meta[ACCURACY_KEY]
    assert not figure.alarm and figure.sqnr_db > 30.0 and figure.worst_layers == ()


def test_threshold_is_the_users_and_none_disables():
    cal = batches()
    with pytest.warns(AccuracyWarning):
        quantize(outlier_net(outlier=False), cal[0], cal, XnnpackQuantizer(), alarm_sqnr_db=100.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AccuracyWarning)
        converted = quantize(outlier_net(), cal[0], cal, XnnpackQuantizer(), alarm_sqnr_db=None)
    assert ACCURACY_KEY not in converted.meta


def test_one_shot_calibration_iterator_still_calibrates_and_is_measured():
    cal = batches(12)
    with pytest.warns(AccuracyWarning):
        converted = quantize(outlier_net(), cal[0], iter(cal), XnnpackQuantizer())
    # The alarm keeps only the first few batches of a one-shot iterator.
    assert converted.meta[ACCURACY_KEY].batches == ALARM_BATCHES
