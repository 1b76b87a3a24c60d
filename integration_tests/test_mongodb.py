"""The MongoDB stores against a real MongoDB-wire server (`KVSTORES_TEST_MONGODB_URL`; the
services script runs FerretDB 1.24.2 over PostgreSQL): the conformance kit, sync and async, on
stores built from a URL, from a `MongoClient` and from an `AsyncMongoClient`, with raw pymongo
hooks on the documented layout, the Hypothesis state machine, `MongoDBStore`'s documents, the
TTL index or `purge_expired`, what each operation sends (counted by pymongo's command
monitoring on a client given to the store), keyset listing and writes between its pages,
errors of the server, given clients and their twins, and timeouts.

Isolation: each test uses a collection of its own, dropped afterwards. Tests that meet a
documented FerretDB gap skip on FerretDB (found by ``buildInfo``'s ``ferretdbVersion``), saying
which gap.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from integration_tests.conftest import server_url, stateful_case

pytest.importorskip("pymongo")

import pymongo
from pymongo import monitoring
from pymongo.errors import InvalidOperation, OperationFailure, PyMongoError

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


def _stateful_store() -> MongoDBByteStore:
    return MongoDBByteStore.from_url(_url(), namespace=f"stateful-{uuid.uuid4().hex}")


TestMongoDBStateful = stateful_case(
    _stateful_store, use_async=False, variable="KVSTORES_TEST_MONGODB_URL"
)
TestMongoDBStatefulAsync = stateful_case(
    _stateful_store, use_async=True, variable="KVSTORES_TEST_MONGODB_URL"
)


# What each operation sends: pymongo's command monitoring on a client given to the store


class Commands(monitoring.CommandListener):
    """The commands a client sends (pymongo's command monitoring): ``(name, command)`` each,
    the failures, and the most that were in flight at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.replies: list[tuple[str, dict[str, Any]]] = []
        self.failures: list[tuple[str, dict[str, Any]]] = []
        self.in_flight: set[int] = set()
        self.most_in_flight = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self.lock:
            self.sent.append((event.command_name, dict(event.command)))
            self.in_flight.add(event.request_id)
            self.most_in_flight = max(self.most_in_flight, len(self.in_flight))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        with self.lock:
            self.in_flight.discard(event.request_id)
            self.replies.append((event.command_name, dict(event.reply)))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        with self.lock:
            self.in_flight.discard(event.request_id)
            self.failures.append((event.command_name, dict(event.failure)))

    def names(self) -> list[str]:
        return [name for name, _ in self.sent]

    def clear(self) -> None:
        with self.lock:
            self.sent.clear()
            self.replies.clear()
            self.failures.clear()
            self.most_in_flight = len(self.in_flight)


class Watched:
    """A `Place` (collection of the test's own) and a `MongoClient` whose commands are
    recorded, given to the stores built here."""

    def __init__(self, place: Place) -> None:
        self.place = place
        self.commands = Commands()
        self.client: pymongo.MongoClient[Any] = pymongo.MongoClient(
            place.url, event_listeners=[self.commands]
        )

    def store(
        self,
        *,
        namespace: str | None = None,
        ttl: float | None = None,
        cls: type[Any] = MongoDBByteStore,
    ) -> Any:
        return cls(self.client, collection=self.place.name, namespace=namespace, ttl=ttl)

    def doc(self, _id: str) -> dict[str, Any] | None:
        return self.place.coll.find_one({"_id": _id})  # the raw client: not recorded


@pytest.fixture
def watched(url_place: Place) -> Iterator[Watched]:
    made = Watched(url_place)
    yield made
    made.client.close()


def _ids_in(name: str, command: dict[str, Any]) -> int:
    """How many ``_id``s a find's or a delete's ``$in`` names."""
    query = command["filter"] if name == "find" else command["deletes"][0]["q"]
    return len(query["_id"]["$in"])


def test_one_request_per_chunk_and_none_for_empty_batches(watched: Watched) -> None:
    store, commands = watched.store(namespace="n"), watched.commands
    store.mset([])
    assert store.mget([]) == []
    store.mdelete([])
    assert commands.sent == []
    # The default chunk, on absent keys (the collection stays small): 1000 ids a request.
    assert store.chunk_size == 1000
    absent = [f"x{i}" for i in range(1500)]
    assert store.mget(absent) == [None] * 1500
    store.mdelete(absent)
    assert [(name, _ids_in(name, command)) for name, command in commands.sent] == [
        ("find", 1000),
        ("find", 500),
        ("delete", 1000),
        ("delete", 500),
    ]
    commands.clear()
    store.chunk_size = 10
    store.mset([(f"k{i}", b"v") for i in range(25)])
    assert [(name, len(command["updates"])) for name, command in commands.sent] == [
        ("update", 10),
        ("update", 10),
        ("update", 5),
    ]
    for _, command in commands.sent:  # unordered whole-document upserts by _id
        assert command["ordered"] is False
        assert all(u["upsert"] and set(u["q"]) == {"_id"} for u in command["updates"])
    commands.clear()
    assert store.mget(["k1", "k1", "nope"]) == [b"v", b"v", None]
    ((name, command),) = commands.sent  # one find, its one reply holding every match
    assert name == "find"
    assert command["filter"]["_id"] == {"$in": ["kvstores:1:n:k1", "kvstores:1:n:nope"]}
    assert set(command["filter"]["exp"]) == {"$not"}
    assert command["limit"] == 2
    ((_, reply),) = commands.replies
    assert reply["cursor"]["id"] == 0  # the cursor is closed: no getMore, no killCursors
    commands.clear()
    store.mdelete([f"k{i}" for i in range(15)])
    assert commands.names() == ["delete", "delete"]
    assert store.mget(["k14", "k15"]) == [None, b"v"]
    # A single key is an _id equality (FerretDB looks it up instead of scanning).
    commands.clear()
    assert store.mget(["k15"]) == [b"v"]
    store.mdelete(["k15", "k15"])
    assert store.mget(["k15"]) == [None]
    ((_, find), (_, delete), _) = commands.sent
    assert find["filter"]["_id"] == "kvstores:1:n:k15"
    assert delete["deletes"][0]["q"] == {"_id": "kvstores:1:n:k15"}


class ReadyConnections(monitoring.ConnectionPoolListener):
    """Counts the connections a client's pools made ready (pymongo's pool monitoring)."""

    def __init__(self) -> None:
        self.ready = 0

    def connection_ready(self, event: monitoring.ConnectionReadyEvent) -> None:
        self.ready += 1

    def _ignore(self, event: Any) -> None:
        pass

    pool_created = pool_ready = pool_cleared = pool_closed = _ignore
    connection_created = connection_closed = _ignore
    connection_check_out_started = connection_check_out_failed = _ignore
    connection_checked_out = connection_checked_in = _ignore


def test_async_chunks_are_sent_concurrently(url_place: Place) -> None:
    commands, pool = Commands(), ReadyConnections()

    async def main() -> int:
        client: pymongo.AsyncMongoClient[Any] = pymongo.AsyncMongoClient(
            url_place.url, event_listeners=[commands, pool]
        )
        try:
            # Three idle connections first, so that no chunk waits to connect.
            for _ in range(20):
                if pool.ready >= 3:
                    break
                await asyncio.gather(*(client.admin.command("ping") for _ in range(3)))
            assert pool.ready >= 3
            store = MongoDBByteStore(client, collection=url_place.name)
            store.chunk_size = 10
            commands.clear()
            await store.amset([(f"k{i}", b"v") for i in range(30)])
            assert commands.names() == ["update"] * 3
            return commands.most_in_flight
        finally:
            await client.close()

    assert asyncio.run(main()) == 3  # the three chunks in flight at once
    assert url_place.coll.count_documents({}) == 30


# Layout, expiry


@pytest.fixture
def url_place() -> Iterator[Place]:
    made = Place("url")
    yield made
    made.close()


def test_listing_is_keyset_pages_of_a_sorted_range(watched: Watched) -> None:
    store, commands = watched.store(namespace="ns"), watched.commands
    store.page_size = 10
    store.mset([(f"a{i:03d}", b"v") for i in range(25)] + [("b", b"v")])
    commands.clear()
    assert list(store.yield_keys(prefix="a")) == [f"a{i:03d}" for i in range(25)]
    # One find per page, each starting after the last key of the page before; its one
    # reply closes the cursor: no getMore, no cursor left open between pages. Pages double
    # (10, 20, ...), each asking one key more, which tells the last page from a full one.
    assert commands.names() == ["find", "find"]
    finds = [command for _, command in commands.sent]
    assert [find["filter"]["_id"] for find in finds] == [
        {"$gte": "kvstores:2:ns:a", "$lt": "kvstores:2:ns:b"},
        {"$gt": "kvstores:2:ns:a009", "$lt": "kvstores:2:ns:b"},
    ]
    for find in finds:
        assert find["sort"] == {"_id": 1}
        assert find["projection"] == {"_id": True}
    assert [find["limit"] for find in finds] == [11, 21]  # and a batch as large: one reply
    assert all(reply["cursor"]["id"] == 0 for _, reply in commands.replies)

    # A listing that fits in a page is one find, even when it fills the page exactly.
    commands.clear()
    assert list(store.yield_keys(prefix="a00")) == [f"a{i:03d}" for i in range(10)]
    assert commands.names() == ["find"]
    assert asyncio.run(_alist(store, "a00")) == [f"a{i:03d}" for i in range(10)]


async def _alist(store: MongoDBByteStore, prefix: str) -> list[str]:
    keys = [key async for key in store.ayield_keys(prefix=prefix)]
    await store.aclose()
    return keys


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_writes_between_pages_do_not_disturb_a_listing(url_place: Place, use_async: bool) -> None:
    """Keys behind the listing's position are not listed again, keys ahead of it appear,
    keys deleted ahead of it do not, and nothing is listed twice."""
    store = url_place.store()
    store.page_size = 10
    store.mset([(f"k{i:03d}", b"v") for i in range(0, 60, 2)])  # k000, k002, ..., k058

    def write_between_pages() -> None:
        store.mset([("k001", b"v"), ("k041", b"v")])  # behind, ahead
        store.mdelete(["k050"])  # ahead

    expected = [f"k{i:03d}" for i in range(0, 60, 2) if i != 50]
    expected.insert(expected.index("k042"), "k041")
    if use_async:

        async def main() -> list[str]:
            listed: list[str] = []
            async for key in store.ayield_keys():
                listed.append(key)
                if len(listed) == 10:
                    await asyncio.to_thread(write_between_pages)
            await store.aclose()
            return listed

        assert asyncio.run(main()) == expected
    else:
        listed = []
        for key in store.yield_keys():
            listed.append(key)
            if len(listed) == 10:
                write_between_pages()
        assert listed == expected


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


def test_ttl_index_is_requested_once_and_only_with_a_ttl(watched: Watched) -> None:
    store, commands = watched.store(ttl=60), watched.commands
    store.mset([("a", b"1")])
    store.mset([("b", b"2")])
    assert commands.names() == ["createIndexes", "update", "update"]
    (index,) = commands.sent[0][1]["indexes"]
    assert index["key"] == {"exp": 1}
    assert index["expireAfterSeconds"] == 0
    assert store.ttl_index is not None
    doc = watched.doc("kvstores::a")
    assert doc is not None
    assert isinstance(doc["exp"], datetime)
    commands.clear()
    plain = watched.store()  # no ttl: no index, no field
    plain.mset([("c", b"3")])
    assert commands.names() == ["update"]
    assert watched.doc("kvstores::c") == {"_id": "kvstores::c", "v": b"3"}


def test_ttl_index_where_the_server_has_them(url_place: Place) -> None:
    version = ferretdb_version(url_place.url)
    if version is not None:
        pytest.skip(
            f"FerretDB {version} gap: no TTL index (createIndexes with expireAfterSeconds "
            "fails, code 238); the refusal is tested instead"
        )
    store = url_place.store(ttl=600)
    store.mset([("k", b"v")])
    assert store.ttl_index is True
    assert store.ttl_index_refusal is None
    indexes = url_place.coll.index_information()
    assert any(spec.get("expireAfterSeconds") == 0 for spec in indexes.values())


def test_a_refused_ttl_index_is_kept_and_writes_go_on(watched: Watched) -> None:
    version = ferretdb_version(watched.place.url)
    if version is None:
        pytest.skip(
            "the server accepts TTL indexes: only FerretDB's gap (no TTL index, code 238) "
            "makes the store go on without one"
        )
    store, commands = watched.store(ttl=60), watched.commands
    store.mset([("a", b"1")])
    assert store.ttl_index is False
    assert "238" in (store.ttl_index_refusal or "")  # FerretDB's NotImplemented
    assert [(name, failure["code"]) for name, failure in commands.failures] == [
        ("createIndexes", 238)
    ]
    assert store.mget(["a"]) == [b"1"]
    commands.clear()
    store.mset([("b", b"2")])  # the refusal is kept: not asked again
    assert commands.names() == ["update"]
    assert store.mget(["b"]) == [b"2"]


def test_purge_expired_deletes_only_expired_documents_of_its_namespace(url_place: Place) -> None:
    short = url_place.store(namespace="p", ttl=0.5)
    other = url_place.store(namespace="q", ttl=0.5)
    short.mset([("a", b"1"), ("b", b"2")])
    other.mset([("a", b"1")])
    url_place.store(namespace="p").mset([("b", b"3"), ("c", b"4")])  # without ttl: permanent
    time.sleep(1.2)
    assert short.mget(["a", "b", "c"]) == [None, b"3", b"4"]
    # Without a TTL index (FerretDB) nothing else deletes them: the counts are exact;
    # with one, MongoDB's TTL monitor may have been first.
    exact = short.ttl_index is False
    removed = short.purge_expired()
    assert (removed == 1) if exact else (removed in (0, 1))
    if exact:  # the other namespace's expired document is still there
        assert url_place.coll.count_documents({"_id": "kvstores:1:q:a"}) == 1
    removed = asyncio.run(other.apurge_expired())
    assert (removed == 1) if exact else (removed in (0, 1))
    assert sorted(d["_id"] for d in url_place.coll.find({})) == ["kvstores:1:p:b", "kvstores:1:p:c"]


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
    info = url_place.db.command("buildInfo")
    if "ferretdbVersion" in info:
        ferret = info["ferretdbVersion"].removeprefix("v")
        assert version == f"ferretdb {ferret} (mongodb {info['version']})"
    else:
        assert version == f"mongodb {info['version']}"


def test_server_errors_are_kvstore_errors(url_place: Place) -> None:
    # A database name the server refuses (too long: InvalidNamespace, code 73). The store
    # refuses such a name itself (tests/test_names.py), so it is a given collection's,
    # which the store uses as it is.
    store = MongoDBByteStore(url_place.raw["d" * 100]["c"])
    calls: list[Callable[[], Any]] = [
        lambda: store.mget(["a"]),
        lambda: asyncio.run(store.amget(["a"])),
        lambda: list(store.yield_keys()),
        lambda: asyncio.run(_akeys(store)),
    ]
    for call in calls:
        with pytest.raises(KVStoreError, match="mongodb") as caught:
            call()
        assert not isinstance(caught.value, BackendUnavailableError)
        cause = caught.value.__cause__
        assert isinstance(cause, OperationFailure)
        assert cause.code == 73
        assert cause.details is not None
        assert str(cause.details["errmsg"]) in str(caught.value)
    store.close()


def test_ferretdbs_malformed_reply_to_a_failed_bulk_write(url_place: Place) -> None:
    version = ferretdb_version(url_place.url)
    if version is None:
        pytest.skip(
            "the server's replies to failed bulk writes are complete: the reply without "
            "nModified (pymongo's KeyError) is FerretDB's gap"
        )
    store = url_place.store(cls=MongoDBStore)  # FerretDB refuses nested arrays
    calls: list[Callable[[], Any]] = [
        lambda: store.mset([("m", [[1]])]),
        lambda: asyncio.run(store.amset([("m", [[1]])])),
    ]
    for call in calls:
        with pytest.raises(KVStoreError, match="malformed server reply") as caught:
            call()
        assert not isinstance(caught.value, BackendUnavailableError)
        assert isinstance(caught.value.__cause__, PyMongoError)
        assert isinstance(caught.value.__cause__.__cause__, KeyError)
    assert url_place.coll.count_documents({}) == 0
    store.close()


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
    "empty-list": [],
    "empty-text": "",
    "zero": {"b": 0},
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
        stored = {
            d["_id"]: d["v"] for d in place.coll.find({"_id": {"$ne": "kvstores:4:docs:async"}})
        }
        assert stored == {document_id("docs", key): value for key, value in DOCUMENTS.items()}
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


def test_refused_documents_send_nothing(watched: Watched) -> None:
    store, commands = watched.store(cls=MongoDBStore), watched.commands
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
        with pytest.raises(error):
            asyncio.run(store.amset([("good", {"ok": True}), ("bad", bad)]))
    assert commands.sent == []
    assert watched.place.coll.count_documents({}) == 0


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
        with pytest.raises(TypeError, match="timeout"):
            MongoDBByteStore(client, timeout=3)
        with MongoDBByteStore(client, collection=name) as store:
            assert (store.database_name, store.collection_name) == ("kvstores_test", name)
            assert store.collection.database.client is client
            store.mset([("k", b"v")])
            assert asyncio.run(store.amget(["k"])) == [b"v"]  # in a worker thread
        assert client.get_default_database("kvstores_test")[name].count_documents({}) == 1

        async def on_async_client() -> list[bytes | None]:
            aclient: pymongo.AsyncMongoClient[Any] = pymongo.AsyncMongoClient(url)
            try:
                store = MongoDBByteStore(aclient.get_default_database("kvstores_test")[name])
                assert (store.database_name, store.collection_name) == ("kvstores_test", name)
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


def test_an_async_client_gets_a_sync_twin_that_the_store_closes(url_place: Place) -> None:
    async def main() -> None:
        aclient: pymongo.AsyncMongoClient[Any] = pymongo.AsyncMongoClient(url_place.url)
        try:
            store = MongoDBByteStore(aclient, collection=url_place.name)
            twin = store.collection.database.client  # built from the async client's settings
            assert isinstance(twin, pymongo.MongoClient)
            assert store.collection.database.name == "kvstores_test"
            store.mset([("t", b"twin")])
            assert await store.amget(["t"]) == [b"twin"]  # the async client sees it
            store.close()
            with pytest.raises(InvalidOperation):  # the twin is closed
                twin.admin.command("ping")
            assert (await aclient.admin.command("ping"))["ok"]  # the given client is not
            assert await store.amget(["t"]) == [b"twin"]
            assert store.mget(["t"]) == [b"twin"]  # a new twin
            store.close()
        finally:
            await aclient.close()

    asyncio.run(main())


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
