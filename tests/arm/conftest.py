"""Prints one line at the end of any pytest run that collected the ARM test: what it covered, or why it skipped."""

from tests.arm import harness


def pytest_terminal_summary(terminalreporter):
    s = harness.SUMMARY
    if "skipped" in s:
        terminalreporter.write_line(f"ARM: SKIPPED, missing {s['skipped']}. {harness.SETUP_HINT}",
                                    yellow=True)
    elif "failed" in s:
        terminalreporter.write_line(f"ARM: FAILED, CI=true and missing {s['failed']}. {harness.SETUP_HINT}",
                                    red=True)
    elif "programs" in s:
        terminalreporter.write_line(
            f"ARM: {s['programs']} programs x {s['inputs']} inputs on x86 runner + {len(s['cpus'])} emulated "
            f"CPUs ({', '.join(s['cpus'])}): {s['identical']}/{s['runs']} runs bit-identical to x86; "
            f"max |output - reference| = {s['max_ref_steps']:.3g} output steps")
