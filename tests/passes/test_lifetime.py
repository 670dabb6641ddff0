"""A runtime method outlives its ``LoweredProgram``: ``method = lower_to_xnnpack(...).load_method()``.

An ``executorch.runtime`` ``Method`` points into its ``Program``'s memory
without holding it, so before ``load_method`` returned a
:class:`~xnnquant.passes.RuntimeMethod` (which holds the program and its
bytes), dropping the ``LoweredProgram`` and churning memory made ``execute``
segfault (exit status -11, measured on this conv net).  The script runs in a
subprocess so that a segfault fails the test instead of killing pytest.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import gc
    import torch
    from torch import nn
    from xnnquant.passes import lower_to_xnnpack
    from xnnquant.quantizer import XnnpackQuantizer
    from xnnquant.quantizer.workflow import quantize

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3)).eval()
    x = torch.randn(1, 3, 32, 32)
    converted = quantize(model, (x,), None, XnnpackQuantizer())
    expected = lower_to_xnnpack(converted, (x,)).run(x)[0]
    method = lower_to_xnnpack(converted, (x,)).load_method()  # the LoweredProgram is dropped here
    gc.collect()
    junk = [bytes(1 << 16) for _ in range(2000)]
    del junk
    junk = [b"\\xff" * (1 << 20) for _ in range(50)]  # overwrite what was freed
    gc.collect()
    for _ in range(3):
        out = method.execute([x])[0]
    assert torch.equal(out, expected), (out - expected).abs().max()
    print("OK")
""")


def test_method_outlives_its_lowered_program():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), (
        f"exit status {done.returncode} (-11 is a segfault)\n{done.stderr[-3000:]}")
