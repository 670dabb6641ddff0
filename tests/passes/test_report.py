"""Tests of the delegation report: the reason categories, the counts, the table and the JSON form.

The reason classifier is tested on small hand-built graphs (one per category,
no lowering needed); the counts and the partitioner's view are tested by
lowering a quantized model with an op XNNPACK does not have (``cumsum``,
``sort``) between quantized linears.  The self-check's figures and the
boundary problems are tested on a hand-filled report.
"""

from __future__ import annotations

import json
import math

import expecttest
import pytest
import torch
from torch import fx, nn

from xnnquant.passes import DelegationReport, LoweringError, NodeStatus, lower_to_xnnpack
from xnnquant.passes.report import (
    DTYPE,
    FLOAT_BETWEEN_QUANTIZED,
    PARTITIONER,
    QPARAMS_MISMATCH,
    UNSUPPORTED_OP,
    OutputCheck,
    SelfCheck,
    node_statuses,
)
from xnnquant.quantizer.workflow import quantize

from .test_lower_to_xnnpack import make_quantizer

aten = torch.ops.aten
qd = torch.ops.quantized_decomposed
SUPPORTED = {"view.default", "add.Tensor", "relu.default"}


class _Builder:
    """A tiny fx graph builder that fills ``meta['val']`` the way export does."""

    def __init__(self):
        self.graph = fx.Graph()

    def input(self, name, shape=(2, 4), dtype=torch.float32):
        node = self.graph.placeholder(name)
        node.meta["val"] = torch.empty(shape, dtype=dtype)
        return node

    def call(self, target, *args):
        node = self.graph.call_function(target, args)
        values = [a.meta["val"] if isinstance(a, fx.Node) else a for a in args]
        node.meta["val"] = target(*values)
        return node

    def qdq(self, node, scale, zero_point=0):
        q = self.call(qd.quantize_per_tensor.default, node, scale, zero_point, -128, 127, torch.int8)
        return self.call(qd.dequantize_per_tensor.default, q, scale, zero_point, -128, 127, torch.int8)

    def statuses(self, output, why=None):
        self.graph.output(output)
        return {s.node: s for s in node_statuses(self.graph.nodes, SUPPORTED, why or {})}


def test_unsupported_op_is_named():
    b = _Builder()
    x = b.qdq(b.input("x"), 0.1)
    s = b.statuses(b.call(aten.cumsum.default, x, 1))
    assert (s["cumsum_default"].reason, s["cumsum_default"].detail) == (UNSUPPORTED_OP, "aten.cumsum.default")
    # The dequantize is outside only because of the cumsum it feeds.
    assert s["dequantize_per_tensor_default"].reason == UNSUPPORTED_OP
    assert s["dequantize_per_tensor_default"].detail == "next to cumsum_default (aten.cumsum.default)"


def test_data_movement_with_different_qparams_is_a_qparams_mismatch():
    b = _Builder()
    x = b.qdq(b.input("x"), 0.1, 3)
    view = b.call(aten.view.default, x, [8])
    s = b.statuses(b.qdq(view, 0.2, 3))
    assert s["view_default"].reason == QPARAMS_MISMATCH
    assert s["view_default"].detail == "input scale/zero point (0.1, 3) vs output (0.2, 3)"


def test_data_movement_with_equal_qparams_takes_the_partitioner_reason():
    b = _Builder()
    x = b.qdq(b.input("x"), 0.1, 3)
    view = b.call(aten.view.default, x, [8])
    s = b.statuses(b.qdq(view, 0.1, 3), why={"view_default": ["some partitioner rule"]})
    assert (s["view_default"].reason, s["view_default"].detail) == (PARTITIONER, "some partitioner rule")


def test_half_quantized_op_is_a_float_op_between_quantized_ops():
    b = _Builder()
    x = b.qdq(b.input("x"), 0.1)
    s = b.statuses(b.call(aten.add.Tensor, x, b.input("y")))
    assert s["add_tensor"].reason == FLOAT_BETWEEN_QUANTIZED


def test_integer_tensor_is_a_dtype_reason():
    b = _Builder()
    x = b.input("x", dtype=torch.int64)
    s = b.statuses(b.call(aten.add.Tensor, x, x))
    assert (s["add_tensor"].reason, s["add_tensor"].detail) == (DTYPE, "output is torch.int64")


def test_delegated_nodes_have_no_reason():
    b = _Builder()
    relu = b.call(aten.relu.default, b.input("x"))
    relu.meta["delegation_tag"] = "tag0"
    s = b.statuses(relu)
    assert s["relu_default"] == NodeStatus("relu_default", "aten.relu.default", "compute", True)


def _small_report() -> DelegationReport:
    return DelegationReport(
        nodes=[
            NodeStatus("dq", "quantized_decomposed.dequantize_per_tensor.default", "dequantize", True),
            NodeStatus("cumsum", "aten.cumsum.default", "compute", False, UNSUPPORTED_OP,
                       "aten.cumsum.default"),
        ],
        num_delegates=2, num_partitions=2,
        outside_ops=["aten.cumsum.default", "quantized_decomposed.quantize_per_tensor.default"],
        pte_size=1234, passes_changed=("RecomposeLinear",),
    )


def test_counts_and_fully_delegated():
    report = _small_report()
    assert report.non_delegated_ops == ["aten.cumsum.default"]
    assert report.qdq_outside == 1
    assert not report.fully_delegated
    assert DelegationReport(num_delegates=1).fully_delegated
    assert report.reason_counts() == {UNSUPPORTED_OP: 1}


def test_to_dict_is_json():
    data = json.loads(json.dumps(_small_report().to_dict(), allow_nan=False))
    assert data["fully_delegated"] is False
    assert data["nodes"][1]["reason"] == UNSUPPORTED_OP
    assert data["passes_changed"] == ["RecomposeLinear"]
    assert data["self_check"]["ran"] is False


def _checked_report() -> DelegationReport:
    report = _small_report()
    report.self_check = SelfCheck(ran=True, outputs=(
        OutputCheck(0, "dequantized", 0.05, 41.25, step=0.025, max_steps=2.0),
        OutputCheck(1, "exact", 0.0, math.inf),
    ))
    report.boundary_problems = ("dq is delegated without a Convert (implicit), but ...",)
    return report


def test_self_check_figures_are_the_worst_over_the_outputs():
    check = _checked_report().self_check
    assert check.passed is True
    assert check.sqnr == 41.25 and check.max_steps == 2.0
    data = json.loads(json.dumps(_checked_report().to_dict(), allow_nan=False))
    # JSON has no infinity: the identical integer output's SQNR is null, its max_abs 0.
    assert data["self_check"]["outputs"][1]["sqnr"] is None
    assert data["self_check"]["outputs"][1]["max_abs"] == 0.0
    assert data["self_check"]["sqnr"] == 41.25
    assert data["boundary_problems"] == ["dq is delegated without a Convert (implicit), but ..."]


class TestTable(expecttest.TestCase):
    def test_table(self):
        self.assertExpectedInline(str(_small_report()), """\
node    op                                                  delegated  reason
dq      quantized_decomposed.dequantize_per_tensor.default  yes
cumsum  aten.cumsum.default                                 no         unsupported op: aten.cumsum.default
delegates: 2  partitions: 2  q/dq outside: 1  ops outside: ['aten.cumsum.default']  pte: 1234 bytes
self-check: not run (self_check=False)""")

    def test_table_with_self_check_and_boundary_problem(self):
        self.assertExpectedInline(_checked_report().format(delegated=False), """\
node    op                   delegated  reason
cumsum  aten.cumsum.default  no         unsupported op: aten.cumsum.default
delegates: 2  partitions: 2  q/dq outside: 1  ops outside: ['aten.cumsum.default']  pte: 1234 bytes
boundary problem: dq is delegated without a Convert (implicit), but ...
self-check: passed on 2 outputs (SQNR 41.2 dB, max 2.00 output steps, max |pte - eager| 0.05)""")


class _Between(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.fc1, self.fc2, self.op = nn.Linear(8, 8), nn.Linear(8, 4), op

    def forward(self, x):
        return self.fc2(self.op(self.fc1(x)))


@pytest.fixture(scope="module")
def cumsum_case():
    torch.manual_seed(0)
    model = _Between(lambda t: torch.cumsum(t, dim=-1)).eval()
    x = torch.randn(4, 8)
    converted = quantize(model, (x,), [(torch.randn(4, 8),) for _ in range(4)], make_quantizer())
    return converted, x, lower_to_xnnpack(converted, (x,))


def test_unsupported_op_stays_outside_and_is_reported(cumsum_case):
    converted, x, lowered = cumsum_case
    report = lowered.report
    assert report.num_delegates == 2 and report.num_partitions == 2
    assert report.non_delegated_ops == ["aten.cumsum.default"]
    assert report.qdq_outside == 0  # the delegates take the q/dq on both sides
    assert not report.fully_delegated
    (cumsum,) = report.not_delegated
    assert (cumsum.reason, cumsum.detail) == (UNSUPPORTED_OP, "aten.cumsum.default")
    assert report.pte_size == len(lowered.buffer)
    # The program still runs: the portable kernel computes the cumsum between the delegates.
    torch.testing.assert_close(lowered.run(x)[0], converted(x), atol=1e-6, rtol=0)
    assert report.self_check.passed and report.self_check.max_steps == 0


def test_require_full_delegation_raises_with_the_table(cumsum_case):
    converted, x, _ = cumsum_case
    with pytest.raises(LoweringError, match="(?s)not everything was delegated.*unsupported op"):
        lower_to_xnnpack(converted, (x,), require_full_delegation=True)


def test_op_without_runtime_kernel_fails_to_load_with_a_clear_error():
    torch.manual_seed(0)
    model = _Between(lambda t: torch.sort(t, dim=-1)[0]).eval()
    x = torch.randn(4, 8)
    converted = quantize(model, (x,), None, make_quantizer())
    # The self-check loads the method, so lowering itself reports it.
    with pytest.raises(LoweringError, match="(?s)could not load method 'forward'.*aten.sort.default"):
        lower_to_xnnpack(converted, (x,))
    lowered = lower_to_xnnpack(converted, (x,), self_check=False)
    assert lowered.report.non_delegated_ops == ["aten.sort.default"]
    assert lowered.report.not_delegated[0].reason == UNSUPPORTED_OP
    with pytest.raises(LoweringError, match="(?s)could not load method 'forward'.*aten.sort.default"):
        lowered.run(x)
