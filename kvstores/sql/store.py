"""`SQLByteStore`: construction, the calls as plans run sync or async, and the lifecycle."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool

from kvstores.backend import (
    BackendStore,
    ConfigurationError,
    KVStoreError,
    aiter_in_thread,
    akeyset_pages,
    check_options,
    check_timeout,
    chunked,
    coerce_byte_values,
    keyset_pages,
    mask_url,
    secret_values,
    to_thread,
)
from kvstores.sql.connections import KeptConnection, ThreadConnections, serial_lock
from kvstores.sql.dialect import (
    Dialect,
    Driver,
    SQLErrors,
    engine_kwargs_supported,
    installed,
    parameters_of,
)
from kvstores.sql.schema import Schema
from kvstores.sql.sessions import AsyncEntry, AsyncSessions, Plan, Sessions, Steps, sends
from kvstores.sql.statements import Statement, Statements
from kvstores.sql.tables import HEAD, check_table_name, column_of, columns_of, holds_long
from kvstores.sql.urls import check_url, dialect_class, split_url, sync_url

T = TypeVar("T")

#: How many times a call the server rolled back over a conflict (`Driver.conflict`) is sent
#: again, after a random pause of up to `CONFLICT_PAUSE` seconds.
CONFLICT_RETRIES = 3
CONFLICT_PAUSE = 0.02

_MAX_VALUE = 16 * 1024 * 1024


class _Listing:
    """What one listing learned at its first page: whether its namespace is marked as holding
    expiring rows (`None`: not asked yet). Asked once per listing, not once per page: a row
    another store writes with a ttl after the listing began may or may not be listed, as any
    row written during a listing."""

    __slots__ = ("expiry",)

    def __init__(self) -> None:
        self.expiry: bool | None = None


class SQLByteStore(BackendStore[bytes]):
    """Bytes in one SQL table (SQLite, PostgreSQL, MySQL/MariaDB) via SQLAlchemy 2, sync and async.

    Args:
        engine: a URL (``str`` or `sqlalchemy.engine.URL`), an `Engine` or an `AsyncEngine`.
            ``postgresql://`` uses psycopg 3 and ``mysql://`` / ``mariadb://`` PyMySQL. A
            URL's query may carry ``table``, ``namespace``, ``ttl``, ``timeout`` (the
            arguments win) and the driver's parameters; any other name raises
            `ConfigurationError` (see the module documentation).
        table: the table (default ``kvstores``, or ``table=`` in the URL); a
            ``<table>_meta`` table sits next to it.
        schema: the database schema of both tables (default: the connection's).
        namespace: keys of stores with different namespaces never mix.
        ttl: seconds an entry written by this store lives.
        timeout: seconds to connect, the handshake included (on SQLite: to wait for a
            lock); default 10, at least 2 on PostgreSQL. Applies to engines the store
            builds; statements are not bounded by it.
        sqlite_pragmas: pragmas for SQLite connections the store builds, over the defaults
            ``journal_mode=WAL``, ``synchronous=NORMAL``, ``busy_timeout=<timeout ms>``; a
            value of ``None`` removes a default.
        engine_options: more keyword arguments for ``create_engine`` /
            ``create_async_engine`` when the store builds its engines (``connect_args`` are
            merged).

    See the module documentation for the table layout and the statements.
    """

    backend_name = "sql"
    max_value_size = _MAX_VALUE

    def __init__(
        self,
        engine: str | URL | Engine | AsyncEngine,
        *,
        table: str | None = None,
        schema: str | None = None,
        namespace: str | None = None,
        ttl: float | None = None,
        timeout: float | None = None,
        sqlite_pragmas: Mapping[str, str | int | None] | None = None,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        url: URL | None = None
        if isinstance(engine, (str, URL)):
            # ``namespace``, ``ttl`` and ``timeout`` in the URL, as `kvstores.from_url`
            # reads them (which takes them out first); the arguments win.
            url, in_url = split_url(engine)
            namespace = in_url.get("namespace") if namespace is None else namespace
            ttl = in_url.get("ttl") if ttl is None else ttl
            timeout = in_url.get("timeout") if timeout is None else timeout
        super().__init__(namespace=namespace, ttl=ttl)
        self.timeout = check_timeout(timeout)
        self._ns = self.namespace if self.namespace is not None else ""
        self._value_limit = self.max_value_size
        self._statements: Statements | None = None
        self._schema_lock = threading.Lock()
        self._marked = False  # this store's namespace is marked as holding expiring rows
        self._long_marked = False  # … and as holding long keys (where `marks_in_page`)
        self._kept: KeptConnection | None = None
        settings: dict[str, Any] = {
            "timeout": self.timeout,
            "engine_options": engine_options,
            "sqlite_pragmas": sqlite_pragmas,
        }
        dialect: Dialect | None = None
        given_async: AsyncEngine | None = None

        if isinstance(engine, (Engine, AsyncEngine)):
            self._owns = False
            self.url = engine.url
            if isinstance(engine, AsyncEngine):
                given_async = engine
                own_url = sync_url(engine.url)
                dialect = self._dialect_for(own_url.get_backend_name(), settings)
                self._sync_engine, self._kept = dialect.create_engine(own_url)
                self._owns_sync = True
            else:
                self._sync_engine = engine
                self._owns_sync = False
        elif url is not None:
            if url.query.get("table") is not None:
                url_table = url.query["table"]
                url = url.difference_update_query(["table"])
                if table is None:
                    table = url_table if isinstance(url_table, str) else url_table[-1]
            check_table_name("kvstores" if table is None else table, schema)
            url = check_url(url)
            self._owns = True
            self._owns_sync = True
            self.url = url
            dialect = self._dialect_for(url.get_backend_name(), settings)
            self._sync_engine, self._kept = dialect.create_engine(url)
        else:
            raise TypeError(
                "SQLByteStore takes a URL, an Engine or an AsyncEngine, "
                f"not {type(engine).__name__}"
            )

        table = "kvstores" if table is None else table
        check_table_name(table, schema)
        self.table_name = table
        self.schema = schema
        sync_dialect = self._sync_engine.dialect
        if dialect is None:
            dialect = self._dialect_for(sync_dialect.name, settings)
        self._dialect = dialect
        self._schema = Schema(dialect, table, schema)
        full_url = self.url.render_as_string(hide_password=False)
        # Not SQLAlchemy's hide_password alone: it leaves credentials in the query
        # (libpq's ``sslpassword``) in plain sight.
        self._masked_url = mask_url(full_url)
        connect_args = (engine_options or {}).get("connect_args") or {}
        self._errors = SQLErrors(sync_dialect.name, full_url, table, secret_values(connect_args))
        driver = dialect.driver(sync_dialect.driver, owned=self._owns)
        if driver is None:
            raise ConfigurationError(
                f"SQLByteStore needs the pysqlite, psycopg or pymysql driver, "
                f"not {sync_dialect.driver!r}"
            )
        # One connection shared by every thread (in-memory SQLite): use it one at a time,
        # whichever store on the engine uses it.
        serial = (
            serial_lock(self._sync_engine)
            if isinstance(self._sync_engine.pool, StaticPool)
            else None
        )
        self._threads = (
            ThreadConnections(self._sync_engine)
            if self._owns_sync and dialect.thread_connections and serial is None
            else None
        )
        self._async_driver = self._native_async_driver(given_async)
        self._async: AsyncSessions | None = None
        if self._async_driver is not None:
            self._async = AsyncSessions(
                self._async_driver,
                self._errors,
                given=given_async,
                make=functools.partial(dialect.create_async_engine, self.url),
                quiet_checkin=self._owns and engine_kwargs_supported("skip_autocommit_rollback"),
            )
        self._sessions = Sessions(
            self._sync_engine,
            driver,
            self._errors,
            owns=self._owns_sync,
            kept=self._kept,
            threads=self._threads,
            serial=serial,
            after_fork=self._forget_async_engines,
        )
        self._executor: ThreadPoolExecutor | None = None
        # Guards the store's own worker thread.
        self._state_lock = threading.Lock()

    # Construction

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLByteStore:
        """A store from any SQLAlchemy URL; ``table=`` in the query names the table.

        ``namespace``, ``ttl`` and ``timeout`` in the query work as the arguments do (which
        win); other query parameters go to the driver.

        Raises:
            ConfigurationError: an option or query parameter neither the store nor the
                driver takes (the message lists the known ones), or an unsupported
                dialect or driver.
            ImportError: the driver is missing (the message says what to install).
        """
        check_options("sql", options, parameters_of(cls.__init__) - {"self", "engine"})
        return cls(url, **options)

    @staticmethod
    def _dialect_for(name: str, settings: dict[str, Any]) -> Dialect:
        return dialect_class(name)(name, **settings)

    def _native_async_driver(self, given: AsyncEngine | None) -> Driver | None:
        """The driver of native async calls, or `None` to run the sync calls in threads."""
        if not installed("greenlet"):  # SQLAlchemy's asyncio needs it
            return None
        dialect = self._dialect
        if given is not None:
            name: str | None = given.dialect.driver
            if name not in dialect.native_async_drivers:
                return None  # asyncpg, aiosqlite, …: the sync engine in threads
            return dialect.driver(name, owned=False)
        if not self._owns:
            return None  # a user's sync Engine: threads
        name = dialect.native_async(self.url)
        return None if name is None else dialect.driver(name, owned=True)

    async def _async_entry(self) -> AsyncEntry:
        """The async engine of the running event loop, and the connection kept between its
        calls."""
        assert self._async is not None
        return await self._async.entry()

    @property
    def engine(self) -> Engine:
        """The sync engine (the one given, or made from the URL)."""
        return self._sync_engine

    def server_version(self) -> str | None:
        """The dialect's name and the server's version (SQLite's library version)."""
        dialect = self._sync_engine.dialect
        if not dialect.server_version_info:  # known once the engine has connected
            self._statements or self._ready()
        info = dialect.server_version_info
        return f"{dialect.name} {'.'.join(map(str, info))}" if info else None

    def __repr__(self) -> str:
        table = f"table={self.table_name!r}"
        return f"SQLByteStore({self._masked_url!r}, {table}{self._options_repr()})"

    # Schema

    def create_schema(self) -> None:
        """Create the tables now if they are missing (otherwise done on first use)."""
        self._ready()

    async def acreate_schema(self) -> None:
        """Async `create_schema`."""
        await self._aready()

    def _ready(self) -> Statements:
        statements = self._statements
        if statements is None:
            with self._schema_lock:
                statements = self._statements
                if statements is None:
                    statements = self._schema.create(
                        self._sync_engine, self._errors, self._sessions.serial
                    )
                    self._set_up(statements)
        return statements

    async def _aready(self) -> Statements:
        statements = self._statements
        if statements is not None:
            return statements
        if self._async is None:
            return await self._in_thread(self._ready)
        # A threading lock, polled: an asyncio lock would tie the store to one event loop.
        while not self._schema_lock.acquire(blocking=False):
            await asyncio.sleep(0.005)
        try:
            statements = self._statements
            if statements is None:
                engine, _ = await self._async.entry()
                statements = await self._schema.acreate(engine, self._errors)
                self._set_up(statements)
        finally:
            self._schema_lock.release()
        return statements

    def _set_up(self, statements: Statements) -> None:
        """The tables are set up: their statements serve the calls from now on."""
        if statements.value_limit is not None:  # MySQL: lowered once connected
            self._value_limit = min(self.max_value_size, statements.value_limit)
        self._statements = statements

    # Calls: a plan each (`kvstores.sql.sessions`), run sync or async

    def _run(self, make_plan: Callable[..., Plan[T]], *args: Any) -> T:
        """Run the plan ``make_plan(statements, *args)`` on a connection of the sync engine,
        again (`CONFLICT_RETRIES` times at most) if the server rolled it back over a
        conflict with concurrent calls: every plan is idempotent."""
        retries = CONFLICT_RETRIES
        while True:
            try:
                return self._sessions.run(make_plan(self._statements or self._ready(), *args))
            except KVStoreError as exc:
                if not retries or not self._sessions.driver.conflict(exc.__cause__):
                    raise
            retries -= 1
            time.sleep(random.uniform(0, CONFLICT_PAUSE))

    async def _arun(self, make_plan: Callable[..., Plan[T]], *args: Any) -> T:
        """`_run` natively async, or in a worker thread without an async driver."""
        if self._async is None:
            return await self._in_thread(self._run, make_plan, *args)
        retries = CONFLICT_RETRIES
        while True:
            statements = self._statements or await self._aready()
            try:
                return await self._async.run(make_plan(statements, *args))
            except KVStoreError as exc:
                if not retries or not self._async.driver.conflict(exc.__cause__):
                    raise
            retries -= 1
            await asyncio.sleep(random.uniform(0, CONFLICT_PAUSE))

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Run a sync call in a worker thread: on SQLite always the same one per store, so
        one connection (and its page cache, reset whenever another connection writes)
        serves every async call, as aiosqlite does; elsewhere the default executor."""
        executor = None
        if self._dialect.one_worker_thread:
            with self._state_lock:
                executor = self._executor
                if executor is None:
                    executor = self._executor = ThreadPoolExecutor(
                        1, thread_name_prefix="kvstores-sqlite"
                    )
        call = functools.partial(contextvars.copy_context().run, function, *args)
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    # The hooks

    def check_values(self, values: Collection[Any]) -> Collection[bytes]:
        return coerce_byte_values(values, self._value_limit)

    def _mset(self, items: dict[str, bytes]) -> None:
        self._written(self._run(self._write_plan, items))

    async def _amset(self, items: dict[str, bytes]) -> None:
        self._written(await self._arun(self._write_plan, items))

    def _mget(self, keys: list[str]) -> list[bytes | None]:
        return self._run(self._read_plan, keys)

    async def _amget(self, keys: list[str]) -> list[bytes | None]:
        return await self._arun(self._read_plan, keys)

    def _mdelete(self, keys: list[str]) -> None:
        self._run(self._delete_plan, keys)

    async def _amdelete(self, keys: list[str]) -> None:
        await self._arun(self._delete_plan, keys)

    def _yield_keys(self, prefix: str) -> Iterator[str]:
        # `keyset_pages` is the generator itself (a wrapper generator would cost a resume per
        # key); the first page, not this call, sets up the schema and connects.
        fetch_page = functools.partial(self._run, self._page_plan, prefix, _Listing())
        return keyset_pages(fetch_page, self.page_size)

    def _ayield_keys(self, prefix: str) -> AsyncIterator[str]:
        if self._async is None or self._dialect.async_listing_in_thread:
            # One thread hop per page, on SQLite the store's own worker thread (`_in_thread`).
            listing = functools.partial(self._yield_keys, prefix)
            return aiter_in_thread(listing, self.page_size, self._in_thread)
        fetch_page = functools.partial(self._arun, self._page_plan, prefix, _Listing())
        return akeyset_pages(fetch_page, self.page_size)

    def _count_keys(self, prefix: str) -> int | None:
        return self._run(self._count_plan, prefix)

    def purge_expired(self) -> int:
        """Delete this namespace's expired entries now; returns how many were deleted."""
        return self._run(self._purge_plan)

    async def apurge_expired(self) -> int:
        """Async `purge_expired`."""
        return await self._arun(self._purge_plan)

    # The plans

    def _write_plan(self, statements: Statements, items: dict[str, bytes]) -> Plan[bool]:
        """`mset`: one upsert per chunk, the whole batch in one transaction; returns whether
        some key is long (for `_written`)."""
        if self._value_limit < self.max_value_size:
            # MySQL may lower the limit once connected, after the batch was first checked.
            coerce_byte_values(items.values(), self._value_limit)
        work, long = self._upserts(statements, items)
        return Plan(sends(work, long), transaction=len(work) > 1)

    def _upserts(
        self, statements: Statements, items: dict[str, bytes]
    ) -> tuple[list[Statement], bool]:
        """The statements writing `items` (with the marks they call for), and whether some
        key is long."""
        expires = None if self.ttl is None else time.time() + self.ttl
        keys, values = list(items), list(items.values())
        columns = columns_of(keys)
        long = columns is not keys
        rests = [k[HEAD:] for k in keys] if long else None
        work = [
            statements.upsert(
                self._ns,
                columns[start:stop],
                None if rests is None else rests[start:stop],
                values[start:stop],
                expires,
            )
            for start, stop in statements.upsert_bounds(keys, values, long)
        ]
        if expires is not None and not self._marked:
            mark = statements.expiry_mark(self._ns)
            if mark is not None:
                work.insert(0, mark)
        if long and not self._long_marked:
            mark = statements.long_mark(self._ns)
            if mark is not None:
                work.insert(0, mark)
        return work, long

    def _written(self, long: bool) -> None:
        """After a write: the marks it wrote (if any) are there for good."""
        if self.ttl is not None:
            self._marked = True
        if long:
            self._long_marked = True

    def _read_plan(self, statements: Statements, keys: list[str]) -> Plan[list[bytes | None]]:
        """`mget`: one select per chunk, the rows mapped back to the input order."""
        return Plan(self._read_steps(statements, keys), "rows")

    def _read_steps(self, statements: Statements, keys: list[str]) -> Steps[list[bytes | None]]:
        columns = columns_of(keys)
        now = time.time()
        # A key asked twice is harmless in IN (…) / ANY(…): no need to deduplicate.
        if len(columns) <= statements.key_chunk():  # one statement (most calls)
            found = dict((yield statements.select(self._ns, columns, now)))
            return statements.values_in_order(columns, found)
        found = {}
        for chunk in chunked(columns, statements.key_chunk()):
            found.update((yield statements.select(self._ns, chunk, now)))
        return statements.values_in_order(columns, found)

    def _delete_plan(self, statements: Statements, keys: list[str]) -> Plan[None]:
        chunks = chunked(columns_of(keys), statements.key_chunk())
        work = [statements.delete(self._ns, chunk) for chunk in chunks]
        return Plan(sends(work, None), transaction=len(work) > 1)

    def _must_filter_expired(self, statements: Statements) -> bool | None:
        """Whether listing must filter out expired rows; `None`: ask the namespace's mark."""
        if self.ttl is not None or self._marked or not statements.uses_marks:
            return True
        return None

    def _page_plan(
        self,
        statements: Statements,
        prefix: str,
        listing: _Listing,
        after: str | None,
        limit: int,
    ) -> Plan[list[str]]:
        """A page of keys after `after`."""
        return Plan(self._page_steps(statements, prefix, listing, after, limit), "rows")

    def _page_steps(
        self,
        statements: Statements,
        prefix: str,
        listing: _Listing,
        after: str | None,
        limit: int,
    ) -> Steps[list[str]]:
        expiry = self._must_filter_expired(statements) or listing.expiry
        if expiry is None and not statements.marks_in_page:
            rows = yield statements.mark_lookup(self._ns)
            self._marked = expiry = bool(rows)  # marks are never removed
            listing.expiry = expiry
        column = None if after is None else column_of(after)
        page = functools.partial(statements.page, self._ns, prefix, column, limit, time.time())
        keys, expiring, long = statements.read_page((yield page(expiry=bool(expiry))))
        if expiring and not expiry:  # some rows of the namespace may have expired
            self._marked = expiry = True
            keys, _, long = statements.read_page((yield page(expiry=True)))
        if long and holds_long(keys):  # read again with the rest of the long keys
            keys = statements.whole_keys_of((yield page(expiry=bool(expiry), whole=True)))
        return keys

    def _count_plan(self, statements: Statements, prefix: str) -> Plan[int]:
        """The listing's index range, counted on the server: one statement, no keys sent."""
        return Plan(self._count_steps(statements, prefix), "rows")

    def _count_steps(self, statements: Statements, prefix: str) -> Steps[int]:
        rows = yield statements.page(self._ns, prefix, None, 0, time.time(), count=True)
        return int(rows[0][0])

    def _purge_plan(self, statements: Statements) -> Plan[int]:
        return Plan(self._purge_steps(statements), "rowcount")

    def _purge_steps(self, statements: Statements) -> Steps[int]:
        return int((yield statements.purge(self._ns, time.time())))

    # Lifecycle

    def close(self) -> None:
        """Dispose the engines this store made; an engine it was given stays open."""
        self._stop_executor()
        self._sessions.close()
        if self._async is not None:
            self._async.close()

    async def aclose(self) -> None:
        """Async `close`."""
        if self._async is not None:
            await self._async.aclose()
        self._stop_executor()
        await to_thread(self._sessions.close)

    def _stop_executor(self) -> None:
        with self._state_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def _forget_async_engines(self) -> None:
        """In a forked child: the parent's async engines are not the child's to close."""
        if self._async is not None:
            self._async.forget_all()
