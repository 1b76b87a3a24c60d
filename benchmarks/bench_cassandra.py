"""`CassandraByteStore` against raw cassandra-driver, side by side in one process.

The raw baseline is what a user of the driver writes on the natural table, ``key text
PRIMARY KEY, value blob``: prepared statements, writes with ``execute_concurrent_with_args``
(100 in flight), reads and deletes as concurrent single-partition statements (a single key:
one plain ``execute``), and the keys
of a prefix from a token-range scan of the table (paged by the driver, the prefix checked
in Python: a partition key has no range). Async: the same statements with ``execute_async``,
each future bridged to asyncio and gathered.

python benchmarks/bench_cassandra.py [--url cassandra://127.0.0.1:59042/kvstores_test
                                      ?replication_factor=1] [--batches 100] [--markdown] ...
python benchmarks/bench_cassandra.py --prefix-scaling [--url ...]

``--url`` defaults to $KVSTORES_TEST_CASSANDRA_URL; the defaults are 5,000 keys, batches 1
and 100 (the raw single-row statements make larger runs long). Each side gets a table of
its own, dropped at the end. ``--prefix-scaling`` instead times ``yield_keys(prefix=...)``
for 10 matching keys among 2,000 and among 200,000 keys.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmark this checkout

from cassandra.concurrent import execute_concurrent_with_args

from benchmarks._langchain import langchain_cassandra
from kvstores.benchmark import Case, Pair, build_parser, main
from kvstores.cassandra import CassandraByteStore
from kvstores.cassandra.connect import bridge

CONCURRENCY = 100


class RawCassandra:
    """The raw driver on ``key text PRIMARY KEY, value blob``, on the store's session."""

    def __init__(self, session: Any, keyspace: str, table: str) -> None:
        self.session, self.name = session, f"{keyspace}.{table}"
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {self.name} (key text PRIMARY KEY, value blob)"
        )
        self.insert = session.prepare(f"INSERT INTO {self.name} (key, value) VALUES (?, ?)")
        self.select = session.prepare(f"SELECT value FROM {self.name} WHERE key = ?")
        self.delete = session.prepare(f"DELETE FROM {self.name} WHERE key = ?")
        self.scan = session.prepare(f"SELECT key FROM {self.name}")

    def mset(self, pairs: Sequence[Pair], /) -> None:
        if len(pairs) == 1:
            self.session.execute(self.insert, pairs[0])
            return
        execute_concurrent_with_args(
            self.session, self.insert, pairs, concurrency=CONCURRENCY, raise_on_first_error=True
        )

    def mget(self, keys: Sequence[str], /) -> list[bytes | None]:
        if len(keys) == 1:
            return [(self.session.execute(self.select, (keys[0],)).one() or (None,))[0]]
        results = execute_concurrent_with_args(
            self.session,
            self.select,
            [(key,) for key in keys],
            concurrency=CONCURRENCY,
            raise_on_first_error=True,
        )
        return [(rows.one() or (None,))[0] for _, rows in results]

    def mdelete(self, keys: Sequence[str], /) -> None:
        if len(keys) == 1:
            self.session.execute(self.delete, (keys[0],))
            return
        execute_concurrent_with_args(
            self.session,
            self.delete,
            [(key,) for key in keys],
            concurrency=CONCURRENCY,
            raise_on_first_error=True,
        )

    def yield_keys(self, *, prefix: str) -> Iterator[str]:
        for (key,) in self.session.execute(self.scan):
            if key.startswith(prefix):
                yield key

    async def _all(self, statement: Any, rows: Sequence[tuple[Any, ...]]) -> list[Any]:
        execute = self.session.execute_async
        if len(rows) == 1:  # one plain await, no task
            return [await bridge(execute(statement, rows[0]))]
        return await asyncio.gather(*(bridge(execute(statement, row)) for row in rows))

    async def amset(self, pairs: Sequence[Pair], /) -> None:
        await self._all(self.insert, pairs)

    async def amget(self, keys: Sequence[str], /) -> list[bytes | None]:
        results = await self._all(self.select, [(key,) for key in keys])
        return [(rows.one() or (None,))[0] for rows in results]

    async def amdelete(self, keys: Sequence[str], /) -> None:
        await self._all(self.delete, [(key,) for key in keys])

    async def ayield_keys(self, *, prefix: str) -> AsyncIterator[str]:
        result = await bridge(self.session.execute_async(self.scan))
        while True:
            for (key,) in result.current_rows:
                if key.startswith(prefix):
                    yield key
            if not result.has_more_pages:
                return
            future = self.session.execute_async(self.scan, paging_state=result.paging_state)
            result = await bridge(future)

    def close(self) -> None:
        self.session.execute(f"DROP TABLE IF EXISTS {self.name}")


def _parser() -> argparse.ArgumentParser:
    parser = build_parser(__doc__)
    parser.set_defaults(keys=5000, batches=("1", "100"))
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "KVSTORES_TEST_CASSANDRA_URL",
            "cassandra://127.0.0.1:59042/kvstores_test?replication_factor=1",
        ),
        help="Cassandra (default: $KVSTORES_TEST_CASSANDRA_URL)",
    )
    parser.add_argument(
        "--prefix-scaling",
        action="store_true",
        help="time a prefix with 10 matches among 2,000 and 200,000 keys instead",
    )
    return parser


@contextmanager
def cases(args: argparse.Namespace) -> Iterator[list[Case]]:
    store = CassandraByteStore.from_url(args.url, table="bench_store")
    raw = RawCassandra(store.session, store.keyspace or "", "bench_raw")
    try:
        keyspace = store.keyspace or ""
        with langchain_cassandra(store.session, keyspace, "bench_langchain") as langchain:
            yield [Case(f"cassandra ({store.server_version()})", store, raw, langchain=langchain)]
    finally:
        store.session.execute(f"DROP TABLE IF EXISTS {store.keyspace}.bench_store")
        raw.close()
        store.close()


def prefix_scaling(url: str) -> None:
    """`yield_keys(prefix=...)` with 10 matches among 2,000 keys, then among 200,000."""
    store = CassandraByteStore.from_url(url, table="bench_scaling")
    try:
        total = 0
        print("keys in table  matches  yield_keys ms (median of 20)  ayield_keys ms")
        for size in (2_000, 200_000):
            fill = [(f"other/{i:07d}", b"v") for i in range(total, size - 10)]
            for start in range(0, len(fill), 1000):
                store.mset(fill[start : start + 1000])
            store.mset([(f"match/{i}", b"v") for i in range(10)])
            total = size

            def timed() -> float:
                started = time.perf_counter()
                assert len(list(store.yield_keys(prefix="match/"))) == 10
                return (time.perf_counter() - started) * 1000

            async def atimed() -> float:
                started = time.perf_counter()
                assert len([k async for k in store.ayield_keys(prefix="match/")]) == 10
                return (time.perf_counter() - started) * 1000

            sync_ms = statistics.median(timed() for _ in range(20))
            async_ms = statistics.median(asyncio.run(atimed()) for _ in range(20))
            print(f"{size:>13,}  {10:>7}  {sync_ms:>28.1f}  {async_ms:>14.1f}")
    finally:
        store.session.execute(f"DROP TABLE IF EXISTS {store.keyspace}.bench_scaling")
        store.close()


if __name__ == "__main__":
    if "--prefix-scaling" in sys.argv:
        prefix_scaling(_parser().parse_args().url)
    else:
        main(cases, description=__doc__, parser=_parser())
