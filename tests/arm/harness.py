"""Run .pte programs through the C++ runner on x86 and on emulated aarch64 CPUs, and compare outputs.

The ARM test (``test_arm.py``) uses this module. It finds the tools that
``tests/arm/setup.sh`` installs (``make arm-tools``), writes a program's inputs in
the runner's format, starts one runner per program and CPU, reads the outputs
back, and compares them bit for bit with the x86 run and within one output
quantization step with the reference kernels.

The emulated CPUs, and why each one is covered:

- ``cortex-a53``: Armv8.0 NEON without dot product, so XNNPACK takes its plain
  NEON int8 kernels.
- ``cortex-a76`` and ``neoverse-n1``: NEON dot product (``sdot``).
- ``a64fx``: SVE (512-bit vectors), without dot product.
- ``neoverse-v1`` and ``neoverse-n2``: the int8 matrix multiply (``i8mm``) on top
  of dot product and SVE / SVE2. Bookworm's QEMU 7.2 does not model them, so
  they run under the newer ``qemu-aarch64`` that set-up unpacks from backports.

The CPU is always named. QEMU 7.2's default ``-cpu max`` advertises SME and
gives wrong int8 results (here up to 214 output steps on the ``linear`` case), an
emulator bug: QEMU 10 gives the x86 bytes with ``-cpu max``. With a named CPU, the runner records the ``AT_HWCAP`` bits it saw, and
the test checks them against the ``has``/``lacks`` fields below, so a CPU model
that does not offer what it is here for fails instead of passing vacuously.

``XNNQUANT_ARM_CPUS`` (comma-separated, ``name`` or ``name@system`` /
``name@newer``) replaces the CPU list for a run by hand, for example
``XNNQUANT_ARM_CPUS=max@system`` to see the QEMU 7.2 bug make the test fail.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tests" / "arm" / "build"
RUNNER_SOURCE = ROOT / "tests" / "arm" / "runner.cpp"
RUNNER = {"aarch64": BUILD / "bin" / "xnnquant_runner-aarch64",
          "x86_64": BUILD / "bin" / "xnnquant_runner-x86_64"}
NEWER_QEMU = BUILD / "qemu" / "qemu-aarch64"
# Where g++-aarch64-linux-gnu's dependencies put the aarch64 libc and libstdc++;
# qemu's -L makes the guest's loader and libraries resolve there.
SYSROOT = Path("/usr/aarch64-linux-gnu")
X86 = "x86-64"  # the target name of the runner run natively
SETUP_HINT = "`make arm-tools` installs and builds them (as root, it also apt-gets missing Debian packages)."
RUN_TIMEOUT_S = 300
# Filled by test_arm.py, printed by conftest.py at the end of the pytest run.
SUMMARY: dict = {}

# (AT_HWCAP or AT_HWCAP2, bit), from the kernel's arch/arm64/include/uapi/asm/hwcap.h.
HWCAPS = {
    "asimd": (1, 1 << 1), "asimddp": (1, 1 << 20), "sve": (1, 1 << 22),
    "sve2": (2, 1 << 1), "i8mm": (2, 1 << 13), "sme": (2, 1 << 23),
}


@dataclass(frozen=True)
class Cpu:
    """One emulated CPU: which QEMU models it, and the features it must and must not show."""

    qemu: str  # "system" (Debian's qemu-user-static) or "newer" (unpacked from backports)
    covers: str
    has: tuple = ()
    lacks: tuple = ()


CPUS: dict = {
    "cortex-a53": Cpu("system", "NEON without dot product", has=("asimd",), lacks=("asimddp", "sve")),
    "cortex-a76": Cpu("system", "NEON dot product (sdot)", has=("asimddp",), lacks=("sve", "i8mm")),
    "neoverse-n1": Cpu("system", "NEON dot product (sdot)", has=("asimddp",), lacks=("sve", "i8mm")),
    "a64fx": Cpu("system", "SVE, 512-bit", has=("sve",), lacks=("i8mm",)),
    "neoverse-v1": Cpu("newer", "i8mm, dot product, SVE 256-bit", has=("asimddp", "sve", "i8mm")),
    "neoverse-n2": Cpu("newer", "i8mm, dot product, SVE2", has=("asimddp", "sve2", "i8mm")),
}


def selected_cpus() -> dict:
    """The CPUs to run: :data:`CPUS`, or the hand-picked list in ``XNNQUANT_ARM_CPUS``."""
    spec = os.environ.get("XNNQUANT_ARM_CPUS", "").strip()
    if not spec:
        return dict(CPUS)
    chosen = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, qemu = item.partition("@")
        if name in CPUS and not qemu:
            chosen[item] = CPUS[name]
        else:  # picked by hand: no declared features to check
            chosen[item] = Cpu(qemu or "system", "chosen by hand")
    return chosen


def _cpu_name(key: str) -> str:
    return key.partition("@")[0]


@dataclass
class Tools:
    """Paths of the tools, and what is missing (empty when the ARM test can run)."""

    qemu: dict = field(default_factory=dict)  # "system" / "newer" -> path
    missing: list = field(default_factory=list)
    missing_newer: Optional[str] = None


def find_tools() -> Tools:
    tools = Tools()
    system = shutil.which("qemu-aarch64-static")
    if system:
        tools.qemu["system"] = system
    else:
        tools.missing.append("qemu-aarch64-static (Debian package qemu-user-static)")
    if not (SYSROOT / "lib" / "ld-linux-aarch64.so.1").exists():
        tools.missing.append(f"the aarch64 libc in {SYSROOT} (Debian package g++-aarch64-linux-gnu)")
    for arch, path in RUNNER.items():
        if not path.exists():
            tools.missing.append(f"the {arch} runner {path.relative_to(ROOT)}")
        elif path.stat().st_mtime < RUNNER_SOURCE.stat().st_mtime:
            tools.missing.append(f"an up-to-date {arch} runner ({path.name} is older than runner.cpp)")
    if os.access(NEWER_QEMU, os.X_OK):
        tools.qemu["newer"] = str(NEWER_QEMU)
    else:
        tools.missing_newer = (f"no newer QEMU at {NEWER_QEMU.relative_to(ROOT)} (set-up takes it "
                               "from Debian backports)")
    return tools


def command(target: str, cpu: Optional[Cpu], tools: Tools) -> list:
    """The argv prefix that runs the runner on ``target`` (:data:`X86` or a CPU key)."""
    if target == X86:
        return [str(RUNNER["x86_64"])]
    return [tools.qemu[cpu.qemu], "-cpu", _cpu_name(target), "-L", str(SYSROOT),
            str(RUNNER["aarch64"])]


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_inputs(path: Path, samples: Sequence[tuple]) -> None:
    """Every input of every sample as contiguous float32, in the order the runner reads them."""
    chunks = []
    for sample in samples:
        for t in sample:
            if t.dtype != torch.float32:
                raise TypeError(f"the runner feeds float32 inputs only, got {t.dtype}")
            chunks.append(t.detach().contiguous().numpy().tobytes())
    write_atomically(path, b"".join(chunks))


# ExecuTorch ScalarType codes (runtime/core/portable_type/scalar_type.h).
_DTYPES = {0: torch.uint8, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.int64,
           6: torch.float32, 11: torch.bool}


@dataclass
class RunResult:
    outputs: list  # per sample: list of tensors
    hwcap: int
    hwcap2: int

    def features(self) -> set:
        words = {1: self.hwcap, 2: self.hwcap2}
        return {name for name, (word, bit) in HWCAPS.items() if words[word] & bit}


class RunnerError(RuntimeError):
    """The runner failed or wrote something unreadable; the message has the command and its stderr."""


def parse_outputs(data: bytes) -> RunResult:
    if data[:8] != b"XQRUN1\0\0":
        raise RunnerError("the output file does not start with the runner's magic")
    hwcap, hwcap2, samples, outputs = struct.unpack_from("<QQII", data, 8)
    offset, result = 32, []
    for _ in range(samples):
        sample = []
        for _ in range(outputs):
            code, ndim = struct.unpack_from("<ii", data, offset)
            offset += 8
            sizes = struct.unpack_from(f"<{ndim}q", data, offset)
            offset += 8 * ndim
            (nbytes,) = struct.unpack_from("<Q", data, offset)
            offset += 8
            if code not in _DTYPES or offset + nbytes > len(data):
                raise RunnerError(f"bad output record (dtype code {code}, {nbytes} bytes)")
            raw = bytearray(data[offset:offset + nbytes])
            offset += nbytes
            sample.append(torch.frombuffer(raw, dtype=_DTYPES[code]).reshape(sizes) if nbytes
                          else torch.empty(sizes, dtype=_DTYPES[code]))
        result.append(sample)
    if offset != len(data):
        raise RunnerError(f"{len(data) - offset} trailing bytes in the output file")
    return RunResult(result, hwcap, hwcap2)


def run(argv: list, pte: Path, inputs: Path, outputs: Path) -> RunResult:
    """Run the runner once on every sample in ``inputs``; raise :class:`RunnerError` on failure."""
    full = [*argv, str(pte), str(inputs), str(outputs)]
    outputs.unlink(missing_ok=True)
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise RunnerError(f"timed out after {RUN_TIMEOUT_S} s: {' '.join(full)}") from exc
    if proc.returncode != 0:
        # ExecuTorch logs cpuinfo probing at info level; the error is in the last lines.
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise RunnerError(f"exit {proc.returncode}: {' '.join(full)}\n{tail}")
    return parse_outputs(outputs.read_bytes())


def bit_identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a.dtype == b.dtype and a.shape == b.shape
            and a.contiguous().numpy().tobytes() == b.contiguous().numpy().tobytes())


def describe_difference(got: torch.Tensor, want: torch.Tensor, step: Optional[float]) -> str:
    """How many values differ, the largest difference (in output steps when known) and where."""
    if got.dtype != want.dtype or got.shape != want.shape:
        return f"{got.dtype}{list(got.shape)} vs {want.dtype}{list(want.shape)}"
    g, w = got.double().flatten(), want.double().flatten()
    # NaN != NaN and -0.0 == 0.0 as numbers, so compare the bit patterns element by element.
    differ = torch.tensor([x.tobytes() != y.tobytes() for x, y in
                           zip(got.contiguous().numpy().reshape(-1), want.contiguous().numpy().reshape(-1))])
    diff = (g - w).abs().nan_to_num(float("inf"))
    i = int(torch.argmax(torch.where(differ, diff, torch.full_like(diff, -1.0))))
    steps = f" = {diff[i].item() / step:.3g} output steps" if step else ""
    return (f"{int(differ.sum())}/{differ.numel()} values differ, max |diff| {diff[i].item():.3g}{steps} "
            f"at flat index {i} ({g[i].item():.9g} vs {w[i].item():.9g})")
