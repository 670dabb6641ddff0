"""Test-wide settings: a deterministic seed for every test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
