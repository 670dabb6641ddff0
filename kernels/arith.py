"""Integer arithmetic shared by the reference kernels, written once.

Every formula here mirrors a specific step of XNNPACK's int8 (``qs8``) operators
as ExecuTorch's XNNPACK delegate sets them up, so that the kernels in
``xnnquant.kernels.ops`` are a golden model of the runtime and not merely of the
float simulation:

* ``quantize_bias``: ExecuTorch's XNNPACK delegate quantizes a float bias
  itself at lowering time to int32 with scale ``s_x·s_w[c]`` and zero point 0.
* ``fp32_multiplier`` + ``requantize_fp32``: the "fp32" requantization of the
  GEMM/conv/mul/reduce microkernels. The multiplier is computed in single
  precision, ``(s_x·s_w[c]) / s_y``, the int32 accumulator is converted to fp32,
  multiplied, rounded to nearest-even and offset by the output zero point.
* ``add_fixed_point_params``: XNNPACK's qs8 add is *not* fp32: it turns both
  scale ratios into 21-bit integer multipliers and a shared right shift.
* ``activation_bounds``: a fused activation becomes an output clamp
  ``[qmin', qmax']`` computed the way XNNPACK quantizes ``output_min/max``.

All helpers work on torch tensors or Python scalars only, so they run in plain
eager PyTorch.
"""

from __future__ import annotations

import struct

import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers quantized_decomposed ops)

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def f32(value: float) -> float:
    """Round a Python float (a C double) to the nearest IEEE single.

    XNNPACK keeps every scale in ``float``; rounding here reproduces the
    single-precision value it actually multiplies with.
    """
    return struct.unpack("<f", struct.pack("<f", value))[0]


def _f32_bits(value: float) -> int:
    return struct.unpack("<I", struct.pack("<f", value))[0]


def fp32_multiplier(x_scale: float, w_scale: torch.Tensor, y_scale: float) -> torch.Tensor:
    """Per-channel requantization multiplier ``m[c] = (s_x · s_w[c]) / s_y`` in fp32.

    XNNPACK computes ``input_scale * kernel_scale[c] / output_scale`` in C
    ``float`` arithmetic (left to right), so the product is rounded to single
    precision before the division; doing it in double would differ in the last
    bit of ``m`` for some scales.
    """
    sx = torch.tensor(x_scale, dtype=torch.float32)
    sy = torch.tensor(y_scale, dtype=torch.float32)
    return (sx * w_scale.to(torch.float32)) / sy


def requantize_fp32(
    acc: torch.Tensor, multiplier: torch.Tensor, y_zp: int, out_min: int, out_max: int
) -> torch.Tensor:
    """``clamp(round_half_even(fp32(acc) · m) + zp_y, out_min, out_max)`` as int8.

    ``acc`` holds exact integer accumulators (any integer dtype). The conversion
    to fp32 rounds to nearest like C's ``(float) int32_t``; the product is one
    fp32 multiply; ``torch.round`` rounds half to even like XNNPACK's magic-bias
    trick / ``lrintf``. XNNPACK clamps the scaled value to ``[min−zp, max−zp]``
    before rounding; because both bounds are integers and rounding is monotonic,
    clamping after rounding gives the same result.
    """
    scaled = acc.to(torch.float32) * multiplier
    q = torch.round(scaled).to(torch.int64) + y_zp
    return q.clamp(out_min, out_max).to(torch.int8)


def check_int32(acc: torch.Tensor, what: str) -> None:
    """Raise when an exact accumulator leaves int32, where XNNPACK would wrap.

    Raises:
        OverflowError: naming ``what`` and the offending magnitude.
    """
    if acc.numel() and (acc.max() > INT32_MAX or acc.min() < INT32_MIN):
        worst = max(abs(int(acc.max())), abs(int(acc.min())))
        raise OverflowError(
            f"{what}: int32 accumulator overflow (|acc| = {worst} > 2**31-1); "
            "XNNPACK would wrap around here. Reduce the input range or the reduction size."
        )


def quantize_bias(
    bias: torch.Tensor | None, x_scale: float, w_scale: torch.Tensor, out_channels: int
) -> torch.Tensor:
    """Quantize a float bias to int32 with scale ``s_x·s_w[c]`` and zero point 0.

    This is what ExecuTorch's XNNPACK delegate does with the float bias of a
    quantized linear/conv: it sets the scale to ``weight_scale * input_scale`` and calls
    ``quantized_decomposed.quantize_per_channel`` (per-channel weights) or
    ``quantize_per_tensor`` (per-tensor weights) with range ``[-2³¹, 2³¹-1]``,
    i.e. ``clamp(round_half_even(b · (1/scale)), …)``. We call the same ops so
    the rounding, including the fp32 reciprocal, is identical.

    Returns:
        An int64 tensor of shape ``[out_channels]`` (zeros when ``bias`` is None).
    """
    if bias is None:
        return torch.zeros(out_channels, dtype=torch.int64)
    bias = bias.to(torch.float32)
    if w_scale.numel() == 1:
        # Per-tensor weights: ExecuTorch multiplies two Python floats (double).
        scale = float(w_scale.reshape(())) * x_scale
        q = torch.ops.quantized_decomposed.quantize_per_tensor(
            bias, scale, 0, INT32_MIN, INT32_MAX, torch.int32
        )
    else:
        scale = w_scale * x_scale
        q = torch.ops.quantized_decomposed.quantize_per_channel(
            bias, scale, torch.zeros_like(scale, dtype=torch.int64), 0,
            INT32_MIN, INT32_MAX, torch.int32,
        )
    return q.to(torch.int64)


def activation_bounds(
    lower: float | None,
    upper: float | None,
    y_scale: float,
    y_zp: int,
    qmin: int = INT8_MIN,
    qmax: int = INT8_MAX,
) -> tuple[int, int]:
    """Output clamp ``[qmin', qmax']`` for a fused activation clamping to ``[lower, upper]``.

    XNNPACK receives the activation as float ``output_min/output_max`` and
    quantizes each bound as ``lrintf(clamp(v / s_y + zp_y, -128, 127))`` in
    fp32. ``None`` means unbounded on that side.

    Example: relu on an output with ``s_y = 0.05, zp_y = -10`` gives
    ``lower = 0 → 0/0.05 − 10 = −10``, so ``[qmin', qmax'] = [−10, 127]``;
    relu6 adds ``upper = 6 → 6/0.05 − 10 = 110``, so ``[−10, 110]``.
    """

    def quantize_bound(v: float) -> int:
        # Double rounding through f32() mimics `v / scale + (float) zp` in C floats.
        t = f32(f32(f32(v) / f32(y_scale)) + float(y_zp))
        t = min(max(t, float(qmin)), float(qmax))
        return int(round(t))  # Python round() is half-to-even, like lrintf.

    lo = qmin if lower is None else max(qmin, quantize_bound(lower))
    hi = qmax if upper is None else min(qmax, quantize_bound(upper))
    return lo, hi


def add_fixed_point_params(
    a_scale: float, a_zp: int, b_scale: float, b_zp: int, y_scale: float
) -> tuple[int, int, int, int]:
    """XNNPACK's qs8 add parameters ``(a_mult, b_mult, shift, bias)``.

    Derivation: ``s_y(y − zp_y) = s_a(a − zp_a) + s_b(b − zp_b)`` gives
    ``y = zp_y + r_a(a − zp_a) + r_b(b − zp_b)`` with fp32 ratios
    ``r_a = s_a/s_y`` and ``r_b = s_b/s_y``. XNNPACK then picks
    ``shift = 20 − exponent(max(|r_a|, |r_b|))`` so that the larger ratio scaled
    by ``2^shift`` lies in ``[2²⁰, 2²¹)``, and stores
    ``mult = lrintf(r · 2^shift)`` (exact scaling by a power of two, then
    round-half-even). The zero points and the rounding constant
    ``2^(shift−1)`` are folded into one int32 ``bias``.

    Raises:
        ValueError: the larger ratio is outside ``[2⁻¹⁰, 2⁸)``, which XNNPACK rejects.
    """
    ra, rb = f32(f32(a_scale) / f32(y_scale)), f32(f32(b_scale) / f32(y_scale))
    biggest = max(abs(ra), abs(rb))
    if not (2.0**-10 <= biggest < 2.0**8):
        raise ValueError(
            f"qs8 add: input/output scale ratio {biggest:g} outside XNNPACK's range "
            "[2**-10, 2**8); choose output qparams closer to the inputs'"
        )
    exponent = ((_f32_bits(biggest) >> 23) & 0xFF) - 127
    shift = 20 - exponent
    a_mult = int(round(abs(ra) * 2.0**shift)) * (1 if ra >= 0 else -1)
    b_mult = int(round(abs(rb) * 2.0**shift)) * (1 if rb >= 0 else -1)
    bias = (1 << (shift - 1)) - a_mult * a_zp - b_mult * b_zp
    return a_mult, b_mult, shift, bias
