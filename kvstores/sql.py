"""`SQLByteStore`: bytes in one SQL table through SQLAlchemy 2 — SQLite, PostgreSQL, MySQL/MariaDB.

Design
======

**One table, one index.** Every store on a database shares one table (``kvstores`` by
default; ``table=`` picks another) with one index, its primary key::

    namespace   text     NOT NULL   -- "" for namespace=None (real namespaces are non-empty)
    key         text     NOT NULL   -- the key, if it has up to 256 characters (almost all)
    key_rest    text     NOT NULL   -- a longer key's characters after the first 256, else ""
    value       blob     NOT NULL
    expires_at  float    NULL       -- Unix time; NULL: never expires
    PRIMARY KEY (namespace, key)

Keys may be 1,024 characters, 4,096 bytes of UTF-8, but an index entry may not: InnoDB caps
a key at 3,072 bytes and a PostgreSQL B-tree entry at 2,704 (a key of 1,024 random CJK
characters fails there with "index row size exceeds btree maximum"). So a key longer than
256 characters is held in ``key`` as its first 256 characters followed by the 64 hex digits
of the SHA-256 of the whole key (at most 1,088 bytes; with a 256-character namespace, 2,112),
and its characters after the first 256 in ``key_rest``. Such a ``key`` has 320 characters, so
it is never another key's: ``key`` alone tells keys apart, and the primary key is just
``(namespace, key)``. Keys up to 256 characters, the common case, are stored as they are,
so the table reads like a plain key-value table. Every lookup probes the primary key with
``key`` values the client computes, and listing with a prefix is one index range scan:
``key >= prefix AND key < prefix_upper_bound(prefix)`` for a prefix of up to 256 characters
(exact: a long key's ``key`` starts with such a prefix exactly when the key does), the
range of long keys sharing ``prefix[:256]`` plus a range on ``key_rest`` for a longer one.
Version 1 of the layout also had a ``key_hash`` column in the primary key; a store finding
a version 1 table migrates it on first use (see `SQLByteStore`). Keys compare
as code points, never folded: ``COLLATE "C"`` text on PostgreSQL, ``VARBINARY`` (UTF-8
bytes: no collation to configure, no PAD SPACE, so ``"a"`` and ``"a "`` differ) on
MySQL/MariaDB, SQLite's default ``BINARY``. A ``<table>_meta`` table records the schema
version (``schema_version``), from which later versions migrate, and marks namespaces that
hold expiring rows or long keys (see ``yield_keys`` below).

**Statements.** The tables are defined and created with SQLAlchemy Core (``CREATE TABLE IF
NOT EXISTS``, lazily on first use under a lock, once per store, or by `create_schema` /
`acreate_schema`; concurrent creators, threads or processes, are tolerated: PostgreSQL
takes an advisory lock, and a failed attempt is retried). The hot statements are SQL text
built once per store (and per batch size where the text depends on it) and run on the
DBAPI cursor of the engine's connections: at a batch of 100, Core's per-execution work
costs as much as SQLite's. Each is the dialect's native form:

- ``mset``: one upsert per chunk, the whole batch in one transaction. SQLite ``INSERT …
  VALUES (…), (…) ON CONFLICT DO UPDATE`` (chunks sized to the bound-parameter limit the
  connection reports: 32,766 on SQLite >= 3.32); PostgreSQL ``INSERT … SELECT … FROM
  unnest(arrays) ON CONFLICT DO UPDATE`` (one statement text whatever the batch size; keys
  as one ``text[]`` literal and values as a binary ``bytea[]``, each built by one join:
  psycopg's list dumpers loop in Python); MySQL/MariaDB ``INSERT … VALUES … ON DUPLICATE
  KEY UPDATE`` (chunks sized to ``max_allowed_packet``).
- ``mget`` / ``mdelete``: one ``WHERE namespace = ? AND key IN (…)`` (``= ANY(array)`` on
  PostgreSQL) per chunk; ``mget`` selects only the keys asked and maps the rows back to the
  input order, repeats and misses included. PostgreSQL rows come in binary (a value is
  not hex-encoded and decoded).
- ``yield_keys``: keyset pagination (``ORDER BY key LIMIT page`` after the last key seen,
  each page a fresh statement), never selecting ``value``. A page selects only the indexed
  ``key`` column (a page holding a long key's is read again with ``key_rest``), and leaves
  out the expiry check, which reads the table row, while the namespace holds no expiring
  row: a mark in ``<table>_meta``, written in the transaction of a store's first ttl write,
  says it may. Its pages are then index-only scans. SQLite looks the mark up before each
  page. PostgreSQL's page query returns the page as one ``text[]``, which psycopg loads in
  C, with two marks read in the same snapshot: expiring rows (the page is then read again
  with the check) and long keys (written like the other; only then is the page checked
  for long keys' columns). MySQL checks expiry on every page (InnoDB's primary key holds
  the rows) and checks every page for long keys.

On PostgreSQL the store's own connections use generic plans (``plan_cache_mode``) and
psycopg prepares each statement on first use (unless ``prepare_threshold=None``), so no
call pays for planning, and no custom plan made with stale statistics (a young table, a
fast-growing namespace) takes ``namespace = …`` alone as the index condition for a large
batch and scans the whole namespace. A generic plan is made for the table as it is, so
each connection drops its plans (``DISCARD PLANS``) at its 8th, 16th, 32nd, … use: a plan
made while the table was empty does not outlive its growth. Bitmap scans are off on those
connections: every statement reads the primary key in its order, and a plan made before
the table was first analyzed would read a page of keys as a bitmap heap scan and a sort.

**Expiry.** A store with a ``ttl`` writes ``expires_at = now + ttl`` (client clock); a write
without one clears it. Every read filters ``expires_at IS NULL OR expires_at > now``.
Expired rows stay until overwritten or `purge_expired` / `apurge_expired` deletes them (a
scan of the namespace; run it from a periodic job). On SQLite a store's first write with
a ttl also marks its namespace in the meta table, and listing skips the expiry check in
namespaces never marked (there the check reads each table row, not just the index).

**Engines, sync and async.** Every store answers both the sync and the async methods.

- Built from a URL (``sqlite:///path.db``, ``sqlite://`` in memory, ``postgresql://`` ->
  psycopg 3, ``mysql://`` / ``mariadb://`` -> PyMySQL, or an explicit driver), it owns its
  engines and disposes them in `close` / `aclose`. The sync engine is made at once (it
  connects lazily), in autocommit (a single statement needs no BEGIN/COMMIT round trips;
  a batch of several statements gets an explicit transaction). On PostgreSQL the store
  keeps the connection its last call used for its next (still counted against the pool,
  and not kept while the pool is at its limit): a pool checkout and checkin cost a tenth
  of a small call. PostgreSQL (psycopg) and
  MySQL (aiomysql) get a native async engine, made lazily, one per event loop (async
  connections belong to their loop), disposed when that loop shuts down if not before
  (MySQL async calls run PyMySQL in worker threads when aiomysql is missing or the URL
  carries a parameter only PyMySQL takes, such as ``read_timeout`` or ``ssl_ca``). A URL
  naming an async driver (``sqlite+aiosqlite://``, ``postgresql+psycopg_async://``,
  ``mysql+aiomysql://``, ``postgresql+asyncpg://``) needs it installed and is served as
  the same URL with the store's drivers. ``namespace``, ``ttl`` and ``timeout`` in the
  query work as the arguments do (which win), ``table`` names the table, and any other
  parameter must be one the driver takes: libpq's connection keywords, PyMySQL's
  `Connection` parameters (plus SQLAlchemy's ``ssl_ca``, ``ssl_cert``, …), pysqlite's
  ``timeout``, ``isolation_level``, ``detect_types``, ``check_same_thread``,
  ``cached_statements`` and ``uri``, SQLite's URI parameters (``mode``, ``cache``, …, with
  ``uri=true`` and a ``file:`` database: ``sqlite:///file:kv.db?mode=ro&uri=true``) and
  SQLAlchemy's ``plugin``; another name raises `ConfigurationError` naming it, before
  anything connects.
- SQLite from a URL: each thread gets its own connection, kept until the thread ends or
  the store closes (a pool checkout costs as much as a small query), with ``PRAGMA
  journal_mode=WAL``, ``synchronous=NORMAL`` and ``busy_timeout`` (the store's ``timeout``)
  set; ``sqlite_pragmas=`` overrides or adds pragmas (``None`` drops one). Async calls run
  the sync ones on one worker thread per store, as aiosqlite does, so one connection and
  its page cache serve them. ``sqlite://`` (in memory) is a database of the store's own,
  which no other store sees (two stores built from ``sqlite://`` hold separate data): one
  connection shared by the store's threads, used one at a time. Stores share an in-memory
  database through one `Engine` given to each, or a named one
  (``sqlite:///file:name?mode=memory&cache=shared&uri=true``).
- Given an `Engine`, the store uses its pool, and async calls run in worker threads. Given
  an `AsyncEngine` with psycopg or aiomysql, async calls use it natively and sync calls use
  an engine the store makes from the same URL with the matching sync driver (an
  `AsyncEngine`'s own ``sync_engine`` only works inside its event loop); with another
  async driver (asyncpg, aiosqlite, …) both go through that sync engine. A store never
  disposes an engine it was given. For the fewest round trips, make such an engine with
  ``isolation_level="AUTOCOMMIT"`` (and, on PostgreSQL, ``connect_args={"options": "-c
  plan_cache_mode=force_generic_plan"}``).
- A store is safe to share between threads and coroutines, and across ``fork``: in a
  child process its first call lets go of the parent's connections without closing them
  (``dispose(close=False)`` on its own pool, as SQLAlchemy advises) and opens new ones.

**Limits and errors.** Values up to 16 MiB on every dialect (`max_value_size`; BYTEA,
LONGBLOB, BLOB). On MySQL/MariaDB a statement must fit the server's ``max_allowed_packet``
(MySQL 8 defaults to 64 MiB; MariaDB's 16 MiB default must be raised to 64 MiB for 16 MiB
values): the store reads it and lowers its ceiling if 16 MiB values could not fit. A
server that cannot be reached raises `BackendUnavailableError` (named after the dialect,
URL password masked, the driver's error chained) within ``timeout`` seconds (default 10;
at least 2 on PostgreSQL, whose libpq counts whole seconds): ``timeout`` bounds connecting,
the server's greeting and authentication included, so a port that accepts connections
but never answers fails as fast as a closed one (PyMySQL through its read and write
timeouts, aiomysql under `asyncio.wait_for`, libpq through ``connect_timeout``). It does
not bound statements, which may rightly take longer (see `_lift_timeouts`): bound those
on the server (``statement_timeout``, ``max_statement_time``) or, on PyMySQL, with
``read_timeout`` / ``write_timeout`` in the URL. Any other database error raises
`KVStoreError`. The store drives pysqlite, psycopg 3 and PyMySQL (plus aiomysql); other
dialects and drivers, bad table names and other bad settings raise `ConfigurationError` (a
`ValueError`), and a missing driver `ImportError` naming what to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import importlib
import importlib.util
import math
import os
import re
import struct
import threading
import time
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Collection,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from kvstores._base import BackendStore
from kvstores._paging import (
    aiter_in_thread,
    akeyset_pages,
    chunked,
    keyset_pages,
    prefix_upper_bound,
)
from kvstores._registry import require
from kvstores._urls import COMMON_OPTIONS, check_options, mask_secrets
from kvstores._validation import check_timeout, coerce_byte_values
from kvstores.errors import BackendUnavailableError, ConfigurationError, KVStoreError

require("sqlalchemy", "sql")  # the import guard: names the extra when SQLAlchemy is missing

from sqlalchemy import (  # noqa: E402
    Column,
    Double,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    create_engine,
    event,
    false,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import mysql as mysql_dialect  # noqa: E402
from sqlalchemy.dialects import postgresql as postgresql_dialect  # noqa: E402
from sqlalchemy.dialects import sqlite as sqlite_dialect  # noqa: E402
from sqlalchemy.engine import URL, Connection, Engine, make_url  # noqa: E402
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402
from sqlalchemy.pool import QueuePool, StaticPool  # noqa: E402
from sqlalchemy.schema import CreateTable, DropTable  # noqa: E402
from sqlalchemy.types import TypeEngine  # noqa: E402
from sqlalchemy.util import asbool, greenlet_spawn  # noqa: E402

__all__ = ["SCHEMA_VERSION", "SQLByteStore", "sqlite_file_of"]

T = TypeVar("T")

SCHEMA_VERSION = 2
"""The table layout this version writes; recorded in ``<table>_meta`` as ``schema_version``."""

_HEAD = 256  # characters of a key held as they are in the indexed `key` column
_MIB = 1024 * 1024
_MAX_VALUE = 16 * _MIB
_EXPIRING = "expiring:"  # meta row name prefix: the namespace may hold rows with an expiry
_LONG = "long:"  # meta row name prefix: the namespace may hold keys over 256 characters
_COLUMNS = ("namespace", "key", "key_rest", "value", "expires_at")
_SUPPORTED = ("sqlite", "postgresql", "mysql", "mariadb")
# URL schemes without a driver, and the driver the store uses for them.
_DEFAULT_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
# Sync driver -> the async driver with the same SQL and parameters, and back.
_ASYNC_OF = {"psycopg": "psycopg", "pymysql": "aiomysql"}
_SYNC_OF = {
    "psycopg": "psycopg",
    "psycopg_async": "psycopg",
    "asyncpg": "psycopg",
    "aiomysql": "pymysql",
    "asyncmy": "pymysql",
    "aiosqlite": "pysqlite",
}
# Driver -> (module, kvstores extra or None, pip package): what to import, and what a
# missing one's `ImportError` tells to install (``pip install "kvstores[mysql]"``, or
# ``pip install aiosqlite`` for a driver no extra brings).
_MODULE_OF: dict[str, tuple[str, str | None, str]] = {
    "psycopg": ("psycopg", "postgres", "psycopg"),
    "psycopg_async": ("psycopg", "postgres", "psycopg"),
    "pymysql": ("pymysql", "mysql", "pymysql"),
    "aiomysql": ("aiomysql", "mysql", "aiomysql"),
    "aiosqlite": ("aiosqlite", None, "aiosqlite"),
    "asyncpg": ("asyncpg", None, "asyncpg"),
    "asyncmy": ("asyncmy", None, "asyncmy"),
}
_SYNC_DRIVERS = ("pysqlite", "psycopg", "pymysql")
_PYMYSQL_TIMEOUTS = ("read_timeout", "write_timeout")
_SQLITE_LIMIT_VARIABLE_NUMBER = 9  # sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER (Python >= 3.11)
_PRAGMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PRAGMA_VALUE = re.compile(r"^[A-Za-z0-9_.-]+$")

# URL query parameters. Besides the store's own (``table`` and the options every kvstores
# URL takes), a URL may carry what its driver takes; any other name is refused when the
# store is built, so that a typo (``namespce=a``) is an error rather than a parameter the
# driver ignores or refuses only at the first call.
_STORE_QUERY = frozenset({"table", *COMMON_OPTIONS})
# SQLAlchemy's `create_engine` takes engine plugins from any URL (``plugin=name``).
_SQLALCHEMY_QUERY = frozenset({"plugin"})
# What SQLAlchemy's pysqlite dialect reads from the query (`create_connect_args` keeps the
# list in a local variable, so it is copied here).
_PYSQLITE_QUERY = frozenset(
    {"uri", "timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements"}
)
# SQLite's own URI parameters (https://sqlite.org/uri.html), which SQLAlchemy hands to SQLite
# only with ``uri=true``; without it, it drops them with a warning.
_SQLITE_URI_QUERY = frozenset({"vfs", "mode", "cache", "psow", "nolock", "immutable"})
# Query parameters SQLAlchemy's MySQL dialects move into PyMySQL's ``ssl`` dict.
_MYSQL_SSL_QUERY = frozenset(
    {"ssl_ca", "ssl_key", "ssl_cert", "ssl_capath", "ssl_cipher", "ssl_check_hostname"}
)
# PyMySQL `Connection` parameters a URL's text cannot give: objects (SQLAlchemy says so
# for ``conv`` and ``cursorclass``), a flag that would leave the connection unopened, and
# what PyMySQL refuses outright.
_PYMYSQL_NOT_IN_QUERY = frozenset(
    {"self", "conv", "cursorclass", "ssl", "auth_plugin_map", "defer_connect"}
    | {"compress", "named_pipe"}
)


def _parameters(function: Callable[..., Any]) -> set[str]:
    """The names of a function's parameters (`inspect` imported only for this)."""
    import inspect as pyinspect

    return set(pyinspect.signature(function).parameters)


def _driver_query(driver: str) -> frozenset[str] | None:
    """The query parameters a URL of this (sync) driver may carry for the driver, read from
    the installed driver where it can tell; `None`: unknown, so none is refused."""
    if driver == "pysqlite":
        return _PYSQLITE_QUERY | _SQLITE_URI_QUERY
    if driver == "psycopg":
        # libpq's connection keywords, as the libpq psycopg loaded knows them.
        conninfo = importlib.import_module("psycopg").pq.Conninfo
        return frozenset(option.keyword.decode() for option in conninfo.get_defaults())
    if driver == "pymysql":
        connection = importlib.import_module("pymysql").connections.Connection
        return frozenset(_parameters(connection.__init__) - _PYMYSQL_NOT_IN_QUERY) | (
            _MYSQL_SSL_QUERY
        )
    # A driver the store does not drive (a third-party dialect): it alone knows its
    # parameters, so they go through unchecked.
    return None


def _check_query(url: URL) -> None:
    """Refuse query parameters neither the store nor the URL's driver takes (at construction,
    before anything connects)."""
    given = list(url.query)
    if not given:
        return
    driver = url.get_driver_name()
    known = _driver_query(driver)
    if known is None:
        return
    if driver == "pysqlite":
        raw = url.query.get("uri", "false")
        raw = raw if isinstance(raw, str) else raw[-1]
        try:
            uri = asbool(raw)  # as SQLAlchemy reads it
        except ValueError:
            raise ConfigurationError(f"uri={raw!r} in the URL is not true or false") from None
        uri_params = sorted(_SQLITE_URI_QUERY.intersection(given))
        # Without uri=true SQLAlchemy drops SQLite's URI parameters with a mere warning; with
        # it, SQLite reads them only after a "file:" database (else they become part of the
        # file's name: sqlite:///x.db?mode=ro&uri=true opens a new file "x.db?mode=ro").
        if uri_params and not (uri and (url.database or "").startswith("file:")):
            raise ConfigurationError(
                f"SQLite reads {', '.join(uri_params)} only from a URI database: "
                f"sqlite:///file:path.db?{uri_params[0]}=…&uri=true"
            )
    check_options(url.drivername, given, _STORE_QUERY | _SQLALCHEMY_QUERY | known)


def sqlite_file_of(url: str | URL) -> str | None:
    """The file a SQLite URL opens, as SQLAlchemy's pysqlite dialect and SQLite read it
    (``sqlite:///path``, or a ``file:`` URI with ``uri=true``); `None` for an in-memory
    database. The command line uses it to refuse reading a database that does not exist.

    Raises:
        ConfigurationError: not a SQLite URL SQLAlchemy can read.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"not an SQLAlchemy URL: {exc}") from None
    if parsed.get_backend_name() != "sqlite" or parsed.host or parsed.port or parsed.username:
        raise ConfigurationError(f"not a SQLite URL: {parsed.render_as_string()!r}")
    database = parsed.database or ""
    raw = parsed.query.get("uri", "false")
    try:
        uri_database = asbool(raw if isinstance(raw, str) else raw[-1])
    except ValueError:
        raise ConfigurationError(f"uri={raw!r} in the URL is not true or false") from None
    if not uri_database:
        return None if database in ("", ":memory:") else database
    extra = "&".join(
        f"{name}={value}"
        for name, value in sorted(parsed.query.items())
        if name not in _PYSQLITE_QUERY
    )
    if not database.startswith("file:"):
        return None if database in ("", ":memory:") else database
    uri = urlsplit(database + ("?" + extra if extra else ""))
    path = unquote(uri.path)
    if path in ("", ":memory:") or "memory" in parse_qs(uri.query).get("mode", []):
        return None
    return path


# aiomysql's `connect` takes fewer parameters than PyMySQL (no read_timeout, ssl_ca, …).
def _aiomysql_takes(names: Collection[str]) -> bool:
    """Whether aiomysql takes these connection parameters (else the store's async calls run
    PyMySQL in worker threads, so that every parameter holds on both)."""
    connection = importlib.import_module("aiomysql").Connection
    return set(names) <= _parameters(connection.__init__) - {"self", "loop", "conv", "ssl"}


def _column_of(key: str) -> str:
    """The ``key`` column of a key: the key itself up to 256 characters, else its first 256
    characters and the hex SHA-256 of the whole key (320 characters: no other key's)."""
    if len(key) <= _HEAD:
        return key
    return key[:_HEAD] + hashlib.sha256(key.encode()).hexdigest()


def _columns_of(keys: list[str]) -> list[str]:
    """The ``key`` columns of `keys` (`keys` itself when none is long: the common case)."""
    if max(map(len, keys)) <= _HEAD:
        return keys
    return [_column_of(k) for k in keys]


def _holds_long(columns: list[str]) -> bool:
    """Whether some of these ``key`` columns are a long key's (which has 320 characters)."""
    return bool(columns) and max(map(len, columns)) > _HEAD


def _whole_key(column: str, rest: str) -> str:
    """The key whose ``key`` and ``key_rest`` columns these are."""
    return column if len(column) <= _HEAD else column[:_HEAD] + rest


# Table definition


def _text(mysql_bytes: int) -> TypeEngine[Any]:
    """Text compared by code point: COLLATE "C" on PostgreSQL, UTF-8 VARBINARY on MySQL."""
    return (
        Text()
        .with_variant(Text(collation="C"), "postgresql")
        .with_variant(mysql_dialect.VARBINARY(mysql_bytes), "mysql", "mariadb")
    )


def _define_tables(name: str, schema: str | None) -> tuple[Table, Table]:
    metadata = MetaData()
    columns = [
        Column("namespace", _text(4 * 256), nullable=False),
        Column("key", _text(4 * _HEAD + 64), nullable=False),
        Column("key_rest", _text(4 * (1024 - _HEAD)), nullable=False),
        Column(
            "value",
            LargeBinary().with_variant(mysql_dialect.LONGBLOB(), "mysql", "mariadb"),
            nullable=False,
        ),
        Column("expires_at", Double(), nullable=True),
    ]
    primary_key = PrimaryKeyConstraint("namespace", "key")
    table = Table(name, metadata, *columns, primary_key, schema=schema, mysql_engine="InnoDB")
    meta = Table(
        f"{name}_meta",
        metadata,
        Column("name", String(300), primary_key=True),
        Column("value", String(300), nullable=False),
        schema=schema,
        mysql_engine="InnoDB",
    )
    return table, meta


def _is_version_1(connection: Connection, table: Table) -> bool:
    """Whether `table` has the layout of schema version 1 (a ``key_hash`` column)."""
    columns = inspect(connection).get_columns(table.name, schema=table.schema)
    return any(column["name"] == "key_hash" for column in columns)


def _check_table_name(table: str, schema: str | None) -> None:
    if not isinstance(table, str):
        raise TypeError(f"table must be str, not {type(table).__name__}")
    # PostgreSQL silently truncates identifiers over 63 bytes; "<table>_meta" must fit too.
    if not table or len(table.encode()) > 58 or "\x00" in table:
        raise ConfigurationError(f"table must be 1 to 58 bytes without NUL, got {table!r}")
    if schema is not None and (not isinstance(schema, str) or not schema or "\x00" in schema):
        raise ConfigurationError(f"schema must be a non-empty str without NUL, got {schema!r}")


# SQL text, one class per database family


class _Statements:
    """The hot statements of one database family for one table, as DBAPI SQL text.

    Texts that depend on the batch size are cached per size. Parameters of the SQLite and
    MySQL texts are positional or named per row; PostgreSQL's are arrays.
    """

    #: Rows of one upsert, keys of one select or delete.
    max_rows: int = 10_000
    #: Bytes of keys and values in one upsert; `None`: no limit.
    max_bytes: int | None = None
    #: Whether keys travel as UTF-8 bytes (MySQL VARBINARY) rather than `str`.
    binary_keys: ClassVar[bool] = False

    def __init__(self, table: str, meta: str, quote: Callable[[str], str]) -> None:
        self.table = table
        self.meta = meta
        self.c = {name: quote(name) for name in _COLUMNS}
        self._cache: dict[tuple[Any, ...], str] = {}

    def _cached(self, key: tuple[Any, ...], build: Callable[[], str]) -> str:
        sql = self._cache.get(key)
        if sql is None:
            if len(self._cache) >= 128:
                self._cache.clear()
            sql = self._cache[key] = build()
        return sql

    def ph(self, name: str) -> str:
        """A named placeholder."""
        return f"%({name})s"

    def text_param(self, value: str) -> Any:
        return value

    def upsert_bounds(
        self, keys: Sequence[str], values: Sequence[bytes], long: bool
    ) -> list[tuple[int, int]]:
        """``(start, stop)`` of each upsert chunk: by rows and, where a server limits a
        statement's size, by bytes."""
        rows, limit, n = self.upsert_rows(long), self.max_bytes, len(keys)
        if limit is None or 4 * sum(map(len, keys)) + sum(map(len, values)) + 64 * n <= limit:
            return [(start, min(start + rows, n)) for start in range(0, n, rows)]
        bounds, start, size = [], 0, 0
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            cost = 4 * len(key) + len(value) + 64
            if i > start and (i - start >= rows or size + cost > limit):
                bounds.append((start, i))
                start, size = i, 0
            size += cost
        bounds.append((start, n))
        return bounds

    def upsert_rows(self, long: bool) -> int:
        return self.max_rows

    def key_chunk(self) -> int:
        """Keys of one select or delete."""
        return self.max_rows

    # Each family implements these. Keys come as their ``key`` columns (`_column_of`).

    def upsert(
        self,
        ns: str,
        columns: Sequence[str],
        rests: Sequence[str] | None,
        values: Sequence[bytes],
        expires: float | None,
    ) -> tuple[str, Any]:
        """Write the rows; `rests` are the ``key_rest`` columns, `None` when all are empty."""
        raise NotImplementedError

    def select(self, ns: str, columns: Sequence[str], now: float) -> tuple[str, Any]:
        """Rows ``(key, value)`` of the live keys among `columns`."""
        raise NotImplementedError

    def delete(self, ns: str, columns: Sequence[str]) -> tuple[str, Any]:
        raise NotImplementedError

    # Shared by every family: listing, with named placeholders.

    def expiry_filter(self, now: str | None = None) -> str:
        """Rows not expired at the time bound to `now` (a placeholder; default the named one)."""
        expires = self.c["expires_at"]
        return f"({expires} IS NULL OR {expires} > {self.ph('now') if now is None else now})"

    #: Whether a store's first write with a ttl marks its namespace (`expiry_mark`), so that
    #: listing can leave the expiry check, which reads the table row of every key, out of
    #: its page query while the namespace holds no expiring row. SQLite looks the mark up
    #: before each page (`mark_lookup`: in-process, cheap); PostgreSQL's page query returns
    #: the marks with the page (`marks_in_page`). Without marks, every page query checks
    #: expiry.
    uses_marks: ClassVar[bool] = False
    #: Whether the page query returns, with the page and from the same snapshot, whether
    #: the namespace is marked as holding expiring rows and long keys (`read_page`). A mark
    #: is written in the transaction of the first such row, so a page read while there is
    #: none holds no such row. Without, a page is read with expiry checked (or looked up,
    #: `uses_marks`) and every page is checked for long keys' ``key`` columns.
    marks_in_page: ClassVar[bool] = False

    def mark_lookup(self, ns: str) -> tuple[str, dict[str, Any]]:
        """The query returning a row once `ns` may hold rows with an expiry."""
        sql = f"SELECT 1 FROM {self.meta} WHERE name = {self.ph('mark')}"
        return sql, {"mark": self.text_param(_EXPIRING + ns)}

    def page(
        self,
        ns: str,
        prefix: str,
        after: str | None,
        limit: int,
        now: float,
        *,
        expiry: bool = True,
        whole: bool = False,
        count: bool = False,
    ) -> tuple[str, dict[str, Any]]:
        """One page of ``key`` columns after the column `after`, in primary key order
        (`keys_of` reads it); with `count`, the number of rows in the whole range instead
        (one row, one column; `limit` is then not used).

        With `expiry` False, expired rows are listed too. With `whole`, rows are ``(key,
        key_rest)`` (`whole_keys_of` reads them): the query then reads the table, not only
        the index, so a page is read so only when it holds a long key.
        """
        t = self.text_param
        params: dict[str, Any] = {"ns": t(ns), "limit": limit}
        if expiry:
            params["now"] = now
        if len(prefix) > _HEAD:
            # Long keys sharing the prefix's first 256 characters: their `key` columns are
            # those characters and 64 hex digits, all of which sort below "g".
            mode, rest = "long", prefix[_HEAD:]
            params["head"], params["head_hi"] = t(prefix[:_HEAD]), t(prefix[:_HEAD] + "g")
            params["lo"] = t(rest)
            upper = prefix_upper_bound(rest)
        elif prefix:
            mode = "short"
            params["lo"] = t(prefix)
            upper = prefix_upper_bound(prefix)
        else:
            mode, upper = "all", None
        if upper is not None:
            params["hi"] = t(upper)
        if after is not None:
            params["after"] = t(after)
        if self.marks_in_page and not whole:
            params["expiring"], params["long"] = t(_EXPIRING + ns), t(_LONG + ns)
        shape = (mode, upper is not None, after is not None, expiry, whole, count)
        sql = self._cached(("page", *shape), lambda: self._page_sql(*shape))
        return sql, params

    def _page_sql(
        self, mode: str, upper: bool, after: bool, expiry: bool, whole: bool, count: bool
    ) -> str:
        c, ph = self.c, self.ph
        where = [f"{c['namespace']} = {ph('ns')}"]
        if mode == "short":
            where.append(f"{c['key']} >= {ph('lo')}")
            if upper:
                where.append(f"{c['key']} < {ph('hi')}")
        elif mode == "long":
            where.append(f"{c['key']} > {ph('head')}")
            where.append(f"{c['key']} < {ph('head_hi')}")
            where.append(f"{c['key_rest']} >= {ph('lo')}")
            if upper:
                where.append(f"{c['key_rest']} < {ph('hi')}")
        if after:
            where.append(f"{c['key']} > {ph('after')}")
        if expiry:
            where.append(self.expiry_filter())
        if count:
            return f"SELECT count(*) FROM {self.table} WHERE {' AND '.join(where)}"
        selected = f"{c['key']}, {c['key_rest']}" if whole else c["key"]
        return (
            f"SELECT {selected} FROM {self.table} WHERE {' AND '.join(where)} "
            f"ORDER BY {c['key']} LIMIT {ph('limit')}"
        )

    def purge(self, ns: str, now: float) -> tuple[str, dict[str, Any]]:
        c, ph = self.c, self.ph
        sql = (
            f"DELETE FROM {self.table} WHERE {c['namespace']} = {ph('ns')} "
            f"AND {c['expires_at']} <= {ph('now')}"
        )
        return sql, {"ns": self.text_param(ns), "now": now}

    def expiry_mark(self, ns: str) -> tuple[str, Any] | None:
        """The statement marking `ns` as holding expiring rows, run in the transaction of a
        store's first write with a ttl, where `uses_marks`."""
        return None

    def long_mark(self, ns: str) -> tuple[str, Any] | None:
        """The statement marking `ns` as holding long keys, run in the transaction of a
        store's first write of one, where `marks_in_page`."""
        return None

    def keys_of(self, rows: Sequence[tuple[Any, ...]]) -> list[str]:
        return [row[0] for row in rows]

    def read_page(self, rows: Sequence[tuple[Any, ...]]) -> tuple[list[str], bool, bool]:
        """``(key columns, expiring, long)`` of a page: whether the namespace is marked as
        holding expiring rows, and whether the page may hold long keys' columns."""
        return self.keys_of(rows), False, True

    def whole_keys_of(self, rows: Sequence[tuple[Any, ...]]) -> list[str]:
        return [_whole_key(column, rest) for column, rest in rows]


class _SQLiteStatements(_Statements):
    """SQLite: numbered ``?NNN`` parameters, so the namespace and time are bound once."""

    uses_marks = True

    def __init__(self, table: str, meta: str, quote: Callable[[str], str], max_params: int) -> None:
        super().__init__(table, meta, quote)
        self.max_params = max_params
        c = self.c
        self._columns = ", ".join(c[name] for name in _COLUMNS)
        # `key_rest` follows from `key` (the same `key` is the same key), so it is not updated.
        self._on_conflict = (
            f"ON CONFLICT ({c['namespace']}, {c['key']}) DO UPDATE SET "
            f"{c['value']} = excluded.{c['value']}, {c['expires_at']} = excluded.{c['expires_at']}"
        )

    def ph(self, name: str) -> str:
        return f":{name}"

    def upsert_rows(self, long: bool) -> int:
        return (self.max_params - 2) // (3 if long else 2)

    def key_chunk(self) -> int:
        return self.max_params - 2

    def upsert(
        self,
        ns: str,
        columns: Sequence[str],
        rests: Sequence[str] | None,
        values: Sequence[bytes],
        expires: float | None,
    ) -> tuple[str, Any]:
        n, long = len(columns), rests is not None
        sql = self._cached(("upsert", n, long), lambda: self._upsert_sql(n, long))
        rows = (
            zip(columns, values, strict=True)
            if rests is None
            else zip(columns, rests, values, strict=True)
        )
        return sql, (ns, expires, *chain.from_iterable(rows))

    def _upsert_sql(self, n: int, long: bool) -> str:
        if long:
            rows = ",".join(f"(?1,?{3 * i + 3},?{3 * i + 4},?{3 * i + 5},?2)" for i in range(n))
        else:
            rows = ",".join(f"(?1,?{2 * i + 3},'',?{2 * i + 4},?2)" for i in range(n))
        return f"INSERT INTO {self.table} ({self._columns}) VALUES {rows} {self._on_conflict}"

    def select(self, ns: str, columns: Sequence[str], now: float) -> tuple[str, Any]:
        n = len(columns)
        c = self.c
        sql = self._cached(
            ("select", n),
            lambda: (
                f"SELECT {c['key']}, {c['value']} FROM {self.table} WHERE {c['namespace']} = ?1 "
                f"AND {c['key']} IN ({','.join(f'?{i + 3}' for i in range(n))}) "
                f"AND {self.expiry_filter('?2')}"
            ),
        )
        return sql, (ns, now, *columns)

    def delete(self, ns: str, columns: Sequence[str]) -> tuple[str, Any]:
        n = len(columns)
        c = self.c
        sql = self._cached(
            ("delete", n),
            lambda: (
                f"DELETE FROM {self.table} WHERE {c['namespace']} = ?1 AND {c['key']} IN "
                f"({','.join(f'?{i + 2}' for i in range(n))})"
            ),
        )
        return sql, (ns, *columns)

    def expiry_mark(self, ns: str) -> tuple[str, Any] | None:
        sql = f"INSERT OR IGNORE INTO {self.meta} (name, value) VALUES (?, '1')"
        return sql, (_EXPIRING + ns,)


# PostgreSQL arrays, encoded at C speed: psycopg's list dumpers run a Python loop per item
# (about 18 µs for 100 keys, 25 µs for 100 values), a fifth of a small call.

_PG_ARRAY_HEADER = struct.Struct(">iiiii")  # ndim, has nulls, item type, length, lower bound
_PG_LENGTH = struct.Struct(">i").pack
_PG_BYTEA_OID = 17
_PG_BYTEA_ARRAY_OID = 1001


def _pg_text_array(items: Sequence[str]) -> str:
    """The ``text[]`` literal of `items` (none holds a NUL, as no key does): each item
    double-quoted, with ``\\`` and ``"`` escaped."""
    if not items:
        return "{}"
    joined = '","'.join(items)
    # Only the separators' quotes, and no backslash: nothing to escape (most batches).
    if "\\" in joined or joined.count('"') != 2 * len(items) - 2:
        joined = '","'.join([k.replace("\\", "\\\\").replace('"', '\\"') for k in items])
    return '{"' + joined + '"}'


class _PgByteaArray:
    """A ``bytea[]`` in PostgreSQL's binary array format, sent as it is (`_Psycopg`)."""

    __slots__ = ("data",)

    def __init__(self, items: Sequence[bytes]) -> None:
        n = len(items)
        if not n:
            self.data = struct.pack(">iii", 0, 0, _PG_BYTEA_OID)  # no dimensions
            return
        parts: list[bytes] = [b""] * (2 * n + 1)
        parts[0] = _PG_ARRAY_HEADER.pack(1, 0, _PG_BYTEA_OID, n, 1)
        parts[1::2] = map(_PG_LENGTH, map(len, items))
        parts[2::2] = items
        self.data = b"".join(parts)


class _PostgresStatements(_Statements):
    """PostgreSQL: arrays, so one statement text serves every batch size (and is prepared)."""

    max_rows = 10_000
    max_bytes = 64 * _MIB
    uses_marks = True
    marks_in_page = True

    def __init__(self, table: str, meta: str, quote: Callable[[str], str]) -> None:
        super().__init__(table, meta, quote)
        c = self.c
        columns = ", ".join(c[name] for name in _COLUMNS)
        on_conflict = (
            f"ON CONFLICT ({c['namespace']}, {c['key']}) DO UPDATE SET "
            f"{c['value']} = EXCLUDED.{c['value']}, {c['expires_at']} = EXCLUDED.{c['expires_at']}"
        )
        self._upsert = (
            f"INSERT INTO {table} ({columns}) SELECT %s::text, k, '', v, %s::float8 "
            f"FROM unnest(%s::text[], %b::bytea[]) AS u(k, v) {on_conflict}"
        )
        self._upsert_long = (
            f"INSERT INTO {table} ({columns}) SELECT %s::text, k, r, v, %s::float8 "
            f"FROM unnest(%s::text[], %s::text[], %b::bytea[]) AS u(k, r, v) {on_conflict}"
        )
        where = f"WHERE {c['namespace']} = %s AND {c['key']} = ANY(%s::text[])"
        # Rows, not one row of array_agg columns: for 100 hits the server builds a 100 KiB
        # array, which took 400 to 700 µs a call depending on the connection and what it ran
        # before (most likely the server's memory allocation; not pinned down), where rows
        # took 390 to 440 µs on every connection.
        self._select = (
            f"SELECT {c['key']}, {c['value']} FROM {table} {where} AND {self.expiry_filter('%s')}"
        )
        self._delete = f"DELETE FROM {table} {where}"
        self._mark = f"INSERT INTO {meta} (name, value) VALUES (%s, '1') ON CONFLICT DO NOTHING"

    def _page_sql(
        self, mode: str, upper: bool, after: bool, expiry: bool, whole: bool, count: bool
    ) -> str:
        sql = super()._page_sql(mode, upper, after, expiry, whole, count)
        if whole or count:
            return sql
        # A page of `key` columns comes as one text[] rather than a row per key: psycopg
        # loads the array in C, where rows cost a Python tuple each (about half the client's
        # time per page). The marks are two lookups the server makes once per page.
        marked = f"EXISTS (SELECT 1 FROM {self.meta} WHERE name = %({{}})s)"
        return f"SELECT ARRAY({sql}), {marked.format('expiring')}, {marked.format('long')}"

    def read_page(self, rows: Sequence[tuple[Any, ...]]) -> tuple[list[str], bool, bool]:
        keys, expiring, long = rows[0]
        return keys, expiring, long

    def expiry_mark(self, ns: str) -> tuple[str, Any] | None:
        return self._mark, (_EXPIRING + ns,)

    def long_mark(self, ns: str) -> tuple[str, Any] | None:
        return self._mark, (_LONG + ns,)

    def upsert(
        self,
        ns: str,
        columns: Sequence[str],
        rests: Sequence[str] | None,
        values: Sequence[bytes],
        expires: float | None,
    ) -> tuple[str, Any]:
        keys, data = _pg_text_array(columns), _PgByteaArray(values)
        if rests is None:
            return self._upsert, (ns, expires, keys, data)
        return self._upsert_long, (ns, expires, keys, _pg_text_array(rests), data)

    def select(self, ns: str, columns: Sequence[str], now: float) -> tuple[str, Any]:
        return self._select, (ns, _pg_text_array(columns), now)

    def delete(self, ns: str, columns: Sequence[str]) -> tuple[str, Any]:
        return self._delete, (ns, _pg_text_array(columns))


class _MySQLStatements(_Statements):
    """MySQL/MariaDB: keys as UTF-8 VARBINARY; statements sized to ``max_allowed_packet``."""

    binary_keys = True

    def __init__(
        self,
        table: str,
        meta: str,
        quote: Callable[[str], str],
        *,
        packet: int,
        row_alias: bool,
    ) -> None:
        super().__init__(table, meta, quote)
        # PyMySQL escapes bytes in the statement text: at worst two bytes per byte.
        self.max_bytes = max((packet - 256 * 1024) // 2, 64 * 1024)
        c = self.c
        self._columns = ", ".join(c[name] for name in _COLUMNS)
        updated = ("value", "expires_at")  # `key_rest` follows from `key`
        if row_alias:  # MySQL >= 8.0.20 deprecates VALUES() in ON DUPLICATE KEY UPDATE
            self._on_duplicate = "AS new ON DUPLICATE KEY UPDATE " + ", ".join(
                f"{c[n]} = new.{c[n]}" for n in updated
            )
        else:
            self._on_duplicate = "ON DUPLICATE KEY UPDATE " + ", ".join(
                f"{c[n]} = VALUES({c[n]})" for n in updated
            )
        self._names: dict[tuple[int, int], tuple[str, ...]] = {}

    def text_param(self, value: str) -> Any:
        return value.encode()

    def _row_names(self, width: int, n: int) -> tuple[str, ...]:
        names = self._names.get((width, n))
        if names is None:
            if len(self._names) >= 64:
                self._names.clear()
            names = self._names[(width, n)] = tuple(f"p{i}" for i in range(width * n))
        return names

    def upsert(
        self,
        ns: str,
        columns: Sequence[str],
        rests: Sequence[str] | None,
        values: Sequence[bytes],
        expires: float | None,
    ) -> tuple[str, Any]:
        n, long = len(columns), rests is not None
        params: dict[str, Any] = {"ns": ns.encode(), "e": expires}
        sql = self._cached(("upsert", n, long), lambda: self._upsert_sql(n, long))
        keys = map(str.encode, columns)
        if rests is None:
            flat = chain.from_iterable(zip(keys, values, strict=True))
        else:
            flat = chain.from_iterable(zip(keys, map(str.encode, rests), values, strict=True))
        params.update(zip(self._row_names(3 if long else 2, n), flat, strict=True))
        return sql, params

    def _upsert_sql(self, n: int, long: bool) -> str:
        if long:
            rows = ",".join(
                f"(%(ns)s,%(p{3 * i})s,%(p{3 * i + 1})s,%(p{3 * i + 2})s,%(e)s)" for i in range(n)
            )
        else:
            rows = ",".join(f"(%(ns)s,%(p{2 * i})s,X'',%(p{2 * i + 1})s,%(e)s)" for i in range(n))
        return f"INSERT INTO {self.table} ({self._columns}) VALUES {rows} {self._on_duplicate}"

    def select(self, ns: str, columns: Sequence[str], now: float) -> tuple[str, Any]:
        n = len(columns)
        c = self.c
        sql = self._cached(
            ("select", n),
            lambda: (
                f"SELECT {c['key']}, {c['value']} FROM {self.table} WHERE {c['namespace']} = %s "
                f"AND {c['key']} IN ({','.join(['%s'] * n)}) AND {self.expiry_filter('%s')}"
            ),
        )
        return sql, (ns.encode(), *[k.encode() for k in columns], now)

    def delete(self, ns: str, columns: Sequence[str]) -> tuple[str, Any]:
        n = len(columns)
        c = self.c
        sql = self._cached(
            ("delete", n),
            lambda: (
                f"DELETE FROM {self.table} WHERE {c['namespace']} = %s AND {c['key']} IN "
                f"({','.join(['%s'] * n)})"
            ),
        )
        return sql, (ns.encode(), *[k.encode() for k in columns])

    def keys_of(self, rows: Sequence[tuple[Any, ...]]) -> list[str]:
        return [row[0].decode() for row in rows]

    def whole_keys_of(self, rows: Sequence[tuple[Any, ...]]) -> list[str]:
        return [_whole_key(column.decode(), rest.decode()) for column, rest in rows]


# Drivers: transactions and broken connections, per DBAPI


class _Driver:
    """What the store needs to know about one DBAPI beyond SQL: autocommit, broken connections."""

    #: The driver's base exception class.
    error: type[Exception] = Exception
    #: Whether to switch a connection to autocommit while the store uses it (a local
    #: setting on psycopg; a round trip on MySQL drivers, so those are used as they come).
    prefer_autocommit = False

    def autocommit(self, conn: Any) -> bool:
        return False

    def set_autocommit(self, conn: Any, value: bool) -> None:
        raise NotImplementedError

    async def aset_autocommit(self, conn: Any, value: bool) -> None:
        raise NotImplementedError

    def broken(self, conn: Any) -> bool:
        return False

    def cursor(self, conn: Any) -> Any:
        return conn.cursor()

    async def acursor(self, conn: Any) -> Any:
        raise NotImplementedError


class _Pysqlite(_Driver):
    def __init__(self) -> None:
        self.error = importlib.import_module("sqlite3").Error

    def autocommit(self, conn: Any) -> bool:
        return conn.isolation_level is None


class _Psycopg(_Driver):
    prefer_autocommit = True

    def __init__(self) -> None:
        psycopg = importlib.import_module("psycopg")
        self.error = psycopg.Error

        class ByteaArrayDumper(psycopg.adapt.Dumper):  # type: ignore[misc, name-defined]
            format = psycopg.pq.Format.BINARY
            oid = _PG_BYTEA_ARRAY_OID

            def dump(self, obj: _PgByteaArray) -> bytes:
                return obj.data

        self._dumper = ByteaArrayDumper
        self._adapted: weakref.WeakSet[Any] = weakref.WeakSet()

    def _adapt(self, conn: Any) -> None:
        """Teach a connection to send `_PgByteaArray` (once per connection)."""
        if conn not in self._adapted:
            conn.adapters.register_dumper(_PgByteaArray, self._dumper)
            self._adapted.add(conn)

    def autocommit(self, conn: Any) -> bool:
        return bool(conn.autocommit)

    def set_autocommit(self, conn: Any, value: bool) -> None:
        conn.autocommit = value

    async def aset_autocommit(self, conn: Any, value: bool) -> None:
        await conn.set_autocommit(value)

    def broken(self, conn: Any) -> bool:
        return bool(conn.broken or conn.closed)

    # Rows come in binary: a bytea value as it is, rather than as hex text that the server
    # encodes and the client decodes (a 1 KiB value read twice as fast).

    def cursor(self, conn: Any) -> Any:
        self._adapt(conn)
        return _PsycopgCursor(conn.cursor(binary=True), _prepare_now(conn))

    async def acursor(self, conn: Any) -> Any:
        self._adapt(conn)
        return _AsyncPsycopgCursor(conn.cursor(binary=True), _prepare_now(conn))


def _prepare_now(conn: Any) -> bool | None:
    """Prepare the store's statements on first use, unless the user turned preparing off
    (``prepare_threshold=None``, as behind PgBouncer in transaction mode): with generic
    plans, even the first execution then skips the custom plan psycopg's first five
    unprepared runs would get (see `_replan_now`)."""
    return True if conn.prepare_threshold is not None else None


class _PsycopgCursor:
    """A psycopg cursor whose statements are prepared server side from their first run."""

    __slots__ = ("_cursor", "_prepare")

    def __init__(self, cursor: Any, prepare: bool | None) -> None:
        self._cursor = cursor
        self._prepare = prepare

    def execute(self, sql: str, params: Any = None) -> None:
        self._cursor.execute(sql, params, prepare=self._prepare)

    def fetchall(self) -> Any:
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    def close(self) -> None:
        self._cursor.close()


class _AsyncPsycopgCursor(_PsycopgCursor):
    __slots__ = ()

    async def execute(self, sql: str, params: Any = None) -> None:  # type: ignore[override]
        await self._cursor.execute(sql, params, prepare=self._prepare)

    async def fetchall(self) -> Any:
        return await self._cursor.fetchall()

    async def close(self) -> None:  # type: ignore[override]
        await self._cursor.close()


class _MySQL(_Driver):
    def __init__(self) -> None:
        # aiomysql raises PyMySQL's errors too.
        self.error = importlib.import_module("pymysql").err.Error

    def autocommit(self, conn: Any) -> bool:
        return bool(conn.get_autocommit())

    def broken(self, conn: Any) -> bool:
        closed = getattr(conn, "closed", None)  # aiomysql
        if closed is not None:
            return bool(closed)
        return not conn.open  # PyMySQL

    async def acursor(self, conn: Any) -> Any:
        return _AioMySQLCursor(await conn.cursor())


class _AioMySQLCursor:
    """An aiomysql cursor whose parameters the store renders itself.

    aiomysql 0.3 escapes `bytes` with a helper PyMySQL >= 1.2.3 no longer provides
    (aio-libs/aiomysql#1080), so every statement reaches it fully rendered: bytes as hex
    literals, as PyMySQL 1.2 does itself.
    """

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    async def execute(self, sql: str, params: Any = None) -> None:
        if params is not None:
            if isinstance(params, dict):
                sql = sql % {name: _mysql_literal(value) for name, value in params.items()}
            else:
                sql = sql % tuple(map(_mysql_literal, params))
        await self._cursor.execute(sql)

    async def fetchall(self) -> Any:
        return await self._cursor.fetchall()

    async def close(self) -> None:
        await self._cursor.close()


def _mysql_literal(value: Any) -> str:
    """A MySQL literal of the parameter types the store sends: bytes, float, int, None."""
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    if value is None:
        return "NULL"
    if isinstance(value, float):
        text = repr(value)
        return text if "e" in text else text + "e0"  # a DOUBLE, not a DECIMAL
    if isinstance(value, int):
        return str(int(value))
    raise TypeError(f"unexpected MySQL parameter type {type(value).__name__}")


_forks = 0  # how many times this process is a fork's child (see `SQLByteStore._after_fork`)
_PARENTS_CONNECTIONS: list[Any] = []  # held by a forked child, never closed there


def _count_fork() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_count_fork)


class _ThreadConnection:
    """A thread's own SQLite connection, detached from the engine's pool; `close` keeps it."""

    def __init__(self, fairy: Any, generation: int) -> None:
        self.fairy = fairy
        self.dbapi_connection = fairy.dbapi_connection
        self.generation = generation
        self._closed = False

    @property
    def is_valid(self) -> bool:
        return not self._closed and bool(self.fairy.is_valid)

    def close(self) -> None:
        """Done with it for now: it stays this thread's connection."""

    def invalidate(self, exc: BaseException | None = None) -> None:
        self.fairy.invalidate(exc)

    def retire(self) -> None:
        if not self._closed:
            self._closed = True
            # Detached from the pool: the DBAPI connection is ours to close (C code only, so
            # safe from __del__ at any point of any thread).
            with contextlib.suppress(Exception):
                self.dbapi_connection.close()

    def abandon(self) -> None:
        """In a forked child: neither use nor close the parent's connection (closing it,
        even by letting it be collected, may checkpoint the parent's WAL)."""
        self._closed = True
        _PARENTS_CONNECTIONS.append(self.dbapi_connection)

    def __del__(self) -> None:  # its thread ended
        self.retire()


class _ThreadConnections:
    """One connection per thread for a SQLite file: SQLite connections are cheap and
    independent (WAL lets them read and write side by side), and a pool checkout and
    checkin cost as much as a small query. A connection is closed when its thread ends or
    the store closes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()
        self._all: weakref.WeakSet[_ThreadConnection] = weakref.WeakSet()
        self._generation = 0

    def checkout(self) -> _ThreadConnection:
        held: _ThreadConnection | None = getattr(self._local, "held", None)
        if held is None or held.generation != self._generation or not held.is_valid:
            fairy = self._engine.raw_connection()
            fairy.detach()
            held = self._local.held = _ThreadConnection(fairy, self._generation)
            self._all.add(held)
        return held

    def close_all(self) -> None:
        """Close every thread's connection (none may be in use); later calls open new ones."""
        self._generation += 1
        for held in list(self._all):
            held.retire()

    def forget_all(self) -> None:
        """In a forked child: open new connections, leaving the parent's alone."""
        self._generation += 1
        for held in list(self._all):
            held.abandon()
        self._all = weakref.WeakSet()


class _KeptConnection:
    """The pooled connection a store's last call used, kept checked out for its next call.

    A pool checkout and checkin cost about 10 µs of Python (more with cold caches), a tenth
    of a small call to a server. At most one connection is kept, and it stays counted
    against the pool's size: a thread finding none kept checks one out of the pool as
    usual, and when two calls return at once the second connection goes back to the pool.
    None is kept while the pool is at its limit, as a thread may be waiting for one there.
    Only for a pool the store made without pre-ping or recycling, which a kept connection
    would skip.
    """

    @classmethod
    def for_engine(cls, engine: Engine, kwargs: Mapping[str, Any]) -> _KeptConnection | None:
        """One for an engine the store made with `kwargs`, where a kept connection skips
        nothing the pool would do at checkout (pre-ping, recycling)."""
        pool = engine.pool
        if (
            not isinstance(pool, QueuePool)
            or kwargs.get("pool_pre_ping")
            or kwargs.get("pool_recycle", -1) >= 0
        ):
            return None
        max_overflow = kwargs.get("max_overflow", 10)  # create_engine's default
        return cls(engine, pool.size(), max_overflow)

    def __init__(self, engine: Engine, pool_size: int, max_overflow: int) -> None:
        self._lock = threading.Lock()
        self._fairy: Any = None
        self._engine = engine  # its pool, even once `dispose` replaced it
        self._limit = None if max_overflow < 0 else pool_size + max_overflow

    def take(self) -> Any:
        """The kept connection, now the caller's, or `None`."""
        with self._lock:
            fairy, self._fairy = self._fairy, None
        return fairy

    def keep(self, fairy: Any) -> bool:
        """Keep `fairy` (a valid connection) for the next call, unless one is kept already
        or the pool is at its limit."""
        limit = self._limit
        if limit is not None and self._engine.pool.checkedout() >= limit:  # type: ignore[attr-defined]
            return False
        with self._lock:
            if self._fairy is not None:
                return False
            self._fairy = fairy
            return True

    def release(self) -> None:
        """Put the kept connection back in its pool."""
        fairy = self.take()
        if fairy is not None:
            fairy.close()

    async def arelease(self) -> None:
        """Put the kept connection of an async engine back in its pool."""
        fairy = self.take()
        if fairy is not None:
            await greenlet_spawn(fairy.close)

    def forget(self) -> None:
        """Let go of the kept connection without closing it (in a forked child, or when
        only a gone event loop could close it)."""
        fairy = self.take()
        if fairy is not None:
            # Detached, SQLAlchemy neither closes it when it is collected nor at exit
            # (psycopg leaves a connection opened by another process alone).
            with contextlib.suppress(Exception):
                fairy.detach()


_SERIAL_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_SERIAL_LOCKS_LOCK = threading.Lock()


def _serial_lock(engine: Engine) -> threading.RLock:
    """The lock of an engine of one connection (`StaticPool`), shared by its stores."""
    with _SERIAL_LOCKS_LOCK:
        lock = _SERIAL_LOCKS.get(engine)
        if lock is None:
            lock = _SERIAL_LOCKS[engine] = threading.RLock()
        return lock


def _driver_for(driver: str) -> _Driver | None:
    if driver == "pysqlite":
        return _Pysqlite()
    if driver in ("psycopg", "psycopg_async"):
        return _Psycopg()
    if driver in ("pymysql", "aiomysql"):
        return _MySQL()
    return None


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _engine_kwargs_supported(name: str) -> bool:
    from sqlalchemy.engine.default import DefaultDialect

    return name in DefaultDialect.__init__.__code__.co_varnames


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
            url, in_url = self._split_url(engine)
            namespace = in_url.get("namespace") if namespace is None else namespace
            ttl = in_url.get("ttl") if ttl is None else ttl
            timeout = in_url.get("timeout") if timeout is None else timeout
        super().__init__(namespace=namespace, ttl=ttl)
        self.timeout = check_timeout(timeout)
        self._ns = self.namespace if self.namespace is not None else ""
        self._engine_options = dict(engine_options or {})
        self._kept: _KeptConnection | None = None  # set by `_make_sync_engine`
        self._forks = _forks
        self._sqlite_pragmas = dict(sqlite_pragmas or {})
        self._value_limit = self.max_value_size
        self._statements: _Statements | None = None
        self._schema_lock = threading.Lock()
        self._marked = False  # this store's namespace is marked as holding expiring rows
        self._long_marked = False  # … and as holding long keys (where `marks_in_page`)
        self._given_async: AsyncEngine | None = None
        self._async_engines: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop,
            tuple[AsyncEngine, AsyncGenerator[None, None], _KeptConnection | None],
        ] = weakref.WeakKeyDictionary()
        self._async_driver: _Driver | None = None

        if isinstance(engine, (Engine, AsyncEngine)):
            self._owns = False
            if isinstance(engine, AsyncEngine):
                self._given_async = engine
                self.url = engine.url
                self._sync_engine = self._make_sync_engine(self._sync_url(engine.url))
                self._owns_sync = True
            else:
                self.url = engine.url
                self._sync_engine = engine
                self._owns_sync = False
        elif url is not None:
            if url.query.get("table") is not None:
                url_table = url.query["table"]
                url = url.difference_update_query(["table"])
                if table is None:
                    table = url_table if isinstance(url_table, str) else url_table[-1]
            _check_table_name("kvstores" if table is None else table, schema)
            url = self._check_url(url)
            self._owns = True
            self._owns_sync = True
            self.url = url
            self._sync_engine = self._make_sync_engine(url)
        else:
            raise TypeError(
                "SQLByteStore takes a URL, an Engine or an AsyncEngine, "
                f"not {type(engine).__name__}"
            )

        table = "kvstores" if table is None else table
        _check_table_name(table, schema)
        self.table_name = table
        self.schema = schema
        self._table, self._meta = _define_tables(table, schema)
        self._dialect_name = self._sync_engine.dialect.name
        self._masked_url = self.url.render_as_string(hide_password=True)
        self._check_dialect(self._dialect_name)

        sync_driver = _driver_for(self._sync_engine.dialect.driver)
        if sync_driver is None:
            raise ConfigurationError(
                f"SQLByteStore needs the pysqlite, psycopg or pymysql driver, "
                f"not {self._sync_engine.dialect.driver!r}"
            )
        self._driver: _Driver = sync_driver
        # One connection shared by every thread (in-memory SQLite): use it one at a time,
        # whichever store on the engine uses it.
        self._serial = (
            _serial_lock(self._sync_engine)
            if isinstance(self._sync_engine.pool, StaticPool)
            else None
        )
        self._threads = (
            _ThreadConnections(self._sync_engine)
            if self._owns_sync and self._dialect_name == "sqlite" and self._serial is None
            else None
        )
        self._async_driver = self._pick_async_driver()
        self._executor: ThreadPoolExecutor | None = None
        # Connections of an engine the store made use generic plans, renewed now and then.
        self._replans = self._owns and self._dialect_name == "postgresql"
        # Guards the store's own lifecycle state: its worker thread and the fork handover.
        self._state_lock = threading.Lock()
        # An engine the store made, in autocommit with skip_autocommit_rollback, puts a
        # connection back in its pool without I/O, so without a trip through SQLAlchemy's
        # greenlet (unless the pool is full and closes it).
        self._quiet_checkin = self._owns and _engine_kwargs_supported("skip_autocommit_rollback")

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
        check_options("sql", options, _parameters(cls.__init__) - {"self", "engine"})
        return cls(url, **options)

    @staticmethod
    def _split_url(raw: str | URL) -> tuple[URL, dict[str, Any]]:
        """The URL, its driver named, without ``namespace``, ``ttl`` and ``timeout``, and
        those parsed."""
        try:
            url = make_url(raw)
        except (ArgumentError, ValueError) as exc:
            raise ConfigurationError(f"not an SQLAlchemy URL: {exc}") from None
        options: dict[str, Any] = {}
        for name in COMMON_OPTIONS:
            value = url.query.get(name)
            if value is None:
                continue
            value = value if isinstance(value, str) else value[-1]
            if name == "namespace":
                options[name] = value
                continue
            try:
                options[name] = float(value)
            except ValueError:
                raise ConfigurationError(
                    f"{name}={value!r} in the URL is not a number of seconds"
                ) from None
        if options:
            url = url.difference_update_query(options)
        drivername = url.drivername
        backend, _, driver = drivername.partition("+")
        if backend == "postgres":
            backend = "postgresql"
        if not driver and backend in _DEFAULT_DRIVERS:
            drivername = _DEFAULT_DRIVERS[backend]
        elif driver:
            drivername = f"{backend}+{driver}"
        return url.set(drivername=drivername), options

    @staticmethod
    def _check_url(url: URL) -> URL:
        """Check a URL before anything connects: its dialect, its driver (imported, or an
        `ImportError` saying what installs it) and its query. A URL naming an async driver
        (``sqlite+aiosqlite://``, ``postgresql+psycopg_async://``, ``mysql+aiomysql://``, …)
        needs that driver installed, as SQLAlchemy would; the store's sync engine uses the
        matching sync driver, its async calls the async driver it drives for the dialect
        (psycopg, aiomysql; SQLite: a worker thread). Returns the URL of the sync engine."""
        backend, _, driver = url.drivername.partition("+")
        SQLByteStore._check_dialect(backend)
        if driver in _SYNC_OF and driver not in _SYNC_DRIVERS:
            module, extra, package = _MODULE_OF[driver]
            require(module, extra, package=package)
            url = url.set(drivername=f"{backend}+{_SYNC_OF[driver]}")
        try:
            driver = url.get_driver_name()
        except Exception as exc:  # SQLAlchemy knows no such dialect or driver
            raise ConfigurationError(f"not a driver SQLAlchemy knows: {url.drivername!r}") from exc
        if driver not in _SYNC_DRIVERS:
            raise ConfigurationError(
                f"SQLByteStore needs the pysqlite, psycopg or pymysql driver, not {driver!r}"
            )
        if driver in _MODULE_OF:
            module, extra, package = _MODULE_OF[driver]
            require(module, extra, package=package)
        _check_query(url)
        return url

    @staticmethod
    def _check_dialect(name: str) -> None:
        if name not in _SUPPORTED:
            raise ConfigurationError(
                f"SQLByteStore supports SQLite, PostgreSQL and MySQL/MariaDB, not {name!r}"
            )

    @staticmethod
    def _sync_url(url: URL) -> URL:
        backend, _, driver = url.drivername.partition("+")
        sync = _SYNC_OF.get(driver)
        if sync is None:
            raise ConfigurationError(f"no sync driver known for the async driver {driver!r}")
        if backend == "sqlite" and url.database in (None, "", ":memory:"):
            raise ConfigurationError(
                "an in-memory SQLite AsyncEngine cannot be shared with sync calls; "
                "give SQLByteStore a file database, a sync Engine or a sqlite:// URL"
            )
        return url.set(drivername=f"{backend}+{sync}")

    def _connect_args(self, url: URL) -> dict[str, Any]:
        """The driver's connection arguments: the store's ``timeout`` bounds connecting,
        the server's greeting and authentication included, on every driver (a port that
        accepts connections but never answers raises `BackendUnavailableError` within it)."""
        backend, driver = url.get_backend_name(), url.get_driver_name()
        timeout = self.timeout
        if backend == "sqlite":
            return {"check_same_thread": False, "timeout": timeout}
        if backend == "postgresql":
            # libpq (and psycopg, sync and async) bound the whole connection attempt, TLS and
            # authentication included, in whole seconds and at least 2.
            return {"connect_timeout": max(2, math.ceil(timeout))}
        args: dict[str, Any] = {"connect_timeout": timeout}
        if driver == "aiomysql":
            args["async_creator_fn"] = _aiomysql_connector(timeout)
        elif driver == "pymysql":
            args["max_allowed_packet"] = 1024 * _MIB  # the server's limit is the one that counts
            # PyMySQL's connect_timeout bounds opening the socket; its read and write
            # timeouts, the handshake (and are lifted once connected: `_lift_timeouts`).
            given = self._given_connect_args(url)
            args.update((name, timeout) for name in _PYMYSQL_TIMEOUTS if name not in given)
        return args

    def _engine_kwargs(self, url: URL) -> dict[str, Any]:
        backend = url.get_backend_name()
        kwargs: dict[str, Any] = {"pool_timeout": self.timeout}
        if backend in ("postgresql", "mysql", "mariadb"):
            # Single statements need no transaction: one round trip each, not three.
            kwargs["isolation_level"] = "AUTOCOMMIT"
            if _engine_kwargs_supported("skip_autocommit_rollback"):
                kwargs["skip_autocommit_rollback"] = True  # no ROLLBACK round trip per checkin
            if backend != "postgresql":
                kwargs["pool_recycle"] = 3600  # under MySQL's wait_timeout
        options = dict(self._engine_options)
        connect_args = {**self._connect_args(url), **options.pop("connect_args", {})}
        kwargs.update(options)
        kwargs["connect_args"] = connect_args
        return kwargs

    @staticmethod
    def _create(create: Callable[..., T], url: URL, kwargs: dict[str, Any]) -> T:
        """`create_engine` or `create_async_engine`, their refusals of engine options as
        `ConfigurationError`."""
        try:
            return create(url, **kwargs)
        except ArgumentError as exc:
            raise ConfigurationError(f"SQLAlchemy refused the engine: {exc}") from exc
        except TypeError as exc:
            if "Invalid argument" not in str(exc):  # SQLAlchemy's unknown engine options
                raise
            raise ConfigurationError(f"engine_options: {exc}") from exc

    def _given_connect_args(self, url: URL) -> set[str]:
        """The connection arguments the user gave: in the URL or in ``connect_args``."""
        return {*url.query, *self._engine_options.get("connect_args", {})}

    def _on_connect(self, engine: Engine, url: URL) -> None:
        backend, driver = url.get_backend_name(), url.get_driver_name()
        if backend == "postgresql":
            # SET on connect rather than a startup option, which PgBouncer refuses.
            event.listen(engine, "connect", _prefer_generic_plans)
        if driver == "pymysql":
            given = self._given_connect_args(url)
            lifted = [name for name in _PYMYSQL_TIMEOUTS if name not in given]
            if lifted:
                event.listen(engine, "connect", _lift_timeouts(lifted))

    def _make_sync_engine(self, url: URL) -> Engine:
        backend, driver = url.get_backend_name(), url.get_driver_name()
        self._check_dialect(backend)
        if driver in _MODULE_OF:
            module, extra, package = _MODULE_OF[driver]
            require(module, extra, package=package)
        kwargs = self._engine_kwargs(url)
        memory = backend == "sqlite" and (
            url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
        )
        if memory:
            kwargs.setdefault("poolclass", StaticPool)
            kwargs.pop("pool_timeout")  # one connection, never waited for
        engine = self._create(create_engine, url, kwargs)
        self._on_connect(engine, url)
        if backend != "sqlite":  # SQLite: `_ThreadConnections`
            self._kept = _KeptConnection.for_engine(engine, kwargs)
        if backend == "sqlite":
            pragmas: dict[str, str | int | None] = {
                "busy_timeout": int(self.timeout * 1000),
                "journal_mode": "WAL",
                "synchronous": "NORMAL",
            }
            pragmas.update(self._sqlite_pragmas)
            event.listen(engine, "connect", _pragma_setter(pragmas))
        return engine

    def _pick_async_driver(self) -> _Driver | None:
        """The driver of native async calls, or `None` to run the sync engine in threads."""
        if not _installed("greenlet"):  # SQLAlchemy's asyncio needs it
            return None
        if self._given_async is not None:
            driver = self._given_async.dialect.driver
            return _driver_for(driver) if driver in ("psycopg_async", "aiomysql") else None
        if not self._owns:
            return None  # a user's sync Engine: threads
        async_driver = _ASYNC_OF.get(self.url.get_driver_name())
        if async_driver is None:
            return None
        if not _installed(async_driver):
            return None  # no aiomysql: PyMySQL in worker threads
        if async_driver == "aiomysql" and not _aiomysql_takes(self._given_connect_args(self.url)):
            return None  # PyMySQL in worker threads, which takes them all
        return _driver_for(async_driver)

    async def _async_engine(self) -> AsyncEngine:
        """The async engine of the running event loop (async connections belong to one loop)."""
        return (await self._async_entry())[0]

    async def _async_entry(self) -> tuple[AsyncEngine, _KeptConnection | None]:
        """`_async_engine` and the connection kept between its calls."""
        if self._given_async is not None:
            return self._given_async, None
        loop = asyncio.get_running_loop()
        entry = self._async_engines.get(loop)
        if entry is None:
            from sqlalchemy.ext.asyncio import create_async_engine

            backend, driver = self.url.get_backend_name(), self.url.get_driver_name()
            url = self.url.set(drivername=f"{backend}+{_ASYNC_OF[driver]}")
            kwargs = self._engine_kwargs(url)
            engine = self._create(create_async_engine, url, kwargs)
            self._on_connect(engine.sync_engine, url)
            kept = _KeptConnection.for_engine(engine.sync_engine, kwargs)
            guard = _dispose_at_loop_shutdown(engine, kept)
            await guard.asend(None)
            entry = self._async_engines[loop] = (engine, guard, kept)
        return entry[0], entry[2]

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

    # Errors

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        reason = getattr(exc, "orig", None) or exc
        return BackendUnavailableError(
            self._dialect_name, self.url.render_as_string(hide_password=False), reason
        )

    def _failed(self, exc: BaseException) -> KVStoreError:
        detail = mask_secrets(str(exc), self.url.render_as_string(hide_password=False))
        return KVStoreError(f"{self._dialect_name} error on table {self.table_name!r}: {detail}")

    # Schema

    def create_schema(self) -> None:
        """Create the tables now if they are missing (otherwise done on first use)."""
        self._ready()

    async def acreate_schema(self) -> None:
        """Async `create_schema`."""
        await self._aready()

    def _ready(self) -> _Statements:
        statements = self._statements
        if statements is None:
            with self._schema_lock:
                statements = self._statements
                if statements is None:
                    statements = self._statements = self._setup_sync()
        return statements

    async def _aready(self) -> _Statements:
        statements = self._statements
        if statements is not None:
            return statements
        if self._async_driver is None:
            return await self._in_thread(self._ready)
        # A threading lock, polled: an asyncio lock would tie the store to one event loop.
        while not self._schema_lock.acquire(blocking=False):
            await asyncio.sleep(0.005)
        try:
            statements = self._statements
            if statements is None:
                statements = self._statements = await self._setup_async()
        finally:
            self._schema_lock.release()
        return statements

    def _setup_sync(self) -> _Statements:
        for attempt in range(4):
            with self._serial or contextlib.nullcontext():
                try:
                    connection = self._sync_engine.connect()
                    if self._dialect_name == "postgresql":  # the advisory lock needs a transaction
                        connection = connection.execution_options(isolation_level="READ COMMITTED")
                except SQLAlchemyError as exc:
                    raise self._unavailable(exc) from exc
                try:
                    with connection.begin():
                        return self._setup(connection)
                except DBAPIError as exc:
                    if exc.connection_invalidated:
                        raise self._unavailable(exc) from exc
                    if attempt == 3:
                        raise self._failed(exc) from exc
                finally:
                    connection.close()
            time.sleep(0.05 * (attempt + 1))  # another process is creating the tables
        raise AssertionError("unreachable")

    async def _setup_async(self) -> _Statements:
        engine = await self._async_engine()
        for attempt in range(4):
            try:
                connection = await engine.connect()
                if self._dialect_name == "postgresql":
                    await connection.execution_options(isolation_level="READ COMMITTED")
            except SQLAlchemyError as exc:
                raise self._unavailable(exc) from exc
            try:
                async with connection.begin():
                    return await connection.run_sync(self._setup)
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    raise self._unavailable(exc) from exc
                if attempt == 3:
                    raise self._failed(exc) from exc
            finally:
                await connection.close()
            await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _setup(self, connection: Connection) -> _Statements:
        """Create the tables if missing, check the schema version, build the statements."""
        dialect = connection.dialect
        name = dialect.name
        table, meta = self._table, self._meta
        if name == "postgresql":  # concurrent CREATE TABLE IF NOT EXISTS can fail on PostgreSQL
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                {"name": f"kvstores:{table.fullname}"},
            )
        connection.execute(CreateTable(table, if_not_exists=True))
        connection.execute(CreateTable(meta, if_not_exists=True))
        version = connection.execute(
            select(meta.c.value).where(meta.c.name == "schema_version")
        ).scalar()
        if version in ("1", None) and _is_version_1(connection, table):
            version = self._migrate_from_version_1(connection)
        if version is None:
            row = {"name": "schema_version", "value": str(SCHEMA_VERSION)}
            if name == "postgresql":
                connection.execute(
                    postgresql_dialect.insert(meta).values(row).on_conflict_do_nothing()
                )
            elif name == "sqlite":
                connection.execute(sqlite_dialect.insert(meta).values(row).on_conflict_do_nothing())
            else:
                connection.execute(mysql_dialect.insert(meta).values(row).prefix_with("IGNORE"))
            version = str(SCHEMA_VERSION)
        if not version.isdigit() or int(version) > SCHEMA_VERSION:
            raise KVStoreError(
                f"table {table.fullname!r} has schema version {version}; this kvstores "
                f"knows up to {SCHEMA_VERSION}: upgrade kvstores"
            )
        try:  # a table of that name made by something else fails here, not on first write
            connection.execute(select(*table.c).where(false()))
        except DBAPIError as exc:
            raise KVStoreError(
                f"table {table.fullname!r} exists but is not a kvstores table: {exc.orig}"
            ) from exc
        return self._build_statements(connection)

    def _migrate_from_version_1(self, connection: Connection) -> str | None:
        """Rewrite a version 1 table (primary key ``(namespace, key, key_hash)``) in the
        version 2 layout, under the lock of the tables' creation, and record version 2.

        The rows are copied by one ``INSERT … SELECT`` into ``<table>_mig2`` (a long key's
        ``key`` becomes its head and its hash in hex), which then replaces the table; on
        PostgreSQL, namespaces holding expiring rows or long keys are marked. On
        PostgreSQL and SQLite this is one transaction. MySQL commits each DDL statement, so
        there the tables are swapped by one atomic ``RENAME TABLE`` (the old one becomes
        ``<table>_mig1``, then dropped) and a named lock keeps other stores out meanwhile.
        Returns the version recorded now (`None`: none yet).
        """
        name = connection.dialect.name
        table, meta = self._table, self._meta
        preparer = connection.dialect.identifier_preparer
        quoted = preparer.format_table(table)
        lock = "kvstores:" + hashlib.sha1(table.fullname.encode()).hexdigest()
        if name == "sqlite":
            if not connection.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
                connection.exec_driver_sql("BEGIN IMMEDIATE")  # other writers wait here
        elif name != "postgresql":  # PostgreSQL holds the advisory lock of `_setup` already
            got = connection.execute(
                text("SELECT GET_LOCK(:name, :timeout)"), {"name": lock, "timeout": 60}
            ).scalar()
            if got != 1:
                raise KVStoreError(f"table {table.fullname!r}: no lock to migrate it in 60 s")
        try:
            if _is_version_1(connection, table):  # not migrated meanwhile
                new = _define_tables(f"{table.name}_mig2", table.schema)[0]
                if name not in ("postgresql", "sqlite"):  # what a MySQL run cut short left
                    connection.execute(DropTable(new, if_exists=True))
                connection.execute(CreateTable(new))
                c = {column: preparer.quote(column) for column in (*_COLUMNS, "key_hash")}
                key, key_hash = c["key"], c["key_hash"]
                if name == "postgresql":
                    column = f"{key} || encode({key_hash}, 'hex')"
                elif name == "sqlite":
                    column = f"{key} || lower(hex({key_hash}))"
                else:
                    column = f"CONCAT({key}, LOWER(HEX({key_hash})))"
                columns = ", ".join(c[n] for n in _COLUMNS)
                connection.exec_driver_sql(
                    f"INSERT INTO {preparer.format_table(new)} ({columns}) "
                    f"SELECT {c['namespace']}, CASE WHEN LENGTH({key_hash}) = 0 THEN {key} "
                    f"ELSE {column} END, {c['key_rest']}, {c['value']}, {c['expires_at']} "
                    f"FROM {quoted}"
                )
                if name in ("postgresql", "sqlite"):
                    connection.exec_driver_sql(f"DROP TABLE {quoted}")
                    connection.exec_driver_sql(
                        f"ALTER TABLE {preparer.format_table(new)} "
                        f"RENAME TO {preparer.quote(table.name)}"
                    )
                else:
                    old = _define_tables(f"{table.name}_mig1", table.schema)[0]
                    connection.exec_driver_sql(
                        f"RENAME TABLE {quoted} TO {preparer.format_table(old)}, "
                        f"{preparer.format_table(new)} TO {quoted}"
                    )
                    connection.execute(DropTable(old))
                if name == "postgresql":
                    # Version 1 wrote no marks there, which listing now relies on.
                    marks = (
                        (_EXPIRING, f"{c['expires_at']} IS NOT NULL"),
                        (_LONG, f"length({key}) > {_HEAD}"),
                    )
                    for prefix, condition in marks:
                        connection.exec_driver_sql(
                            f"INSERT INTO {preparer.format_table(meta)} (name, value) "
                            f"SELECT DISTINCT %(prefix)s || {c['namespace']}, '1' FROM {quoted} "
                            f"WHERE {condition} ON CONFLICT DO NOTHING",
                            {"prefix": prefix},
                        )
                    # The primary key's index is named after the table.
                    constraint = connection.execute(
                        text(
                            "SELECT conname FROM pg_constraint "
                            "WHERE conrelid = CAST(:t AS regclass) AND contype = 'p'"
                        ),
                        {"t": quoted},
                    ).scalar_one()
                    connection.exec_driver_sql(
                        f"ALTER TABLE {quoted} RENAME CONSTRAINT {preparer.quote(constraint)} "
                        f"TO {preparer.quote(table.name + '_pkey')}"
                    )
            recorded = connection.execute(
                update(meta)
                .where(meta.c.name == "schema_version")
                .values(value=str(SCHEMA_VERSION))
            )
            return str(SCHEMA_VERSION) if recorded.rowcount else None
        finally:
            if name not in ("postgresql", "sqlite"):
                connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": lock})

    def _build_statements(self, connection: Connection) -> _Statements:
        dialect = connection.dialect
        preparer = dialect.identifier_preparer
        table = preparer.format_table(self._table)
        meta = preparer.format_table(self._meta)
        if dialect.name == "sqlite":
            raw = connection.connection.driver_connection
            getlimit = getattr(raw, "getlimit", None)
            if getlimit is not None:  # capped: 32,766 already makes statements of 0.5 MB
                max_params = min(int(getlimit(_SQLITE_LIMIT_VARIABLE_NUMBER)), 32766)
            else:  # Python < 3.11: the compile-time default of the SQLite version
                version = dialect.loaded_dbapi.sqlite_version_info
                max_params = 32766 if version >= (3, 32, 0) else 999
            return _SQLiteStatements(table, meta, preparer.quote, max_params)
        if dialect.name == "postgresql":
            return _PostgresStatements(table, meta, preparer.quote)
        packet = int(connection.exec_driver_sql("SELECT @@max_allowed_packet").scalar() or 0)
        client = getattr(connection.connection.driver_connection, "max_allowed_packet", None)
        if client:
            packet = min(packet, int(client))
        version = dialect.server_version_info or ()
        is_mariadb = bool(getattr(dialect, "is_mariadb", False))
        statements = _MySQLStatements(
            table,
            meta,
            preparer.quote,
            packet=packet,
            row_alias=not is_mariadb and tuple(version) >= (8, 0, 20),
        )
        # The largest value one statement can carry, with room for its key and the SQL.
        self._value_limit = min(self.max_value_size, statements.max_bytes - 8192)  # type: ignore[operator]
        return statements

    # Connections

    @contextlib.contextmanager
    def _session(self, transaction: bool = False) -> Iterator[Any]:
        """A DBAPI cursor on a pooled connection; with `transaction`, one commit for everything.

        Driver errors come out as `BackendUnavailableError` (connection lost) or `KVStoreError`.
        """
        if self._forks != _forks:
            self._after_fork()
        serial = self._serial
        if serial is not None:
            serial.acquire()
        try:
            kept = self._kept
            fairy: Any = None if kept is None else kept.take()
            if fairy is None:
                try:
                    threads = self._threads
                    fairy = (
                        self._sync_engine.raw_connection()
                        if threads is None
                        else threads.checkout()
                    )
                except SQLAlchemyError as exc:
                    raise self._unavailable(exc) from exc
            driver = self._driver
            conn: Any = fairy.dbapi_connection
            restore = False
            try:
                if driver.prefer_autocommit and not driver.autocommit(conn):
                    driver.set_autocommit(conn, True)
                    restore = True
                auto = driver.autocommit(conn)
                explicit = transaction and auto
                if self._replans and _replan_now(fairy.info):
                    conn.execute("DISCARD PLANS")
                cursor = driver.cursor(conn)
                try:
                    if explicit:
                        cursor.execute("BEGIN")
                    yield cursor
                    if explicit:
                        cursor.execute("COMMIT")
                    elif not auto:
                        conn.commit()
                finally:
                    try:  # noqa: SIM105 - cheaper than contextlib.suppress on the hot path
                        cursor.close()
                    except Exception:  # noqa: BLE001 - a failed close must not mask the outcome
                        pass
            except BaseException as exc:
                self._abandon(fairy, conn, exc)
                if isinstance(exc, driver.error):
                    if driver.broken(conn):
                        raise self._unavailable(exc) from exc
                    raise self._failed(exc) from exc
                raise
            finally:
                if restore and fairy.is_valid:
                    with contextlib.suppress(Exception):
                        driver.set_autocommit(conn, False)
                if kept is None or not fairy.is_valid or not kept.keep(fairy):
                    fairy.close()
        finally:
            if serial is not None:
                serial.release()

    def _after_fork(self) -> None:
        """First call in a forked child: leave the parent's connections alone (using one
        would mix two processes' statements on one socket, and closing one would end the
        parent's session) and open new ones, as SQLAlchemy advises for a pool."""
        with self._state_lock:
            if self._forks == _forks:
                return
            self._forks = _forks
            if self._kept is not None:
                self._kept.forget()
            if self._threads is not None:
                self._threads.forget_all()
            if self._owns_sync:
                self._sync_engine.dispose(close=False)

    def _abandon(self, fairy: Any, conn: Any, exc: BaseException) -> None:
        """After a failure: roll back, or drop the connection if that fails or it is broken."""
        if not isinstance(exc, Exception) or self._driver.broken(conn):
            fairy.invalidate(exc if isinstance(exc, Exception) else None)
            return
        try:
            conn.rollback()
        except Exception:  # noqa: BLE001 - the connection is unusable; drop it
            fairy.invalidate()

    @contextlib.asynccontextmanager
    async def _asession(self, transaction: bool = False) -> AsyncIterator[Any]:
        """The async twin of `_session`, on a pooled connection of the native async engine."""
        driver = self._async_driver
        assert driver is not None
        engine, kept = await self._async_entry()
        fairy: Any = None if kept is None else kept.take()
        if fairy is None:
            try:
                fairy = await engine.raw_connection()
            except SQLAlchemyError as exc:
                raise self._unavailable(exc) from exc
        conn: Any = fairy.driver_connection
        restore = False
        try:
            if driver.prefer_autocommit and not driver.autocommit(conn):
                await driver.aset_autocommit(conn, True)
                restore = True
            auto = driver.autocommit(conn)
            explicit = transaction and auto
            if self._replans and _replan_now(fairy.info):
                await conn.execute("DISCARD PLANS")
            cursor = await driver.acursor(conn)
            try:
                if explicit:
                    await cursor.execute("BEGIN")
                yield cursor
                if explicit:
                    await cursor.execute("COMMIT")
                elif not auto:
                    await conn.commit()
            finally:
                with contextlib.suppress(Exception):
                    await cursor.close()
        except BaseException as exc:
            await self._aabandon(fairy, driver, conn, exc)
            if isinstance(exc, driver.error):
                if driver.broken(conn):
                    raise self._unavailable(exc) from exc
                raise self._failed(exc) from exc
            raise
        finally:
            if restore and fairy.is_valid:
                with contextlib.suppress(Exception):
                    await driver.aset_autocommit(conn, False)
            pool = engine.sync_engine.pool
            if kept is not None and fairy.is_valid and kept.keep(fairy):
                pass  # kept, checked out, for the loop's next call
            elif (
                self._quiet_checkin
                and fairy.is_valid
                and isinstance(pool, QueuePool)
                and pool.checkedin() < pool.size()
            ):
                fairy.close()  # back into the pool: no I/O
            else:  # a ROLLBACK or a close on checkin awaits: run it where SQLAlchemy can
                await greenlet_spawn(fairy.close)

    @staticmethod
    async def _aabandon(fairy: Any, driver: _Driver, conn: Any, exc: BaseException) -> None:
        if not isinstance(exc, Exception) or driver.broken(conn):
            # Cancelled mid-statement: the connection's state is unknown, so it goes.
            with contextlib.suppress(Exception):
                await greenlet_spawn(fairy.invalidate, exc if isinstance(exc, Exception) else None)
            return
        try:
            await conn.rollback()
        except Exception:  # noqa: BLE001 - the connection is unusable; drop it
            with contextlib.suppress(Exception):
                await greenlet_spawn(fairy.invalidate)

    # The hooks

    def check_values(self, values: Collection[Any]) -> Collection[bytes]:
        return coerce_byte_values(values, self._value_limit)

    def _check_value_limit(self, items: dict[str, bytes]) -> None:
        # MySQL may lower the limit once connected, after the batch was first checked.
        if self._value_limit < self.max_value_size and items:
            coerce_byte_values(items.values(), self._value_limit)

    def _upserts(
        self, statements: _Statements, items: dict[str, bytes]
    ) -> tuple[list[tuple[str, Any]], bool]:
        """The statements writing `items` (with the marks they call for), and whether some
        key is long."""
        expires = None if self.ttl is None else time.time() + self.ttl
        keys, values = list(items), list(items.values())
        columns = _columns_of(keys)
        long = columns is not keys
        rests = [k[_HEAD:] for k in keys] if long else None
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

    def _mset(self, items: dict[str, bytes]) -> None:
        statements = self._statements or self._ready()
        self._check_value_limit(items)
        work, long = self._upserts(statements, items)
        with self._session(transaction=len(work) > 1) as cursor:
            for sql, params in work:
                cursor.execute(sql, params)
        self._written(long)

    async def _amset(self, items: dict[str, bytes]) -> None:
        if self._async_driver is None:
            await self._in_thread(self._mset, items)
            return
        statements = self._statements or await self._aready()
        self._check_value_limit(items)
        work, long = self._upserts(statements, items)
        async with self._asession(transaction=len(work) > 1) as cursor:
            for sql, params in work:
                await cursor.execute(sql, params)
        self._written(long)

    def _selects(self, statements: _Statements, columns: list[str]) -> list[tuple[str, Any]]:
        # A key asked twice is harmless in IN (…) / ANY(…): no need to deduplicate.
        now = time.time()
        chunks = chunked(columns, statements.key_chunk())
        return [statements.select(self._ns, chunk, now) for chunk in chunks]

    @staticmethod
    def _values_in_order(
        statements: _Statements, columns: list[str], found: dict[Any, bytes]
    ) -> list[bytes | None]:
        if not found:
            return [None] * len(columns)
        if statements.binary_keys:
            return [found.get(k.encode()) for k in columns]
        return list(map(found.get, columns))

    def _mget(self, keys: list[str]) -> list[bytes | None]:
        statements = self._statements or self._ready()
        columns = _columns_of(keys)
        work = self._selects(statements, columns)
        found: dict[Any, bytes] = {}
        with self._session() as cursor:
            for sql, params in work:
                cursor.execute(sql, params)
                found.update(cursor.fetchall())
        return self._values_in_order(statements, columns, found)

    async def _amget(self, keys: list[str]) -> list[bytes | None]:
        if self._async_driver is None:
            return await self._in_thread(self._mget, keys)
        statements = self._statements or await self._aready()
        columns = _columns_of(keys)
        work = self._selects(statements, columns)
        found: dict[Any, bytes] = {}
        async with self._asession() as cursor:
            for sql, params in work:
                await cursor.execute(sql, params)
                found.update(await cursor.fetchall())
        return self._values_in_order(statements, columns, found)

    def _deletes(self, statements: _Statements, keys: list[str]) -> list[tuple[str, Any]]:
        chunks = chunked(_columns_of(keys), statements.key_chunk())
        return [statements.delete(self._ns, chunk) for chunk in chunks]

    def _mdelete(self, keys: list[str]) -> None:
        statements = self._statements or self._ready()
        work = self._deletes(statements, keys)
        with self._session(transaction=len(work) > 1) as cursor:
            for sql, params in work:
                cursor.execute(sql, params)

    async def _amdelete(self, keys: list[str]) -> None:
        if self._async_driver is None:
            await self._in_thread(self._mdelete, keys)
            return
        statements = self._statements or await self._aready()
        work = self._deletes(statements, keys)
        async with self._asession(transaction=len(work) > 1) as cursor:
            for sql, params in work:
                await cursor.execute(sql, params)

    def _must_filter_expired(self, statements: _Statements) -> bool | None:
        """Whether listing must filter out expired rows; `None`: ask the namespace's mark."""
        if self.ttl is not None or self._marked or not statements.uses_marks:
            return True
        return None

    def _page_steps(
        self, statements: _Statements, prefix: str, after: str | None, limit: int
    ) -> Generator[tuple[str, Any], Sequence[Any], list[str]]:
        """The statements reading one page of keys after `after`, as a generator: it yields
        each statement, is sent its rows, and returns the page (`_yield_keys` and
        `_ayield_keys` run it, sync or async)."""
        expiry = self._must_filter_expired(statements)
        if expiry is None and not statements.marks_in_page:
            rows = yield statements.mark_lookup(self._ns)
            self._marked = expiry = bool(rows)  # marks are never removed
        column = None if after is None else _column_of(after)
        page = functools.partial(statements.page, self._ns, prefix, column, limit, time.time())
        keys, expiring, long = statements.read_page((yield page(expiry=bool(expiry))))
        if expiring and not expiry:  # some rows of the namespace may have expired
            self._marked = expiry = True
            keys, _, long = statements.read_page((yield page(expiry=True)))
        if long and _holds_long(keys):  # read again with the rest of the long keys
            keys = statements.whole_keys_of((yield page(expiry=bool(expiry), whole=True)))
        return keys

    def _yield_keys(self, prefix: str) -> Iterator[str]:
        # `keyset_pages` is the generator itself (a wrapper generator would cost a resume per
        # key); the first page, not this call, sets up the schema and connects.
        def fetch_page(after: str | None, limit: int) -> list[str]:
            statements = self._statements or self._ready()
            steps = self._page_steps(statements, prefix, after, limit)
            with self._session() as cursor:
                try:
                    statement = next(steps)
                    while True:
                        cursor.execute(*statement)
                        statement = steps.send(cursor.fetchall())
                except StopIteration as done:
                    keys: list[str] = done.value
            return keys

        return keyset_pages(fetch_page, self.page_size)

    def _ayield_keys(self, prefix: str) -> AsyncIterator[str]:
        if self._async_driver is None:
            # One thread hop per page, on SQLite the store's own worker thread (`_in_thread`).
            listing = functools.partial(self._yield_keys, prefix)
            return aiter_in_thread(listing, self.page_size, self._in_thread)

        async def fetch_page(after: str | None, limit: int) -> list[str]:
            statements = self._statements or await self._aready()
            steps = self._page_steps(statements, prefix, after, limit)
            async with self._asession() as cursor:
                try:
                    statement = next(steps)
                    while True:
                        await cursor.execute(*statement)
                        statement = steps.send(await cursor.fetchall())
                except StopIteration as done:
                    keys: list[str] = done.value
            return keys

        return akeyset_pages(fetch_page, self.page_size)

    # Async calls without an async driver: the sync ones in a worker thread

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Run a sync call in a worker thread: on SQLite always the same one per store, so
        one connection (and its page cache, reset whenever another connection writes)
        serves every async call, as aiosqlite does; elsewhere the default executor."""
        executor = None
        if self._dialect_name == "sqlite":
            with self._state_lock:
                executor = self._executor
                if executor is None:
                    executor = self._executor = ThreadPoolExecutor(
                        1, thread_name_prefix="kvstores-sqlite"
                    )
        call = functools.partial(contextvars.copy_context().run, function, *args)
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    # Expiry

    def _count_keys(self, prefix: str) -> int | None:
        # The listing's index range, counted on the server: one statement, no keys sent.
        statements = self._statements or self._ready()
        sql, params = statements.page(self._ns, prefix, None, 0, time.time(), count=True)
        with self._session() as cursor:
            cursor.execute(sql, params)
            return int(cursor.fetchall()[0][0])

    def purge_expired(self) -> int:
        """Delete this namespace's expired entries now; returns how many were deleted."""
        statements = self._statements or self._ready()
        sql, params = statements.purge(self._ns, time.time())
        with self._session() as cursor:
            cursor.execute(sql, params)
            return int(cursor.rowcount)

    async def apurge_expired(self) -> int:
        """Async `purge_expired`."""
        if self._async_driver is None:
            return await self._in_thread(self.purge_expired)
        statements = self._statements or await self._aready()
        sql, params = statements.purge(self._ns, time.time())
        async with self._asession() as cursor:
            await cursor.execute(sql, params)
            return int(cursor.rowcount)

    # Lifecycle

    def close(self) -> None:
        """Dispose the engines this store made; an engine it was given stays open."""
        self._stop_executor()
        if self._threads is not None:
            self._threads.close_all()
        if self._kept is not None:
            self._kept.release()
        if self._owns_sync:
            self._sync_engine.dispose()
        for loop, (engine, guard, kept) in list(self._async_engines.items()):
            del self._async_engines[loop]
            if not loop.is_closed() and not loop.is_running():
                try:
                    loop.run_until_complete(guard.aclose())  # disposes the engine in its loop
                    continue
                except Exception:  # noqa: BLE001 - fall back to letting go
                    pass
            _let_go(engine, kept)  # its loop is gone or busy

    async def aclose(self) -> None:
        """Async `close`."""
        current = asyncio.get_running_loop()
        for loop, (engine, guard, kept) in list(self._async_engines.items()):
            del self._async_engines[loop]
            if loop is current:
                await guard.aclose()
            else:
                _let_go(engine, kept)
        self._stop_executor()
        if self._threads is not None:
            self._threads.close_all()
        if self._kept is not None:
            self._kept.release()
        if self._owns_sync:
            await asyncio.to_thread(self._sync_engine.dispose)

    def _stop_executor(self) -> None:
        with self._state_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)


def _let_go(engine: AsyncEngine, kept: _KeptConnection | None) -> None:
    """Forget an async engine whose event loop is gone or busy, without closing its
    connections, which only their loop can do."""
    if kept is not None:
        kept.forget()
    engine.sync_engine.dispose(close=False)


async def _dispose_at_loop_shutdown(
    engine: AsyncEngine, kept: _KeptConnection | None
) -> AsyncGenerator[None, None]:
    """Started in an event loop, this suspended generator disposes `engine` (after putting
    back the connection `kept`) when the loop shuts down: ``asyncio.run`` and pytest's
    loops close every async generator first, so the engine's connections close in the
    loop they belong to, never after it is gone."""
    try:
        yield
    finally:
        if kept is not None:
            with contextlib.suppress(Exception):
                await kept.arelease()
        await engine.dispose()


def _prefer_generic_plans(dbapi_connection: Any, connection_record: Any) -> None:
    """Generic plans for the store's PostgreSQL connections (see `_replan_now`), and no
    bitmap scans: every statement of the store reads the primary key in its order, while a
    plan made before the table was first analyzed (which expects a row or two) would
    otherwise read a page of keys as a bitmap heap scan and a sort, ten times slower."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET enable_bitmapscan = off")
        cursor.execute("SET plan_cache_mode = force_generic_plan")
    except Exception:  # noqa: BLE001 - PostgreSQL < 12: plans as the server decides
        dbapi_connection.rollback()
    else:
        dbapi_connection.commit()  # a no-op in autocommit; else keeps the SET
    finally:
        cursor.close()


def _aiomysql_connector(timeout: float) -> Callable[..., Any]:
    """aiomysql's `connect`, bounded by `timeout` as a whole.

    aiomysql's ``connect_timeout`` bounds opening the socket only: the handshake that
    follows (the server's greeting, authentication) has no timeout, so a port that accepts
    connections and never answers held a connect for ever. SQLAlchemy's aiomysql adapter
    calls this (``async_creator_fn`` in ``connect_args``) with the arguments it would give
    `aiomysql.connect`, which builds a `Connection` and runs its ``_connect``, as this does
    under `asyncio.wait_for`, closing the socket when time is up.
    """
    aiomysql = importlib.import_module("aiomysql")
    operational = importlib.import_module("pymysql").err.OperationalError

    async def connect(*args: Any, **kwargs: Any) -> Any:
        connection = aiomysql.Connection(*args, **kwargs)
        try:
            await asyncio.wait_for(connection._connect(), timeout)
        except BaseException as exc:
            connection.close()
            if isinstance(exc, TimeoutError):  # asyncio's, on Python >= 3.11
                raise operational(
                    2003,  # CR_CONN_HOST_ERROR, as aiomysql reports a failed connect
                    f"Can't connect to MySQL server on {kwargs.get('host')!r} "
                    f"(no answer in {timeout:g} s)",
                ) from exc
            raise
        return connection

    return connect


def _lift_timeouts(names: Collection[str]) -> Callable[[Any, Any], None]:
    """A ``connect`` listener lifting PyMySQL's read or write timeouts once connected.

    PyMySQL has one read timeout and one write timeout for the handshake and every statement
    after it. The store sets both to its ``timeout``, the only way to bound PyMySQL's
    handshake (its ``connect_timeout`` bounds opening the socket), then lifts them here,
    once the connection is made (SQLAlchemy's first statements on it included): a
    statement may rightly take longer than any connect timeout. An upsert chunk of 32 MiB
    (what a 64 MiB ``max_allowed_packet`` allows) takes 13 s to send at 20 Mbit/s, and
    PyMySQL's write timeout bounds the whole send; a row lock waits up to
    ``innodb_lock_wait_timeout`` (50 s); stores first using a version 1 table wait up to 60 s
    for the one migrating it, whose ``INSERT … SELECT`` copies the whole table;
    `purge_expired` scans a namespace. A read timeout there drops the connection and fails
    the whole batch, again at every retry. So, as on psycopg and aiomysql, which have no
    read timeout, statements are bounded by the server (``max_statement_time``,
    ``max_execution_time``) or by read and write timeouts given in the URL or
    ``connect_args``, which the store leaves as they are (for the handshake too).
    """

    def lift(dbapi_connection: Any, connection_record: Any) -> None:
        for name in names:
            attribute = f"_{name}"  # PyMySQL's `Connection._read_timeout`, `_write_timeout`
            if hasattr(dbapi_connection, attribute):
                setattr(dbapi_connection, attribute, None)

    return lift


def _replan_now(info: dict[str, Any]) -> bool:
    """Whether a PostgreSQL connection of the store should drop its cached plans now.

    Every statement the store runs probes or scans a range of the primary key whatever its
    parameters, so its connections use generic plans, made once per statement and prepared
    by psycopg on first use: no planning per call. But a plan is made for the table as it
    is then, and one made while the table was empty or tiny (a scan of the namespace may be
    cheapest there) stays until the next ANALYZE. Dropping the plans at a connection's 8th,
    16th, 32nd, … use (``DISCARD PLANS``, then every 65,536th) has them made again for the
    table as it has grown, at the cost of a round trip now and then.
    """
    uses: int = info.get("kvstores_uses", 0) + 1
    info["kvstores_uses"] = uses
    return uses >= 8 and (uses & (uses - 1) == 0 or uses % 65536 == 0)


def _pragma_setter(pragmas: Mapping[str, str | int | None]) -> Callable[[Any, Any], None]:
    for name, value in pragmas.items():
        if not _PRAGMA_NAME.match(name):
            raise ConfigurationError(f"not a pragma name: {name!r}")
        if value is not None and not _PRAGMA_VALUE.match(str(value)):
            raise ConfigurationError(f"pragma {name} takes a plain word or number, not {value!r}")
    statements = [
        f"PRAGMA {name} = {value}" for name, value in pragmas.items() if value is not None
    ]
    patience = int(pragmas.get("busy_timeout") or 0) / 1000
    locked = importlib.import_module("sqlite3").OperationalError

    def set_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
        # Connections opening a new database at once race to switch it to WAL, which needs
        # an exclusive lock, and the losers get "database is locked" at once: the busy
        # handler is not called there. So a locked pragma is retried until `busy_timeout`.
        deadline = time.monotonic() + patience
        cursor = dbapi_connection.cursor()
        try:
            for statement in statements:
                while True:
                    try:
                        cursor.execute(statement)
                        break
                    except locked as exc:
                        if "locked" not in str(exc) or time.monotonic() >= deadline:
                            raise
                        time.sleep(0.005)
        finally:
            cursor.close()

    return set_pragmas
