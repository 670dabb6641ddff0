"""Known third-party warnings are silenced inside xnnquant's calls, and only there.

The README walkthrough runs in a fresh interpreter (no pytest filters) with
every warning shown; each warning is attributed to xnnquant when a frame of
this repository's source folders is on the stack where it was raised.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from xnnquant.quantizer import quiet_third_party

ROOT = Path(__file__).resolve().parents[2]

# A hook that sorts every warning by where it was raised, then the README's walkthrough.
DRIVER = """
import sys, traceback, warnings
SOURCES = tuple(str(p) for p in SOURCE_DIRS)
def show(message, category, filename, lineno, file=None, line=None):
    inside = any(f.filename.startswith(SOURCES) for f in traceback.extract_stack()[:-1])
    print(("INSIDE " if inside else "OUTSIDE ") + category.__name__ + ": " + str(message).splitlines()[0],
          file=sys.stderr)
warnings.showwarning = show
warnings.simplefilter("always")

import copy, torch
from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, convert_pt2e
from xnnquant.quantizer import XnnpackQuantizer
from xnnquant.passes import lower_to_xnnpack, lower_to_reference

class TwoLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 32)
        self.fc2 = torch.nn.Linear(32, 4)
    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))

model = TwoLayer().eval()
example_inputs = (torch.randn(2, 16),)
ep = torch.export.export(model, example_inputs).run_decompositions()
quantizer = XnnpackQuantizer()
prepared = prepare_pt2e(ep.module(), quantizer)
for _ in range(8):
    prepared(torch.randn(2, 16))
quantizer.validate(prepared)
converted = convert_pt2e(prepared)
print(quantizer.report)
lowered = lower_to_xnnpack(converted, example_inputs)
print(lowered.report)
lowered.save(OUT)
(y,) = lowered.run(torch.randn(2, 16))
ref = lower_to_reference(converted)
y_ref = ref(torch.randn(2, 16))
print(ref.meta["xnnquant_reference_report"])
# The control: the same deep copy in the user's own code still warns (nothing is silenced globally).
copy.deepcopy(converted)
"""


@pytest.mark.slow
def test_walkthrough_prints_no_warning_raised_inside_xnnquant(tmp_path):
    dirs = [ROOT / "quantizer", ROOT / "passes", ROOT / "kernels"]
    code = f"SOURCE_DIRS = {[str(d) for d in dirs]!r}\nOUT = {str(tmp_path / 'two_layer.pte')!r}\n" + DRIVER
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    inside = [line for line in proc.stderr.splitlines() if line.startswith("INSIDE ")]
    outside = [line for line in proc.stderr.splitlines() if line.startswith("OUTSIDE ")]
    assert inside == [], "\n".join(inside)
    # The hook works and the user's own deepcopy / run_decompositions still warn.
    assert any("isinstance(treespec, LeafSpec)" in line for line in outside), proc.stderr


def test_importing_xnnquant_first_hides_torchao_import_chatter():
    code = "import xnnquant.quantizer\nimport torchao.quantization.pt2e\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Failed to load" not in proc.stderr and "KernelPreference" not in proc.stderr, proc.stderr
    # The same import without xnnquant first does chatter: the check above can fail.
    plain = subprocess.run([sys.executable, "-c", "import torchao"], capture_output=True, text=True,
                           timeout=300)
    assert "KernelPreference" in plain.stderr or "Failed to load" in plain.stderr


def _leaf_spec_warning():
    warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning)


def test_only_known_warnings_are_silenced_and_filters_come_back():
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        inner = list(warnings.filters)
        with quiet_third_party():
            _leaf_spec_warning()
            warnings.warn("a real problem", UserWarning)
        _leaf_spec_warning()
        assert list(warnings.filters) == inner
    assert [str(w.message) for w in seen] == ["a real problem", "`isinstance(treespec, LeafSpec)` is deprecated"]
    assert list(warnings.filters) == before


def test_overlapping_calls_from_threads_restore_the_filters():
    before = list(warnings.filters)
    inside, release = threading.Barrier(3), threading.Event()

    @quiet_third_party
    def work():
        inside.wait()
        release.wait()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait()
    assert len(warnings.filters) > len(before)  # installed while the calls run
    release.set()
    for t in threads:
        t.join()
    assert list(warnings.filters) == before
