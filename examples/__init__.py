"""Runnable examples (quickstart, benchmark) and the shared model zoo used by tests."""
