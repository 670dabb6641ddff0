"""Quantization configs: what each argument role is quantized to, and the presets.

A :class:`QuantConfig` is a frozen dataclass holding one torchao
``QuantizationSpec`` per role (input activation, output activation, weight,
bias).  It is validated once, in ``__post_init__``, against what XNNPACK can
run, so an invalid config never reaches the annotator.  The constraints come
from the seed design (PyTorch's FX-era qnnpack backend config):

* activation scale ≥ 2⁻¹² (observers are built with ``eps=2**-12``);
* int8 weights are symmetric in [-127, 127] (XNNPACK's qs8 weights never use -128);
* activations are int8 (asymmetric, XNNPACK's qs8) -- see ``get_config`` for uint8.

Presets are keyword-only factory functions.  Adjust a preset with
``dataclasses.replace``; never mutate one.  ExecuTorch's and torchao's own
``QuantizationConfig`` objects are accepted everywhere through :func:`as_config`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Literal, Optional

import torch
from torchao.quantization.pt2e import (
    FusedMovingAvgObsFakeQuantize,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
    PlaceholderObserver,
)
from torchao.quantization.pt2e.quantizer import QuantizationSpec
from torchao.quantization.pt2e.quantizer.utils import QuantizationConfig

#: Smallest activation scale XNNPACK's requantization accepts (seed: qnnpack.py).
MIN_SCALE = 2.0**-12

Observer = Literal["minmax", "histogram", "moving_average"]


class ConfigError(ValueError):
    """A quantization config that XNNPACK cannot run; the message says what to change."""


_PER_TENSOR = (torch.per_tensor_affine, torch.per_tensor_symmetric)
_UINT8_MESSAGE = (
    "uint8 activations are not supported: ExecuTorch's XNNPACK delegate (1.5.1) only "
    "lowers signed int8 (qs8) quantized operators, so a uint8 graph would stay outside "
    "the delegate. Use act_dtype=torch.int8 (asymmetric int8 covers the same range)."
)
_PER_CHANNEL = (torch.per_channel_symmetric, torch.per_channel_affine)


def observer_eps(spec: QuantizationSpec) -> Optional[float]:
    """The smallest scale the observer of ``spec`` can compute: its ``eps``.

    Read from the constructor's keywords (``MinMaxObserver.with_args(eps=...)``)
    when it names one.  A constructor that does not (a bare ``MinMaxObserver``,
    or ``with_args(...)`` without ``eps``) still has an eps: the observer's
    default, ``torch.finfo(torch.float32).eps`` ≈ 1.2e-7, far below 2⁻¹², which
    would let an all-zero tensor get a scale XNNPACK rejects.  So the observer is
    built once and its ``eps`` read (a fake quantizer keeps it on its inner
    observer).  ``None`` when neither says.
    """
    ctr = spec.observer_or_fake_quant_ctr
    keywords = getattr(getattr(ctr, "p", None), "keywords", None) or {}
    if "eps" in keywords:
        return float(keywords["eps"])
    try:
        observer = ctr()
    except Exception:  # a custom constructor that needs arguments: nothing to read
        return None
    eps = getattr(observer, "eps", None)
    if eps is None:
        eps = getattr(getattr(observer, "activation_post_process", None), "eps", None)
    if isinstance(eps, torch.Tensor):
        eps = eps.max().item() if eps.numel() else None
    return None if eps is None else float(eps)


def _check_activation(role: str, spec: Optional[QuantizationSpec]) -> None:
    if spec is None:
        return
    if spec.dtype == torch.uint8:
        raise ConfigError(_UINT8_MESSAGE)
    if spec.dtype != torch.int8:
        raise ConfigError(
            f"{role}: dtype {spec.dtype} is not supported; XNNPACK runs int8 (qs8) activations. "
            "Use get_config()."
        )
    if spec.qscheme not in _PER_TENSOR:
        raise ConfigError(
            f"{role}: qscheme {spec.qscheme} is not supported for activations; "
            "use per-tensor (torch.per_tensor_affine)."
        )
    eps = None if spec.is_dynamic else observer_eps(spec)  # dynamic: scales computed at run time
    if eps is not None and eps < MIN_SCALE:
        raise ConfigError(
            f"{role}: observer eps={eps:g} allows scales below 2**-12, which XNNPACK rejects; "
            "build the observer with eps=2**-12, e.g. MinMaxObserver.with_args(eps=2**-12)."
        )


def _check_weight(spec: Optional[QuantizationSpec]) -> None:
    if spec is None:
        return
    if spec.dtype != torch.int8:
        raise ConfigError(
            f"weight: dtype {spec.dtype} is not supported; XNNPACK needs int8 weights."
        )
    if spec.qscheme not in (torch.per_tensor_symmetric, torch.per_channel_symmetric):
        raise ConfigError(
            f"weight: qscheme {spec.qscheme} is not supported; XNNPACK needs symmetric weights "
            "(per_tensor_symmetric or per_channel_symmetric)."
        )
    qmin = -128 if spec.quant_min is None else spec.quant_min
    qmax = 127 if spec.quant_max is None else spec.quant_max
    if qmin < -127 or qmax > 127:
        raise ConfigError(
            f"weight: range [{qmin}, {qmax}] is outside [-127, 127]; XNNPACK's symmetric int8 "
            "weights must not use -128. Set quant_min=-127, quant_max=127."
        )
    eps = observer_eps(spec)
    if eps is not None and eps < MIN_SCALE:
        raise ConfigError(
            f"weight: observer eps={eps:g} allows scales below 2**-12, which XNNPACK rejects; "
            "build the observer with eps=2**-12, e.g. PerChannelMinMaxObserver.with_args(eps=2**-12).")


@dataclass(frozen=True)
class QuantConfig:
    """How each argument role of a matched pattern is quantized.

    Attributes:
        input_activation: spec for activation inputs (``is_dynamic=True`` for
            dynamic quantization).
        output_activation: spec for pattern outputs; ``None`` for dynamic configs,
            where outputs stay float.
        weight: spec for weights; ``ch_axis`` is set per pattern by the annotator
            (0 for conv/linear, 1 for transposed conv), so any value here is ignored.
        bias: ``None`` keeps the bias float, which is what the XNNPACK delegate
            wants: it quantizes the bias itself to int32 with scale = s_in·s_w.
        is_qat: fake-quantize for ``prepare_qat_pt2e``.
        name: a label shown in reports.
        clamped_output_activation: spec for outputs of a fused ``hardtanh``/relu6,
            whose range is bounded by construction; ``None`` uses ``output_activation``.
            The presets use min/max here: a histogram search clips the pile of
            saturated values at the bound, which costs accuracy.
        attention: the config that replaces this one, as the global config, in a
            graph that holds attention (a softmax whose output a matmul reads);
            ``None`` keeps this one.  :func:`get_config` puts the dynamic config
            here: trained transformers have activation channels whose outliers one
            static per-tensor scale cannot hold (a pretrained 6-layer BERT
            encoder: pooled cosine to fp32 0.86–0.90 static, 0.999 dynamic).
    """

    input_activation: Optional[QuantizationSpec]
    output_activation: Optional[QuantizationSpec]
    weight: Optional[QuantizationSpec]
    bias: Optional[QuantizationSpec] = None
    is_qat: bool = False
    name: str = "custom"
    clamped_output_activation: Optional[QuantizationSpec] = None
    attention: Optional["QuantConfig"] = None

    def __post_init__(self) -> None:
        if self.attention is not None:
            if not isinstance(self.attention, QuantConfig):
                raise ConfigError(f"attention: expected a QuantConfig or None, got {type(self.attention).__name__}")
            if self.attention.attention is not None:
                raise ConfigError("attention: the attention config must not have an attention config itself")
            if self.is_qat and not self.attention.is_qat:
                raise ConfigError("attention: a QAT config needs a QAT attention config (or None)")
        _check_activation("input_activation", self.input_activation)
        _check_activation("output_activation", self.output_activation)
        _check_activation("clamped_output_activation", self.clamped_output_activation)
        _check_weight(self.weight)
        if self.bias is not None:
            raise ConfigError(
                "bias: a quantized bias spec is not supported; leave bias=None so that the "
                "XNNPACK delegate quantizes it to int32 (scale = input scale x weight scale)."
            )
        acts = [s for s in (self.input_activation, self.output_activation) if s is not None]
        if len({s.dtype for s in acts}) > 1:
            raise ConfigError(
                "input and output activations must share one dtype; XNNPACK does not mix "
                "int8 and uint8 activations in one graph."
            )
        if self.input_activation is None and self.weight is not None:
            raise ConfigError(
                "weight-only int8 (input_activation=None) is not run by the XNNPACK delegate: "
                "a float activation with an int8 weight stays outside it. Use "
                "get_dynamic_config() to quantize activations at run time instead."
            )
        if self.output_activation is not None and self.output_activation.is_dynamic:
            raise ConfigError("output_activation cannot be dynamic; set it to None.")
        if self.is_dynamic and self.output_activation is not None:
            raise ConfigError(
                "a dynamic config quantizes inputs at run time and keeps outputs float: "
                "set output_activation=None."
            )

    @property
    def is_dynamic(self) -> bool:
        return bool(self.input_activation is not None and self.input_activation.is_dynamic)

    def to_torchao(self) -> QuantizationConfig:
        """The same config as torchao's/ExecuTorch's ``QuantizationConfig``."""
        return QuantizationConfig(
            self.input_activation, self.output_activation, self.weight, self.bias, self.is_qat
        )  # clamped_output_activation has no torchao counterpart: outputs use output_activation


def as_config(config) -> Optional[QuantConfig]:
    """Accept our config, torchao's/ExecuTorch's ``QuantizationConfig``, or ``None``.

    Raises:
        ConfigError: the object is neither, or describes something XNNPACK cannot run.
    """
    if config is None or isinstance(config, QuantConfig):
        return config
    if isinstance(config, QuantizationConfig) or all(
        hasattr(config, f) for f in ("input_activation", "output_activation", "weight", "bias")
    ):
        bias = config.bias
        if bias is not None and getattr(bias, "dtype", None) == torch.float:
            bias = None  # a float bias spec means "leave it float", as we do anyway
        return QuantConfig(
            input_activation=config.input_activation,
            output_activation=config.output_activation,
            weight=config.weight,
            bias=bias,
            is_qat=bool(getattr(config, "is_qat", False)),
            name=type(config).__name__,
        )
    raise ConfigError(
        f"expected a QuantConfig or a torchao QuantizationConfig, got {type(config).__name__}; "
        "build one with xnnquant.quantizer.get_config(...)."
    )


_ACT_OBSERVERS = {
    "minmax": MinMaxObserver,
    "histogram": HistogramObserver,
    "moving_average": MovingAverageMinMaxObserver,
}


def _act_spec(observer: Observer, is_qat: bool) -> QuantizationSpec:
    if observer not in _ACT_OBSERVERS:
        raise ConfigError(f"observer must be one of {sorted(_ACT_OBSERVERS)}, got {observer!r}")
    if is_qat:
        ctr = FusedMovingAvgObsFakeQuantize.with_args(eps=MIN_SCALE)
    else:
        ctr = _ACT_OBSERVERS[observer].with_args(eps=MIN_SCALE)
    return QuantizationSpec(
        dtype=torch.int8,
        quant_min=-128,
        quant_max=127,
        qscheme=torch.per_tensor_affine,
        observer_or_fake_quant_ctr=ctr,
    )


def _weight_spec(per_channel: bool, is_qat: bool) -> QuantizationSpec:
    if is_qat:
        inner = MovingAveragePerChannelMinMaxObserver if per_channel else MovingAverageMinMaxObserver
        ctr = FusedMovingAvgObsFakeQuantize.with_args(observer=inner, eps=MIN_SCALE)
    else:
        ctr = (PerChannelMinMaxObserver if per_channel else MinMaxObserver).with_args(eps=MIN_SCALE)
    return QuantizationSpec(
        dtype=torch.int8,
        quant_min=-127,
        quant_max=127,
        qscheme=torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric,
        ch_axis=0,
        observer_or_fake_quant_ctr=ctr,
    )


@functools.lru_cache(maxsize=None)
def get_config(
    *,
    per_channel: bool = True,
    act_dtype: torch.dtype = torch.int8,
    observer: Observer = "histogram",
    is_qat: bool = False,
    attention: Optional[str] = None,
) -> QuantConfig:
    """Static int8 quantization: the recommended preset, and the default.

    Args:
        per_channel: symmetric int8 weights per output channel (default) or per tensor.
        act_dtype: ``torch.int8`` (default). ``torch.uint8`` is the seed's
            asymmetric qu8 scheme; the ExecuTorch XNNPACK delegate only runs qs8
            operators, so it raises :class:`ConfigError`.
        observer: activation observer: ``"histogram"`` (default, as ExecuTorch's;
            searches the clipping range that minimizes L2 error), ``"minmax"``
            (fastest), or ``"moving_average"``.  Outputs of a fused hardtanh/relu6
            always use min/max (see ``QuantConfig.clamped_output_activation``).
        is_qat: fake quantization for ``prepare_qat_pt2e`` (same as :func:`get_qat_config`).
        attention: what a graph that holds attention gets instead (``QuantConfig.attention``):
            ``"dynamic"`` (dynamic int8 linear and conv, the rest float: the most
            accurate on every transformer measured) or ``"static"`` (this config).
            ``None`` (default) means ``"dynamic"`` with per-channel weights, and
            ``"static"`` with per-tensor ones or QAT, which dynamic int8 cannot use.

    Raises:
        ConfigError: an option XNNPACK cannot run.
    """
    if attention not in (None, "dynamic", "static"):
        raise ConfigError(f"attention must be 'dynamic', 'static' or None, got {attention!r}")
    if attention == "dynamic" and (is_qat or not per_channel):
        raise ConfigError(
            "attention='dynamic' needs per-channel weights and no QAT: XNNPACK's dynamic kernels "
            "take per-channel weights only, and QAT trains static qparams. Use attention='static'.")
    if attention is None:
        attention = "dynamic" if per_channel and not is_qat else "static"
    if act_dtype == torch.uint8:
        raise ConfigError(_UINT8_MESSAGE)
    if act_dtype != torch.int8:
        raise ConfigError(f"act_dtype must be torch.int8 (XNNPACK's qs8), got {act_dtype}")
    act = _act_spec(observer, is_qat)
    return QuantConfig(
        input_activation=act,
        output_activation=act,
        weight=_weight_spec(per_channel, is_qat),
        is_qat=is_qat,
        clamped_output_activation=None if observer == "minmax" else _act_spec("minmax", is_qat),
        name=f"static-{'qat-' if is_qat else ''}{'per-channel' if per_channel else 'per-tensor'}",
        attention=(replace(get_dynamic_config(), name="dynamic-per-channel (attention graph)")
                   if attention == "dynamic" else None),
    )


def get_qat_config(*, per_channel: bool = True) -> QuantConfig:
    """Fake-quantized static int8 for ``prepare_qat_pt2e`` (conv+batchnorm folded by torchao)."""
    return get_config(per_channel=per_channel, is_qat=True)


@functools.lru_cache(maxsize=None)
def get_dynamic_config(*, per_channel: bool = True) -> QuantConfig:
    """Dynamic int8: weights quantized ahead of time, activations at run time.

    Only linear and 2-D conv patterns are quantized (XNNPACK's dynamically
    quantized kernels); every other node stays float and the report says so.
    XNNPACK rejects per-tensor weights with dynamic activations, so
    ``per_channel=False`` raises :class:`ConfigError`.
    """
    if not per_channel:
        raise ConfigError(
            "dynamic quantization needs per-channel weights: XNNPACK does not support "
            "per-tensor weights with dynamically quantized activations."
        )
    act = QuantizationSpec(
        dtype=torch.int8,
        quant_min=-128,
        quant_max=127,
        qscheme=torch.per_tensor_affine,
        is_dynamic=True,
        observer_or_fake_quant_ctr=PlaceholderObserver.with_args(eps=MIN_SCALE),
    )
    return QuantConfig(
        input_activation=act,
        output_activation=None,
        weight=_weight_spec(per_channel, False),
        name="dynamic-per-channel",
    )


def with_weight_axis(spec: QuantizationSpec, axis: int) -> QuantizationSpec:
    """``spec`` with its channel axis set for one weight; per-tensor specs are unchanged."""
    if spec.qscheme in _PER_CHANNEL and spec.ch_axis != axis:
        return replace(spec, ch_axis=axis)
    return spec
