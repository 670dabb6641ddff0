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

from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
from executorch.backends.xnnpack.partition.config.generic_node_configs import (
    ConstantPadConfig,
    GeluConfig,
    HardswishConfig,
    LeakyReLUConfig,
    SigmoidConfig,
    TanhConfig,
)
from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType

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


class Int8ConstantPadConfig(_AlsoInt8, ConstantPadConfig):
    """qs8 constant pad; input and output share qparams, and XNNPACK fuses it into a following conv."""


#: xnnquant's configs, each replacing ExecuTorch's config of the same target.
XNNQUANT_CONFIGS = (Int8SigmoidConfig, Int8TanhConfig, Int8GeluConfig, Int8HardswishConfig,
                    Int8LeakyReLUConfig, Int8ConstantPadConfig)

_REPLACED = {c.target_name for c in XNNQUANT_CONFIGS}

#: What the lowering hands to ``XnnpackPartitioner(configs=...)``: ExecuTorch's configs, ours in place.
PARTITIONER_CONFIGS = tuple(
    [c for c in ALL_PARTITIONER_CONFIGS if c.target_name not in _REPLACED] + list(XNNQUANT_CONFIGS))

#: Config class name → class, for every config a record may name (ExecuTorch's and ours).
CONFIGS_BY_NAME = {c.__name__: c for c in (*ALL_PARTITIONER_CONFIGS, *XNNQUANT_CONFIGS)}
