"""Test-wide settings: deterministic seeds and quiet third-party warnings."""

import logging

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ExecuTorch logs every partitioning decision at INFO; keep failures readable.
logging.getLogger("executorch").setLevel(logging.WARNING)
