"""Read a ``.pte`` file without running or tracing anything: its methods, delegates, ops and qparams.

:func:`inspect_pte` parses the ExecuTorch program flatbuffer with ExecuTorch's
own reader (``executorch.exir._serialize``), and each XNNPACK delegate's
payload with the XNNPACK flatbuffer schema that ships with ExecuTorch, through
the same ``flatc`` ExecuTorch serializes with.  Nothing is loaded into a
runtime and no torch graph is built, so a file that would not load can still be
looked at.  ``xnnquant inspect`` prints the result.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional


class PteFormatError(ValueError):
    """A file that is not an ExecuTorch program."""


@dataclass
class TensorInfo:
    """An input or output of a method: dtype name (``float32``) and sizes."""

    dtype: str
    sizes: list

    def __str__(self) -> str:
        return f"{self.dtype}{list(self.sizes)}"


@dataclass
class DelegateInfo:
    """One delegate blob: backend id, payload size, and for XNNPACK what is inside."""

    backend: str
    payload_bytes: int
    nodes: dict = field(default_factory=dict)  # XNNPACK node type → count
    values: dict = field(default_factory=dict)  # XNNPACK value datatype → count
    per_tensor: list = field(default_factory=list)  # (scale, zero point) of per-tensor values
    per_channel: list = field(default_factory=list)  # (channels, min scale, max scale) of per-channel values


@dataclass
class MethodInfo:
    name: str
    inputs: list
    outputs: list
    delegates: list
    ops_outside: dict  # "aten::add.out" → number of kernel calls


@dataclass
class PteSummary:
    """What :func:`inspect_pte` found; ``str()`` gives the text ``xnnquant inspect`` prints."""

    path: str
    size: int
    methods: list
    constant_bytes: int  # the program's constant buffer (tensors of ops outside delegates)
    named_data_bytes: int  # named data: the delegates' weights and per-channel scales

    @property
    def fully_delegated(self) -> bool:
        return all(not m.ops_outside for m in self.methods)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["fully_delegated"] = self.fully_delegated
        return data

    def __str__(self) -> str:
        lines = [f"{self.path}: {self.size} bytes ({self.named_data_bytes} bytes of delegate weights, "
                 f"{self.constant_bytes} bytes of other constants)"]
        for m in self.methods:
            lines.append(f"method {m.name}: inputs {', '.join(map(str, m.inputs)) or 'none'}; "
                         f"outputs {', '.join(map(str, m.outputs)) or 'none'}")
            for i, d in enumerate(m.delegates):
                lines.append(f"  delegate {i}: {d.backend}, {d.payload_bytes} bytes")
                if d.nodes:
                    lines.append("    nodes: " + ", ".join(f"{k}={v}" for k, v in d.nodes.items()))
                if d.values:
                    lines.append("    values: " + ", ".join(f"{k}={v}" for k, v in d.values.items()))
                lines.append("    qparams: " + _qparams_summary(d))
            if m.ops_outside:
                lines.append("  ops outside delegates: "
                             + ", ".join(f"{k} x{v}" for k, v in m.ops_outside.items()))
            else:
                lines.append("  ops outside delegates: none")
        return "\n".join(lines)


def _qparams_summary(d: DelegateInfo) -> str:
    parts = []
    if d.per_tensor:
        scales = [s for s, _ in d.per_tensor]
        zps = [z for _, z in d.per_tensor]
        parts.append(f"{len(d.per_tensor)} per-tensor (scale {min(scales):.3g}..{max(scales):.3g}, "
                     f"zero point {min(zps)}..{max(zps)})")
    if d.per_channel:
        known = [(lo, hi) for _, lo, hi in d.per_channel if lo is not None]
        channels = sum(c for c, _, _ in d.per_channel)
        text = f"{len(d.per_channel)} per-channel ({channels} channels"
        if known:
            text += f", scale {min(lo for lo, _ in known):.3g}..{max(hi for _, hi in known):.3g}"
        parts.append(text + ")")
    return "; ".join(parts) or "none (no quantized values)"


_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
           7: "float64", 11: "bool", 15: "bfloat16"}


def _tensor_info(evalue) -> Optional[TensorInfo]:
    val = getattr(evalue, "val", None)
    if not hasattr(val, "scalar_type"):
        return None
    code = int(val.scalar_type)
    return TensorInfo(_DTYPES.get(code, f"scalar_type {code}"), list(val.sizes))


def _read_program(data: bytes):
    from executorch.exir._serialize._program import deserialize_pte_binary

    # ExecuTorch program flatbuffers carry the file identifier "ET" + 2 digits at bytes 4..8.
    if len(data) < 8 or not re.fullmatch(rb"ET\d\d", data[4:8]):
        raise PteFormatError("not an ExecuTorch program (.pte): the file identifier is missing; "
                             "write one with lower_to_xnnpack(...).save() or `xnnquant quantize`")
    try:
        return deserialize_pte_binary(data)
    except Exception as exc:  # flatc and the reader raise many types on corrupt input
        raise PteFormatError(f"the .pte could not be parsed ({type(exc).__name__}: {exc}); "
                             "the file is truncated or corrupt, write it again") from exc


def _xnnpack_graph(payload: bytes) -> dict:
    """The XNNPACK delegate payload's flatbuffer as a dict (flatc's JSON of ``schema.fbs``)."""
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import (
        XNNHeader,
        _get_schema_bytes,
    )
    from executorch.exir._serialize._flatbuffer import _flatc_decompile

    header = XNNHeader.from_bytes(payload[:XNNHeader.EXPECTED_LENGTH])
    flatbuffer = payload[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size]
    with tempfile.TemporaryDirectory() as tmp:
        schema, binary = os.path.join(tmp, "schema.fbs"), os.path.join(tmp, "graph.bin")
        Path(schema).write_bytes(_get_schema_bytes())
        Path(binary).write_bytes(flatbuffer)
        _flatc_decompile(tmp, schema, binary, ["--raw-binary"])
        text = Path(tmp, "graph.json").read_text()
    # flatc writes non-finite floats (relu's output_max) as bare inf/nan, which JSON lacks.
    text = re.sub(r'(?<![\w"])(-?)inf(?![\w"])', r"\1Infinity", text)
    text = re.sub(r'(?<![\w"])nan(?![\w"])', "NaN", text)
    return json.loads(text)


def _named_bytes(pte, key: str) -> Optional[bytes]:
    store = pte.named_data
    if store is None or key not in store.pte_data:
        return None
    return bytes(store.buffers[store.pte_data[key].buffer_index])


def _xnnpack_info(info: DelegateInfo, payload: bytes, pte) -> None:
    graph = _xnnpack_graph(payload)
    info.nodes = dict(sorted(Counter(n["xnode_union_type"].removeprefix("XNN").lstrip("_")
                                     for n in graph.get("xnodes", [])).items()))
    constants = graph.get("constant_data", [])
    datatypes = Counter()
    for value in graph.get("xvalues", []):
        body = value["xvalue_union"]
        tensor = body.get("tensor_value", body)
        datatypes[tensor.get("datatype", "?").removeprefix("xnn_datatype_")] += 1
        kind, params = body.get("quant_params_type"), body.get("quant_params") or {}
        if kind == "PerTensorQuant":
            info.per_tensor.append((float(params.get("scale", 0.0)), int(params.get("zero_point", 0))))
        elif kind == "PerChannelQuant":
            scales = list(params.get("scale") or [])
            index = params.get("scale_buffer_idx", 0)
            if not scales and index and index < len(constants):
                # Newer payloads keep per-channel scales as named data (float32) next to the weights.
                raw = _named_bytes(pte, constants[index].get("named_key", ""))
                if raw:
                    scales = list(struct.unpack(f"<{len(raw) // 4}f", raw[: len(raw) // 4 * 4]))
            channels = params.get("num_scales") or len(scales)
            if tensor.get("datatype", "").endswith("int32"):
                continue  # the bias: its scales are input scale × weight scales, nothing new
            info.per_channel.append((int(channels), min(scales) if scales else None,
                                     max(scales) if scales else None))
    info.values = dict(sorted(datatypes.items()))


def inspect_pte(path) -> PteSummary:
    """Summarize the ``.pte`` at ``path`` (methods, delegates, ops outside, qparams, sizes).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        PteFormatError: the file is not an ExecuTorch program, or is corrupt.
    """
    from executorch.exir.schema import KernelCall

    path = Path(path)
    data = path.read_bytes()
    pte = _read_program(data)
    program = pte.program
    methods = []
    for plan in program.execution_plan:
        delegates = []
        for delegate in plan.delegates:
            payload = bytes(program.backend_delegate_data[delegate.processed.index].data)
            info = DelegateInfo(backend=delegate.id, payload_bytes=len(payload))
            if delegate.id == "XnnpackBackend":
                _xnnpack_info(info, payload, pte)
            delegates.append(info)
        outside = Counter()
        for chain in plan.chains:
            for instruction in chain.instructions:
                args = instruction.instr_args
                if isinstance(args, KernelCall):
                    op = plan.operators[args.op_index]
                    outside[f"{op.name}.{op.overload}" if op.overload else op.name] += 1
        methods.append(MethodInfo(
            name=plan.name,
            inputs=[t for t in (_tensor_info(plan.values[i]) for i in plan.inputs) if t],
            outputs=[t for t in (_tensor_info(plan.values[i]) for i in plan.outputs) if t],
            delegates=delegates,
            ops_outside=dict(outside),
        ))
    constant_bytes = sum(len(b.storage) for b in program.constant_buffer)
    named_bytes = sum(len(b) for b in pte.named_data.buffers) if pte.named_data else 0
    return PteSummary(path=str(path), size=len(data), methods=methods,
                      constant_bytes=constant_bytes, named_data_bytes=named_bytes)
