"""`benchmarks/_langchain.py`: LangChain's stores as the bench scripts' third side."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest

from benchmarks import _langchain as lc  # the repository root is on the path (pytest)
from kvstores.benchmark import Case, Config, Pair, run
from kvstores.memory import InMemoryByteStore

CONFIG = Config(keys=40, batches=(10,), rounds=1, min_time=0, ops=("mset", "mget", "yield_keys"))


def test_a_missing_package_leaves_the_side_out_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "langchain_core.stores", None)
    with lc.langchain_memory() as side:
        assert side is None
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert "pip install langchain-core" in err[0]


def test_the_memory_side_runs_in_the_harness() -> None:
    pytest.importorskip("langchain_core.stores")
    with lc.langchain_memory() as side:
        case = Case("memory", InMemoryByteStore(), InMemoryByteStore(), langchain=side)
        results = run([case], CONFIG, progress=False)
    assert all(r.has_langchain for r in results)


class AtMost(InMemoryByteStore):
    """Refuses calls of more than `limit` keys, as the Data API refuses a long $in."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        assert len(keys) <= self.limit
        return super().mget(keys)

    def mdelete(self, keys: Sequence[str]) -> None:
        assert len(keys) <= self.limit
        super().mdelete(keys)


def test_in_limit_splits_reads_and_deletes() -> None:
    store = AtMost(3)
    side = lc.InLimit(store, limit=3)
    side.mset([(f"k{i}", b"v") for i in range(10)])
    assert side.mget([f"k{i}" for i in range(11)]) == [b"v"] * 10 + [None]
    side.mdelete([f"k{i}" for i in range(10)])
    assert list(store.yield_keys()) == []
    case = Case("m", InMemoryByteStore(), InMemoryByteStore(), langchain=side)
    assert all(r.has_langchain for r in run([case], CONFIG, progress=False))


class Recorder:
    """Records which of the store methods were called."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def mset(self, pairs: Sequence[Pair]) -> None:
        self.calls.append("mset")

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        self.calls.append("mget")
        return [None] * len(keys)

    def mdelete(self, keys: Sequence[str]) -> None:
        self.calls.append("mdelete")

    def yield_keys(self, *, prefix: str) -> Iterator[str]:
        self.calls.append("yield_keys")
        yield from ()

    async def amset(self, pairs: Sequence[Pair]) -> None:
        self.calls.append("amset")

    async def amget(self, keys: Sequence[str]) -> list[bytes | None]:
        self.calls.append("amget")
        return [None] * len(keys)

    async def amdelete(self, keys: Sequence[str]) -> None:
        self.calls.append("amdelete")

    async def ayield_keys(self, *, prefix: str) -> AsyncIterator[str]:
        self.calls.append("ayield_keys")
        for key in ():
            yield key


def test_sync_async_sends_each_kind_of_call_to_its_store() -> None:
    sync, async_ = Recorder(), Recorder()
    side = lc.SyncAsync(sync, async_)
    side.mset([("k", b"v")])
    assert side.mget(["k"]) == [None]
    side.mdelete(["k"])
    assert list(side.yield_keys(prefix="")) == []

    async def twins() -> None:
        await side.amset([("k", b"v")])
        assert await side.amget(["k"]) == [None]
        await side.amdelete(["k"])
        assert [key async for key in side.ayield_keys(prefix="")] == []

    asyncio.run(twins())
    assert sync.calls == ["mset", "mget", "mdelete", "yield_keys"]
    assert async_.calls == ["amset", "amget", "amdelete", "ayield_keys"]


def test_glob_prefix_lists_a_prefix_from_a_store_taking_a_pattern() -> None:
    class Pattern(InMemoryByteStore):  # as RedisStore: the prefix is a glob pattern
        def yield_keys(self, *, prefix: str | None = None):  # type: ignore[no-untyped-def]
            assert prefix is not None
            assert prefix.endswith("*")
            return super().yield_keys(prefix=prefix[:-1].replace("\\", ""))

    side = lc.GlobPrefix(Pattern())
    side.mset([("a/1", b"x"), ("a*/2", b"y"), ("b/3", b"z")])
    assert sorted(side.yield_keys(prefix="a/")) == ["a/1"]
    assert sorted(side.yield_keys(prefix="a*")) == ["a*/2"]
