"""`SQLByteStore` against real PostgreSQL and MySQL/MariaDB servers: the conformance kit sync
and async on each (a fresh table per test, dropped afterwards), plus the schema, the index
plans, keys past the index limits, 16 MiB values and user-given engines."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")

import sqlalchemy as sa
from sqlalchemy import (
    Column,
    Double,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    insert,
    inspect,
    text,
)
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.engine import Engine, create_engine, make_url

from integration_tests.conftest import server_url
from integration_tests.sql_layout import SQLRaw
from kvstores.errors import BackendUnavailableError
from kvstores.sql import SCHEMA_VERSION, SQLByteStore
from kvstores.testing import AsyncByteStoreTests, ByteStoreTests, StoreFactory, run_in_threads

MIB = 1024 * 1024
SERVERS = {"postgres": "KVSTORES_TEST_POSTGRES_URL", "mysql": "KVSTORES_TEST_MYSQL_URL"}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _url(server: str) -> str:
    if server == "postgres":
        pytest.importorskip("psycopg")
    else:
        pytest.importorskip("pymysql")
    return server_url(SERVERS[server])


@pytest.fixture(scope="module")
def admin(server: str) -> Iterator[Engine]:
    engine = SQLByteStore(_url(server)).engine  # the URL as the store maps it to a driver
    yield engine
    engine.dispose()


@pytest.fixture
def table(admin: Engine) -> Iterator[str]:
    name = f"kvt_{uuid.uuid4().hex[:16]}"
    yield name
    with admin.connect() as connection:
        for suffix in ("", "_meta"):
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}{suffix}")
        connection.commit()


@pytest.fixture
def make_store(server: str, table: str) -> StoreFactory:
    url = _url(server)
    return lambda namespace=None, ttl=None: SQLByteStore(
        url, table=table, namespace=namespace, ttl=ttl
    )


@pytest.fixture(scope="module")
def raw_engine(admin: Engine) -> Iterator[Engine]:
    """A plain engine of the tests' own on the server, for the kit's raw storage hooks."""
    engine = create_engine(admin.url)
    yield engine
    engine.dispose()


class ServerRaw(SQLRaw):
    @pytest.fixture(autouse=True)
    def _raw_server(self, raw_engine: Engine, table: str) -> None:
        self.raw_engine, self.raw_table_name = raw_engine, table


class TestSQLServer(ServerRaw, ByteStoreTests):
    pass


class TestSQLServerAsync(ServerRaw, AsyncByteStoreTests):
    pass


# What only a real server shows


@pytest.fixture
def store(make_store: StoreFactory) -> Iterator[SQLByteStore]:
    made = make_store()
    assert isinstance(made, SQLByteStore)
    yield made
    made.close()


def test_only_the_primary_key_is_indexed(store: SQLByteStore, admin: Engine, table: str) -> None:
    store.create_schema()
    with admin.connect() as connection:
        if admin.dialect.name == "postgresql":
            rows = connection.execute(
                text("SELECT indexdef FROM pg_indexes WHERE tablename = :t"), {"t": table}
            ).all()
            assert [r[0].split(" USING btree ")[1] for r in rows] == ["(namespace, key)"]
            collations = connection.execute(
                text(
                    "SELECT column_name, collation_name FROM information_schema.columns "
                    "WHERE table_name = :t AND data_type = 'text' ORDER BY column_name"
                ),
                {"t": table},
            ).all()
            assert collations == [("key", "C"), ("key_rest", "C"), ("namespace", "C")]
        else:
            rows = connection.exec_driver_sql(f"SHOW INDEX FROM {table}").all()
            assert [(r[2], r[4]) for r in rows] == [("PRIMARY", "namespace"), ("PRIMARY", "key")]
            types = dict(
                connection.execute(
                    text(
                        "SELECT column_name, column_type FROM information_schema.columns "
                        "WHERE table_schema = DATABASE() AND table_name = :t"
                    ),
                    {"t": table},
                ).all()
            )
            assert types["namespace"] == "varbinary(1024)"
            assert types["key"] == "varbinary(1088)"  # 256 characters and a hash
            assert types["value"] == "longblob"


# Migrating a table of schema version 1


def _text(mysql_bytes: int) -> Any:
    """Text compared by code point, as version 1 made it: COLLATE "C" on PostgreSQL, UTF-8
    VARBINARY on MySQL."""
    return (
        sa.Text()
        .with_variant(sa.Text(collation="C"), "postgresql")
        .with_variant(mysql_dialect.VARBINARY(mysql_bytes), "mysql", "mariadb")
    )


def _version_1_tables(name: str) -> tuple[Table, Table]:
    """The layout of schema version 1: ``key_hash`` (empty, or the SHA-256 of a key longer
    than 256 characters, whose first 256 are in ``key``) in the primary key; and its meta
    table."""
    binary = LargeBinary().with_variant(mysql_dialect.VARBINARY(32), "mysql", "mariadb")
    blob = LargeBinary().with_variant(mysql_dialect.LONGBLOB(), "mysql", "mariadb")
    metadata = MetaData()
    table = Table(
        name,
        metadata,
        Column("namespace", _text(1024), nullable=False),
        Column("key", _text(1024), nullable=False),
        Column("key_hash", binary, nullable=False),
        Column("key_rest", _text(3072), nullable=False),
        Column("value", blob, nullable=False),
        Column("expires_at", Double(), nullable=True),
        PrimaryKeyConstraint("namespace", "key", "key_hash", postgresql_include=["expires_at"]),
        mysql_engine="InnoDB",
    )
    meta = Table(
        f"{name}_meta",
        metadata,
        Column("name", sa.String(300), primary_key=True),
        Column("value", sa.String(300), nullable=False),
        mysql_engine="InnoDB",
    )
    return table, meta


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def version_1(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[str, str]]:
    """``(url, table)`` of a table written by schema version 1, with its meta table."""
    name = f"kvt_{uuid.uuid4().hex[:16]}"
    url = f"sqlite:///{tmp_path / 'kv.db'}" if request.param == "sqlite" else _url(request.param)
    engine = SQLByteStore(url).engine
    table, meta = _version_1_tables(name)
    split = {k: (k, b"", "") if len(k) <= 256 else (k[:256], _sha256(k), k[256:]) for k in _V1}
    rows = [
        _v1_row(ns, *split[k], value=v, expires_at=None)
        for ns, pairs in (("", _V1), ("other", {k: b"other " + v for k, v in _V1.items()}))
        for k, v in pairs.items()
    ]
    now = time.time()
    rows.append(_v1_row("", "later", b"", "", value=b"later", expires_at=now + 3600))
    rows.append(_v1_row("", "gone", b"", "", value=b"gone", expires_at=now - 10))
    if request.param == "mysql":  # VARBINARY columns: UTF-8 bytes
        rows = [{k: v.encode() if isinstance(v, str) else v for k, v in r.items()} for r in rows]
    with engine.begin() as connection:
        table.create(connection)
        meta.create(connection)
        connection.execute(insert(table), rows)
        marks = [{"name": "schema_version", "value": "1"}]
        if request.param == "sqlite":  # where version 1 marked namespaces with expiring rows
            marks.append({"name": "expiring:", "value": "1"})
        connection.execute(insert(meta), marks)
    yield url, name
    with engine.begin() as connection:
        for suffix in ("", "_meta", "_mig1", "_mig2"):
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}{suffix}")
    engine.dispose()


def _sha256(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _v1_row(
    ns: str, key: str, digest: bytes, rest: str, *, value: bytes, expires_at: float | None
) -> dict[str, Any]:
    return {
        "namespace": ns,
        "key": key,
        "key_hash": digest,
        "key_rest": rest,
        "value": value,
        "expires_at": expires_at,
    }


_HEAD = "h" * 256
_V1 = {
    "a": b"1",
    "b/1": b"2",
    _HEAD: b"head",
    _HEAD + "x": b"long x",
    _HEAD + "yy": b"long yy",
    "é" * 300: b"long accented",
}


def test_a_version_1_table_is_migrated_on_first_use(version_1: tuple[str, str]) -> None:
    url, table = version_1
    stores = [SQLByteStore(url, table=table, namespace=ns) for ns in (None, "other") * 4]
    keys = [*_V1, "later", "gone"]
    # Stores first used at once: one migrates, the others wait for it or find it done.
    got: dict[int, list[bytes | None]] = {}
    run_in_threads(lambda i: got.update({i: stores[i].mget(keys)}), range(len(stores)))
    expected = [*_V1.values(), b"later", None]
    other = [b"other " + v for v in _V1.values()] + [None, None]
    assert [got[i] for i in range(len(stores))] == [expected, other] * 4
    store = stores[0]
    assert sorted(store.yield_keys()) == sorted([*_V1, "later"])
    assert sorted(store.yield_keys(prefix=_HEAD)) == [_HEAD, _HEAD + "x", _HEAD + "yy"]
    assert list(store.yield_keys(prefix=_HEAD + "y")) == [_HEAD + "yy"]
    assert list(store.yield_keys(prefix="é" * 257)) == ["é" * 300]
    store.mset([(_HEAD + "x", b"new x"), (_HEAD + "z", b"z")])
    store.mdelete(["é" * 300])
    assert store.mget([_HEAD, _HEAD + "x", _HEAD + "z", "é" * 300]) == [
        b"head",
        b"new x",
        b"z",
        None,
    ]
    assert store.purge_expired() == 1  # "gone" kept its expiry
    engine = store.engine
    with engine.connect() as connection:
        columns = [c["name"] for c in inspect(connection).get_columns(table)]
        assert columns == ["namespace", "key", "key_rest", "value", "expires_at"]
        assert inspect(connection).get_pk_constraint(table)["constrained_columns"] == [
            "namespace",
            "key",
        ]
        names = inspect(connection).get_table_names()
        assert f"{table}_mig1" not in names
        assert f"{table}_mig2" not in names
        version = connection.exec_driver_sql(
            f"SELECT value FROM {table}_meta WHERE name = 'schema_version'"
        ).scalar()
        assert version == str(SCHEMA_VERSION) == "2"
        if engine.dialect.name == "postgresql":
            (definition,) = connection.execute(
                text("SELECT indexdef FROM pg_indexes WHERE tablename = :t"), {"t": table}
            ).scalars()
            assert definition.startswith(f"CREATE UNIQUE INDEX {table}_pkey ON "), definition
            assert definition.endswith("(namespace, key)"), definition
    for each in stores:
        each.close()


def test_keys_past_the_index_entry_limits(store: SQLByteStore) -> None:
    # 1,024 random CJK characters are 3,072 bytes: over PostgreSQL's 2,704-byte B-tree entry
    # and InnoDB's 3,072-byte key with the namespace. Random, so it does not compress.
    rng = random.Random(7)
    keys = ["".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(1024)) for _ in range(3)]
    keys.append(keys[0][:300] + "different tail")
    keys.append("🔑" * 1024)
    store.mset([(k, str(i).encode()) for i, k in enumerate(keys)])
    assert store.mget(keys) == [str(i).encode() for i in range(len(keys))]
    assert sorted(store.yield_keys()) == sorted(keys)
    assert sorted(store.yield_keys(prefix=keys[0][:300])) == sorted([keys[0], keys[3]])
    assert list(store.yield_keys(prefix=keys[0][:700])) == [keys[0]]
    store.mdelete(keys[:2])
    assert sorted(store.yield_keys()) == sorted(keys[2:])
    # A key of 256 characters is the head of a long key: never mistaken for it.
    head = keys[2][:256]
    assert store.mget([head]) == [None]
    store.mdelete([head])
    assert store.mget([keys[2]]) == [b"2"]
    store.mset([(head, b"head")])
    assert store.mget([head, keys[2]]) == [b"head", b"2"]
    store.mdelete([head])
    assert store.mget([head, keys[2]]) == [None, b"2"]


def test_key_comparison_is_exact(store: SQLByteStore) -> None:
    keys = ["a", "A", "a ", "a  ", "ä", "a\u0308", "ß", "ss", "İ", "i"]
    store.mset([(k, k.encode()) for k in keys])
    assert store.mget(keys) == [k.encode() for k in keys]
    assert sorted(store.yield_keys(prefix="a")) == sorted(["a", "a ", "a  ", "a\u0308"])
    assert sorted(store.yield_keys(prefix="a ")) == ["a ", "a  "]


def test_keys_that_mean_something_in_an_array_literal(store: SQLByteStore) -> None:
    # On PostgreSQL a batch's keys travel as one text[] literal (`text_array` of
    # kvstores.sql.postgresql), its values as a binary bytea[].
    keys = ['"', "\\", '","', '\\"', 'a"b\\c', "{", "}", "{}", ",", " ", " x ", "NULL", "null"]
    values = [b"", b"\x00", b"\\x00", b'"', b"\xff" * 3, *(bytes([i]) * i for i in range(8))]
    store.mset(list(zip(keys, values, strict=True)))
    assert store.mget(keys) == values
    assert sorted(store.yield_keys()) == sorted(keys)
    store.mdelete(keys[::2])
    assert store.mget(keys) == [None if i % 2 == 0 else v for i, v in enumerate(values)]
    assert sorted(store.yield_keys()) == sorted(keys[1::2])


def test_sixteen_mebibyte_values(store: SQLByteStore) -> None:
    big = random.Random(1).randbytes(16 * MIB)
    zeros = bytes(16 * MIB)  # the worst case of MySQL's escaping
    store.mset([("big", big), ("zeros", zeros), ("small", b"s")])
    assert store.mget(["big", "zeros", "small"]) == [big, zeros, b"s"]

    async def use() -> list[bytes | None]:
        await store.amset([("async big", big)])
        got = await store.amget(["async big", "zeros"])
        await store.aclose()
        return got

    assert asyncio.run(use()) == [big, zeros]


def _page_plan(store: SQLByteStore, admin: Engine, table: str, expiry: bool) -> list[Any]:
    """EXPLAIN of the statement `yield_keys(prefix="a/")` runs for its first page, with the
    expiry check (a namespace marked as holding expiring rows) or without."""
    statements = store._statements
    assert statements is not None
    sql, params = statements.page("", "a/", None, 1000, time.time(), expiry=expiry)
    with admin.connect() as connection:
        if admin.dialect.name == "postgresql":
            connection.exec_driver_sql(f"ANALYZE {table}")
        return list(connection.exec_driver_sql(f"EXPLAIN {sql}", params).mappings())


def test_server_version_names_the_server(store: SQLByteStore, admin: Engine) -> None:
    with admin.connect():
        info = admin.dialect.server_version_info
    assert info
    # A store that has not connected yet connects to tell.
    assert store.server_version() == f"{admin.dialect.name} {'.'.join(map(str, info))}"


def test_prefix_listing_is_an_index_range_scan(
    store: SQLByteStore, admin: Engine, table: str
) -> None:
    store.mset([(f"{'ab'[i % 2]}/{i:05d}", b"v") for i in range(2000)])
    for expiry in (False, True):
        rows = _page_plan(store, admin, table, expiry)
        if admin.dialect.name == "postgresql":
            plan = "\n".join(row["QUERY PLAN"] for row in rows)
            # The index alone answers, unless expiry is checked (the namespace is marked).
            scan = "Index Scan" if expiry else "Index Only Scan"
            assert f"{scan} using {table}_pkey" in plan, plan
            assert ("expires_at" in plan) is expiry, plan
            # The namespace's marks: one lookup each, once per page.
            assert plan.count(f"Index Only Scan using {table}_meta_pkey") == 2, plan
            assert "Seq Scan" not in plan, plan
            assert "Sort" not in plan, plan
        else:
            (row,) = rows
            assert (row["type"], row["key"]) == ("range", "PRIMARY"), row
            assert "filesort" not in (row["Extra"] or ""), row


def test_listing_sees_what_other_stores_wrote(make_store: StoreFactory) -> None:
    # Listing leaves the expiry check out while the namespace holds no expiring row, and
    # reads only `key` columns while it holds no long key (PostgreSQL: the page query tells).
    lister, writer, expiring = make_store(), make_store(), make_store(ttl=0.2)
    long = ["k" * 300, "k" * 256 + "é" * 700]
    lister.mset([("a/kept", b"v")])
    assert list(lister.yield_keys(prefix="a/")) == ["a/kept"]
    writer.mset([(k, b"v") for k in long])
    assert sorted(lister.yield_keys()) == sorted(["a/kept", *long])
    assert list(lister.yield_keys(prefix="k" * 257)) == [long[0]]
    assert list(lister.yield_keys(prefix="k" * 256 + "é")) == [long[1]]
    expiring.mset([("a/gone", b"v")])
    assert sorted(lister.yield_keys(prefix="a/")) == ["a/gone", "a/kept"]
    time.sleep(0.3)
    assert list(lister.yield_keys(prefix="a/")) == ["a/kept"]
    assert list(make_store().yield_keys(prefix="a/")) == ["a/kept"]

    async def alist() -> list[str]:
        store = make_store()
        keys = sorted([k async for k in store.ayield_keys()])
        await store.aclose()
        return keys

    assert asyncio.run(alist()) == sorted(["a/kept", *long])
    for store in (lister, writer, expiring):
        store.close()


def test_a_pool_of_one_serves_many_threads(server: str, table: str) -> None:
    # A store keeps the connection its last call used (`_KeptConnection`), but not while a
    # thread may be waiting for it in the pool.
    store = SQLByteStore(
        _url(server), table=table, timeout=3, engine_options={"pool_size": 1, "max_overflow": 0}
    )

    def work(i: int) -> None:
        for j in range(30):
            store.mset([(f"t{i}-{j}", b"v")])
            assert store.mget([f"t{i}-{j}"]) == [b"v"]

    try:
        run_in_threads(work, range(4))
    finally:
        store.close()


def _kept_connection(kept: Any) -> Any:
    """The DBAPI connection a `_KeptConnection` holds (`None` for none)."""
    return None if kept is None or kept._fairy is None else kept._fairy.driver_connection


def test_the_connection_kept_between_calls_is_closed_with_the_store(
    store: SQLByteStore,
) -> None:
    store.mset([("k", b"v")])
    assert store.mget(["k"]) == [b"v"]
    pool = store.engine.pool
    connection = _kept_connection(store._kept)
    # MySQL too: the kept connection is recycled when the pool would have recycled it.
    assert connection is not None
    postgres = store.engine.dialect.name == "postgresql"
    assert not connection.closed if postgres else connection.open  # PyMySQL: `open`
    assert pool.checkedout() == 1  # type: ignore[attr-defined]  # counted by the pool
    store.close()
    assert connection.closed if postgres else not connection.open


def test_an_event_loop_keeps_a_connection_until_it_ends(store: SQLByteStore) -> None:
    async def use() -> Any:
        await store.amset([("k", b"v")])
        assert await store.amget(["k"]) == [b"v"]
        return _kept_connection((await store._async_entry())[1])

    connection = asyncio.run(use())
    if store.engine.dialect.name == "postgresql":
        assert connection is not None
        assert connection.closed  # put back and closed when the loop shut down
    else:  # MySQL's async engine recycles connections, which a kept one would skip
        assert connection is None


def _use_in_child(store: SQLByteStore) -> None:
    store.mset([("child", b"c")])
    assert store.mget(["child", "parent"]) == [b"c", b"p"]
    store.close()


def test_a_forked_child_leaves_the_parents_connection_alone(store: SQLByteStore) -> None:
    store.mset([("parent", b"p")])  # its connection is kept now
    child = multiprocessing.get_context("fork").Process(target=_use_in_child, args=(store,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    # Had the child used the kept connection, and closed it, this one would be gone.
    assert store.mget(["parent", "child"]) == [b"p", b"c"]


def test_a_given_sync_engine_serves_async_calls(admin: Engine, table: str) -> None:
    store = SQLByteStore(admin, table=table)
    pool = admin.pool

    async def use() -> None:
        await store.amset([("async", b"1")])
        store.mset([("sync", b"2")])
        assert await store.amget(["sync", "async"]) == [b"2", b"1"]
        assert sorted([k async for k in store.ayield_keys()]) == ["async", "sync"]
        await store.aclose()

    asyncio.run(use())
    assert admin.pool is pool


def test_a_given_async_engine_serves_sync_calls(server: str, table: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    url = SQLByteStore(_url(server)).url
    if server == "mysql":
        pytest.importorskip("aiomysql")
        url = url.set(drivername=f"{url.get_backend_name()}+aiomysql")

    async def use() -> None:
        engine = create_async_engine(url)
        store = SQLByteStore(engine, table=table)
        await store.amset([("async", b"1")])
        store.mset([("sync", b"2")])  # sync code on a store made from an AsyncEngine
        assert store.mget(["async"]) == [b"1"]
        assert await store.amget(["sync", "async"]) == [b"2", b"1"]
        assert sorted([k async for k in store.ayield_keys()]) == ["async", "sync"]
        await store.aclose()
        async with engine.connect() as connection:  # not disposed by the store
            assert (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 2
        await engine.dispose()

    asyncio.run(use())


def test_one_store_on_several_event_loops(store: SQLByteStore) -> None:
    # pytest-asyncio and asyncio.run make a loop per test: a store outliving one must work on
    # the next (async connections belong to the loop that opened them).
    for i in range(3):

        async def use(i: int = i) -> list[bytes | None]:
            await store.amset([(f"k{i}", b"v")])
            return await store.amget([f"k{i}"])

        assert asyncio.run(use()) == [b"v"]
    assert sorted(store.yield_keys()) == ["k0", "k1", "k2"]


def test_one_statement_per_batch(store: SQLByteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.create_schema()
    connection = store.engine.raw_connection()
    cursor_class = type(connection.dbapi_connection.cursor())  # type: ignore[union-attr]
    connection.close()
    original = cursor_class.execute
    counted: list[str] = []

    def counting(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        counted.append(str(query).split(None, 1)[0].upper())
        return original(self, query, *args, **kwargs)

    monkeypatch.setattr(cursor_class, "execute", counting)
    store.mset([(f"k{i}", b"v" * 1024) for i in range(1000)])
    assert counted == ["INSERT"]
    counted.clear()
    assert store.mget([f"k{i}" for i in range(1000)]) == [b"v" * 1024] * 1000
    assert counted == ["SELECT"]
    counted.clear()
    store.mdelete([f"k{i}" for i in range(1000)])
    assert counted == ["DELETE"]


def test_a_plan_made_on_a_tiny_table_does_not_outlive_its_growth(
    store: SQLByteStore, admin: Engine
) -> None:
    # PostgreSQL caches the plan of a prepared statement: one made while the table held a
    # row may scan the whole namespace for each lookup once it holds 100,000 (a bitmap
    # scan on `namespace` alone). The store's connections replan now and then and make no
    # bitmap scans; without both, this fails.
    if admin.dialect.name != "postgresql":
        pytest.skip("MySQL plans every statement anew")
    store.mset([("first", b"1")])
    for _ in range(4):
        assert store.mget(["first"]) == [b"1"]
    keys = [f"k{i:06d}" for i in range(100_000)]
    for start in range(0, len(keys), 10_000):
        store.mset([(k, b"v") for k in keys[start : start + 10_000]])
    for i in range(40):
        assert store.mget([keys[i * 997]]) == [b"v"]
    # The plan those calls now use: EXPLAIN the store's prepared SELECT on its connection.
    connection = _kept_connection(store._kept)
    assert connection is not None
    (name,) = connection.execute(
        "SELECT name FROM pg_prepared_statements WHERE statement LIKE 'SELECT %%'"
        " AND statement LIKE %s",
        (f"% FROM {store.table_name} %",),
    ).fetchone()
    plan = "\n".join(
        row[0]
        for row in connection.execute(f"EXPLAIN EXECUTE {name}('', '{{k000001}}', 0)").fetchall()
    )
    assert "Index Scan" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert "(key = ANY" in plan.split("Index Cond:")[1], plan  # the keys probe the index


# Timeouts, and driver parameters in the URL


SILENT = [
    ("psycopg", "postgresql+psycopg"),
    ("pymysql", "mysql+pymysql"),
    ("pymysql", "mariadb+pymysql"),
]


def _fails_in_time(call: Any, bound: float) -> BaseException:
    """What `call` raised, run in a daemon thread so that a hang fails the test (after
    `bound` seconds) rather than holding it for ever."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(bound)
    if worker.is_alive():
        pytest.fail(f"still waiting after {bound} s")
    assert outcome[0] is not None, "no error"
    return outcome[0]


@pytest.mark.parametrize(("driver", "scheme"), SILENT, ids=[s for _, s in SILENT])
def test_a_server_that_never_answers_fails_within_the_timeout(
    silent_listener: tuple[str, int], driver: str, scheme: str
) -> None:
    """A port that accepts the connection and never sends a byte (a hung server, a proxy
    with nothing behind it) fails within about `timeout`, sync and async, like a closed one."""
    pytest.importorskip(driver)
    host, port = silent_listener
    timeout = 2.0
    store = SQLByteStore(f"{scheme}://app:s3cr3t-pw@{host}:{port}/db", timeout=timeout)
    for call in (lambda: store.mget(["k"]), lambda: asyncio.run(store.amget(["k"]))):
        start = time.monotonic()
        error = _fails_in_time(call, 3 * timeout + 5)
        elapsed = time.monotonic() - start
        assert isinstance(error, BackendUnavailableError), repr(error)
        assert elapsed < 3 * timeout + 5
        message = str(error)
        assert "s3cr3t-pw" not in message
        assert f"app:***@{host}:{port}" in message
        assert error.__cause__ is not None
    store.close()


def test_a_statement_may_outlast_the_connect_timeout(server: str, table: str) -> None:
    """`timeout` bounds connecting, not statements (see `kvstores.sql.mysql.lift_timeouts`)."""
    store = SQLByteStore(_url(server), table=table, timeout=1)
    sleep = "SELECT pg_sleep(3)" if server == "postgres" else "SELECT SLEEP(3)"
    try:
        with store.engine.connect() as connection:
            connection.exec_driver_sql(sleep)
        store.mset([("k", b"v")])
        assert store.mget(["k"]) == [b"v"]
    finally:
        store.close()


def test_driver_parameters_in_the_url_reach_the_driver(server: str, table: str) -> None:
    """Parameters the driver takes keep working (an unknown one is refused: tests/test_sql.py),
    sync and async."""
    if server == "postgres":
        query = {"application_name": "kvstores-test", "sslmode": "disable"}
        check = "SELECT current_setting('application_name')"
        expected: Any = "kvstores-test"
    else:
        # read_timeout is PyMySQL's only: async calls then run PyMySQL in worker threads.
        query = {"charset": "utf8mb4", "read_timeout": "30"}
        check = "SELECT @@character_set_client"
        expected = "utf8mb4"
    url = make_url(_url(server)).update_query_dict(query).render_as_string(hide_password=False)
    store = SQLByteStore(f"{url}&table={table}&namespace=n")
    try:
        assert store.table_name == table
        assert store.namespace == "n"
        store.mset([("k", b"v")])
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql(check).scalar() == expected
        assert asyncio.run(store.amget(["k"])) == [b"v"]
    finally:
        store.close()
