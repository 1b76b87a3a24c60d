"""LangChain's own stores as the bench scripts' third side (`Case.langchain`), when installed.

Each ``langchain_<backend>`` context manager yields LangChain's store for that backend, on a
table / collection / namespace of its own, and cleans it up on exit, as the scripts do for
the other two sides. When the package that has the store is not installed it yields
``None`` (the case then runs without a LangChain side) and prints one line naming the
package (``pip install -c constraints.txt -r benchmarks/requirements.txt`` installs them
all).

LangChain's stores are passed as they are (a ``BaseStore`` has the harness's methods), with
three exceptions, each an adapter below: `SyncAsync` (LangChain's ``SQLStore`` serves either
sync or async calls, never both), `GlobPrefix` (LangChain's ``RedisStore`` takes its
``prefix`` as a glob pattern) and `InLimit` (LangChain's ``AstraDBByteStore`` sends all the
keys of a call in one ``$in``, which the Data API refuses past 100).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from kvstores.benchmark import Pair, Target

_GLOB = str.maketrans({c: "\\" + c for c in "\\*?[]"})


def _missing(backend: str, package: str, exc: ModuleNotFoundError) -> None:
    print(
        f"{backend}: no LangChain side ({exc.name} is missing): pip install {package} "
        "would add it (see benchmarks/requirements.txt)",
        file=sys.stderr,
    )


class SyncAsync:
    """Sync calls to one store, async calls to another (on the same data).

    LangChain's ``SQLStore`` is sync or async by its engine and refuses the other kind of
    call, so a user doing both holds two, as this does.
    """

    def __init__(self, sync: Any, async_: Any) -> None:
        self.sync, self.async_ = sync, async_

    def mset(self, pairs: Sequence[Pair], /) -> None:
        self.sync.mset(pairs)

    def mget(self, keys: Sequence[str], /) -> Sequence[bytes | None]:
        values: Sequence[bytes | None] = self.sync.mget(keys)
        return values

    def mdelete(self, keys: Sequence[str], /) -> None:
        self.sync.mdelete(keys)

    def yield_keys(self, *, prefix: str) -> Iterable[str]:
        keys: Iterable[str] = self.sync.yield_keys(prefix=prefix)
        return keys

    async def amset(self, pairs: Sequence[Pair], /) -> None:
        await self.async_.amset(pairs)

    async def amget(self, keys: Sequence[str], /) -> Sequence[bytes | None]:
        values: Sequence[bytes | None] = await self.async_.amget(keys)
        return values

    async def amdelete(self, keys: Sequence[str], /) -> None:
        await self.async_.amdelete(keys)

    async def ayield_keys(self, *, prefix: str) -> AsyncIterator[str]:
        async for key in self.async_.ayield_keys(prefix=prefix):
            yield key


class GlobPrefix:
    """LangChain's ``RedisStore`` with ``prefix + "*"`` for a listing.

    Its ``yield_keys(prefix=p)`` sends ``SCAN MATCH namespace/p`` without a ``*``, so it
    finds only a key equal to `p`: a caller listing a prefix has to add the ``*`` (and
    escape the glob characters), as this does.
    """

    def __init__(self, store: Any) -> None:
        self.store = store

    def mset(self, pairs: Sequence[Pair], /) -> None:
        self.store.mset(pairs)

    def mget(self, keys: Sequence[str], /) -> Sequence[bytes | None]:
        values: Sequence[bytes | None] = self.store.mget(keys)
        return values

    def mdelete(self, keys: Sequence[str], /) -> None:
        self.store.mdelete(keys)

    def yield_keys(self, *, prefix: str) -> Iterable[str]:
        keys: Iterable[str] = self.store.yield_keys(prefix=prefix.translate(_GLOB) + "*")
        return keys

    async def amset(self, pairs: Sequence[Pair], /) -> None:
        await self.store.amset(pairs)

    async def amget(self, keys: Sequence[str], /) -> Sequence[bytes | None]:
        values: Sequence[bytes | None] = await self.store.amget(keys)
        return values

    async def amdelete(self, keys: Sequence[str], /) -> None:
        await self.store.amdelete(keys)

    async def ayield_keys(self, *, prefix: str) -> AsyncIterator[str]:
        async for key in self.store.ayield_keys(prefix=prefix.translate(_GLOB) + "*"):
            yield key


class InLimit:
    """Calls of at most `limit` keys to `store` (mget, mdelete and their async twins).

    LangChain's ``AstraDBByteStore`` sends the keys of an ``mget`` or ``mdelete`` in one
    ``$in`` filter, which the Data API refuses past 100 values; the harness resets state in
    calls of 1,000 keys. kvstores and the raw side split their calls the same way.
    """

    def __init__(self, store: Any, limit: int = 100) -> None:
        self.store, self.limit = store, limit

    def _split(self, keys: Sequence[str]) -> list[Sequence[str]]:
        return [keys[i : i + self.limit] for i in range(0, len(keys), self.limit)]

    def mset(self, pairs: Sequence[Pair], /) -> None:
        self.store.mset(pairs)

    def mget(self, keys: Sequence[str], /) -> Sequence[bytes | None]:
        return [value for chunk in self._split(keys) for value in self.store.mget(chunk)]

    def mdelete(self, keys: Sequence[str], /) -> None:
        for chunk in self._split(keys):
            self.store.mdelete(chunk)

    def yield_keys(self, *, prefix: str) -> Iterable[str]:
        keys: Iterable[str] = self.store.yield_keys(prefix=prefix)
        return keys

    async def amset(self, pairs: Sequence[Pair], /) -> None:
        await self.store.amset(pairs)

    async def amget(self, keys: Sequence[str], /) -> Sequence[bytes | None]:
        return [value for chunk in self._split(keys) for value in await self.store.amget(chunk)]

    async def amdelete(self, keys: Sequence[str], /) -> None:
        for chunk in self._split(keys):
            await self.store.amdelete(chunk)

    async def ayield_keys(self, *, prefix: str) -> AsyncIterator[str]:
        async for key in self.store.ayield_keys(prefix=prefix):
            yield key


def _delete_all(store: Any) -> None:
    keys = list(store.yield_keys(prefix=""))
    for start in range(0, len(keys), 100):
        store.mdelete(keys[start : start + 100])


@contextmanager
def langchain_memory() -> Iterator[Target | None]:
    """``langchain_core.stores.InMemoryByteStore``."""
    try:
        from langchain_core.stores import InMemoryByteStore
    except ModuleNotFoundError as exc:
        _missing("memory", "langchain-core", exc)
        yield None
        return
    yield InMemoryByteStore()


@contextmanager
def langchain_file(directory: str) -> Iterator[Target | None]:
    """``langchain_classic.storage.LocalFileStore`` on `directory` (the caller's to remove)."""
    try:
        from langchain_classic.storage import LocalFileStore
    except ModuleNotFoundError as exc:
        _missing("file", "langchain-classic", exc)
        yield None
        return
    yield LocalFileStore(directory)


@contextmanager
def langchain_redis(url: str, namespace: str) -> Iterator[Target | None]:
    """``langchain_community.storage.RedisStore`` on `url` under `namespace` (its keys
    deleted on exit)."""
    try:
        from langchain_community.storage import RedisStore
    except ModuleNotFoundError as exc:
        _missing("redis", "langchain-community", exc)
        yield None
        return
    store = RedisStore(redis_url=url, namespace=namespace)
    try:
        yield GlobPrefix(store)
    finally:
        for keys in _chunks(list(store.client.scan_iter(match=f"{namespace}/*", count=1000))):
            store.client.delete(*keys)
        store.client.close()


def _chunks(items: list[Any], size: int = 1000) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _async_url(url: Any) -> Any:
    """The SQLAlchemy URL of the same database with an async driver."""
    drivers = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg_async"}
    backend = url.get_backend_name()
    return url.set(drivername=drivers.get(backend, f"{backend}+aiomysql"))


@contextmanager
def langchain_sql(url: Any, namespace: str) -> Iterator[Target | None]:
    """``langchain_community.storage.SQLStore`` on the SQLAlchemy `url` (its sync driver;
    async calls go to a second SQLStore on the same database with an async driver), in its
    own table ``langchain_key_value_stores`` under `namespace`. On exit the namespace's rows
    are deleted, and the table dropped if it was made here. None (and a line saying why)
    where SQLStore cannot make its table: on MySQL its ``String`` key columns have no
    length."""
    try:
        import sqlalchemy
        from langchain_community.storage import SQLStore
    except ModuleNotFoundError as exc:
        _missing("sql", "langchain-community", exc)
        yield None
        return
    sync = SQLStore(namespace=namespace, db_url=url.render_as_string(hide_password=False))
    existed = sqlalchemy.inspect(sync.engine).has_table("langchain_key_value_stores")
    try:
        sync.create_schema()
    except sqlalchemy.exc.CompileError as exc:  # MySQL: its key columns have no length
        print(f"sql ({url.get_backend_name()}): no LangChain side: SQLStore {exc}", file=sys.stderr)
        sync.engine.dispose()
        yield None
        return
    async_url = _async_url(url).render_as_string(hide_password=False)
    async_ = SQLStore(namespace=namespace, db_url=async_url, async_mode=True)
    try:
        yield SyncAsync(sync, async_)
    finally:
        _delete_all(sync)
        if not existed:
            with sync.engine.begin() as connection:
                connection.exec_driver_sql("DROP TABLE IF EXISTS langchain_key_value_stores")
        sync.engine.dispose()
        # The async engine's connections belong to the harness's (closed) event loop: they
        # are dropped with the process, as its pool cannot close them from here.


@contextmanager
def langchain_mongodb(url: str, collection: str) -> Iterator[Target | None]:
    """``langchain_community.storage.MongoDBByteStore`` on the URL's database, in
    `collection` (dropped on exit)."""
    try:
        import pymongo
        from langchain_community.storage import MongoDBByteStore
    except ModuleNotFoundError as exc:
        _missing("mongodb", "langchain-community", exc)
        yield None
        return
    database = pymongo.uri_parser.parse_uri(url).get("database") or "kvstores_test"
    store = MongoDBByteStore(url, database, collection)
    try:
        yield store
    finally:
        store.collection.drop()
        store.client.close()


@contextmanager
def langchain_cassandra(session: Any, keyspace: str, table: str) -> Iterator[Target | None]:
    """``langchain_community.storage.CassandraByteStore`` on the cluster of `session`, in
    `table` (dropped on exit).

    It gets a cluster connection of its own, with the driver's default execution profile:
    it reads rows by column name, and kvstores' session returns plain tuples.
    """
    try:
        from cassandra.cluster import Cluster
        from langchain_community.storage import CassandraByteStore
    except ModuleNotFoundError as exc:
        _missing("cassandra", "langchain-community", exc)
        yield None
        return
    theirs = session.cluster
    cluster = Cluster(
        contact_points=theirs.contact_points,
        port=theirs.port,
        auth_provider=theirs.auth_provider,
        ssl_context=theirs.ssl_context,
        protocol_version=theirs.protocol_version,
    )
    own = cluster.connect()
    try:
        yield CassandraByteStore(table, session=own, keyspace=keyspace)
    finally:
        own.execute(f"DROP TABLE IF EXISTS {keyspace}.{table}")
        cluster.shutdown()


@contextmanager
def langchain_astradb(url: str, collection: str) -> Iterator[Target | None]:
    """``langchain_astradb.AstraDBByteStore`` on the kvstores AstraDB `url`'s Data API and
    keyspace, in `collection` (dropped on exit)."""
    try:
        from langchain_astradb import AstraDBByteStore
    except ModuleNotFoundError as exc:
        _missing("astradb", "langchain-astradb", exc)
        yield None
        return
    from kvstores.astradb.connect import parse_url

    settings = parse_url(url, {})
    store = AstraDBByteStore(
        collection_name=collection,
        token=settings.token,
        api_endpoint=settings.endpoint,
        namespace=settings.keyspace,
        environment=settings.environment,
    )
    try:
        yield InLimit(store)
    finally:
        store.collection.drop()
