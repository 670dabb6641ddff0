"""Every pattern, both IRs: lower with stock ExecuTorch, run the .pte, compare with the reference kernels.

The delegate's output must equal the reference integer kernels' output to
within one quantization step of the output, and stay close to fp32.
"""

from __future__ import annotations

import pytest
import torch

from tests.quantizer.cases import CASES, quantize_case
from tests.support import lower_stock, run_pte
from xnnquant.passes import lower_to_reference
from xnnquant.quantizer import sqnr
from xnnquant.quantizer.workflow import IRS

DQ = torch.ops.quantized_decomposed.dequantize_per_tensor.default


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _output_step(converted) -> float:
    """Scale of the dequantize that produces the (first) graph output."""
    output = next(n for n in converted.graph.nodes if n.op == "output")
    node = _first(output.args[0])
    assert node.target == DQ, node.format_node()
    return float(node.args[1])


@pytest.mark.parametrize("ir", IRS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_delegate_matches_reference_kernels(name, ir):
    case = CASES[name]
    _, converted, x, model = quantize_case(name, ir)
    edge, outside = lower_stock(converted, x)
    assert len(outside) == case.outside.get(ir, 0), (outside, case.why)
    if outside:
        return  # the remaining op runs in ExecuTorch's portable kernels, not loaded here
    delegate = _first(run_pte(edge, x))
    reference = _first(lower_to_reference(converted)(*x))
    step = _output_step(converted)
    assert (delegate - reference).abs().max().item() <= step * 1.0001
    assert sqnr(_first(model(*x)), delegate) > 30.0
