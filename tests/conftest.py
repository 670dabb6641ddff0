"""Test-wide settings: a deterministic seed for every test."""

import pytest
import torch


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
