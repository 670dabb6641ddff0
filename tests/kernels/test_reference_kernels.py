"""Reference kernels against the float simulation, and the exact integer corner cases.

The table-driven test checks every case of ``kernel_cases.CASES`` to within one
output LSB of ``dequantize → float op → quantize``. The explicit tests pin
what "within one LSB" hides: round-half-to-even in the fp32 requantization,
XNNPACK's round-half-up in the fixed-point add, saturation, the fused
activation bounds and the bias quantization.
"""

from __future__ import annotations

import pytest
import torch

from tests.kernels.kernel_cases import CASES, output_bounds, simulate
from xnnquant.kernels import activation_bounds, add_fixed_point_params

xnn = torch.ops.xnnquant

# Measured worst case per kernel, printed by -s for the record; the assertion is the bound.
MAX_LSB = 1


def _run(case_id):
    case = CASES[case_id]
    kw = case.build()
    out_min, out_max = output_bounds(kw, case.act)
    got = getattr(xnn, case.kernel)(**kw, out_min=out_min, out_max=out_max)
    return got, simulate(case.kernel, kw, case.act)


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_kernel_matches_float_simulation(case_id):
    got, expected = _run(case_id)
    assert got.dtype == torch.int8
    assert got.shape == expected.shape
    diff = (got.to(torch.int16) - expected.to(torch.int16)).abs()
    print(f"{case_id}: max |Δ| = {int(diff.max())} LSB, "
          f"{int((diff > 0).sum())}/{diff.numel()} off by one")
    assert int(diff.max()) <= MAX_LSB


def test_saturating_cases_do_saturate():
    # The "saturating" cases only test saturation if some output actually hits the rails.
    for case_id in [c for c in CASES if c.endswith("saturating")]:
        got, _ = _run(case_id)
        assert int(got.max()) == 127 and int(got.min()) == -128, case_id


def _i8(*values):
    return torch.tensor(values, dtype=torch.int8)


def test_linear_requantization_rounds_half_to_even():
    # s_x·s_w/s_y = 0.5, so acc = 1, 3, 5, -1, -3 lands exactly on .5 ties.
    x = _i8(1, 3, 5, -1, -3).reshape(5, 1)
    w = _i8(1).reshape(1, 1)
    got = xnn.quantized_linear(x, 1.0, 0, w, torch.tensor([1.0]), None, 2.0, 0, -128, 127)
    assert got.flatten().tolist() == [0, 2, 2, 0, -2]


def test_conv_requantization_rounds_half_to_even():
    x = _i8(1, 3, 5, -5).reshape(1, 1, 4)
    w = _i8(1).reshape(1, 1, 1)
    got = xnn.quantized_conv(x, 1.0, 0, w, torch.tensor([1.0]), None, [1], [0], [1], 1,
                             2.0, 0, -128, 127)
    assert got.flatten().tolist() == [0, 2, 2, -2]


def test_mul_requantization_rounds_half_to_even():
    got = xnn.quantized_mul(_i8(1, 3, 5, -3), 1.0, 0, _i8(1, 1, 1, 1), 1.0, 0, 2.0, 0, -128, 127)
    assert got.tolist() == [0, 2, 2, -2]


def test_add_rounds_ties_up_like_xnnpack():
    # r_a = r_b = 0.5: a + b = 5 → 2.5 → 3 and -5 → -2.5 → -2 (towards +inf, not to even).
    got = xnn.quantized_add(_i8(3, -3, 1), 0.1, 0, _i8(2, -2, 0), 0.1, 0, 0.2, 0, -128, 127)
    assert got.tolist() == [3, -2, 1]


def test_add_fixed_point_parameters():
    # Worked example of the quantized_add docstring: r = 0.5 → shift 21, M = 2**20.
    assert add_fixed_point_params(0.1, 0, 0.1, 0, 0.2) == (2**20, 2**20, 21, 2**20)
    a_mult, b_mult, shift, bias = add_fixed_point_params(0.5, 3, 0.25, -7, 1.0)
    assert (a_mult, b_mult, shift) == (2**20, 2**19, 21)
    assert bias == 2**20 - 3 * 2**20 + 7 * 2**19
    with pytest.raises(ValueError, match="outside XNNPACK's range"):
        add_fixed_point_params(1.0, 0, 1.0, 0, 2000.0)


def test_requantization_saturates_at_qmin_qmax():
    x = _i8(127, -128).reshape(2, 1)
    w = _i8(127).reshape(1, 1)
    got = xnn.quantized_linear(x, 1.0, 0, w, torch.tensor([1.0]), None, 1.0, 0, -128, 127)
    assert got.flatten().tolist() == [127, -128]


@pytest.mark.parametrize(
    "name",
    ["relu", "relu6", "hardtanh", "clamp_lower_only", "bound_outside_range"],
)
def test_activation_bounds(name):
    cases = {
        "relu": ((0.0, None, 0.05, -10), (-10, 127)),
        "relu6": ((0.0, 6.0, 0.05, -10), (-10, 110)),
        "hardtanh": ((-1.0, 1.0, 0.1, 3), (-7, 13)),
        "clamp_lower_only": ((0.26, None, 0.1, 0), (3, 127)),  # 2.6 → 3
        "bound_outside_range": ((-100.0, 100.0, 0.1, 0), (-128, 127)),
    }
    args, expected = cases[name]
    assert activation_bounds(*args) == expected


def test_bias_is_quantized_with_input_times_weight_scale_half_to_even():
    # s_b = s_x·s_w = 0.5; bias 1.25 → 2.5 → 2 (even), -0.75 → -1.5 → -2.
    x = torch.zeros(1, 1, dtype=torch.int8)
    w = torch.zeros(2, 1, dtype=torch.int8)
    bias = torch.tensor([1.25, -0.75])
    # m = 0.5/1 = 0.5 → y = round(acc·0.5) = round(1.0), round(-1.0) = 1, -1.
    got = xnn.quantized_linear(x, 1.0, 0, w, torch.tensor([0.5, 0.5]), bias, 1.0, 0, -128, 127)
    assert got.flatten().tolist() == [1, -1]


def test_int32_overflow_is_reported():
    x = torch.full((1, 70000), 127, dtype=torch.int8)
    w = torch.full((1, 70000), 127, dtype=torch.int8)
    with pytest.raises(OverflowError, match="int32 accumulator overflow"):
        xnn.quantized_linear(x, 1.0, -128, w, torch.tensor([1.0]), None, 1.0, 0, -128, 127)


def test_wrong_dtype_and_scale_count_are_rejected():
    w = _i8(1, 2).reshape(2, 1)
    with pytest.raises(TypeError, match="x must be int8"):
        xnn.quantized_linear(torch.zeros(1, 1), 1.0, 0, w, torch.ones(2), None, 1.0, 0, -128, 127)
    with pytest.raises(ValueError, match="w_scale has 3 entries"):
        xnn.quantized_linear(_i8(1).reshape(1, 1), 1.0, 0, w, torch.ones(3), None, 1.0, 0,
                             -128, 127)


def test_sub_rounds_ties_up_like_xnnpack():
    # r_a = 0.5, r_b = -0.5: 5 - 2 = 3 → 1.5 → 2 and 2 - 5 → -1.5 → -1.
    got = xnn.quantized_sub(_i8(5, 2), 0.1, 0, _i8(2, 5), 0.1, 0, 0.2, 0, -128, 127)
    assert got.tolist() == [2, -1]


def test_mean_adds_the_output_zero_point_before_rounding():
    # XNNPACK's mean ends in an f32 → qs8 convert: round(acc·m + zp_y), half to even.
    # acc = 8 over 16 elements is 0.5: round(0.5 − 117) = −116, not round(0.5) − 117 = −117.
    x = torch.full((1, 1, 4, 4), -117, dtype=torch.int8)
    x[0, 0, 0, :2] = -113  # acc = 2·4 = 8
    got = xnn.quantized_mean_hw(x, 0.1, -117, 0.1, -117, -128, 127)
    assert got.item() == -116
