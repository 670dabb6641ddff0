"""The ``xnnquant`` console script, run as a user runs it: in a subprocess, on files.

The "done when" of the CLI: a ``.pt2`` and a ``.pt`` of sample inputs give a
fully delegated int8 ``.pte`` and a JSON report in one command, on both IRs.
Bad input ends with exit status 2 and one line on stderr, and writes nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import torch

# ``python -m`` rather than the installed script, so the test runs this tree's code.
CLI = [sys.executable, "-m", "xnnquant.passes.cli"]


class SmallNet(torch.nn.Module):
    """conv → relu → mean → linear: the ops of both IRs' main patterns, lowered in seconds."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def error_lines(proc) -> list:
    # The ExecuTorch runtime's C++ cpuinfo probe writes to fd 2 on x86; it is not the CLI's output.
    return [line for line in proc.stderr.splitlines() if not line.startswith("[cpuinfo")]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A saved program, calibration samples in the accepted layouts, and one bad file of each kind."""
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = SmallNet().eval()
    x = (torch.randn(1, 3, 8, 8),)
    torch.export.save(torch.export.export(model, x), d / "net.pt2")
    torch.save([(torch.randn(1, 3, 8, 8),) for _ in range(4)], d / "samples.pt")
    torch.save({"x": [torch.randn(1, 3, 8, 8) for _ in range(3)]}, d / "named.pt")
    torch.save([(torch.randn(1, 3, 9, 9),)], d / "wrong_shape.pt")
    torch.save([(torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8))], d / "two_inputs.pt")
    torch.save({"y": torch.randn(1, 3, 8, 8)}, d / "wrong_name.pt")
    (d / "not_a_program.pt2").write_text("hello")
    (d / "a_file").write_text("")
    return d


_QUANTIZED: dict = {}


@pytest.fixture
def quantized(files):
    """(process, .pte path, report path) of ``xnnquant quantize`` on ``net.pt2``, once per IR."""

    def get(ir):
        if ir not in _QUANTIZED:
            pte, report = files / f"net_{ir}.pte", files / f"net_{ir}.json"
            proc = run_cli("quantize", files / "net.pt2", "-o", pte, "--calibration",
                           files / "samples.pt", "--ir", ir, "--report", report,
                           "--require-full-delegation")
            _QUANTIZED[ir] = (proc, pte, report)
        return _QUANTIZED[ir]

    return get


# --------------------------------------------------------------------------- help and version


@pytest.mark.parametrize("command", [[], ["quantize"], ["inspect"], ["run"]])
def test_every_subcommand_has_help(command):
    proc = run_cli(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: xnnquant")
    if command:
        assert "positional arguments" in proc.stdout


def test_version_is_the_package_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"xnnquant {version('xnnquant')}"


# --------------------------------------------------------------------------- the done-when


@pytest.mark.slow
@pytest.mark.parametrize("ir", ["training", "core"])
def test_pt2_and_samples_give_a_fully_delegated_int8_pte_and_a_report(quantized, ir):
    proc, pte, report_path = quantized(ir)
    assert proc.returncode == 0, proc.stderr
    assert pte.read_bytes()[4:8].startswith(b"ET")
    report = json.loads(report_path.read_text())
    assert report["ir"] == ir and report["calibration"]["samples"] == 4
    assert report["fully_delegated"] is True
    assert report["delegation"]["num_delegates"] == 1
    assert report["delegation"]["self_check"]["passed"] is True
    annotation = report["annotation"]
    assert annotation["float"] == 0
    assert {"conv", "linear", "mean"} <= set(annotation["patterns"])
    # What was printed is the same summary the report holds.
    assert f"{annotation['quantized']} nodes quantized" in proc.stdout
    assert "ops outside: none" in proc.stdout
    assert not list(pte.parent.glob(".*.tmp")), "a temporary file was left behind"


@pytest.mark.slow
def test_inspect_reads_the_pte_without_running_it(quantized):
    _, pte, report_path = quantized("core")
    proc = run_cli("inspect", pte, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["size"] == pte.stat().st_size == json.loads(report_path.read_text())["delegation"]["pte_size"]
    (method,) = summary["methods"]
    assert method["ops_outside"] == {} and summary["fully_delegated"] is True
    (delegate,) = method["delegates"]
    assert delegate["backend"] == "XnnpackBackend"
    assert delegate["nodes"]["Conv2d"] == 1 and delegate["nodes"]["FullyConnected"] == 1
    assert delegate["values"]["qint8"] > 0
    # conv and linear weights: 8 + 4 output channels, each with a positive scale.
    assert sorted(c for c, _, _ in delegate["per_channel"]) == [4, 8]
    assert all(lo > 0 for _, lo, _ in delegate["per_channel"])
    text = run_cli("inspect", pte)
    assert text.returncode == 0 and "ops outside delegates: none" in text.stdout


@pytest.mark.slow
def test_run_prints_shapes_and_saves_outputs(quantized, files):
    _, pte, _ = quantized("core")
    out = files / "outputs.pt"
    proc = run_cli("run", pte, "--input", files / "samples.pt", "--save", out, "--iters", "3")
    assert proc.returncode == 0, proc.stderr
    assert "output 0: float32[1, 4]" in proc.stdout and "latency: median" in proc.stdout
    outputs = torch.load(out)
    assert len(outputs) == 4 and all(o[0].shape == (1, 4) for o in outputs)
    # The .pte computes the model: compare with the float model on the same samples.
    ep = torch.export.load(files / "net.pt2")
    samples = torch.load(files / "samples.pt")
    for (x,), (y,) in zip(samples, outputs):
        expected = ep.module()(x)
        assert (y - expected).abs().max() < 0.1 * expected.abs().max() + 1e-3


@pytest.mark.slow
def test_named_samples_exclude_and_per_tensor(files):
    pte, report_path = files / "excluded.pte", files / "excluded.json"
    proc = run_cli("quantize", files / "net.pt2", "-o", pte, "--calibration", files / "named.pt",
                   "--exclude", "fc", "--config", "per-tensor", "--ir", "core", "--report", report_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(report_path.read_text())
    assert report["calibration"]["samples"] == 3 and report["exclude"] == ["fc"]
    left_float = [d for d in report["annotation"]["decisions"] if not d["quantized"]]
    assert left_float and all("module name 'fc'" in d["reason"] for d in left_float)
    assert {d["op"] for d in left_float} >= {"aten.addmm.default"}
    assert "left in float" in proc.stdout and "module name 'fc'" in proc.stdout


@pytest.mark.slow
def test_random_is_a_smoke_run_that_warns_and_is_reproducible(files):
    first, second = files / "random_1.pte", files / "random_2.pte"
    runs = [run_cli("quantize", files / "net.pt2", "-o", out, "--random", "2", "-q",
                    "--report", out.with_suffix(".json"))
            for out in (first, second)]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
        assert "accuracy says nothing" in proc.stderr
        assert proc.stdout == ""  # -q
    assert first.read_bytes() == second.read_bytes()
    reports = [json.loads(out.with_suffix(".json").read_text()) for out in (first, second)]
    assert reports[0].pop("output") != reports[1].pop("output")
    assert reports[0] == reports[1]  # no timestamps or timings: same input, same report
    assert reports[0]["calibration"]["source"] == "random (2 samples, seed 0)"


# --------------------------------------------------------------------------- bad input

BAD_INPUTS = {
    "missing model": (["quantize", "{d}/nope.pt2", "-o", "{d}/o.pte", "--random", "1"], "no such file"),
    "not an exported program": (["quantize", "{d}/not_a_program.pt2", "-o", "{d}/o.pte", "--random", "1"],
                                "not an exported program"),
    "samples file as model": (["quantize", "{d}/samples.pt", "-o", "{d}/o.pte", "--random", "1"],
                              "not an exported program"),
    "wrong sample shape": (["quantize", "{d}/net.pt2", "-o", "{d}/o.pte", "--calibration", "{d}/wrong_shape.pt"],
                           "shape (1, 3, 9, 9), the program takes (1, 3, 8, 8)"),
    "wrong number of inputs": (["quantize", "{d}/net.pt2", "-o", "{d}/o.pte", "--calibration",
                                "{d}/two_inputs.pt"], "2 inputs, the program takes 1 (x)"),
    "wrong input name": (["quantize", "{d}/net.pt2", "-o", "{d}/o.pte", "--calibration", "{d}/wrong_name.pt"],
                         "do not match the program's inputs ['x']"),
    "calibration not tensors": (["quantize", "{d}/net.pt2", "-o", "{d}/o.pte", "--calibration",
                                 "{d}/not_a_program.pt2"], "not a file of tensors saved with torch.save"),
    "output under a file": (["quantize", "{d}/net.pt2", "-o", "{d}/a_file/o.pte", "--random", "1"],
                            "is not a directory"),
    "output is a directory": (["quantize", "{d}/net.pt2", "-o", "{d}", "--random", "1"], "is a directory"),
    "unknown module to exclude": (["quantize", "{d}/net.pt2", "-o", "{d}/o.pte", "--random", "1",
                                   "--exclude", "fc2"], "no module of that name in the program (modules: conv, fc)"),
    "inspect a non-pte": (["inspect", "{d}/not_a_program.pt2"], "not an ExecuTorch program"),
    "inspect a missing file": (["inspect", "{d}/nope.pte"], "no such file"),
    "run a non-pte": (["run", "{d}/not_a_program.pt2", "--input", "{d}/samples.pt"],
                      "not an ExecuTorch program"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(files, case):
    argv, reason = BAD_INPUTS[case]
    proc = run_cli(*(a.format(d=files) for a in argv))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"xnnquant {argv[0]}: error: ") and reason in lines[0], lines[0]
    assert not (files / "o.pte").exists()
    assert not list(files.glob(".*.tmp"))


@pytest.mark.slow
def test_run_rejects_inputs_that_do_not_match_the_pte(quantized, files):
    _, pte, _ = quantized("core")
    proc = run_cli("run", pte, "--input", files / "wrong_shape.pt")
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert "shape (1, 3, 9, 9), the program takes (1, 3, 8, 8)" in line


def test_console_script_is_declared():
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'xnnquant = "xnnquant.passes.cli:main"' in pyproject
