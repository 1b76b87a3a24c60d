"""The MongoDB stores against a real MongoDB-wire server (`KVSTORES_TEST_MONGODB_URL`; the
services script runs FerretDB 1.24.2 over PostgreSQL): the conformance kit, sync and async, on
stores built from a URL, from a `MongoClient` and from an `AsyncMongoClient`, with raw pymongo
hooks on the documented layout, the Hypothesis state machine, `MongoDBStore`'s documents, the
TTL index or `purge_expired`, errors and timeouts.

Isolation: each test uses a collection of its own, dropped afterwards. Tests that meet a
documented FerretDB gap skip on FerretDB (found by ``buildInfo``'s ``ferretdbVersion``), saying
which gap.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from integration_tests.conftest import server_url

pytest.importorskip("pymongo")

import pymongo

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
from kvstores.testing import AsyncByteStoreTests, ByteStoreTests, StoreFactory, make_state_machine

KINDS = ["url", "client", "async-client"]


def _url() -> str:
    return server_url("KVSTORES_TEST_MONGODB_URL")


def _with(url: str, **query: str) -> str:
    return url + ("&" if "?" in url else "?") + "&".join(f"{k}={v}" for k, v in query.items())


_FERRETDB: dict[str, str | None] = {}


def ferretdb_version(url: str) -> str | None:
    """FerretDB's version if the server is FerretDB (``buildInfo.ferretdbVersion``), else None."""
    if url not in _FERRETDB:
        with pymongo.MongoClient(url, serverSelectionTimeoutMS=5000) as client:
            _FERRETDB[url] = client.admin.command("buildInfo").get("ferretdbVersion")
    return _FERRETDB[url]


def skip_on_ferretdb(gap: str) -> None:
    version = ferretdb_version(_url())
    if version is not None:
        pytest.skip(f"FerretDB {version} gap (see SERVERS.md): {gap}")


class Place:
    """A collection of this test's own, stores of one kind on it, a raw pymongo client."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.url = _url()
        self.raw: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(self.url)
        self.db = self.raw.get_default_database("kvstores_test")
        self.name = f"t_{uuid.uuid4().hex[:12]}"
        self.coll = self.db[self.name]
        self.clients: list[Any] = []

    def store(
        self,
        *,
        namespace: str | None = None,
        ttl: float | None = None,
        cls: type[Any] = MongoDBByteStore,
    ) -> Any:
        if self.kind == "url":
            return cls.from_url(self.url, collection=self.name, namespace=namespace, ttl=ttl)
        if not self.clients:  # one client shared by the test's stores, as an app would
            if self.kind == "client":
                self.clients.append(pymongo.MongoClient(self.url))
            else:
                self.clients.append(pymongo.AsyncMongoClient(self.url))
        return cls(self.clients[0], collection=self.name, namespace=namespace, ttl=ttl)

    def close(self) -> None:
        self.coll.drop()
        for client in self.clients:
            if isinstance(client, pymongo.MongoClient):
                client.close()
            # an AsyncMongoClient is closed in its loop (`TestMongoDBByteStoreAsync`)
        self.raw.close()


@pytest.fixture(params=KINDS)
def place(request: pytest.FixtureRequest) -> Iterator[Place]:
    made = Place(request.param)
    yield made
    made.close()


@pytest.fixture
def make_store(place: Place) -> StoreFactory:
    return place.store


# The conformance kit


class MongoRaw:
    """The kit's raw hooks: raw pymongo on the documented layout, ``{"_id":
    document_id(namespace, key), "v": <bytes>}`` in the store's collection."""

    place: Place

    @pytest.fixture(autouse=True)
    def _raw_mongo(self, place: Place) -> None:
        self.place = place

    def raw_get(self, store: ByteStore, key: str) -> bytes | None:
        assert isinstance(store, MongoDBBase)
        doc = self.place.coll.find_one({"_id": document_id(store.namespace, key)})
        return None if doc is None else bytes(doc["v"])

    def raw_set(self, store: ByteStore, key: str, value: bytes) -> None:
        assert isinstance(store, MongoDBBase)
        _id = document_id(store.namespace, key)
        self.place.coll.replace_one({"_id": _id}, {"v": value}, upsert=True)

    def raw_delete(self, store: ByteStore, key: str) -> None:
        assert isinstance(store, MongoDBBase)
        self.place.coll.delete_one({"_id": document_id(store.namespace, key)})


class TestMongoDBByteStore(MongoRaw, ByteStoreTests):
    many_keys = 1200  # FerretDB scans the collection for every statement


class TestMongoDBByteStoreAsync(MongoRaw, AsyncByteStoreTests):
    many_keys = 1200
    burst = 300

    @pytest.fixture(autouse=True)
    def _close_async_clients(self, place: Place, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        yield
        for client in place.clients:
            if isinstance(client, pymongo.AsyncMongoClient):
                loop.run_until_complete(client.close())


_STATEFUL = settings(
    max_examples=20,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _stateful_case(use_async: bool) -> type[Any]:
    def make() -> MongoDBByteStore:
        return MongoDBByteStore.from_url(_url(), namespace=f"stateful-{uuid.uuid4().hex}")

    case = make_state_machine(make, use_async=use_async).TestCase
    case.settings = _STATEFUL

    class Case(case):  # type: ignore[misc, valid-type]
        def setUp(self) -> None:
            _url()  # skip (or fail under CI) without the server
            super().setUp()

    return Case


TestMongoDBStateful = _stateful_case(use_async=False)
TestMongoDBStatefulAsync = _stateful_case(use_async=True)


# Layout, expiry


@pytest.fixture
def url_place() -> Iterator[Place]:
    made = Place("url")
    yield made
    made.close()


def test_layout_as_documented(url_place: Place) -> None:
    store = url_place.store(namespace="emb")
    store.mset([("a/b", b"\x00\xff")])
    assert url_place.coll.find_one({}) == {"_id": "kvstores:3:emb:a/b", "v": b"\x00\xff"}
    url_place.store(ttl=600).mset([("k", b"v")])
    doc = url_place.coll.find_one({"_id": "kvstores::k"})
    assert doc is not None
    assert isinstance(doc["exp"], datetime)
    url_place.store().mset([("k", b"w")])  # a write without ttl: permanent again
    assert url_place.coll.find_one({"_id": "kvstores::k"}) == {"_id": "kvstores::k", "v": b"w"}
    assert store.collection.name == url_place.name


def test_other_documents_in_the_collection_are_never_listed(url_place: Place) -> None:
    url_place.coll.insert_many([{"x": 1}, {"_id": 5, "v": b"x"}, {"_id": "kvstores;", "v": b""}])
    store = url_place.store()
    store.mset([("k", b"v")])
    assert list(store.yield_keys()) == ["k"]
    assert store.count_keys() == 1


def test_ttl_index_where_the_server_has_them(url_place: Place) -> None:
    store = url_place.store(ttl=600)
    store.mset([("k", b"v")])
    if ferretdb_version(url_place.url) is not None:
        assert store.ttl_index is False
        assert store.ttl_index_refusal
        pytest.skip(
            f"FerretDB {ferretdb_version(url_place.url)} gap: no TTL index "
            f"({store.ttl_index_refusal}); purge_expired is tested instead"
        )
    assert store.ttl_index is True
    indexes = url_place.coll.index_information()
    assert any(spec.get("expireAfterSeconds") == 0 for spec in indexes.values())


def test_purge_expired_deletes_only_expired_documents_of_its_namespace(url_place: Place) -> None:
    short = url_place.store(namespace="p", ttl=0.5)
    other = url_place.store(namespace="q", ttl=0.5)
    short.mset([("a", b"1"), ("b", b"2")])
    other.mset([("a", b"1")])
    url_place.store(namespace="p").mset([("c", b"3")])
    time.sleep(1.2)
    assert short.mget(["a", "b", "c"]) == [None, None, b"3"]
    removed = short.purge_expired()
    assert removed in (0, 2)  # 0 if MongoDB's TTL monitor was first
    assert asyncio.run(other.apurge_expired()) in (0, 1)
    assert sorted(d["_id"] for d in url_place.coll.find({})) == ["kvstores:1:p:c"]


def test_value_at_the_ceiling_with_the_longest_key(url_place: Place) -> None:
    store = url_place.store(namespace="n" * 255 + "🔑", ttl=600)
    key = "🔑" * 1024
    value = b"\x01" * MAX_DOCUMENT_VALUE
    store.mset([(key, value)])
    assert store.mget([key]) == [value]
    with pytest.raises(InvalidValueError):
        store.mset([(key, value + b"!")])


def test_server_version(url_place: Place) -> None:
    version = url_place.store().server_version()
    assert version is not None
    assert version.startswith("ferretdb " if ferretdb_version(url_place.url) else "mongodb ")


# MongoDBStore: JSON-like documents

DOCUMENTS: dict[str, Any] = {
    "doc": {
        "title": "Parent document",
        "metadata": {"source": "a.pdf", "page": 3, "score": 0.5, "tags": ["x", "y"]},
        "flags": [True, False],
        "n": -(2**63),
    },
    "list": [1, 2.0, "three", {"four": 4, "five": []}],
    "text": "plain ünïcödé 🔑",
    "int": 2**63 - 1,
    "float": 1.0,
    "bool": False,
    "empty": {},
}


@pytest.mark.parametrize("kind", KINDS)
def test_documents_round_trip_and_are_native(kind: str) -> None:
    place = Place(kind)
    try:
        store = place.store(cls=MongoDBStore, namespace="docs")

        async def amset_amget() -> list[Any]:
            await store.amset([("async", {"nested": {"deep": [1, {"x": "y"}]}})])
            return await store.amget([*DOCUMENTS, "async", "absent"])

        store.mset(list(DOCUMENTS.items()))
        assert store.mget(list(DOCUMENTS)) == list(DOCUMENTS.values())
        got = asyncio.run(amset_amget())
        assert got[:-2] == list(DOCUMENTS.values())
        assert got[-2:] == [{"nested": {"deep": [1, {"x": "y"}]}}, None]
        assert repr(store.mget(["float", "int"])) == repr([1.0, 2**63 - 1])
        # The value is a native sub-document: queryable in the database.
        found = place.coll.find_one({"v.metadata.source": "a.pdf"})
        assert found is not None
        assert found["_id"] == document_id("docs", "doc")
        assert found["v"]["metadata"]["tags"] == ["x", "y"]
        assert place.coll.count_documents({"v.metadata.page": {"$gt": 2}}) == 1
        assert sorted(store.yield_keys(prefix="d")) == ["doc"]
        store.close()
    finally:
        place.close()


def test_refused_documents_write_nothing(url_place: Place) -> None:
    store = url_place.store(cls=MongoDBStore)
    for bad, error in [
        ({"a.b": 1}, InvalidValueError),
        ({"$a": 1}, InvalidValueError),
        ({"a": float("nan")}, InvalidValueError),
        ({"a": {1, 2}}, TypeError),
        ((1, 2), TypeError),
        ({3: "x"}, TypeError),
        (None, TypeError),
    ]:
        with pytest.raises(error):
            store.mset([("good", {"ok": True}), ("bad", bad)])
    assert url_place.coll.count_documents({}) == 0


def test_nested_arrays(url_place: Place) -> None:
    store = url_place.store(cls=MongoDBStore)
    if ferretdb_version(url_place.url) is not None:
        with pytest.raises(KVStoreError):  # FerretDB refuses it: a kvstores error, not a crash
            store.mset([("m", [[1]])])
        skip_on_ferretdb("an array directly inside an array is refused ('nested arrays')")
    store.mset([("m", [[1, 2], [[3]], []])])
    assert store.mget(["m"]) == [[[1, 2], [[3]], []]]


def test_nul_in_string_values(url_place: Place) -> None:
    skip_on_ferretdb("a NUL character in a string fails (code 1)")
    store = url_place.store(cls=MongoDBStore)
    store.mset([("s", {"a": "nul\x00inside"})])
    assert store.mget(["s"]) == [{"a": "nul\x00inside"}]


def test_server_document_limit_agrees_with_the_ceiling(url_place: Place) -> None:
    skip_on_ferretdb("no 16 MiB document limit")
    # The store's ceiling leaves room for the envelope: a real MongoDB stores it.
    store = url_place.store(cls=MongoDBStore)
    store.mset([("big", "x" * (MAX_DOCUMENT_VALUE - 20))])
    assert len(store.mget(["big"])[0]) == MAX_DOCUMENT_VALUE - 20


# Clients, options, errors


def test_given_clients_stay_open() -> None:
    url = _url()
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with MongoDBByteStore(client, collection=name) as store:
            store.mset([("k", b"v")])
            assert asyncio.run(store.amget(["k"])) == [b"v"]  # in a worker thread
        assert client.get_default_database("kvstores_test")[name].count_documents({}) == 1

        async def on_async_client() -> list[bytes | None]:
            aclient: pymongo.AsyncMongoClient[Any] = pymongo.AsyncMongoClient(url)
            try:
                store = MongoDBByteStore(aclient.get_default_database("kvstores_test")[name])
                await store.amset([("a", b"1")])
                assert store.mget(["a"]) == [b"1"]  # the sync twin
                await store.aclose()
                return await store.amget(["a", "k"])  # the given client still works
            finally:
                await aclient.close()

        assert asyncio.run(on_async_client()) == [b"1", b"v"]
    finally:
        client.get_default_database("kvstores_test").drop_collection(name)
        client.close()


def test_a_store_is_usable_from_several_event_loops(url_place: Place) -> None:
    store = url_place.store()
    for i in range(3):
        asyncio.run(store.amset([(f"k{i}", b"v")]))
    assert sorted(asyncio.run(_akeys(store))) == ["k0", "k1", "k2"]
    store.close()


async def _akeys(store: Any, prefix: str | None = None) -> list[str]:
    return [key async for key in store.ayield_keys(prefix=prefix)]


def test_from_url_and_typos() -> None:
    url = _url()
    store = kvstores.from_url(_with(url, namespace="via-from-url", timeout="3"))
    assert isinstance(store, MongoDBByteStore)
    assert store.timeout == 3.0
    store.close()
    for bad in (_with(url, namespce="a"), _with(url, colection="c"), _with(url, maxPolSize="3")):
        with pytest.raises(ConfigurationError, match="unknown option"):
            kvstores.from_url(bad)
    with pytest.raises(ConfigurationError, match="serverSelectionTimeout"):
        MongoDBByteStore.from_url(url, serverSelectionTimeout=5)


@pytest.mark.parametrize("use_async", [False, True])
def test_unreachable_server(use_async: bool) -> None:
    store = MongoDBByteStore.from_url("mongodb://kv:hunter22@127.0.0.1:1/db", timeout=1)
    start = time.monotonic()
    call = (lambda: asyncio.run(store.amget(["k"]))) if use_async else (lambda: store.mget(["k"]))
    with pytest.raises(BackendUnavailableError) as caught:
        call()
    assert time.monotonic() - start < 3
    assert "hunter22" not in str(caught.value)
    assert isinstance(caught.value.__cause__, pymongo.errors.ConnectionFailure)
    store.close()


@pytest.mark.parametrize("use_async", [False, True])
def test_silent_listener_times_out(silent_listener: tuple[str, int], use_async: bool) -> None:
    host, port = silent_listener
    store = MongoDBByteStore.from_url(f"mongodb://u:sekret99@{host}:{port}/db", timeout=1)
    calls: list[Callable[[], Any]] = [
        lambda: store.mset([("k", b"v")]),
        lambda: list(store.yield_keys()),
    ]
    if use_async:
        calls = [
            lambda: asyncio.run(store.amset([("k", b"v")])),
            lambda: asyncio.run(_akeys(store)),
        ]
    for call in calls:
        start = time.monotonic()
        with pytest.raises(BackendUnavailableError) as caught:
            call()
        assert time.monotonic() - start < 4
        assert "sekret99" not in str(caught.value)
    store.close()
