"""`kvstores.benchmark`: what the runner does around the timed runs."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from kvstores.benchmark import (
    HEADERS,
    LANGCHAIN_HEADERS,
    BenchmarkError,
    Case,
    Config,
    Pair,
    format_table,
    main,
    run,
)
from kvstores.memory import InMemoryByteStore


class Logged(InMemoryByteStore):
    """An in-memory store that logs which methods were called, in order."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def mset(self, key_value_pairs: Sequence[Pair]) -> None:
        self.log.append("mset")
        super().mset(key_value_pairs)

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        self.log.append("mget")
        return super().mget(keys)

    def mdelete(self, keys: Sequence[str]) -> None:
        self.log.append("mdelete")
        super().mdelete(keys)


def test_settle_follows_every_timed_write() -> None:
    # A read op must not find the writes of the op before it unsettled (PostgreSQL: not
    # yet vacuumed), whichever side autovacuum happened to reach first.
    log: list[str] = []
    case = Case("memory", Logged(log), settle=lambda target: log.append("settle"))
    ops = ("mset", "mget", "mdelete")
    config = Config(keys=40, batches=(10,), rounds=1, min_time=0, use_async=False, ops=ops)
    run([case], config, progress=False)
    timed_mset = len(log) - log[::-1].index("mset") - 1  # the last: the mset op's
    first_read = log.index("mget", timed_mset)
    assert "settle" in log[timed_mset:first_read], log
    assert log[-1] == "settle", log  # after the mdelete op


# The LangChain side and --json

SMALL = ["--keys", "40", "--batches", "10", "--rounds", "2", "--min-time", "0", "--quiet"]


@contextmanager
def _memory_cases(args: argparse.Namespace) -> Iterator[list[Case]]:
    lc_store = pytest.importorskip("langchain_core.stores").InMemoryByteStore()
    yield [Case("memory", InMemoryByteStore(), InMemoryByteStore(), langchain=lc_store)]


@contextmanager
def _two_sided_cases(args: argparse.Namespace) -> Iterator[list[Case]]:
    yield [Case("memory", InMemoryByteStore(), InMemoryByteStore())]


def test_langchain_side_is_timed_and_written_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "results.jsonl"
    argv = [*SMALL, "--ops", "mset,mget,yield_keys,amget,ayield_keys", "--json", str(path)]
    results = main(_memory_cases, argv=argv)
    assert [(r.op, r.batch) for r in results] == [
        ("mset", 10),
        ("mget_hits", 10),
        ("mget_misses", 10),
        ("yield_keys", None),
        ("amget_hits", 10),
        ("amget_misses", 10),
        ("ayield_keys", None),
    ]
    for r in results:
        assert len(r.kvstores) == len(r.raw) == len(r.langchain) == 2
        assert r.langchain_ratio() == r.rate("langchain") / r.rate("raw")
    out = capsys.readouterr().out
    assert "langchain keys/s" in out
    assert "lc ratio" in out
    assert "lc ratio = langchain / raw." in out

    main(_two_sided_cases, argv=[*SMALL, "--ops", "mdelete", "--no-async", "--json", str(path)])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    runs = [line for line in lines if line["kind"] == "run"]
    assert len(runs) == 2  # appended, not overwritten
    assert {"date", "python", "machine", "command", "config"} <= runs[0].keys()
    assert runs[0]["config"]["rounds"] == 2
    first = [line for line in lines if line["kind"] == "result" and line["run"] == runs[0]["run"]]
    assert len(first) == len(results)
    for line, r in zip(first, results, strict=True):
        assert (line["backend"], line["op"], line["batch"]) == (r.backend, r.op, r.batch)
        assert line["stat"] == "best"
        assert line["rounds"] == 2
        assert line["kvstores"] == r.rate("kvstores")
        assert line["raw"] == r.rate("raw")
        assert line["langchain"] == r.rate("langchain")
        assert line["ratio"] == r.ratio()
        assert line["langchain_ratio"] == r.langchain_ratio()
        assert line["samples"]["langchain"] == r.langchain
    (second,) = [line for line in lines if line["run"] == runs[1]["run"] and "op" in line]
    assert second["op"] == "mdelete"
    assert second["langchain"] is None
    assert second["langchain_ratio"] is None


def test_table_without_a_langchain_side_is_unchanged() -> None:
    results = run([Case("memory", InMemoryByteStore(), InMemoryByteStore())], TINY, progress=False)
    header = format_table(results).splitlines()[0].split()
    assert header == ["backend", "op", "batch", "kvstores", "keys/s", "raw", "keys/s", "ratio"]
    markdown = format_table(results, markdown=True).splitlines()[0]
    assert markdown == "| " + " | ".join(HEADERS) + " |"


def test_table_with_a_langchain_side_in_some_cases() -> None:
    lc_store = pytest.importorskip("langchain_core.stores").InMemoryByteStore()
    cases = [
        Case("with", InMemoryByteStore(), InMemoryByteStore(), langchain=lc_store),
        Case("without", InMemoryByteStore(), InMemoryByteStore()),
    ]
    results = run(cases, TINY, progress=False)
    lines = format_table(results, markdown=True).splitlines()
    assert lines[0] == "| " + " | ".join((*HEADERS, *LANGCHAIN_HEADERS)) + " |"
    with_row, without_row = lines[2].split(" | "), lines[-1].split(" | ")
    assert with_row[-1].rstrip(" |") != "-"
    assert without_row[-2:] == ["-", "- |"]


def test_a_langchain_side_that_misbehaves_is_caught() -> None:
    class Forgetful(InMemoryByteStore):
        def mset(self, key_value_pairs: Sequence[Pair]) -> None:
            pass

    case = Case("memory", InMemoryByteStore(), InMemoryByteStore(), langchain=Forgetful())
    with pytest.raises(BenchmarkError, match="langchain: mget/amget"):
        run([case], TINY, progress=False)


TINY = Config(keys=20, batches=(10,), rounds=1, min_time=0, use_async=False, ops=("mget",))
