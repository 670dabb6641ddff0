"""Property-based fuzzing: random small graphs through quantize → lower → run, on both IRs.

The graphs come from :func:`tests.fuzz.graphs.graph_specs`, the properties from
:func:`tests.fuzz.properties.check_graph`.

* ``make test`` runs :data:`SMOKE_EXAMPLES` examples from a fixed seed
  (``derandomize=True``): the same graphs every run, and a failure shrinks to
  a minimal graph that hypothesis prints.
* ``make fuzz N=500`` sets ``XNNQUANT_FUZZ_N``: that many examples, and the
  test keeps going after a failure so that one run counts every failure by
  kind; it prints a summary (examples, time, documented errors, failures by
  kind, each failing spec) and fails at the end if there was any failure.
  ``XNNQUANT_FUZZ_SEED`` draws another fixed sequence; ``XNNQUANT_FUZZ_SHRINK=1``
  stops at the first failure and shrinks it instead.

The hypothesis database is off (``database=None``) so that a run depends on
its seed alone.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, seed, settings

from .graphs import graph_specs
from .properties import PropertyFailure, check_graph

SMOKE_EXAMPLES = 16
LONG = "XNNQUANT_FUZZ_N" in os.environ
EXAMPLES = int(os.environ.get("XNNQUANT_FUZZ_N", SMOKE_EXAMPLES))
SEED = int(os.environ.get("XNNQUANT_FUZZ_SEED", 0))
COLLECT = LONG and os.environ.get("XNNQUANT_FUZZ_SHRINK") != "1"

_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    # The smoke run draws from a seed derived from the test's name; a long run from SEED.
    derandomize=not LONG,
    # Graph drawing rejects nothing, but a layer with no valid form for its input is not
    # added, so some draws are slow to build; that is not a problem of the test.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


class _Tally:
    def __init__(self):
        self.examples = 0
        self.failures: list = []  # (kind, spec, message)
        self.documented: Counter = Counter()
        self.outside: Counter = Counter()
        self.worst_ref_steps = 0.0
        self.start = time.monotonic()

    def summary(self) -> str:
        kinds = Counter(kind for kind, _, _ in self.failures)
        lines = [
            f"fuzz: {self.examples} examples in {time.monotonic() - self.start:.0f} s "
            f"({'derandomized' if _settings.derandomize else f'seed {SEED}'})",
            f"failures by kind: {dict(kinds) or 'none'}",
            f"documented errors (allowed): {dict(self.documented) or 'none'}",
            f"ops outside the delegate, all reported with a reason: {dict(self.outside) or 'none'}",
            f"worst delegate vs reference kernels: {self.worst_ref_steps:.2f} output steps",
        ]
        for kind, spec, message in self.failures:
            lines += [f"--- {kind}: {spec!r}", message[:2000]]
        return "\n".join(lines)


def _progress(tally: _Tally, began: float, spec, result: str) -> None:
    """One line per example in a long run (``pytest -s`` shows it), so a slow run can be watched."""
    if LONG:
        print(f"[{tally.examples}] {time.monotonic() - began:.1f}s {' '.join(spec.ops())}: {result[:160]}",
              flush=True)


@pytest.mark.slow  # a few seconds per example; the smoke run is part of make test only
def test_random_graphs_keep_every_promise():
    tally = _Tally()

    @_settings
    @given(graph_specs())
    def run(spec):
        tally.examples += 1
        began = time.monotonic()
        try:
            outcome = check_graph(spec)
        except PropertyFailure as failure:
            if not COLLECT:
                raise
            tally.failures.append((failure.kind, spec, str(failure)))
            _progress(tally, began, spec, failure.kind)
            return
        _progress(tally, began, spec, "; ".join(outcome.errors()) or "ok")
        for ir, result in outcome.results.items():
            if result.error:
                tally.documented[result.error.split(":")[0]] += 1
            tally.outside.update(result.outside)
            tally.worst_ref_steps = max(tally.worst_ref_steps, result.max_ref_steps)

    if LONG:
        run = seed(SEED)(run)
    try:
        run()
    finally:
        print("\n" + tally.summary())
    assert not tally.failures, tally.summary()
