"""The fuzz suites' counts at the end of the run."""

from __future__ import annotations

import pytest

from .tally import summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = summary()
    if lines:
        terminalreporter.write_sep("-", "fuzz counts")
        for line in lines:
            terminalreporter.write_line(line)
