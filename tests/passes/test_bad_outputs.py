"""Bad output paths and bad ``.pte`` files get a clear error, and nothing half-written (issue #10, part 3).

``PATH_CASES`` × ``WRITERS``: every way xnnquant writes a file
(``LoweredProgram.save``, ``lower_to_xnnpack(..., path=)``, the CLI's
``run --save`` and ``quantize -o``) meets a missing directory, a read-only
directory, a path that is a directory, a path under a file, and a disk that
fills during the write.  Each case names the error (type and message regex) or
the outcome, and every case checks that a file already at the path is intact
and that no temporary file is left.

``CORRUPTIONS`` × ``LOADERS``: every way xnnquant reads a ``.pte``
(``LoweredProgram.load``, ``inspect_pte``, ``xnnquant inspect``,
``xnnquant run``) meets truncated and corrupted files.  The loads run in one
subprocess, so that a segfault in the runtime fails these tests instead of
killing pytest.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch
from torch import nn

from xnnquant.passes import LoweredProgram, lower_to_xnnpack
from xnnquant.passes import cli
from xnnquant.quantizer import XnnpackQuantizer, quantize

X = (torch.randn(2, 8),)
_CACHE: dict = {}


def _lowered() -> tuple:
    """(converted graph, lowered program) of a small Linear, made once per module."""
    if "lowered" not in _CACHE:
        torch.manual_seed(0)
        converted = quantize(nn.Linear(8, 6).eval(), X, None, XnnpackQuantizer(), alarm_sqnr_db=None)
        _CACHE["lowered"] = (converted, lower_to_xnnpack(converted, X))
    return _CACHE["lowered"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A .pte, its samples for ``xnnquant run``, and a .pt2 for ``xnnquant quantize``."""
    d = tmp_path_factory.mktemp("bad_outputs")
    _lowered()[1].save(d / "good.pte")
    torch.save([X], d / "samples.pt")
    torch.manual_seed(0)
    torch.export.save(torch.export.export(nn.Linear(8, 6).eval(), X), d / "net.pt2")
    return d


class CliError(Exception):
    """``xnnquant`` exited with status 2; the message is its one error line."""


def _cli(argv, capsys) -> None:
    status = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    if status != 0:
        lines = [line for line in err.splitlines() if line.startswith("xnnquant ")]
        assert status == cli.EXIT_BAD_INPUT and len(lines) == 1, (status, err)
        raise CliError(lines[0])


WRITERS = {
    "LoweredProgram.save": lambda target, files, capsys: _lowered()[1].save(target),
    "lower_to_xnnpack(path=)": lambda target, files, capsys: lower_to_xnnpack(
        _lowered()[0], X, path=target, self_check=False),
    "xnnquant run --save": lambda target, files, capsys: _cli(
        ["run", files / "good.pte", "--input", files / "samples.pt", "--save", target,
         "--iters", "1", "--warmup", "0"], capsys),
    "xnnquant quantize -o": lambda target, files, capsys: _cli(
        ["quantize", files / "net.pt2", "-o", target, "--random", "1", "-q"], capsys),
}


def _short_writes_then_enospc(monkeypatch):
    """os.write writes part of the data, then fails as a full disk does (for files, not stdio)."""
    real = os.write
    calls = {"n": 0}

    def write(fd, data):
        if fd <= 2:
            return real(fd, data)
        calls["n"] += 1
        if calls["n"] == 1:
            return real(fd, bytes(data)[: max(1, len(data) // 2)])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", write)


def _eacces_on_create(monkeypatch):
    """The temporary file cannot be created, as in a directory this user may not write."""
    import tempfile

    def mkstemp(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def _read_only(directory: Path):
    directory.chmod(0o555)
    probe = directory / ".probe"
    try:
        probe.write_bytes(b"")
    except PermissionError:
        return
    probe.unlink()
    directory.chmod(0o755)
    pytest.skip("chmod does not stop this user from writing (root): the simulated EACCES case "
                "covers the message instead")


@dataclass(frozen=True)
class PathCase:
    target: Callable[[Path], Path]  # the path to write, from an empty directory
    error: Optional[type]  # None: the write succeeds
    match: str = ""  # regex on the library's message (and the CLI's line)
    setup: Optional[Callable] = None  # (monkeypatch, directory) before writing
    old_file: bool = True  # a file is at the target before the write


PATH_CASES = {
    "missing directory is created": PathCase(lambda d: d / "new" / "deeper" / "model.pte", None,
                                             old_file=False),
    "read-only directory": PathCase(
        lambda d: d / "ro" / "model.pte", PermissionError, r"not writable|may not write in",
        setup=lambda mp, d: _read_only(d / "ro"), old_file=False),
    "permission denied (simulated EACCES)": PathCase(
        lambda d: d / "model.pte", PermissionError,
        r"Permission denied; this user may not write in .*: write somewhere else",
        setup=lambda mp, d: _eacces_on_create(mp)),
    "path is a directory": PathCase(lambda d: d / "adir", IsADirectoryError,
                                    r"is a directory.{0,2} give a file name", old_file=False),
    "path under a file": PathCase(lambda d: d / "afile" / "model.pte", OSError, r"not a directory",
                                  old_file=False),
    "disk fills during the write": PathCase(
        lambda d: d / "model.pte", OSError,
        r"No space left on device; the disk is full: free some space or write somewhere else\. "
        r"Nothing was written",
        setup=lambda mp, d: _short_writes_then_enospc(mp)),
}


def _listing(directory: Path) -> dict:
    return {p.relative_to(directory).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(directory.rglob("*"))}


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("case", sorted(PATH_CASES))
def test_bad_output_path(case, writer, tmp_path, files, monkeypatch, capsys):
    spec = PATH_CASES[case]
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir" / "inside").write_bytes(b"keep")
    (tmp_path / "afile").write_bytes(b"a file")
    (tmp_path / "ro").mkdir()
    target = spec.target(tmp_path)
    if spec.old_file:
        target.write_bytes(b"previous contents")
    before = _listing(tmp_path)
    if spec.setup is not None:
        spec.setup(monkeypatch, tmp_path)
    try:
        if spec.error is None:
            WRITERS[writer](target, files, capsys)
            assert target.read_bytes()[4:8] == b"ET12" or writer == "xnnquant run --save"
            assert target.stat().st_size > 0
            return
        expected = CliError if writer.startswith("xnnquant") else spec.error
        with pytest.raises(expected) as info:
            WRITERS[writer](target, files, capsys)
        message = str(info.value)
        assert re.search(spec.match, message), message
        if expected is not CliError:
            assert str(target) in message, message  # names the file asked for, not the temp file
    finally:
        monkeypatch.undo()
        (tmp_path / "ro").chmod(0o755)
    after = _listing(tmp_path)
    assert after == before, "the failed write changed or left files"
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_failed_write_keeps_the_errno_for_callers(tmp_path, monkeypatch):
    target = tmp_path / "model.pte"
    _short_writes_then_enospc(monkeypatch)
    with pytest.raises(OSError) as info:
        _lowered()[1].save(target)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert isinstance(info.value.__cause__, OSError)


# --------------------------------------------------------------------------- corrupt .pte files


def _xnnpack_payload_offset(data: bytes) -> int:
    at = data.find(b"XH00")  # the XNNPACK delegate header's magic
    assert at > 0, "no XNNPACK delegate in the test program"
    return at


def _zero(data: bytes, start: int, length: int) -> bytes:
    return data[:start] + bytes(length) + data[start + length:]


def _flip_every(data: bytes, start: int, stride: int) -> bytes:
    out = bytearray(data)
    for i in range(start, len(out), stride):
        out[i] ^= 0xFF
    return bytes(out)


CORRUPTIONS = {
    "empty file": lambda b: b"",
    "first 12 bytes only": lambda b: b[:12],
    "truncated at half": lambda b: b[: len(b) // 2],
    "last 8 bytes missing": lambda b: b[:-8],
    "header sizes overwritten": lambda b: b[:16] + b"\xff" * 48 + b[64:],
    "bytes flipped throughout": lambda b: _flip_every(b, 100, 37),
    "XNNPACK payload zeroed": lambda b: _zero(b, _xnnpack_payload_offset(b) + 32, 200),
    "text file": lambda b: b"this is not a program\n" * 10,
}

# loader → (error it raises or reports, message regex); the runtime's and parser's words vary.
LOADERS = {
    "LoweredProgram.load": ("ProgramError", r"could not (load the program|load method 'forward').*"
                                            r"(truncated or corrupted|corrupted).*[Ll]ower .*again"),
    "inspect_pte": ("PteFormatError", r"not an ExecuTorch program|truncated or corrupt, write it again"),
    "xnnquant inspect": ("exit 2", r"^xnnquant inspect: error: .*(not an ExecuTorch program|truncated "
                                   r"or corrupt)"),
    "xnnquant run": ("exit 2", r"^xnnquant run: error: .*(not an ExecuTorch program|truncated or "
                               r"corrupt|corrupted)"),
}

# inspect_pte reads the program's flatbuffer, not the delegate's bytes: a zeroed payload
# parses (it is reported as it is) and only the runtime finds it broken.
LOADS_FINE = {("XNNPACK payload zeroed", "inspect_pte"), ("XNNPACK payload zeroed", "xnnquant inspect")}

WORKER = textwrap.dedent("""
    import contextlib, io, json, sys
    from xnnquant.passes import LoweredProgram, cli
    from xnnquant.passes.inspect_pte import inspect_pte

    def cli_line(argv):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = cli.main(argv)
        if status == 0:
            return None
        lines = [l for l in err.getvalue().splitlines() if l.startswith("xnnquant ")]
        return ["exit 2" if status == 2 else f"exit {status}", lines[-1] if lines else err.getvalue()]

    loaders = {
        "LoweredProgram.load": lambda p: LoweredProgram.load(p).run(*__import__("torch").randn(1, 2, 8)),
        "inspect_pte": inspect_pte,
        "xnnquant inspect": lambda p: cli_line(["inspect", p]),
        "xnnquant run": lambda p: cli_line(["run", p, "--input", sys.argv[2], "--iters", "1",
                                            "--warmup", "0"]),
    }
    for path, loader in json.loads(sys.argv[1]):
        print(json.dumps([path, loader, "started"]), flush=True)
        try:
            got = loaders[loader](path)
            result = got if isinstance(got, list) else None
        except Exception as exc:
            result = [type(exc).__name__, str(exc)]
        print(json.dumps([path, loader, result]), flush=True)
""")


def _load_results(files) -> dict:
    """(corruption, loader) → None (loaded) or [error, message], from one subprocess for all."""
    if "loads" in _CACHE:
        return _CACHE["loads"]
    good = (files / "good.pte").read_bytes()
    jobs, names = [], {}
    for i, (name, corrupt) in enumerate(sorted(CORRUPTIONS.items())):
        path = files / f"corrupt_{i}.pte"
        path.write_bytes(corrupt(good))
        names[str(path)] = name
        jobs += [(str(path), loader) for loader in LOADERS]
    done = subprocess.run([sys.executable, "-c", WORKER, json.dumps(jobs), str(files / "samples.pt")],
                          capture_output=True, text=True, timeout=600)
    results, last = {}, None
    for line in done.stdout.splitlines():
        path, loader, result = json.loads(line)
        if result == "started":
            last = (names[path], loader)
            continue
        results[(names[path], loader)] = result
    if done.returncode != 0 and last is not None and last not in results:
        results[last] = ["crashed", f"exit status {done.returncode} (-11 is a segfault)\n{done.stderr[-2000:]}"]
    _CACHE["loads"] = results
    return results


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_pte_gets_a_clear_error(corruption, loader, files):
    results = _load_results(files)
    assert (corruption, loader) in results, "the worker died before this load (see another case)"
    result = results[(corruption, loader)]
    if (corruption, loader) in LOADS_FINE and (result is None or result[0] == LOADERS[loader][0]):
        return
    assert result is not None, "a corrupt .pte loaded without an error"
    error, pattern = LOADERS[loader]
    assert result[0] == error, result
    assert re.search(pattern, result[1], re.S), result[1]


def test_good_pte_loads_in_every_loader(files):
    # The other side of the table: the loaders do accept a file that is fine.
    lowered = LoweredProgram.load(files / "good.pte")
    torch.testing.assert_close(lowered.run(*X)[0], _lowered()[1].run(*X)[0])
