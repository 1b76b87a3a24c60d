"""`MongoDBByteStore` and `MongoDBStore`: their clients, and their operations as programs.

The user documentation is `kvstores.mongodb`'s. Each operation is written once, as a program
of pymongo calls (`kvstores.mongodb.runner`), which the sync methods run on a `Collection`
and the async ones on an `AsyncCollection` of the running loop's `AsyncMongoClient`.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar, Self, TypeVar

from kvstores.backend import (
    BackendStore,
    KVStoreError,
    PerLoop,
    check_timeout,
    chunked,
    error_reason,
    mask_url,
    merge_common_options,
    namespace_prefix,
    page_sizes,
    prefix_upper_bound,
    secret_values,
    to_thread,
)
from kvstores.mongodb.connect import (
    DEFAULT_COLLECTION,
    DEFAULT_DATABASE,
    AsyncCollection,
    AsyncMongoClient,
    MongoClient,
    OperationFailure,
    PyMongoCollection,
    ReplaceOne,
    SyncCollection,
    Target,
    build_client,
    check_names,
    client_options,
    collection_of,
    describe,
    errors_for,
    own_collection,
    parse_url,
    sync_twin,
)
from kvstores.mongodb.runner import Program, arun, run
from kvstores.mongodb.values import MAX_DOCUMENT_VALUE, check_documents

__all__ = ["MongoDBByteStore", "MongoDBStore", "document_id"]

V = TypeVar("V")
A = TypeVar("A")
T = TypeVar("T")

_VALUE = {"v": True}  # projections: _id is always returned
_KEY = {"_id": True}
_BY_ID = [("_id", 1)]


def document_id(namespace: str | None, key: str) -> str:
    """The ``_id`` of `key`'s document in a store with `namespace`: ``kvstores::<key>``, or
    ``kvstores:<length of namespace>:<namespace>:<key>`` (see "Layout" in `kvstores.mongodb`)."""
    return namespace_prefix(namespace) + key


def _now() -> datetime:
    return datetime.now(UTC)


def _first_given(*names: str | None) -> str:
    """The first name that is not `None`: one given empty is refused, not passed over."""
    return next(name for name in names if name is not None)


class MongoDBBase(BackendStore[V]):
    """What both MongoDB stores share; see `kvstores.mongodb`."""

    backend_name: ClassVar[str] = "mongodb"
    #: The largest value: MongoDB's 16 MiB document limit minus 8 KiB for the envelope.
    max_value_size: ClassVar[int | None] = MAX_DOCUMENT_VALUE
    #: Keys per ``$in`` filter and operations per ``bulk_write`` (a batch's chunks; the async
    #: methods send them concurrently).
    chunk_size: int = 1000

    def __init__(
        self,
        client: Target,
        *,
        database: str | None = None,
        collection: str | None = None,
        namespace: str | None = None,
        ttl: float | None = None,
        timeout: float | None = None,
        **client_options: Any,
    ) -> None:
        """A store on a URL (see `from_url`), or on a pymongo `MongoClient`,
        `AsyncMongoClient`, `Collection` or `AsyncCollection`, which it never closes.

        `database` and `collection` name where the documents go (default: the URL's or the
        client's default database, else ``kvstores``; collection ``kvstores``); a given
        collection is used as is.

        Raises:
            TypeError: `client` is none of those, or `timeout`/client options come with a
                client (configure the client instead).
            ConfigurationError: (a `ValueError`) not a MongoDB URL, an unknown option or URL
                query parameter, an option value pymongo refuses, a bad namespace or ttl.
        """
        if isinstance(client, str):
            # namespace, ttl and timeout may be in the URL's query too; keywords win.
            client, namespace, ttl, timeout = merge_common_options(
                client, namespace=namespace, ttl=ttl, timeout=timeout
            )
        super().__init__(namespace=namespace, ttl=ttl)
        self._prefix = namespace_prefix(self.namespace)
        self._joiner = "\x00" + self._prefix
        self._lock = threading.Lock()
        #: Whether the TTL index on ``exp`` is there: `None` until a store with a ttl first
        #: writes, then `True`, or `False` where the server refused it (FerretDB): then
        #: expired documents stay until `purge_expired` (reads never return them).
        self.ttl_index: bool | None = None
        #: Why the server refused the TTL index, if it did.
        self.ttl_index_refusal: str | None = None
        self._collection: SyncCollection | None = None
        self._owned_sync: MongoClient[Any] | None = None  # closed by `close`
        self._make_sync: Callable[[], tuple[MongoClient[Any], SyncCollection]] | None = None
        self._given_async: AsyncCollection[Any] | None = None
        self._async_clients: PerLoop[tuple[AsyncMongoClient[Any], Any]] | None = None
        self.timeout: float | None = None
        if isinstance(client, str):
            self._open_url(client, database, collection, timeout, client_options)
        else:
            if timeout is not None or client_options:
                raise TypeError(
                    "timeout and client options apply to a store built from a URL; "
                    "configure the pymongo client you pass instead"
                )
            self._wrap(client, database, collection)
        self._errors = errors_for(self._url, secret_values(client_options))

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """A store that owns its clients: ``mongodb://[user:password@]host[:port][,...]/
        [database][?collection=...&namespace=...&ttl=...&timeout=...&<pymongo options>]``
        or ``mongodb+srv://...``.

        `options`: ``namespace``, ``ttl``, ``timeout`` (seconds to select a server, connect
        and wait for a reply; default 10), ``database``, ``collection`` and any pymongo client
        option, as keywords or URL query parameters (keywords win). Nothing is connected
        until the first operation.

        Raises:
            ConfigurationError: (a `ValueError`) not a MongoDB URL, an unknown option, or one
                pymongo refuses.
        """
        return cls(url, **options)

    def _open_url(
        self,
        url: str,
        database: str | None,
        collection: str | None,
        timeout: float | None,
        options: dict[str, Any],
    ) -> None:
        parsed = parse_url(url)
        self.timeout = check_timeout(timeout)
        kwargs = client_options(parsed.url, self.timeout, options)
        names = check_names(
            _first_given(database, parsed.database, DEFAULT_DATABASE),
            _first_given(collection, parsed.collection, DEFAULT_COLLECTION),
        )
        self._url = url
        self.database_name, self.collection_name = names

        def make_sync() -> tuple[MongoClient[Any], SyncCollection]:
            client = build_client(MongoClient, parsed.url, kwargs)
            return client, collection_of(client, *names)

        def make_async() -> tuple[AsyncMongoClient[Any], Any]:
            client = build_client(AsyncMongoClient, parsed.url, kwargs)
            return client, collection_of(client, *names)

        self._make_sync = make_sync
        self._owned_sync, self._collection = make_sync()  # checks the options: no I/O yet
        self._async_clients = PerLoop(make_async, _aclose_client)

    def _wrap(self, target: Any, database: str | None, collection: str | None) -> None:
        """Take a user's client or collection; the other API's side, when missing, is a
        worker thread (given sync) or a sync twin of the async client (given async)."""
        if isinstance(target, (MongoClient, AsyncMongoClient)):
            default = target.get_default_database(DEFAULT_DATABASE).name
            names = check_names(
                _first_given(database, default), _first_given(collection, DEFAULT_COLLECTION)
            )
            coll = collection_of(target, *names)
            client = target
        elif isinstance(target, (PyMongoCollection, AsyncCollection)):
            if database is not None or collection is not None:
                raise TypeError("database and collection name where to go on a client only")
            coll = own_collection(target)
            client = target.database.client
        else:
            raise TypeError(
                "MongoDB stores take a URL, or a pymongo MongoClient, AsyncMongoClient, "
                f"Collection or AsyncCollection, not {type(target).__name__}"
            )
        self._url = describe(client)
        self.database_name, self.collection_name = coll.database.name, coll.name
        if isinstance(client, MongoClient):
            self._collection = coll
            return
        self._given_async = coll

        def make_sync() -> tuple[MongoClient[Any], SyncCollection]:
            twin = sync_twin(client)
            if twin is None:
                raise KVStoreError(
                    "this store was given an async pymongo client whose settings this pymongo "
                    "does not expose; use the async methods, or pass a URL"
                )
            return twin, collection_of(twin, self.database_name, self.collection_name)

        self._make_sync = make_sync

    # Clients

    @property
    def collection(self) -> SyncCollection:
        """The sync pymongo collection the store uses, for what the store does not offer
        (documents are named by `document_id`). The one given, or the one the store builds
        (from its URL, or the settings of a given async client) on first access."""
        return self._sync()

    def _sync(self) -> SyncCollection:
        collection = self._collection
        return collection if collection is not None else self._open_sync()

    def _open_sync(self) -> SyncCollection:
        """Build the sync client (first use, or after `close`), once among threads."""
        with self._lock:
            if self._collection is None:
                assert self._make_sync is not None  # a given sync collection stays
                self._owned_sync, self._collection = self._make_sync()
            return self._collection

    async def _async(self) -> AsyncCollection[Any] | None:
        """The running loop's async collection; `None`: run the sync methods in a thread."""
        if self._given_async is not None:
            return self._given_async
        if self._async_clients is None:
            return None
        collection: AsyncCollection[Any] = (await self._async_clients.get())[1]
        return collection

    def _run(self, program: Callable[[Any, A], Program[T]], arg: A) -> T:
        return run(program(self._sync(), arg), self._errors)

    async def _arun(
        self, program: Callable[[Any, A], Program[T]], arg: A, fallback: Callable[[A], Awaitable[T]]
    ) -> T:
        """`_run` on the running loop's async collection, or `fallback` (in a thread)."""
        collection = await self._async()
        if collection is None:
            return await fallback(arg)
        return await arun(program(collection, arg), self._errors)

    # Operations: each written once, as a program (see kvstores.mongodb.runner)

    def _mget(self, keys: list[str]) -> list[V | None]:
        return self._run(self._mget_program, keys)

    def _mset(self, items: dict[str, V]) -> None:
        self._run(self._mset_program, items)

    def _mdelete(self, keys: list[str]) -> None:
        self._run(self._mdelete_program, keys)

    def _count_keys(self, prefix: str) -> int | None:
        return self._run(self._count_program, prefix)

    async def _amget(self, keys: list[str]) -> list[V | None]:
        return await self._arun(self._mget_program, keys, super()._amget)

    async def _amset(self, items: dict[str, V]) -> None:
        await self._arun(self._mset_program, items, super()._amset)

    async def _amdelete(self, keys: list[str]) -> None:
        await self._arun(self._mdelete_program, keys, super()._amdelete)

    def purge_expired(self) -> int:
        """Delete this namespace's expired documents now; returns how many. Reads never
        return them anyway; MongoDB's TTL index deletes them by itself (within a minute),
        so this matters where the server has no TTL index (FerretDB: see `ttl_index`)."""
        return self._run(self._purge_program, None)

    async def apurge_expired(self) -> int:
        """Async `purge_expired`."""
        return await self._arun(self._purge_program, None, lambda _: to_thread(self.purge_expired))

    def _ids(self, keys: list[str]) -> list[str]:
        """The ``_id`` of each key, built in a few C-level passes (keys never contain NUL)."""
        if len(keys) == 1:
            return [self._prefix + keys[0]]
        return (self._prefix + self._joiner.join(keys)).split("\x00")

    def _range(self, prefix: str) -> dict[str, Any]:
        """The filter of this store's ``_id``s that start with `prefix`: an index range."""
        low = self._prefix + prefix
        span: dict[str, Any] = {"$gte": low}
        high = prefix_upper_bound(low)
        if high is not None:
            span["$lt"] = high
        return {"_id": span}

    @staticmethod
    def _live(query: dict[str, Any]) -> dict[str, Any]:
        """`query`, for unexpired documents only: no ``exp``, or one still ahead."""
        query["exp"] = {"$not": {"$lte": _now()}}
        return query

    def _mget_program(self, collection: Any, keys: list[str]) -> Program[list[V | None]]:
        """One ``find`` with ``_id: {$in}`` per chunk, its one reply holding every match."""
        ids = self._ids(keys)
        unique = list(dict.fromkeys(ids)) if len(keys) > 1 else ids
        replies = yield [
            partial(self._find_values, collection, chunk)
            for chunk in chunked(unique, self.chunk_size)
        ]
        found = {doc["_id"]: doc["v"] for docs in replies for doc in docs}
        return [found.get(i) for i in ids]

    def _find_values(self, collection: Any, ids: Sequence[str]) -> Any:
        n = len(ids)  # limit = batch size = n: one reply, and the cursor is closed
        query = self._live(self._by_ids(ids))
        return collection.find(query, _VALUE, limit=n, batch_size=n).to_list()

    def _mset_program(self, collection: Any, items: dict[str, V]) -> Program[None]:
        """One unordered ``bulk_write`` of upserts (whole-document replacements) per chunk."""
        if self.ttl is not None and self.ttl_index is None:
            yield from self._ttl_index_program(collection)
        ids = self._ids(list(items))
        documents: list[dict[str, Any]]
        if self.ttl is None:
            documents = [{"v": value} for value in items.values()]
        else:
            expires = _now() + timedelta(seconds=self.ttl)
            documents = [{"v": value, "exp": expires} for value in items.values()]
        operations = [
            ReplaceOne({"_id": i}, document, upsert=True)
            for i, document in zip(ids, documents, strict=True)
        ]
        yield [
            partial(collection.bulk_write, chunk, ordered=False)
            for chunk in chunked(operations, self.chunk_size)
        ]

    def _ttl_index_program(self, collection: Any) -> Program[None]:
        """Create the TTL index on ``exp`` once; a server that refuses it (FerretDB, code
        238) leaves expired documents to `purge_expired`."""
        try:
            yield [partial(collection.create_index, "exp", expireAfterSeconds=0)]
        except OperationFailure as exc:
            self.ttl_index, self.ttl_index_refusal = False, error_reason(exc)
        else:
            self.ttl_index = True

    def _mdelete_program(self, collection: Any, keys: list[str]) -> Program[None]:
        """One ``delete_many`` with ``_id: {$in}`` per chunk."""
        ids = list(dict.fromkeys(self._ids(keys)))
        yield [
            partial(collection.delete_many, self._by_ids(chunk))
            for chunk in chunked(ids, self.chunk_size)
        ]

    @staticmethod
    def _by_ids(ids: Sequence[str]) -> dict[str, Any]:
        """``_id: {$in: ids}``; a single id as an equality, which FerretDB (that scans its
        table for an ``$in``) turns into a lookup by key."""
        return {"_id": ids[0]} if len(ids) == 1 else {"_id": {"$in": ids}}

    def _count_program(self, collection: Any, prefix: str) -> Program[int]:
        (count,) = yield [partial(collection.count_documents, self._live(self._range(prefix)))]
        return int(count)

    def _purge_program(self, collection: Any, _: None) -> Program[int]:
        query = self._range("")
        query["exp"] = {"$lte": _now()}
        (result,) = yield [partial(collection.delete_many, query)]
        return int(result.deleted_count)

    # Listing

    def _yield_keys(self, prefix: str) -> Iterator[str]:
        after: str | None = None
        for limit in page_sizes(self.page_size):
            page = self._run(self._page_program, (prefix, after, limit + 1))
            if len(page) <= limit:
                yield from page
                return
            del page[limit:]
            yield from page
            after = page[-1]

    def _ayield_keys(self, prefix: str) -> AsyncIterator[str]:
        if self._given_async is None and self._async_clients is None:
            return super()._ayield_keys(prefix)  # in a worker thread
        return self._apages(prefix)

    async def _apages(self, prefix: str) -> AsyncIterator[str]:
        """The async twin of `_yield_keys`, on the running loop's async collection."""
        after: str | None = None
        for limit in page_sizes(self.page_size):
            program = self._page_program(await self._async(), (prefix, after, limit + 1))
            page = await arun(program, self._errors)
            for key in page[:limit]:
                yield key
            if len(page) <= limit:
                return
            after = page[limit - 1]

    def _page_program(
        self, collection: Any, page: tuple[str, str | None, int]
    ) -> Program[list[str]]:
        """A keyset page: one ``find`` on the ``_id`` range of the namespace and prefix, after
        the last key of the page before, sorted by ``_id``, projected to it and limited to a
        page, whose one reply closes the cursor (no cursor outlives a page, so none is lost
        to the server's idle timeout and writes between pages never disturb a listing).

        The listing asks one key more than it takes: a page that comes back short of it is
        the last, so no statement is sent just to learn that nothing follows (FerretDB
        scans the collection for each)."""
        prefix, after, limit = page
        query = self._range(prefix)
        if after is not None:
            span = query["_id"]
            del span["$gte"]
            span["$gt"] = self._prefix + after
        (docs,) = yield [partial(self._find_keys, collection, self._live(query), limit)]
        skip = len(self._prefix)
        return [doc["_id"][skip:] for doc in docs]

    @staticmethod
    def _find_keys(collection: Any, query: dict[str, Any], limit: int) -> Any:
        return collection.find(query, _KEY, sort=_BY_ID, limit=limit, batch_size=limit).to_list()

    # Lifecycle

    def server_version(self) -> str | None:
        """``"mongodb <version>"``, or ``"ferretdb <version> (mongodb <version>)"`` on
        FerretDB, from ``buildInfo``."""
        info = self.build_info()
        if "ferretdbVersion" in info:
            ferret = str(info["ferretdbVersion"]).removeprefix("v")
            return f"ferretdb {ferret} (mongodb {info.get('version')})"
        return f"mongodb {info.get('version')}"

    def build_info(self) -> dict[str, Any]:
        """The server's ``buildInfo`` (FerretDB adds ``ferretdbVersion``)."""
        info: dict[str, Any] = self._run(self._build_info_program, None)
        return info

    def _build_info_program(self, collection: Any, _: None) -> Program[dict[str, Any]]:
        (info,) = yield [partial(collection.database.command, "buildInfo")]
        return dict(info)

    def _close_sync(self) -> None:
        """Close the sync client if the store built it (a later sync call builds another)."""
        with self._lock:
            client, self._owned_sync = self._owned_sync, None
            if client is None:
                return
            self._collection = None
        client.close()

    def close(self) -> None:
        """Close the clients this store built; a client or collection given to it stays open."""
        self._close_sync()
        if self._async_clients is not None:
            self._async_clients.close()

    async def aclose(self) -> None:
        """Async `close`."""
        if self._async_clients is not None:
            await self._async_clients.aclose_all()
        if self._owned_sync is not None:
            await to_thread(self._close_sync)  # a client ends its sessions on the server: I/O

    def __repr__(self) -> str:
        where = f"{self.database_name}.{self.collection_name}"
        return f"{type(self).__name__}({mask_url(self._url)!r}, {where!r}{self._options_repr()})"


async def _aclose_client(pair: tuple[AsyncMongoClient[Any], Any]) -> None:
    await pair[0].close()


class MongoDBByteStore(MongoDBBase[bytes]):
    """Bytes in MongoDB (BSON binary), one document per key; see `kvstores.mongodb`."""


class MongoDBStore(MongoDBBase[Any]):
    """JSON-like values (dict, list, str, int, float, bool, nested) in MongoDB as native
    BSON, one document per key, so that they can be queried in the database; see
    `kvstores.mongodb`. A value JSON would not give back as it is raises at write time,
    and nothing of the batch is written."""

    _check_pair_types: ClassVar[bool] = True

    def check_values(self, values: Collection[Any]) -> Collection[Any]:
        return check_documents(values, MAX_DOCUMENT_VALUE)
