"""The table pairing each quantized pattern with the reference kernel that implements it.

A *pattern* is ``dequantize → op [→ fused activation] → quantize`` in a
converted PT2E graph. The op can be spelled in either export IR; each spelling
is an :class:`Anchor` that names, by ATen schema argument, where the
activations, the weight and the bias sit and which arguments become kernel
parameters. The lowering pass (``xnnquant.passes.lower_to_reference``) reads
only this table; adding an ATen spelling is one ``Anchor`` line.

Every pattern must name a kernel registered in ``xnnquant.kernels.ops``;
:func:`check_registry` enforces it, :func:`pattern_for` and
:func:`check_references` raise :class:`MissingReferenceError` naming the op
when something lowered or about to be lowered has no reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch._ops import OpOverload

from xnnquant.kernels.ops import NAMESPACE, registered_kernels

aten = torch.ops.aten


class MissingReferenceError(LookupError):
    """A pattern or a lowered op has no reference kernel."""


@dataclass(frozen=True)
class Anchor:
    """One ATen spelling of a pattern's central op.

    Attributes:
        target: the ATen overload, e.g. ``aten.addmm.default``.
        activations: schema names of the dequantized activation inputs, in kernel order.
        weight: schema name of the weight input, or None.
        weight_transposed: the weight reaches the op through ``permute(w, [1, 0])``
            (core IR ``addmm``/``mm``); the kernel gets the untransposed ``[OC, IC]`` weight.
        bias: schema name of the float bias, or None.
        params: ``(kernel argument, schema name)`` pairs, in kernel order.
        unsupported: a hook given the normalized ``{schema name: value}`` that
            returns why this call cannot be lowered (or None when it can).
        output_index: the op returns a tuple and the pattern continues from
            ``getitem(op, output_index)`` (``max_pool2d_with_indices``).
        rewrite_args: a hook given the normalized arguments and the weight's
            shape (None if unknown) that returns the arguments in the form
            ``params`` expects (e.g. ``padding="same"`` spelled as numbers), or
            a string saying why it cannot.
    """

    target: OpOverload
    activations: tuple[str, ...]
    weight: str | None = None
    weight_transposed: bool = False
    bias: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    unsupported: Callable[[Mapping[str, object]], str | None] | None = None
    output_index: int | None = None
    rewrite_args: Callable[[Mapping[str, object], tuple[int, ...] | None],
                           Mapping[str, object] | str] | None = None


@dataclass(frozen=True)
class ReferencePattern:
    """A q/dq pattern and its reference kernel ``torch.ops.xnnquant.<kernel>``.

    Attributes:
        name: the pattern's name in reports and tests.
        kernel: the kernel's op name in the ``xnnquant`` namespace.
        anchors: the ATen spellings of the central op (both IRs).
        requantizes: False when the kernel takes no qparams because input and
            output must share them (max pooling); the pass checks they do.
        fuses_activation: a following relu/hardtanh/clamp becomes the output clamp.
        is_activation: the anchor itself is a :data:`FUSED_ACTIVATIONS` op whose
            bounds become the output clamp (a standalone activation).
    """

    name: str
    kernel: str
    anchors: tuple[Anchor, ...]
    requantizes: bool = True
    fuses_activation: bool = True
    is_activation: bool = False

    @property
    def op(self):
        """The kernel's ``torch.ops.xnnquant`` overload."""
        return getattr(getattr(torch.ops, NAMESPACE), self.kernel).default


@dataclass(frozen=True)
class FusedActivation:
    """A clamp-like activation folded into the output range.

    ``lower``/``upper`` are either a constant bound, a schema argument name
    holding it (None in the graph meaning unbounded), or None for unbounded.
    """

    target: OpOverload
    lower: float | str | None
    upper: float | str | None


def _alpha_beta_one(args: Mapping[str, object]) -> str | None:
    bad = {k: args[k] for k in ("alpha", "beta") if k in args and args[k] != 1}
    return f"scaled form {bad} has no reference (only alpha = beta = 1)" if bad else None


def _plain_convolution(args: Mapping[str, object]) -> str | None:
    if args["transposed"]:
        return "transposed convolution has no reference kernel"
    if any(args["output_padding"]):
        return "output_padding is only meaningful for transposed convolution"
    return None


def _global_spatial_mean(args: Mapping[str, object]) -> str | None:
    if "output_size" in args:
        if list(args["output_size"]) != [1, 1]:
            return f"adaptive pooling to {list(args['output_size'])}; only [1, 1] is covered"
        return None
    dims = sorted(d % 4 for d in args["dim"] or ())
    if dims != [2, 3] or not args["keepdim"]:
        return f"mean over dim={args['dim']} keepdim={args['keepdim']}; only (-1, -2) keepdim"
    return None


FUSED_ACTIVATIONS: dict[OpOverload, FusedActivation] = {
    a.target: a
    for a in (
        FusedActivation(aten.relu.default, 0.0, None),
        FusedActivation(aten.relu_.default, 0.0, None),
        FusedActivation(aten.relu6.default, 0.0, 6.0),
        FusedActivation(aten.relu6_.default, 0.0, 6.0),
        FusedActivation(aten.hardtanh.default, "min_val", "max_val"),
        FusedActivation(aten.hardtanh_.default, "min_val", "max_val"),
        FusedActivation(aten.clamp.default, "min", "max"),
    )
}

def _numeric_padding(
    args: Mapping[str, object], weight_shape: tuple[int, ...] | None
) -> Mapping[str, object] | str:
    """``conv*d.padding``: spell ``"valid"``/``"same"`` as the symmetric padding list.

    ``"same"`` pads ``dilation·(k−1)`` in total per spatial dim; torch puts an
    odd remainder on the far side, which a symmetric padding list cannot say
    (ExecuTorch adds a separate pad op there), so that case is not covered.
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


_CONV_PARAMS = (("stride", "stride"), ("padding", "padding"), ("dilation", "dilation"),
                ("groups", "groups"))
_POOL_PARAMS = (("kernel_size", "kernel_size"), ("stride", "stride"), ("padding", "padding"),
                ("dilation", "dilation"), ("ceil_mode", "ceil_mode"))
_BINARY = ("self", "other")

PATTERNS: dict[str, ReferencePattern] = {
    p.name: p
    for p in (
        ReferencePattern("linear", "quantized_linear", (
            Anchor(aten.linear.default, ("input",), weight="weight", bias="bias"),
            Anchor(aten.addmm.default, ("mat1",), weight="mat2", weight_transposed=True,
                   bias="self", unsupported=_alpha_beta_one),
            Anchor(aten.mm.default, ("self",), weight="mat2", weight_transposed=True),
        )),
        ReferencePattern("conv", "quantized_conv", (
            Anchor(aten.conv1d.default, ("input",), weight="weight", bias="bias",
                   params=_CONV_PARAMS),
            Anchor(aten.conv2d.default, ("input",), weight="weight", bias="bias",
                   params=_CONV_PARAMS),
            Anchor(aten.conv1d.padding, ("input",), weight="weight", bias="bias",
                   params=_CONV_PARAMS, rewrite_args=_numeric_padding),
            Anchor(aten.conv2d.padding, ("input",), weight="weight", bias="bias",
                   params=_CONV_PARAMS, rewrite_args=_numeric_padding),
            Anchor(aten.convolution.default, ("input",), weight="weight", bias="bias",
                   params=_CONV_PARAMS, unsupported=_plain_convolution),
        )),
        ReferencePattern("add", "quantized_add", tuple(
            Anchor(t, _BINARY, unsupported=_alpha_beta_one)
            for t in (aten.add.Tensor, aten.add_.Tensor)
        )),
        ReferencePattern("sub", "quantized_sub", tuple(
            Anchor(t, _BINARY, unsupported=_alpha_beta_one)
            for t in (aten.sub.Tensor, aten.sub_.Tensor)
        )),
        ReferencePattern("mul", "quantized_mul", tuple(
            Anchor(t, _BINARY) for t in (aten.mul.Tensor, aten.mul_.Tensor)
        )),
        ReferencePattern("max_pool2d", "quantized_max_pool2d", (
            Anchor(aten.max_pool2d.default, ("self",), params=_POOL_PARAMS),
            Anchor(aten.max_pool2d_with_indices.default, ("self",), params=_POOL_PARAMS,
                   output_index=0),
        ), requantizes=False),
        ReferencePattern("mean_hw", "quantized_mean_hw", (
            Anchor(aten.adaptive_avg_pool2d.default, ("self",), unsupported=_global_spatial_mean),
            Anchor(aten._adaptive_avg_pool2d.default, ("self",),
                   unsupported=_global_spatial_mean),
            Anchor(aten.mean.dim, ("self",), unsupported=_global_spatial_mean),
        ), fuses_activation=False),
        ReferencePattern("activation", "quantized_clamp", tuple(
            Anchor(t, ("self",)) for t in FUSED_ACTIVATIONS
        ), requantizes=False, fuses_activation=False, is_activation=True),
    )
}


# Ops that only move or select int8 codes. With identical input and output
# qparams, ``dq → op → q`` equals the op applied to the codes, so the op itself
# is the reference; between a dequantize and an anchor (or an anchor and its
# quantize) they are replayed on the int8 tensor.
SHARED_QPARAMS_OPS: frozenset[OpOverload] = frozenset({
    aten.view.default,
    aten.reshape.default,
    aten._unsafe_view.default,
    aten.permute.default,
    aten.transpose.int,
    aten.t.default,
    aten.squeeze.dim,
    aten.squeeze.dims,
    aten.unsqueeze.default,
    aten.flatten.using_ints,
    aten.slice.Tensor,
    aten.clone.default,
})

ANCHORS: dict[OpOverload, tuple[ReferencePattern, Anchor]] = {
    anchor.target: (pattern, anchor)
    for pattern in PATTERNS.values()
    for anchor in pattern.anchors
}


def pattern_for(target) -> tuple[ReferencePattern, Anchor]:
    """The pattern and anchor for an ATen overload.

    Raises:
        MissingReferenceError: naming ``target`` when no reference kernel covers it.
    """
    try:
        return ANCHORS[target]
    except KeyError:
        raise MissingReferenceError(
            f"{target} has no reference kernel; covered ops: "
            + ", ".join(sorted(str(t) for t in ANCHORS))
        ) from None


def check_registry() -> None:
    """Fail if a pattern names a kernel that was never registered.

    Raises:
        MissingReferenceError: naming the pattern and the missing kernel.
    """
    kernels = registered_kernels()
    for pattern in PATTERNS.values():
        if pattern.kernel not in kernels:
            raise MissingReferenceError(
                f"pattern {pattern.name!r} names kernel {NAMESPACE}::{pattern.kernel}, "
                "which has no registered reference implementation"
            )


def check_references(gm: torch.fx.GraphModule) -> None:
    """Fail if ``gm`` calls an ``xnnquant`` op without a registered reference kernel.

    Raises:
        MissingReferenceError: naming the first such op and its node.
    """
    kernels = registered_kernels()
    for node in gm.graph.nodes:
        target = node.target
        if node.op != "call_function" or not isinstance(target, OpOverload):
            continue
        if target.namespace == NAMESPACE and target._schema.name.split("::")[-1] not in kernels:
            raise MissingReferenceError(
                f"node {node.name} calls {target}, which has no registered reference kernel"
            )
