"""Helpers shared by ``quickstart.py`` and ``benchmark.py``: quiet output, runtime calls and timing.

Both scripts must measure latency the same way, or their numbers cannot be
compared; that is the one reason this module exists.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from contextlib import contextmanager
from typing import Callable, Mapping

import torch

__all__ = [
    "hide_source_kernels_folder",
    "silence_library_noise",
    "run_method",
    "interleaved_latency",
    "median_ms",
    "quiet_native_stderr",
]


def hide_source_kernels_folder() -> None:
    """Keep the repository's ``kernels/`` folder from passing for a top-level ``kernels`` package.

    The source folders install as ``xnnquant.kernels`` etc., but a script or
    test that puts the repository root on ``sys.path`` (to import ``examples``
    or ``tests``) also makes ``import kernels`` find ``kernels/``.  The name
    belongs to Hugging Face's kernel hub on PyPI, which ``transformers`` imports
    from (``cannot import name 'CUDAProperties' from 'kernels'``).  When
    ``kernels`` resolves to this folder, the installed package is imported in
    its place, from the rest of ``sys.path``; with none installed, the name is
    marked as not installed (``sys.modules["kernels"] = None``).
    """
    import importlib
    import importlib.util
    from pathlib import Path

    if "kernels" in sys.modules:
        return
    root = Path(__file__).resolve().parents[1]
    try:
        spec = importlib.util.find_spec("kernels")
    except (ImportError, ValueError):
        return
    if spec is None or not spec.origin or Path(spec.origin).resolve().parent != root / "kernels":
        return
    saved = list(sys.path)
    sys.path[:] = [p for p in saved if Path(p or ".").resolve() != root]
    try:
        importlib.import_module("kernels")
    except ImportError:
        sys.modules["kernels"] = None
    finally:
        sys.path[:] = saved


def silence_library_noise() -> None:
    """Mute known-harmless import-time and export-time messages so the scripts' own output is readable.

    Call before importing torchao.  Covers: torchao's "Failed to load ..._C_*.so"
    (CUDA-only extensions on a CPU wheel), torch's pytree ``register_constant``
    deprecation, and the ``LeafSpec`` FutureWarning raised on every deepcopy of an
    exported program.  Real errors still surface.
    """
    import logging
    import warnings

    logging.getLogger("torchao").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


@contextmanager
def quiet_native_stderr():
    """Silence fd 2 while the ExecuTorch runtime loads: its cpuinfo probe prints C++ log lines
    ("Failed to open midr file ...") that are noise on x86 and bury the script's output."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def run_method(method, inputs: tuple) -> torch.Tensor:
    """First output of a loaded ExecuTorch method for one input tuple, as a tensor the caller owns.

    The clone matters when outputs are collected over many calls: the runtime
    may hand back memory it reuses on the next call.
    """
    return method.execute(list(inputs))[0].clone()


def interleaved_latency(
    runs: Mapping[str, Callable[[], object]], iters: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Time several contenders round-robin: one run of each per iteration.

    Machine load drifts over seconds (other jobs, thermal, frequency); running
    the contenders back to back within each iteration exposes them all to the
    same drift, and rotating the starting contender each iteration cancels any
    advantage of running first (warm caches) or last.

    Args:
        runs: name → zero-argument callable that performs one inference.
        iters: timed iterations per contender.
        warmup: untimed iterations first (XNNPACK packs weights on first run).

    Returns:
        name → list of ``iters`` wall-clock times in milliseconds.
    """
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(iters):
        k = i % len(names) if names else 0
        for name in names[k:] + names[:k]:
            start = time.perf_counter()
            runs[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")
