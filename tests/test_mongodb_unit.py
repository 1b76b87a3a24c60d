"""The MongoDB stores' parts that need no server: URLs and options, value checks, the layout,
what each operation sends (an in-memory collection that understands the few queries the
stores send stands in for the server, sync and async), and errors of an unreachable server.
The rest is in integration_tests/test_mongodb.py."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("pymongo")

import bson
import pymongo
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

import kvstores
from kvstores import BackendUnavailableError, ByteStore, KVStoreError
from kvstores.errors import ConfigurationError, InvalidValueError
from kvstores.mongodb import (
    MAX_DOCUMENT_VALUE,
    MongoDBBase,
    MongoDBByteStore,
    MongoDBStore,
    document_id,
)
from kvstores.testing import AsyncByteStoreTests, ByteStoreTests, StoreFactory

UNREACHABLE = "mongodb://127.0.0.1:1/kvstores_test"

# An in-memory collection that answers the stores' queries


def _matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    for field, condition in query.items():
        value = doc.get(field)
        if not isinstance(condition, dict):
            if value != condition:
                return False
            continue
        for op, operand in condition.items():
            if op == "$not":
                if _matches(doc, {field: operand}):
                    return False
            elif op == "$in":
                if value not in operand:
                    return False
            elif (
                value is None
                or not isinstance(value, type(operand))
                or not {
                    "$gte": value >= operand,
                    "$gt": value > operand,
                    "$lt": value < operand,
                    "$lte": value <= operand,
                }[op]
            ):
                return False
    return True


class FakeCursor:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs

    def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        page = self.docs[:length] if length else list(self.docs)
        self.docs = self.docs[len(page) :]
        return page


class FakeCollection:
    """The stores' collection calls on a dict of documents, each call recorded."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        self.error: Exception | None = None
        self.index_error: Exception | None = None
        self.database = self

    def _record(self, name: str, arg: Any) -> None:
        self.calls.append((name, arg))
        if self.error is not None:
            raise self.error

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def find(
        self,
        query: dict[str, Any],
        projection: dict[str, bool],
        *,
        limit: int = 0,
        batch_size: int = 0,
        sort: Any = None,
    ) -> FakeCursor:
        with self.lock:
            self._record("find", query)
            found = [d for _, d in sorted(self.docs.items()) if _matches(d, query)]
        found = found[:limit] if limit else found
        return FakeCursor([{k: d[k] for k in ("_id", *projection) if k in d} for d in found])

    def bulk_write(self, operations: list[Any], *, ordered: bool) -> None:
        assert not ordered
        with self.lock:
            self._record("bulk_write", len(operations))
            for op in operations:
                assert op._upsert
                self.docs[op._filter["_id"]] = {"_id": op._filter["_id"], **op._doc}

    def delete_many(self, query: dict[str, Any]) -> Any:
        with self.lock:
            self._record("delete_many", query)
            gone = [i for i, d in self.docs.items() if _matches(d, query)]
            for i in gone:
                del self.docs[i]
        return type("Result", (), {"deleted_count": len(gone)})()

    def count_documents(self, query: dict[str, Any]) -> int:
        with self.lock:
            self._record("count_documents", query)
            return sum(_matches(d, query) for d in self.docs.values())

    def create_index(self, field: str, **options: Any) -> str:
        self._record("create_index", (field, options))
        if self.index_error is not None:
            raise self.index_error
        return f"{field}_1"

    def command(self, name: str) -> dict[str, Any]:
        self._record("command", name)
        return {"version": "7.0.42", "ferretdbVersion": "v1.24.2"}


class AsyncFakeCursor:
    def __init__(self, cursor: FakeCursor) -> None:
        self.cursor = cursor

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        return self.cursor.to_list(length)


class AsyncFakeCollection:
    """The same collection through awaitable calls, as pymongo's async API."""

    def __init__(self, sync: FakeCollection) -> None:
        self.sync = sync
        self.database = self

    def find(self, *args: Any, **kwargs: Any) -> AsyncFakeCursor:
        return AsyncFakeCursor(self.sync.find(*args, **kwargs))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.sync, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            return method(*args, **kwargs)

        return call


def on_fake(
    fake: FakeCollection, cls: type[MongoDBBase[Any]] = MongoDBByteStore, **options: Any
) -> Any:
    """A store whose sync and async collections are the fake (no client is ever used)."""
    store = cls(UNREACHABLE, **options)
    store._collection = fake
    store._given_async = AsyncFakeCollection(fake)
    return store


# The conformance kit, on the fake collection


@pytest.fixture
def fake() -> FakeCollection:
    return FakeCollection()


@pytest.fixture
def make_store(fake: FakeCollection) -> StoreFactory:
    def make(namespace: str | None = None, ttl: float | None = None) -> ByteStore:
        store: ByteStore = on_fake(fake, namespace=namespace, ttl=ttl)
        return store

    return make


class FakeRaw:
    """Raw hooks on the documented layout: ``_id`` = `document_id`, ``v`` = the bytes."""

    @pytest.fixture(autouse=True)
    def _raw_fake(self, fake: FakeCollection) -> None:
        self.fake = fake

    def raw_get(self, store: ByteStore, key: str) -> bytes | None:
        doc = self.fake.docs.get(document_id(store.namespace, key))  # type: ignore[attr-defined]
        return None if doc is None else bytes(doc["v"])

    def raw_set(self, store: ByteStore, key: str, value: bytes) -> None:
        _id = document_id(store.namespace, key)  # type: ignore[attr-defined]
        self.fake.docs[_id] = {"_id": _id, "v": value}

    def raw_delete(self, store: ByteStore, key: str) -> None:
        self.fake.docs.pop(document_id(store.namespace, key), None)  # type: ignore[attr-defined]


class TestOnAFakeCollection(FakeRaw, ByteStoreTests):
    many_keys = 2500


class TestOnAFakeCollectionAsync(FakeRaw, AsyncByteStoreTests):
    many_keys = 2500
    burst = 200


# Layout and requests


def test_document_ids() -> None:
    assert document_id(None, "k") == "kvstores::k"
    assert document_id("emb", "a/b") == "kvstores:3:emb:a/b"
    assert document_id("日本", "k") == "kvstores:2:日本:k"


def test_one_request_per_chunk_and_none_for_empty_batches(fake: FakeCollection) -> None:
    store = on_fake(fake, namespace="n")
    store.mset([])
    assert store.mget([]) == []
    store.mdelete([])
    assert fake.calls == []
    store.mset([(f"k{i}", b"v") for i in range(2500)])
    assert fake.calls == [("bulk_write", 1000), ("bulk_write", 1000), ("bulk_write", 500)]
    fake.calls.clear()
    assert store.mget(["k1", "k1", "nope"]) == [b"v", b"v", None]
    ((name, query),) = fake.calls
    assert name == "find"
    assert query["_id"] == {"$in": ["kvstores:1:n:k1", "kvstores:1:n:nope"]}
    assert set(query["exp"]) == {"$not"}
    fake.calls.clear()
    store.mdelete([f"k{i}" for i in range(1500)])
    assert fake.names() == ["delete_many", "delete_many"]
    assert store.mget(["k1499", "k1500"]) == [None, b"v"]


def test_async_chunks_are_sent_concurrently(fake: FakeCollection) -> None:
    store = on_fake(fake)
    in_flight, most = 0, 0
    original = fake.bulk_write

    async def slow_bulk_write(operations: list[Any], *, ordered: bool) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        original(operations, ordered=ordered)
        in_flight -= 1

    store._given_async.bulk_write = slow_bulk_write
    asyncio.run(store.amset([(f"k{i}", b"v") for i in range(3000)]))
    assert most == 3
    assert len(fake.docs) == 3000


def test_listing_is_a_sorted_range_read_a_page_at_a_time(fake: FakeCollection) -> None:
    store = on_fake(fake, namespace="ns")
    store.page_size = 10
    store.mset([(f"a{i:03d}", b"v") for i in range(25)] + [("b", b"v")])
    fake.calls.clear()
    assert list(store.yield_keys(prefix="a")) == [f"a{i:03d}" for i in range(25)]
    ((name, query),) = fake.calls  # one find: the pages are its cursor's batches
    assert name == "find"
    assert query["_id"] == {"$gte": "kvstores:2:ns:a", "$lt": "kvstores:2:ns:b"}


def test_listing_resumes_after_a_lost_cursor(fake: FakeCollection) -> None:
    from pymongo.errors import CursorNotFound

    store = on_fake(fake)
    store.page_size = 10
    store.mset([(f"k{i:03d}", b"v") for i in range(35)])
    pages = 0
    original = FakeCursor.to_list

    def flaky(self: FakeCursor, length: int | None = None) -> list[dict[str, Any]]:
        nonlocal pages
        pages += 1
        if pages == 2:
            raise CursorNotFound("cursor id 1 not found", 43)
        return original(self, length)

    FakeCursor.to_list = flaky  # type: ignore[method-assign]
    try:
        listed = list(store.yield_keys())
    finally:
        FakeCursor.to_list = original  # type: ignore[method-assign]
    assert listed == [f"k{i:03d}" for i in range(35)]
    resumed = [q for name, q in fake.calls if name == "find"][1]
    assert resumed["_id"] == {"$gt": "kvstores::k009", "$lt": "kvstores:;"}


def test_ttl_index_once_and_a_refusal_kept(fake: FakeCollection) -> None:
    store = on_fake(fake, ttl=60)
    store.mset([("a", b"1")])
    store.mset([("b", b"2")])
    assert fake.names().count("create_index") == 1
    assert ("create_index", ("exp", {"expireAfterSeconds": 0})) in fake.calls
    assert store.ttl_index is True
    assert isinstance(fake.docs["kvstores::a"]["exp"], datetime)

    other = FakeCollection()
    other.index_error = OperationFailure("TTL indexes are not supported", 238)
    refused = on_fake(other, ttl=60)
    refused.mset([("a", b"1")])
    assert refused.ttl_index is False
    assert "238" in (refused.ttl_index_refusal or "") or "TTL" in (refused.ttl_index_refusal or "")
    assert refused.mget(["a"]) == [b"1"]
    assert "exp" not in on_fake(fake).__dict__  # no ttl: no index, no field
    plain = on_fake(FakeCollection())
    plain.mset([("a", b"1")])
    assert plain._collection.names() == ["bulk_write"]
    assert "exp" not in plain._collection.docs["kvstores::a"]


def test_purge_expired(fake: FakeCollection) -> None:
    short = on_fake(fake, namespace="p", ttl=0.05)
    other = on_fake(fake, namespace="q", ttl=0.05)
    short.mset([("a", b"1"), ("b", b"2")])
    other.mset([("a", b"1")])
    time.sleep(0.1)
    on_fake(fake, namespace="p").mset([("b", b"3")])  # rewritten without ttl: permanent
    assert short.purge_expired() == 1
    assert asyncio.run(other.apurge_expired()) == 1
    assert set(fake.docs) == {"kvstores:1:p:b"}


def test_server_version_names_ferretdb(fake: FakeCollection) -> None:
    assert on_fake(fake).server_version() == "ferretdb 1.24.2 (mongodb 7.0.42)"


def test_driver_errors_are_mapped(fake: FakeCollection) -> None:
    store = on_fake(fake)
    fake.error = OperationFailure("boom", 2)
    with pytest.raises(KVStoreError, match="boom") as caught:
        store.mget(["a"])
    assert not isinstance(caught.value, BackendUnavailableError)
    assert isinstance(caught.value.__cause__, OperationFailure)
    fake.error = KeyError("nModified")  # pymongo on FerretDB's reply to a failed bulk write
    with pytest.raises(KVStoreError, match="malformed server reply"):
        store.mset([("a", b"v")])
    with pytest.raises(KVStoreError, match="malformed server reply"):
        asyncio.run(store.amset([("a", b"v")]))
    fake.error = ServerSelectionTimeoutError("no server")
    with pytest.raises(BackendUnavailableError):
        asyncio.run(store.amset([("a", b"v")]))
    with pytest.raises(BackendUnavailableError):
        list(store.yield_keys())


# URLs, options, clients


def test_from_url_and_options() -> None:
    url = "mongodb://u:s3cret@127.0.0.1:1/appdb?collection=things&namespace=ns&ttl=5&timeout=2"
    store = kvstores.from_url(url)
    assert isinstance(store, MongoDBByteStore)
    assert (store.namespace, store.ttl, store.timeout) == ("ns", 5.0, 2.0)
    assert (store.database_name, store.collection_name) == ("appdb", "things")
    assert "s3cret" not in repr(store)
    client = store._owned_sync
    assert client is not None
    assert client.options.server_selection_timeout == 2.0
    assert client.options.pool_options.connect_timeout == 2.0
    store.close()
    with kvstores.from_url("mongodb+srv://u:p@cluster0.example.net/?tls=false") as srv:
        assert (srv.database_name, srv.collection_name) == ("kvstores", "kvstores")  # type: ignore[attr-defined]
    given = MongoDBStore.from_url(
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300", maxPoolSize=3, namespace="x"
    )
    assert given._owned_sync.options.server_selection_timeout == 0.3
    assert given._owned_sync.options.pool_options.max_pool_size == 3
    assert isinstance(given, MongoDBStore)
    given.close()


@pytest.mark.parametrize(
    ("url", "options", "named"),
    [
        ("mongodb://h/db?namespce=a", {}, "namespce"),
        ("mongodb://h/db?colection=a", {}, "colection"),
        ("mongodb://h/db?maxPolSize=3", {}, "maxPolSize"),
        ("mongodb://h/db", {"collecton": "x"}, "collecton"),
        ("mongodb://h/db", {"maxPoolsize2": 3}, "maxPoolsize2"),
    ],
)
def test_typos_are_refused(url: str, options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        MongoDBByteStore.from_url(url, **options)


def test_bad_urls_and_values_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="not a MongoDB URL"):
        MongoDBByteStore("redis://h/0")
    with pytest.raises(ConfigurationError, match=r"maxpoolsize|maxPoolSize"):
        MongoDBByteStore.from_url("mongodb://h/db?maxPoolSize=lots")
    with pytest.raises(ValueError, match="ttl"):
        MongoDBByteStore.from_url("mongodb://h/db", ttl=-1)
    with pytest.raises(TypeError, match="MongoClient"):
        MongoDBByteStore(object())  # type: ignore[arg-type]


def test_given_clients_stay_open_and_twins() -> None:
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(UNREACHABLE, connect=False)
    store = MongoDBByteStore(client, collection="c")
    assert (store.database_name, store.collection_name) == ("kvstores_test", "c")
    assert store.collection.database.client is client
    with pytest.raises(TypeError, match="timeout"):
        MongoDBByteStore(client, timeout=3)
    store.close()
    assert not client._closed
    client.close()

    async_client: pymongo.AsyncMongoClient[Any] = pymongo.AsyncMongoClient(
        "mongodb://127.0.0.1:1/other", connect=False
    )
    astore = MongoDBStore(async_client)
    twin = astore.collection.database.client  # built from the async client's settings
    assert isinstance(twin, pymongo.MongoClient)
    assert astore.collection.database.name == "other"
    astore.close()
    assert twin._closed
    assert not async_client._closed
    on_collection = MongoDBByteStore(async_client["d"]["e"], namespace="n")
    assert (on_collection.database_name, on_collection.collection_name) == ("d", "e")


def test_unreachable_server_fails_within_timeout() -> None:
    url = "mongodb://user:pa55word@127.0.0.1:1/db?timeout=0.5"
    store = MongoDBByteStore.from_url(url)
    for call in (
        lambda: store.mget(["k"]),
        lambda: asyncio.run(store.amset([("k", b"v")])),
        lambda: list(store.yield_keys()),
    ):
        start = time.monotonic()
        with pytest.raises(BackendUnavailableError) as caught:
            call()
        assert time.monotonic() - start < 3
        assert "pa55word" not in str(caught.value)
        assert "mongodb" in str(caught.value)
        assert isinstance(caught.value.__cause__, pymongo.errors.ConnectionFailure)
    store.close()


def test_missing_pymongo_names_the_extra() -> None:
    code = "import sys; sys.modules['pymongo'] = None; import kvstores.mongodb"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert 'pip install "kvstores[mongodb]"' in result.stderr


# MongoDBStore values

json_values = st.recursive(
    st.none().filter(lambda _: False)
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8")),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(st.characters(codec="utf-8", exclude_characters="\x00.")).filter(
                lambda k: not k.startswith("$")
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@given(json_values)
def test_accepted_values_come_back_from_bson_as_they_were(value: Any) -> None:
    MongoDBStore(UNREACHABLE).check_values([value])
    back = bson.decode(bson.encode({"v": value}))["v"]
    assert back == value or (isinstance(value, float) and math.isnan(value))
    assert repr(back) == repr(value)  # types too: 1.0 stays a float, True a bool


REFUSED: list[tuple[Any, type[Exception], str]] = [
    (None, TypeError, "None"),
    ({1, 2}, TypeError, "set"),
    ((1, 2), TypeError, "tuple"),
    (b"x", TypeError, "bytes"),
    ({1: "a"}, TypeError, "dict keys must be str"),
    ({"a": [1, {"b": object()}]}, TypeError, r"value\['a'\]\[1\]\['b'\]: object"),
    ({"a": None}, TypeError, r"value\['a'\]: None"),
    ([float("nan")], InvalidValueError, r"value\[0\]: nan"),
    ({"x": float("inf")}, InvalidValueError, "inf"),
    (2**63, InvalidValueError, "64-bit"),
    ({"a.b": 1}, InvalidValueError, "field name 'a.b' contains '.'"),
    ({"ok": {"$set": 1}}, InvalidValueError, r"value\['ok'\]: field name '\$set' starts with"),
    ({"nul\x00": 1}, InvalidValueError, "NUL"),
    ("\ud800", InvalidValueError, "surrogate"),
    (datetime(2020, 1, 1), TypeError, "datetime"),
]


@pytest.mark.parametrize(("value", "error", "message"), REFUSED)
def test_refused_values_and_nothing_written(
    fake: FakeCollection, value: Any, error: type[Exception], message: str
) -> None:
    store = on_fake(fake, MongoDBStore)
    with pytest.raises(error, match=message):
        store.mset([("good", {"a": 1}), ("bad", value)])
    with pytest.raises(error, match=message):
        asyncio.run(store.amset([("good", {"a": 1}), ("bad", value)]))
    assert fake.calls == []


def test_nesting_and_size_limits() -> None:
    store = MongoDBStore(UNREACHABLE)
    deep: Any = 1
    for _ in range(98):
        deep = [deep]
    store.check_values([deep])
    with pytest.raises(InvalidValueError, match="nested deeper"):
        store.check_values([[deep]])
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(InvalidValueError, match="nested deeper"):
        store.check_values([loop])
    store.check_values(["x" * (MAX_DOCUMENT_VALUE - 100)])
    with pytest.raises(InvalidValueError, match="limit"):
        store.check_values([{"a": "x" * MAX_DOCUMENT_VALUE}])
    assert MAX_DOCUMENT_VALUE == 16 * 1024 * 1024 - 8 * 1024 == 16_769_024
    with pytest.raises(InvalidValueError):
        MongoDBByteStore(UNREACHABLE).check_values([b"x" * (MAX_DOCUMENT_VALUE + 1)])


def test_document_values_round_trip_on_the_fake(fake: FakeCollection) -> None:
    store = on_fake(fake, MongoDBStore, namespace="docs")
    values = {"d": {"a": [1, 2.0, "x", True, {"b": None or 0}]}, "l": [], "s": "", "f": 1.0}
    store.mset(list(values.items()))
    assert store.mget(list(values)) == list(values.values())
    assert fake.docs["kvstores:4:docs:d"]["v"] == values["d"]
    assert asyncio.run(store.amget(["f", "zz"])) == [1.0, None]
