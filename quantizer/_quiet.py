"""Known, harmless third-party warnings and log chatter, silenced inside xnnquant's own calls only.

torch, torchao and ExecuTorch print messages that say nothing about the user's
model: torch.export's deep copies of graph modules raise a ``FutureWarning``
(``isinstance(treespec, LeafSpec)``, from ``copyreg``) every time, and
importing torchao logs that its CUDA-only extensions did not load and that
``KernelPreference`` should not be a pytree constant.  xnnquant's public calls
run under :func:`quiet_third_party`, which ignores exactly those messages for
the duration of the call; filters are never changed globally, so the same
warning raised by the user's own code (their ``run_decompositions()``, say)
still shows, and so does anything not listed here.

Each entry below was looked at; add one only with the reason it is harmless.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
import warnings

#: (category, message regex, why it is harmless), passed to ``warnings.filterwarnings``.
KNOWN_WARNINGS = (
    (FutureWarning, r".*isinstance\(treespec, LeafSpec\).*",
     "torch's own pytree deprecation, raised by copy.deepcopy of every exported graph module"),
    (DeprecationWarning, r"(read_text|open_text|read_binary|open_binary) is deprecated",
     "ExecuTorch reads its schema files through importlib.resources' legacy API"),
    (DeprecationWarning, r"`torch.jit.script_method` is deprecated",
     "torch.utils.mkldnn, imported by ExecuTorch, still defines script methods"),
    # ExecuTorch's ExperimentalWarning subclasses DeprecationWarning.
    (DeprecationWarning, r"This API is experimental and subject to change without notice",
     "executorch.runtime's pybindings mark themselves experimental on import"),
)

#: (logger, message regex, why it is harmless): log records dropped during xnnquant's calls.
KNOWN_LOG_RECORDS = (
    ("torchao", r"Failed to load .*_C_\w*\.\S*\.so",
     "torchao's CUDA-only extensions do not load on a CPU wheel; nothing uses them here"),
    ("torch.utils._pytree", r"KernelPreference'> is an Enum subclass",
     "torchao registers its KernelPreference enum as a pytree constant, which torch now deprecates"),
)


class _DropKnownRecords(logging.Filter):
    def __init__(self, patterns):
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in self.patterns)


_LOG_FILTERS = {
    name: _DropKnownRecords([p for n, p, _why in KNOWN_LOG_RECORDS if n == name])
    for name in dict.fromkeys(n for n, _p, _why in KNOWN_LOG_RECORDS)
}

# warnings.catch_warnings saves and restores the process-wide filter list, so two
# threads inside overlapping calls would restore each other's state in the wrong
# order.  The first call to enter installs the filters, the last to leave removes
# them; in between, other threads also see the known messages ignored, nothing else.
_lock = threading.Lock()
_depth = 0
_catcher = None


def _enter() -> None:
    global _depth, _catcher
    with _lock:
        _depth += 1
        if _depth > 1:
            return
        _catcher = warnings.catch_warnings()
        _catcher.__enter__()
        for category, message, _why in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        for name, log_filter in _LOG_FILTERS.items():
            logging.getLogger(name).addFilter(log_filter)


def _exit() -> None:
    global _depth, _catcher
    with _lock:
        _depth -= 1
        if _depth > 0:
            return
        catcher, _catcher = _catcher, None
        catcher.__exit__(None, None, None)
        for name, log_filter in _LOG_FILTERS.items():
            logging.getLogger(name).removeFilter(log_filter)


@contextlib.contextmanager
def _quiet():
    _enter()
    try:
        yield
    finally:
        _exit()


def quiet_third_party(fn=None):
    """Ignore :data:`KNOWN_WARNINGS` and :data:`KNOWN_LOG_RECORDS` while ``fn`` (or a ``with`` block) runs.

    Use as a decorator (``@quiet_third_party``) or as a context manager
    (``with quiet_third_party():``).  Re-entrant and thread-safe; the previous
    filters and logger filters are back once the outermost call returns.
    """
    if fn is None:
        return _quiet()

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _quiet():
            return fn(*args, **kwargs)

    return wrapper


# xnnquant.quantizer imports torchao; doing it here, quietly, keeps torchao's
# import chatter out of the user's stderr when xnnquant is what imports it first.
with quiet_third_party():
    import torchao  # noqa: E402,F401
