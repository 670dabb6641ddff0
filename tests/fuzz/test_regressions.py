"""Every failure the fuzzer found, as the minimal graph hypothesis shrank it to, checked deterministically.

Each case is a :class:`~tests.fuzz.graphs.GraphSpec` literal and the comment
names the bug and the fix; the test runs the fuzzer's full property check
(:func:`tests.fuzz.properties.check_graph`) on it, on both IRs.
"""

from __future__ import annotations

import pytest

from .graphs import GraphSpec, Layer
from .properties import check_graph

REGRESSIONS = {
    # quantize crashed with RecursionError in torchao's prepare: cat([clamp(x), x]) gave
    # cat's inputs specs shared with the (clamp, cat) edge, which torchao's union-find rooted
    # at a shared spec pointing back into its own group.  Fixed in quantizer/annotate.py:
    # shared ops name their group's root spec (_sharing_root), never a chain.
    "cat_of_shared_op_and_its_input": GraphSpec(
        input_shape=(3, 6),
        layers=(Layer("clamp", 0, None, (("hi", 1.0), ("lo", None))),
                Layer("cat", 1, 0, (("dim", -2),)),
                Layer("layer_norm", 2)),
        outputs=(3,), seed=12541),
    # The IRs disagreed: a squeeze whose result nothing reads was counted as quantized on the
    # training IR (which keeps dead code until convert) but is gone from the core IR.  Fixed in
    # quantizer/annotate.py: only nodes an output depends on are annotated and reported.
    "dead_squeeze": GraphSpec(
        input_shape=(1, 2),
        layers=(Layer("squeeze", 0, None, (("dim", 0),)), Layer("abs", 0)),
        outputs=(2,), seed=0),
    # The IRs disagreed: ``0.5 - x`` is ``rsub.Scalar(x, 0.5)`` in the training IR, which has no
    # record, and ``sub.Tensor(0.5, x)`` in the core IR, which was quantized.  Fixed in
    # quantizer/transforms/rewrite_rsub_as_sub.py: rsub is spelled as sub before annotation.
    "rsub_scalar": GraphSpec(
        input_shape=(3, 11),
        layers=(Layer("clone", 0), Layer("sub", 1, None, (("kind", "scalar"), ("swap", True), ("value", 0.5))),
                Layer("abs", 2)),
        outputs=(3,), seed=0),
    # Failed at run time ("Propagating input shapes failed ... invalid_parameter"), in fp32 too:
    # a dilated conv_transpose1d with output_padding 1 >= stride 1, which torch allows and
    # XNNPACK's deconvolution does not.  Fixed in passes/partitioner_configs.py
    # (SafeConvolutionConfig) and quantizer/patterns.py (deconvolution_padding_reason): it
    # runs outside the delegate, with the reason.
    "dilated_conv_transpose_output_padding": GraphSpec(
        input_shape=(1, 6, 4),
        layers=(Layer("conv_transpose1d", 0, None, (("bias", False), ("cout", 4), ("dilation", 2),
                                                    ("groups", 2), ("k", 1), ("output_padding", 1),
                                                    ("padding", 0), ("stride", 1))),
                Layer("hardtanh", 1, None, (("hi", 1.0), ("lo", 0.0))),
                Layer("layer_norm", 2)),
        outputs=(3,), seed=65536),
}


@pytest.mark.slow  # each case quantizes and lowers on both IRs
@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(name):
    check_graph(REGRESSIONS[name])
