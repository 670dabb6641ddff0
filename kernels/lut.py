"""Reference kernels for XNNPACK's int8 unary activations (sigmoid, tanh, gelu, hardswish, leaky_relu) and pad.

An int8 input takes only 256 values, so XNNPACK runs these activations (but
leaky_relu) as a 256-entry lookup table built when the operator is created
from the input and output qparams.  Each kernel here builds that table the
same way and indexes it with the input codes:

    for each code c in [-128, 127]:
        r     = s_x · (c − zp_x)                      (fp32)
        t[c]  = clamp(round_half_even(f(r) / s_y) + zp_y, out_min, out_max)
    y = t[x]

Derivation: the converted graph computes ``quantize(f(dequantize(x)))``:
``dequantize`` is the first line, ``f`` runs in fp32, ``quantize`` divides by
the output scale, rounds half to even, adds the zero point and clamps.  Since
the table is a function of the code alone, ``y = t[x]`` is that computation,
element by element, exactly.  The only freedom is how ``f`` is evaluated in
fp32: torch's and XNNPACK's sigmoid/tanh/gelu may differ in the last ulp,
which moves an output by one step when ``f(r)/s_y`` lies that close to a
rounding tie.

Worked example (sigmoid, ``s_x = 0.05, zp_x = 0, s_y = 1/256, zp_y = -128``):
code ``c = 20`` is ``r = 1.0``, ``sigmoid(1.0) = 0.73106``,
``0.73106·256 = 187.15 → 187``, ``187 − 128 = 59``; so ``t[20] = 59``.

leaky_relu has no table in XNNPACK but a fixed-point kernel with 8
fractional bits, which its kernel here mirrors (:func:`quantized_leaky_relu`);
it can differ from the converted graph's ``quantize(leaky_relu(dequantize(x)))``
by a step or more, because ``s_x/s_y`` is rounded to a multiple of 1/256.

Pad (``constant_pad_nd``) only moves codes: input and output share qparams
(XNNPACK refuses a qs8 pad whose qparams differ), and the padding value is
written as its code ``clamp(round_half_even(value/s) + zp)``, e.g. 0.0 → ``zp``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from xnnquant.kernels.arith import INT8_MAX, INT8_MIN, f32
from xnnquant.kernels.ops import _require_int8, reference_kernel

_qd = torch.ops.quantized_decomposed


def lookup_table(fn: Callable[[torch.Tensor], torch.Tensor], x_scale: float, x_zp: int,
                 y_scale: float, y_zp: int, out_min: int, out_max: int) -> torch.Tensor:
    """The 256-entry int8 table of ``fn`` for these qparams; entry ``c + 128`` is code ``c``'s output.

    ``quantized_decomposed.quantize_per_tensor`` does the ``/ s_y``, the
    half-to-even rounding and the clamp exactly as the converted graph does.
    """
    codes = torch.arange(INT8_MIN, INT8_MAX + 1, dtype=torch.int8)
    real = _qd.dequantize_per_tensor(codes, x_scale, x_zp, INT8_MIN, INT8_MAX, torch.int8)
    out = _qd.quantize_per_tensor(fn(real), y_scale, y_zp, INT8_MIN, INT8_MAX, torch.int8)
    return out.clamp(out_min, out_max)


def _unary_fake(x, x_scale, x_zp, y_scale, y_zp, out_min, out_max):
    return torch.empty_like(x)


def _unary_param_fake(x, x_scale, x_zp, param, y_scale, y_zp, out_min, out_max):
    return torch.empty_like(x)


_RAISES = """

    Raises:
        TypeError: ``x`` is not int8.
    """


def _table_kernel(name: str, fn: Callable[[torch.Tensor], torch.Tensor], doc: str):
    """Register ``torch.ops.xnnquant.<name>``: ``fn`` applied through :func:`lookup_table`."""

    def kernel(x: torch.Tensor, x_scale: float, x_zp: int, y_scale: float, y_zp: int,
               out_min: int, out_max: int) -> torch.Tensor:
        _require_int8(name, x=x)
        table = lookup_table(fn, x_scale, x_zp, y_scale, y_zp, out_min, out_max)
        return table[x.to(torch.int64) - INT8_MIN]

    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = doc + _RAISES
    return reference_kernel(name, _unary_fake)(kernel)


quantized_sigmoid = _table_kernel(
    "quantized_sigmoid", torch.sigmoid, "qs8 sigmoid as a lookup table (module docstring).")
quantized_tanh = _table_kernel(
    "quantized_tanh", torch.tanh, "qs8 tanh as a lookup table (module docstring).")
quantized_hardswish = _table_kernel(
    "quantized_hardswish", F.hardswish,
    "qs8 hardswish ``x·relu6(x + 3)/6`` as a lookup table (module docstring).")
quantized_gelu = _table_kernel("quantized_gelu", F.gelu, """qs8 gelu ``x·Φ(x)`` (the erf form) as a lookup table (module docstring).

    XNNPACK has one gelu, the erf form, and ExecuTorch's serializer drops
    ``approximate``: ``gelu(x, approximate="tanh")`` runs as the erf form too
    (in fp32 as well).  So this kernel has no ``approximate`` either.  The two
    forms differ by at most 4.7e-4, which moves an output by one step only
    when ``f(r)/s_y`` is that close to a rounding tie (1 of 1024 outputs at
    ``s_y ≈ 0.02`` in the runtime test).""")


@reference_kernel("quantized_leaky_relu", _unary_param_fake)
def quantized_leaky_relu(x: torch.Tensor, x_scale: float, x_zp: int, negative_slope: float,
                         y_scale: float, y_zp: int, out_min: int, out_max: int) -> torch.Tensor:
    """qs8 leaky_relu in XNNPACK's fixed point (``qs8-vlrelu``), not a table of the float op.

    Derivation: ``s_y(y − zp_y) = s_x(x − zp_x)·(1 if x ≥ zp_x else slope)``, so
    ``y = zp_y + r·(x − zp_x)`` with ``r = s_x/s_y`` (or ``r·slope``).  XNNPACK
    keeps ``r`` with 8 fractional bits: ``M₊ = lrintf(256·f32(s_x/s_y))`` and
    ``M₋ = lrintf(256·f32(f32(s_x/s_y)·slope))``, then computes
    ``y = clamp((256·zp_y + 128 + (x − zp_x)·M) >> 8, −128, 127)``: the shift
    after adding 128 rounds ties upwards.

    Example: ``s_x = 0.1, s_y = 0.05, zp_x = zp_y = 0, slope = 0.1``: ``M₊ = 512``,
    ``M₋ = lrintf(51.2) = 51``; ``x = −5`` gives ``(128 − 255) >> 8 = −1``
    where the float op gives ``−0.05/0.05 = −1``; ``x = −15`` gives
    ``(128 − 765) >> 8 = −3`` where the float op gives ``round(−3.0) = −3``.

    Raises:
        TypeError: ``x`` is not int8.
    """
    _require_int8("quantized_leaky_relu", x=x)
    ratio = f32(f32(x_scale) / f32(y_scale))
    positive = round(f32(256.0 * ratio))  # Python round() is half-to-even, like lrintf
    negative = round(f32(256.0 * f32(ratio * f32(negative_slope))))
    acc = x.to(torch.int64) - x_zp
    acc = acc * torch.where(acc >= 0, positive, negative) + (y_zp * 256 + 128)
    out = (acc >> 8).clamp(INT8_MIN, INT8_MAX)  # >> on int64 is an arithmetic shift
    return out.clamp(out_min, out_max).to(torch.int8)


def _pad_fake(x, x_scale, x_zp, pad, value, out_min, out_max):
    return torch.constant_pad_nd(torch.empty_like(x, dtype=torch.float32), pad).to(torch.int8)


@reference_kernel("quantized_pad", _pad_fake)
def quantized_pad(x: torch.Tensor, x_scale: float, x_zp: int, pad: list[int], value: float,
                  out_min: int, out_max: int) -> torch.Tensor:
    """Constant pad on int8 codes with shared qparams (XNNPACK qs8 ``static_constant_pad``).

    ``pad`` is torch's list (last dim first, before/after pairs); ``value`` is
    the real padding value, written as its code (module docstring).

    Example: ``x = [5, −3]``, ``s = 0.5``, ``zp = −10``, ``pad = [1, 2]``,
    ``value = 0`` → ``[−10, 5, −3, −10, −10]``.

    Raises:
        TypeError: ``x`` is not int8.
    """
    _require_int8("quantized_pad", x=x)
    code = _qd.quantize_per_tensor(torch.tensor([float(value)]), x_scale, x_zp, INT8_MIN,
                                   INT8_MAX, torch.int8)
    # float32 holds every int8 exactly, and constant_pad_nd pads with one scalar.
    out = torch.constant_pad_nd(x.to(torch.float32), pad, float(code.item()))
    return out.to(torch.int64).clamp(out_min, out_max).to(torch.int8)
