"""The reliability tests' pytest hooks; the logic lives in report.py and soak.py."""

from __future__ import annotations

import pytest

from integration_tests.reliability.report import write_summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures the tests recorded, as a table per part."""
    write_summary(terminalreporter)
