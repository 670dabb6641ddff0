"""xnnquant's own XNNPACK partitioner configs: ops XNNPACK runs in int8 that ExecuTorch's configs claim in fp32 only.

XNNPACK's runtime (the one ExecuTorch 1.5.1 ships) has qs8 kernels for
sigmoid, tanh, gelu, hardswish, leaky_relu and constant pad, and ExecuTorch's
XNNPACK serializer already writes the quantization parameters of any
operator's int8 inputs and outputs (``NodeVisitor.define_nodes_tensor_inputs_outputs``
reads them from the implicit q/dq beside the op).  Only the partitioner
configs refuse them: their ``supported_precision_types`` is ``[FP32]``, so
``GenericNodePartitionerConfig.get_node_and_deps`` never takes the
``dq → op → q`` pattern and the op runs in fp32 between two Converts.

Each config here subclasses ExecuTorch's config of the same op and adds
``STATIC_QUANT``; everything else (the target name, the fp32 constraints, the
quantized pattern matching, ``get_original_aten`` that keeps hardswish whole)
is ExecuTorch's.  ``XnnpackPartitioner`` refuses two configs with one target
name, so :data:`PARTITIONER_CONFIGS` is ExecuTorch's list with these in place
of the configs they extend; the lowering passes it as ``configs=``.

The records of the op table (``xnnquant.quantizer.patterns``) name these
classes in their ``partitioner`` field; :data:`CONFIGS_BY_NAME` resolves
those names, ours and ExecuTorch's.
"""

from __future__ import annotations

from executorch.backends.xnnpack.partition.config import (
    ALL_PARTITIONER_CONFIGS,
    gemm_configs,
    generic_node_configs,
)
from executorch.backends.xnnpack.partition.config.generic_node_configs import (
    ConstantPadConfig,
    GeluConfig,
    HardswishConfig,
    LeakyReLUConfig,
    SigmoidConfig,
    TanhConfig,
)
from executorch.backends.xnnpack.partition.config.gemm_configs import ConvolutionConfig
from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType

from xnnquant.quantizer.graph import op_name
from xnnquant.quantizer.patterns import deconvolution_padding_reason

_FP32_AND_INT8 = [ConfigPrecisionType.FP32, ConfigPrecisionType.STATIC_QUANT]


class _AlsoInt8:
    """Mixin: the op is partitioned in fp32 and, as ``dq → op → q``, in int8 (qs8)."""

    def supported_precision_types(self):
        return list(_FP32_AND_INT8)


class Int8SigmoidConfig(_AlsoInt8, SigmoidConfig):
    """qs8 sigmoid (XNNPACK builds a lookup table from the input and output qparams)."""


class Int8TanhConfig(_AlsoInt8, TanhConfig):
    """qs8 tanh (lookup table)."""


class Int8GeluConfig(_AlsoInt8, GeluConfig):
    """qs8 gelu, exact or tanh-approximated (lookup table)."""


class Int8HardswishConfig(_AlsoInt8, HardswishConfig):
    """qs8 hardswish; ``get_original_aten`` (ExecuTorch's) keeps it whole through ``to_edge``."""


class Int8LeakyReLUConfig(_AlsoInt8, LeakyReLUConfig):
    """qs8 leaky_relu (XNNPACK's fixed-point kernel, not a lookup table)."""


_DYNAMIC_PAD_REASON = (
    "the program quantizes a conv dynamically, and XNNPACK (executorch 1.5.1) fails to run a "
    "delegate that holds a pad and a dynamically quantized conv ('Propagating input shapes "
    "failed'): the pad runs outside, on ExecuTorch's portable kernel")


def _has_dynamic_conv(ep) -> bool:
    """A convolution of ``ep`` reads a dynamically quantized activation (``dequantize_per_tensor.tensor``)."""
    for node in ep.graph.nodes:
        if node.op == "call_function" and op_name(node.target) == "aten.convolution.default":
            act = node.args[0]
            if getattr(act, "op", None) == "call_function" and \
                    op_name(act.target) == "quantized_decomposed.dequantize_per_tensor.tensor":
                return True
    return False


class Int8ConstantPadConfig(_AlsoInt8, ConstantPadConfig):
    """qs8 constant pad; input and output share qparams, and XNNPACK fuses it into a following conv.

    Not in a program with a dynamically quantized conv: the runtime fails to
    run that delegate (a pad before a dynamic conv, directly or through other ops,
    measured), so the pad is refused there, with the reason.
    """

    def check_constraints(self, node, ep) -> bool:
        if _has_dynamic_conv(ep):
            generic_node_configs.why(node, reason=_DYNAMIC_PAD_REASON)
            return False
        return super().check_constraints(node, ep)


class SafeConvolutionConfig(ConvolutionConfig):
    """ExecuTorch's convolution config, refusing what XNNPACK fails to run.

    A transposed conv whose ``output_padding`` reaches its stride (torch allows
    it below the dilation too) is delegated by ExecuTorch and fails at run time;
    refused here (``xnnquant.quantizer.patterns.deconvolution_padding_reason``),
    it runs on the portable kernel, with the reason in the report.
    """

    def check_constraints(self, node, ep) -> bool:
        if len(node.args) > 7 and node.args[6]:
            reason = deconvolution_padding_reason(node.args[7], node.args[3])
            if reason is not None:
                gemm_configs.why(node, reason=reason)
                return False
        return super().check_constraints(node, ep)


#: xnnquant's configs, each replacing ExecuTorch's config of the same target.
XNNQUANT_CONFIGS = (Int8SigmoidConfig, Int8TanhConfig, Int8GeluConfig, Int8HardswishConfig,
                    Int8LeakyReLUConfig, Int8ConstantPadConfig, SafeConvolutionConfig)

_REPLACED = {c.target_name for c in XNNQUANT_CONFIGS}

#: What the lowering hands to ``XnnpackPartitioner(configs=...)``: ExecuTorch's configs, ours in place.
PARTITIONER_CONFIGS = tuple(
    [c for c in ALL_PARTITIONER_CONFIGS if c.target_name not in _REPLACED] + list(XNNQUANT_CONFIGS))

#: Config class name → class, for every config a record may name (ExecuTorch's and ours).
CONFIGS_BY_NAME = {c.__name__: c for c in (*ALL_PARTITIONER_CONFIGS, *XNNQUANT_CONFIGS)}
