"""`CassandraByteStore` against a real Apache Cassandra 5.0 (`KVSTORES_TEST_CASSANDRA_URL`, one
node, replication factor 1; `KVSTORES_TEST_CASSANDRA_CLUSTER_URL`, three nodes, replication
factor 3 at QUORUM): the conformance kit, sync and async, on stores built from a URL, from a
`Session` and from a `Cluster` on the node and from a URL on the cluster, with raw CQL hooks on
the documented layout; the Hypothesis state machine; the requests each operation sends
(counted with the driver's request listener); the layout, expiry, the value ceiling, buckets,
given sessions and clusters, errors and timeouts; and the cluster serving reads and writes at
QUORUM while one of its nodes is stopped (the services script stops and starts it).

Isolation: schema changes are slow (up to seconds on three nodes), so the tests share one table
per server; every store a test makes has its namespace emptied afterwards.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration_tests.conftest import server_url, stateful_case

pytest.importorskip("cassandra")

from cassandra.cluster import Cluster, ResponseFuture, Session
from cassandra.query import BatchStatement, BoundStatement

from kvstores import BackendUnavailableError, ByteStore, KVStoreError
from kvstores.cassandra import MAX_VALUE, CassandraByteStore, bucket_of
from kvstores.errors import ConfigurationError, InvalidValueError
from kvstores.testing import AsyncByteStoreTests, ByteStoreTests, StoreFactory

TABLE = "kit"
KEYSPACE = "kvstores_test"
KINDS = ["url", "session", "cluster", "three-nodes"]
SERVICES = Path(__file__).resolve().parents[1] / "scripts" / "services.sh"


def _url(three_nodes: bool = False) -> str:
    if three_nodes:
        return server_url("KVSTORES_TEST_CASSANDRA_CLUSTER_URL")
    return server_url("KVSTORES_TEST_CASSANDRA_URL")


class Server:
    """A server's shared table, a store that made it, and the raw session of that store."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.maker = CassandraByteStore.from_url(url, table=TABLE)
        self.session: Session = self.maker.session  # creates keyspace and table
        self.buckets = self.maker.buckets
        self.clusters: list[Cluster] = []

    def given_cluster(self) -> Cluster:
        if not self.clusters:
            hosts = self.url.split("://")[1].split("/")[0]
            port = int(hosts.rsplit(":", 1)[1])
            points = hosts.rsplit(":", 1)[0].split(",")
            self.clusters.append(Cluster(points, port=port))
        return self.clusters[0]

    def close(self) -> None:
        self.maker.close()
        for cluster in self.clusters:
            cluster.shutdown()


_SERVERS: dict[str, Server] = {}


@pytest.fixture(scope="module", autouse=True)
def _shut_servers_down() -> Iterator[None]:
    yield
    for server in _SERVERS.values():
        server.close()
    _SERVERS.clear()


def server_for(three_nodes: bool) -> Server:
    url = _url(three_nodes)
    if url not in _SERVERS:
        _SERVERS[url] = Server(url)
    return _SERVERS[url]


class Place:
    """Stores of one kind on a server's shared table; their namespaces emptied at the end."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.server = server_for(kind == "three-nodes")
        self.made: list[CassandraByteStore] = []

    def store(self, *, namespace: str | None = None, ttl: float | None = None) -> Any:
        server = self.server
        options: dict[str, Any] = {"table": TABLE, "namespace": namespace, "ttl": ttl}
        if self.kind in ("url", "three-nodes"):
            store = CassandraByteStore.from_url(server.url, **options)
        elif self.kind == "session":
            store = CassandraByteStore(server.session, keyspace=KEYSPACE, **options)
        else:
            store = CassandraByteStore(server.given_cluster(), keyspace=KEYSPACE, **options)
        self.made.append(store)
        return store

    def raw(self, namespace: str | None) -> CassandraByteStore:
        return CassandraByteStore(
            self.server.session, keyspace=KEYSPACE, table=TABLE, namespace=namespace
        )

    def close(self) -> None:
        for namespace in {store.namespace for store in self.made}:
            cleaner = self.raw(namespace)
            cleaner.mdelete(list(cleaner.yield_keys()))
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
def node() -> Iterator[Place]:
    made = Place("url")
    yield made
    made.close()


def _row(server: Server, namespace: str | None, key: str) -> Any:
    return server.session.execute(
        f"SELECT value, exp, TTL(value) FROM {KEYSPACE}.{TABLE} "
        "WHERE ns = %s AND bucket = %s AND key = %s",
        (namespace or "", bucket_of(key, server.buckets), key),
    ).one()


# The conformance kit


class CassandraRaw:
    """The kit's raw hooks: CQL on the documented layout, ``(ns, bucket, key, value, exp)``
    with ``bucket = crc32(utf8(key)) % buckets``."""

    place: Place

    @pytest.fixture(autouse=True)
    def _raw_cql(self, place: Place) -> None:
        self.place = place

    def raw_get(self, store: ByteStore, key: str) -> bytes | None:
        assert isinstance(store, CassandraByteStore)
        row = _row(self.place.server, store.namespace, key)
        return None if row is None else bytes(row[0])

    def raw_set(self, store: ByteStore, key: str, value: bytes) -> None:
        assert isinstance(store, CassandraByteStore)
        server = self.place.server
        server.session.execute(
            f"INSERT INTO {KEYSPACE}.{TABLE} (ns, bucket, key, value, exp) "
            "VALUES (%s, %s, %s, %s, 0)",
            (store.namespace or "", bucket_of(key, server.buckets), key, value),
        )

    def raw_delete(self, store: ByteStore, key: str) -> None:
        assert isinstance(store, CassandraByteStore)
        server = self.place.server
        server.session.execute(
            f"DELETE FROM {KEYSPACE}.{TABLE} WHERE ns = %s AND bucket = %s AND key = %s",
            (store.namespace or "", bucket_of(key, server.buckets), key),
        )


class TestCassandraByteStore(CassandraRaw, ByteStoreTests):
    pass


class TestCassandraByteStoreAsync(CassandraRaw, AsyncByteStoreTests):
    pass


def _stateful_store() -> CassandraByteStore:
    return CassandraByteStore.from_url(
        _url(), table=TABLE, namespace=f"stateful-{uuid.uuid4().hex}"
    )


TestCassandraStateful = stateful_case(
    _stateful_store, use_async=False, variable="KVSTORES_TEST_CASSANDRA_URL"
)
TestCassandraStatefulAsync = stateful_case(
    _stateful_store, use_async=True, variable="KVSTORES_TEST_CASSANDRA_URL"
)


# What each operation sends: the driver's request listener on a session given to the store


class Requests:
    """The requests a session sends (each a `ResponseFuture`, as the driver's request init
    listener sees it)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.sent: list[ResponseFuture] = []
        session.add_request_init_listener(self.sent.append)

    def statements(self) -> list[Any]:
        return [future.query for future in self.sent]

    def close(self) -> None:
        self.session.remove_request_init_listener(self.sent.append)


@pytest.fixture
def watched(node: Place) -> Iterator[tuple[CassandraByteStore, Requests]]:
    store = node.store(namespace=f"w-{uuid.uuid4().hex[:8]}")
    store.mset([("warm-up", b"x")])  # connected and prepared: only operations counted now
    store.mdelete(["warm-up"])
    requests = Requests(store.session)
    yield store, requests
    requests.close()


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_one_wave_per_batch_one_statement_per_bucket(
    watched: tuple[CassandraByteStore, Requests], use_async: bool
) -> None:
    store, requests = watched
    buckets = store.buckets
    keys = [f"key-{i}" for i in range(300)]
    touched = {bucket_of(key, buckets) for key in keys}

    def call(method: str, *args: Any) -> Any:
        if use_async:
            return asyncio.run(getattr(store, "a" + method)(*args))
        return getattr(store, method)(*args)

    call("mset", [(key, b"v") for key in keys])
    sent = requests.statements()
    # One unlogged single-partition batch per bucket the keys fall in (a lone key: a row).
    assert len(sent) == len(touched)
    partitions = set()
    for statement in sent:
        if isinstance(statement, BatchStatement):
            assert statement.batch_type.name == "UNLOGGED"
            rows = statement._statements_and_parameters  # the batch's rows
            buckets_in_batch = {params[1] for _, _, params in rows}
            assert len(buckets_in_batch) == 1  # one partition per batch
        partitions.add(statement.routing_key)
    assert len(partitions) == len(touched)

    requests.sent.clear()
    assert call("mget", [*keys, "absent"]) == [b"v"] * 300 + [None]
    sent = requests.statements()
    assert len(sent) == len(touched | {bucket_of("absent", buckets)})
    assert all(isinstance(statement, BoundStatement) for statement in sent)
    assert all("key IN ?" in statement.prepared_statement.query_string for statement in sent)

    requests.sent.clear()
    call("mdelete", keys)
    assert len(requests.statements()) == len(touched)
    assert call("mget", keys) == [None] * 300

    requests.sent.clear()
    for method in ("mget", "mset", "mdelete"):
        call(method, [])
    assert requests.sent == []


def test_listing_is_a_clustering_range_in_every_bucket(
    watched: tuple[CassandraByteStore, Requests],
) -> None:
    store, requests = watched
    store.mset([(f"a{i:03d}", b"v") for i in range(30)] + [("b", b"v"), ("`", b"v")])
    requests.sent.clear()
    assert sorted(store.yield_keys(prefix="a")) == [f"a{i:03d}" for i in range(30)]
    sent = requests.statements()
    # One wave: each group of list_group buckets' first (and last) page, every bucket once.
    assert len(sent) == store.buckets // store.list_group == 8
    for statement in sent:
        query = statement.prepared_statement.query_string
        assert query.endswith("WHERE ns = ? AND bucket IN ? AND key >= ? AND key < ?")
        assert statement.fetch_size == store.page_size
    groups = [statement.values[1] for statement in sent]
    assert len(groups) == len(set(groups))


def test_listing_pages_with_the_drivers_paging_state(node: Place) -> None:
    store = node.store(namespace="paged")
    store.page_size = 3
    keys = [f"k{i:04d}" for i in range(500)]
    store.mset([(key, b"") for key in keys])
    assert sorted(store.yield_keys()) == keys
    assert sorted(asyncio.run(_alist(store))) == keys


def test_listing_pages_grow_from_wave_to_wave(
    watched: tuple[CassandraByteStore, Requests],
) -> None:
    store, requests = watched
    store.page_size = 2
    keys = [f"g{i:04d}" for i in range(600)]  # ~75 a group of 8 buckets
    store.mset([(key, b"") for key in keys])
    requests.sent.clear()
    assert sorted(store.yield_keys(prefix="g")) == keys
    sizes = [statement.fetch_size for statement in requests.statements()]
    # Each wave asks every group with pages left, pages doubling up to 16 x page_size:
    # 2, 4, 8, 16, 32 and 32 rows cover a group's ~75 keys in six waves, not 38.
    waves = sorted(set(sizes))
    assert waves == [2, 4, 8, 16, 32]
    assert len(sizes) <= 8 * 6 + 8


async def _alist(store: CassandraByteStore, prefix: str | None = None) -> list[str]:
    return [key async for key in store.ayield_keys(prefix=prefix)]


# Layout, expiry, ceiling, buckets


def test_layout_as_documented(node: Place) -> None:
    store = node.store(namespace="layout")
    store.mset([("k", b"value")])
    server = node.server
    assert tuple(_row(server, "layout", "k")) == (b"value", 0, None)
    assert _row(server, None, "k") is None  # another namespace's partition
    comment = server.session.execute(
        "SELECT comment FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s",
        (KEYSPACE, TABLE),
    ).one()[0]
    assert comment == f"kvstores byte store: buckets={store.buckets}"
    assert store.buckets == 64


def test_ttl_is_native_and_exact(node: Place) -> None:
    store = node.store(namespace="ttl", ttl=1.5)
    before = time.time_ns() // 1_000_000
    store.mset([("k", b"v")])
    value, exp, remaining = _row(node.server, "ttl", "k")
    assert value == b"v"
    assert before + 1500 <= exp <= time.time_ns() // 1_000_000 + 1500
    assert remaining in (2, 3)  # USING TTL ceil(1.5) + 1
    # A write without ttl makes the entry permanent again (exp 0, no TTL).
    node.store(namespace="ttl").mset([("k", b"w")])
    assert tuple(_row(node.server, "ttl", "k")) == (b"w", 0, None)


def test_expired_entries_are_never_returned(node: Place) -> None:
    store = node.store(namespace="expiry", ttl=0.3)
    store.mset([("k", b"v")])
    time.sleep(0.4)  # past exp, before Cassandra's own TTL (ceil(0.3) + 1 s) drops the row
    assert _row(node.server, "expiry", "k") is not None
    assert store.mget(["k"]) == [None]
    assert list(store.yield_keys()) == []
    assert asyncio.run(store.amget(["k"])) == [None]


def test_value_at_the_ceiling_with_the_longest_key(node: Place) -> None:
    """On Cassandra's default commitlog segment (32 MiB: mutations up to 16 MiB)."""
    store = node.store(namespace="ceiling")
    key = "\U0001f600" * 1024  # 4 bytes each in UTF-8
    store.mset([(key, b"x" * MAX_VALUE)])
    assert store.mget([key]) == [b"x" * MAX_VALUE]
    with pytest.raises(InvalidValueError):
        store.mset([("small", b"v"), ("big", b"x" * (MAX_VALUE + 1))])
    assert store.mget(["small", "big"]) == [None, None]


def test_single_partition_batches_pass_the_default_batch_limits(node: Place) -> None:
    """Cassandra's default batch_size_fail_threshold is 50 KiB; a batch of one partition is
    one mutation, to which it does not apply: 100 rows of 40 KiB go as one batch."""
    store = node.store(namespace="wide")
    key_in_bucket = [k for k in (f"k{i}" for i in range(20000)) if bucket_of(k, 64) == 7][:100]
    store.mset([(key, b"x" * 40_000) for key in key_in_bucket])
    assert store.mget(key_in_bucket) == [b"x" * 40_000] * 100


def test_buckets_are_the_tables(node: Place) -> None:
    url = node.server.url
    with pytest.raises(ConfigurationError, match="has 64 buckets, not the 8"):
        CassandraByteStore.from_url(url, table=TABLE, buckets=8).mget(["k"])
    table = f"b_{uuid.uuid4().hex[:10]}"
    store = CassandraByteStore.from_url(url, table=table, buckets=8)
    try:
        store.mset([(f"k{i}", b"v") for i in range(50)])
        assert store.buckets == 8
        assert CassandraByteStore.from_url(url, table=table).buckets == 8  # read back
        buckets = node.server.session.execute(
            f"SELECT DISTINCT ns, bucket FROM {KEYSPACE}.{table}"
        ).all()
        assert {bucket for _, bucket in buckets} == set(range(8))
    finally:
        store.close()
        node.server.session.execute(f"DROP TABLE {KEYSPACE}.{table}")


def test_a_table_that_is_not_ours_is_refused(node: Place) -> None:
    table = f"n_{uuid.uuid4().hex[:10]}"
    session = node.server.session
    session.execute(
        f"CREATE TABLE {KEYSPACE}.{table} (ns text, bucket int, key text, value blob, "
        "exp bigint, PRIMARY KEY ((ns, bucket), key))"
    )
    try:
        with pytest.raises(KVStoreError, match="not a kvstores table"):
            CassandraByteStore.from_url(node.server.url, table=table).mget(["k"])
    finally:
        session.execute(f"DROP TABLE {KEYSPACE}.{table}")


def test_a_missing_keyspace_is_an_error_unless_a_replication_factor_is_given(node: Place) -> None:
    base = node.server.url.split("?")[0].rsplit("/", 1)[0]
    keyspace = f"ks_{uuid.uuid4().hex[:10]}"
    with pytest.raises(KVStoreError, match=keyspace):
        CassandraByteStore.from_url(f"{base}/{keyspace}").mget(["k"])
    store = CassandraByteStore.from_url(f"{base}/{keyspace}?replication_factor=1")
    try:
        store.mset([("k", b"v")])
        assert store.mget(["k"]) == [b"v"]
    finally:
        store.close()
        node.server.session.execute(f"DROP KEYSPACE {keyspace}")


def test_server_version(node: Place) -> None:
    assert node.store().server_version() == "cassandra 5.0.9"


# Given sessions and clusters


def test_given_sessions_and_clusters_stay_up(node: Place) -> None:
    server = node.server
    by_session = CassandraByteStore(server.session, keyspace=KEYSPACE, table=TABLE)
    by_session.mset([("k", b"v")])
    by_session.close()
    assert not server.session.is_shutdown
    cluster = server.given_cluster()
    by_cluster = CassandraByteStore(cluster, keyspace=KEYSPACE, table=TABLE)
    own = by_cluster.session
    assert by_cluster.mget(["k"]) == [b"v"]
    by_cluster.close()
    assert own.is_shutdown  # the session the store connected
    assert not cluster.is_shutdown
    assert CassandraByteStore(cluster, keyspace=KEYSPACE, table=TABLE).mget(["k"]) == [b"v"]
    by_session.mdelete(["k"])


def test_a_closed_store_connects_again(node: Place) -> None:
    store = node.store(namespace="reopen")
    store.mset([("k", b"v")])
    store.close()
    assert store.mget(["k"]) == [b"v"]
    assert asyncio.run(store.amget(["k"])) == [b"v"]


def test_one_store_on_several_event_loops_and_threads(node: Place) -> None:
    store = node.store(namespace="loops")
    store.mset([("k", b"v")])
    for _ in range(3):
        assert asyncio.run(store.amget(["k"])) == [b"v"]

    async def many() -> list[list[bytes | None]]:
        return await asyncio.gather(*(asyncio.to_thread(store.mget, ["k"]) for _ in range(8)))

    assert asyncio.run(many()) == [[b"v"]] * 8


# Errors


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_unreachable_cluster(unused_tcp_port: int, use_async: bool) -> None:
    url = f"cassandra://user:s3cret@127.0.0.1:{unused_tcp_port}/ks"
    store = CassandraByteStore.from_url(url, timeout=2)
    started = time.monotonic()
    call = (lambda: asyncio.run(store.amget(["k"]))) if use_async else (lambda: store.mget(["k"]))
    with pytest.raises(BackendUnavailableError) as caught:
        call()
    assert time.monotonic() - started < 2 + 3
    assert "s3cret" not in str(caught.value)
    assert "user:***@" in str(caught.value)
    # The driver shut down the cluster that failed to connect; the store builds another.
    with pytest.raises(BackendUnavailableError):
        store.mget(["k"])
    store.close()


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_silent_listener_times_out(silent_listener: tuple[str, int], use_async: bool) -> None:
    host, port = silent_listener
    store = CassandraByteStore.from_url(f"cassandra://{host}:{port}/ks", timeout=1)
    started = time.monotonic()
    call = (lambda: asyncio.run(store.amget(["k"]))) if use_async else (lambda: store.mget(["k"]))
    with pytest.raises(BackendUnavailableError):
        call()
    assert time.monotonic() - started < 1 + 3
    store.close()


# The three-node cluster, one node down


def _services(*args: str) -> None:
    subprocess.run(["bash", str(SERVICES), *args], check=True, stdout=subprocess.DEVNULL)


@pytest.mark.skipif(os.geteuid() != 0, reason="the services script runs as root")
def test_quorum_reads_and_writes_go_on_with_one_node_of_three_stopped() -> None:
    url = _url(three_nodes=True)
    assert "consistency=QUORUM" in url
    assert "replication_factor=3" in url
    store = CassandraByteStore.from_url(url, table=TABLE, namespace=f"down-{uuid.uuid4().hex}")
    before = [(f"before-{i}", str(i).encode()) for i in range(200)]
    store.mset(before)
    _services("stop-node", "cassandra-cluster", "3")
    try:
        during = [(f"during-{i}", str(i).encode()) for i in range(200)]
        store.mset(during)
        assert asyncio.run(store.amget([k for k, _ in before])) == [v for _, v in before]
        assert store.mget([k for k, _ in during]) == [v for _, v in during]
        assert sorted(store.yield_keys(prefix="during-")) == sorted(k for k, _ in during)
        store.mdelete([k for k, _ in before[:100]])
        assert store.mget([k for k, _ in before[:100]]) == [None] * 100
    finally:
        _services("start-node", "cassandra-cluster", "3")
    assert sorted(store.yield_keys()) == sorted(k for k, _ in [*before[100:], *during])
    store.mdelete(list(store.yield_keys()))
    store.close()
