"""Figures of the reliability tests: `record` keeps one row per measurement, and the
terminal summary (the conftest's hook) prints them as a table per part, so
``pytest integration_tests/reliability`` shows them without ``-s``.

If ``KVSTORES_RELIABILITY_REPORT`` names a file, each row is also appended to it as one
JSON line (``{"backend": ..., "part": ..., <figures>}``), for comparing runs.
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

__all__ = ["ROWS", "record", "tables", "write_summary"]

#: Every row recorded in this process, in order.
ROWS: list[dict[str, Any]] = []

REPORT_VARIABLE = "KVSTORES_RELIABILITY_REPORT"


def record(backend: str, part: str, **figures: Any) -> dict[str, Any]:
    """Keep a row of `figures` measured on `backend` in `part` (and append it to the
    ``KVSTORES_RELIABILITY_REPORT`` file if that is set); returns the row."""
    row = {"backend": backend, "part": part, **figures}
    ROWS.append(row)
    path = os.environ.get(REPORT_VARIABLE)
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(json.dumps(row, default=str) + "\n")
    return row


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def tables(rows: list[dict[str, Any]] | None = None) -> list[str]:
    """The rows as text tables, one per part (in the order parts were first recorded): a
    line per row, a column per figure (the union of the part's figures, in first-seen
    order; blank where a row lacks one)."""
    rows = ROWS if rows is None else rows
    parts: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        parts.setdefault(row["part"], []).append(row)
    lines: list[str] = []
    for part, part_rows in parts.items():
        columns = ["backend"]
        for row in part_rows:
            columns += [name for name in row if name not in columns and name != "part"]
        cells = [[_cell(row[name]) if name in row else "" for name in columns] for row in part_rows]
        widths = [max(len(text) for text in column) for column in zip(columns, *cells, strict=True)]
        if lines:
            lines.append("")
        lines.append(f"part: {part}")
        for number, line in enumerate([columns, *cells]):
            first = line[0].ljust(widths[0])
            rest = [text.rjust(width) for text, width in zip(line[1:], widths[1:], strict=True)]
            lines.append("  ".join([first, *rest]))
            if number == 0:
                lines.append("  ".join("-" * width for width in widths))
    return lines


class _Reporter(Protocol):
    def write_sep(self, sep: str, title: str) -> None: ...
    def write_line(self, line: str) -> None: ...


def write_summary(terminalreporter: _Reporter) -> None:
    """Print the tables in pytest's terminal summary (nothing if no row was recorded)."""
    if not ROWS:
        return
    terminalreporter.write_sep("=", "kvstores reliability figures")
    for line in tables():
        terminalreporter.write_line(line)
