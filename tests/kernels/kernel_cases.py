"""The case table for the reference-kernel tests, and the float simulation they are checked against.

A case names a kernel and builds its keyword arguments from seeded random
float data quantized the way a converted PT2E graph would be (asymmetric int8
activations, symmetric int8 weights, output qparams from the float output
range). ``FLOAT_REFERENCE`` is the ``dequantize → float op`` half of the
simulation, one entry per kernel; :func:`simulate` adds the optional float
activation and the final ``quantize``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

import xnnquant.kernels  # noqa: F401  (registers torch.ops.xnnquant)
from xnnquant.kernels import activation_bounds

_qd = torch.ops.quantized_decomposed


def affine_qparams(t: torch.Tensor, shrink: float = 1.0) -> tuple[float, int]:
    """Asymmetric int8 qparams covering ``t`` (range always includes 0), like a min/max observer.

    ``shrink < 1`` narrows the range so that the extremes saturate.
    """
    lo, hi = min(float(t.min()), 0.0) * shrink, max(float(t.max()), 0.0) * shrink
    scale = max((hi - lo) / 255.0, 1e-6)
    zp = int(max(-128, min(127, round(-128 - lo / scale))))
    return float(torch.tensor(scale, dtype=torch.float32)), zp


def quantize(t: torch.Tensor, scale: float, zp: int) -> torch.Tensor:
    return _qd.quantize_per_tensor(t.float(), scale, zp, -128, 127, torch.int8)


def dequantize(q: torch.Tensor, scale: float, zp: int) -> torch.Tensor:
    return _qd.dequantize_per_tensor(q, scale, zp, -128, 127, torch.int8)


def symmetric_weight(w: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 weight in [-127, 127] and fp32 scales (one per output channel, or one)."""
    dims = tuple(range(1, w.dim()))
    amax = w.abs().amax(dim=dims) if per_channel else w.abs().max().reshape(1)
    scale = (amax / 127.0).clamp_min(1e-6).to(torch.float32)
    view = (-1,) + (1,) * (w.dim() - 1)
    q = torch.round(w / scale.view(view)).clamp(-127, 127).to(torch.int8)
    return q, scale


def _dequantize_weight(w: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    return w.to(torch.float32) * w_scale.view((-1,) + (1,) * (w.dim() - 1))


def _float_linear(kw):
    x = dequantize(kw["x"], kw["x_scale"], kw["x_zp"])
    return F.linear(x, _dequantize_weight(kw["w"], kw["w_scale"]), kw["bias"])


def _float_conv(kw):
    conv = {3: F.conv1d, 4: F.conv2d}[kw["w"].dim()]
    x = dequantize(kw["x"], kw["x_scale"], kw["x_zp"])
    return conv(x, _dequantize_weight(kw["w"], kw["w_scale"]), kw["bias"], kw["stride"],
                kw["padding"], kw["dilation"], kw["groups"])


def _float_binary(op, kw):
    return op(dequantize(kw["a"], kw["a_scale"], kw["a_zp"]),
              dequantize(kw["b"], kw["b_scale"], kw["b_zp"]))


def _float_max_pool2d(kw):
    # Shared qparams make dq → max → q the identity on codes, so pool the codes.
    return F.max_pool2d(kw["x"].float(), kw["kernel_size"], kw["stride"] or kw["kernel_size"],
                        kw["padding"], kw["dilation"], kw["ceil_mode"])


def _float_clamp(kw):
    # Shared qparams: the activation (applied by simulate) acts on the codes directly.
    return kw["x"].float()


def _float_mean_hw(kw):
    return dequantize(kw["x"], kw["x_scale"], kw["x_zp"]).mean(dim=(-1, -2), keepdim=True)


def _float_unary(fn, kw):
    return fn(dequantize(kw["x"], kw["x_scale"], kw["x_zp"]))


def _float_pad(kw):
    # Shared qparams: dq → pad → q, returned in code units (simulate quantizes with (1, 0)).
    x = dequantize(kw["x"], kw["x_scale"], kw["x_zp"])
    return quantize(F.pad(x, kw["pad"], value=kw["value"]), kw["x_scale"], kw["x_zp"]).float()


FLOAT_REFERENCE: dict[str, Callable[[dict], torch.Tensor]] = {
    "quantized_linear": _float_linear,
    "quantized_conv": _float_conv,
    "quantized_add": partial(_float_binary, torch.add),
    "quantized_sub": partial(_float_binary, torch.sub),
    "quantized_mul": partial(_float_binary, torch.mul),
    "quantized_max_pool2d": _float_max_pool2d,
    "quantized_mean_hw": _float_mean_hw,
    "quantized_clamp": _float_clamp,
    "quantized_sigmoid": partial(_float_unary, torch.sigmoid),
    "quantized_tanh": partial(_float_unary, torch.tanh),
    "quantized_hardswish": partial(_float_unary, F.hardswish),
    "quantized_gelu": partial(_float_unary, F.gelu),
    "quantized_leaky_relu": lambda kw: _float_unary(
        partial(F.leaky_relu, negative_slope=kw["negative_slope"]), kw),
    "quantized_pad": _float_pad,
}


def _output_qparams(kw: dict) -> tuple[float, int]:
    return (kw["y_scale"], kw["y_zp"]) if "y_scale" in kw else (1.0, 0)


def simulate(kernel: str, kw: dict, act: tuple[float | None, float | None] | None) -> torch.Tensor:
    """``dequantize → float op → [activation] → quantize``, as the converted graph computes."""
    y = FLOAT_REFERENCE[kernel](kw)
    if act is not None:
        y = y.clamp(*act)
    return quantize(y, *_output_qparams(kw))


def output_bounds(kw: dict, act: tuple[float | None, float | None] | None) -> tuple[int, int]:
    """``(out_min, out_max)`` for the kernel: the fused activation's clamp, or the full range."""
    if act is None:
        return -128, 127
    return activation_bounds(act[0], act[1], *_output_qparams(kw))


@dataclass(frozen=True)
class Case:
    """One kernel invocation: ``build()`` returns its kwargs minus ``out_min/out_max``."""

    kernel: str
    build: Callable[[], dict]
    act: tuple[float | None, float | None] | None = None


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _activation(shape, g, scale=1.0, offset=0.0):
    x = torch.randn(shape, generator=g) * scale + offset
    s, zp = affine_qparams(x)
    return quantize(x, s, zp), s, zp


def _finish(kernel: str, kw: dict, shrink: float = 1.0) -> dict:
    """Give ``kw`` output qparams from the float result's range (all kernels that requantize)."""
    kw["y_scale"], kw["y_zp"] = affine_qparams(FLOAT_REFERENCE[kernel](kw), shrink)
    return kw


def linear_kw(x_shape, out_features, *, per_channel=True, bias=True, shrink=1.0, seed=0):
    g = _gen(seed)
    x, xs, xz = _activation(x_shape, g, offset=0.3)
    w, ws = symmetric_weight(torch.randn(out_features, x_shape[-1], generator=g), per_channel)
    b = torch.randn(out_features, generator=g) if bias else None
    kw = dict(x=x, x_scale=xs, x_zp=xz, w=w, w_scale=ws, bias=b)
    return _finish("quantized_linear", kw, shrink)


def conv_kw(x_shape, w_shape, *, stride, padding, dilation, groups, per_channel=True,
            bias=True, shrink=1.0, seed=0):
    g = _gen(seed)
    x, xs, xz = _activation(x_shape, g, offset=-0.2)
    w, ws = symmetric_weight(torch.randn(w_shape, generator=g), per_channel)
    b = torch.randn(w_shape[0], generator=g) if bias else None
    kw = dict(x=x, x_scale=xs, x_zp=xz, w=w, w_scale=ws, bias=b, stride=stride,
              padding=padding, dilation=dilation, groups=groups)
    return _finish("quantized_conv", kw, shrink)


def binary_kw(kernel, a_shape, b_shape, *, b_gain=1.0, shrink=1.0, seed=0):
    g = _gen(seed)
    a, as_, az = _activation(a_shape, g)
    b, bs, bz = _activation(b_shape, g, scale=b_gain, offset=0.5)
    kw = dict(a=a, a_scale=as_, a_zp=az, b=b, b_scale=bs, b_zp=bz)
    return _finish(kernel, kw, shrink)


def max_pool2d_kw(x_shape, kernel_size, stride, padding, dilation, ceil_mode, seed=0):
    x, _, _ = _activation(x_shape, _gen(seed))
    return dict(x=x, kernel_size=kernel_size, stride=stride, padding=padding,
                dilation=dilation, ceil_mode=ceil_mode)


def clamp_kw(x_shape, seed=0):
    x, _, _ = _activation(x_shape, _gen(seed))
    return dict(x=x)


def mean_hw_kw(x_shape, seed=0):
    x, xs, xz = _activation(x_shape, _gen(seed), offset=0.4)
    return _finish("quantized_mean_hw", dict(x=x, x_scale=xs, x_zp=xz))


def unary_kw(kernel, x_shape, *, gain=3.0, shrink=1.0, seed=0, **params):
    """An activation input spread over ±3·gain, so every LUT region (tails, knee) is hit."""
    x, xs, xz = _activation(x_shape, _gen(seed), scale=gain, offset=0.2)
    return _finish(kernel, dict(x=x, x_scale=xs, x_zp=xz, **params), shrink)


def pad_kw(x_shape, pad, value, seed=0):
    x, xs, xz = _activation(x_shape, _gen(seed), offset=0.4)
    return dict(x=x, x_scale=xs, x_zp=xz, pad=pad, value=value)


RELU = (0.0, None)
RELU6 = (0.0, 6.0)
HARDTANH_CODES = (-20.0, 30.0)  # in code units: the clamp cases use (scale 1, zp 0)

CASES: dict[str, Case] = {
    "linear_per_channel_bias": Case("quantized_linear", partial(linear_kw, (8, 16), 6)),
    "linear_large": Case("quantized_linear", partial(linear_kw, (64, 96), 48, seed=6)),
    "linear_3d_input": Case("quantized_linear", partial(linear_kw, (2, 5, 7), 4, seed=1)),
    "linear_no_bias": Case("quantized_linear", partial(linear_kw, (4, 9), 5, bias=False, seed=2)),
    "linear_per_tensor_weight": Case(
        "quantized_linear", partial(linear_kw, (6, 12), 3, per_channel=False, seed=3)),
    "linear_relu": Case("quantized_linear", partial(linear_kw, (8, 10), 8, seed=4), act=RELU),
    "linear_saturating": Case(
        "quantized_linear", partial(linear_kw, (8, 10), 8, shrink=0.4, seed=5)),
    "conv2d_large": Case("quantized_conv", partial(
        conv_kw, (2, 16, 16, 16), (32, 16, 3, 3), stride=[1, 1], padding=[1, 1], dilation=[1, 1],
        groups=1, seed=10)),
    "conv2d_basic": Case("quantized_conv", partial(
        conv_kw, (1, 3, 8, 8), (4, 3, 3, 3), stride=[1, 1], padding=[0, 0], dilation=[1, 1],
        groups=1)),
    "conv2d_stride_pad_dilation": Case("quantized_conv", partial(
        conv_kw, (2, 3, 11, 9), (5, 3, 3, 2), stride=[2, 1], padding=[1, 2], dilation=[2, 1],
        groups=1, seed=1)),
    "conv2d_grouped": Case("quantized_conv", partial(
        conv_kw, (1, 4, 7, 7), (6, 2, 3, 3), stride=[1, 1], padding=[1, 1], dilation=[1, 1],
        groups=2, seed=2)),
    "conv2d_depthwise": Case("quantized_conv", partial(
        conv_kw, (1, 4, 9, 9), (4, 1, 3, 3), stride=[2, 2], padding=[1, 1], dilation=[1, 1],
        groups=4, seed=3)),
    "conv2d_depthwise_multiplier2": Case("quantized_conv", partial(
        conv_kw, (1, 3, 6, 6), (6, 1, 3, 3), stride=[1, 1], padding=[0, 0], dilation=[1, 1],
        groups=3, bias=False, seed=4)),
    "conv2d_per_tensor_weight_relu6": Case("quantized_conv", partial(
        conv_kw, (1, 2, 6, 6), (3, 2, 3, 3), stride=[1, 1], padding=[1, 1], dilation=[1, 1],
        groups=1, per_channel=False, seed=5), act=RELU6),
    "conv2d_relu": Case("quantized_conv", partial(
        conv_kw, (1, 3, 6, 6), (4, 3, 1, 1), stride=[1, 1], padding=[0, 0], dilation=[1, 1],
        groups=1, seed=6), act=RELU),
    "conv2d_saturating": Case("quantized_conv", partial(
        conv_kw, (1, 3, 6, 6), (4, 3, 3, 3), stride=[1, 1], padding=[0, 0], dilation=[1, 1],
        groups=1, shrink=0.3, seed=7)),
    "conv1d_stride_pad_dilation": Case("quantized_conv", partial(
        conv_kw, (2, 3, 17), (5, 3, 3), stride=[2], padding=[2], dilation=[2], groups=1, seed=8)),
    "conv1d_depthwise": Case("quantized_conv", partial(
        conv_kw, (1, 4, 12), (4, 1, 5), stride=[1], padding=[2], dilation=[1], groups=4, seed=9)),
    "add_same_shape": Case("quantized_add", partial(binary_kw, "quantized_add", (4, 8), (4, 8))),
    "add_large": Case("quantized_add", partial(
        binary_kw, "quantized_add", (64, 128), (64, 128), b_gain=0.3, seed=4)),
    "add_broadcast": Case("quantized_add", partial(
        binary_kw, "quantized_add", (2, 3, 4), (3, 1), b_gain=3.0, seed=1)),
    "add_relu": Case("quantized_add", partial(
        binary_kw, "quantized_add", (4, 8), (4, 8), seed=2), act=RELU),
    "add_saturating": Case("quantized_add", partial(
        binary_kw, "quantized_add", (4, 8), (4, 8), shrink=0.5, seed=3)),
    "sub_broadcast": Case("quantized_sub", partial(
        binary_kw, "quantized_sub", (8, 16), (16,), b_gain=2.0, seed=5)),
    "sub_relu_large": Case("quantized_sub", partial(
        binary_kw, "quantized_sub", (64, 128), (64, 128), seed=6), act=RELU),
    "mul_same_shape": Case("quantized_mul", partial(binary_kw, "quantized_mul", (4, 8), (4, 8))),
    "mul_large": Case("quantized_mul", partial(
        binary_kw, "quantized_mul", (64, 128), (64, 128), seed=2)),
    "mul_broadcast_relu": Case("quantized_mul", partial(
        binary_kw, "quantized_mul", (2, 3, 4), (4,), seed=1), act=RELU),
    "max_pool2d_2x2": Case("quantized_max_pool2d", partial(
        max_pool2d_kw, (1, 3, 8, 8), [2, 2], [], [0, 0], [1, 1], False)),
    "max_pool2d_stride_pad_dilation_ceil": Case("quantized_max_pool2d", partial(
        max_pool2d_kw, (2, 2, 9, 7), [3, 3], [2, 2], [1, 1], [2, 1], True, seed=1)),
    "max_pool2d_relu": Case("quantized_max_pool2d", partial(
        max_pool2d_kw, (1, 2, 6, 6), [3, 3], [1, 1], [1, 1], [1, 1], False, seed=2), act=RELU),
    "clamp_relu": Case("quantized_clamp", partial(clamp_kw, (4, 32)), act=RELU),
    "clamp_hardtanh": Case("quantized_clamp", partial(clamp_kw, (4, 32), seed=1),
                           act=HARDTANH_CODES),
    "mean_hw": Case("quantized_mean_hw", partial(mean_hw_kw, (2, 5, 7, 6))),
    "mean_hw_large": Case("quantized_mean_hw", partial(mean_hw_kw, (4, 64, 9, 9), seed=1)),
    "sigmoid": Case("quantized_sigmoid", partial(unary_kw, "quantized_sigmoid", (4, 64))),
    "sigmoid_saturating": Case("quantized_sigmoid", partial(
        unary_kw, "quantized_sigmoid", (4, 64), shrink=0.6, seed=1)),
    "tanh": Case("quantized_tanh", partial(unary_kw, "quantized_tanh", (4, 64), seed=2)),
    "hardswish": Case("quantized_hardswish", partial(
        unary_kw, "quantized_hardswish", (4, 64), seed=3)),
    "gelu": Case("quantized_gelu", partial(unary_kw, "quantized_gelu", (4, 64), seed=4)),
    "gelu_narrow": Case("quantized_gelu", partial(
        unary_kw, "quantized_gelu", (4, 64), seed=5, gain=0.5)),
    "leaky_relu": Case("quantized_leaky_relu", partial(
        unary_kw, "quantized_leaky_relu", (4, 64), seed=6, negative_slope=0.1)),
    "leaky_relu_steep": Case("quantized_leaky_relu", partial(
        unary_kw, "quantized_leaky_relu", (4, 64), seed=7, negative_slope=0.5, gain=1.0)),
    "pad_zero": Case("quantized_pad", partial(pad_kw, (1, 3, 4, 5), [1, 1, 2, 0], 0.0)),
    "pad_value": Case("quantized_pad", partial(pad_kw, (2, 6), [0, 3], 0.75, seed=1)),
    "pad_value_saturates": Case("quantized_pad", partial(pad_kw, (2, 6), [2, 1], 1e3, seed=2)),
}
