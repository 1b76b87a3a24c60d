"""`AstraDBByteStore` against raw astrapy, side by side in one process.

The raw baseline is what a user of astrapy writes for the same job on a collection of their
own (same layout: ``_id``, ``ns``, ``v`` unindexed): ``replace_one(upsert=True)`` per key
for an upsert (astrapy has no batch upsert), run concurrently (20 at once, astrapy's own
insert_many concurrency; threads for sync, gathered for async), one ``find`` with ``_id``
``$in`` per 100 keys (the API's limit; astrapy pages through it), one ``delete_many`` with
``_id`` ``$in`` per 100 keys (astrapy repeats it while the server says more), and the keys
of a prefix from a ``find`` on ``ns`` filtered in Python (the open-source Data API has no
ranges). A single key is one plain call: ``replace_one``, ``find_one``, ``delete_one``.

python benchmarks/bench_astradb.py [--url astradb+http://127.0.0.1:58181/kvstores_test
                                     ?token=...] [--batches 100] [--markdown] ...

``--url`` defaults to $KVSTORES_TEST_ASTRADB_URL; the defaults are 1,000 keys and batch 100
(every request is an HTTP round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmark this checkout

from benchmarks._langchain import langchain_astradb
from kvstores.astradb import AstraDBByteStore
from kvstores.benchmark import Case, Pair, build_parser, main

CONCURRENCY = 20
IN_LIMIT = 100  # the Data API's largest $in


def _chunks(keys: Sequence[str]) -> list[list[str]]:
    return [list(keys[i : i + IN_LIMIT]) for i in range(0, len(keys), IN_LIMIT)]


class RawAstra:
    """Raw astrapy on a collection of its own, with the store's layout."""

    def __init__(self, store: AstraDBByteStore, name: str) -> None:
        database = store.collection.database
        database.create_collection(name, definition={"indexing": {"deny": ["v"]}})
        self.database, self.name = database, name
        self.coll = database.get_collection(name)
        self._acoll: Any = None
        self.pool = ThreadPoolExecutor(CONCURRENCY)

    def _async(self) -> Any:
        if self._acoll is None:
            self._acoll = self.coll.to_async()
        return self._acoll

    @staticmethod
    def _doc(key: str, value: bytes) -> dict[str, Any]:
        return {"_id": key, "ns": "", "v": value}

    def mset(self, pairs: Sequence[Pair], /) -> None:
        if len(pairs) == 1:
            key, value = pairs[0]
            self.coll.replace_one({"_id": key}, self._doc(key, value), upsert=True)
            return
        replace = self.coll.replace_one
        list(self.pool.map(lambda p: replace({"_id": p[0]}, self._doc(*p), upsert=True), pairs))

    def mget(self, keys: Sequence[str], /) -> list[bytes | None]:
        if len(keys) == 1:
            doc = self.coll.find_one({"_id": keys[0]}, projection={"v": True})
            return [None if doc is None else bytes(doc["v"])]
        found = {}
        for chunk in _chunks(keys):
            docs = self.coll.find({"_id": {"$in": chunk}}, projection={"v": True}).to_list()
            found.update((doc["_id"], bytes(doc["v"])) for doc in docs)
        return [found.get(key) for key in keys]

    def mdelete(self, keys: Sequence[str], /) -> None:
        if len(keys) == 1:
            self.coll.delete_one({"_id": keys[0]})
            return
        for chunk in _chunks(keys):
            self.coll.delete_many({"_id": {"$in": chunk}})

    def yield_keys(self, *, prefix: str) -> Iterator[str]:
        for doc in self.coll.find({"ns": ""}, projection={"_id": True, "ns": True}):
            if doc["_id"].startswith(prefix):
                yield doc["_id"]

    async def amset(self, pairs: Sequence[Pair], /) -> None:
        if len(pairs) == 1:
            key, value = pairs[0]
            await self._async().replace_one({"_id": key}, self._doc(key, value), upsert=True)
            return
        coll, limit = self._async(), asyncio.Semaphore(CONCURRENCY)

        async def one(key: str, value: bytes) -> None:
            async with limit:
                await coll.replace_one({"_id": key}, self._doc(key, value), upsert=True)

        await asyncio.gather(*(one(key, value) for key, value in pairs))

    async def amget(self, keys: Sequence[str], /) -> list[bytes | None]:
        if len(keys) == 1:
            doc = await self._async().find_one({"_id": keys[0]}, projection={"v": True})
            return [None if doc is None else bytes(doc["v"])]
        found = {}
        for chunk in _chunks(keys):
            cursor = self._async().find({"_id": {"$in": chunk}}, projection={"v": True})
            found.update((doc["_id"], bytes(doc["v"])) for doc in await cursor.to_list())
        return [found.get(key) for key in keys]

    async def amdelete(self, keys: Sequence[str], /) -> None:
        if len(keys) == 1:
            await self._async().delete_one({"_id": keys[0]})
            return
        for chunk in _chunks(keys):
            await self._async().delete_many({"_id": {"$in": chunk}})

    async def ayield_keys(self, *, prefix: str) -> AsyncIterator[str]:
        async for doc in self._async().find({"ns": ""}, projection={"_id": True, "ns": True}):
            if doc["_id"].startswith(prefix):
                yield doc["_id"]

    def close(self) -> None:
        self.pool.shutdown()
        self.database.drop_collection(self.name)


def _parser() -> argparse.ArgumentParser:
    parser = build_parser(__doc__)
    parser.set_defaults(keys=1000, batches=("100",))
    parser.add_argument(
        "--url",
        default=os.environ.get("KVSTORES_TEST_ASTRADB_URL", ""),
        help="a Data API (default: $KVSTORES_TEST_ASTRADB_URL)",
    )
    return parser


@contextmanager
def cases(args: argparse.Namespace) -> Iterator[list[Case]]:
    store = AstraDBByteStore.from_url(args.url, collection="bench_store")
    store.mget(["warm-up"])  # creates the collection
    raw = RawAstra(store, "bench_raw")
    try:
        with langchain_astradb(args.url, "bench_langchain") as langchain:
            yield [Case("astradb (data api)", store, raw, langchain=langchain)]
    finally:
        store.collection.database.drop_collection("bench_store")
        raw.close()
        store.close()


if __name__ == "__main__":
    main(cases, description=__doc__, parser=_parser())
