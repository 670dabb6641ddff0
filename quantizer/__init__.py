"""xnnquant.quantizer: a torchao PT2E quantizer that makes XNNPACK run int8 on both export IRs.

Public API::

    from xnnquant.quantizer import XnnpackQuantizer, get_config, get_dynamic_config, get_qat_config

The op table (:mod:`.patterns`, :data:`RECORDS`) is the one description of the
ops; everything in xnnquant reads it.  This package imports neither the
reference kernels nor the lowering, so importing it registers no
``torch.library`` op.
"""

from ._quiet import quiet_third_party  # first: it imports torchao quietly
from .patterns import RECORDS, Arg, OpRecord, QParams, Reference, Role, Spelling, record, record_for
from .quantizer import ValidationError, XnnpackQuantizer
from .report import AnnotationReport, NodeDecision
from .specs import (
    MIN_SCALE,
    ConfigError,
    QuantConfig,
    as_config,
    get_config,
    get_dynamic_config,
    get_qat_config,
)
from .workflow import (
    CalibrationError,
    ExportError,
    ModelError,
    calibrate,
    check_calibrated,
    convert,
    export_model,
    quantize,
    sqnr,
)

__all__ = [
    "XnnpackQuantizer", "QuantConfig", "get_config", "get_dynamic_config", "get_qat_config",
    "as_config", "ConfigError", "ValidationError", "AnnotationReport", "NodeDecision",
    "RECORDS", "OpRecord", "Spelling", "Arg", "Reference", "Role", "QParams", "record",
    "record_for", "MIN_SCALE", "export_model", "calibrate", "quantize", "sqnr",
    "CalibrationError", "ExportError", "ModelError", "convert", "check_calibrated",
    "quiet_third_party",
]
