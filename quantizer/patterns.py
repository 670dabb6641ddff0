"""The op table: one record per op, the single source of what xnnquant knows about each XNNPACK op.

Every other part of the package reads these records and nothing else:

* the annotator (:mod:`.annotate`) reads the spellings, argument roles, qparams
  rule, fused activations and checks;
* ``XnnpackQuantizer.validate`` reads the weight roles and the qparams rule;
* the annotation passes (:mod:`.transforms`) read their target sets from here;
* the reference lowering (``xnnquant.passes.lower_to_reference``) reads each
  record's :class:`Reference` (the kernel and how its parameters map from the
  schema arguments) and the activation bounds;
* the delegation report reads the edge-dialect ops and partitioner configs;
* the benchmark counts quantized ops with :func:`record_for`.

A record (:class:`OpRecord`) holds:

=================  ===========================================================
``spellings``      every ATen spelling in both export IRs, in-place variants
                   joined, each with the role of its arguments keyed by
                   schema name (activation, weight and its channel axis, bias)
``qparams``        own observer (it requantizes), shared with its input (it
                   only moves data), or float (XNNPACK has no int8 kernel)
``fused``          activations XNNPACK fuses after it as an output clamp
``checks``         each returns why XNNPACK cannot run a node, or None
``reference``      the reference kernel and its parameter mapping, or
                   ``no_reference`` with the reason it has none
``partitioner``    the partitioner configs that claim it (ExecuTorch's, or
                   xnnquant's int8 ones in ``xnnquant.passes.partitioner_configs``),
                   and the edge-dialect ops it becomes (``edge_ops``)
=================  ===========================================================

Both IRs at a glance:

=============  ==========================================  ===========================================
record         training IR (``torch.export.export``)       core ATen IR (``run_decompositions()``)
=============  ==========================================  ===========================================
linear         ``linear(x, w, b)``                         ``addmm(b, x, permute(w))``, ``mm(x, permute(w))``
conv           ``conv1d``, ``conv2d`` (+ ``.padding``)     ``convolution(transposed=False)``
conv_transpose ``conv_transpose1d``, ``conv_transpose2d``  ``convolution(transposed=True)``
add, sub, mul  ``add.Tensor``, ``add_.Tensor``, ...        same
max_pool       ``max_pool2d``                              ``max_pool2d_with_indices`` → ``getitem(0)``
mean           ``adaptive_avg_pool2d(1)``, ``mean.dim``    ``mean.dim(keepdim=True)``
hardswish      ``hardswish``                               ``add → clamp → clamp → mul → div``, made
                                                           whole again by ``RecomposeHardswish``
pad            ``pad(mode="constant")``                    ``constant_pad_nd``
=============  ==========================================  ===========================================

Adding an op is one record here plus one case in ``tests/quantizer/cases.py``;
the guard tests fail when either is missing.  The seed is the pattern set of
PyTorch's FX-era qnnpack backend config, carried over to PT2E.
"""

from __future__ import annotations

import enum
import operator
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import torch
from torch.fx import Node

from .graph import constant, is_transposed_constant, schema_args, shape

aten = torch.ops.aten

Check = Callable[[Node], Optional[str]]


class Role(enum.Enum):
    """What an argument of an op is, and so which spec of the config it gets."""

    ACT = "activation"
    WEIGHT = "weight"
    BIAS = "bias"


class QParams(enum.Enum):
    """How a record's output gets its quantization parameters."""

    OWN = "own observer"  # the op requantizes: its output is observed on its own
    SHARED = "shared with input"  # the op moves data: output carries the input's qparams
    FLOAT = "float"  # XNNPACK has no int8 kernel: the op is left float


@dataclass(frozen=True)
class Arg:
    """One argument of an op, by schema name.

    Attributes:
        name: the schema argument name (``"mat2"`` of ``addmm``).
        role: activation, weight or bias.
        axis: the weight's output-channel axis, where its per-channel observer goes.
        through: ops that may stand between the argument's source and the op when
            they come from the same source call.  An activation is observed before
            the ``view`` that flattens a 3-D linear input, so XNNPACK sees one linear.
        transposed: the weight reaches the op through a 2-D transpose of the
            parameter (core IR ``permute(w, [1, 0])``).  It is observed on the
            parameter itself, so its channel axis stays ``axis`` and the transpose
            folds away after convert; the reference kernel gets the ``[OC, IC]`` weight.
        is_list: the argument is a list of tensors (``cat``).
    """

    name: str
    role: Role
    axis: int = 0
    through: frozenset = frozenset()
    transposed: bool = False
    is_list: bool = False


@dataclass(frozen=True)
class Reference:
    """How a record lowers to a reference kernel ``torch.ops.xnnquant.<kernel>``.

    ``kernel=None`` means the op only moves int8 codes (its qparams are shared),
    so the ATen op itself, applied to the codes, is the reference.

    Attributes:
        kernel: the kernel's op name in the ``xnnquant`` namespace, or None.
        params: ``(kernel parameter, schema argument name)`` pairs, in kernel order.
        requantizes: False when the kernel takes no qparams because input and
            output share them (max pooling, standalone clamps).
        fuses_activation: a following clamp-like activation becomes the output clamp.
        input_qparams: the kernel takes its input's qparams although it does not
            requantize (pad writes its padding value as a code).
        rewrite_args: per target, a hook given the schema arguments and the weight's
            shape that returns them in the form ``params`` expects, or a string
            saying why it cannot (``padding="same"`` spelled as numbers).
    """

    kernel: Optional[str]
    params: tuple = ()
    requantizes: bool = True
    fuses_activation: bool = True
    rewrite_args: Mapping = field(default_factory=dict)
    input_qparams: bool = False


@dataclass(frozen=True)
class Spelling:
    """One way an op is written in an export IR: its targets and the roles of its arguments.

    Attributes:
        targets: ATen overloads that share one schema layout (in-place variants included).
        args: the roles of the arguments that carry tensors, in kernel order.
        checks: reasons XNNPACK cannot run this spelling (on top of the record's checks).
        bounds: for a clamp-like activation, ``(lower, upper)``: each a constant, a
            schema argument name that holds it, or None for unbounded.
        output_index: the op returns a tuple and ``getitem(node, output_index)`` is
            its tensor (``max_pool2d_with_indices``).
    """

    targets: frozenset
    args: tuple = ()
    checks: tuple = ()
    bounds: Optional[tuple] = None
    output_index: Optional[int] = None


@dataclass(frozen=True)
class OpRecord:
    """Everything xnnquant knows about one XNNPACK op.

    Attributes:
        name: stable identifier used in reports, tests and pattern counts.
        spellings: the ATen spellings in both IRs.
        qparams: :class:`QParams` rule for the output.
        fused: activations observed only after themselves when they are the op's
            sole user (XNNPACK fuses them as an output clamp).
        checks: each returns why XNNPACK cannot run a node in int8, or None.
        applies: distinguishes records sharing a target (transposed convolution).
        dynamic: quantized under a dynamic config too (XNNPACK's dynamic kernels).
        dynamic_checks: like ``checks``, for dynamic configs only.
        output_through: ops after the op that belong to it when they come from the
            same source call (the ``view`` restoring a 3-D linear output); the output
            observer goes after them.
        folds: ops right after the op that torchao folds into it (a train-mode batch
            norm under QAT); the output observer goes after them.
        scalar_forms: overloads with a Python-number operand and the tensor overload
            they become once the number is lifted to a constant.
        reference: the reference kernel, or None with ``no_reference`` saying why.
        reason: for a ``FLOAT`` record, why XNNPACK runs it in fp32 only.
        partitioner: names of the XNNPACK partitioner configs that claim it (ExecuTorch's or
            xnnquant's, ``xnnquant.passes.partitioner_configs.CONFIGS_BY_NAME``).
        edge_ops: the edge-dialect ops (``name.overload``) it becomes when lowered.
        delegated: where the lowering puts it: True inside the XNNPACK delegate;
            otherwise the :class:`~xnnquant.passes.report.DelegationReport` reason
            category it is reported outside with.
    """

    name: str
    spellings: tuple
    qparams: QParams
    fused: frozenset = frozenset()
    checks: tuple = ()
    applies: Callable[[Node], bool] = field(default=lambda node: True)
    dynamic: bool = False
    dynamic_checks: tuple = ()
    output_through: frozenset = frozenset()
    folds: frozenset = frozenset()
    scalar_forms: Mapping = field(default_factory=dict)
    reference: Optional[Reference] = None
    no_reference: str = ""
    reason: str = ""
    partitioner: tuple = ()
    edge_ops: tuple = ()
    delegated: object = True

    @property
    def targets(self) -> frozenset:
        """Every ATen overload of every spelling."""
        return frozenset().union(*(s.targets for s in self.spellings))

    def spelling(self, target) -> Spelling:
        """The spelling that holds ``target``."""
        return next(s for s in self.spellings if target in s.targets)

    def args_of(self, target) -> tuple:
        """The :class:`Arg` roles of ``target``'s spelling."""
        return self.spelling(target).args

    def why_not(self, node: Node, *, dynamic: bool = False) -> Optional[str]:
        """The first reason XNNPACK cannot run ``node`` in int8, or None."""
        checks = (*self.spelling(node.target).checks, *self.checks,
                  *(self.dynamic_checks if dynamic else ()))
        for check in checks:
            reason = check(node)
            if reason is not None:
                return reason
        return None


# --------------------------------------------------------------------------- op sets

VIEWS = frozenset({aten.view.default, aten.reshape.default, aten._unsafe_view.default})
#: What QAT graphs hold after a conv: torchao's prepare_qat_pt2e folds it into the conv.
BATCH_NORMS = frozenset({aten.batch_norm.default, aten._native_batch_norm_legit.default,
                         aten.cudnn_batch_norm.default})
RELU = frozenset({aten.relu.default, aten.relu_.default})
HARDTANH = frozenset({aten.hardtanh.default, aten.hardtanh_.default})
#: What XNNPACK fuses into conv/linear: relu and hardtanh.  ``clamp`` and ``relu6``
#: after a conv/linear are respelled as these by ``RewriteClamp``.
CLAMPS = RELU | HARDTANH


# --------------------------------------------------------------------------- checks


def _conv_groups(node: Node) -> int:
    return int(schema_args(node).get("groups", 1))


def _is_transposed_convolution(node: Node) -> bool:
    if node.target == aten.convolution.default:
        return bool(schema_args(node)["transposed"])
    return node.target in (aten.conv_transpose1d.default, aten.conv_transpose2d.input)


def _check_conv_rank(node: Node) -> Optional[str]:
    weight_shape = shape(schema_args(node)["weight"])
    if weight_shape is not None and len(weight_shape) > 4:
        return "XNNPACK runs only 1-D and 2-D convolutions"
    return None


def _check_dynamic_conv(node: Node) -> Optional[str]:
    weight_shape = shape(schema_args(node)["weight"])
    if weight_shape is None:
        return None
    groups = _conv_groups(node)
    if len(weight_shape) != 4 or (groups > 1 and groups == weight_shape[0]):
        return "XNNPACK runs only standard (not depthwise) 2-D convs with dynamic quantization"
    return None


def _check_conv_transpose_groups(node: Node) -> Optional[str]:
    if _conv_groups(node) > 1:
        return ("XNNPACK has no per-channel int8 transposed convolution with groups > 1 "
                "(its per-channel axis would be the input channel)")
    return None


def deconvolution_padding_reason(output_padding, stride) -> Optional[str]:
    """Why XNNPACK cannot run a transposed conv with this ``output_padding``, or None.

    torch allows ``output_padding < max(stride, dilation)``; XNNPACK's
    deconvolution takes an adjustment below the stride only, and a delegate
    with one at or above it fails at run time in executorch 1.5.1
    ("Propagating input shapes failed ... invalid_parameter"; found by the fuzzer
    on a dilated ``conv_transpose1d``, in fp32 too).
    """
    pads, strides = list(output_padding or ()), list(stride or ())
    if len(strides) == 1 and len(pads) > 1:
        strides *= len(pads)
    if any(p >= s for p, s in zip(pads, strides)):
        return (f"XNNPACK's transposed convolution needs output_padding < stride "
                f"(got output_padding {pads}, stride {strides}); it runs outside the delegate")
    return None


def _check_deconvolution_padding(node: Node) -> Optional[str]:
    args = schema_args(node)
    return deconvolution_padding_reason(args.get("output_padding"), args.get("stride", (1,)))


def _check_output_padding(node: Node) -> Optional[str]:
    if any(schema_args(node).get("output_padding") or ()):
        return "output_padding is only meaningful for transposed convolution"
    return None


def _check_unit_scales(node: Node) -> Optional[str]:
    args = schema_args(node)
    bad = {k: args[k] for k in ("alpha", "beta") if k in args and args[k] != 1}
    return f"scaled form {bad} is not a linear (XNNPACK needs alpha = beta = 1)" if bad else None


def _check_linear_weight(node: Node) -> Optional[str]:
    """``mm``/``addmm`` are a linear only when their right operand is a transposed constant."""
    if not is_transposed_constant(schema_args(node)["mat2"]):
        return "matrix product of two activations: XNNPACK runs batch matmul in fp32 only"
    return None


def _check_binary(node: Node) -> Optional[str]:
    args = schema_args(node)
    if args.get("alpha", 1) != 1:
        return "alpha != 1 is not supported by XNNPACK"
    operands = [args["self"], args["other"]]
    if not all(isinstance(a, Node) for a in operands):
        return "scalar operand was not lifted to a tensor (run transform_for_annotation)"
    if any(s is not None and len(s) > 4 for s in map(shape, operands)):
        return "XNNPACK binary ops take tensors of rank <= 4"
    return None


#: A magnitude no int8 activation can carry next to ordinary values: an attention mask's
#: ``finfo.min`` (-3.4e38), ``-inf``, or a "large negative" like -1e9 all lie past it.
EXTREME = 1e6


def _extreme_value(node: Node, depth: int = 3) -> Optional[float]:
    """A literal or constant of magnitude >= EXTREME (or non-finite) at most ``depth`` ops up.

    Masks are built as ``where(m, 0, finfo.min)``, ``masked_fill(-inf)`` or
    ``(1 - m) * finfo.min``; the extreme value is a literal argument of one of the
    few ops that make the operand, or a lifted constant.
    """
    work, seen = [(node, 0)], set()
    while work:
        current, level = work.pop()
        if current in seen or level > depth:
            continue
        seen.add(current)
        if current.op == "get_attr":
            value = constant(current.graph.owning_module, current)
            if value is not None and value.is_floating_point() and value.numel() and (
                    not torch.isfinite(value).all() or value.abs().max() >= EXTREME):
                return float(value.flatten()[value.abs().flatten().argmax()])
            continue
        for arg in (*current.args, *current.kwargs.values()):
            if isinstance(arg, float) and (arg != arg or abs(arg) >= EXTREME):
                return arg
        work.extend((n, level + 1) for n in current.all_input_nodes)
    return None


def _check_extreme_operands(node: Node) -> Optional[str]:
    """An operand built from -inf or the dtype's minimum (an attention mask) makes int8 meaningless."""
    for name, operand in schema_args(node).items():
        if isinstance(operand, Node) and (value := _extreme_value(operand)) is not None:
            return (f"operand {name!r} is built from {value:g} (an attention mask's -inf or "
                    "dtype minimum): one int8 scale cannot hold it and the ordinary values, "
                    "so the op stays float")
    return None


def _check_max_pool(node: Node) -> Optional[str]:
    args = schema_args(node)
    kernel = list(args["kernel_size"])
    stride = list(args["stride"]) or kernel
    kernel = kernel * 2 if len(kernel) == 1 else kernel
    stride = stride * 2 if len(stride) == 1 else stride
    if any(s > k for s, k in zip(stride, kernel)):
        return f"XNNPACK max_pool2d needs stride <= kernel (stride {stride}, kernel {kernel})"
    return None


def spatial_mean_reason(node: Node) -> Optional[str]:
    """Why a ``mean.dim`` is not over the two spatial dims of a 4-D tensor, or None if it is."""
    args = schema_args(node)
    in_shape = shape(args["self"])
    if in_shape is None or len(in_shape) != 4:
        return "XNNPACK averages only 4-D tensors in int8"
    if sorted(d % 4 for d in args["dim"] or ()) != [2, 3]:
        return "XNNPACK int8 mean runs only over the two spatial dims (2, 3)"
    return None


def _check_global_mean(node: Node) -> Optional[str]:
    """XNNPACK's int8 mean is global average pooling: the two spatial dims of a 4-D tensor, keepdim."""
    args = schema_args(node)
    if "output_size" in args:
        if list(args["output_size"]) not in ([1, 1], [1]):
            return "XNNPACK runs adaptive_avg_pool2d in int8 only to a 1x1 output"
        return None
    reason = spatial_mean_reason(node)
    if reason is not None:
        return reason
    if not args["keepdim"]:
        return "XNNPACK int8 mean needs keepdim=True (the quantizer rewrites this before annotating)"
    return None


def _check_constant_mode(node: Node) -> Optional[str]:
    mode = schema_args(node).get("mode", "constant")
    return None if mode == "constant" else f"XNNPACK pads only with a constant (mode {mode!r})"


def _check_pad_sizes(node: Node) -> Optional[str]:
    if any(p < 0 for p in schema_args(node)["pad"]):
        return "XNNPACK does not crop: negative pad sizes"
    return None


# --------------------------------------------------------------------------- reference args


def _constant_pad_args(args: Mapping, weight_shape: Optional[tuple]):
    """``pad(x, pad, "constant", value=None)`` in ``constant_pad_nd``'s terms (value 0.0)."""
    value = args.get("value")
    return {**args, "value": 0.0 if value is None else float(value)}


def _numeric_padding(args: Mapping, weight_shape: Optional[tuple]):
    """``conv*d.padding``: spell ``"valid"``/``"same"`` as the symmetric padding list.

    ``"same"`` pads ``dilation·(k−1)`` in total per spatial dim; torch puts an
    odd remainder on the far side, which a symmetric padding list cannot say,
    so that case has no reference.
    """
    if weight_shape is None:
        return "padding given as a string and the weight shape is unknown"
    kernel = list(weight_shape[2:])
    dilation = list(args["dilation"]) * (len(kernel) if len(args["dilation"]) == 1 else 1)
    if args["padding"] == "valid":
        padding = [0] * len(kernel)
    else:
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        if any(t % 2 for t in totals) or any(s != 1 for s in args["stride"]):
            return f"padding='same' with kernel {kernel}, dilation {dilation} is asymmetric"
        padding = [t // 2 for t in totals]
    return {**args, "padding": padding}


# --------------------------------------------------------------------------- the table

_ACT = Arg("input", Role.ACT)
_GEMM = (_ACT, Arg("weight", Role.WEIGHT, axis=0), Arg("bias", Role.BIAS))
_BINARY = (Arg("self", Role.ACT), Arg("other", Role.ACT))
_SELF = (Arg("self", Role.ACT),)
_CONV_PARAMS = (("stride", "stride"), ("padding", "padding"), ("dilation", "dilation"),
                ("groups", "groups"))
_POOL_PARAMS = (("kernel_size", "kernel_size"), ("stride", "stride"), ("padding", "padding"),
                ("dilation", "dilation"), ("ceil_mode", "ceil_mode"))
_ON_CODES = Reference(kernel=None, requantizes=False)


def _shared(name: str, targets, *, args=_SELF, partitioner=(), edge_ops=(), checks=(),
            reference: Reference = _ON_CODES, **kw) -> OpRecord:
    """A record for an op that keeps its input's qparams."""
    return OpRecord(name, (Spelling(frozenset(targets), args),), QParams.SHARED, checks=checks,
                    reference=reference, partitioner=partitioner, edge_ops=edge_ops, **kw)


def _float(name: str, targets, reason: str, *, partitioner=(), edge_ops=(),
           delegated: object = True) -> OpRecord:
    """A record for an op XNNPACK runs in fp32 only (inside the delegate unless ``delegated`` says)."""
    return OpRecord(name, (Spelling(frozenset(targets)),), QParams.FLOAT, reason=reason,
                    no_reference="it runs in float (XNNPACK has no int8 kernel for it)",
                    partitioner=partitioner, edge_ops=edge_ops, delegated=delegated)


def _table(name: str, targets, kernel: str, *, params=(), partitioner=(), edge_ops=()) -> OpRecord:
    """A record for an int8 activation XNNPACK computes from a lookup table: it requantizes."""
    return OpRecord(name, (Spelling(frozenset(targets), _SELF),), QParams.OWN,
                    reference=Reference(kernel, params=params, fuses_activation=False),
                    partitioner=partitioner, edge_ops=edge_ops)


_NOT_A_LINEAR = (_check_unit_scales, _check_linear_weight)

RECORDS: tuple = (
    OpRecord(
        "linear",
        (
            Spelling(frozenset({aten.linear.default}), _GEMM),
            Spelling(frozenset({aten.addmm.default}),
                     (Arg("mat1", Role.ACT, through=VIEWS),
                      Arg("mat2", Role.WEIGHT, axis=0, transposed=True), Arg("self", Role.BIAS)),
                     checks=_NOT_A_LINEAR),
            Spelling(frozenset({aten.mm.default}),
                     (Arg("self", Role.ACT, through=VIEWS),
                      Arg("mat2", Role.WEIGHT, axis=0, transposed=True)),
                     checks=_NOT_A_LINEAR),
        ),
        QParams.OWN,
        fused=CLAMPS,
        dynamic=True,
        output_through=VIEWS,
        reference=Reference("quantized_linear"),
        partitioner=("LinearConfig", "AddmmConfig", "MMConfig"),
        edge_ops=("linear.default", "addmm.default", "mm.default"),
    ),
    OpRecord(
        "conv",
        (
            Spelling(frozenset({aten.conv1d.default, aten.conv2d.default,
                                aten.conv1d.padding, aten.conv2d.padding}), _GEMM),
            Spelling(frozenset({aten.convolution.default}), _GEMM,
                     checks=(_check_output_padding,)),
        ),
        QParams.OWN,
        fused=CLAMPS,
        checks=(_check_conv_rank,),
        applies=lambda node: not _is_transposed_convolution(node),
        dynamic=True,
        dynamic_checks=(_check_dynamic_conv,),
        folds=BATCH_NORMS,
        reference=Reference("quantized_conv", params=_CONV_PARAMS, rewrite_args={
            aten.conv1d.padding: _numeric_padding, aten.conv2d.padding: _numeric_padding}),
        partitioner=("SafeConvolutionConfig",),
        edge_ops=("convolution.default",),
    ),
    OpRecord(
        "conv_transpose",
        (Spelling(frozenset({aten.conv_transpose1d.default, aten.conv_transpose2d.input,
                             aten.convolution.default}),
                  (_ACT, Arg("weight", Role.WEIGHT, axis=1), Arg("bias", Role.BIAS))),),
        QParams.OWN,
        fused=CLAMPS,
        checks=(_check_conv_transpose_groups, _check_conv_rank, _check_deconvolution_padding),
        applies=_is_transposed_convolution,
        no_reference="transposed convolution has no reference kernel yet; the delegate's "
                     "output is checked against the converted graph only",
        partitioner=("SafeConvolutionConfig",),
        edge_ops=("convolution.default",),
    ),
    OpRecord(
        "add",
        (Spelling(frozenset({aten.add.Tensor, aten.add_.Tensor}), _BINARY),),
        QParams.OWN,
        fused=RELU,  # XNNPACK's add fuses relu only; a following hardtanh shares instead
        checks=(_check_binary, _check_extreme_operands),
        scalar_forms={aten.add.Scalar: aten.add.Tensor},
        reference=Reference("quantized_add"),
        partitioner=("AddConfig",),
        edge_ops=("add.Tensor",),
    ),
    OpRecord(
        "sub",
        (Spelling(frozenset({aten.sub.Tensor, aten.sub_.Tensor}), _BINARY),),
        QParams.OWN,
        checks=(_check_binary, _check_extreme_operands),
        scalar_forms={aten.sub.Scalar: aten.sub.Tensor},
        reference=Reference("quantized_sub"),
        partitioner=("SubConfig",),
        edge_ops=("sub.Tensor",),
    ),
    OpRecord(
        "mul",
        (Spelling(frozenset({aten.mul.Tensor, aten.mul_.Tensor}), _BINARY),),
        QParams.OWN,
        checks=(_check_binary, _check_extreme_operands),
        scalar_forms={aten.mul.Scalar: aten.mul.Tensor},
        reference=Reference("quantized_mul"),
        partitioner=("MulConfig",),
        edge_ops=("mul.Tensor",),
    ),
    _shared("view", {
        aten.view.default, aten.reshape.default, aten._unsafe_view.default,
        aten.flatten.using_ints, aten.unflatten.int, aten.view_copy.default,
    }, partitioner=("ViewCopyConfig",), edge_ops=("view_copy.default",)),
    # XNNPACK's partitioner claims squeeze_copy nowhere and unsqueeze_copy only on the last
    # dim; the lowering respells both as the view they are (``RewriteSqueezeAsView``).
    _shared("squeeze", {
        aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default, aten.unsqueeze.default,
        aten.squeeze_copy.dim, aten.squeeze_copy.dims, aten.squeeze_copy.default,
        aten.unsqueeze_copy.default,
    }, partitioner=("ViewCopyConfig",), edge_ops=("view_copy.default",)),
    _shared("permute", {aten.permute.default, aten.transpose.int, aten.t.default,
                        aten.permute_copy.default},
            partitioner=("PermuteConfig",), edge_ops=("permute_copy.default",)),
    _shared("slice", {aten.slice.Tensor, aten.slice_copy.Tensor},
            partitioner=("SliceCopyConfig",), edge_ops=("slice_copy.Tensor",)),
    _shared("clone", {aten.clone.default, aten.contiguous.default},
            partitioner=("CloneConfig", "CloneDimOrderConfig"),
            edge_ops=("clone.default", "_clone_dim_order.default")),
    _shared("cat", {aten.cat.default, aten.concat.default},
            args=(Arg("tensors", Role.ACT, is_list=True),),
            partitioner=("CatConfig",), edge_ops=("cat.default",)),
    OpRecord(
        "max_pool",
        (Spelling(frozenset({aten.max_pool2d.default}), _SELF),
         Spelling(frozenset({aten.max_pool2d_with_indices.default}), _SELF, output_index=0)),
        QParams.SHARED,
        checks=(_check_max_pool,),
        reference=Reference("quantized_max_pool2d", params=_POOL_PARAMS, requantizes=False),
        partitioner=("MaxPool2dConfig",),
        edge_ops=("max_pool2d.default",),
    ),
    _shared("mean", {aten.mean.dim, aten.adaptive_avg_pool2d.default,
                     aten._adaptive_avg_pool2d.default},
            checks=(_check_global_mean,),
            reference=Reference("quantized_mean_hw", fuses_activation=False),
            partitioner=("MeanDimConfig",), edge_ops=("mean.dim",)),
    # Standalone clamps are exact in int8 when they keep their input's qparams.
    OpRecord(
        "relu",
        (Spelling(RELU, _SELF, bounds=(0.0, None)),),
        QParams.SHARED,
        reference=Reference("quantized_clamp", requantizes=False, fuses_activation=False),
        partitioner=("ReLUConfig",),
        edge_ops=("relu.default",),
    ),
    OpRecord(
        "hardtanh",
        (Spelling(HARDTANH, _SELF, bounds=("min_val", "max_val")),
         Spelling(frozenset({aten.relu6.default, aten.relu6_.default}), _SELF, bounds=(0.0, 6.0)),
         Spelling(frozenset({aten.clamp.default}), _SELF, bounds=("min", "max"))),
        QParams.SHARED,
        reference=Reference("quantized_clamp", requantizes=False, fuses_activation=False),
        partitioner=("HardtanhConfig", "ClampConfig"),
        edge_ops=("hardtanh.default", "clamp.default"),
    ),
    # int8 activations: XNNPACK runs them as lookup tables (leaky_relu in fixed point);
    # ExecuTorch's configs claim them in fp32 only, xnnquant's (passes/partitioner_configs.py)
    # in int8 too.
    _table("sigmoid", {aten.sigmoid.default, aten.sigmoid_.default}, "quantized_sigmoid",
           partitioner=("Int8SigmoidConfig",), edge_ops=("sigmoid.default",)),
    _table("tanh", {aten.tanh.default, aten.tanh_.default}, "quantized_tanh",
           partitioner=("Int8TanhConfig",), edge_ops=("tanh.default",)),
    # XNNPACK's gelu is the erf form; approximate="tanh" runs as it too (kernels/lut.py).
    _table("gelu", {aten.gelu.default, aten.gelu_.default}, "quantized_gelu",
           partitioner=("Int8GeluConfig",), edge_ops=("gelu.default",)),
    # The core IR decomposes hardswish; RecomposeHardswish puts it back before annotation.
    _table("hardswish", {aten.hardswish.default, aten.hardswish_.default}, "quantized_hardswish",
           partitioner=("Int8HardswishConfig",), edge_ops=("hardswish.default",)),
    _table("leaky_relu", {aten.leaky_relu.default, aten.leaky_relu_.default},
           "quantized_leaky_relu", params=(("negative_slope", "negative_slope"),),
           partitioner=("Int8LeakyReLUConfig",), edge_ops=("leaky_relu.default",)),
    # Pad only moves codes (shared qparams); XNNPACK fuses it into a conv that follows.
    OpRecord(
        "pad",
        (Spelling(frozenset({aten.constant_pad_nd.default}), _SELF),
         Spelling(frozenset({aten.pad.default}), _SELF, checks=(_check_constant_mode,))),
        QParams.SHARED,
        checks=(_check_pad_sizes,),
        reference=Reference("quantized_pad", params=(("pad", "pad"), ("value", "value")),
                            requantizes=False, fuses_activation=False, input_qparams=True,
                            rewrite_args={aten.pad.default: _constant_pad_args}),
        partitioner=("Int8ConstantPadConfig",),
        edge_ops=("constant_pad_nd.default",),
    ),
    _float("softmax", {aten.softmax.int, aten._softmax.default},
           "XNNPACK runs softmax in fp32 only (its qs8 softmax is rejected at load)",
           partitioner=("SoftmaxConfig",), edge_ops=("_softmax.default",)),
    _float("avg_pool2d", {aten.avg_pool2d.default},
           "XNNPACK runs avg_pool2d in fp32 only (its qs8 average pooling is rejected)",
           partitioner=("AvgPoolingConfig",), edge_ops=("avg_pool2d.default",)),
    # No config claims native_layer_norm; DecomposeLayerNorm (a pre-lowering pass) writes it as
    # fp32 GEMMs and elementwise ops, which are claimed.
    _float("layer_norm", {aten.layer_norm.default, aten.native_layer_norm.default},
           "XNNPACK has no int8 layer norm; it runs in fp32 inside the delegate (DecomposeLayerNorm)",
           partitioner=("LinearConfig", "SubConfig", "MulConfig", "AddConfig",
                        "ReciprocalSquareRootConfig"),
           edge_ops=("linear.default", "sub.Tensor", "mul.Tensor", "add.Tensor", "rsqrt.default")),
    _float("bmm", {aten.bmm.default, aten.matmul.default},
           "XNNPACK runs batch matmul in fp32 only (its qs8 x qs8 bmm is rejected)",
           partitioner=("BMMConfig",), edge_ops=("bmm.default",)),
)

#: Nodes that carry no computation of their own and are not reported as ops.
BOOKKEEPING = frozenset({operator.getitem, aten.sym_size.int})

_BY_NAME = {r.name: r for r in RECORDS}
_BY_TARGET: dict = {}
for _record in RECORDS:
    for _target in _record.targets:
        _BY_TARGET.setdefault(_target, []).append(_record)


def record(name: str) -> OpRecord:
    """The record called ``name``."""
    return _BY_NAME[name]


def record_for(node: Node) -> Optional[OpRecord]:
    """The record that covers ``node`` (its target, and its ``applies`` test), if any."""
    if node.op != "call_function":
        return None
    for candidate in _BY_TARGET.get(node.target, ()):
        if candidate.applies(node):
            return candidate
    return None


def records_with(qparams: QParams) -> tuple:
    """The records whose qparams rule is ``qparams``, in table order."""
    return tuple(r for r in RECORDS if r.qparams is qparams)


def targets_of(records) -> frozenset:
    """Every ATen target of ``records``."""
    return frozenset().union(*(r.targets for r in records))


#: Ops that keep their input's qparams.
SHARED_TARGETS = targets_of(records_with(QParams.SHARED))
#: Records that only move or select int8 codes (no requantization, no clamp): XNNPACK
#: refuses them when their input and output qparams differ.
DATA_MOVEMENT = tuple(
    r for r in records_with(QParams.SHARED)
    if r.reference is not None and not r.reference.requantizes
    and all(s.bounds is None for s in r.spellings))
#: Ops the quantizer fuses an activation into (``RewriteClamp`` respells clamps after them),
#: with the ops between such an op and its activation (the view after a 3-D linear).
FUSING_TARGETS = targets_of(r for r in RECORDS if HARDTANH <= r.fused)
FUSING_TAILS = frozenset().union(*(r.output_through for r in RECORDS if HARDTANH <= r.fused))
#: target → (lower, upper) bound spec, for every clamp-like activation spelling.
ACTIVATION_BOUNDS: dict = {
    t: s.bounds for r in RECORDS for s in r.spellings if s.bounds is not None for t in s.targets
}
#: Overloads with a Python-number operand → the tensor overload (``LiftScalarOperands``).
SCALAR_FORMS: dict = {k: v for r in RECORDS for k, v in r.scalar_forms.items()}
LIFTED_TARGETS = targets_of(r for r in RECORDS if r.scalar_forms) | frozenset(SCALAR_FORMS)
