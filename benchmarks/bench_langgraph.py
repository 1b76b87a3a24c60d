"""`kvstores.langgraph.LangGraphStore` against LangGraph's own stores, side by side in one
process: over PostgreSQL against `PostgresStore` (langgraph-checkpoint-postgres) on the same
server, and over memory against `InMemoryStore`.

python benchmarks/bench_langgraph.py [--postgres postgresql://user:pw@host:port/db]
                                     [--items 2000] [--batch 100] [--rounds 5]

``--postgres`` defaults to $KVSTORES_TEST_POSTGRES_URL (the SQLAlchemy form is accepted). Each
phase is timed on both sides, best of the rounds, and printed as items per second and the
ratio kvstores ÷ LangGraph (above 1: kvstores is faster):

- ``put``: batches of `--batch` `PutOp`s (new items, then overwrites), through ``batch``;
- ``get``: batches of `--batch` `GetOp`s;
- ``search``: a filtered search (``{"kind": "even", "n": {"$gte": ...}}``, limit 10) over
  a namespace of `--items` items;
- ``list_namespaces``: ``list_namespaces(prefix=("bench",), max_depth=2)`` over them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmark this checkout

from langgraph.store.base import BaseStore, GetOp, PutOp
from langgraph.store.memory import InMemoryStore

from kvstores.langgraph import LangGraphStore
from kvstores.memory import InMemoryByteStore
from kvstores.sql import SQLByteStore


def _phases(store: BaseStore, items: int, batch: int, tag: str) -> dict[str, Callable[[], int]]:
    space = ("bench", tag)
    keys = [f"item-{i:06d}" for i in range(items)]
    chunks = [keys[i : i + batch] for i in range(0, len(keys), batch)]

    def put() -> int:
        for chunk in chunks:
            store.batch(
                [
                    PutOp(
                        space,
                        k,
                        {"n": i, "kind": "even" if i % 2 == 0 else "odd", "text": "x" * 200},
                    )
                    for i, k in enumerate(chunk)
                ]
            )
        return items

    def get() -> int:
        for chunk in chunks:
            results = store.batch([GetOp(space, k) for k in chunk])
            assert all(r is not None for r in results)
        return items

    def search() -> int:
        found = store.search(space, filter={"kind": "even", "n": {"$gte": batch // 2}}, limit=10)
        assert len(found) == 10
        return items

    def list_namespaces() -> int:
        assert store.list_namespaces(prefix=("bench",), max_depth=2)
        return items

    return {"put": put, "get": get, "search": search, "list_namespaces": list_namespaces}


def _best(run: Callable[[], int], rounds: int) -> float:
    best = float("inf")
    count = 0
    for _ in range(rounds):
        started = time.perf_counter()
        count = run()
        best = min(best, time.perf_counter() - started)
    return count / best


@contextmanager
def _postgres_pair(url: str) -> Iterator[tuple[BaseStore, BaseStore]]:
    from langgraph.store.postgres import PostgresStore

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    sqlalchemy = plain.replace("postgresql://", "postgresql+psycopg://")
    table = f"bench_lg_{uuid.uuid4().hex[:8]}"
    ours = LangGraphStore(SQLByteStore.from_url(sqlalchemy, table=table))
    with PostgresStore.from_conn_string(plain) as theirs:
        theirs.setup()
        try:
            yield ours, theirs
        finally:
            with theirs.conn.cursor() as cursor:
                cursor.execute("DELETE FROM store WHERE prefix LIKE 'bench.%'")
            byte_store = ours.byte_store
            assert isinstance(byte_store, SQLByteStore)
            with byte_store.engine.begin() as conn:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
            ours.close()


@contextmanager
def _memory_pair() -> Iterator[tuple[BaseStore, BaseStore]]:
    yield LangGraphStore(InMemoryByteStore()), InMemoryStore()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default=os.environ.get("KVSTORES_TEST_POSTGRES_URL"))
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    pairs: list[tuple[str, Any]] = [("memory", _memory_pair())]
    if args.postgres:
        pairs.append(("postgresql", _postgres_pair(args.postgres)))
    print(f"{args.items} items, batches of {args.batch}, best of {args.rounds} rounds")
    print(f"{'backend':<11} {'phase':<16} {'kvstores/s':>12} {'langgraph/s':>12} {'ratio':>6}")
    for name, pair in pairs:
        with pair as (ours, theirs):
            tag = uuid.uuid4().hex[:8]
            mine, reference = (
                _phases(ours, args.items, args.batch, tag),
                _phases(theirs, args.items, args.batch, tag),
            )
            for phase in mine:
                a = _best(mine[phase], args.rounds)
                b = _best(reference[phase], args.rounds)
                print(f"{name:<11} {phase:<16} {a:>12,.0f} {b:>12,.0f} {a / b:>6.2f}")


if __name__ == "__main__":
    main()
