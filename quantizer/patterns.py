"""The pattern table: which ATen ops XNNPACK runs in int8, and the role of each argument.

This module is data.  :data:`PATTERNS` lists the compute patterns (an anchor
op with its arguments' roles, the activations that may be fused after it, and
a check of what XNNPACK supports); :data:`SHARED_OPS` lists the ops that only
move or select data and therefore must keep their input's qparams.  Both
export IRs are covered by listing every spelling of an op in one entry:

=============  ==========================================  ===========================================
pattern        training IR (``torch.export.export``)       core ATen IR (``run_decompositions()``)
=============  ==========================================  ===========================================
linear         ``linear(x, w, b)``                         ``addmm(b, x, permute(w))``, ``mm(x, permute(w))``
conv           ``conv1d``, ``conv2d`` (+ ``.padding``)     ``convolution(transposed=False)``
conv_transpose ``conv_transpose1d``, ``conv_transpose2d``  ``convolution(transposed=True)``
add / mul      ``add.Tensor``, ``add_.Tensor``, ``mul``    same
max_pool       ``max_pool2d``                              ``max_pool2d_with_indices`` → ``getitem(0)``
mean           ``adaptive_avg_pool2d(1)``, ``mean.dim``    ``mean.dim(keepdim=True)``
=============  ==========================================  ===========================================

The generic annotator in :mod:`.annotate` is the only code that reads this table.
The seed is ``torch/ao/quantization/backend_config/_qnnpack_pt2e.py``.
"""

from __future__ import annotations

import enum
import operator
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch.fx import Node

aten = torch.ops.aten


class Role(enum.Enum):
    """What an argument of a pattern is, and so which spec of the config it gets."""

    ACT = "activation"
    WEIGHT = "weight"
    BIAS = "bias"


@dataclass(frozen=True)
class Arg:
    """One argument of an anchor op.

    Attributes:
        index: positional index in ``node.args``.
        role: activation, weight or bias.
        axis: the weight's output-channel axis, where its per-channel observer goes.
        through: ops that may stand between the argument's source and the anchor
            when they come from the same source call (``node.meta["source_fn_stack"]``).
            A weight is observed *before* the core IR's ``permute(w, [1, 0])``, on the
            parameter itself, so its channel axis stays ``axis`` and the transposed
            constant folds away after convert.  An activation is observed before the
            ``view`` that flattens a 3-D linear input, so XNNPACK sees one linear.
    """

    index: int
    role: Role
    axis: int = 0
    through: frozenset = frozenset()


def _ok(node: Node) -> Optional[str]:
    return None


@dataclass(frozen=True)
class Pattern:
    """A compute pattern: an anchor op, its arguments' roles and what may be fused after it.

    Attributes:
        name: stable identifier used in reports and tests.
        targets: every ATen spelling of the anchor, both IRs, in-place variants included.
        args: roles of the anchor's arguments.
        fused: activations observed only after themselves when they are the anchor's
            sole user (XNNPACK fuses them into the anchor as an output clamp).
        applies: distinguishes entries sharing a target (e.g. transposed convolution).
        check: returns why XNNPACK cannot run this node in int8, or ``None``.
        dynamic: quantized under a dynamic config too (XNNPACK's dynamic kernels).
        dynamic_check: like ``check``, for dynamic configs only.
        quantize_output: whether the anchor's (or fused activation's) output is observed.
        output_through: ops after the anchor that belong to it when they come from the
            same source call (the ``view`` that restores a 3-D linear output); the
            output observer goes after them.
        folds: ops right after the anchor that torchao folds into it (a train-mode
            batch norm under QAT); the output observer goes after them.
    """

    name: str
    targets: frozenset
    args: tuple
    fused: frozenset = frozenset()
    applies: Callable[[Node], bool] = field(default=lambda node: True)
    check: Callable[[Node], Optional[str]] = _ok
    dynamic: bool = False
    dynamic_check: Callable[[Node], Optional[str]] = _ok
    quantize_output: bool = True
    output_through: frozenset = frozenset()
    folds: frozenset = frozenset()


@dataclass(frozen=True)
class SharedOp:
    """An op whose output must carry its input's qparams.

    Attributes:
        targets: the op's spellings.
        list_input: the tensors come as a list in ``args[0]`` (``cat``).
        tuple_output: the op returns a tuple and ``getitem(node, 0)`` is the tensor
            that shares (``max_pool2d_with_indices``).
        check: returns why XNNPACK cannot run this node in int8, or ``None``.
    """

    name: str
    targets: frozenset
    list_input: bool = False
    tuple_output: bool = False
    check: Callable[[Node], Optional[str]] = _ok


# --------------------------------------------------------------------------- checks

TRANSPOSES = frozenset({aten.permute.default, aten.t.default, aten.transpose.int})
VIEWS = frozenset({aten.view.default, aten.reshape.default, aten._unsafe_view.default})
# What QAT graphs hold after a conv: torchao's prepare_qat_pt2e folds it into the conv.
BATCH_NORMS = frozenset({aten.batch_norm.default, aten._native_batch_norm_legit.default,
                         aten.cudnn_batch_norm.default})
RELU = frozenset({aten.relu.default, aten.relu_.default})
BOUNDED = frozenset({aten.hardtanh.default, aten.hardtanh_.default})
CLAMPS = RELU | BOUNDED


def _shape(node) -> Optional[torch.Size]:
    val = node.meta.get("val") if isinstance(node, Node) else None
    return getattr(val, "shape", None)


def _is_transposed_convolution(node: Node) -> bool:
    if node.target == aten.convolution.default:
        return bool(node.args[6])
    return node.target in (aten.conv_transpose1d.default, aten.conv_transpose2d.input)


def _conv_groups(node: Node) -> int:
    # conv{1,2}d and conv_transpose{1,2}d both take groups at index 6.
    index = 8 if node.target == aten.convolution.default else 6
    return int(node.args[index]) if len(node.args) > index else int(node.kwargs.get("groups", 1))


def _check_conv(node: Node) -> Optional[str]:
    weight_shape = _shape(node.args[1])
    if weight_shape is not None and len(weight_shape) > 4:
        return "XNNPACK runs only 1-D and 2-D convolutions"
    return None


def _check_dynamic_conv(node: Node) -> Optional[str]:
    weight_shape = _shape(node.args[1])
    if weight_shape is None:
        return None
    groups = _conv_groups(node)
    if len(weight_shape) != 4 or (groups > 1 and groups == weight_shape[0]):
        return "XNNPACK runs only standard (not depthwise) 2-D convs with dynamic quantization"
    return None


def _check_conv_transpose(node: Node) -> Optional[str]:
    if _conv_groups(node) > 1:
        return ("XNNPACK has no per-channel int8 transposed convolution with groups > 1 "
                "(its per-channel axis would be the input channel)")
    return _check_conv(node)


def _check_linear_weight(node: Node) -> Optional[str]:
    """``mm``/``addmm`` are linear only when their right operand is a transposed constant."""
    weight = node.args[1] if node.target == aten.mm.default else node.args[2]
    while isinstance(weight, Node) and weight.target in TRANSPOSES:
        weight = weight.args[0]
    if not (isinstance(weight, Node) and weight.op == "get_attr"):
        return "matrix product of two activations: XNNPACK runs batch matmul in fp32 only"
    return None


def _check_binary(node: Node) -> Optional[str]:
    if "alpha" in node.kwargs and node.kwargs["alpha"] != 1:
        return "add with alpha != 1 is not supported by XNNPACK"
    for arg in node.args[:2]:
        if not isinstance(arg, Node):
            return "scalar operand was not lifted to a tensor (run transform_for_annotation)"
    shapes = [_shape(a) for a in node.args[:2]]
    if any(s is not None and len(s) > 4 for s in shapes):
        return "XNNPACK binary ops take tensors of rank <= 4"
    return None


def _check_max_pool(node: Node) -> Optional[str]:
    kernel = list(node.args[1])
    stride = list(node.args[2]) if len(node.args) > 2 and node.args[2] else kernel
    kernel = kernel * 2 if len(kernel) == 1 else kernel
    stride = stride * 2 if len(stride) == 1 else stride
    if any(s > k for s, k in zip(stride, kernel)):
        return f"XNNPACK max_pool2d needs stride <= kernel (stride {stride}, kernel {kernel})"
    return None


def _check_mean(node: Node) -> Optional[str]:
    shape = _shape(node.args[0])
    if shape is None or len(shape) != 4:
        return "XNNPACK averages only 4-D tensors in int8"
    dims = sorted(d % 4 for d in node.args[1])
    if dims != [2, 3]:
        return "XNNPACK int8 mean runs only over the two spatial dims (2, 3)"
    keepdim = len(node.args) > 2 and bool(node.args[2])
    if not keepdim:
        return "XNNPACK int8 mean needs keepdim=True (the quantizer rewrites this before annotating)"
    return None


def _check_adaptive_avg_pool(node: Node) -> Optional[str]:
    if list(node.args[1]) not in ([1, 1], [1]):
        return "XNNPACK runs adaptive_avg_pool2d in int8 only to a 1x1 output"
    return None


# --------------------------------------------------------------------------- the table

_CONV = frozenset({
    aten.conv1d.default, aten.conv2d.default, aten.conv1d.padding, aten.conv2d.padding,
    aten.convolution.default,
})
_CONV_TRANSPOSE = frozenset({
    aten.conv_transpose1d.default, aten.conv_transpose2d.input, aten.convolution.default,
})
_GEMM_ARGS = (Arg(0, Role.ACT), Arg(1, Role.WEIGHT, axis=0), Arg(2, Role.BIAS))

PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        name="linear",
        targets=frozenset({aten.linear.default}),
        args=_GEMM_ARGS,
        fused=CLAMPS,
        dynamic=True,
    ),
    Pattern(
        name="addmm",
        targets=frozenset({aten.addmm.default}),
        args=(Arg(0, Role.BIAS), Arg(1, Role.ACT, through=VIEWS),
              Arg(2, Role.WEIGHT, axis=0, through=TRANSPOSES)),
        fused=CLAMPS,
        check=_check_linear_weight,
        dynamic=True,
        output_through=VIEWS,
    ),
    Pattern(
        name="mm",
        targets=frozenset({aten.mm.default}),
        args=(Arg(0, Role.ACT, through=VIEWS), Arg(1, Role.WEIGHT, axis=0, through=TRANSPOSES)),
        fused=CLAMPS,
        check=_check_linear_weight,
        dynamic=True,
        output_through=VIEWS,
    ),
    Pattern(
        name="conv",
        targets=_CONV,
        args=_GEMM_ARGS,
        fused=CLAMPS,
        applies=lambda node: not _is_transposed_convolution(node),
        check=_check_conv,
        dynamic=True,
        dynamic_check=_check_dynamic_conv,
        folds=BATCH_NORMS,
    ),
    Pattern(
        name="conv_transpose",
        targets=_CONV_TRANSPOSE,
        args=(Arg(0, Role.ACT), Arg(1, Role.WEIGHT, axis=1), Arg(2, Role.BIAS)),
        fused=CLAMPS,
        applies=_is_transposed_convolution,
        check=_check_conv_transpose,
    ),
    Pattern(
        name="add",
        targets=frozenset({aten.add.Tensor, aten.add_.Tensor}),
        args=(Arg(0, Role.ACT), Arg(1, Role.ACT)),
        fused=RELU,  # XNNPACK's add fuses relu only; a following hardtanh shares instead
        check=_check_binary,
    ),
    Pattern(
        name="sub",
        targets=frozenset({aten.sub.Tensor, aten.sub_.Tensor}),
        args=(Arg(0, Role.ACT), Arg(1, Role.ACT)),
        check=_check_binary,
    ),
    Pattern(
        name="mul",
        targets=frozenset({aten.mul.Tensor, aten.mul_.Tensor}),
        args=(Arg(0, Role.ACT), Arg(1, Role.ACT)),
        check=_check_binary,
    ),
)

SHARED_OPS: tuple[SharedOp, ...] = (
    SharedOp("view", frozenset({
        aten.view.default, aten.reshape.default, aten._unsafe_view.default,
        aten.flatten.using_ints, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default,
        aten.unsqueeze.default, aten.view_copy.default, aten.squeeze_copy.dims,
        aten.unsqueeze_copy.default,
    })),
    SharedOp("permute", frozenset({aten.permute.default, aten.transpose.int, aten.t.default,
                                   aten.permute_copy.default})),
    SharedOp("slice", frozenset({aten.slice.Tensor, aten.slice_copy.Tensor})),
    SharedOp("clone", frozenset({aten.clone.default, aten.contiguous.default})),
    SharedOp("cat", frozenset({aten.cat.default, aten.concat.default}), list_input=True),
    SharedOp("max_pool", frozenset({aten.max_pool2d.default}), check=_check_max_pool),
    SharedOp(
        "max_pool",
        frozenset({aten.max_pool2d_with_indices.default}),
        tuple_output=True,
        check=_check_max_pool,
    ),
    SharedOp("mean", frozenset({aten.mean.dim}), check=_check_mean),
    SharedOp("mean", frozenset({aten.adaptive_avg_pool2d.default}), check=_check_adaptive_avg_pool),
    # Standalone clamps are exact in int8 when they keep their input's qparams.
    SharedOp("relu", RELU),
    SharedOp("hardtanh", frozenset({aten.hardtanh.default, aten.hardtanh_.default,
                                    aten.relu6.default, aten.clamp.default})),
)

#: Ops XNNPACK runs only in fp32: left float, with this reason in the report.
FLOAT_ONLY: dict = {
    aten.sigmoid.default: "XNNPACK runs sigmoid in fp32 only (no int8 kernel in the delegate)",
    aten.tanh.default: "XNNPACK runs tanh in fp32 only (no int8 kernel in the delegate)",
    aten.softmax.int: "XNNPACK runs softmax in fp32 only (no int8 kernel in the delegate)",
    aten._softmax.default: "XNNPACK runs softmax in fp32 only (no int8 kernel in the delegate)",
    aten.constant_pad_nd.default: "XNNPACK runs constant_pad_nd in fp32 only",
    aten.pad.default: "XNNPACK runs pad in fp32 only",
    aten.avg_pool2d.default: "XNNPACK runs avg_pool2d in fp32 only",
    aten._adaptive_avg_pool2d.default: "XNNPACK runs adaptive_avg_pool2d to sizes other than 1x1 in fp32 only",
    aten.gelu.default: "XNNPACK runs gelu in fp32 only",
    aten.hardswish.default: "XNNPACK runs hardswish in fp32 only",
    aten.layer_norm.default: "XNNPACK has no int8 layer_norm",
    aten.bmm.default: "XNNPACK runs batch matmul in fp32 only",
    aten.matmul.default: "XNNPACK runs batch matmul in fp32 only",
}

#: Nodes that carry no computation of their own and are not reported as ops.
BOOKKEEPING = frozenset({operator.getitem, aten.sym_size.int})


def find_pattern(node: Node) -> Optional[Pattern]:
    """The first entry of :data:`PATTERNS` that covers ``node``, if any."""
    for pattern in PATTERNS:
        if node.target in pattern.targets and pattern.applies(node):
            return pattern
    return None


def find_shared(node: Node) -> Optional[SharedOp]:
    """The entry of :data:`SHARED_OPS` that covers ``node``, if any."""
    for shared in SHARED_OPS:
        if node.target in shared.targets:
            return shared
    return None
