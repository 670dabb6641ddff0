"""The package's layers have no back edges: quantizer ← kernels ← passes, and imports register nothing.

``xnnquant.quantizer`` (with its op table) is the bottom layer: it imports
neither the reference kernels nor the lowering, so importing it registers no
``torch.library`` op.  ``xnnquant.kernels`` imports only itself.  Checked in a
fresh interpreter, because this test process has long since imported
everything.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# folder → xnnquant packages its modules may import
ALLOWED = {
    "quantizer": {"xnnquant.quantizer"},
    "kernels": {"xnnquant.kernels"},
    "passes": {"xnnquant.quantizer", "xnnquant.kernels", "xnnquant.passes"},
}


def _xnnquant_imports(path: Path) -> set:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {".".join(m.split(".")[:2]) for m in found if m.startswith("xnnquant.")}


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_no_module_imports_a_higher_layer(folder):
    for path in sorted((ROOT / folder).rglob("*.py")):
        bad = _xnnquant_imports(path) - ALLOWED[folder]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_importing_the_quantizer_registers_no_kernel():
    code = (
        "import sys, torch\n"
        "before = {n for n in torch._C._dispatch_get_all_op_names() if n.startswith('xnnquant::')}\n"
        "import xnnquant.quantizer\n"
        "after = {n for n in torch._C._dispatch_get_all_op_names() if n.startswith('xnnquant::')}\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('xnnquant.kernels', 'xnnquant.passes')))\n"
        "print(sorted(after - before), loaded)\n"
        "import xnnquant.passes\n"
        "print(len({n for n in torch._C._dispatch_get_all_op_names() if n.startswith('xnnquant::')}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = out.stdout.strip().splitlines()[-2:]
    assert first == "[] []", first
    assert int(second) > 0  # the lowering does register them: the check above can fail
