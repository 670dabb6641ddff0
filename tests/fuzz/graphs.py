"""Random small graphs for the fuzzer: a hypothesis strategy that draws a graph as data, and its module.

A graph is a :class:`GraphSpec`: the input shape and a tuple of :class:`Layer`
specs.  Each layer reads one or two earlier values (value 0 is the model input,
value ``i + 1`` is layer ``i``'s output), so the specs describe chains and DAGs.
:class:`FuzzNet` builds the ``nn.Module`` from the spec; its ``forward`` walks
the layers in order, which ``torch.export`` traces into one static graph.

Specs are plain frozen data so that hypothesis can shrink them and print them,
and a failing one can be pasted into ``test_regressions.py`` as a literal.

The strategy tracks each value's shape while drawing, and offers only the ops
and parameters that are valid PyTorch for that shape: an op that is not offered
at some rank is not filtered out after drawing, it is just not a valid graph
(each such restriction says why next to the op).  Everything XNNPACK or
xnnquant might refuse (strides larger than kernels, grouped transposed convs,
rank-5 tensors, ops with no record) stays in: refusing it clearly is the
property under test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st

#: Keep tensors tiny: one example must cost seconds, not tens of seconds.
MAX_DIM = 12
MAX_NUMEL = 1536
MAX_LAYERS = 6


@dataclass(frozen=True)
class Layer:
    """One op of a drawn graph.

    Attributes:
        op: a key of :data:`OPS`.
        src: the index of the value it reads (0 = the model input).
        other: the second operand's value index, for binary ops, cat and matmul.
        params: ``(name, value)`` pairs, sorted, so the spec stays hashable.
    """

    op: str
    src: int
    other: Optional[int] = None
    params: tuple = ()

    def p(self, name, default=None):
        return dict(self.params).get(name, default)


@dataclass(frozen=True)
class GraphSpec:
    """A drawn graph: input shape, layers, and which values the model returns."""

    input_shape: tuple
    layers: tuple
    outputs: tuple = (-1,)
    seed: int = 0

    def ops(self) -> list:
        return [layer.op for layer in self.layers]


# --------------------------------------------------------------------------- shape rules


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _convt_out(size: int, k: int, s: int, p: int, d: int, op: int) -> int:
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


def _pool_out(size: int, k: int, s: int, p: int, ceil: bool) -> int:
    out = (size + 2 * p - k + ((s - 1) if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= size + p:  # torch drops a last window that starts in the padding
        out -= 1
    return out


def _ok(shape) -> bool:
    return all(1 <= d <= MAX_DIM * 2 for d in shape) and math.prod(shape) <= MAX_NUMEL


def _broadcast(a: tuple, b: tuple) -> Optional[tuple]:
    if len(a) != len(b):
        return None
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y))
    return tuple(out)


# --------------------------------------------------------------------------- drawing ops
#
# Each drawer takes hypothesis' ``draw``, the value shapes so far and the value it reads,
# and returns (params, other, output shape), or None when the op has no valid form for
# that input.  Only valid PyTorch is drawn; anything PyTorch accepts may be drawn.


def _divisors(n: int) -> list:
    return [g for g in range(1, n + 1) if n % g == 0]


def _draw_conv(draw, shapes, src, *, transposed: bool):
    shape = shapes[src]
    rank = len(shape)
    cin, spatial = shape[1], shape[2:]
    groups = draw(st.sampled_from(_divisors(cin)))
    mult = draw(st.integers(1, 3))
    cout = groups * mult
    if cout > 8 and groups != cin:
        cout = groups
    k = draw(st.integers(1, 3))
    s = draw(st.integers(1, 2))
    d = draw(st.sampled_from([1, 1, 2]))
    bias = draw(st.booleans())
    if transposed:
        p = draw(st.integers(0, max(0, d * (k - 1))))
        op_ = draw(st.integers(0, max(s, d) - 1))
        out = tuple(_convt_out(n, k, s, p, d, op_) for n in spatial)
        params = dict(cout=cout, k=k, stride=s, padding=p, dilation=d, groups=groups,
                      output_padding=op_, bias=bias)
    else:
        same = s == 1 and draw(st.integers(0, 5)) == 0
        p = "same" if same else draw(st.integers(0, k))
        out = tuple(n if same else _conv_out(n, k, s, p, d) for n in spatial)
        params = dict(cout=cout, k=k, stride=s, padding=p, dilation=d, groups=groups, bias=bias)
    out_shape = (shape[0], cout, *out)
    if not _ok(out_shape) or len(out_shape) != rank:
        return None
    return params, None, out_shape


def _draw_conv_any(transposed):
    return lambda draw, shapes, src: _draw_conv(draw, shapes, src, transposed=transposed)


def _draw_linear(draw, shapes, src):
    shape = shapes[src]
    out = draw(st.integers(1, 12))
    out_shape = (*shape[:-1], out)
    return (dict(out=out, bias=draw(st.booleans())), None, out_shape) if _ok(out_shape) else None


def _draw_max_pool(draw, shapes, src):
    shape = shapes[src]
    k = draw(st.integers(1, 3))
    s = draw(st.integers(1, 3))  # stride > kernel is drawn: the quantizer must refuse it clearly
    p = draw(st.integers(0, k // 2))
    ceil = draw(st.booleans())
    out = tuple(_pool_out(n, k, s, p, ceil) for n in shape[2:])
    if any(o < 1 for o in out):
        return None
    return dict(k=k, stride=s, padding=p, ceil=ceil), None, (*shape[:2], *out)


def _draw_avg_pool(draw, shapes, src):
    shape = shapes[src]
    k = draw(st.integers(1, 2))
    out = tuple(_pool_out(n, k, k, 0, False) for n in shape[2:])
    return (dict(k=k), None, (*shape[:2], *out)) if all(o >= 1 for o in out) else None


def _draw_mean(draw, shapes, src):
    shape = shapes[src]
    rank = len(shape)
    dims = draw(st.sampled_from(
        [(2, 3), (-1, -2), (3, 2), (1,), (-1,), (1, 2)] if rank == 4 else [(-1,), (1,), (0,)]))
    dims = tuple(d for d in dims if -rank <= d < rank)
    if not dims or len({d % rank for d in dims}) != len(dims):
        return None
    keepdim = draw(st.booleans())
    norm = {d % rank for d in dims}
    out = tuple(1 if i in norm else n for i, n in enumerate(shape) if keepdim or i not in norm)
    return (dict(dims=dims, keepdim=keepdim), None, out) if out else None


def _draw_adaptive_avg(draw, shapes, src):
    size = draw(st.sampled_from([1, 1, 2]))
    shape = shapes[src]
    return dict(size=size), None, (*shape[:2], size, size)


def _draw_pad(draw, shapes, src):
    shape = shapes[src]
    pads = tuple(draw(st.integers(0, 2)) for _ in range(2 if len(shape) < 4 else 4))
    value = draw(st.sampled_from([0.0, 0.0, 1.5]))
    out = list(shape)
    for i, j in enumerate(range(len(shape) - 1, -1, -1)):
        if 2 * i + 1 < len(pads):
            out[j] += pads[2 * i] + pads[2 * i + 1]
    out = tuple(out)
    return (dict(pads=pads, value=value), None, out) if _ok(out) else None


def _draw_permute(draw, shapes, src):
    shape = shapes[src]
    perm = tuple(draw(st.permutations(range(len(shape)))))
    return dict(perm=perm), None, tuple(shape[i] for i in perm)


def _draw_transpose(draw, shapes, src):
    shape = shapes[src]
    a, b = draw(st.lists(st.integers(0, len(shape) - 1), min_size=2, max_size=2, unique=True))
    out = list(shape)
    out[a], out[b] = out[b], out[a]
    return dict(a=a, b=b), None, tuple(out)


def _draw_slice(draw, shapes, src):
    shape = shapes[src]
    dim = draw(st.integers(0, len(shape) - 1))
    n = shape[dim]
    start = draw(st.integers(0, n - 1))
    end = draw(st.integers(start + 1, n))
    step = draw(st.sampled_from([1, 1, 2]))
    out = list(shape)
    out[dim] = len(range(start, end, step))
    return dict(dim=dim, start=start, end=end, step=step), None, tuple(out)


def _draw_squeeze(draw, shapes, src):
    shape = shapes[src]
    ones = [i for i, n in enumerate(shape) if n == 1]
    if not ones or len(shape) == 1:
        return None
    dim = draw(st.sampled_from(ones))
    return dict(dim=dim), None, tuple(n for i, n in enumerate(shape) if i != dim)


def _draw_unsqueeze(draw, shapes, src):
    # Up to rank 5: XNNPACK's binary ops stop at rank 4 and the quantizer must say so.
    shape = shapes[src]
    dim = draw(st.integers(0, len(shape)))
    return dict(dim=dim), None, (*shape[:dim], 1, *shape[dim:])


def _draw_reshape(draw, shapes, src):
    shape = shapes[src]
    numel = math.prod(shape)
    kind = draw(st.sampled_from(["flatten", "merge", "split", "view"]))
    if kind == "flatten":
        out = (shape[0], numel // shape[0])
    elif kind == "merge" and len(shape) >= 3:
        i = draw(st.integers(1, len(shape) - 2))
        out = (*shape[:i], shape[i] * shape[i + 1], *shape[i + 2:])
    elif kind == "split":
        i = draw(st.integers(0, len(shape) - 1))
        factors = [f for f in _divisors(shape[i]) if 1 < f < shape[i]]
        if not factors:
            return None
        f = draw(st.sampled_from(factors))
        out = (*shape[:i], f, shape[i] // f, *shape[i + 1:])
    else:
        out = (-1, shape[-1]) if len(shape) > 1 else (numel,)
        out = (numel // shape[-1], shape[-1]) if len(shape) > 1 else out
    if len(out) > 5:
        return None
    return dict(shape=tuple(out), method=draw(st.sampled_from(["view", "reshape", "flatten"]))
                if kind == "flatten" else draw(st.sampled_from(["view", "reshape"]))), None, tuple(out)


def _draw_binary(draw, shapes, src):
    shape = shapes[src]
    kind = draw(st.sampled_from(["value", "value", "scalar", "constant"]))
    if kind == "value":
        partners = [i for i, s in enumerate(shapes) if _broadcast(shape, s) is not None]
        other = draw(st.sampled_from(partners))  # src itself is always a partner: x + x
        out = _broadcast(shape, shapes[other])
        swap = draw(st.booleans())
        return dict(kind=kind, swap=swap), other, out
    if kind == "scalar":
        value = draw(st.sampled_from([0.5, -1.25, 2.0, 3]))
        return dict(kind=kind, value=value, swap=draw(st.booleans())), None, shape
    # A constant tensor of a shape that broadcasts against the value: all dims, or 1s.
    cshape = tuple(n if draw(st.booleans()) else 1 for n in shape)
    return dict(kind=kind, cshape=cshape, swap=draw(st.booleans())), None, shape


def _draw_cat(draw, shapes, src):
    shape = shapes[src]
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    d = dim % len(shape)
    partners = [i for i, s in enumerate(shapes)
                if len(s) == len(shape) and all(a == b for j, (a, b) in enumerate(zip(s, shape)) if j != d)]
    other = draw(st.sampled_from(partners))
    out = list(shape)
    out[d] += shapes[other][d]
    out = tuple(out)
    return (dict(dim=dim), other, out) if _ok(out) else None


def _draw_matmul(draw, shapes, src):
    # x @ yᵀ of two activations: XNNPACK runs it in fp32 only, the quantizer must leave it float.
    shape = shapes[src]
    partners = [i for i, s in enumerate(shapes) if s == shape]
    other = draw(st.sampled_from(partners))
    out = (*shape[:-1], shape[-2])
    return (dict(), other, out) if _ok(out) else None


def _draw_clamp(draw, shapes, src):
    lo = draw(st.sampled_from([None, -1.0, 0.0, 0.5]))
    hi = draw(st.sampled_from([None, 1.0, 2.0, 6.0]))
    if lo is None and hi is None:
        lo = 0.0
    if lo is not None and hi is not None and hi <= lo:
        hi = lo + 1.0
    return dict(lo=lo, hi=hi), None, shapes[src]


def _draw_hardtanh(draw, shapes, src):
    lo, hi = draw(st.sampled_from([(-1.0, 1.0), (0.0, 6.0), (0.0, 1.0), (-2.0, 0.5)]))
    return dict(lo=lo, hi=hi), None, shapes[src]


def _draw_softmax(draw, shapes, src):
    shape = shapes[src]
    return dict(dim=draw(st.integers(-len(shape), len(shape) - 1))), None, shape


def _draw_cumsum(draw, shapes, src):
    shape = shapes[src]
    return dict(dim=draw(st.integers(0, len(shape) - 1))), None, shape


def _same(draw, shapes, src):
    return {}, None, shapes[src]


@dataclass(frozen=True)
class OpDef:
    """How to draw one op: the ranks it is valid at, and its drawer."""

    ranks: frozenset
    draw: object


_ANY = frozenset({1, 2, 3, 4, 5})
OPS: dict = {
    # Ops with a record in the op table.
    "conv1d": OpDef(frozenset({3}), _draw_conv_any(False)),
    "conv2d": OpDef(frozenset({4}), _draw_conv_any(False)),
    "conv_transpose1d": OpDef(frozenset({3}), _draw_conv_any(True)),
    "conv_transpose2d": OpDef(frozenset({4}), _draw_conv_any(True)),
    "linear": OpDef(frozenset({2, 3}), _draw_linear),
    "max_pool2d": OpDef(frozenset({4}), _draw_max_pool),
    "avg_pool2d": OpDef(frozenset({4}), _draw_avg_pool),
    "mean": OpDef(frozenset({2, 3, 4}), _draw_mean),
    "adaptive_avg_pool2d": OpDef(frozenset({4}), _draw_adaptive_avg),
    "add": OpDef(_ANY, _draw_binary),
    "sub": OpDef(_ANY, _draw_binary),
    "mul": OpDef(_ANY, _draw_binary),
    "cat": OpDef(_ANY, _draw_cat),
    "reshape": OpDef(_ANY, _draw_reshape),
    "permute": OpDef(frozenset({2, 3, 4, 5}), _draw_permute),
    "transpose": OpDef(frozenset({2, 3, 4, 5}), _draw_transpose),
    "slice": OpDef(_ANY, _draw_slice),
    "squeeze": OpDef(frozenset({2, 3, 4, 5}), _draw_squeeze),
    "unsqueeze": OpDef(frozenset({1, 2, 3, 4}), _draw_unsqueeze),
    "pad": OpDef(frozenset({2, 3, 4}), _draw_pad),  # constant_pad_nd over the last 1 or 2 dims
    "clone": OpDef(_ANY, _same),
    "relu": OpDef(_ANY, _same),
    "relu6": OpDef(_ANY, _same),
    "hardtanh": OpDef(_ANY, _draw_hardtanh),
    "clamp": OpDef(_ANY, _draw_clamp),
    "sigmoid": OpDef(_ANY, _same),
    "tanh": OpDef(_ANY, _same),
    "gelu": OpDef(_ANY, _same),
    "hardswish": OpDef(_ANY, _same),
    "softmax": OpDef(_ANY, _draw_softmax),
    "layer_norm": OpDef(_ANY, _same),  # over the last dim
    "matmul": OpDef(frozenset({2, 3}), _draw_matmul),
    # Ops with no record: they must stay float, with the report saying so.
    "leaky_relu": OpDef(_ANY, _same),
    "elu": OpDef(_ANY, _same),
    "abs": OpDef(_ANY, _same),
    "cumsum": OpDef(_ANY, _draw_cumsum),
}


# --------------------------------------------------------------------------- the module


class FuzzNet(nn.Module):
    """The ``nn.Module`` a :class:`GraphSpec` describes; parameters are seeded from ``spec.seed``."""

    def __init__(self, spec: GraphSpec):
        super().__init__()
        self.spec = spec
        torch.manual_seed(spec.seed)
        shapes = [tuple(spec.input_shape)]
        self.mods = nn.ModuleDict()
        for i, layer in enumerate(spec.layers):
            shapes.append(self._make(i, layer, shapes))

    def _make(self, i: int, layer: Layer, shapes: list) -> tuple:
        key, p = f"l{i}", layer.p
        shape = shapes[layer.src]
        if layer.op in ("conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"):
            cls = {"conv1d": nn.Conv1d, "conv2d": nn.Conv2d, "conv_transpose1d": nn.ConvTranspose1d,
                   "conv_transpose2d": nn.ConvTranspose2d}[layer.op]
            kw = dict(stride=p("stride"), padding=p("padding"), dilation=p("dilation"),
                      groups=p("groups"), bias=p("bias"))
            if "transpose" in layer.op:
                kw["output_padding"] = p("output_padding")
            self.mods[key] = cls(shape[1], p("cout"), p("k"), **kw)
        elif layer.op == "linear":
            self.mods[key] = nn.Linear(shape[-1], p("out"), bias=p("bias"))
        elif layer.op == "layer_norm":
            self.mods[key] = nn.LayerNorm(shape[-1])
        elif layer.op in ("add", "sub", "mul") and p("kind") == "constant":
            self.register_buffer(f"c{i}", torch.randn(p("cshape")))
        return self._apply(layer, [torch.empty(s) for s in shapes], i).shape

    def _apply(self, layer: Layer, vals: list, i: int) -> torch.Tensor:
        x, p, op = vals[layer.src], layer.p, layer.op
        other = vals[layer.other] if layer.other is not None else None
        if op in ("conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "linear", "layer_norm"):
            return self.mods[f"l{i}"](x)
        if op == "max_pool2d":
            return F.max_pool2d(x, p("k"), p("stride"), p("padding"), ceil_mode=p("ceil"))
        if op == "avg_pool2d":
            return F.avg_pool2d(x, p("k"))
        if op == "mean":
            return x.mean(p("dims"), keepdim=p("keepdim"))
        if op == "adaptive_avg_pool2d":
            return F.adaptive_avg_pool2d(x, p("size"))
        if op in ("add", "sub", "mul"):
            fn = {"add": torch.add, "sub": torch.sub, "mul": torch.mul}[op]
            y = {"value": other, "scalar": p("value"), "constant": getattr(self, f"c{i}", None)}[p("kind")]
            if p("swap") and p("kind") != "scalar":
                return fn(y, x)
            if p("swap"):  # scalar on the left: torch.rsub-like forms come from Python operators
                return {"add": lambda: y + x, "sub": lambda: y - x, "mul": lambda: y * x}[op]()
            return fn(x, y)
        if op == "cat":
            return torch.cat([x, other], dim=p("dim"))
        if op == "reshape":
            if p("method") == "flatten":
                return torch.flatten(x, 1)
            return x.view(p("shape")) if p("method") == "view" and x.is_contiguous() else x.reshape(p("shape"))
        if op == "permute":
            return x.permute(p("perm"))
        if op == "transpose":
            return x.transpose(p("a"), p("b"))
        if op == "slice":
            index = [slice(None)] * x.dim()
            index[p("dim")] = slice(p("start"), p("end"), p("step"))
            return x[tuple(index)]
        if op == "squeeze":
            return x.squeeze(p("dim"))
        if op == "unsqueeze":
            return x.unsqueeze(p("dim"))
        if op == "pad":
            return F.pad(x, p("pads"), value=p("value"))
        if op == "clone":
            return x.clone()
        if op == "hardtanh":
            return F.hardtanh(x, p("lo"), p("hi"))
        if op == "clamp":
            return torch.clamp(x, p("lo"), p("hi"))
        if op == "softmax":
            return torch.softmax(x, p("dim"))
        if op == "matmul":
            return torch.matmul(x, other.transpose(-1, -2))
        if op == "cumsum":
            return torch.cumsum(x, p("dim"))
        return {"relu": F.relu, "relu6": F.relu6, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                "gelu": F.gelu, "hardswish": F.hardswish, "leaky_relu": F.leaky_relu,
                "elu": F.elu, "abs": torch.abs}[op](x)

    def forward(self, x):
        vals = [x]
        for i, layer in enumerate(self.spec.layers):
            vals.append(self._apply(layer, vals, i))
        outs = tuple(vals[j] for j in self.spec.outputs)
        return outs[0] if len(outs) == 1 else outs


# --------------------------------------------------------------------------- the strategy

_INPUTS = {
    2: st.tuples(st.integers(1, 4), st.integers(1, 12)),
    3: st.tuples(st.integers(1, 2), st.integers(1, 6), st.integers(3, 12)),
    4: st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(3, 9), st.integers(3, 9)),
}


@st.composite
def graph_specs(draw, max_layers: int = MAX_LAYERS) -> GraphSpec:
    """A random :class:`GraphSpec`: a chain, or a DAG when an op reads an earlier value."""
    rank = draw(st.sampled_from([2, 3, 4, 4]))
    shapes = [tuple(draw(_INPUTS[rank]))]
    layers = []
    n = draw(st.integers(1, max_layers))
    for _ in range(n):
        # Mostly the newest value (a chain); sometimes an older one (a branch of a DAG).
        src = len(shapes) - 1 if draw(st.integers(0, 3)) else draw(st.integers(0, len(shapes) - 1))
        rank = len(shapes[src])
        names = sorted(k for k, v in OPS.items() if rank in v.ranks)
        op = draw(st.sampled_from(names))
        drawn = OPS[op].draw(draw, shapes, src)
        if drawn is None:
            # This op has no valid form for this input shape (e.g. a pool window larger than
            # the image); it is not a graph PyTorch can build, so the layer is not added.
            continue
        params, other, out_shape = drawn
        layers.append(Layer(op, src, other, tuple(sorted(params.items()))))
        shapes.append(tuple(out_shape))
    if not layers:
        layers.append(Layer("relu", 0))
        shapes.append(shapes[0])
    # Sometimes a second output: a value no later layer reads (the sink of another branch).
    read = {layer.src for layer in layers} | {layer.other for layer in layers}
    sinks = [i for i in range(1, len(shapes) - 1) if i not in read]
    outputs = (len(shapes) - 1,)
    if sinks and draw(st.booleans()):
        outputs = (len(shapes) - 1, draw(st.sampled_from(sinks)))
    return GraphSpec(shapes[0], tuple(layers), outputs, seed=draw(st.integers(0, 2**16)))
