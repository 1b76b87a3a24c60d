"""`MongoDBByteStore` and `MongoDBStore` against raw pymongo: one unordered ``bulk_write`` of
``ReplaceOne(upsert=True)`` / one ``find`` with ``_id: {$in}`` / one ``delete_many`` with
``_id: {$in}`` per batch (a single key: the plain ``replace_one`` / ``find_one`` /
``delete_one``), the keys from one streaming ``find`` cursor over the ``_id`` range;
`AsyncMongoClient` for the async ops.

python benchmarks/bench_mongodb.py [--url mongodb://127.0.0.1:57017/kvstores_test]
                                   [--targets bytes,documents] [--batches 100] [--markdown] ...

``--url`` defaults to $KVSTORES_TEST_MONGODB_URL. Each side gets a collection of its own
(``bench_<target>`` for the store, ``bench_raw_<target>`` for raw pymongo; ``--collections``
sets that ``bench``), dropped at the end.
The ``documents`` target stores each value as a base64 string (FerretDB refuses NUL in
strings), on both sides, through `MongoDBStore` and raw pymongo alike. The defaults (2,000
keys, batches 1 and 100) suit FerretDB, which scans the collection for every statement.
"""

from __future__ import annotations

import argparse
import os
import sys
from base64 import b64decode, b64encode
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmark this checkout

import pymongo
from pymongo import ReplaceOne

from benchmarks._langchain import langchain_mongodb
from kvstores.backend import prefix_upper_bound
from kvstores.benchmark import Case, Pair, build_parser, main
from kvstores.mongodb import MongoDBByteStore, MongoDBStore


def _range(prefix: str) -> dict[str, Any]:
    span: dict[str, Any] = {"$gte": prefix}
    high = prefix_upper_bound(prefix)
    if high is not None:
        span["$lt"] = high
    return {"_id": span}


class RawMongo:
    """What a user of pymongo writes: one call per batch, an async client on the harness's
    (single) event loop. `text` stores values as base64 strings (the documents target)."""

    def __init__(self, url: str, name: str, *, text: bool = False) -> None:
        self.url, self.name, self.text = url, name, text
        self.client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url)
        self.coll = self.client.get_default_database("kvstores_test")[name]
        self._acoll: Any = None

    def _async(self) -> Any:
        if self._acoll is None:
            client: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(self.url)
            self._acoll = client.get_default_database("kvstores_test")[self.name]
        return self._acoll

    def _doc(self, value: bytes) -> dict[str, Any]:
        return {"v": b64encode(value).decode()} if self.text else {"v": value}

    def _ops(self, pairs: Sequence[Pair]) -> list[ReplaceOne[Any]]:
        doc = self._doc
        return [ReplaceOne({"_id": k}, doc(v), upsert=True) for k, v in pairs]

    def _value(self, doc: dict[str, Any] | None) -> bytes | None:
        if doc is None:
            return None
        return b64decode(doc["v"]) if self.text else doc["v"]

    def _values(self, keys: Sequence[str], docs: list[dict[str, Any]]) -> list[bytes | None]:
        found = {doc["_id"]: doc["v"] for doc in docs}
        if self.text:
            return [None if (v := found.get(k)) is None else b64decode(v) for k in keys]
        return [found.get(k) for k in keys]

    def mset(self, pairs: Sequence[Pair], /) -> None:
        if len(pairs) == 1:
            ((key, value),) = pairs
            self.coll.replace_one({"_id": key}, self._doc(value), upsert=True)
            return
        self.coll.bulk_write(self._ops(pairs), ordered=False)

    def mget(self, keys: Sequence[str], /) -> list[bytes | None]:
        if len(keys) == 1:
            return [self._value(self.coll.find_one({"_id": keys[0]}))]
        return self._values(keys, self.coll.find({"_id": {"$in": list(keys)}}).to_list())

    def mdelete(self, keys: Sequence[str], /) -> None:
        if len(keys) == 1:
            self.coll.delete_one({"_id": keys[0]})
            return
        self.coll.delete_many({"_id": {"$in": list(keys)}})

    def yield_keys(self, *, prefix: str) -> Iterator[str]:
        for doc in self.coll.find(_range(prefix), {"_id": 1}):
            yield doc["_id"]

    async def amset(self, pairs: Sequence[Pair], /) -> None:
        if len(pairs) == 1:
            ((key, value),) = pairs
            await self._async().replace_one({"_id": key}, self._doc(value), upsert=True)
            return
        await self._async().bulk_write(self._ops(pairs), ordered=False)

    async def amget(self, keys: Sequence[str], /) -> list[bytes | None]:
        if len(keys) == 1:
            return [self._value(await self._async().find_one({"_id": keys[0]}))]
        docs = await self._async().find({"_id": {"$in": list(keys)}}).to_list()
        return self._values(keys, docs)

    async def amdelete(self, keys: Sequence[str], /) -> None:
        if len(keys) == 1:
            await self._async().delete_one({"_id": keys[0]})
            return
        await self._async().delete_many({"_id": {"$in": list(keys)}})

    async def ayield_keys(self, *, prefix: str) -> AsyncIterator[str]:
        async for doc in self._async().find(_range(prefix), {"_id": 1}):
            yield doc["_id"]

    def close(self) -> None:
        self.coll.drop()
        self.client.close()


class TextValues:
    """`MongoDBStore` behind the harness's bytes: each value stored as a base64 string."""

    def __init__(self, store: MongoDBStore) -> None:
        self.store = store

    @staticmethod
    def _texts(pairs: Sequence[Pair]) -> list[tuple[str, Any]]:
        return [(k, b64encode(v).decode()) for k, v in pairs]

    @staticmethod
    def _bytes(values: list[Any]) -> list[bytes | None]:
        return [None if v is None else b64decode(v) for v in values]

    def mset(self, pairs: Sequence[Pair], /) -> None:
        self.store.mset(self._texts(pairs))

    def mget(self, keys: Sequence[str], /) -> list[bytes | None]:
        return self._bytes(self.store.mget(keys))

    def mdelete(self, keys: Sequence[str], /) -> None:
        self.store.mdelete(keys)

    def yield_keys(self, *, prefix: str) -> Iterator[str]:
        return self.store.yield_keys(prefix=prefix)

    async def amset(self, pairs: Sequence[Pair], /) -> None:
        await self.store.amset(self._texts(pairs))

    async def amget(self, keys: Sequence[str], /) -> list[bytes | None]:
        return self._bytes(await self.store.amget(keys))

    async def amdelete(self, keys: Sequence[str], /) -> None:
        await self.store.amdelete(keys)

    def ayield_keys(self, *, prefix: str) -> AsyncIterator[str]:
        return self.store.ayield_keys(prefix=prefix)


def _parser() -> argparse.ArgumentParser:
    parser = build_parser(__doc__)
    parser.set_defaults(keys=2000, batches=("1", "100"))
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "KVSTORES_TEST_MONGODB_URL", "mongodb://127.0.0.1:57017/kvstores_test"
        ),
        help="MongoDB or FerretDB (default: $KVSTORES_TEST_MONGODB_URL)",
    )
    parser.add_argument(
        "--collections",
        default="bench",
        help="the collections' name prefix (default: bench), to run two at once",
    )
    parser.add_argument(
        "--targets",
        type=lambda text: tuple(t.strip() for t in text.split(",") if t.strip()),
        default=("bytes", "documents"),
        help="bytes (MongoDBByteStore), documents (MongoDBStore), or both (default)",
    )
    return parser


@contextmanager
def cases(args: argparse.Namespace) -> Iterator[list[Case]]:
    made: list[tuple[str, Any, MongoDBByteStore | MongoDBStore, RawMongo]] = []
    name = args.collections
    for target in args.targets:
        if target == "bytes":
            store: Any = MongoDBByteStore.from_url(args.url, collection=f"{name}_bytes")
            made.append(("mongodb bytes", store, store, RawMongo(args.url, f"{name}_raw_bytes")))
        elif target == "documents":
            docs = MongoDBStore.from_url(args.url, collection=f"{name}_documents")
            raw = RawMongo(args.url, f"{name}_raw_documents", text=True)
            made.append(("mongodb documents", TextValues(docs), docs, raw))
        else:
            raise SystemExit(f"unknown target {target!r}: use bytes and/or documents")
    try:
        server = made[0][2].server_version() if made else "?"
        # LangChain's MongoDBByteStore stores bytes: a side for the bytes target only.
        with langchain_mongodb(args.url, "bench_langchain_bytes") as langchain:
            yield [
                Case(
                    f"{label} ({server})",
                    side,
                    raw,
                    langchain=langchain if label == "mongodb bytes" else None,
                )
                for label, side, _, raw in made
            ]
    finally:
        for _, _, store, raw in made:  # leave the server as found
            store.collection.drop()
            store.close()
            raw.close()


if __name__ == "__main__":
    main(cases, description=__doc__, parser=_parser())
