"""Reference int8 kernels: the golden model of XNNPACK's quantized operators.

Each kernel is a ``torch.library`` custom op in the ``xnnquant`` namespace
(``torch.ops.xnnquant.<name>``) with a fake implementation, so graphs that call
it run in eager PyTorch *and* can be captured by ``torch.export``. Kernels take
int8 tensors plus their quantization parameters and return int8; nothing in
between is float except where XNNPACK itself uses fp32 (the requantization
multiplier). See ``xnnquant.kernels.arith`` for the shared steps and where each
one comes from in ExecuTorch / XNNPACK.

Notation: a real value ``r`` is represented by ``q`` as ``r = s·(q − zp)``.

Every kernel is registered through :func:`reference_kernel`, which records it;
the op table (``xnnquant.quantizer.patterns``) names each record's kernel,
and ``xnnquant.passes.lower_to_reference.check_registry`` refuses a record
whose kernel is not registered.

Accumulators are computed exactly: integer products are summed in float64,
which represents every partial sum exactly as long as it stays below 2⁵³
(here each product is at most 255·127, so any realistic reduction length
qualifies), then converted to int64 and checked against the int32 range
XNNPACK accumulates in.
"""

from typing import Callable, Optional

import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers quantized_decomposed ops)
import torch.nn.functional as F

from xnnquant.kernels.arith import (
    add_fixed_point_params,
    check_int32,
    fp32_multiplier,
    quantize_bias,
    requantize_fp32,
)

NAMESPACE = "xnnquant"

# name → custom op; filled by @reference_kernel, read by the reference lowering and tests.
_REFERENCE_KERNELS: dict[str, object] = {}


def reference_kernel(name: str, fake: Callable) -> Callable:
    """Register ``fn`` as ``torch.ops.xnnquant.<name>`` with ``fake`` as fake impl; record it."""

    def register(fn: Callable):
        op = torch.library.custom_op(f"{NAMESPACE}::{name}", mutates_args=())(fn)
        op.register_fake(fake)
        _REFERENCE_KERNELS[name] = op
        return op

    return register


def registered_kernels() -> dict[str, object]:
    """A copy of ``{name: custom op}`` for every registered reference kernel."""
    return dict(_REFERENCE_KERNELS)


def _require_int8(kernel: str, **tensors: torch.Tensor) -> None:
    for arg, t in tensors.items():
        if t.dtype != torch.int8:
            raise TypeError(f"xnnquant.{kernel}: {arg} must be int8, got {t.dtype}")


def _check_w_scale(kernel: str, w_scale: torch.Tensor, out_channels: int) -> None:
    if w_scale.numel() not in (1, out_channels):
        raise ValueError(
            f"xnnquant.{kernel}: w_scale has {w_scale.numel()} entries; expected 1 "
            f"(per-tensor) or {out_channels} (one per output channel)"
        )


def _fake_int8(shape) -> torch.Tensor:
    return torch.empty(shape, dtype=torch.int8)


# --- linear ------------------------------------------------------------------


def _linear_fake(x, x_scale, x_zp, w, w_scale, bias, y_scale, y_zp, out_min, out_max):
    return x.new_empty((*x.shape[:-1], w.shape[0]), dtype=torch.int8)


@reference_kernel("quantized_linear", _linear_fake)
def quantized_linear(
    x: torch.Tensor,
    x_scale: float,
    x_zp: int,
    w: torch.Tensor,
    w_scale: torch.Tensor,
    bias: Optional[torch.Tensor],
    y_scale: float,
    y_zp: int,
    out_min: int,
    out_max: int,
) -> torch.Tensor:
    """Quantized fully connected layer ``y = x·wᵀ + b`` (XNNPACK ``fully_connected_nc_qs8_qc8w``).

    Args:
        x: int8 ``[..., IC]``, per-tensor ``(x_scale, x_zp)``.
        w: int8 ``[OC, IC]``, symmetric (zero point 0), ``w_scale`` fp32 of ``[OC]``
            (per output channel) or one element (per tensor).
        bias: float ``[OC]`` or None; quantized here exactly as XNNPACK's delegate does.
        y_scale, y_zp: output quantization.
        out_min, out_max: output clamp; ``[-128, 127]`` unless an activation is fused.

    Derivation, for output channel ``c`` with ``s_b = s_x·s_w[c]``:
    ``s_y(y − zp_y) = Σ_k s_x(x_k − zp_x)·s_w[c]·w_ck + b_c``
    ``           = s_b · (Σ_k (x_k − zp_x)·w_ck + b_c/s_b)``, so
    ``y = zp_y + m_c · acc`` with the int32 ``acc = Σ_k (x_k − zp_x)·w_ck + round(b_c/s_b)``
    and ``m_c = s_x·s_w[c]/s_y`` (fp32), rounded half to even and clamped.

    Worked example: ``x = [10, −3]``, ``zp_x = 2``, ``s_x = 0.5``; ``w = [[4, −1]]``,
    ``s_w = [0.25]``; ``b = [1.0]``; ``s_y = 1``, ``zp_y = 0``. Then
    ``s_b = 0.125``, ``round(1.0/0.125) = 8``, ``acc = 8·4 + (−5)·(−1) + 8 = 45``,
    ``m = 0.125`` and ``y = round(5.625) = 6``. In float: ``x = [4, −2.5]``,
    ``w = [1, −0.25]``, ``x·w + b = 4 + 0.625 + 1 = 5.625 → 6``.

    Returns:
        int8 ``[..., OC]``.

    Raises:
        TypeError: ``x`` or ``w`` is not int8.
        ValueError: ``w_scale`` has neither 1 nor OC entries.
        OverflowError: the accumulator leaves int32.
    """
    _require_int8("quantized_linear", x=x, w=w)
    out_channels = w.shape[0]
    _check_w_scale("quantized_linear", w_scale, out_channels)
    acc = torch.matmul(x.to(torch.float64) - x_zp, w.to(torch.float64).t()).to(torch.int64)
    acc = acc + quantize_bias(bias, x_scale, w_scale, out_channels)
    check_int32(acc, "xnnquant.quantized_linear")
    m = fp32_multiplier(x_scale, w_scale.reshape(-1), y_scale)
    return requantize_fp32(acc, m, y_zp, out_min, out_max)


# --- convolution ----------------------------------------------------------------


def _conv_fake(x, x_scale, x_zp, w, w_scale, bias, stride, padding, dilation, groups,
               y_scale, y_zp, out_min, out_max):
    # Run aten.convolution on the fake tensors so the shape logic is torch's own.
    spatial = w.dim() - 2
    out = torch.ops.aten.convolution(
        x.to(torch.float32), w.to(torch.float32), None, stride, padding, dilation,
        False, [0] * spatial, groups,
    )
    return out.to(torch.int8)


@reference_kernel("quantized_conv", _conv_fake)
def quantized_conv(
    x: torch.Tensor,
    x_scale: float,
    x_zp: int,
    w: torch.Tensor,
    w_scale: torch.Tensor,
    bias: Optional[torch.Tensor],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    y_scale: float,
    y_zp: int,
    out_min: int,
    out_max: int,
) -> torch.Tensor:
    """Quantized 1-D/2-D convolution incl. grouped and depthwise (XNNPACK ``convolution_nhwc_qs8_qc8w``).

    The spatial rank comes from ``w``: ``[OC, IC/groups, K]`` for conv1d on
    ``x [N, IC, L]``, ``[OC, IC/groups, KH, KW]`` for conv2d on ``x [N, IC, H, W]``.
    Depthwise is ``groups == IC`` with ``OC`` a multiple of ``IC``.

    The derivation is the linear one (see ``quantized_linear``) with the sum
    running over the receptive field of each output pixel:
    ``acc[n,c,p] = Σ_{k∈field(p)} (x_k − zp_x)·w_ck + round(b_c/(s_x·s_w[c]))`` and
    ``y = clamp(round_half_even(acc · s_x·s_w[c]/s_y) + zp_y, out_min, out_max)``.
    Padding contributes ``x_k = zp_x`` (a real zero), i.e. nothing to ``acc``;
    XNNPACK pads with the input zero point for the same reason.

    Worked example (1×1 depthwise, groups = 2): ``x = [[[3]], [[−5]]]``,
    ``zp_x = −1``, ``s_x = 0.1``; ``w = [[[[2]]], [[[−3]]]]``, ``s_w = [0.2, 0.4]``;
    no bias; ``s_y = 0.05``, ``zp_y = 0``. Channel 0: ``acc = 4·2 = 8``,
    ``m = 0.4 → 3.2 → 3``. Channel 1: ``acc = (−4)·(−3) = 12``, ``m = 0.8 → 9.6 → 10``.

    Returns:
        int8 ``[N, OC, *out_spatial]``.

    Raises:
        TypeError: ``x`` or ``w`` is not int8.
        ValueError: ``w`` is neither 3-D nor 4-D, or ``w_scale`` has the wrong size.
        OverflowError: the accumulator leaves int32.
    """
    _require_int8("quantized_conv", x=x, w=w)
    conv = {3: F.conv1d, 4: F.conv2d}.get(w.dim())
    if conv is None:
        raise ValueError(f"xnnquant.quantized_conv: weight must be 3-D or 4-D, got {w.dim()}-D")
    out_channels = w.shape[0]
    _check_w_scale("quantized_conv", w_scale, out_channels)
    acc = conv(
        x.to(torch.float64) - x_zp, w.to(torch.float64), None, stride, padding, dilation, groups
    ).to(torch.int64)
    per_channel = (1, -1) + (1,) * (w.dim() - 2)
    acc = acc + quantize_bias(bias, x_scale, w_scale, out_channels).view(per_channel)
    check_int32(acc, "xnnquant.quantized_conv")
    m = fp32_multiplier(x_scale, w_scale.reshape(-1), y_scale).view(per_channel)
    return requantize_fp32(acc, m, y_zp, out_min, out_max)


# --- elementwise binary ---------------------------------------------------------------


def _binary_fake(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp, out_min, out_max):
    return a.new_empty(torch.broadcast_shapes(a.shape, b.shape), dtype=torch.int8)


@reference_kernel("quantized_add", _binary_fake)
def quantized_add(
    a: torch.Tensor,
    a_scale: float,
    a_zp: int,
    b: torch.Tensor,
    b_scale: float,
    b_zp: int,
    y_scale: float,
    y_zp: int,
    out_min: int,
    out_max: int,
) -> torch.Tensor:
    """Quantized broadcasting add, XNNPACK qs8 ``add`` (fixed point, not fp32).

    Derivation: ``s_y(y − zp_y) = s_a(a − zp_a) + s_b(b − zp_b)``, so
    ``y = zp_y + r_a(a − zp_a) + r_b(b − zp_b)`` with ``r_a = s_a/s_y``,
    ``r_b = s_b/s_y`` (fp32). XNNPACK evaluates this in integers: with
    ``(M_a, M_b, shift, bias)`` from ``arith.add_fixed_point_params``
    (``M ≈ r·2^shift``, ``bias = 2^(shift−1) − M_a·zp_a − M_b·zp_b``),
    ``y = clamp(((bias + M_a·a + M_b·b) >> shift) + zp_y, out_min, out_max)``.
    The arithmetic shift after adding ``2^(shift−1)`` rounds ties *upwards*
    (towards +∞), not to even: 2.5 → 3 and −2.5 → −2. A fused relu is just
    ``out_min = max(-128, zp_y)``.

    Worked example: ``s_a = s_b = 0.1``, ``s_y = 0.2``, all zero points 0,
    ``a = 3``, ``b = 2``: ``r = 0.5``, ``shift = 20 − (−1) = 21``,
    ``M = 2²⁰``, ``bias = 2²⁰``; ``(2²⁰ + 5·2²⁰) >> 21 = 3`` (2.5 rounded up),
    where the float path ``round_half_even(2.5)`` gives 2.

    Raises:
        TypeError: ``a`` or ``b`` is not int8.
        ValueError: the scale ratios are outside XNNPACK's supported range.
    """
    _require_int8("quantized_add", a=a, b=b)
    return _fixed_point_sum(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp, out_min, out_max)


def _fixed_point_sum(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp, out_min, out_max):
    a_mult, b_mult, shift, bias = add_fixed_point_params(a_scale, a_zp, b_scale, b_zp, y_scale)
    acc = bias + a.to(torch.int64) * a_mult + b.to(torch.int64) * b_mult
    out = (acc >> shift) + y_zp  # >> on signed int64 is an arithmetic shift
    return out.clamp(out_min, out_max).to(torch.int8)


@reference_kernel("quantized_sub", _binary_fake)
def quantized_sub(
    a: torch.Tensor,
    a_scale: float,
    a_zp: int,
    b: torch.Tensor,
    b_scale: float,
    b_zp: int,
    y_scale: float,
    y_zp: int,
    out_min: int,
    out_max: int,
) -> torch.Tensor:
    """Quantized broadcasting subtract: ``quantized_add`` with ``b``'s ratio negated.

    ``s_y(y − zp_y) = s_a(a − zp_a) − s_b(b − zp_b)`` is the add formula with
    ``r_b = −s_b/s_y``. XNNPACK's qs8 add parameter setup takes signed ratios
    (it keeps the sign of each multiplier apart from its magnitude), which is
    how its subtract reuses the add microkernel; the same fixed-point rounding
    (ties towards +∞) applies.

    Example: ``s_a = s_b = 0.1``, ``s_y = 0.2``, zero points 0, ``a = 5``, ``b = 2``:
    ``M_a = 2²⁰``, ``M_b = −2²⁰``, ``(2²⁰ + 3·2²⁰) >> 21 = 2`` (1.5 rounded up).

    Raises:
        TypeError: ``a`` or ``b`` is not int8.
        ValueError: the scale ratios are outside XNNPACK's supported range.
    """
    _require_int8("quantized_sub", a=a, b=b)
    return _fixed_point_sum(a, a_scale, a_zp, b, -b_scale, b_zp, y_scale, y_zp, out_min, out_max)


@reference_kernel("quantized_mul", _binary_fake)
def quantized_mul(
    a: torch.Tensor,
    a_scale: float,
    a_zp: int,
    b: torch.Tensor,
    b_scale: float,
    b_zp: int,
    y_scale: float,
    y_zp: int,
    out_min: int,
    out_max: int,
) -> torch.Tensor:
    """Quantized broadcasting multiply, XNNPACK qs8 ``multiply`` (fp32 requantization).

    Derivation: ``s_y(y − zp_y) = s_a(a − zp_a)·s_b(b − zp_b)``, so
    ``y = zp_y + m·acc`` with the int32 ``acc = (a − zp_a)(b − zp_b)`` and
    ``m = (s_a·s_b)/s_y`` computed in fp32 (product first, as XNNPACK does),
    rounded half to even and clamped.

    Worked example: ``a = 20, zp_a = 0, s_a = 0.1``; ``b = −7, zp_b = 3, s_b = 0.2``;
    ``s_y = 0.5, zp_y = 1``: ``acc = 20·(−10) = −200``, ``m = 0.04``,
    ``y = round(−8.0) + 1 = −7`` (float: ``2.0 · −2.0 = −4.0 → −8 + 1``).

    Raises:
        TypeError: ``a`` or ``b`` is not int8.
    """
    _require_int8("quantized_mul", a=a, b=b)
    acc = (a.to(torch.int64) - a_zp) * (b.to(torch.int64) - b_zp)
    m = fp32_multiplier(a_scale, torch.tensor(b_scale), y_scale)
    return requantize_fp32(acc, m, y_zp, out_min, out_max)


# --- pooling -------------------------------------------------------------------------


def _max_pool2d_fake(x, kernel_size, stride, padding, dilation, ceil_mode, out_min, out_max):
    out = torch.ops.aten.max_pool2d(
        x.to(torch.float32), kernel_size, stride, padding, dilation, ceil_mode
    )
    return out.to(torch.int8)


@reference_kernel("quantized_max_pool2d", _max_pool2d_fake)
def quantized_max_pool2d(
    x: torch.Tensor,
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    ceil_mode: bool,
    out_min: int,
    out_max: int,
) -> torch.Tensor:
    """2-D max pooling on int8 with shared input/output qparams (XNNPACK ``max_pooling2d_nhwc_s8``).

    Derivation: ``r = s(q − zp)`` is increasing in ``q`` when ``s > 0``, so
    ``max(r) = s(max(q) − zp)``: with the same ``(s, zp)`` on both sides the
    output is the max of the int8 codes, no requantization. Padding never wins
    (it is −∞). ``stride = []`` means ``stride = kernel_size``, as in torch.
    A fused clamp still applies as ``[out_min, out_max]``.

    Example: window ``[−7, 12, 3, 12]`` → ``12``.

    Raises:
        TypeError: ``x`` is not int8.
    """
    _require_int8("quantized_max_pool2d", x=x)
    # float32 holds every int8 exactly, and CPU max_pool2d has no int8 kernel.
    out = F.max_pool2d(x.to(torch.float32), kernel_size, stride or kernel_size, padding,
                       dilation, ceil_mode)
    return out.to(torch.int64).clamp(out_min, out_max).to(torch.int8)


def _mean_hw_fake(x, x_scale, x_zp, y_scale, y_zp, out_min, out_max):
    return x.new_empty((*x.shape[:-2], 1, 1), dtype=torch.int8)


@reference_kernel("quantized_mean_hw", _mean_hw_fake)
def quantized_mean_hw(
    x: torch.Tensor,
    x_scale: float,
    x_zp: int,
    y_scale: float,
    y_zp: int,
    out_min: int,
    out_max: int,
) -> torch.Tensor:
    """Mean over the last two dims, keepdim: ``adaptive_avg_pool2d(x, 1)``, ``mean([-1, -2], True)``.

    ExecuTorch lowers both to XNNPACK's qs8 mean (a reduce operator).
    Derivation with ``n = H·W``: ``s_y(y − zp_y) = (1/n)·Σ s_x(x − zp_x)``, so
    ``y = zp_y + m·acc`` with ``acc = Σ (x − zp_x)`` (int32) and
    ``m = (s_x/s_y)·(1/n)``. XNNPACK builds ``m`` exactly in that order in fp32:
    the ratio ``s_x/s_y`` when the operator is created, then ``*= 1.0f/n`` when
    it is reshaped. ``s_x/(s_y·n)`` looks the same but rounds differently; it
    disagreed with the runtime on about 1% of outputs.

    Example: ``x = [[1, 2], [3, 6]]``, ``zp_x = 0``, ``s_x = s_y = 1``:
    ``acc = 12``, ``m = 0.25`` → ``3``.

    Raises:
        TypeError: ``x`` is not int8.
        OverflowError: the accumulator leaves int32.
    """
    _require_int8("quantized_mean_hw", x=x)
    n = x.shape[-1] * x.shape[-2]
    acc = (x.to(torch.int64) - x_zp).sum(dim=(-1, -2), keepdim=True)
    check_int32(acc, "xnnquant.quantized_mean_hw")
    f32 = torch.float32
    ratio = torch.tensor(x_scale, dtype=f32) / torch.tensor(y_scale, dtype=f32)
    m = ratio * (torch.tensor(1.0, dtype=f32) / torch.tensor(float(n), dtype=f32))
    # Unlike the GEMMs, the mean adds the output zero point before rounding (its final
    # step is XNNPACK's f32 → qs8 convert): round(0.5 − 117) = −116, where round(0.5) − 117
    # = −117.  Measured: rounding first put 42 of 480 outputs one step off on an
    # efficientnet_b0 SE pool (zero point −117, 16 elements: ties are frequent).
    q = torch.round(acc.to(f32) * m + torch.tensor(float(y_zp), dtype=f32))
    return q.to(torch.int64).clamp(out_min, out_max).to(torch.int8)


def _clamp_fake(x, out_min, out_max):
    return torch.empty_like(x)


@reference_kernel("quantized_clamp", _clamp_fake)
def quantized_clamp(x: torch.Tensor, out_min: int, out_max: int) -> torch.Tensor:
    """A standalone clamp-like activation with shared input/output qparams (XNNPACK qs8 ``clamp``).

    Derivation: with the same ``(s, zp)`` on both sides and ``s > 0``,
    ``clamp(r, a, b)`` maps to ``clamp(q, q(a), q(b))`` on the codes, where the
    bounds are quantized as in ``arith.activation_bounds`` (relu: ``[zp, 127]``).

    Example: relu with ``zp = −5``: ``[−9, −5, 3] → [−5, −5, 3]``.

    Raises:
        TypeError: ``x`` is not int8.
    """
    _require_int8("quantized_clamp", x=x)
    return x.clamp(out_min, out_max)
