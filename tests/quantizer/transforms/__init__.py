"""Tests of the annotation-time passes in ``xnnquant.quantizer.transforms``, one file per pass."""

import pytest

# The shared checks live in a helper module: let pytest explain their failing asserts too.
pytest.register_assert_rewrite("tests.quantizer.transforms.common")
