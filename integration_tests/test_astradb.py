"""The AstraDB stores against a server speaking the Data API (`KVSTORES_TEST_ASTRADB_URL`; the
services script runs this project's emulator of the Data API, which stores documents in a real
Apache Cassandra 5.0 node and behaves as SERVERS.md says the open-source Data API server does):
the conformance kit, sync and async, on stores built from a URL, a `Database`, a `Collection`
and an `AsyncCollection`, with raw astrapy hooks on the documented layout; the Hypothesis state
machine; `AstraDBStore`'s documents; the HTTP requests each batch sends (counted with astrapy's
event observers); listing; expiry; ceilings; errors and timeouts.

Isolation: creating a collection is slow, so the tests share one collection; every store a
test makes has its namespace emptied afterwards.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from integration_tests.conftest import server_url, stateful_case

pytest.importorskip("astrapy")

from astrapy import AsyncCollection, Collection, DataAPIClient, Database
from astrapy.api_options import APIOptions
from astrapy.event_observers import ObservableEvent, ObservableEventType, Observer

import kvstores
from kvstores import BackendUnavailableError, ByteStore, KVStoreError
from kvstores.astradb import (
    MAX_BYTES_VALUE,
    MAX_DOCUMENT_CHARS,
    AstraDBBase,
    AstraDBByteStore,
    AstraDBStore,
)
from kvstores.backend import namespace_prefix
from kvstores.errors import ConfigurationError, InvalidValueError
from kvstores.testing import AsyncByteStoreTests, ByteStoreTests, StoreFactory

COLLECTION = "kit"
KINDS = ["url", "database", "collection", "async-collection"]
VARIABLE = "KVSTORES_TEST_ASTRADB_URL"


def _url() -> str:
    return server_url(VARIABLE)


def _database(observers: dict[str, Observer] | None = None) -> Database:
    """A raw astrapy Database on the test server (the URL's endpoint, keyspace, token)."""
    url = _url()
    rest, _, query = url.partition("?")
    token = dict(part.split("=", 1) for part in query.split("&") if part)["token"]
    host, _, keyspace = rest.removeprefix("astradb+http://").partition("/")
    options = APIOptions(event_observers=observers or {})
    client = DataAPIClient(token, environment="other", api_options=options)
    return client.get_database(f"http://{host}", keyspace=keyspace)


class Shared:
    """The shared collection (made by a store), and a raw astrapy handle on it."""

    def __init__(self) -> None:
        maker = AstraDBByteStore.from_url(_url(), collection=COLLECTION)
        maker.mget(["warm-up"])  # creates keyspace and collection if missing
        maker.close()
        self.database = _database()
        self.raw: Collection = self.database.get_collection(COLLECTION)


_SHARED: list[Shared] = []


def shared() -> Shared:
    if not _SHARED:
        _SHARED.append(Shared())
    return _SHARED[0]


class Place:
    """Stores of one kind on the shared collection; their namespaces emptied at the end."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.shared = shared()
        self.made: list[AstraDBBase[Any]] = []

    def store(
        self,
        *,
        namespace: str | None = None,
        ttl: float | None = None,
        cls: type[Any] = AstraDBByteStore,
    ) -> Any:
        options: dict[str, Any] = {"namespace": namespace, "ttl": ttl}
        if self.kind == "url":
            store = cls.from_url(_url(), collection=COLLECTION, **options)
        elif self.kind == "database":
            store = cls(_database(), collection=COLLECTION, **options)
        elif self.kind == "collection":
            store = cls(self.shared.raw, **options)
        else:
            store = cls(self.shared.raw.to_async(), **options)
        self.made.append(store)
        return store

    def close(self) -> None:
        for namespace in {store.namespace for store in self.made}:
            cleaner = AstraDBByteStore(self.shared.raw, namespace=namespace)
            cleaner.mdelete(list(cleaner.yield_keys()))
            cleaner.close()
        for store in self.made:
            store.close()


@pytest.fixture(params=KINDS)
def place(request: pytest.FixtureRequest) -> Iterator[Place]:
    made = Place(request.param)
    yield made
    made.close()


@pytest.fixture
def make_store(place: Place) -> StoreFactory:
    return place.store


@pytest.fixture
def url_place() -> Iterator[Place]:
    made = Place("url")
    yield made
    made.close()


# The conformance kit


class AstraRaw:
    """The kit's raw hooks: astrapy on the documented layout, ``{"_id": namespace prefix +
    key, "ns": namespace or "", "v": <bytes>}``."""

    place: Place

    @pytest.fixture(autouse=True)
    def _raw_astrapy(self, place: Place) -> None:
        self.place = place

    def raw_get(self, store: ByteStore, key: str) -> bytes | None:
        assert isinstance(store, AstraDBBase)
        doc = self.place.shared.raw.find_one({"_id": namespace_prefix(store.namespace) + key})
        return None if doc is None else bytes(doc["v"])

    def raw_set(self, store: ByteStore, key: str, value: bytes) -> None:
        assert isinstance(store, AstraDBBase)
        _id = namespace_prefix(store.namespace) + key
        document = {"_id": _id, "ns": store.namespace or "", "v": value}
        self.place.shared.raw.replace_one({"_id": _id}, document, upsert=True)

    def raw_delete(self, store: ByteStore, key: str) -> None:
        assert isinstance(store, AstraDBBase)
        self.place.shared.raw.delete_one({"_id": namespace_prefix(store.namespace) + key})


class TestAstraDBByteStore(AstraRaw, ByteStoreTests):
    many_keys = 600  # the emulator stores in a real Cassandra: keep the run short


class TestAstraDBByteStoreAsync(AstraRaw, AsyncByteStoreTests):
    many_keys = 600
    burst = 200


def _stateful_store() -> AstraDBByteStore:
    shared()
    return AstraDBByteStore.from_url(
        _url(), collection=COLLECTION, namespace=f"stateful-{uuid.uuid4().hex}"
    )


TestAstraDBStateful = stateful_case(_stateful_store, use_async=False, variable=VARIABLE)
TestAstraDBStatefulAsync = stateful_case(_stateful_store, use_async=True, variable=VARIABLE)


# The requests each batch sends


class Requests:
    def __init__(self) -> None:
        self.events: list[ObservableEvent] = []
        self.observer = Observer.from_event_list(
            self.events, event_types=[ObservableEventType.REQUEST]
        )

    def commands(self) -> list[str]:
        names = []
        for event in self.events:
            payload = getattr(event, "payload", None)
            body = json.loads(payload) if isinstance(payload, str) else payload or {}
            names.append(next(iter(body)))
        return names

    def clear(self) -> None:
        self.events.clear()


@pytest.fixture
def watched(url_place: Place) -> tuple[AstraDBByteStore, Requests]:
    requests = Requests()
    raw = url_place.shared.raw.with_options(
        api_options=APIOptions(event_observers={"count": requests.observer})
    )
    store = AstraDBByteStore(raw, namespace=f"w-{uuid.uuid4().hex[:8]}")
    url_place.made.append(store)
    return store, requests


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_requests_per_batch(watched: tuple[AstraDBByteStore, Requests], use_async: bool) -> None:
    store, requests = watched

    def call(method: str, *args: Any) -> Any:
        if use_async:
            return asyncio.run(getattr(store, "a" + method)(*args))
        return getattr(store, method)(*args)

    keys = [f"k{i:03d}" for i in range(100)]
    call("mset", [(key, b"v") for key in keys])
    assert requests.commands() == ["insertMany", "insertMany"]  # 50 documents each
    requests.clear()
    # 10 of 20 exist: one insertMany, then one findOneAndReplace per existing key.
    call("mset", [(key, b"w") for key in [*keys[:10], *(f"new{i}" for i in range(10))]])
    commands = requests.commands()
    assert commands[0] == "insertMany"
    assert sorted(commands[1:]) == ["findOneAndReplace"] * 10
    requests.clear()
    assert call("mget", [*keys, "absent"]) == [b"w"] * 10 + [b"v"] * 90 + [None]
    assert requests.commands() == ["find"] * 6  # 101 ids, 20 a request
    requests.clear()
    call("mdelete", keys)
    assert requests.commands() == ["deleteMany"] * 5
    requests.clear()
    for method in ("mget", "mset", "mdelete"):
        call(method, [])
    assert requests.commands() == []


def test_a_concurrent_reader_never_sees_an_overwritten_key_absent(url_place: Place) -> None:
    writer, reader = url_place.store(namespace="race"), url_place.store(namespace="race")
    writer.mset([("k", b"0")])
    stop = threading.Event()
    seen: list[bytes | None] = []

    def read() -> None:
        while not stop.is_set():
            seen.extend(reader.mget(["k"]))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(1, 30):
            writer.mset([("k", str(i).encode()), (f"other{i}", b"x")])
    finally:
        stop.set()
        thread.join()
    assert seen
    assert None not in seen


def test_prefix_listing_on_a_server_without_ranges(
    watched: tuple[AstraDBByteStore, Requests],
) -> None:
    store, requests = watched
    store.mset([(f"a{i:02d}", b"v") for i in range(30)] + [("b", b"v"), ("`", b"v")])
    requests.clear()
    assert sorted(store.yield_keys(prefix="a")) == [f"a{i:02d}" for i in range(30)]
    # The emulator, as the open-source Data API, refuses a range on _id: the store then
    # lists the namespace (ns equality, paged) and remembers.
    assert store.prefix_on_server is False
    commands = requests.commands()
    assert commands[0] == "find"
    assert all(name == "find" for name in commands)
    finds = [json.loads(e.payload)["find"] for e in requests.events]  # type: ignore[attr-defined]
    assert "$gte" in json.dumps(finds[0]["filter"])
    assert all(find["filter"] == {"ns": store.namespace} for find in finds[1:])
    requests.clear()
    assert sorted(store.yield_keys(prefix="b")) == ["b"]
    finds = [json.loads(e.payload)["find"] for e in requests.events]  # type: ignore[attr-defined]
    assert all(find["filter"] == {"ns": store.namespace} for find in finds)


# Layout, documents, expiry, ceilings


def test_layout_as_documented(url_place: Place) -> None:
    store = url_place.store(namespace="layout", ttl=60)
    before = time.time_ns() // 1_000_000
    store.mset([("k", b"value")])
    doc = url_place.shared.raw.find_one({"_id": "kvstores:6:layout:k"})
    assert doc is not None
    assert doc["ns"] == "layout"
    assert bytes(doc["v"]) == b"value"
    assert before + 60_000 <= doc["exp"] <= time.time_ns() // 1_000_000 + 60_000
    definitions = {d.name: d.definition for d in url_place.shared.database.list_collections()}
    assert definitions[COLLECTION].indexing == {"deny": ["v", "f"]}


def test_documents_round_trip_exactly(url_place: Place) -> None:
    store = url_place.store(namespace="docs", cls=AstraDBStore)
    values = [
        {"a": 1.0, "b": [1, 2.0, {"c": 0.0, "d": 3.5}], "e": "x" * 20_000, "f": True},
        [1.0, 2, [3.0, [4]]],
        2.0,
        "text",
        0,
        {"nested": {"deep": {"deeper": [1.5, 2.0]}}},
    ]
    store.mset([(f"k{i}", value) for i, value in enumerate(values)])
    got = store.mget([f"k{i}" for i in range(len(values))])
    assert got == values
    for mine, theirs in zip(got, values, strict=True):
        assert json.dumps(mine) == json.dumps(theirs)  # 1.0 stays 1.0, not 1
    assert asyncio.run(store.amget(["k2"])) == [2.0]
    assert isinstance(store.mget(["k2"])[0], float)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"a.b": 1}, InvalidValueError),
        ({"$x": 1}, InvalidValueError),
        ({"": 1}, InvalidValueError),
        ({1: "x"}, TypeError),
        ({"s": {1, 2}}, TypeError),
        ((1, 2), TypeError),
        (float("nan"), InvalidValueError),
        ({"a": None}, TypeError),
    ],
)
def test_refused_documents_write_nothing(
    url_place: Place, value: Any, error: type[Exception]
) -> None:
    store = url_place.store(namespace="refused", cls=AstraDBStore)
    with pytest.raises(error):
        store.mset([("good", {"x": 1}), ("bad", value)])
    assert store.mget(["good"]) == [None]


def test_expired_entries_are_never_returned_and_purged(url_place: Place) -> None:
    store = url_place.store(namespace="expiry", ttl=0.3)
    store.mset([("old", b"v")])
    url_place.store(namespace="expiry").mset([("kept", b"v")])
    time.sleep(0.4)
    assert store.mget(["old", "kept"]) == [None, b"v"]
    assert list(store.yield_keys()) == ["kept"]
    assert url_place.shared.raw.find_one({"_id": "kvstores:6:expiry:old"}) is not None
    assert store.purge_expired() == 1
    assert url_place.shared.raw.find_one({"_id": "kvstores:6:expiry:old"}) is None
    assert store.mget(["kept"]) == [b"v"]


def test_bytes_at_the_ceiling_with_the_longest_key(url_place: Place) -> None:
    store = url_place.store(namespace="ceiling")
    key = "\U0001f600" * 1024
    store.mset([(key, b"\xff" * MAX_BYTES_VALUE)])
    assert store.mget([key]) == [b"\xff" * MAX_BYTES_VALUE]
    with pytest.raises(InvalidValueError):
        store.mset([("small", b"v"), ("big", b"x" * (MAX_BYTES_VALUE + 1))])
    assert store.mget(["small"]) == [None]


def test_documents_at_the_ceiling(url_place: Place) -> None:
    store = url_place.store(namespace="docceiling", cls=AstraDBStore)
    overhead = len(json.dumps({"s": ""}, separators=(",", ":")))
    value = {"s": "x" * (MAX_DOCUMENT_CHARS - overhead)}
    store.mset([("k", value)])
    assert store.mget(["k"]) == [value]
    with pytest.raises(InvalidValueError, match="MAX_DOCUMENT_CHARS"):
        store.mset([("k2", {"s": "x" * (MAX_DOCUMENT_CHARS - overhead + 1)})])


# Given objects, URLs, errors


def test_a_database_gets_its_collection_created(url_place: Place) -> None:
    name = f"c_{uuid.uuid4().hex[:8]}"
    database = _database()
    store = AstraDBByteStore(database, collection=name)
    try:
        store.mset([("k", b"v")])
        definitions = {d.name: d.definition for d in database.list_collections()}
        assert definitions[name].indexing == {"deny": ["v", "f"]}
        assert AstraDBByteStore(database, collection=name).mget(["k"]) == [b"v"]
    finally:
        store.close()
        database.drop_collection(name)


def test_a_collection_indexing_the_value_field_is_refused() -> None:
    name = f"c_{uuid.uuid4().hex[:8]}"
    database = _database()
    database.create_collection(name)
    try:
        with pytest.raises(ConfigurationError, match="indexes the field 'v'"):
            AstraDBByteStore(database, collection=name).mget(["k"])
    finally:
        database.drop_collection(name)


def test_an_async_collection_gets_a_sync_twin(url_place: Place) -> None:
    async_collection: AsyncCollection = url_place.shared.raw.to_async()
    store = AstraDBByteStore(async_collection, namespace="twin")
    url_place.made.append(store)
    store.mset([("k", b"v")])
    assert asyncio.run(store.amget(["k"])) == [b"v"]


def test_token_is_never_shown(url_place: Place) -> None:
    store = url_place.store()
    assert "kvstores-test-token" not in repr(store)
    bad = AstraDBByteStore.from_url(
        _url().replace("token=", "token=wrong-") + "x", collection=COLLECTION
    )
    with pytest.raises(KVStoreError) as caught:
        bad.mget(["k"])
    assert "wrong-" not in str(caught.value)


def test_kvstores_from_url_and_typos() -> None:
    store = kvstores.from_url(_url())
    assert isinstance(store, AstraDBByteStore)
    store.close()
    with pytest.raises(ConfigurationError, match="'colection'"):
        AstraDBByteStore.from_url(_url() + "&colection=x")
    with pytest.raises(ConfigurationError, match="'colection'"):
        AstraDBByteStore.from_url(_url(), colection="x")


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_unreachable_endpoint(unused_tcp_port: int, use_async: bool) -> None:
    url = f"astradb+http://127.0.0.1:{unused_tcp_port}/ks?token=s3cret-token&timeout=2"
    store = AstraDBByteStore.from_url(url)
    call = (lambda: asyncio.run(store.amget(["k"]))) if use_async else (lambda: store.mget(["k"]))
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as caught:
        call()
    assert time.monotonic() - started < 2 + 3
    assert "s3cret-token" not in str(caught.value)
    store.close()


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_silent_listener_times_out(silent_listener: tuple[str, int], use_async: bool) -> None:
    host, port = silent_listener
    store = AstraDBByteStore.from_url(f"astradb+http://{host}:{port}/ks?token=t&timeout=1")
    call = (lambda: asyncio.run(store.amget(["k"]))) if use_async else (lambda: store.mget(["k"]))
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError):
        call()
    assert time.monotonic() - started < 1 + 3
    store.close()


def test_writers_of_one_key_at_once(url_place: Place) -> None:
    """The Data API answers a conditional write that lost a race with
    FAILED_CONCURRENT_OPERATIONS; the store sends its replacements again."""
    stores = [url_place.store(namespace="hot") for _ in range(8)]
    stores[0].mset([("k", b"start")])
    errors: list[BaseException] = []

    def write(store: AstraDBByteStore, n: int) -> None:
        try:
            for i in range(10):
                store.mset([("k", f"{n}-{i}".encode())])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert stores[0].mget(["k"])[0] is not None


def test_close_lets_go_of_every_connection_and_the_store_connects_again() -> None:
    """astrapy's sync objects close their HTTP client only when garbage collected: a store
    on a URL closes them itself (a soak found them open after close), and stays usable."""
    psutil = pytest.importorskip("psutil")
    url = _url()
    port = int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])

    def connections() -> int:
        return sum(
            1
            for c in psutil.Process().net_connections("tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        )

    before = connections()
    store = AstraDBByteStore.from_url(url, namespace=uuid.uuid4().hex)
    store.mset([(f"k{i}", b"v") for i in range(100)])
    asyncio.run(store.amget([f"k{i}" for i in range(100)]))
    assert connections() > before
    store.close()
    assert connections() <= before
    assert store.mget(["k1"]) == [b"v"]  # connects again
    store.mdelete([f"k{i}" for i in range(100)])
    store.close()
    assert connections() <= before
