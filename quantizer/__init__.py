"""xnnquant.quantizer: a torchao PT2E quantizer that makes XNNPACK run int8 on both export IRs.

Public API::

    from xnnquant.quantizer import XnnpackQuantizer, get_config, get_dynamic_config, get_qat_config
"""

from .patterns import PATTERNS, SHARED_OPS, Arg, Pattern, Role, SharedOp
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
from .workflow import CalibrationError, ExportError, calibrate, export_model, quantize, sqnr

__all__ = [
    "XnnpackQuantizer", "QuantConfig", "get_config", "get_dynamic_config", "get_qat_config",
    "as_config", "ConfigError", "ValidationError", "AnnotationReport", "NodeDecision",
    "PATTERNS", "SHARED_OPS", "Pattern", "SharedOp", "Arg", "Role", "MIN_SCALE",
    "export_model", "calibrate", "quantize", "sqnr",
    "CalibrationError", "ExportError",
]
