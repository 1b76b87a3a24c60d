"""The conformance kit on `SQLByteStore` over SQLite (a file and an in-memory database), plus
what only the SQL store must show: its schema, the statements it sends, engine ownership,
sync and async on one instance, expiry purging and big values."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import multiprocessing
import os
import re
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

pytest.importorskip("sqlalchemy")

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from integration_tests.sql_layout import SQLRaw
from kvstores import from_url
from kvstores.errors import (
    BackendUnavailableError,
    ConfigurationError,
    InvalidValueError,
    KVStoreError,
)
from kvstores.sql import SCHEMA_VERSION, SQLByteStore
from kvstores.testing import (
    AsyncByteStoreTests,
    ByteStoreTests,
    StoreFactory,
    make_state_machine,
    run_in_threads,
)

MIB = 1024 * 1024

# The conformance kit: a database file per test, and an in-memory database per test


@pytest.fixture
def make_store(tmp_path: Path) -> StoreFactory:
    url = f"sqlite:///{tmp_path / 'kv.db'}"
    return lambda namespace=None, ttl=None: SQLByteStore(url, namespace=namespace, ttl=ttl)


class SQLiteFileRaw(SQLRaw):
    @pytest.fixture(autouse=True)
    def _raw_sqlite_file(self, tmp_path: Path) -> Iterator[None]:
        self.raw_engine = create_engine(f"sqlite:///{tmp_path / 'kv.db'}")  # make_store's file
        yield
        self.raw_engine.dispose()


class TestSQLiteFile(SQLiteFileRaw, ByteStoreTests):
    pass


class TestSQLiteFileAsync(SQLiteFileRaw, AsyncByteStoreTests):
    pass


@pytest.fixture
def memory_engine() -> Iterator[Engine]:
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    yield engine
    engine.dispose()


class SQLiteMemoryRaw(SQLRaw):
    @pytest.fixture(autouse=True)
    def _raw_sqlite_memory(self, memory_engine: Engine) -> None:
        self.raw_engine = memory_engine  # the database is the engine's one connection


class TestSQLiteMemory(SQLiteMemoryRaw, ByteStoreTests):
    """One in-memory database shared by the stores of a test, through a user's engine."""

    @pytest.fixture
    def make_store(self, memory_engine: Engine) -> StoreFactory:
        return lambda namespace=None, ttl=None: SQLByteStore(
            memory_engine, namespace=namespace, ttl=ttl
        )


class TestSQLiteMemoryAsync(SQLiteMemoryRaw, AsyncByteStoreTests):
    @pytest.fixture
    def make_store(self, memory_engine: Engine) -> StoreFactory:
        return lambda namespace=None, ttl=None: SQLByteStore(
            memory_engine, namespace=namespace, ttl=ttl
        )


class TestSQLiteAsyncEngine(SQLiteFileRaw, AsyncByteStoreTests):
    """Stores built from a user's `AsyncEngine` (aiosqlite) on a database file."""

    @pytest.fixture
    def make_store(self, tmp_path: Path) -> Iterator[StoreFactory]:
        pytest.importorskip("aiosqlite")
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'kv.db'}")
        yield lambda namespace=None, ttl=None: SQLByteStore(engine, namespace=namespace, ttl=ttl)
        asyncio.run(engine.dispose())


def _fresh_stateful_store() -> SQLByteStore:
    return SQLByteStore("sqlite://", namespace=uuid.uuid4().hex)


TestSQLiteStateful = make_state_machine(_fresh_stateful_store).TestCase
TestSQLiteStatefulAsync = make_state_machine(_fresh_stateful_store, use_async=True).TestCase


# Helpers


def _traced(target: Engine | SQLByteStore) -> list[str]:
    """Every SQL statement SQLite runs on the connections of an engine (or a store's engine)
    from now on, BEGIN and COMMIT included: sqlite3's trace callback sees what the DBAPI
    cursor and the driver itself run."""
    statements: list[str] = []
    engine = target.engine if isinstance(target, SQLByteStore) else target

    @event.listens_for(engine, "connect")
    def trace(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    # Reconnect, so every connection is traced (close() also retires the store's own
    # per-thread connections, and the store reconnects on next use).
    if isinstance(target, SQLByteStore):
        target.close()
    else:
        target.dispose()
    return statements


def _kind(statement: str) -> str:
    return statement.split(None, 1)[0].upper()


def _file_store(tmp_path: Path, **kwargs: Any) -> SQLByteStore:
    return SQLByteStore(f"sqlite:///{tmp_path / 'kv.db'}", **kwargs)


# Schema


def test_schema_has_only_the_primary_key_index(tmp_path: Path) -> None:
    store = _file_store(tmp_path)
    store.mset([("k", b"v")])
    db = sqlite3.connect(tmp_path / "kv.db")
    indexes = db.execute("PRAGMA index_list(kvstores)").fetchall()
    assert [(origin, unique) for _, _, unique, origin, _ in indexes] == [("pk", 1)]
    (index_name,) = [row[1] for row in indexes]
    columns = [row[2] for row in db.execute(f"PRAGMA index_info({index_name})")]
    assert columns == ["namespace", "key"]
    assert [row[1] for row in db.execute("PRAGMA table_info(kvstores)")] == [
        "namespace",
        "key",
        "key_rest",
        "value",
        "expires_at",
    ]
    store.close()


def test_schema_version_is_recorded(tmp_path: Path) -> None:
    store = _file_store(tmp_path, table="things")
    store.create_schema()
    db = sqlite3.connect(tmp_path / "kv.db")
    assert db.execute("SELECT name, value FROM things_meta").fetchall() == [
        ("schema_version", str(SCHEMA_VERSION))
    ]
    store.close()


def test_server_version_is_sqlites_library_version(tmp_path: Path) -> None:
    store = _file_store(tmp_path)
    assert store.server_version() == f"sqlite {sqlite3.sqlite_version}"
    store.close()


def test_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    _file_store(tmp_path).create_schema()
    db = sqlite3.connect(tmp_path / "kv.db")
    db.execute("UPDATE kvstores_meta SET value = '99' WHERE name = 'schema_version'")
    db.commit()
    with pytest.raises(KVStoreError, match="schema version 99"):
        _file_store(tmp_path).mget(["k"])


def test_a_foreign_table_of_the_same_name_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "kv.db")
    db.execute("CREATE TABLE kvstores (id INTEGER PRIMARY KEY, payload TEXT)")
    db.commit()
    with pytest.raises(KVStoreError, match="not a kvstores table"):
        _file_store(tmp_path).mset([("k", b"v")])


def test_schema_creation_is_idempotent_and_lazy(tmp_path: Path) -> None:
    store = _file_store(tmp_path)
    assert (
        not (tmp_path / "kv.db").exists()
        or not sqlite3.connect(tmp_path / "kv.db")
        .execute("SELECT name FROM sqlite_master")
        .fetchall()
    )
    store.create_schema()
    store.create_schema()
    _file_store(tmp_path).create_schema()
    asyncio.run(_file_store(tmp_path).acreate_schema())
    store.mset([("k", b"v")])
    assert _file_store(tmp_path).mget(["k"]) == [b"v"]


def _use_in_child(store: SQLByteStore, parents: Any) -> None:
    store.mset([("child", b"c")])
    assert store.mget(["child", "parent"]) == [b"c", b"p"]
    assert store._threads is not None
    assert store._threads.checkout() is not parents  # a connection of its own
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    store = SQLByteStore(f"sqlite:///{tmp_path}/kv.db")
    store.mset([("parent", b"p")])
    assert store._threads is not None
    parents = store._threads.checkout()
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_use_in_child, args=(store, parents))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert store.mget(["parent", "child"]) == [b"p", b"c"]
    store.close()


def test_stores_first_used_at_once_record_one_schema_version(tmp_path: Path) -> None:
    # The kit races stores' first use; here, the meta table they create holds one row.
    stores = [_file_store(tmp_path, namespace=f"n{i}") for i in range(8)]
    run_in_threads(lambda store: store.mset([("k", b"v")]), stores)
    db = sqlite3.connect(tmp_path / "kv.db")
    assert db.execute("SELECT count(*) FROM kvstores_meta").fetchone() == (1,)
    for store in stores:
        store.close()


def test_table_from_the_url_and_argument(tmp_path: Path) -> None:
    store = from_url(f"sqlite:///{tmp_path / 'kv.db'}?table=custom&namespace=n")
    assert isinstance(store, SQLByteStore)
    assert (store.table_name, store.namespace) == ("custom", "n")
    store.mset([("k", b"v")])
    tables = sqlite3.connect(tmp_path / "kv.db").execute("SELECT name FROM sqlite_master")
    assert {"custom", "custom_meta"} <= {row[0] for row in tables}
    assert SQLByteStore(f"sqlite:///{tmp_path / 'kv.db'}", table="custom", namespace="n").mget(
        ["k"]
    ) == [b"v"]


@pytest.mark.parametrize("table", ["", "x" * 59, "nul\x00"])
def test_bad_table_names(table: str) -> None:
    with pytest.raises(ConfigurationError, match="table"):
        SQLByteStore("sqlite://", table=table)
    if table:  # SQLAlchemy drops a query parameter without a value
        with pytest.raises(ConfigurationError, match="table"):
            from_url(f"sqlite://?table={quote(table)}")


def test_awkward_table_names_are_refused(tmp_path: Path) -> None:
    """A table is an identifier (tests/test_names.py holds every backend's names to their
    rules); one that needs quoting is refused, nothing created."""
    with pytest.raises(ConfigurationError, match="letters, digits or underscores"):
        _file_store(tmp_path, table='select "x"; drop')
    assert list(tmp_path.iterdir()) == []
    store = _file_store(tmp_path, table="Mixed_Case_1")  # kept in its case: quoted
    store.mset([("k", b"v")])
    assert store.mget(["k"]) == [b"v"]
    store.close()


# Statements


@pytest.fixture
def traced_store(tmp_path: Path) -> Iterator[tuple[SQLByteStore, list[str]]]:
    store = _file_store(tmp_path)
    store.create_schema()
    statements = _traced(store)
    yield store, statements
    store.close()


def test_mset_is_one_upsert_statement_in_one_transaction(
    traced_store: tuple[SQLByteStore, list[str]],
) -> None:
    store, statements = traced_store
    store.mset([(f"k{i}", b"v") for i in range(1000)])
    writes = [s for s in statements if not s.upper().startswith("PRAGMA")]
    assert [_kind(s) for s in writes] == ["BEGIN", "INSERT", "COMMIT"]
    assert "ON CONFLICT" in writes[1]


@pytest.fixture
def limited_engine(tmp_path: Path) -> Iterator[Engine]:
    """A SQLite engine whose connections take at most 999 bound parameters a statement."""
    engine = create_engine(f"sqlite:///{tmp_path / 'kv.db'}")

    @event.listens_for(engine, "connect")
    def limit(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)

    yield engine
    engine.dispose()


def test_mset_chunks_to_the_parameter_limit_in_one_transaction(limited_engine: Engine) -> None:
    engine = limited_engine
    store = SQLByteStore(engine)
    store.create_schema()
    statements = _traced(engine)
    store.mset([(f"k{i}", b"v") for i in range(1000)])
    rows_per_statement = (999 - 2) // 2
    chunks = -(-1000 // rows_per_statement)
    assert [_kind(s) for s in statements if not s.startswith("PRAGMA")] == (
        ["BEGIN"] + ["INSERT"] * chunks + ["COMMIT"]
    )
    assert len(list(store.yield_keys())) == 1000
    statements.clear()
    assert store.mget([f"k{i}" for i in range(1000)]) == [b"v"] * 1000
    assert [_kind(s) for s in statements] == ["SELECT"] * -(-1000 // 997)


def test_a_failed_chunk_writes_nothing(tmp_path: Path, limited_engine: Engine) -> None:
    store = SQLByteStore(limited_engine)
    store.create_schema()
    db = sqlite3.connect(tmp_path / "kv.db")
    db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON kvstores WHEN NEW.key = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    db.commit()
    pairs = [(f"k{i:04d}", b"v") for i in range(1000)] + [("poison", b"x")]
    with pytest.raises(KVStoreError, match="refused"):
        store.mset(pairs)
    assert list(store.yield_keys()) == []


def test_mget_is_one_select_of_the_keys_asked(
    traced_store: tuple[SQLByteStore, list[str]],
) -> None:
    store, statements = traced_store
    store.mset([(f"k{i}", f"v{i}".encode()) for i in range(1000)])
    statements.clear()
    keys = [f"k{i}" for i in range(0, 1000, 3)] + ["missing", "k0"]
    assert store.mget(keys) == [f"v{i}".encode() for i in range(0, 1000, 3)] + [None, b"v0"]
    assert [_kind(s) for s in statements] == ["SELECT"]
    # The trace shows the statement with its parameters: the keys asked, no other key.
    in_list = statements[0].split(" IN (", 1)[1].split(")", 1)[0]
    assert sorted(in_list.split(",")) == sorted(f"'{k}'" for k in keys)


def test_mdelete_is_one_statement(traced_store: tuple[SQLByteStore, list[str]]) -> None:
    store, statements = traced_store
    store.mset([(f"k{i}", b"v") for i in range(1000)])
    statements.clear()
    store.mdelete([f"k{i}" for i in range(1000)])
    assert [_kind(s) for s in statements] == ["DELETE", "COMMIT"] or [
        _kind(s) for s in statements
    ] == ["BEGIN", "DELETE", "COMMIT"]


def test_yield_keys_pages_and_never_selects_values(
    traced_store: tuple[SQLByteStore, list[str]],
) -> None:
    store, statements = traced_store
    store.page_size = 100
    store.mset([(f"{'ab'[i % 2]}/{i:04d}", b"v") for i in range(1000)])
    statements.clear()
    assert len(list(store.yield_keys(prefix="a/"))) == 500
    pages = [s for s in statements if "LIMIT" in s]
    # Pages grow from page_size: 100, 200, 400 (200 left: the last page).
    assert [int(s.rsplit("LIMIT", 1)[1]) for s in pages] == [100, 200, 400]
    for statement in statements:
        assert _kind(statement) == "SELECT"
        assert "value" not in statement.split("FROM")[0]
    # One look at the namespace's expiry mark per listing, before its first page.
    assert len(statements) == 4
    assert "kvstores_meta" in statements[0]
    assert not any("kvstores_meta" in s for s in statements[1:])
    # After the first page, the last key is the only lower bound: SQLite seeks to it
    # instead of stepping over the earlier pages' rows from the prefix on.
    assert ">= 'a/'" in pages[0]
    assert all(">=" not in s and "> 'a/0" in s for s in pages[1:])


def test_a_later_page_seeks_past_the_earlier_pages(tmp_path: Path) -> None:
    store = _file_store(tmp_path)
    store.page_size = 10
    store.mset([(f"a/{i:04d}", b"v") for i in range(1000)])
    statements = _traced(store)
    assert len(list(store.yield_keys(prefix="a/"))) == 1000
    later = [s for s in statements if "LIMIT" in s][1]  # 20 keys after a/0009
    db = sqlite3.connect(tmp_path / "kv.db")

    def steps(statement: str) -> int:
        """Virtual machine instructions SQLite runs for `statement` (not a timing)."""
        count = [0]

        def tick() -> int:
            count[0] += 1
            return 0

        db.set_progress_handler(tick, 1)
        rows = db.execute(statement).fetchall()
        db.set_progress_handler(None, 1)
        assert len(rows) == 20
        return count[0]

    near, far = steps(later), steps(later.replace("'a/0009'", "'a/0900'"))
    # The same page 900 keys further costs the same: the index seeks to the last key
    # (stepping from the prefix over 890 more rows would cost some thousand more).
    assert far < near * 1.5


def test_prefix_listing_is_an_index_range_scan(tmp_path: Path) -> None:
    store = _file_store(tmp_path)
    store.create_schema()
    statements = _traced(store)
    list(store.yield_keys(prefix="a/"))
    db = sqlite3.connect(tmp_path / "kv.db")
    sql = statements[-1].replace("SELECT", "EXPLAIN QUERY PLAN SELECT", 1)
    plan = " ".join(row[-1] for row in db.execute(sql))
    # Where no row can expire, the index alone answers: no table row is read.
    index = "USING COVERING INDEX sqlite_autoindex_kvstores_1 (namespace=? AND key>? AND key<?)"
    assert index in plan
    assert "SCAN" not in plan


def test_listing_hides_rows_another_store_wrote_with_a_ttl(tmp_path: Path) -> None:
    """A store without a ttl lists by the index alone only while its namespace holds no
    expiring row: once a store with a ttl writes there, its expired rows stay hidden."""
    lister = _file_store(tmp_path)
    lister.mset([("a/kept", b"v")])
    assert list(lister.yield_keys(prefix="a/")) == ["a/kept"]  # no mark yet: index only
    writer = SQLByteStore(f"sqlite:///{tmp_path / 'kv.db'}", ttl=0.05)
    writer.mset([("a/gone", b"v")])
    assert sorted(lister.yield_keys(prefix="a/")) == ["a/gone", "a/kept"]
    time.sleep(0.1)
    assert list(lister.yield_keys(prefix="a/")) == ["a/kept"]
    assert list(_file_store(tmp_path).yield_keys(prefix="a/")) == ["a/kept"]


def test_listing_long_keys_across_pages(tmp_path: Path) -> None:
    """Pages listed by the index alone hold long keys' ``key`` columns (head and hash); such
    a page is read again with their rests, and the next page starts after the last one's."""
    store = _file_store(tmp_path)
    store.page_size = 3
    head = "h" * 256
    keys = ["h" * 255, head, *(head + c for c in "abcdefg"), "i", "j" * 300]
    store.mset([(k, b"v") for k in keys])
    assert sorted(store.yield_keys()) == sorted(keys)
    assert sorted(store.yield_keys(prefix="h")) == sorted(keys[:-2])


# Keys longer than the indexed head


def test_long_keys_sharing_the_indexed_head(tmp_path: Path) -> None:
    store = _file_store(tmp_path)
    head = "h" * 256
    keys = [head, head + "a", head + "b", head + "ab", "h" * 255]
    store.mset([(k, str(len(k)).encode() + k[-1:].encode()) for k in keys])
    assert store.mget([*keys, head + "c"]) == [
        b"256h",
        b"257a",
        b"257b",
        b"258b",
        b"255h",
        None,
    ]
    assert sorted(store.yield_keys(prefix=head)) == sorted(keys[:4])
    assert sorted(store.yield_keys(prefix=head + "a")) == [head + "a", head + "ab"]
    assert sorted(store.yield_keys(prefix="h" * 255)) == sorted(keys)
    store.page_size = 2
    assert sorted(store.yield_keys()) == sorted(keys)
    store.mdelete([head + "a", head])
    assert sorted(store.yield_keys()) == sorted([head + "b", head + "ab", "h" * 255])
    db = sqlite3.connect(tmp_path / "kv.db")
    rows = db.execute("SELECT key, key_rest FROM kvstores ORDER BY 2").fetchall()
    assert rows == [
        ("h" * 255, ""),
        (head + hashlib.sha256((head + "ab").encode()).hexdigest(), "ab"),
        (head + hashlib.sha256((head + "b").encode()).hexdigest(), "b"),
    ]


def test_mget_of_a_long_key_does_not_read_its_head_key(tmp_path: Path) -> None:
    store = _file_store(tmp_path)
    head = "h" * 256
    store.mset([(head, b"short"), (head + "x", b"long"), ("other", b"o")])
    statements = _traced(store)
    assert store.mget(["other", head + "x"]) == [b"o", b"long"]
    (select,) = statements
    db = sqlite3.connect(tmp_path / "kv.db")
    # Run the traced statement as is: it must not return the 256-character key's value.
    rows = db.execute(select.replace("SELECT", "SELECT 1,", 1)).fetchall()
    assert b"short" not in [row[-1] for row in rows]


# Engines: ownership, sync and async on one instance


def test_a_given_engine_is_never_disposed(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'kv.db'}")
    pool = engine.pool
    with SQLByteStore(engine) as store:
        store.mset([("k", b"v")])
    asyncio.run(SQLByteStore(engine).aclose())
    assert engine.pool is pool  # dispose() would have replaced it
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM kvstores")).scalar() == 1
    engine.dispose()


def test_a_store_from_a_url_disposes_its_engines(tmp_path: Path) -> None:
    store = _file_store(tmp_path)
    store.mset([("k", b"v")])
    pool = store.engine.pool
    store.close()
    assert store.engine.pool is not pool
    assert store.mget(["k"]) == [b"v"]  # used again, it reconnects


def test_each_thread_keeps_its_own_sqlite_connection(tmp_path: Path) -> None:
    store = _file_store(tmp_path)
    store.mset([("k", b"v")])
    store.close()
    connected: list[str] = []
    event.listen(
        store.engine, "connect", lambda *_: connected.append(threading.current_thread().name)
    )

    def use() -> None:
        for _ in range(3):
            assert store.mget(["k"]) == [b"v"]

    use()
    thread = threading.Thread(target=use, name="other")
    thread.start()
    thread.join()
    use()
    assert connected == ["MainThread", "other"]
    store.close()


def test_sync_and_async_on_a_store_from_a_sync_engine(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'kv.db'}")
    store = SQLByteStore(engine)

    async def use() -> None:
        await store.amset([("async", b"1")])
        store.mset([("sync", b"2")])
        assert await store.amget(["sync", "async"]) == [b"2", b"1"]
        assert sorted([k async for k in store.ayield_keys()]) == ["async", "sync"]
        await store.amdelete(["sync"])

    asyncio.run(use())
    assert store.mget(["sync", "async"]) == [None, b"1"]
    engine.dispose()


def test_sync_and_async_on_a_store_from_an_async_engine(tmp_path: Path) -> None:
    pytest.importorskip("aiosqlite")
    from sqlalchemy.ext.asyncio import create_async_engine

    async def use() -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'kv.db'}")
        store = SQLByteStore(engine)
        store.mset([("sync", b"1")])  # plain sync code, no event loop involvement
        await store.amset([("async", b"2")])
        assert store.mget(["async"]) == [b"2"]
        assert await store.amget(["sync"]) == [b"1"]
        await store.aclose()
        async with engine.connect() as connection:  # still open: the store did not own it
            result = await connection.execute(text("SELECT count(*) FROM kvstores"))
            assert result.scalar() == 2
        await engine.dispose()

    asyncio.run(use())


def test_an_in_memory_async_engine_is_refused() -> None:
    pytest.importorskip("aiosqlite")
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine("sqlite+aiosqlite://")
    with pytest.raises(ConfigurationError, match="in-memory"):
        SQLByteStore(engine)


def test_in_memory_url_is_shared_by_threads() -> None:
    store = SQLByteStore("sqlite://")
    done = threading.Event()

    def write() -> None:
        store.mset([("from thread", b"1")])
        done.set()

    threading.Thread(target=write).start()
    assert done.wait(5)
    assert store.mget(["from thread"]) == [b"1"]
    store.close()


def test_each_store_from_a_memory_url_has_its_own_database() -> None:
    """``sqlite://`` is a private in-memory database per store; a named shared-cache one
    (or one `Engine` given to each store, as `TestSQLiteMemory` does) is shared."""
    first, second = SQLByteStore("sqlite://"), from_url("sqlite://")
    first.mset([("k", b"1")])
    assert second.mget(["k"]) == [None]
    assert list(second.yield_keys()) == []
    assert asyncio.run(second.amget(["k"])) == [None]
    assert first.mget(["k"]) == [b"1"]
    name = f"file:kvstores-{uuid.uuid4().hex}?mode=memory&cache=shared&uri=true"
    shared = [SQLByteStore(f"sqlite:///{name}") for _ in range(2)]
    shared[0].mset([("k", b"2")])
    assert shared[1].mget(["k"]) == [b"2"]
    for store in (first, second, *shared):
        store.close()


def test_sqlite_pragmas_by_default_and_overridden(tmp_path: Path) -> None:
    def pragmas(store: SQLByteStore) -> tuple[Any, ...]:
        with store.engine.connect() as connection:
            return tuple(
                connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout")
            )

    assert pragmas(_file_store(tmp_path, timeout=3)) == ("wal", 1, 3000)
    custom = SQLByteStore(
        f"sqlite:///{tmp_path / 'other.db'}",
        sqlite_pragmas={"journal_mode": "DELETE", "synchronous": "FULL", "busy_timeout": None},
    )
    assert pragmas(custom)[:2] == ("delete", 2)
    with pytest.raises(ConfigurationError, match="pragma"):
        SQLByteStore("sqlite://", sqlite_pragmas={"x; DROP TABLE y": 1})


def test_unsupported_dialects_and_arguments() -> None:
    with pytest.raises(ConfigurationError, match="SQLite, PostgreSQL and MySQL"):
        SQLByteStore("mssql+pyodbc://u:p@host/db")
    with pytest.raises(TypeError):
        SQLByteStore(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="SQLAlchemy URL"):
        SQLByteStore("not a url")


def test_repr_masks_the_password() -> None:
    store = SQLByteStore("sqlite://", namespace="n", ttl=5)
    assert repr(store) == "SQLByteStore('sqlite://', table='kvstores', namespace='n', ttl=5.0)"


@pytest.mark.parametrize(
    ("driver", "url", "masked"),
    [
        ("psycopg", "postgresql+psycopg://u:Sk0123456789@h/db?sslpassword=Sk9876543210",
         "postgresql+psycopg://u:***@h/db?sslpassword=***"),
        ("pymysql", "mysql+pymysql://u@h/db?password=Sk9876543210&charset=utf8mb4",
         "mysql+pymysql://u@h/db?charset=utf8mb4&password=***"),
    ],
)  # fmt: skip
def test_repr_masks_credentials_in_the_query(driver: str, url: str, masked: str) -> None:
    """SQLAlchemy's own masking hides the URL's password only: a password in the query
    (PyMySQL's ``password=``, libpq's ``sslpassword=``) showed in the repr and errors."""
    pytest.importorskip(driver)
    store = SQLByteStore(url, timeout=1)
    assert repr(store) == f"SQLByteStore({masked!r}, table='kvstores')"
    store.close()


@pytest.mark.parametrize(
    ("url", "options"),
    [
        (f"mysql+pymysql://u:{quote('Sk0123456789☃', safe='')}@127.0.0.1:1/db", {}),
        (f"mariadb://u@127.0.0.1:1/db?password={quote('Sk0123456789☃')}", {}),
        ("mysql+pymysql://u@127.0.0.1:1/db",
         {"engine_options": {"connect_args": {"password": "Sk0123456789☃"}}}),
    ],
)  # fmt: skip
def test_a_mysql_password_past_latin1_is_refused_unseen(url: str, options: dict[str, Any]) -> None:
    """PyMySQL sends passwords as Latin-1: another one failed every call with a
    `UnicodeEncodeError` (not a `KVStoreError`) whose repr held the whole password. It is
    refused when the store is built (the port is closed: nothing was tried), unshown."""
    pytest.importorskip("pymysql")
    with pytest.raises(ConfigurationError, match="outside Latin-1") as caught:
        SQLByteStore(url, timeout=1, **options)
    assert "Sk0123456789" not in repr(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


# Expiry


def test_purge_expired_reclaims_this_namespace_only(tmp_path: Path) -> None:
    short = _file_store(tmp_path, ttl=0.2)
    other = _file_store(tmp_path, namespace="other", ttl=0.2)
    plain = _file_store(tmp_path)
    short.mset([("a", b"1"), ("b", b"2")])
    other.mset([("a", b"1")])
    plain.mset([("kept", b"3")])
    time.sleep(0.4)
    assert short.purge_expired() == 2
    assert short.purge_expired() == 0
    assert asyncio.run(other.apurge_expired()) == 1
    db = sqlite3.connect(tmp_path / "kv.db")
    assert db.execute("SELECT namespace, key FROM kvstores").fetchall() == [("", "kept")]


def test_a_rewrite_without_ttl_clears_the_expiry(tmp_path: Path) -> None:
    _file_store(tmp_path, ttl=0.2).mset([("k", b"old")])
    _file_store(tmp_path).mset([("k", b"new")])
    time.sleep(0.4)
    assert _file_store(tmp_path).mget(["k"]) == [b"new"]
    db = sqlite3.connect(tmp_path / "kv.db")
    assert db.execute("SELECT expires_at FROM kvstores").fetchall() == [(None,)]


def test_expired_rows_are_not_listed_in_a_marked_namespace(tmp_path: Path) -> None:
    # Listing skips the expiry check in namespaces never written with a ttl: check the mark
    # is set by the first ttl write, and honoured by other stores on the namespace.
    _file_store(tmp_path, namespace="n").mset([("forever", b"1")])
    _file_store(tmp_path, namespace="n", ttl=0.2).mset([("brief", b"2")])
    time.sleep(0.4)
    assert list(_file_store(tmp_path, namespace="n").yield_keys()) == ["forever"]
    db = sqlite3.connect(tmp_path / "kv.db")
    assert ("expiring:n",) in db.execute("SELECT name FROM kvstores_meta").fetchall()


# Values


def test_sixteen_mebibyte_values(tmp_path: Path) -> None:
    store = _file_store(tmp_path)
    big = bytes(range(256)) * (16 * MIB // 256)
    store.mset([("big", big), ("small", b"s")])
    assert store.mget(["big", "small"]) == [big, b"s"]
    assert asyncio.run(store.amget(["big"])) == [big]
    with pytest.raises(InvalidValueError):
        store.mset([("too big", big + b"!")])
    assert store.max_value_size == 16 * MIB


# Errors


def test_an_unopenable_database_is_unavailable(tmp_path: Path) -> None:
    store = SQLByteStore(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'kv.db'}")
    with pytest.raises(BackendUnavailableError, match="sqlite") as info:
        store.mget(["k"])
    assert info.value.__cause__ is not None


UNREACHABLE = [
    ("psycopg", "postgresql+psycopg://user:secret@127.0.0.1:1/db"),
    ("pymysql", "mysql+pymysql://user:secret@127.0.0.1:1/db"),
    ("pymysql", "mariadb://user:secret@127.0.0.1:1/db"),
]


@pytest.mark.parametrize(
    ("driver", "url"), UNREACHABLE, ids=[u.split(":")[0] for _, u in UNREACHABLE]
)
def test_an_unreachable_server_fails_fast_with_the_password_masked(driver: str, url: str) -> None:
    pytest.importorskip(driver)
    store = SQLByteStore(url, timeout=2)
    for call in (
        lambda: store.mget(["k"]),
        lambda: asyncio.run(store.amget(["k"])),
        lambda: store.mset([("k", b"v")]),
        lambda: list(store.yield_keys()),
    ):
        start = time.monotonic()
        with pytest.raises(BackendUnavailableError) as info:
            call()
        assert time.monotonic() - start < 3
        message = str(info.value)
        assert "secret" not in message
        assert "user:***@127.0.0.1:1" in message
        assert info.value.__cause__ is not None
    store.close()


# Configuration: typos refused, every error a KVStoreError, missing drivers named

TYPO_URLS = [
    ("sqlite3", "sqlite:///{tmp}/kv.db?namespce=a", "cached_statements"),
    ("sqlite3", "sqlite://?namespce=a", "cached_statements"),
    ("psycopg", "postgresql://app:pw@127.0.0.1:1/db?namespce=a", "application_name"),
    ("psycopg", "postgres://app:pw@127.0.0.1:1/db?namespce=a", "sslmode"),
    ("pymysql", "mysql://app:pw@127.0.0.1:1/db?namespce=a", "charset"),
    ("pymysql", "mariadb+pymysql://app:pw@127.0.0.1:1/db?namespce=a", "ssl_ca"),
]
BUILDERS: dict[str, Any] = {
    "kvstores.from_url": from_url,
    "SQLByteStore.from_url": SQLByteStore.from_url,
    "SQLByteStore": SQLByteStore,
}


@pytest.mark.parametrize("build", sorted(BUILDERS))
@pytest.mark.parametrize(
    ("module", "url", "driver_option"), TYPO_URLS, ids=[u.split("?")[0] for _, u, _ in TYPO_URLS]
)
def test_an_unknown_query_parameter_is_refused_before_connecting(
    tmp_path: Path, build: str, module: str, url: str, driver_option: str
) -> None:
    """A typo is an error naming it and listing the known parameters (the store's and the
    driver's), raised before anything connects: not a warning and a store without its
    namespace, nor a driver error at the first call."""
    pytest.importorskip(module)
    with pytest.raises(ConfigurationError) as info:
        BUILDERS[build](url.format(tmp=tmp_path))
    message = str(info.value)
    assert "'namespce' (did you mean 'namespace'?)" in message
    assert "table" in message
    assert driver_option in message
    assert "pw" not in message
    assert list(tmp_path.iterdir()) == []  # no database file: nothing connected


@pytest.mark.parametrize("build", ["kvstores.from_url", "SQLByteStore.from_url"])
def test_an_unknown_keyword_argument_is_refused(tmp_path: Path, build: str) -> None:
    with pytest.raises(ConfigurationError, match=r"'namespce' \(did you mean 'namespace'\?\)"):
        BUILDERS[build](f"sqlite:///{tmp_path / 'kv.db'}", namespce="a")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("query", ["mode=ro", "mode=ro&uri=true", "uri=true&cache=shared"])
def test_sqlite_uri_parameters_need_a_uri_database(tmp_path: Path, query: str) -> None:
    """SQLite reads ``mode`` & co. only with ``uri=true`` and a ``file:`` database: else
    SQLAlchemy drops them with a warning, or SQLite opens a new file named ``kv.db?mode=ro``."""
    with pytest.raises(ConfigurationError, match="file:"):
        SQLByteStore(f"sqlite:///{tmp_path / 'kv.db'}?{query}")
    assert list(tmp_path.iterdir()) == []


def test_driver_parameters_in_the_url_keep_working(tmp_path: Path) -> None:
    db = tmp_path / "kv.db"
    store = SQLByteStore(f"sqlite:///{db}?cached_statements=10&detect_types=0&check_same_thread=0")
    store.mset([("k", b"v")])
    store.close()
    read_only = SQLByteStore(f"sqlite:///file:{db}?mode=ro&uri=true")
    assert read_only.mget(["k"]) == [b"v"]
    assert asyncio.run(read_only.amget(["k"])) == [b"v"]
    with pytest.raises(KVStoreError, match="readonly"):
        read_only.mset([("k", b"w")])
    read_only.close()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("kv.db-")) == [
        "kv.db"
    ]


def test_server_driver_parameters_are_accepted() -> None:
    """Parameters libpq and PyMySQL take pass the check (their effect on a server is tested
    in integration_tests/test_sql.py); PyMySQL-only ones send async calls to threads, as
    aiomysql would refuse them."""
    pytest.importorskip("psycopg")
    pytest.importorskip("pymysql")
    pg = SQLByteStore("postgresql://a:pw@127.0.0.1:1/db?application_name=x&sslmode=disable")
    assert dict(pg.engine.url.query) == {"application_name": "x", "sslmode": "disable"}
    plain = SQLByteStore("mysql://a:pw@127.0.0.1:1/db?charset=utf8mb4")
    only_pymysql = SQLByteStore("mysql://a:pw@127.0.0.1:1/db?charset=utf8mb4&read_timeout=30")
    assert only_pymysql.engine.url.query["read_timeout"] == "30"
    if importlib.util.find_spec("aiomysql") is not None:
        assert plain._async_driver is not None
    assert only_pymysql._async_driver is None


def test_namespace_ttl_and_timeout_in_the_store_url(tmp_path: Path) -> None:
    """`SQLByteStore` reads them from its URL as `kvstores.from_url` does; arguments win."""
    url = f"sqlite:///{tmp_path / 'kv.db'}?namespace=n&ttl=60&timeout=3"
    store = SQLByteStore(url)
    assert (store.namespace, store.ttl, store.timeout) == ("n", 60.0, 3.0)
    store.mset([("k", b"v")])
    assert _file_store(tmp_path, namespace="n").mget(["k"]) == [b"v"]
    assert _file_store(tmp_path).mget(["k"]) == [None]
    override = SQLByteStore(url, namespace="m", ttl=5, timeout=1)
    assert (override.namespace, override.ttl, override.timeout) == ("m", 5.0, 1.0)
    assert SQLByteStore.from_url(url).namespace == "n"
    with pytest.raises(ConfigurationError, match="ttl"):
        SQLByteStore(f"sqlite:///{tmp_path / 'kv.db'}?ttl=soon")


BAD_SETTINGS: dict[str, Any] = {
    "not a URL": lambda: SQLByteStore("not a url"),
    "unsupported dialect": lambda: SQLByteStore("mssql+pyodbc://u:p@host/db"),
    "unsupported driver": lambda: SQLByteStore("postgresql+pg8000://u:p@host/db"),
    "a sqlite URL with a host": lambda: SQLByteStore("sqlite://host/kv.db"),
    "empty table": lambda: SQLByteStore("sqlite://", table=""),
    "empty schema": lambda: SQLByteStore("sqlite://", schema=""),
    "bad pragma name": lambda: SQLByteStore("sqlite://", sqlite_pragmas={"a b": 1}),
    "bad pragma value": lambda: SQLByteStore("sqlite://", sqlite_pragmas={"synchronous": "a;b"}),
    "unknown engine option": lambda: SQLByteStore("sqlite://", engine_options={"pool_sise": 1}),
    "uri neither true nor false": lambda: SQLByteStore("sqlite:///file:kv.db?uri=maybe"),
}


@pytest.mark.parametrize("setting", sorted(BAD_SETTINGS))
def test_bad_settings_are_configuration_errors(setting: str) -> None:
    """Every error kvstores raises is a `KVStoreError`: a bad setting is a
    `ConfigurationError`, also a `ValueError`."""
    with pytest.raises(ConfigurationError) as info:
        BAD_SETTINGS[setting]()
    assert isinstance(info.value, KVStoreError)
    assert isinstance(info.value, ValueError)


MISSING = [
    ("aiosqlite", "sqlite+aiosqlite:///{tmp}/kv.db", "pip install aiosqlite"),
    ("aiosqlite", "sqlite+aiosqlite://", "pip install aiosqlite"),
    ("psycopg", "postgresql://u:p@127.0.0.1:1/db", 'pip install "kvstores[postgres]"'),
    ("psycopg", "postgresql+psycopg_async://u:p@127.0.0.1:1/db", '"kvstores[postgres]"'),
    ("pymysql", "mysql://u:p@127.0.0.1:1/db", 'pip install "kvstores[mysql]"'),
    ("pymysql", "mariadb://u:p@127.0.0.1:1/db", 'pip install "kvstores[mysql]"'),
    ("aiomysql", "mysql+aiomysql://u:p@127.0.0.1:1/db", 'pip install "kvstores[mysql]"'),
]


@pytest.mark.parametrize(
    ("module", "url", "fix"), MISSING, ids=[f"{m}-{u.split(':')[0]}" for m, u, _ in MISSING]
)
def test_a_missing_driver_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, module: str, url: str, fix: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # importing it fails
    builders: list[Any] = [SQLByteStore, SQLByteStore.from_url]
    if urlsplit(url).scheme:  # not "postgresql+psycopg_async", whose "_" urlsplit refuses
        builders.append(from_url)
    for build in builders:
        with pytest.raises(ImportError, match=re.escape(fix)):
            build(url.format(tmp=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_without_aiomysql_async_calls_run_pymysql_in_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("pymysql")
    monkeypatch.setitem(sys.modules, "aiomysql", None)
    assert SQLByteStore("mysql://u:p@127.0.0.1:1/db")._async_driver is None


def test_conflicts_are_the_servers_deadlocks_and_serialization_failures() -> None:
    pymysql = pytest.importorskip("pymysql")
    psycopg = pytest.importorskip("psycopg")
    from kvstores.sql.mysql import MySQLDriver
    from kvstores.sql.postgresql import Psycopg

    mysql = MySQLDriver()
    assert mysql.conflict(pymysql.err.OperationalError(1213, "Deadlock found"))
    assert mysql.conflict(pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"))
    assert not mysql.conflict(pymysql.err.IntegrityError(1062, "Duplicate entry"))
    assert not mysql.conflict(None)
    postgres = Psycopg(replans=False)
    assert postgres.conflict(psycopg.errors.DeadlockDetected())
    assert postgres.conflict(psycopg.errors.SerializationFailure())
    assert not postgres.conflict(psycopg.errors.UniqueViolation())


@pytest.mark.parametrize("use_async", [False, True])
def test_a_call_rolled_back_over_a_conflict_is_sent_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_async: bool
) -> None:
    """Every call is idempotent: one the server rolled back over a conflict (a deadlock on
    InnoDB's gap locks, seen under concurrent load) is sent again, up to CONFLICT_RETRIES
    times; other errors are not."""
    from kvstores.sql import store as sql_store

    store = SQLByteStore.from_url(f"sqlite:///{tmp_path / 'kv.db'}")
    store.mset([("k", b"v")])
    driver = store._sessions.driver
    failures = 2

    class Deadlock(Exception):
        pass

    def run(real: Any) -> Any:
        def flaky(plan: Any) -> Any:
            nonlocal failures
            if failures:
                failures -= 1
                raise KVStoreError("deadlock") from Deadlock()
            return real(plan)

        return flaky

    async def arun_in_thread(function: Any, *args: Any) -> Any:
        return function(*args)

    monkeypatch.setattr(driver, "conflict", lambda exc: isinstance(exc, Deadlock))
    monkeypatch.setattr(store._sessions, "run", run(store._sessions.run))
    call = (lambda: asyncio.run(store.amget(["k"]))) if use_async else (lambda: store.mget(["k"]))
    assert call() == [b"v"]
    assert failures == 0
    failures = sql_store.CONFLICT_RETRIES + 1  # more than it retries: the error comes out
    with pytest.raises(KVStoreError, match="deadlock"):
        call()
    assert failures == 0
    monkeypatch.setattr(driver, "conflict", lambda exc: False)
    failures = 1
    with pytest.raises(KVStoreError, match="deadlock"):
        call()
    store.close()


@pytest.mark.parametrize(
    ("query", "message"),
    [("charset=bogus", "unknown charset 'bogus'"), ("connect_timeout=abc", "was refused")],
)
def test_bad_mysql_values_in_the_url_are_refused_when_the_store_is_built(
    query: str, message: str
) -> None:
    """PyMySQL failed every connect on an unknown charset with an AttributeError, and
    SQLAlchemy's int() of connect_timeout raised a bare ValueError."""
    pytest.importorskip("pymysql")
    with pytest.raises(ConfigurationError, match=message) as caught:
        from_url(f"mysql+pymysql://u:s3cret@127.0.0.1:1/db?{query}")
    assert "s3cret" not in str(caught.value)


# The connection kept between calls


def test_a_kept_connection_is_recycled_as_the_pool_would(tmp_path: Path) -> None:
    from sqlalchemy.pool import QueuePool

    from kvstores.sql.connections import KeptConnection

    engine = create_engine(f"sqlite:///{tmp_path / 'pool.db'}", poolclass=QueuePool)
    try:
        assert KeptConnection.for_engine(engine, {"pool_pre_ping": True}) is None
        assert KeptConnection.for_engine(engine, {"pool_recycle": 10}, recycles=False) is None
        kept = KeptConnection.for_engine(engine, {"pool_recycle": 10})
        assert kept is not None
        pool: Any = engine.pool
        fairy = engine.raw_connection()
        assert kept.keep(fairy)
        assert kept.take() is fairy  # used again at once: kept
        assert kept.keep(fairy)
        kept._kept_at -= 11  # idle past the recycle time
        assert kept.take() is None
        assert pool.checkedout() == 0  # back in the pool, which replaces it at checkout
        fairy = engine.raw_connection()
        fairy.info["kvstores_kept_since"] = time.monotonic() - 11  # first kept 11 s ago
        assert not kept.keep(fairy)  # older than the recycle time: not kept
        fairy.close()
        assert pool.checkedout() == 0
    finally:
        engine.dispose()
