"""Every op-table record, both IRs: lower with ``lower_to_xnnpack``, run the .pte, compare.

For each case the delegate's output must equal the reference integer kernels'
output to within one quantization step of the output and stay close to fp32;
and every edge-graph node of a record the case covers must land where the
record says (``OpRecord.delegated``): inside the delegate, or outside with
that reason in the delegation report.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch

from tests.quantizer.cases import CASES, quantize_case
from xnnquant.passes import lower_to_reference, lower_to_xnnpack
from xnnquant.quantizer import RECORDS, record
from xnnquant.quantizer.workflow import IRS, sqnr

pytestmark = pytest.mark.slow  # lowers and runs every case on both IRs

DQ = torch.ops.quantized_decomposed.dequantize_per_tensor.default
_LOWERED: dict = {}


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _output_step(converted) -> float:
    """Scale of the dequantize that produces the (first) graph output."""
    output = next(n for n in converted.graph.nodes if n.op == "output")
    node = _first(output.args[0])
    assert node.target == DQ, node.format_node()
    return float(node.args[1])


def _lowered(name: str, ir: str):
    if (name, ir) not in _LOWERED:
        _, converted, x, model = quantize_case(name, ir)
        _LOWERED[name, ir] = (converted, x, model, lower_to_xnnpack(converted, x))
    return _LOWERED[name, ir]


def _case_records(case, ir: str) -> set:
    return {n for n in (*case.expect.get(ir, {}), *case.floats.get(ir, {})) if n in
            {r.name for r in RECORDS}}


@pytest.mark.parametrize("ir", IRS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_delegate_matches_reference_kernels(name, ir):
    case = CASES[name]
    converted, x, model, lowered = _lowered(name, ir)
    outside = lowered.report.non_delegated_ops
    assert len(outside) == case.outside.get(ir, 0), (outside, case.why)
    delegate = _first(lowered.run(*x))
    reference = _first(lower_to_reference(converted)(*x))
    step = _output_step(converted)
    assert (delegate - reference).abs().max().item() <= step * 1.0001
    assert sqnr(_first(model(*x)), delegate) > 30.0


@pytest.mark.parametrize("ir", IRS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_records_lower_where_the_table_says(name, ir):
    case = CASES[name]
    report = _lowered(name, ir)[3].report
    for rec in map(record, _case_records(case, ir)):
        nodes = [n for n in report.nodes if n.kind == "compute"
                 and short_name_of(n.op) in rec.edge_ops]
        for node in nodes:
            if rec.delegated is True:
                assert node.delegated, (rec.name, node)
            else:
                assert not node.delegated and node.reason == rec.delegated, (rec.name, node)


def short_name_of(op: str) -> str:
    """``aten.addmm.default`` → ``addmm.default`` (the report holds names, not targets)."""
    return ".".join(op.split(".")[-2:])


@pytest.mark.parametrize("ir", IRS)
def test_every_record_reaches_the_edge_graph_as_its_edge_ops(ir):
    """Guard: each record's ``edge_ops`` name real nodes of some case's lowering."""
    seen = defaultdict(set)
    for name, case in CASES.items():
        for node in _lowered(name, ir)[3].report.nodes:
            for rec in _case_records(case, ir):
                if short_name_of(node.op) in record(rec).edge_ops:
                    seen[rec].add(node.op)
    decomposed = {r for case in CASES.values() for r in case.decomposed.get(ir, ())}
    missing = {r.name for r in RECORDS} - set(seen) - decomposed
    assert missing == set(), f"records whose edge_ops never appear in a lowered case: {missing}"


def test_partitioner_configs_exist_and_claim_the_edge_ops():
    # A record names ExecuTorch's configs or xnnquant's own (passes/partitioner_configs.py).
    from xnnquant.passes.partitioner_configs import CONFIGS_BY_NAME, PARTITIONER_CONFIGS

    configs = CONFIGS_BY_NAME
    used = {c.__name__ for c in PARTITIONER_CONFIGS}
    for rec in RECORDS:
        for name in rec.partitioner:
            assert name in used, f"{rec.name}: {name} is not among the configs the lowering uses"
    for rec in RECORDS:
        for name in rec.partitioner:
            assert name in configs, (rec.name, name)
            assert configs[name].target_name in rec.edge_ops, (rec.name, name)
        assert bool(rec.partitioner) == (rec.delegated is True), rec.name
