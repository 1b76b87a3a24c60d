"""The benchmark harness of the ``benchmarks/bench_*.py`` scripts: a re-export.

The runner lives in `kvstores.benchmark` (also what ``kvstores bench URL`` runs); see its
documentation. This module keeps ``from benchmarks.harness import ...`` working.
"""

from __future__ import annotations

from kvstores.benchmark import (
    HEADERS,
    OPS,
    STORE_HEADERS,
    BenchmarkError,
    Case,
    CaseFactory,
    Config,
    Op,
    Pair,
    Progress,
    ProgressCallback,
    Result,
    State,
    Target,
    ThreadedBaseline,
    Work,
    Workload,
    _Loop,  # noqa: F401 - bench_sql.py adjusts how the event loop closes
    build_parser,
    check_ops,
    config_from_args,
    describe,
    format_table,
    main,
    plan,
    run,
)

__all__ = [
    "HEADERS",
    "OPS",
    "STORE_HEADERS",
    "BenchmarkError",
    "Case",
    "CaseFactory",
    "Config",
    "Op",
    "Pair",
    "Progress",
    "ProgressCallback",
    "Result",
    "State",
    "Target",
    "ThreadedBaseline",
    "Work",
    "Workload",
    "build_parser",
    "check_ops",
    "config_from_args",
    "describe",
    "format_table",
    "main",
    "plan",
    "run",
]
