"""Test-wide settings: a deterministic seed for every test, and no stray top-level ``kernels``."""

import pytest
import torch

from examples.common import hide_source_kernels_folder

# pytest puts the repository root on sys.path (tests/ is a package), where kernels/ would
# pass for PyPI's ``kernels``, which transformers (the BERT test) imports from.
hide_source_kernels_folder()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures a chart function draws, kept open for inspection after it closes them."""
    plt = pytest.importorskip("matplotlib.pyplot")

    kept = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    yield kept
    for fig in kept:
        close(fig)
