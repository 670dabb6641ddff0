"""``XnnpackQuantizer``: the torchao PT2E ``Quantizer`` for ExecuTorch's XNNPACK backend.

Use it with torchao's ``prepare_pt2e`` / ``prepare_qat_pt2e`` / ``convert_pt2e``
on either export IR.  It keeps ExecuTorch's ``XNNPACKQuantizer`` setter API
(``set_global``, ``set_operator_type``, ``set_module_type``,
``set_module_name``, ``set_filter_function``) and accepts that quantizer's
``QuantizationConfig`` objects, so existing code can swap it in unchanged.

Scoping precedence, highest first::

    set_module_name  >  set_module_type  >  set_operator_type  >  set_global

A node inside several named modules takes the config of the innermost one
that is named; ``None`` at any level keeps the node in float (its neighbours
then end with a clean dequantize / start with a quantize).

After ``annotate`` the decisions are in :attr:`XnnpackQuantizer.report`.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.quantizer import (
    DerivedQuantizationSpec,
    QuantizationSpec,
    Quantizer,
    SharedQuantizationSpec,
)
from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

from .annotate import annotate_graph
from .graph import holds_attention, op_name, schema_args
from .patterns import QParams, Role, record_for
from .report import AnnotationReport
from .specs import MIN_SCALE, QuantConfig, as_config, get_config, observer_eps
from .transforms import ANNOTATION_PASSES, run_pipeline
from .workflow import check_not_in_training_mode, check_not_quantized

_UNSET = object()



class ValidationError(ValueError):
    """An annotation that XNNPACK cannot run; names the node and the violated rule."""


def _module_stack(node: Node) -> list:
    """(qualified name, module type) from outermost to innermost."""
    stack = node.meta.get("nn_module_stack") or {}
    out = []
    for path, mod_type in stack.values():
        out.append((str(path), mod_type))
    return out


def _type_matches(mod_type, wanted: type) -> bool:
    # Exported graphs record the type as its dotted name; older ones as the class.
    if isinstance(mod_type, str):
        return mod_type == f"{wanted.__module__}.{wanted.__qualname__}"
    return mod_type is wanted


def _normalize_module_name(path: str) -> str:
    # Strict-mode export spells "layer1.0" as "L['self'].layer1[0]" or "L__self___layer1_0";
    # non-strict export (the default) already gives "layer1.0".
    if path.startswith("L['self']"):
        path = path[len("L['self']"):].lstrip(".")
        path = path.replace("[", ".").replace("]", "").replace("'", "")
    return path


class XnnpackQuantizer(Quantizer):
    """Annotates both export IRs so XNNPACK runs every supported op in int8.

    Args:
        config: the global config; defaults to :func:`get_config` (static int8
            activations, symmetric per-channel int8 weights).  Pass ``None`` to
            quantize nothing unless a more specific setter says so.
    """

    def __init__(self, config=_UNSET) -> None:
        super().__init__()
        self.global_config: Optional[QuantConfig] = (
            get_config() if config is _UNSET else as_config(config)
        )
        self.operator_type_config: dict = {}
        self.module_type_config: dict = {}
        self.module_name_config: dict = {}
        self.filter_fn: Optional[Callable[[Node], bool]] = None
        self.report: Optional[AnnotationReport] = None

    # -- scoping ----------------------------------------------------------------------
    def set_global(self, quantization_config) -> "XnnpackQuantizer":
        """Config for every node no more specific setter covers (``None``: keep float)."""
        self.global_config = as_config(quantization_config)
        return self

    def set_operator_type(self, operator_type, quantization_config) -> "XnnpackQuantizer":
        """Config for nodes whose target is ``operator_type`` (an OpOverload or its packet)."""
        if not isinstance(operator_type, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
            raise TypeError(
                f"operator_type must be an ATen op such as torch.ops.aten.linear.default, "
                f"got {operator_type!r}"
            )
        self.operator_type_config[operator_type] = as_config(quantization_config)
        return self

    def set_module_type(self, module_type: type, quantization_config) -> "XnnpackQuantizer":
        """Config for nodes inside any module of class ``module_type``."""
        if not isinstance(module_type, type):
            raise TypeError(f"module_type must be a class such as torch.nn.Linear, got {module_type!r}")
        self.module_type_config[module_type] = as_config(quantization_config)
        return self

    def set_module_name(self, module_name: str, quantization_config) -> "XnnpackQuantizer":
        """Config for nodes inside the submodule named ``module_name`` (``None``: keep float)."""
        if not isinstance(module_name, str):
            raise TypeError(f"module_name must be a str such as 'layer1.0', got {module_name!r}")
        self.module_name_config[module_name] = as_config(quantization_config)
        return self

    def set_filter_function(self, filter_fn: Callable[[Node], bool]) -> "XnnpackQuantizer":
        """Only nodes for which ``filter_fn(node)`` is True are quantized."""
        self.filter_fn = filter_fn
        return self

    def config_for(self, node: Node) -> tuple:
        """(config or None, which setter it came from), by the documented precedence."""
        stack = _module_stack(node)
        for path, _ in reversed(stack):
            path = _normalize_module_name(path)
            for name, config in self.module_name_config.items():
                if path == name:
                    return config, f"module name {name!r}"
        for path, mod_type in reversed(stack):
            for wanted, config in self.module_type_config.items():
                if _type_matches(mod_type, wanted):
                    return config, f"module type {wanted.__name__}"
        target = node.target
        packet = getattr(target, "overloadpacket", None)
        for key in (target, packet):
            if key is not None and key in self.operator_type_config:
                return self.operator_type_config[key], f"operator type {key}"
        return self.global_config, "global"

    # -- Quantizer API ----------------------------------------------------------------
    def transform_for_annotation(self, model: GraphModule) -> GraphModule:
        """Rewrite the graph into the spellings the pattern table covers.

        Runs :data:`xnnquant.quantizer.transforms.ANNOTATION_PASSES`: folds core-IR
        batch norm into convs, spells ``max_pool2d_with_indices`` whose indices are
        unused as ``max_pool2d`` (the op XNNPACK's partitioner claims), spells
        ``clamp`` after a conv/linear as ``relu``/``hardtanh``, gives spatial
        ``mean`` ``keepdim=True`` and lifts scalar operands of add/sub/mul to
        tensors.  torchao's prepare works on this graph in place.

        Raises:
            ModelError: the graph is already prepared or quantized, or (for
                post-training configs) has a batch norm or dropout in training mode.
        """
        check_not_quantized(model)
        if not self._any_qat():
            check_not_in_training_mode(model)
        if self._any_qat() and any(
            n.target == torch.ops.aten._native_batch_norm_legit_functional.default
            for n in model.graph.nodes
        ):
            raise ValueError(
                "QAT on the core ATen IR is not supported: torchao folds conv+batchnorm for QAT "
                "only in the training IR. Pass torch.export.export(...).module() (without "
                "run_decompositions()) to prepare_qat_pt2e."
            )
        return run_pipeline(model, ANNOTATION_PASSES).graph_module

    def annotate(self, model: GraphModule) -> GraphModule:
        resolve = self.config_for
        if holds_attention(model):
            resolve = _in_attention_graph(self.config_for)
        self.report = annotate_graph(model, resolve, self.filter_fn)
        return model

    def validate(self, model: GraphModule) -> None:
        """Check every annotation in ``model`` against XNNPACK's constraints.

        Raises:
            ValidationError: naming the node and the rule it breaks.
        """
        for node in model.graph.nodes:
            ann = node.meta.get(Q_ANNOTATION_KEY)
            if ann is None:
                continue
            specs = list(ann.input_qspec_map.items())
            if ann.output_qspec is not None:
                specs.append((None, ann.output_qspec))
            for arg, spec in specs:
                if isinstance(spec, (SharedQuantizationSpec, DerivedQuantizationSpec)):
                    continue
                _validate_spec(node, arg, spec)
            _validate_shared_op(node, ann)

    def _any_qat(self) -> bool:
        configs = [self.global_config, *self.operator_type_config.values(),
                   *self.module_type_config.values(), *self.module_name_config.values()]
        return any(c is not None and c.is_qat for c in configs)


def _in_attention_graph(resolve):
    """``resolve`` with the global config's ``attention`` config in its place (see ``QuantConfig.attention``).

    Only the global config is replaced: a module name, module type or
    operator type setter says what the user wants for those nodes.
    """

    def resolved(node: Node) -> tuple:
        config, source = resolve(node)
        if source == "global" and config is not None and config.attention is not None:
            return config.attention, "global, in a graph with attention (QuantConfig.attention)"
        return config, source

    return resolved


def _validate_spec(node: Node, arg, spec: QuantizationSpec) -> None:
    where = f"node {node.name!r} ({op_name(node)})" + (f", input {arg.name!r}" if arg is not None else ", output")
    is_weight = spec.qscheme in (torch.per_channel_symmetric, torch.per_tensor_symmetric, torch.per_channel_affine)
    if spec.dtype not in (torch.int8,) and not (spec.dtype == torch.float):
        raise ValidationError(f"{where}: dtype {spec.dtype} is not int8; XNNPACK runs qs8 only")
    if is_weight and spec.dtype == torch.int8:
        if spec.quant_min is None or spec.quant_min < -127 or (spec.quant_max or 127) > 127:
            raise ValidationError(
                f"{where}: symmetric int8 weights must lie in [-127, 127] "
                f"(got [{spec.quant_min}, {spec.quant_max}])")
    if spec.qscheme in (torch.per_channel_symmetric, torch.per_channel_affine):
        weight_ndim = None
        if arg is not None and isinstance(arg.meta.get("val"), torch.Tensor):
            weight_ndim = arg.meta["val"].dim()
        if weight_ndim is not None and not (0 <= spec.ch_axis < weight_ndim):
            raise ValidationError(f"{where}: per-channel axis {spec.ch_axis} is out of range")
        axis = _weight_axis(node, arg)
        if axis is not None and spec.ch_axis != axis:
            raise ValidationError(
                f"{where}: {record_for(node).name} weights must be per-channel on axis {axis} "
                f"(output channels), got axis {spec.ch_axis}")
    eps = None if spec.is_dynamic else observer_eps(spec)
    if eps is not None and eps < MIN_SCALE:
        raise ValidationError(f"{where}: observer eps {eps} allows scales below 2**-12")


def _weight_axis(node: Node, arg) -> Optional[int]:
    """The output-channel axis the op table gives the weight ``arg`` of ``node``, if it is one."""
    record = record_for(node)
    if record is None or arg is None:
        return None
    values = schema_args(node)
    for role in record.args_of(node.target):
        if role.role is Role.WEIGHT and values.get(role.name) is arg:
            return role.axis
    return None


def _validate_shared_op(node: Node, ann) -> None:
    record = record_for(node)
    if record is None or record.qparams is not QParams.SHARED or ann.output_qspec is None:
        return
    if record.spelling(node.target).output_index is not None:
        return
    if not ann.input_qspec_map:
        return  # an activation fused into the op before it: observed after itself only
    if not isinstance(ann.output_qspec, SharedQuantizationSpec):
        raise ValidationError(
            f"node {node.name!r} ({op_name(node)}): a data-movement op must share its input's "
            "qparams (SharedQuantizationSpec); XNNPACK refuses different input and output qparams")
