"""`AstraDBByteStore` and `AstraDBStore`: their collections, and their operations as programs.

The user documentation is `kvstores.astradb`'s. Each operation is written once, as a program
(`kvstores.backend.Program`) whose requests are lists of astrapy calls without arguments;
astrapy's sync and async collections share their method names, so the very same program
builds the calls on a `Collection` (the sync methods: calls of a request run concurrently in
a few threads) or an `AsyncCollection` (the async ones: gathered on the running loop).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from collections.abc import Collection as Sized
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, ClassVar, Self, TypeVar

from kvstores.astradb.connect import (
    COLLECTION_NAME,
    DEFAULT_COLLECTION,
    AsyncCollection,
    Collection,
    CollectionInsertManyException,
    DataAPIResponseException,
    Database,
    Settings,
    close_http,
    error_codes,
    errors_for,
    open_database,
    parse_url,
)
from kvstores.backend import (
    DEFAULT_TIMEOUT,
    BackendStore,
    ConfigurationError,
    InvalidValueError,
    Outcome,
    PerLoop,
    Program,
    adrive,
    check_json_like,
    check_name,
    check_options,
    check_timeout,
    chunked,
    drive,
    mask_url,
    merge_common_options,
    namespace_prefix,
    prefix_upper_bound,
    to_thread,
)

__all__ = ["MAX_BYTES_VALUE", "MAX_DOCUMENT_CHARS", "AstraDBByteStore", "AstraDBStore"]

V = TypeVar("V")

#: The Data API caps a document at 4,000,000 characters of JSON; 16,000 are left for the
#: envelope (``_id`` of up to 1024 four-byte characters and a 256-character namespace,
#: field names, the expiry).
MAX_DOCUMENT_CHARS = 4_000_000 - 16_000
#: Bytes travel as base64 (4 characters for 3 bytes) in ``{"$binary": ...}``.
MAX_BYTES_VALUE = MAX_DOCUMENT_CHARS // 4 * 3
#: Dicts and lists nested in a `AstraDBStore` value, at most: the Data API refuses documents
#: nested deeper than 16 levels, and the stored document adds one.
MAX_DEPTH = 15
#: The fields excluded from the collection's indexing: the value (so its strings are not
#: limited to the indexed-string size) and the list of its integral floats.
UNINDEXED = ["v", "f"]
_KEYS = {"_id": True, "exp": True}  # not {"_id": True} alone: some servers then send all
_VALUES = {"_id": True, "v": True, "exp": True, "f": True}
_OPTIONS = ("keyspace", "collection", "token")
#: What the Data API answers a conditional write that lost a race with another writer of
#: the same document: worth sending again.
_RETRIED = {"FAILED_CONCURRENT_OPERATIONS"}

Doc = dict[str, Any]
Target = str | Database | Collection[Doc] | AsyncCollection[Doc]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _field_problem(name: str) -> str | None:
    if not name:
        return "is empty"
    if "." in name:
        return "contains '.'"
    if name.startswith("$"):
        return "starts with '$'"
    return None


def _integral_floats(value: Any, path: list[str | int], found: list[list[str | int]]) -> None:
    """The paths of the floats in `value` that JSON would give back as integers (``1.0``)."""
    kind = type(value)
    if kind is float:
        if value.is_integer():
            found.append(list(path))
    elif kind is dict:
        for name, item in value.items():
            path.append(name)
            _integral_floats(item, path, found)
            path.pop()
    elif kind is list:
        for index, item in enumerate(value):
            path.append(index)
            _integral_floats(item, path, found)
            path.pop()


def _restore_floats(value: Any, paths: Sequence[Sequence[str | int]]) -> Any:
    """`value` with the numbers at `paths` made floats again."""
    for path in paths:
        if not path:
            return float(value)
        parent = value
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = float(parent[path[-1]])
    return value


class AstraDBBase(BackendStore[V]):
    """What both AstraDB stores share; see `kvstores.astradb`."""

    backend_name: ClassVar[str] = "astradb"
    #: Keys per ``find`` or ``deleteMany`` with ``_id: {$in}``: the Data API's page (a find
    #: returns 20 documents a page, a deleteMany deletes 20 a call), so each is one request.
    find_chunk: int = 20
    #: Documents per ``insertMany`` request (astrapy's default).
    insert_chunk: int = 50
    #: Requests in flight at once per operation of the sync methods (threads).
    concurrency: int = 8
    #: Times a batch's replacements are sent again when the server reports a race with
    #: another writer of the same key (``FAILED_CONCURRENT_OPERATIONS``).
    retries: int = 3

    def __init__(
        self,
        target: Target,
        *,
        keyspace: str | None = None,
        collection: str | None = None,
        token: str | None = None,
        namespace: str | None = None,
        ttl: float | None = None,
        timeout: float | None = None,
    ) -> None:
        """A store on a URL (see `from_url`), or on a user's astrapy `Database` (the store
        creates its collection there if missing), `Collection` or `AsyncCollection` (used
        as is).

        Raises:
            TypeError: `target` is none of those, or URL options come with one of them.
            ConfigurationError: (a `ValueError`) not an AstraDB URL, an unknown option, no
                token, a bad namespace or ttl.
        """
        if isinstance(target, str):
            target, namespace, ttl, timeout = merge_common_options(
                target, namespace=namespace, ttl=ttl, timeout=timeout
            )
        super().__init__(namespace=namespace, ttl=ttl)
        self._prefix = namespace_prefix(self.namespace)
        self._tag = self.namespace or ""
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._database: Database | None = None  # where the collection is made if missing
        self._given_async: AsyncCollection[Doc] | None = None
        self._async: PerLoop[AsyncCollection[Doc]] | None = None
        self._ready = False
        self._settings: Settings | None = None  # a store on a URL: it owns its clients
        #: Whether the server filters a range of ``_id`` (`None` until a prefix listing
        #: asked it; `False`: prefixes are filtered here, over the namespace's documents).
        self.prefix_on_server: bool | None = None
        self.timeout: float | None = None
        if isinstance(target, str):
            options = {"keyspace": keyspace, "collection": collection, "token": token}
            settings = parse_url(target, {k: v for k, v in options.items() if v is not None})
            self.timeout = check_timeout(timeout)
            self._database = open_database(settings, self.timeout)
            self._collection = self._database.get_collection(settings.collection)
            self._url = target
            self._settings = settings
            token = settings.token  # from the URL, a keyword or the environment
        else:
            if timeout is not None or token is not None or keyspace is not None:
                raise TypeError(
                    "timeout, token and keyspace apply to a store built from a URL; "
                    "configure the astrapy object you pass instead"
                )
            if isinstance(target, Database):
                name = DEFAULT_COLLECTION if collection is None else collection
                self._database = target
                self._collection = target.get_collection(check_name(COLLECTION_NAME, name))
            elif isinstance(target, Collection):
                self._collection, self._ready = target, True
            elif isinstance(target, AsyncCollection):
                self._given_async, self._ready = target, True
                self._collection = target.to_sync()
            else:
                raise TypeError(
                    "AstraDB stores take a URL, or an astrapy Database, Collection or "
                    f"AsyncCollection, not {type(target).__name__}"
                )
            if collection is not None and not isinstance(target, Database):
                raise TypeError("collection= goes with a URL or a Database only")
            where = self._collection
            self._url = f"{where.database.api_endpoint}/{where.keyspace}/{where.name}"
        if self._given_async is None:
            sync = self._collection
            self._async = PerLoop(sync.to_async, _aclose)
        self._errors = errors_for(self._url, token)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """A store on ``astradb://<endpoint host>/<keyspace>?collection=…&token=…`` (Astra,
        https) or ``astradb+http://host:port/<keyspace>?…`` (a self-hosted Data API);
        `options`: ``keyspace``, ``collection``, ``token`` (else
        ``$ASTRA_DB_APPLICATION_TOKEN``), ``namespace``, ``ttl``, ``timeout``, as keywords
        or query parameters (keywords win). Nothing is sent until the first operation.

        Raises:
            ConfigurationError: (a `ValueError`) not an AstraDB URL, an unknown option, no
                token.
        """
        known = (*_OPTIONS, "namespace", "ttl", "timeout")
        check_options("astradb", [name for name in options if name not in known], known)
        return cls(url, **options)

    # The collection

    @property
    def collection(self) -> Collection[Doc]:
        """The sync astrapy collection the store uses (documents as in "Layout" in
        `kvstores.astradb`)."""
        return self._collection

    def _ensure(self) -> None:
        """Create the keyspace and the collection where missing, once (a store on a URL or
        a `Database`); the values' fields excluded from indexing."""
        if not self._ready:
            with self._lock, self._errors:
                if not self._ready:
                    self._create()
                    self._ready = True

    def _create(self) -> None:
        database = self._database
        assert database is not None
        name = self._collection.name
        try:
            existing = {d.name: d for d in database.list_collections()}
        except DataAPIResponseException as exc:
            if not any("KEYSPACE" in code for code in error_codes(exc)):
                raise
            database.get_database_admin().create_keyspace(self._collection.keyspace)
            existing = {}
        if name not in existing:
            database.create_collection(name, definition={"indexing": {"deny": UNINDEXED}})
            return
        indexing = existing[name].definition.indexing or {}
        denied = indexing.get("deny") or []
        if not ("*" in denied or all(field in denied for field in UNINDEXED)):
            raise ConfigurationError(
                f"astradb: collection {name!r} indexes the field 'v', where the stores keep "
                "values (so values would be limited to an indexed string's size); create it "
                f"with indexing={{'deny': {UNINDEXED}}}, or name another collection"
            )

    async def _aensure(self) -> None:
        if not self._ready:
            await to_thread(self._ensure)  # once per store

    def _sync(self) -> Collection[Doc]:
        self._ensure()
        return self._collection

    async def _acollection(self) -> AsyncCollection[Doc]:
        await self._aensure()
        if self._given_async is not None:
            return self._given_async
        assert self._async is not None
        return await self._async.get()

    # Running programs

    def _perform(self, calls: list[Callable[[], Any]]) -> Outcome:
        """The calls of a request, concurrently in the store's threads when several."""
        try:
            if len(calls) == 1:
                return [calls[0]()], None
            pool = self._pool
            if pool is None:
                with self._lock:
                    pool = self._pool
                    if pool is None:
                        pool = self._pool = ThreadPoolExecutor(
                            self.concurrency, thread_name_prefix="kvstores-astradb"
                        )
            return list(pool.map(lambda call: call(), calls)), None
        except self._errors.handled as exc:
            return None, exc

    @staticmethod
    async def _aperform(
        calls: list[Callable[[], Any]], handled: tuple[type[BaseException], ...]
    ) -> Outcome:
        try:
            if len(calls) == 1:
                return [await calls[0]()], None
            return await asyncio.gather(*(call() for call in calls)), None
        except handled as exc:
            return None, exc

    def _run(self, program: Callable[[Any, Any], Program[Any]], arg: Any) -> Any:
        collection = self._sync()
        with self._errors:
            return drive(program(collection, arg), self._perform)

    async def _arun(self, program: Callable[[Any, Any], Program[Any]], arg: Any) -> Any:
        async with self._errors:
            collection = await self._acollection()
            handled = self._errors.handled
            return await adrive(
                program(collection, arg), lambda calls: self._aperform(calls, handled)
            )

    # Documents

    def _ids(self, keys: Sequence[str]) -> list[str]:
        prefix = self._prefix
        return [prefix + key for key in keys]

    def _document(self, _id: str, value: V, expires: int | None) -> dict[str, Any]:
        document: dict[str, Any] = {"_id": _id, "ns": self._tag, "v": value}
        if expires is not None:
            document["exp"] = expires
        return document

    def _value(self, document: dict[str, Any]) -> V:
        value: V = document["v"]
        return value

    # Operations: each written once, as a program

    def _find(self, collection: Any, ids: Sequence[str]) -> Any:
        query = {"_id": {"$in": list(ids)}}
        return collection.find(query, projection=_VALUES, limit=len(ids)).to_list()

    def _mget_program(self, collection: Any, keys: list[str]) -> Program[list[V | None]]:
        """One ``find`` with ``_id: {$in}`` per chunk of `find_chunk` ids, all at once."""
        ids = self._ids(keys)
        unique = list(dict.fromkeys(ids))
        replies = yield [
            partial(self._find, collection, chunk) for chunk in chunked(unique, self.find_chunk)
        ]
        now = _now_ms()
        found = {
            doc["_id"]: self._value(doc)
            for docs in replies
            for doc in docs
            if doc.get("exp") is None or doc["exp"] > now
        }
        return [found.get(i) for i in ids]

    def _mset_program(self, collection: Any, items: dict[str, V]) -> Program[None]:
        """One unordered ``insertMany`` (astrapy sends `insert_chunk` documents a request,
        concurrently); the keys that already existed, then replaced, each one
        ``findOneAndReplace``, all at once: an overwritten key is never absent."""
        expires = None if self.ttl is None else _now_ms() + int(self.ttl * 1000)
        documents = [
            self._document(i, value, expires)
            for i, value in zip(self._ids(list(items)), items.values(), strict=True)
        ]
        try:
            yield [
                partial(
                    collection.insert_many,
                    documents,
                    ordered=False,
                    chunk_size=self.insert_chunk,
                    # One request: no concurrency, for which astrapy's sync insert_many
                    # starts and joins a thread pool on every call.
                    concurrency=self.concurrency if len(documents) > self.insert_chunk else 1,
                )
            ]
        except CollectionInsertManyException as exc:
            if not error_codes(exc) <= _RETRIED | {"DOCUMENT_ALREADY_EXISTS"}:
                raise
            inserted = set(exc.inserted_ids)
            rest = [doc for doc in documents if doc["_id"] not in inserted]
        else:
            return
        for attempt in range(self.retries + 1):
            try:
                yield [
                    partial(collection.replace_one, {"_id": doc["_id"]}, doc, upsert=True)
                    for doc in rest
                ]
            except DataAPIResponseException as exc:
                # Writers of one key at once: the server's conditional write lost a race.
                # Replacing again is idempotent.
                if attempt == self.retries or not error_codes(exc) <= _RETRIED:
                    raise
            else:
                return

    def _mdelete_program(self, collection: Any, keys: list[str]) -> Program[None]:
        """One ``deleteMany`` with ``_id: {$in}`` per chunk of `find_chunk` ids, all at once."""
        return self._delete_ids_program(collection, list(dict.fromkeys(self._ids(keys))))

    def _delete_ids_program(self, collection: Any, ids: list[str]) -> Program[None]:
        yield [
            partial(collection.delete_many, {"_id": {"$in": chunk}})
            for chunk in chunked(ids, self.find_chunk)
        ]

    def _mget(self, keys: list[str]) -> list[V | None]:
        result: list[V | None] = self._run(self._mget_program, keys)
        return result

    def _mset(self, items: dict[str, V]) -> None:
        self._run(self._mset_program, items)

    def _mdelete(self, keys: list[str]) -> None:
        self._run(self._mdelete_program, keys)

    async def _amget(self, keys: list[str]) -> list[V | None]:
        result: list[V | None] = await self._arun(self._mget_program, keys)
        return result

    async def _amset(self, items: dict[str, V]) -> None:
        await self._arun(self._mset_program, items)

    async def _amdelete(self, keys: list[str]) -> None:
        await self._arun(self._mdelete_program, keys)

    # Listing

    def _queries(self, prefix: str) -> list[tuple[dict[str, Any], str]]:
        """The listing's filters to try in turn, each with the ``_id`` prefix left to check
        here: a range of ``_id`` (where the server filters ranges), else the namespace's
        documents (``ns`` equality), the prefix checked here."""
        full = self._prefix + prefix
        by_namespace = ({"ns": self._tag}, full)
        if not prefix or self.prefix_on_server is False:
            return [by_namespace]
        span: dict[str, Any] = {"$gte": full}
        high = prefix_upper_bound(full)
        if high is not None:
            span["$lt"] = high
        return [({"_id": span}, ""), by_namespace]

    def _keys_of(self, docs: Sequence[dict[str, Any]], start: str) -> list[str]:
        now, skip = _now_ms(), len(self._prefix)
        return [
            doc["_id"][skip:]
            for doc in docs
            if doc["_id"].startswith(start) and (doc.get("exp") is None or doc["exp"] > now)
        ]

    def _yield_keys(self, prefix: str) -> Iterator[str]:
        collection = self._sync()
        queries = self._queries(prefix)
        with self._errors:
            for number, (query, start) in enumerate(queries):
                cursor = collection.find(query, projection=_KEYS)
                try:
                    page = cursor.consume_buffer() if cursor.has_next() else []
                except DataAPIResponseException:
                    if number + 1 == len(queries):
                        raise
                    continue  # the server refused a range: list the namespace
                if len(queries) == 2:  # a range was tried: the server did, or refused it
                    self.prefix_on_server = number == 0
                while True:
                    yield from self._keys_of(page, start)
                    if not cursor.has_next():
                        return
                    page = cursor.consume_buffer()

    async def _ayield_keys(self, prefix: str) -> AsyncIterator[str]:
        collection = await self._acollection()
        queries = self._queries(prefix)
        async with self._errors:
            for number, (query, start) in enumerate(queries):
                cursor = collection.find(query, projection=_KEYS)
                try:
                    page = cursor.consume_buffer() if await cursor.has_next() else []
                except DataAPIResponseException:
                    if number + 1 == len(queries):
                        raise
                    continue
                if len(queries) == 2:  # a range was tried: the server did, or refused it
                    self.prefix_on_server = number == 0
                while True:
                    for key in self._keys_of(page, start):
                        yield key
                    if not await cursor.has_next():
                        return
                    page = cursor.consume_buffer()

    # Expiry and lifecycle

    def purge_expired(self) -> int:
        """Delete this namespace's expired documents now (the Data API has no native
        expiry; reads never return them anyway); returns how many."""
        now = _now_ms()
        expired = [
            doc["_id"]
            for doc in self._sync().find({"ns": self._tag}, projection=_KEYS)
            if doc.get("exp") is not None and doc["exp"] <= now
        ]
        self._run(self._delete_ids_program, expired)
        return len(expired)

    async def apurge_expired(self) -> int:
        """Async `purge_expired`."""
        return await to_thread(self.purge_expired)

    def close(self) -> None:
        """Stop the store's threads and close its clients' connections (a store on a URL:
        it can still be used, and connects again); a given collection or database stays
        usable."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
        if self._async is not None:
            self._async.close()
        if self._settings is None:
            return
        with self._lock:
            # A closed httpx client cannot be reopened: new astrapy objects (which send
            # nothing until used) take the place of the ones closed.
            owned = (self._database, self._collection)
            self._database = open_database(self._settings, self.timeout or DEFAULT_TIMEOUT)
            self._collection = self._database.get_collection(self._collection.name)
            self._async = PerLoop(self._collection.to_async, _aclose)
        close_http(*owned)

    async def aclose(self) -> None:
        """Async `close`."""
        if self._async is not None:
            await self._async.aclose_all()
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({mask_url(self._url)!r}{self._options_repr()})"


async def _aclose(collection: AsyncCollection[Doc]) -> None:
    await collection.__aexit__(None, None, None)


class AstraDBByteStore(AstraDBBase[bytes]):
    """Bytes in a Data API collection (``$binary``), one document per key; see
    `kvstores.astradb`."""

    max_value_size: ClassVar[int | None] = MAX_BYTES_VALUE

    def _value(self, document: dict[str, Any]) -> bytes:
        return bytes(document["v"])


class AstraDBStore(AstraDBBase[Any]):
    """JSON-like values (dict, list, str, int, float, bool, nested) as native documents in a
    Data API collection; see `kvstores.astradb`. A value JSON would not give back as it is
    raises at write time, and nothing of the batch is written."""

    _check_pair_types: ClassVar[bool] = True

    def check_values(self, values: Sized[Any]) -> Sized[Any]:
        check_json_like(values, max_depth=MAX_DEPTH, field_problem=_field_problem)
        compact = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
        for value in values:
            size = len(compact(value))
            floats: list[list[str | int]] = []
            _integral_floats(value, [], floats)
            if floats:  # the document's "f" list counts too
                size += len(compact(floats)) + 5
            if size > MAX_DOCUMENT_CHARS:
                raise InvalidValueError(
                    f"a value of {size} characters as JSON is over the Data API's limit "
                    f"(kvstores.astradb.MAX_DOCUMENT_CHARS, {MAX_DOCUMENT_CHARS})"
                )
        return values

    def _document(self, _id: str, value: Any, expires: int | None) -> dict[str, Any]:
        document = super()._document(_id, value, expires)
        floats: list[list[str | int]] = []
        _integral_floats(value, [], floats)
        if floats:
            document["f"] = floats
        return document

    def _value(self, document: dict[str, Any]) -> Any:
        value = document["v"]
        floats = document.get("f")
        return _restore_floats(value, floats) if floats else value
