"""The same .pte on emulated aarch64 CPUs: bit-identical to x86, and within one output step of the reference.

Every program the e2e tests make (each pattern case and each tiny example model,
on both IRs) is lowered once with ``lower_to_xnnpack``, in two worker processes
(``programs.py``). Its ``.pte`` then runs on a few inputs:

- on x86 through ``executorch.runtime`` (``LoweredProgram.run``): the baseline;
- on x86 through the C++ runner of ``runner.cpp``, which shows the runner adds
  nothing of its own;
- through the same runner built for aarch64, under ``qemu-aarch64 -cpu NAME``
  for each CPU of :data:`tests.arm.harness.CPUS`: one emulator invocation per
  program and CPU, with every input in it.

Every output must have the same bytes as the baseline, and be within one
quantization step of the output (the scale of the dequantize that feeds it) of
the reference integer kernels; an integer output must equal the reference. A
failure names the program (the pattern case says which op), the CPU, the
output and the size of the difference.

The tools come from ``make arm-tools``. Without them the module is skipped
with a message saying what is missing, except under ``CI=true``, where
``test_arm_tools_installed`` fails instead. No timings are taken: emulated
time says nothing about an ARM CPU.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from tests.arm import harness
from tests.arm.harness import X86

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TOOLS = harness.find_tools()

if TOOLS.missing:
    harness.SUMMARY["failed" if IN_CI else "skipped"] = "; ".join(TOOLS.missing)
    if not IN_CI:
        pytest.skip(f"ARM test SKIPPED: missing {'; '.join(TOOLS.missing)}. {harness.SETUP_HINT}",
                    allow_module_level=True)

# Imported after the skip so a machine without the tools does not pay for them.
from tests.arm.programs import INPUTS_PER_PROGRAM, PROGRAMS, Built, as_tensors, build  # noqa: E402

# "slow" as the other suites that lower many programs: `make test-fast` leaves it out.
pytestmark = pytest.mark.slow
CPUS = harness.selected_cpus()
_needs_tools = pytest.mark.skipif(bool(TOOLS.missing),
                                  reason="ARM tools missing: see test_arm_tools_installed")


def test_arm_tools_installed():
    assert not TOOLS.missing, (
        f"CI=true, and the ARM test cannot run: missing {'; '.join(TOOLS.missing)}. "
        f"{harness.SETUP_HINT} Run it before `make test`, as .ci/run does.")


@dataclass
class Program:
    """A built program with its inputs and outputs as tensors, and its runs by target."""

    id: str
    ops: list
    outside: list
    steps: list
    baseline: list  # per input: outputs of executorch.runtime on x86
    reference: list  # per input: outputs of the reference kernels
    runs: dict = field(default_factory=dict)  # target -> harness.RunResult or the error


def _start_runs(built: Built, work: Path, pool: ThreadPoolExecutor) -> Program:
    slug = built.id.replace("/", "-").replace(":", "-")
    pte = work / f"{slug}.pte"
    harness.write_atomically(pte, built.pte)
    inputs = work / f"{slug}.in"
    harness.write_inputs(inputs, [tuple(as_tensors(s)) for s in built.samples])
    program = Program(built.id, built.ops, built.outside, built.steps,
                      [as_tensors(o) for o in built.baseline], [as_tensors(o) for o in built.reference])
    for target, cpu in [(X86, None), *CPUS.items()]:
        if cpu is None or cpu.qemu in TOOLS.qemu:
            out = work / f"{slug}.{target.replace('@', '-')}.out"
            program.runs[target] = pool.submit(harness.run, harness.command(target, cpu, TOOLS),
                                               pte, inputs, out)
    return program


def _selected_programs(session) -> list:
    """The programs of the collected items (so `-k` narrows the build), or the first when none is."""
    chosen = set()
    for item in session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "module", None) is sys.modules[__name__] and "program_id" in params:
            chosen.add(params["program_id"])
    return [p for p in PROGRAMS if p in chosen] or list(PROGRAMS)[:1]


@pytest.fixture(scope="module")
def suite(request, tmp_path_factory):
    """The selected programs, built once, with their runs on every target: id -> Program, or error text."""
    work = tmp_path_factory.mktemp("arm")
    selected = _selected_programs(request.session)
    programs = {}
    # spawn, not fork: the parent already runs torch's and ExecuTorch's threads.
    workers = ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1),
                                  mp_context=multiprocessing.get_context("spawn"))
    with workers, ThreadPoolExecutor(max_workers=2) as emulators:
        pending = {workers.submit(build, program_id): program_id for program_id in selected}
        # Each program's emulator runs start as soon as it is built, while the next ones lower.
        for future in as_completed(pending):
            program_id = pending[future]
            try:
                programs[program_id] = _start_runs(future.result(), work, emulators)
            except Exception:  # one broken program must not hide the others' results
                programs[program_id] = traceback.format_exc()
        for program in programs.values():
            if isinstance(program, Program):
                for target, run in program.runs.items():
                    try:
                        program.runs[target] = run.result()
                    except harness.RunnerError as exc:
                        program.runs[target] = exc
    harness.SUMMARY.update(programs=len(selected), inputs=INPUTS_PER_PROGRAM,
                           cpus=[c for c, cpu in CPUS.items() if cpu.qemu in TOOLS.qemu],
                           runs=0, identical=0, max_ref_steps=0.0)
    return programs


def _against_reference(got: torch.Tensor, ref: torch.Tensor, step) -> tuple:
    """(problem or None, distance in output steps or None) of one output from the reference kernels."""
    if step is not None:
        steps = (got.double() - ref.double()).abs().max().item() / step
        if steps <= 1.0001:
            return None, steps
        return (f"more than one output step from the reference kernels: "
                f"{harness.describe_difference(got, ref.to(got.dtype), step)}"), steps
    if not got.is_floating_point():
        same = torch.equal(got, ref.to(got.dtype))
        return (None if same else "integer output differs from the reference kernels"), None
    return None, None  # a float output that no dequantize feeds has no step: bit-identity only


def _check(program: Program) -> list:
    """Problems of one program on every target, as lines for the failure message."""
    summary = harness.SUMMARY
    outside = f"; outside the delegate: {', '.join(program.outside)}" if program.outside else ""
    label = f"{program.id} (ops: {', '.join(program.ops)}{outside})"
    problems = []
    for target, result in {"x86-64 executorch.runtime": None, **program.runs}.items():
        if isinstance(result, Exception):
            problems.append(f"{label} on {target}: the runner failed: {result}")
            continue
        outputs = program.baseline if result is None else result.outputs
        identical = True
        for s, (got, want, ref) in enumerate(zip(outputs, program.baseline, program.reference)):
            where = f"{label} on {target}, input {s}"
            if len(got) != len(want):
                problems.append(f"{where}: {len(got)} outputs, x86 gave {len(want)}")
                identical = False
                continue
            for o, (g, w, r, step) in enumerate(zip(got, want, ref, program.steps)):
                if not harness.bit_identical(g, w):
                    identical = False
                    problems.append(f"{where}, output {o}: not bit-identical to x86: "
                                    f"{harness.describe_difference(g, w, step)}")
                problem, steps = _against_reference(g, r, step)
                if problem:
                    problems.append(f"{where}, output {o}: {problem}")
                if steps is not None:
                    summary["max_ref_steps"] = max(summary["max_ref_steps"], steps)
        if result is not None:
            summary["runs"] += 1
            summary["identical"] += identical
    return problems


@_needs_tools
@pytest.mark.parametrize("program_id", list(PROGRAMS))
def test_bit_identical_to_x86_and_within_one_step_of_reference(suite, program_id):
    program = suite[program_id]
    assert isinstance(program, Program), f"{program_id} could not be built:\n{program}"
    problems = _check(program)
    assert not problems, "\n".join(problems)


@_needs_tools
@pytest.mark.parametrize("cpu", list(CPUS))
def test_emulated_cpu_offers_its_features(suite, cpu):
    spec = CPUS[cpu]
    if spec.qemu not in TOOLS.qemu:
        message = f"{cpu} not covered ({spec.covers}): {TOOLS.missing_newer}. {harness.SETUP_HINT}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    result = next((p.runs[cpu] for p in suite.values()
                   if isinstance(p, Program) and isinstance(p.runs.get(cpu), harness.RunResult)), None)
    assert result is not None, f"no program ran on {cpu}"
    features = result.features()
    assert set(spec.has) <= features and not set(spec.lacks) & features, (
        f"-cpu {cpu} is here for {spec.covers}, but the runner saw {sorted(features)}: "
        f"expected {list(spec.has)} and none of {list(spec.lacks)}")
